<?php
// A lambda that misbehaves on purpose, for the gateway's failure tests.
// The mode comes from ?mode= on the lambda URL, else the BROKEN_MODE env var:
//   status_500    answers 500 with a JSON body
//   garbage       answers 200 with a body that is not JSON
//   wrong_count   answers 200 with one result more than there were events
//   no_results    answers 200 with {"results":[]}
//   no_accept     a valid answer with no actions (an open with no accept: 403)
//   reject        rejects every open with no code (the default status: 403)
//   ok            accepts every open (a control)
// Each request is appended to LAMBDA_LOG (one line per event type) when set.

declare(strict_types=1);

$mode = $_GET['mode'] ?? getenv('BROKEN_MODE') ?: 'status_500';
$request = json_decode((string) file_get_contents('php://input'), true);
$events = is_array($request['events'] ?? null) ? $request['events'] : [];

$log = getenv('LAMBDA_LOG');
if (is_string($log) && $log !== '') {
    foreach ($events as $event) {
        file_put_contents($log, json_encode(['type' => $event['type'] ?? null, 'mode' => $mode]) . "\n", FILE_APPEND | LOCK_EX);
    }
}

function results(array $events, callable $actions_for): array
{
    $results = [];
    foreach ($events as $event) {
        $results[] = ['actions' => $actions_for($event)];
    }
    return $results;
}

header('Content-Type: application/json');
switch ($mode) {
    case 'garbage':
        echo '{"results": [ this is not json';
        break;
    case 'wrong_count':
        $results = results($events, fn ($e) => [['type' => 'accept']]);
        $results[] = ['actions' => []];
        echo json_encode(['results' => $results]);
        break;
    case 'no_results':
        echo json_encode(['results' => []]);
        break;
    case 'no_accept':
        echo json_encode(['results' => results($events, fn ($e) => [])]);
        break;
    case 'reject':
        echo json_encode(['results' => results($events, fn ($e) => ($e['type'] ?? '') === 'open'
            ? [['type' => 'reject', 'reason' => 'not today']]
            : [])]);
        break;
    case 'ok':
        echo json_encode(['results' => results($events, fn ($e) => ($e['type'] ?? '') === 'open'
            ? [['type' => 'accept']]
            : [])]);
        break;
    default:
        http_response_code(500);
        echo json_encode(['error' => 'broken on purpose']);
}
