<?php

declare(strict_types=1);

namespace Switchboard\Tests;

/** Assertions for the SDK's self-contained test runner (tests/run.php). */
abstract class TestCase
{
    public int $assertions = 0;

    protected function assertSame(mixed $expected, mixed $actual, string $message = ''): void
    {
        $this->assertions++;
        if ($expected !== $actual) {
            throw new AssertionFailed(($message !== '' ? "$message\n" : '')
                . 'expected ' . self::show($expected) . "\n     got " . self::show($actual));
        }
    }

    protected function assertTrue(bool $condition, string $message = 'expected true'): void
    {
        $this->assertions++;
        if (!$condition) {
            throw new AssertionFailed($message);
        }
    }

    /** Decodes both as JSON and compares, so key order and spacing do not matter but types do. */
    protected function assertJson(string $expectedJson, string $actualJson, string $message = ''): void
    {
        $this->assertSame(
            self::canonical(json_decode($expectedJson, false, 512, JSON_THROW_ON_ERROR)),
            self::canonical(json_decode($actualJson, false, 512, JSON_THROW_ON_ERROR)),
            $message !== '' ? $message : "JSON differs: $actualJson",
        );
    }

    /** Objects as key-sorted ['{}' => entries], so that {} and [] differ and key order does not matter. */
    private static function canonical(mixed $v): mixed
    {
        if ($v instanceof \stdClass) {
            $entries = array_map([self::class, 'canonical'], (array) $v);
            ksort($entries);
            return ['{}' => $entries];
        }
        return is_array($v) ? array_map([self::class, 'canonical'], $v) : $v;
    }

    /** @param class-string<\Throwable> $class */
    protected function assertThrows(string $class, callable $fn, string $messagePart = ''): void
    {
        $this->assertions++;
        try {
            $fn();
        } catch (\Throwable $e) {
            if (!$e instanceof $class) {
                throw new AssertionFailed("expected $class, got " . get_class($e) . ': ' . $e->getMessage());
            }
            if ($messagePart !== '' && !str_contains($e->getMessage(), $messagePart)) {
                throw new AssertionFailed("expected a message containing \"$messagePart\", got \"{$e->getMessage()}\"");
            }
            return;
        }
        throw new AssertionFailed("expected $class to be thrown");
    }

    private static function show(mixed $v): string
    {
        if (is_object($v) && !$v instanceof \stdClass) {
            return get_class($v);
        }
        return (string) json_encode($v, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION | JSON_PARTIAL_OUTPUT_ON_ERROR);
    }
}

final class AssertionFailed extends \Exception
{
}
