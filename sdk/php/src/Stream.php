<?php

declare(strict_types=1);

namespace Switchboard;

/**
 * The stream an event belongs to: its gateway-unique id and the state the
 * lambda last set with `set_state` (null until then).
 */
final class Stream
{
    public function __construct(
        private readonly string $id,
        private readonly mixed $state,
    ) {
    }

    /** Gateway-unique stream id (not the client's stream name). */
    public function id(): string
    {
        return $this->id;
    }

    /**
     * The stream's state as decoded JSON (objects are arrays), or null when
     * none was set. With a key: that entry of an array state, or $default.
     */
    public function state(?string $key = null, mixed $default = null): mixed
    {
        if ($key === null) {
            return $this->state;
        }
        return is_array($this->state) && array_key_exists($key, $this->state)
            ? $this->state[$key]
            : $default;
    }
}
