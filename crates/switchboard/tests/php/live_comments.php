<?php
// Live video comments, after the BladeRunner design: a stateless PHP lambda
// that answers the gateway's events with actions. Serve it with
//   php -S 127.0.0.1:PORT live_comments.php
// and give the gateway `--app live_comments=http://127.0.0.1:PORT/`.
//
// - open: params.video must be a known video; subscribe to its comments
//   (through this lambda) and its reactions (direct, never seen here).
// - message: a comment is escaped, tagged "by":"php" with the stream's
//   running count (kept in the stream state), and pushed as event "comment".
//   A message {"cmd":"bye"} ends the stream (a moderator closing it).
// - client_message: {"cmd":"bye"} closes the stream with 4001 "bye"; else the
//   text is published as a comment on the stream's video.
// - close and anything else: no actions.
//
// If LAMBDA_LOG names a file, each event is appended to it as one JSON line
// {"type","stream","topic","topics" (of a batch),"reason"}, so tests can see
// which calls happened.

declare(strict_types=1);

require __DIR__ . '/lambda_common.php';

const KNOWN_VIDEOS = ['1234', '42', '7'];

function answer(int $status, $body): void
{
    http_response_code($status);
    header('Content-Type: application/json');
    echo json_encode($body, JSON_FLAGS);
}

function log_event(array $event): void
{
    log_line([
        'type' => $event['type'] ?? null,
        'stream' => $event['stream']['id'] ?? null,
        'topic' => $event['topic'] ?? null,
        'topics' => array_map(fn ($m) => $m['topic'] ?? null, $event['messages'] ?? []),
        'reason' => $event['reason'] ?? null,
    ]);
}

function state_of(array $event): array
{
    $state = $event['stream']['state'] ?? null;
    return is_array($state) ? $state : [];
}

function on_open(array $event): array
{
    $params = $event['params'] ?? [];
    $video = $params['video'] ?? null;
    if (is_int($video)) {
        $video = (string) $video;
    }
    if (!is_string($video) || !in_array($video, KNOWN_VIDEOS, true)) {
        return [['type' => 'reject', 'code' => 404, 'reason' => 'unknown video']];
    }
    return [
        ['type' => 'accept'],
        ['type' => 'set_state', 'state' => ['video' => $video, 'count' => 0]],
        ['type' => 'subscribe', 'topic' => "live_video_comment/$video", 'deliver' => 'lambda'],
        ['type' => 'subscribe', 'topic' => "live_video_reaction/$video", 'deliver' => 'direct'],
    ];
}

/** Actions for one comment; $count is the stream's running count, updated. */
function on_comment(string $topic, string $id, $data, array $state, int &$count): array
{
    if (is_array($data) && ($data['cmd'] ?? null) === 'bye') {
        return [['type' => 'close', 'code' => 4001, 'reason' => 'bye']];
    }
    $text = is_array($data) ? ($data['text'] ?? '') : $data;
    if (!is_string($text)) {
        $text = json_encode($text, JSON_FLAGS);
    }
    $count += 1;
    return [[
        'type' => 'push',
        'event' => 'comment',
        'data' => [
            'text' => htmlspecialchars($text, ENT_QUOTES | ENT_HTML5, 'UTF-8'),
            'by' => 'php',
            'count' => $count,
            'video' => $state['video'] ?? null,
            'topic' => $topic,
            'message_id' => $id,
        ],
    ]];
}

function on_messages(array $event, array $messages): array
{
    $state = state_of($event);
    $count = (int) ($state['count'] ?? 0);
    $actions = [];
    foreach ($messages as $m) {
        $topic = (string) ($m['topic'] ?? '');
        if (strpos($topic, 'live_video_comment/') !== 0) {
            continue; // reactions are delivered direct and never come here
        }
        $actions = array_merge(
            $actions,
            on_comment($topic, (string) ($m['id'] ?? ''), $m['data'] ?? null, $state, $count)
        );
    }
    if ($count !== (int) ($state['count'] ?? 0)) {
        $state['count'] = $count;
        $actions[] = ['type' => 'set_state', 'state' => $state];
    }
    return $actions;
}

function on_client_message(array $event): array
{
    $data = $event['data'] ?? null;
    if (is_array($data) && ($data['cmd'] ?? null) === 'bye') {
        return [['type' => 'close', 'code' => 4001, 'reason' => 'bye']];
    }
    $video = state_of($event)['video'] ?? null;
    if (!is_string($video)) {
        return [];
    }
    $text = is_array($data) ? ($data['text'] ?? '') : '';
    return [['type' => 'publish', 'topic' => "live_video_comment/$video", 'data' => ['text' => $text]]];
}

function handle(array $event): array
{
    log_event($event);
    switch ($event['type'] ?? '') {
        case 'open':
            return on_open($event);
        case 'message':
            return on_messages($event, [$event]);
        case 'batch':
            return on_messages($event, $event['messages'] ?? []);
        case 'client_message':
            return on_client_message($event);
        default:
            return []; // close, timer
    }
}

if ($_SERVER['REQUEST_METHOD'] !== 'POST') {
    answer(405, ['error' => 'POST only']);
    return;
}
serve_events('handle');
