<?php
// A lambda for the capability tests (timers, rate limits, dedup, batching,
// buffering, capacity accounting): it does what the open's params say, and
// logs every event so that tests can count what reached it.
//
// - open: accepts; `params.subs` is a list of subscribe actions without their
//   "type" (topic, deliver, rate_limit, dedup, batch), `params.timers` a list
//   of timer actions without their "type" (name, every_ms | after_ms).
//   The state is {"tag": params.tag, "slow_ms": params.slow_ms,
//   "close_sink": params.close_sink, "close_publish": params.close_publish,
//   "ticks": {}}.
// - timer: sleeps state.slow_ms first if set (a slow lambda), then counts the
//   tick per timer name in the state and pushes event "tick"
//   {"name","fired_at_ms","tick"}.
// - message: pushes event "msg" {"topic","id","data"}.
// - batch: pushes one event "batch" {"ids":[..],"topics":[..],"datas":[..]}.
// - client_message, by data.cmd:
//     "timer"  -> a timer action from data.timer, then push "ack"
//     "cancel" -> cancel_timer data.name, then push "ack"
//     "buffer" -> a buffer action to data.sink per item of data.records, then push "ack"
//     "close"  -> close with data.code
//   anything else: push "ack".
//   data.sleep_ms, if set, delays the answer (a slow lambda).
// - close: buffers {"kind":"close","reason"} to state.close_sink and publishes
//   {"closed":tag,"reason"} to state.close_publish, if set.
//
// LAMBDA_LOG (a file) gets one JSON line per event:
// {"type","stream","tag","name","fired_at_ms","topic","id","ids","data","cmd",
//  "reason","start_us","end_us"}. The line is written when the answer is
// ready, so start_us..end_us covers any sleep.

declare(strict_types=1);

require __DIR__ . '/lambda_common.php';

function now_us(): int
{
    return (int) round(microtime(true) * 1e6);
}

function log_event(array $event, int $start_us): void
{
    $state = state_of($event);
    log_line([
        'type' => $event['type'] ?? null,
        'stream' => $event['stream']['id'] ?? null,
        'tag' => $state['tag'] ?? ($event['params']['tag'] ?? null),
        'name' => $event['name'] ?? null,
        'fired_at_ms' => $event['fired_at_ms'] ?? null,
        'topic' => $event['topic'] ?? null,
        'id' => $event['id'] ?? null,
        'ids' => array_map(fn ($m) => $m['id'] ?? null, $event['messages'] ?? []),
        'data' => $event['data'] ?? null,
        'cmd' => is_array($event['data'] ?? null) ? ($event['data']['cmd'] ?? null) : null,
        'reason' => $event['reason'] ?? null,
        'start_us' => $start_us,
        'end_us' => now_us(),
    ]);
}

function state_of(array $event): array
{
    $state = $event['stream']['state'] ?? null;
    return is_array($state) ? $state : [];
}

function push(string $event, $data): array
{
    return ['type' => 'push', 'event' => $event, 'data' => $data];
}

function on_open(array $event): array
{
    $params = $event['params'] ?? [];
    $state = [
        'tag' => $params['tag'] ?? null,
        'slow_ms' => (int) ($params['slow_ms'] ?? 0),
        'close_sink' => $params['close_sink'] ?? null,
        'close_publish' => $params['close_publish'] ?? null,
        'ticks' => new stdClass(),
    ];
    $actions = [['type' => 'accept'], ['type' => 'set_state', 'state' => $state]];
    foreach ($params['subs'] ?? [] as $sub) {
        $actions[] = ['type' => 'subscribe'] + $sub;
    }
    foreach ($params['timers'] ?? [] as $timer) {
        $actions[] = ['type' => 'timer'] + $timer;
    }
    return $actions;
}

function on_timer(array $event): array
{
    $state = state_of($event);
    $slow = (int) ($state['slow_ms'] ?? 0);
    if ($slow > 0) {
        usleep($slow * 1000);
    }
    $name = (string) ($event['name'] ?? '');
    $ticks = is_array($state['ticks'] ?? null) ? $state['ticks'] : [];
    $ticks[$name] = (int) ($ticks[$name] ?? 0) + 1;
    $state['ticks'] = $ticks;
    return [
        ['type' => 'set_state', 'state' => $state],
        push('tick', [
            'name' => $name,
            'fired_at_ms' => $event['fired_at_ms'] ?? null,
            'tick' => $ticks[$name],
        ]),
    ];
}

function on_client_message(array $event): array
{
    $data = $event['data'] ?? null;
    $cmd = is_array($data) ? ($data['cmd'] ?? null) : null;
    $sleep = is_array($data) ? (int) ($data['sleep_ms'] ?? 0) : 0;
    if ($sleep > 0) {
        usleep($sleep * 1000);
    }
    $ack = push('ack', ['cmd' => $cmd]);
    switch ($cmd) {
        case 'timer':
            return [['type' => 'timer'] + ($data['timer'] ?? []), $ack];
        case 'cancel':
            return [['type' => 'cancel_timer', 'name' => (string) ($data['name'] ?? '')], $ack];
        case 'buffer':
            $actions = [];
            foreach ($data['records'] ?? [] as $record) {
                $actions[] = ['type' => 'buffer', 'sink' => (string) ($data['sink'] ?? ''), 'data' => $record];
            }
            $actions[] = $ack;
            return $actions;
        case 'close':
            return [['type' => 'close', 'code' => (int) ($data['code'] ?? 4000), 'reason' => 'asked']];
        default:
            return [$ack];
    }
}

function on_close(array $event): array
{
    $state = state_of($event);
    $reason = $event['reason'] ?? null;
    $actions = [];
    if (is_string($state['close_sink'] ?? null)) {
        $actions[] = ['type' => 'buffer', 'sink' => $state['close_sink'],
            'data' => ['kind' => 'close', 'reason' => $reason]];
    }
    if (is_string($state['close_publish'] ?? null)) {
        $actions[] = ['type' => 'publish', 'topic' => $state['close_publish'],
            'data' => ['closed' => $state['tag'] ?? null, 'reason' => $reason]];
    }
    // Only publish and buffer apply to a closed stream; this one must be ignored.
    $actions[] = push('ignored', ['after' => 'close']);
    return $actions;
}

function handle(array $event): array
{
    $start = now_us();
    switch ($event['type'] ?? '') {
        case 'open':
            $actions = on_open($event);
            break;
        case 'timer':
            $actions = on_timer($event);
            break;
        case 'message':
            $actions = [push('msg', [
                'topic' => $event['topic'] ?? null,
                'id' => $event['id'] ?? null,
                'data' => $event['data'] ?? null,
            ])];
            break;
        case 'batch':
            $messages = $event['messages'] ?? [];
            $actions = [push('batch', [
                'ids' => array_map(fn ($m) => $m['id'] ?? null, $messages),
                'topics' => array_map(fn ($m) => $m['topic'] ?? null, $messages),
                'datas' => array_map(fn ($m) => $m['data'] ?? null, $messages),
            ])];
            break;
        case 'client_message':
            $actions = on_client_message($event);
            break;
        case 'close':
            $actions = on_close($event);
            break;
        default:
            $actions = [];
    }
    log_event($event, $start);
    return $actions;
}

serve_events('handle');
