<?php

declare(strict_types=1);

namespace Switchboard\Event;

/** A client asks to open a stream: answer accept (with subscriptions...) or reject. */
final class Open extends Event
{
    /** "ws" or "sse". */
    public function transport(): string
    {
        return $this->string('transport');
    }

    /** @return array<string,mixed> the client's params (query parameters are strings) */
    public function params(): array
    {
        return $this->map('params');
    }

    /** One param, or $default when absent. */
    public function param(string $name, mixed $default = null): mixed
    {
        $params = $this->params();
        return array_key_exists($name, $params) ? $params[$name] : $default;
    }

    /** @return array<string,string> forwarded request headers, lowercase names */
    public function headers(): array
    {
        return array_map(fn ($v) => is_scalar($v) ? (string) $v : '', $this->map('headers'));
    }

    /** One forwarded header (case-insensitive name), or null. */
    public function header(string $name): ?string
    {
        return $this->headers()[strtolower($name)] ?? null;
    }

    public function remoteAddr(): string
    {
        return $this->string('remote_addr');
    }
}
