<?php

declare(strict_types=1);

namespace Switchboard\Event;

/** A timer the lambda set with the `timer` action fired. */
final class Timer extends Event
{
    public function name(): string
    {
        return $this->string('name');
    }

    /** When it fired, in milliseconds since the Unix epoch. */
    public function firedAtMs(): int
    {
        $v = $this->raw['fired_at_ms'] ?? 0;
        return is_numeric($v) ? (int) $v : 0;
    }
}
