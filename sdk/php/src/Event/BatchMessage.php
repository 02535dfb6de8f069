<?php

declare(strict_types=1);

namespace Switchboard\Event;

/** One message inside a Batch event. */
final class BatchMessage
{
    public function __construct(
        public readonly string $topic,
        public readonly string $id,
        public readonly mixed $data,
    ) {
    }
}
