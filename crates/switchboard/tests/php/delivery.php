<?php
// A lambda for the delivery tests (resume, keepalive, slow consumers, drain).
//
// - open: accepts, and subscribes to each topic of params.topic
//   (comma-separated) with deliver = params.deliver ("lambda" by default,
//   or "direct"); params.dedup_ms adds a dedup window to each subscription.
// - message / batch: pushes event "msg" with
//   {"marked":"php","topic","id","data"} (one push per message).
// - client_message: buffers {"kind":"client_message","data":...} to the sink
//   named by BUFFER_SINK, if set; else no actions.
// - close: buffers {"kind":"close","reason":...} to BUFFER_SINK if set;
//   sleeps CLOSE_SLEEP_MS first if set (a lambda slow to answer a drain).
//
// Every event is appended to LAMBDA_LOG (if set) as one JSON line
// {"type","stream","topic","id","ids","reason"}.

declare(strict_types=1);

require __DIR__ . '/lambda_common.php';

function log_event(array $event): void
{
    log_line([
        'type' => $event['type'] ?? null,
        'stream' => $event['stream']['id'] ?? null,
        'topic' => $event['topic'] ?? null,
        'id' => $event['id'] ?? null,
        'ids' => array_map(fn ($m) => $m['id'] ?? null, $event['messages'] ?? []),
        'reason' => $event['reason'] ?? null,
    ]);
}

function mark(array $m): array
{
    return [
        'type' => 'push',
        'event' => 'msg',
        'data' => [
            'marked' => 'php',
            'topic' => $m['topic'] ?? null,
            'id' => $m['id'] ?? null,
            'data' => $m['data'] ?? null,
        ],
    ];
}

function buffered(array $record): array
{
    $sink = getenv('BUFFER_SINK');
    if ($sink === false || $sink === '') {
        return [];
    }
    return [['type' => 'buffer', 'sink' => $sink, 'data' => $record]];
}

function on_open(array $event): array
{
    $params = $event['params'] ?? [];
    $deliver = ($params['deliver'] ?? 'lambda') === 'direct' ? 'direct' : 'lambda';
    $actions = [['type' => 'accept']];
    foreach (explode(',', (string) ($params['topic'] ?? '')) as $topic) {
        if ($topic === '') {
            continue;
        }
        $sub = ['type' => 'subscribe', 'topic' => $topic, 'deliver' => $deliver];
        if (isset($params['dedup_ms'])) {
            $sub['dedup'] = ['window_ms' => (int) $params['dedup_ms']];
        }
        $actions[] = $sub;
    }
    return $actions;
}

function handle(array $event): array
{
    log_event($event);
    switch ($event['type'] ?? '') {
        case 'open':
            return on_open($event);
        case 'message':
            return [mark($event)];
        case 'batch':
            return array_map('mark', $event['messages'] ?? []);
        case 'client_message':
            return buffered(['kind' => 'client_message', 'data' => $event['data'] ?? null]);
        case 'close':
            $sleep = (int) (getenv('CLOSE_SLEEP_MS') ?: 0);
            if ($sleep > 0) {
                usleep($sleep * 1000);
            }
            return buffered(['kind' => 'close', 'reason' => $event['reason'] ?? null]);
        default:
            return [];
    }
}

serve_events('handle');
