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

const JSON_FLAGS = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION;

function log_event(array $event): void
{
    $path = getenv('LAMBDA_LOG');
    if ($path === false || $path === '') {
        return;
    }
    $line = [
        'type' => $event['type'] ?? null,
        'stream' => $event['stream']['id'] ?? null,
        'topic' => $event['topic'] ?? null,
        'id' => $event['id'] ?? null,
        'ids' => array_map(fn ($m) => $m['id'] ?? null, $event['messages'] ?? []),
        'reason' => $event['reason'] ?? null,
    ];
    file_put_contents($path, json_encode($line, JSON_FLAGS) . "\n", FILE_APPEND | LOCK_EX);
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

$request = json_decode((string) file_get_contents('php://input'), true);
header('Content-Type: application/json');
if (!is_array($request) || !is_array($request['events'] ?? null)) {
    http_response_code(400);
    echo json_encode(['error' => 'expected {"v":1,"app":...,"events":[...]}']);
    return;
}
$results = [];
foreach ($request['events'] as $event) {
    $results[] = ['actions' => is_array($event) ? handle($event) : []];
}
echo json_encode(['results' => $results], JSON_FLAGS);
