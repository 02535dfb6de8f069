<?php
// Shared by the test lambdas (capabilities.php, delivery.php,
// live_comments.php), which `require` it; not a router script itself.

declare(strict_types=1);

const JSON_FLAGS = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION;

// Appends `$line` as one JSON line to the file LAMBDA_LOG names, if set.
function log_line(array $line): void
{
    $path = getenv('LAMBDA_LOG');
    if ($path === false || $path === '') {
        return;
    }
    file_put_contents($path, json_encode($line, JSON_FLAGS) . "\n", FILE_APPEND | LOCK_EX);
}

// Answers the lambda request being served: `{"results":[{"actions":...}]}`
// with `$handle($event)` for each event, in order; 400 if it is not one.
function serve_events(callable $handle): void
{
    $request = json_decode((string) file_get_contents('php://input'), true);
    header('Content-Type: application/json');
    if (!is_array($request) || !is_array($request['events'] ?? null)) {
        http_response_code(400);
        echo json_encode(['error' => 'expected {"v":1,"app":...,"events":[...]}']);
        return;
    }
    $results = [];
    foreach ($request['events'] as $event) {
        $results[] = ['actions' => is_array($event) ? $handle($event) : []];
    }
    echo json_encode(['results' => $results], JSON_FLAGS);
}
