<?php

declare(strict_types=1);

namespace Switchboard;

use Switchboard\Event\Batch;
use Switchboard\Event\ClientMessage;
use Switchboard\Event\Close;
use Switchboard\Event\Event;
use Switchboard\Event\Message;
use Switchboard\Event\Open;
use Switchboard\Event\Timer;

/**
 * A lambda as a class with one method per event type; override the ones
 * you need and pass an instance to Lambda::serve(). Defaults answer with no
 * actions (so an open is rejected until open() accepts it), and a batch is
 * handled as its messages one by one through message().
 */
abstract class Handler
{
    public function __invoke(Event $event, Actions $do): void
    {
        match (true) {
            $event instanceof Open => $this->open($event, $do),
            $event instanceof Message => $this->message($event, $do),
            $event instanceof Batch => $this->batch($event, $do),
            $event instanceof ClientMessage => $this->clientMessage($event, $do),
            $event instanceof Timer => $this->timer($event, $do),
            $event instanceof Close => $this->close($event, $do),
            default => null,
        };
    }

    public function open(Open $event, Actions $do): void
    {
    }

    public function message(Message $event, Actions $do): void
    {
    }

    public function batch(Batch $event, Actions $do): void
    {
        foreach ($event->asMessages() as $message) {
            $this->message($message, $do);
        }
    }

    public function clientMessage(ClientMessage $event, Actions $do): void
    {
    }

    public function timer(Timer $event, Actions $do): void
    {
    }

    public function close(Close $event, Actions $do): void
    {
    }
}
