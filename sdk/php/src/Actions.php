<?php

declare(strict_types=1);

namespace Switchboard;

use InvalidArgumentException;

/**
 * The actions answering one event, built fluently and applied by the gateway
 * in order:
 *
 *     $do->accept()
 *        ->subscribe("live_video_comment/$video", ratePerSecond: 10, rateBurst: 20)
 *        ->setState(['video' => $video]);
 *
 * Every builder checks its arguments against the wire contract and throws
 * InvalidArgumentException on a mistake, so an error shows up in the
 * lambda's log with a stack trace instead of as a silently skipped action.
 */
final class Actions implements \JsonSerializable, \Countable
{
    private const TOPIC = '/^[A-Za-z0-9_.:\/@=+-]{1,256}$/';

    /** @var list<array<string,mixed>> */
    private array $actions = [];

    /** @param mixed $state the stream's current state, the base for mergeState() */
    public function __construct(private mixed $state = null)
    {
    }

    /** Accept an `open`. An open answered without accept is rejected (403). */
    public function accept(): self
    {
        return $this->add(['type' => 'accept']);
    }

    /** Reject an `open` with an HTTP-like status (400-599); wins over accept. */
    public function reject(int $code = 403, string $reason = ''): self
    {
        if ($code < 400 || $code > 599) {
            throw new InvalidArgumentException("reject code $code is not 400-599");
        }
        return $this->add(['type' => 'reject', 'code' => $code, 'reason' => $reason]);
    }

    /**
     * Subscribe the stream to a topic.
     *
     * @param Deliver|string|null $deliver     Deliver::Lambda (default: `message` events to
     *                                         this lambda) or Deliver::Direct (to the client as is)
     * @param float|null          $ratePerSecond drop messages over this rate (with $rateBurst)
     * @param int|null            $rateBurst   bucket size; defaults to ceil($ratePerSecond)
     * @param int|null            $dedupWindowMs drop repeats (same dedup_key, else same data) in this window
     * @param int|null            $batchMaxMessages deliver to the lambda as `batch` events of up to this many...
     * @param int|null            $batchMaxDelayMs  ...gathered for at most this long
     */
    public function subscribe(
        string $topic,
        Deliver|string|null $deliver = null,
        ?float $ratePerSecond = null,
        ?int $rateBurst = null,
        ?int $dedupWindowMs = null,
        ?int $batchMaxMessages = null,
        ?int $batchMaxDelayMs = null,
    ): self {
        $action = ['type' => 'subscribe', 'topic' => self::topic($topic)];
        if ($deliver !== null) {
            $action['deliver'] = ($deliver instanceof Deliver ? $deliver : self::deliver($deliver))->value;
        }
        if ($ratePerSecond !== null || $rateBurst !== null) {
            if ($ratePerSecond === null || !is_finite($ratePerSecond) || $ratePerSecond <= 0) {
                throw new InvalidArgumentException('rate limit needs ratePerSecond > 0');
            }
            $burst = $rateBurst ?? max(1, (int) ceil($ratePerSecond));
            if ($burst < 1) {
                throw new InvalidArgumentException('rate limit needs rateBurst >= 1');
            }
            $action['rate_limit'] = ['per_second' => $ratePerSecond, 'burst' => $burst];
        }
        if ($dedupWindowMs !== null) {
            $action['dedup'] = ['window_ms' => self::nonNegative('dedupWindowMs', $dedupWindowMs)];
        }
        if ($batchMaxMessages !== null || $batchMaxDelayMs !== null) {
            if (($batchMaxMessages ?? 0) < 1) {
                throw new InvalidArgumentException('batch needs batchMaxMessages >= 1');
            }
            $action['batch'] = [
                'max_messages' => $batchMaxMessages,
                'max_delay_ms' => self::nonNegative('batchMaxDelayMs', $batchMaxDelayMs ?? 1000),
            ];
        }
        return $this->add($action);
    }

    public function unsubscribe(string $topic): self
    {
        return $this->add(['type' => 'unsubscribe', 'topic' => self::topic($topic)]);
    }

    /** Send data to this stream's client, optionally as a named event. */
    public function push(mixed $data, ?string $event = null): self
    {
        $action = ['type' => 'push', 'data' => $data];
        if ($event !== null) {
            $action['event'] = $event;
        }
        return $this->add($action);
    }

