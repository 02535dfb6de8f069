<?php
// For use without Composer: `require __DIR__ . '/path/to/sdk/php/autoload.php';`
// maps the PSR-4 namespace Switchboard\ to src/, as Composer's autoloader would.

declare(strict_types=1);

spl_autoload_register(static function (string $class): void {
    $prefix = 'Switchboard\\';
    if (strncmp($class, $prefix, strlen($prefix)) !== 0) {
        return;
    }
    $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
