<?php

declare(strict_types=1);

namespace Switchboard\Event;

use Switchboard\Stream;

/**
 * One event from the gateway. Concrete types: Open, Message, Batch,
 * ClientMessage, Timer, Close; an event type this SDK does not know yet
 * arrives as Unknown (answer it with no actions).
 */
abstract class Event
{
    /** @param array<string,mixed> $raw the event as decoded JSON */
    final public function __construct(
        protected readonly string $app,
        protected readonly Stream $stream,
        protected readonly array $raw,
    ) {
    }

    /**
     * Builds the typed event for one decoded event object.
     *
     * @param array<string,mixed> $raw
     * @throws \InvalidArgumentException when it is not an event (no type or stream)
     */
    public static function fromArray(array $raw, string $app = ''): Event
    {
        $type = $raw['type'] ?? null;
        if (!is_string($type) || $type === '') {
            throw new \InvalidArgumentException('event has no "type"');
        }
        $stream = $raw['stream'] ?? null;
        if (!is_array($stream) || !is_string($stream['id'] ?? null)) {
            throw new \InvalidArgumentException("\"$type\" event has no \"stream\":{\"id\":...}");
        }
        $class = match ($type) {
            'open' => Open::class,
            'message' => Message::class,
            'batch' => Batch::class,
            'client_message' => ClientMessage::class,
            'timer' => Timer::class,
            'close' => Close::class,
            default => Unknown::class,
        };
        return new $class($app, new Stream($stream['id'], $stream['state'] ?? null), $raw);
    }

    /** The event's `type`, e.g. "open" or "client_message". */
    public function type(): string
    {
        return (string) $this->raw['type'];
    }

    /** The app this lambda serves, as named in the request. */
    public function app(): string
    {
        return $this->app;
    }

    public function stream(): Stream
    {
        return $this->stream;
    }

    /** Shortcut for stream()->id(). */
    public function streamId(): string
    {
        return $this->stream->id();
    }

    /** Shortcut for stream()->state(): the whole state, or one key of it. */
    public function state(?string $key = null, mixed $default = null): mixed
    {
        return $this->stream->state($key, $default);
    }

    /** @return array<string,mixed> the event exactly as received (decoded) */
    public function toArray(): array
    {
        return $this->raw;
    }

    protected function string(string $key, string $default = ''): string
    {
        $v = $this->raw[$key] ?? $default;
        return is_scalar($v) ? (string) $v : $default;
    }

    /** @return array<string,mixed> */
    protected function map(string $key): array
    {
        $v = $this->raw[$key] ?? [];
        return is_array($v) ? $v : [];
    }
}
