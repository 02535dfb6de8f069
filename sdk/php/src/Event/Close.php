<?php

declare(strict_types=1);

namespace Switchboard\Event;

/** The stream ended. Only `publish` and `buffer` actions apply in the answer. */
final class Close extends Event
{
    /** "client" | "lambda" | "shutdown" | "slow_consumer" | "timeout" | "error" */
    public function reason(): string
    {
        return $this->string('reason');
    }
}