    /** Publish data on a topic; a repeat of $dedupKey within the window is not published again. */
    public function publish(string $topic, mixed $data, ?string $dedupKey = null): self
    {
        $action = ['type' => 'publish', 'topic' => self::topic($topic), 'data' => $data];
        if ($dedupKey !== null) {
            $action['dedup_key'] = $dedupKey;
        }
        return $this->add($action);
    }

    /** Replace the stream's state (any JSON; at most 16 KiB serialized by default). */
    public function setState(mixed $state): self
    {
        $this->state = $state;
        // An empty PHP array is meant as an empty object more often than a list.
        return $this->add(['type' => 'set_state', 'state' => $state === [] ? new \stdClass() : $state]);
    }

    /**
     * Set the keys of $changes in the state (an array state; null counts as
     * empty) and keep the others: the state this event came with, plus earlier
     * setState/mergeState calls on this object.
     *
     * @param array<string,mixed> $changes
     */
    public function mergeState(array $changes): self
    {
        $base = is_array($this->state) ? $this->state : [];
        return $this->setState(array_replace($base, $changes));
    }

    /** The state as it will be after these actions (what mergeState builds on). */
    public function state(): mixed
    {
        return $this->state;
    }

    /**
     * Start (or replace) a timer: exactly one of $everyMs (repeating) or
     * $afterMs (once). The gateway sends `timer` events named $name.
     */
    public function timer(string $name, ?int $everyMs = null, ?int $afterMs = null): self
    {
        self::timerName($name);
        if (($everyMs === null) === ($afterMs === null)) {
            throw new InvalidArgumentException('timer needs exactly one of everyMs, afterMs');
        }
        $action = ['type' => 'timer', 'name' => $name];
        if ($everyMs !== null) {
            $action['every_ms'] = self::positive('everyMs', $everyMs);
        } else {
            $action['after_ms'] = self::positive('afterMs', (int) $afterMs);
        }
        return $this->add($action);
    }

    public function cancelTimer(string $name): self
    {
        self::timerName($name);
        return $this->add(['type' => 'cancel_timer', 'name' => $name]);
    }

    /** Hand client-to-server data to a sink, flushed by the gateway in batches. */
    public function buffer(string $sink, mixed $data): self
    {
        if ($sink === '') {
            throw new InvalidArgumentException('buffer needs a sink name');
        }
        return $this->add(['type' => 'buffer', 'sink' => $sink, 'data' => $data]);
    }

    /** Close the stream with an application code (4000-4999). */
    public function close(int $code = 4000, string $reason = ''): self
    {
        if ($code < 4000 || $code > 4999) {
            throw new InvalidArgumentException("close code $code is not 4000-4999");
        }
        return $this->add(['type' => 'close', 'code' => $code, 'reason' => $reason]);
    }

    /**
     * Add an action as is (one this SDK has no builder for yet).
     *
     * @param array<string,mixed> $action
     */
    public function raw(array $action): self
    {
        if (!is_string($action['type'] ?? null)) {
            throw new InvalidArgumentException('an action needs a "type"');
        }
        return $this->add($action);
    }

    /** @return list<array<string,mixed>> */
    public function toArray(): array
    {
        return $this->actions;
    }

    /** @return list<array<string,mixed>> */
    public function jsonSerialize(): array
    {
        return $this->actions;
    }

    public function count(): int
    {
        return count($this->actions);
    }

    /** @param array<string,mixed> $action */
    private function add(array $action): self
    {
        $this->actions[] = $action;
        return $this;
    }

    private static function topic(string $topic): string
    {
        if (!preg_match(self::TOPIC, $topic)) {
            throw new InvalidArgumentException("invalid topic \"$topic\": 1-256 of [A-Za-z0-9_.:/@=+-]");
        }
        return $topic;
    }

    private static function deliver(string $deliver): Deliver
    {
        return Deliver::tryFrom($deliver)
            ?? throw new InvalidArgumentException("deliver must be \"lambda\" or \"direct\", not \"$deliver\"");
    }

    private static function timerName(string $name): void
    {
        if ($name === '' || strlen($name) > 128) {
            throw new InvalidArgumentException('timer name must be 1-128 bytes');
        }
    }

    private static function positive(string $what, int $v): int
    {
        if ($v <= 0) {
            throw new InvalidArgumentException("$what must be > 0");
        }
        return $v;
    }

    private static function nonNegative(string $what, int $v): int
    {
        if ($v < 0) {
            throw new InvalidArgumentException("$what must be >= 0");
        }
        return $v;
    }
}
