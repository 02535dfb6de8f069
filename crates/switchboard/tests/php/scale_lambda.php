<?php
// A chat room lambda for the scale-out tests: a stream joins room
// params.room (topic "room/<room>", delivered direct); what its client sends
// is published to the room with the lambda's `publish` action, so it reaches
// streams on every node sharing the broker.

declare(strict_types=1);

const JSON_FLAGS = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION;

function handle(array $event): array
{
    switch ($event['type'] ?? '') {
        case 'open':
            $room = $event['params']['room'] ?? null;
            if (!is_string($room) || preg_match('/^[a-z0-9]{1,32}$/', $room) !== 1) {
                return [['type' => 'reject', 'code' => 400, 'reason' => 'room must be [a-z0-9]{1,32}']];
            }
            return [
                ['type' => 'accept'],
                ['type' => 'set_state', 'state' => ['topic' => "room/$room"]],
                ['type' => 'subscribe', 'topic' => "room/$room", 'deliver' => 'direct'],
            ];
        case 'client_message':
            $topic = $event['stream']['state']['topic'] ?? null;
            if (!is_string($topic)) {
                return [];
            }
            return [['type' => 'publish', 'topic' => $topic, 'data' => $event['data'] ?? null]];
        default:
            return [];
    }
}

if ($_SERVER['REQUEST_METHOD'] !== 'POST') {
    http_response_code(405);
    return;
}
$request = json_decode((string) file_get_contents('php://input'), true);
if (!is_array($request) || !is_array($request['events'] ?? null)) {
    http_response_code(400);
    return;
}
$results = [];
foreach ($request['events'] as $event) {
    $results[] = ['actions' => is_array($event) ? handle($event) : []];
}
header('Content-Type: application/json');
echo json_encode(['results' => $results], JSON_FLAGS);
