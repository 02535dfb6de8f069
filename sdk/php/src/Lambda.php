<?php

declare(strict_types=1);

namespace Switchboard;

use Switchboard\Event\Event;

/**
 * The entry point: turns the gateway's request into exactly one result per
 * event. A handler is `function (Event $event, Actions $do): void` (or a
 * Handler subclass); it adds actions to $do. It may instead return an
 * Actions object or a list of action arrays.
 *
 *     Lambda::serve($handler);                       // php -S, php-fpm: reads the request, answers
 *     $r = Lambda::handle($method, $body, $handler); // a framework controller: status + body
 *     $json = Lambda::respond($body, $handler);      // pure: body in, body out (throws InvalidRequest)
 *
 * A handler that throws on one event gets an empty result for that event
 * (logged), never a wrong result count; anything a handler prints is
 * discarded (logged) so that it cannot corrupt the answer.
 */
final class Lambda
{
    public const JSON_FLAGS = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE
        | JSON_PRESERVE_ZERO_FRACTION | JSON_INVALID_UTF8_SUBSTITUTE;

    /** @var (callable(string):void)|null */
    private static $logger = null;

    /** Answers the current request (php -S, php-fpm, Apache mod_php). */
    public static function serve(callable $handler): void
    {
        $method = $_SERVER['REQUEST_METHOD'] ?? 'POST';
        $body = (string) file_get_contents('php://input');
        self::handle($method, $body, $handler)->send();
    }

    /** The response to one HTTP request, for any framework: 405 unless POST, 400 on a bad body. */
    public static function handle(string $method, string $body, callable $handler): Response
    {
        if (strtoupper($method) !== 'POST') {
            return new Response(405, (string) json_encode(['error' => [
                'code' => 'method_not_allowed',
                'message' => 'this is a Switchboard lambda: the gateway POSTs {"v":1,"app":..,"events":[..]} here',
            ]], self::JSON_FLAGS), ['Content-Type' => 'application/json', 'Allow' => 'POST']);
        }
        try {
            return new Response(200, self::respond($body, $handler));
        } catch (InvalidRequest $e) {
            self::log('bad request: ' . $e->getMessage());
            return new Response(400, $e->toJson());
        }
    }

    /**
     * `{"results":[...]}` for a request body: one result per event, in order.
     *
     * @throws InvalidRequest when the body is not `{"v":1,"app":..,"events":[..]}`
     */
    public static function respond(string $body, callable $handler): string
    {
        try {
            $request = json_decode($body, true, 512, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new InvalidRequest('body is not JSON: ' . $e->getMessage());
        }
        if (!is_array($request) || array_is_list($request) && $request !== []) {
            throw new InvalidRequest('body must be a JSON object {"v":1,"app":..,"events":[..]}');
        }
        $v = $request['v'] ?? 1;
        if ($v !== 1) {
            throw new InvalidRequest('unsupported protocol version ' . json_encode($v) . ' (this SDK speaks v 1)');
        }
        $events = $request['events'] ?? null;
        if (!is_array($events) || !array_is_list($events)) {
            throw new InvalidRequest('"events" must be a JSON array');
        }
        $app = is_string($request['app'] ?? null) ? $request['app'] : '';
        $results = [];
        foreach ($events as $i => $raw) {
            $results[] = self::result($i, $raw, $app, $handler);
        }
        return '{"results":[' . implode(',', $results) . ']}';
    }

    /**
     * The actions for one event, as a list of action arrays (the handler's
     * exceptions propagate): for tests of a handler.
     *
     * @param array<string,mixed> $event
     * @return list<array<string,mixed>>
     */
    public static function actionsFor(array $event, callable $handler, string $app = ''): array
    {
        $e = Event::fromArray($event, $app);
        return self::run($e, $handler)->toArray();
    }

    /** Where diagnostics go: error_log() (the server's stderr under php -S) unless set. */
    public static function setLogger(?callable $logger): void
    {
        self::$logger = $logger;
    }

    /** One result, encoded: `{"actions":[..]}`; empty when anything goes wrong. */
    private static function result(int $i, mixed $raw, string $app, callable $handler): string
    {
        $empty = '{"actions":[]}';
        if (!is_array($raw)) {
            self::log("events[$i] is not an object; answering it with no actions");
            return $empty;
        }
        try {
            $event = Event::fromArray($raw, $app);
        } catch (\InvalidArgumentException $e) {
            self::log("events[$i]: {$e->getMessage()}; answering it with no actions");
            return $empty;
        }
        $what = "events[$i] ({$event->type()}, stream {$event->streamId()})";
        try {
            $actions = self::run($event, $handler, $what);
        } catch (\Throwable $e) {
            self::log(sprintf(
                'handler failed on %s: %s: %s at %s:%d; answering it with no actions',
                $what,
                get_class($e),
                $e->getMessage(),
                $e->getFile(),
                $e->getLine(),
            ));
            return $empty;
        }
        try {
            return json_encode(['actions' => $actions], self::JSON_FLAGS | JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            self::log("actions for $what cannot be encoded as JSON ({$e->getMessage()}); answering it with no actions");
            return $empty;
        }
    }

    private static function run(Event $event, callable $handler, string $what = 'event'): Actions
    {
        $actions = new Actions($event->state());
        $level = ob_get_level();
        ob_start();
        try {
            $returned = $handler($event, $actions);
        } finally {
            $printed = '';
            while (ob_get_level() > $level) {
                $printed = ob_get_clean() . $printed;
            }
            if ($printed !== '') {
                self::log(sprintf('handler printed %d bytes on %s; discarded: %s', strlen($printed), $what, substr($printed, 0, 200)));
            }
        }
        if ($returned instanceof Actions) {
            return $returned;
        }
        if (is_array($returned)) {
            foreach ($returned as $action) {
                if (!is_array($action)) {
                    throw new \UnexpectedValueException('a handler returning an array must return a list of action arrays');
                }
                $actions->raw($action);
            }
        }
        return $actions;
    }

    private static function log(string $message): void
    {
        if (self::$logger !== null) {
            (self::$logger)($message);
        } else {
            error_log('switchboard: ' . $message);
        }
    }
}
