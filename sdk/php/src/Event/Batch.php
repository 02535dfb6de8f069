<?php

declare(strict_types=1);

namespace Switchboard\Event;

/** Several messages at once, for a subscription with a `batch` option. */
final class Batch extends Event
{
    /** @return list<BatchMessage> */
    public function messages(): array
    {
        $out = [];
        foreach ($this->map('messages') as $m) {
            if (!is_array($m)) {
                continue;
            }
            $out[] = new BatchMessage(
                is_scalar($m['topic'] ?? null) ? (string) $m['topic'] : '',
                is_scalar($m['id'] ?? null) ? (string) $m['id'] : '',
                $m['data'] ?? null,
            );
        }
        return $out;
    }

    /**
     * Each message as a Message event of the same stream, e.g. to reuse a
     * message handler.
     *
     * @return list<Message>
     */
    public function asMessages(): array
    {
        return array_map(fn (BatchMessage $m) => new Message($this->app, $this->stream, [
            'type' => 'message',
            'stream' => $this->raw['stream'] ?? null,
            'topic' => $m->topic,
            'id' => $m->id,
            'data' => $m->data,
        ]), $this->messages());
    }
}
