<?php

declare(strict_types=1);

namespace Switchboard\Tests;

use InvalidArgumentException;
use Switchboard\Actions;
use Switchboard\Deliver;
use Switchboard\Lambda;

final class ActionsTest extends TestCase
{
    private function json(Actions $a): string
    {
        return (string) json_encode($a, Lambda::JSON_FLAGS);
    }

    public function testEveryBuilderWritesTheWireShape(): void
    {
        $a = (new Actions())
            ->accept()
            ->reject(404, 'unknown video')
            ->subscribe('live_video_comment/1234')
            ->subscribe('viewers/1234', deliver: Deliver::Direct)
            ->unsubscribe('old/topic')
            ->push(['text' => 'hi'], event: 'comment')
            ->push('plain')
            ->publish('live_video_comment/1234', ['text' => 'x'], dedupKey: 'k1')
            ->publish('t', 1)
            ->setState(['count' => 1])
            ->timer('tick', everyMs: 1000)
            ->timer('once', afterMs: 250)
            ->cancelTimer('tick')
            ->buffer('logs', ['line' => 'l'])
            ->close(4001, 'bye')
            ->raw(['type' => 'future_action', 'x' => 1]);
        $this->assertJson('[
            {"type":"accept"},
            {"type":"reject","code":404,"reason":"unknown video"},
            {"type":"subscribe","topic":"live_video_comment/1234"},
            {"type":"subscribe","topic":"viewers/1234","deliver":"direct"},
            {"type":"unsubscribe","topic":"old/topic"},
            {"type":"push","data":{"text":"hi"},"event":"comment"},
            {"type":"push","data":"plain"},
            {"type":"publish","topic":"live_video_comment/1234","data":{"text":"x"},"dedup_key":"k1"},
            {"type":"publish","topic":"t","data":1},
            {"type":"set_state","state":{"count":1}},
            {"type":"timer","name":"tick","every_ms":1000},
            {"type":"timer","name":"once","after_ms":250},
            {"type":"cancel_timer","name":"tick"},
            {"type":"buffer","sink":"logs","data":{"line":"l"}},
            {"type":"close","code":4001,"reason":"bye"},
            {"type":"future_action","x":1}
        ]', $this->json($a));
        $this->assertSame(16, count($a));
    }

    public function testSubscribeOptions(): void
    {
        $a = (new Actions())
            ->subscribe('a', deliver: 'lambda', ratePerSecond: 10, rateBurst: 20, dedupWindowMs: 60000, batchMaxMessages: 50, batchMaxDelayMs: 1000)
            ->subscribe('b', ratePerSecond: 2.5)
            ->subscribe('c', batchMaxMessages: 10);
        $this->assertJson('[
            {"type":"subscribe","topic":"a","deliver":"lambda","rate_limit":{"per_second":10.0,"burst":20},
             "dedup":{"window_ms":60000},"batch":{"max_messages":50,"max_delay_ms":1000}},
            {"type":"subscribe","topic":"b","rate_limit":{"per_second":2.5,"burst":3}},
            {"type":"subscribe","topic":"c","batch":{"max_messages":10,"max_delay_ms":1000}}
        ]', $this->json($a));
    }

    public function testBuildersRefuseWhatTheGatewayWouldSkip(): void
    {
        $a = new Actions();
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->reject(200), '400-599');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->close(1000), '4000-4999');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->subscribe('bad topic'), 'invalid topic');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->subscribe(''), 'invalid topic');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->subscribe(str_repeat('a', 257)), 'invalid topic');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->publish('a b', 1), 'invalid topic');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->subscribe('t', deliver: 'sometimes'), 'deliver');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->subscribe('t', ratePerSecond: 0), 'ratePerSecond');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->subscribe('t', rateBurst: 3), 'ratePerSecond');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->subscribe('t', ratePerSecond: 1, rateBurst: 0), 'rateBurst');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->subscribe('t', batchMaxMessages: 0), 'batchMaxMessages');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->subscribe('t', batchMaxDelayMs: 10), 'batchMaxMessages');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->timer('t'), 'exactly one');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->timer('t', everyMs: 1, afterMs: 1), 'exactly one');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->timer('t', everyMs: 0), 'everyMs');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->timer(''), 'timer name');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->cancelTimer(str_repeat('x', 129)), 'timer name');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->buffer('', 1), 'sink');
        $this->assertThrows(InvalidArgumentException::class, fn () => $a->raw(['no' => 'type']), 'type');
        $this->assertSame(0, count($a), 'a refused action is not added');
        // Every topic character the contract allows.
        $a->subscribe('A-z_0.9:/@=+-');
        $this->assertSame(1, count($a));
    }

    public function testStateHelpers(): void
    {
        $a = new Actions(['video' => '1', 'count' => 1]);
        $a->mergeState(['count' => 2])->mergeState(['lang' => 'fr']);
        $this->assertSame(['video' => '1', 'count' => 2, 'lang' => 'fr'], $a->state());
        $this->assertJson('[
            {"type":"set_state","state":{"video":"1","count":2}},
            {"type":"set_state","state":{"video":"1","count":2,"lang":"fr"}}
        ]', $this->json($a));

        $fresh = (new Actions(null))->mergeState(['n' => 1]);
        $this->assertJson('[{"type":"set_state","state":{"n":1}}]', $this->json($fresh));

        $this->assertJson('[{"type":"set_state","state":{}}]', $this->json((new Actions())->setState([])),
            'an empty array state is an empty object');
        $this->assertJson('[{"type":"set_state","state":null}]', $this->json((new Actions())->setState(null)));
        $this->assertJson('[{"type":"set_state","state":[1,2]}]', $this->json((new Actions())->setState([1, 2])));
    }
}
