<?php

declare(strict_types=1);

namespace Switchboard\Tests;

use Switchboard\Actions;
use Switchboard\Event\ClientMessage;
use Switchboard\Event\Event;
use Switchboard\Event\Message;
use Switchboard\Event\Open;
use Switchboard\Handler;
use Switchboard\InvalidRequest;
use Switchboard\Lambda;

final class LambdaTest extends TestCase
{
    /** @var list<string> */
    private array $logged = [];

    private function capture(): void
    {
        Lambda::setLogger(function (string $m): void {
            $this->logged[] = $m;
        });
    }

    /** @param list<array<string,mixed>> $events */
    private static function body(array $events): string
    {
        return (string) json_encode(['v' => 1, 'app' => 'test', 'events' => $events]);
    }

    private static function open(string $id, array $params = []): array
    {
        return ['type' => 'open', 'stream' => ['id' => $id, 'state' => null], 'transport' => 'ws',
            'params' => $params, 'headers' => [], 'remote_addr' => '127.0.0.1'];
    }

    public function testOneResultPerEventInOrder(): void
    {
        $seen = [];
        $handler = function (Event $e, Actions $do) use (&$seen): void {
            $seen[] = $e->app() . ':' . $e->type() . ':' . $e->streamId();
            if ($e instanceof Open) {
                $do->accept()->subscribe('t/' . $e->param('video'));
            } elseif ($e instanceof ClientMessage) {
                $do->push(['echo' => $e->data()]);
            }
        };
        $out = Lambda::respond(self::body([
            self::open('a', ['video' => '1']),
            ['type' => 'client_message', 'stream' => ['id' => 'b', 'state' => null], 'data' => ['x' => 1]],
            ['type' => 'close', 'stream' => ['id' => 'c', 'state' => null], 'reason' => 'client'],
        ]), $handler);
        $this->assertJson('{"results":[
            {"actions":[{"type":"accept"},{"type":"subscribe","topic":"t/1"}]},
            {"actions":[{"type":"push","data":{"echo":{"x":1}}}]},
            {"actions":[]}
        ]}', $out);
        $this->assertSame(['test:open:a', 'test:client_message:b', 'test:close:c'], $seen);
        $this->assertJson('{"results":[]}', Lambda::respond(self::body([]), $handler));
    }

    public function testAThrowingHandlerGetsAnEmptyResultForThatEventOnly(): void
    {
        $this->capture();
        $handler = function (Event $e, Actions $do): void {
            $do->accept();
            if ($e->streamId() === 'bad') {
                throw new \RuntimeException('boom');
            }
        };
        $out = Lambda::respond(self::body([self::open('ok1'), self::open('bad'), self::open('ok2')]), $handler);
        $this->assertJson('{"results":[{"actions":[{"type":"accept"}]},{"actions":[]},{"actions":[{"type":"accept"}]}]}', $out);
        $this->assertSame(1, count($this->logged));
        $this->assertTrue(str_contains($this->logged[0], 'events[1] (open, stream bad)'), $this->logged[0]);
        $this->assertTrue(str_contains($this->logged[0], 'RuntimeException: boom'), $this->logged[0]);
    }

    public function testErrorsAndBadBuildersAlsoYieldEmptyResults(): void
    {
        $this->capture();
        $handler = function (Event $e, Actions $do): void {
            match ($e->streamId()) {
                'type_error' => strlen([]),
                'bad_topic' => $do->accept()->subscribe('no spaces allowed'),
                'warning' => $do->push($e->toArray()['nope']),
                default => $do->accept(),
            };
        };
        // Warnings are turned into exceptions by the test runner, as strict apps do.
        $out = Lambda::respond(self::body([self::open('type_error'), self::open('bad_topic'), self::open('warning'), self::open('fine')]), $handler);
        $this->assertJson('{"results":[{"actions":[]},{"actions":[]},{"actions":[]},{"actions":[{"type":"accept"}]}]}', $out);
        $this->assertSame(3, count($this->logged));
        $this->assertTrue(str_contains($this->logged[1], 'invalid topic'), $this->logged[1]);
    }

    public function testMalformedEventsKeepTheCount(): void
    {
        $this->capture();
        $calls = 0;
        $handler = function (Event $e, Actions $do) use (&$calls): void {
            $calls++;
            $do->accept();
        };
        $out = Lambda::respond(self::body([5, ['type' => 'open'], ['stream' => ['id' => 'x']], self::open('good'),
            ['type' => 'brand_new', 'stream' => ['id' => 'n', 'state' => null]]]), $handler);
        $this->assertJson('{"results":[{"actions":[]},{"actions":[]},{"actions":[]},{"actions":[{"type":"accept"}]},{"actions":[{"type":"accept"}]}]}', $out);
        $this->assertSame(2, $calls, 'the handler sees well-formed events, including unknown types');
        $this->assertSame(3, count($this->logged));
    }

    public function testUnencodableActionsYieldAnEmptyResult(): void
    {
        $this->capture();
        $out = Lambda::respond(self::body([self::open('a'), self::open('b')]), function (Event $e, Actions $do): void {
            $do->accept()->push($e->streamId() === 'a' ? INF : "bad utf8 \xff ok");
        });
        $this->assertJson('{"results":[{"actions":[]},{"actions":[{"type":"accept"},{"type":"push","data":"bad utf8 \ufffd ok"}]}]}', $out);
        $this->assertSame(1, count($this->logged));
        $this->assertTrue(str_contains($this->logged[0], 'cannot be encoded'), $this->logged[0]);
    }

    public function testPrintedOutputIsDiscardedAndLogged(): void
    {
        $this->capture();
        $level = ob_get_level();
        $out = Lambda::respond(self::body([self::open('a')]), function (Event $e, Actions $do): void {
            echo 'debugging output';
            ob_start();
            echo 'nested, never closed';
            $do->accept();
        });
        $this->assertSame($level, ob_get_level(), 'output buffers are restored');
        $this->assertJson('{"results":[{"actions":[{"type":"accept"}]}]}', $out);
        $this->assertTrue(str_contains($this->logged[0] ?? '', 'debugging output'), implode("\n", $this->logged));
    }

    public function testHandlersMayReturnActions(): void
    {
        $out = Lambda::respond(self::body([self::open('a'), self::open('b'), self::open('c')]), function (Event $e, Actions $do) {
            return match ($e->streamId()) {
                'a' => (new Actions())->accept()->push(1),
                'b' => [['type' => 'accept'], ['type' => 'push', 'data' => 2]],
                default => null,
            };
        });
        $this->assertJson('{"results":[
            {"actions":[{"type":"accept"},{"type":"push","data":1}]},
            {"actions":[{"type":"accept"},{"type":"push","data":2}]},
            {"actions":[]}
        ]}', $out);
    }

    public function testHandlerClassDispatchesByType(): void
    {
        $handler = new class extends Handler {
            public function open(Open $event, Actions $do): void
            {
                $do->accept()->subscribe('t', batchMaxMessages: 10);
            }

            public function message(Message $event, Actions $do): void
            {
                $do->push(['id' => $event->id(), 'text' => strtoupper((string) $event->data())]);
            }
        };
        $out = Lambda::respond(self::body([
            self::open('a'),
            ['type' => 'batch', 'stream' => ['id' => 'b', 'state' => null], 'messages' => [
                ['topic' => 't', 'id' => '1', 'data' => 'x'], ['topic' => 't', 'id' => '2', 'data' => 'y']]],
            ['type' => 'timer', 'stream' => ['id' => 'c', 'state' => null], 'name' => 'n', 'fired_at_ms' => 1],
        ]), $handler);
        $this->assertJson('{"results":[
            {"actions":[{"type":"accept"},{"type":"subscribe","topic":"t","batch":{"max_messages":10,"max_delay_ms":1000}}]},
            {"actions":[{"type":"push","data":{"id":"1","text":"X"}},{"type":"push","data":{"id":"2","text":"Y"}}]},
            {"actions":[]}
        ]}', $out);
    }

    public function testInvalidRequestsAreRefusedWhole(): void
    {
        $h = fn (Event $e, Actions $do) => null;
        $this->assertThrows(InvalidRequest::class, fn () => Lambda::respond('{"events": [', $h), 'not JSON');
        $this->assertThrows(InvalidRequest::class, fn () => Lambda::respond('', $h), 'not JSON');
        $this->assertThrows(InvalidRequest::class, fn () => Lambda::respond('[1,2]', $h), 'JSON object');
        $this->assertThrows(InvalidRequest::class, fn () => Lambda::respond('"x"', $h), 'JSON object');
        $this->assertThrows(InvalidRequest::class, fn () => Lambda::respond('{"v":1}', $h), '"events"');
        $this->assertThrows(InvalidRequest::class, fn () => Lambda::respond('{"v":1,"events":{"a":1}}', $h), '"events"');
        $this->assertThrows(InvalidRequest::class, fn () => Lambda::respond('{"v":2,"events":[]}', $h), 'version');
    }

    public function testHandleGivesStatusesForFrameworks(): void
    {
        $this->capture();
        $h = fn (Event $e, Actions $do) => $do->accept();
        $ok = Lambda::handle('POST', self::body([self::open('a')]), $h);
        $this->assertSame(200, $ok->status);
        $this->assertSame('application/json', $ok->headers['Content-Type']);
        $this->assertJson('{"results":[{"actions":[{"type":"accept"}]}]}', $ok->body);

        $bad = Lambda::handle('POST', 'nope', $h);
        $this->assertSame(400, $bad->status);
        $decoded = json_decode($bad->body, true);
        $this->assertSame('bad_request', $decoded['error']['code']);
        $this->assertTrue(str_contains($decoded['error']['message'], 'not JSON'));

        $get = Lambda::handle('GET', '', $h);
        $this->assertSame(405, $get->status);
        $this->assertSame('POST', $get->headers['Allow']);
        $this->assertSame('method_not_allowed', json_decode($get->body, true)['error']['code']);
    }

    public function testActionsForHelpsUnitTestAHandler(): void
    {
        $h = fn (Event $e, Actions $do) => $do->accept()->mergeState(['n' => $e->state('n', 0) + 1]);
        $this->assertSame(
            [['type' => 'accept'], ['type' => 'set_state', 'state' => ['n' => 5]]],
            Lambda::actionsFor(['type' => 'open', 'stream' => ['id' => 's', 'state' => ['n' => 4]]], $h),
        );
    }
}
