<?php
// The PHP SDK's test runner: no PHPUnit needed. Runs every public test*()
// method of every tests/*Test.php class and prints one line per test and
// a closing "N passed, N failed" line; exits 1 if any failed.
//   php tests/run.php [filter]     (filter: substring of Class::method)

declare(strict_types=1);

error_reporting(E_ALL);
ini_set('display_errors', 'stderr');
// Warnings and notices fail the test that raised them.
set_error_handler(static function (int $no, string $str, string $file, int $line): bool {
    if (!(error_reporting() & $no)) {
        return false; // silenced with @
    }
    throw new \ErrorException($str, 0, $no, $file, $line);
});

require __DIR__ . '/../autoload.php';
require __DIR__ . '/TestCase.php';

$filter = $argv[1] ?? '';
$passed = 0;
$failed = 0;
$files = glob(__DIR__ . '/*Test.php') ?: [];
sort($files);
foreach ($files as $file) {
    require_once $file;
    $class = 'Switchboard\\Tests\\' . basename($file, '.php');
    foreach (get_class_methods($class) as $method) {
        if (!str_starts_with($method, 'test') || ($filter !== '' && !str_contains("$class::$method", $filter))) {
            continue;
        }
        $name = basename($file, '.php') . "::$method";
        $test = new $class();
        $start = microtime(true);
        try {
            $test->$method();
            if ($test->assertions === 0) {
                throw new \Switchboard\Tests\AssertionFailed('test made no assertion');
            }
            $passed++;
            printf("ok   %s (%.0f ms)\n", $name, (microtime(true) - $start) * 1000);
        } catch (\Throwable $e) {
            $failed++;
            printf("FAIL %s\n     %s: %s\n     at %s:%d\n", $name, get_class($e), str_replace("\n", "\n     ", $e->getMessage()), $e->getFile(), $e->getLine());
        } finally {
            \Switchboard\Lambda::setLogger(null);
        }
    }
}
echo "php: $passed passed, $failed failed\n";
exit($failed === 0 && $passed > 0 ? 0 : 1);
