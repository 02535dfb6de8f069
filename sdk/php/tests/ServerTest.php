<?php

declare(strict_types=1);

namespace Switchboard\Tests;

/** Lambda::serve() under a real `php -S`, as the gateway calls it. */
final class ServerTest extends TestCase
{
    /** @var resource|null */
    private static $proc = null;
    private static int $port = 0;
    private static string $log = '';

    private static function url(): string
    {
        if (self::$proc === null) {
            $probe = stream_socket_server('tcp://127.0.0.1:0');
            self::$port = (int) substr((string) strrchr((string) stream_socket_get_name($probe, false), ':'), 1);
            fclose($probe);
            self::$log = tempnam(sys_get_temp_dir(), 'sb-php-server-');
            $cmd = [PHP_BINARY, '-d', 'display_errors=stderr', '-S', '127.0.0.1:' . self::$port, __DIR__ . '/fixtures/server.php'];
            self::$proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', self::$log, 'a'], 2 => ['file', self::$log, 'a']], $pipes);
            register_shutdown_function(static function (): void {
                proc_terminate(self::$proc);
                proc_close(self::$proc);
                @unlink(self::$log);
            });
            $deadline = microtime(true) + 10;
            while (!@fsockopen('127.0.0.1', self::$port)) {
                if (microtime(true) > $deadline) {
                    throw new \RuntimeException('php -S did not start: ' . file_get_contents(self::$log));
                }
                usleep(20000);
            }
        }
        return 'http://127.0.0.1:' . self::$port . '/lambda';
    }

    /** @return array{int, string, array<int,string>} status, body, headers */
    private function request(string $method, string $body): array
    {
        $ctx = stream_context_create(['http' => [
            'method' => $method,
            'header' => "Content-Type: application/json\r\n",
            'content' => $body,
            'ignore_errors' => true,
            'timeout' => 10,
        ]]);
        $out = file_get_contents(self::url(), false, $ctx);
        $headers = $http_response_header ?? [];
        preg_match('{HTTP/\S+ (\d+)}', $headers[0] ?? '', $m);
        return [(int) ($m[1] ?? 0), (string) $out, $headers];
    }

    public function testAnswersTheGatewaysRequest(): void
    {
        $body = json_encode(['v' => 1, 'app' => 'a', 'events' => [
            ['type' => 'open', 'stream' => ['id' => 's1', 'state' => null], 'transport' => 'sse', 'params' => [],
                'headers' => ['user-agent' => 'ua/1'], 'remote_addr' => '127.0.0.1'],
            ['type' => 'client_message', 'stream' => ['id' => 's2', 'state' => ['k' => 'v']], 'data' => ['throw' => true]],
            ['type' => 'client_message', 'stream' => ['id' => 's3', 'state' => ['k' => 'v']], 'data' => ['print' => true]],
            ['type' => 'client_message', 'stream' => ['id' => 's4', 'state' => ['k' => 'v']], 'data' => 'hi'],
        ]]);
        [$status, $out, $headers] = $this->request('POST', $body);
        $this->assertSame(200, $status, $out);
        $this->assertTrue((bool) preg_grep('{^Content-Type: application/json}i', $headers), implode("\n", $headers));
        $this->assertJson('{"results":[
            {"actions":[{"type":"accept"},{"type":"set_state","state":{"transport":"sse","ua":"ua/1"}}]},
            {"actions":[]},
            {"actions":[{"type":"push","data":{"echo":{"print":true},"state":{"k":"v"}}}]},
            {"actions":[{"type":"push","data":{"echo":"hi","state":{"k":"v"}}}]}
        ]}', $out);
        $log = (string) file_get_contents(self::$log);
        $this->assertTrue(str_contains($log, 'switchboard: handler failed on events[1] (client_message, stream s2): LogicException: asked to throw'), $log);
        $this->assertTrue(str_contains($log, 'stray output'), $log);
    }

    public function testRefusesBadBodiesAndOtherMethods(): void
    {
        [$status, $out] = $this->request('POST', '{"events": oops');
        $this->assertSame(400, $status, $out);
        $this->assertSame('bad_request', json_decode($out, true)['error']['code'] ?? null, $out);

        [$status, $out, $headers] = $this->request('GET', '');
        $this->assertSame(405, $status, $out);
        $this->assertTrue((bool) preg_grep('{^Allow: POST}i', $headers), implode("\n", $headers));
    }
}
