<?php

declare(strict_types=1);

namespace Switchboard\Event;

/** Data the client sent on its stream (WebSocket `send`). */
final class ClientMessage extends Event
{
    /** The data, decoded (objects are arrays). */
    public function data(): mixed
    {
        return $this->raw['data'] ?? null;
    }
}
