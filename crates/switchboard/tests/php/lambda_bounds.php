<?php
// The lambda of the bounded-input attacks (attack_lambda.rs, scale/):
//  - open: accept; subscribe to params.follow (lambda delivery) and to
//    params.direct (direct delivery), remember params.to; then the actions
//    in params.extra, a string of raw JSON action objects, comma-separated,
//    spliced into the answer as they are (numbers no PHP type can hold,
//    like 18446744073709551615, reach the gateway untouched);
//  - message: push {"topic","data"} (event "seen"), and unless the data is
//    a marker, publish {"n": n + 1} to state.to: a lambda that publishes
//    to a topic it follows loops until the gateway's hop limit stops it;
//  - timer: push {"timer": name} (event "tick").

declare(strict_types=1);

const JSON_FLAGS = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION;

// The actions for one event, each a JSON text.
function handle(array $event): array
{
    $state = $event['stream']['state'] ?? null;
    switch ($event['type'] ?? '') {
        case 'open':
            $p = $event['params'] ?? [];
            $actions = [['type' => 'accept'], ['type' => 'set_state', 'state' => ['to' => $p['to'] ?? null]]];
            if (is_string($p['follow'] ?? null)) {
                $actions[] = ['type' => 'subscribe', 'topic' => $p['follow']];
            }
            if (is_string($p['direct'] ?? null)) {
                $actions[] = ['type' => 'subscribe', 'topic' => $p['direct'], 'deliver' => 'direct'];
            }
            $texts = array_map(fn ($a) => json_encode($a, JSON_FLAGS), $actions);
            if (is_string($p['extra'] ?? null) && $p['extra'] !== '') {
                $texts[] = $p['extra'];
            }
            return $texts;
        case 'message':
            $data = $event['data'] ?? null;
            $actions = [[
                'type' => 'push',
                'event' => 'seen',
                'data' => ['topic' => $event['topic'] ?? null, 'data' => $data],
            ]];
            $to = is_array($state) ? ($state['to'] ?? null) : null;
            if (is_string($to) && !(is_array($data) && ($data['marker'] ?? false))) {
                $n = is_array($data) && is_int($data['n'] ?? null) ? $data['n'] : 0;
                $actions[] = ['type' => 'publish', 'topic' => $to, 'data' => ['n' => $n + 1]];
            }
            return array_map(fn ($a) => json_encode($a, JSON_FLAGS), $actions);
        case 'timer':
            return [json_encode(['type' => 'push', 'event' => 'tick', 'data' => ['timer' => $event['name'] ?? null]], JSON_FLAGS)];
        default:
            return [];
    }
}

$request = json_decode((string) file_get_contents('php://input'), true);
header('Content-Type: application/json');
if (!is_array($request) || !is_array($request['events'] ?? null)) {
    http_response_code(400);
    echo '{"error":"expected {\"v\":1,\"app\":...,\"events\":[...]}"}';
    return;
}
$results = [];
foreach ($request['events'] as $event) {
    $actions = is_array($event) ? handle($event) : [];
    $results[] = '{"actions":[' . implode(',', $actions) . ']}';
}
echo '{"results":[' . implode(',', $results) . ']}';
