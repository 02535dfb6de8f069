<?php
// The page's server (not the lambda): `php -S 127.0.0.1:8081 -t public web.php`.
//   /switchboard.js          the browser client, from sdk/js
//   /api/recent?video=&lang= the last comments as this viewer sees them
//                            (what a page refetches after a `gap`)
//   anything else            a file from public/

declare(strict_types=1);

require __DIR__ . '/../../sdk/php/autoload.php';
require __DIR__ . '/lambda/Store.php';
require __DIR__ . '/lambda/Transform.php';
require __DIR__ . '/lambda/LiveComments.php';

use LiveComments\LiveComments;
use LiveComments\Store;
use LiveComments\Transform;

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';

if ($path === '/switchboard.js') {
    header('Content-Type: text/javascript; charset=utf-8');
    header('Cache-Control: no-cache');
    readfile(__DIR__ . '/../../sdk/js/switchboard.js');
    return true;
}

if ($path === '/api/recent') {
    header('Content-Type: application/json');
    header('Cache-Control: no-store');
    $video = (string) ($_GET['video'] ?? '');
    if (!isset(LiveComments::VIDEOS[$video])) {
        http_response_code(404);
        echo json_encode(['error' => ['code' => 'unknown_video', 'message' => "no live video $video"]]);
        return true;
    }
    $lang = Transform::pickLang($_GET['lang'] ?? null, $_SERVER['HTTP_ACCEPT_LANGUAGE'] ?? null);
    $comments = array_map(
        fn (array $c) => Transform::forViewer($c, $lang),
        Store::fromEnv()->recentComments($video),
    );
    echo json_encode(['comments' => $comments], JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
    return true;
}

if ($path === '/') {
    header('Content-Type: text/html; charset=utf-8');
    readfile(__DIR__ . '/public/index.html');
    return true;
}

return false; // a static file from the docroot (public/)
