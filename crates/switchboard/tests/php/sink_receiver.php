<?php
// The far end of an HTTP sink, for the buffering tests: each POSTed body
// (a JSON array of records) is appended as one line to RECEIVER_LOG, so a
// test sees every batch as the gateway sent it. Answers 200 {}; a body that
// is not a JSON array answers 400 and is not logged.

declare(strict_types=1);

$body = (string) file_get_contents('php://input');
$records = json_decode($body, true);
header('Content-Type: application/json');
if ($_SERVER['REQUEST_METHOD'] !== 'POST' || !is_array($records) || !array_is_list($records)) {
    http_response_code(400);
    echo '{"error":"expected a POSTed JSON array"}';
    return;
}
$path = getenv('RECEIVER_LOG');
if ($path !== false && $path !== '') {
    $line = json_encode($records, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION);
    file_put_contents($path, $line . "\n", FILE_APPEND | LOCK_EX);
}
echo '{}';
