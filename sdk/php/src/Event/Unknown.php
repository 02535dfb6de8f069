<?php

declare(strict_types=1);

namespace Switchboard\Event;

/** An event type this SDK does not know (a newer gateway); see type() and toArray(). */
final class Unknown extends Event
{
}
