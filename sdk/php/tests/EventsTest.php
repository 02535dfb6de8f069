<?php

declare(strict_types=1);

namespace Switchboard\Tests;

use Switchboard\Event\Batch;
use Switchboard\Event\BatchMessage;
use Switchboard\Event\ClientMessage;
use Switchboard\Event\Close;
use Switchboard\Event\Event;
use Switchboard\Event\Message;
use Switchboard\Event\Open;
use Switchboard\Event\Timer;
use Switchboard\Event\Unknown;

final class EventsTest extends TestCase
{
    public function testOpenAccessors(): void
    {
        $e = Event::fromArray([
            'type' => 'open',
            'stream' => ['id' => 's-1', 'state' => null],
            'transport' => 'ws',
            'params' => ['video' => '1234', 'lang' => 'fr'],
            'headers' => ['user-agent' => 'test', 'cookie' => 'a=b'],
            'remote_addr' => '10.0.0.1',
        ], 'live_comments');
        $this->assertTrue($e instanceof Open);
        assert($e instanceof Open);
        $this->assertSame('open', $e->type());
        $this->assertSame('live_comments', $e->app());
        $this->assertSame('s-1', $e->streamId());
        $this->assertSame('s-1', $e->stream()->id());
        $this->assertSame(null, $e->state());
        $this->assertSame('fallback', $e->state('x', 'fallback'));
        $this->assertSame('ws', $e->transport());
        $this->assertSame(['video' => '1234', 'lang' => 'fr'], $e->params());
        $this->assertSame('1234', $e->param('video'));
        $this->assertSame('en', $e->param('missing', 'en'));
        $this->assertSame('test', $e->header('User-Agent'));
        $this->assertSame(null, $e->header('authorization'));
        $this->assertSame(['user-agent' => 'test', 'cookie' => 'a=b'], $e->headers());
        $this->assertSame('10.0.0.1', $e->remoteAddr());
    }

    public function testOpenWithMissingOptionalFields(): void
    {
        $e = Event::fromArray(['type' => 'open', 'stream' => ['id' => 's']]);
        assert($e instanceof Open);
        $this->assertSame([], $e->params());
        $this->assertSame([], $e->headers());
        $this->assertSame('', $e->transport());
        $this->assertSame(null, $e->state());
    }

    public function testMessageClientMessageTimerClose(): void
    {
        $state = ['video' => '1', 'count' => 3];
        $m = Event::fromArray(['type' => 'message', 'stream' => ['id' => 's', 'state' => $state],
            'topic' => 'live_video_comment/1', 'id' => '17', 'data' => ['text' => 'hi']]);
        assert($m instanceof Message);
        $this->assertSame('live_video_comment/1', $m->topic());
        $this->assertSame('17', $m->id());
        $this->assertSame(['text' => 'hi'], $m->data());
        $this->assertSame($state, $m->state());
        $this->assertSame(3, $m->state('count'));

        $c = Event::fromArray(['type' => 'client_message', 'stream' => ['id' => 's', 'state' => null], 'data' => 'raw']);
        assert($c instanceof ClientMessage);
        $this->assertSame('raw', $c->data());

        $t = Event::fromArray(['type' => 'timer', 'stream' => ['id' => 's', 'state' => null], 'name' => 'tick', 'fired_at_ms' => 1700000000000]);
        assert($t instanceof Timer);
        $this->assertSame('tick', $t->name());
        $this->assertSame(1700000000000, $t->firedAtMs());

        $x = Event::fromArray(['type' => 'close', 'stream' => ['id' => 's', 'state' => null], 'reason' => 'shutdown']);
        assert($x instanceof Close);
        $this->assertSame('shutdown', $x->reason());
    }

    public function testBatch(): void
    {
        $b = Event::fromArray(['type' => 'batch', 'stream' => ['id' => 's', 'state' => ['n' => 1]], 'messages' => [
            ['topic' => 't', 'id' => '1', 'data' => 'a'],
            ['topic' => 't', 'id' => '2', 'data' => ['b' => true]],
        ]]);
        assert($b instanceof Batch);
        $this->assertSame(2, count($b->messages()));
        $this->assertTrue($b->messages()[1] instanceof BatchMessage);
        $this->assertSame(['b' => true], $b->messages()[1]->data);
        $ms = $b->asMessages();
        $this->assertTrue($ms[0] instanceof Message);
        $this->assertSame('1', $ms[0]->id());
        $this->assertSame('s', $ms[1]->streamId());
        $this->assertSame(1, $ms[1]->state('n'));
    }

    public function testUnknownTypesAndMalformedEvents(): void
    {
        $u = Event::fromArray(['type' => 'from_the_future', 'stream' => ['id' => 's'], 'x' => 1]);
        $this->assertTrue($u instanceof Unknown);
        $this->assertSame('from_the_future', $u->type());
        $this->assertSame(1, $u->toArray()['x']);
        $this->assertThrows(\InvalidArgumentException::class, fn () => Event::fromArray(['stream' => ['id' => 's']]), 'type');
        $this->assertThrows(\InvalidArgumentException::class, fn () => Event::fromArray(['type' => 'open']), 'stream');
        $this->assertThrows(\InvalidArgumentException::class, fn () => Event::fromArray(['type' => 'open', 'stream' => ['id' => 5]]), 'stream');
    }
}
