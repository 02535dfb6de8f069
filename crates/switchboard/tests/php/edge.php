<?php
// A lambda for the edge tests (attack_edge.rs): it tells the client who
// the gateway says it is.
//
// - open: accepts, and pushes event "peer" with
//   {"remote_addr": the event's remote_addr, "origin": headers.origin}.
// - anything else: no actions.
//
// Every event is appended to LAMBDA_LOG (if set) as one JSON line
// {"type","remote_addr","headers"}.

declare(strict_types=1);

require __DIR__ . '/lambda_common.php';

serve_events(function (array $event): array {
    log_line([
        'type' => $event['type'] ?? null,
        'remote_addr' => $event['remote_addr'] ?? null,
        'headers' => $event['headers'] ?? null,
    ]);
    if (($event['type'] ?? '') !== 'open') {
        return [];
    }
    return [
        ['type' => 'accept'],
        [
            'type' => 'push',
            'event' => 'peer',
            'data' => [
                'remote_addr' => $event['remote_addr'] ?? null,
                'origin' => $event['headers']['origin'] ?? null,
            ],
        ],
    ];
});
