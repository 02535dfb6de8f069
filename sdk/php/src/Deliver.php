<?php

declare(strict_types=1);

namespace Switchboard;

/** How a subscribed topic's messages reach the client. */
enum Deliver: string
{
    /** Each message comes to the lambda as a `message` (or `batch`) event; the lambda pushes. */
    case Lambda = 'lambda';
    /** Messages go straight to the client; the lambda never sees them. */
    case Direct = 'direct';
}
