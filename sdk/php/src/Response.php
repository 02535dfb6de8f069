<?php

declare(strict_types=1);

namespace Switchboard;

/** What to answer the gateway: status, headers and body (see Lambda::handle). */
final class Response
{
    /** @param array<string,string> $headers */
    public function __construct(
        public readonly int $status,
        public readonly string $body,
        public readonly array $headers = ['Content-Type' => 'application/json'],
    ) {
    }

    /** Writes this response with PHP's SAPI functions (php -S, php-fpm, Apache). */
    public function send(): void
    {
        if (!headers_sent()) {
            http_response_code($this->status);
            foreach ($this->headers as $name => $value) {
                header("$name: $value");
            }
        }
        echo $this->body;
    }
}
