<?php

declare(strict_types=1);

namespace Switchboard\Event;

/** A message published on a topic the stream subscribed to (deliver "lambda"). */
final class Message extends Event
{
    public function topic(): string
    {
        return $this->string('topic');
    }

    /** The message's id: its position in the topic, assigned by the broker. */
    public function id(): string
    {
        return $this->string('id');
    }

    /** The published data, decoded (objects are arrays). */
    public function data(): mixed
    {
        return $this->raw['data'] ?? null;
    }
}
