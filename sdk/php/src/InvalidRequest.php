<?php

declare(strict_types=1);

namespace Switchboard;

/** The request body is not a lambda request: answered 400, never dispatched. */
final class InvalidRequest extends \RuntimeException
{
    /** `{"error":{"code":"bad_request","message":...}}` */
    public function toJson(): string
    {
        return (string) json_encode(
            ['error' => ['code' => 'bad_request', 'message' => $this->getMessage()]],
            JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE,
        );
    }
}
