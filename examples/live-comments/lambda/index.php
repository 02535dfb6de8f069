<?php
// The live-comments lambda. Serve it with
//   php -S 127.0.0.1:9000 examples/live-comments/lambda/index.php
// and run the gateway with
//   switchboard serve --app live_comments=http://127.0.0.1:9000/index.php
// Data (comments, viewer sets) goes to $LIVE_COMMENTS_DATA, else the temp dir.

declare(strict_types=1);

require __DIR__ . '/../../../sdk/php/autoload.php'; // or Composer's vendor/autoload.php
require __DIR__ . '/Store.php';
require __DIR__ . '/Transform.php';
require __DIR__ . '/LiveComments.php';

use LiveComments\LiveComments;
use LiveComments\Store;
use Switchboard\Lambda;

Lambda::serve(new LiveComments(Store::fromEnv()));
