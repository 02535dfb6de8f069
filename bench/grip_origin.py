#!/usr/bin/env python3
"""A tiny GRIP origin for benchmarking Pushpin (bench/lib.sh starts it).

Pushpin proxies every client request here; this origin only tells it which
channel the client subscribes to, and Pushpin holds the connection:

- WebSocket (route with `over_http`): Pushpin POSTs WebSocket-over-HTTP
  events (`Content-Type: application/websocket-events`). On OPEN we answer
  `OPEN`, a GRIP control message `c:{"type":"subscribe","channel":CH}` (with
  `Sec-WebSocket-Extensions: grip; message-prefix=""`) and then a TEXT `{"type":"opened"}`
  that the load generator waits for, like Switchboard's `opened` frame.
- SSE: `GET /sub/CH` is answered with `Grip-Hold: stream`, `Grip-Channel: CH`
  and `Content-Type: text/event-stream`.

The channel is the path after `/sub/` (e.g. `/sub/bench/0` -> `bench/0`).
`GET /health` answers 200. Standard library only.

    python3 bench/grip_origin.py --port 0 --port-file /tmp/origin.port
"""

import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

PREFIX = "/sub/"


def channel_of(path):
    """The channel named by a request path, or None."""
    p = unquote(urlsplit(path).path)
    if not p.startswith(PREFIX) or len(p) == len(PREFIX):
        return None
    return p[len(PREFIX):]


def parse_events(body):
    """WebSocket-over-HTTP events: a list of (type, content bytes or None)."""
    events = []
    at = 0
    while at < len(body):
        nl = body.find(b"\r\n", at)
        if nl < 0:
            raise ValueError("event line without CRLF")
        line = body[at:nl].decode("ascii")
        at = nl + 2
        if " " in line:
            kind, size = line.split(" ", 1)
            n = int(size, 16)
            content = body[at:at + n]
            if len(content) != n or body[at + n:at + n + 2] != b"\r\n":
                raise ValueError("truncated event content")
            at += n + 2
            events.append((kind, content))
        else:
            events.append((line, None))
    return events


def event(kind, content=None):
    if content is None:
        return kind.encode("ascii") + b"\r\n"
    return b"%s %x\r\n%s\r\n" % (kind.encode("ascii"), len(content), content)


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "grip-origin"

    def log_message(self, fmt, *args):  # quiet: one request per connection
        pass

    def reply(self, status, headers, body=b""):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            return self.reply(200, [("Content-Type", "text/plain")], b"ok\n")
        ch = channel_of(self.path)
        if ch is None:
            return self.reply(404, [("Content-Type", "text/plain")], b"no channel\n")
        self.reply(
            200,
            [
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-cache"),
                ("Grip-Hold", "stream"),
                ("Grip-Channel", ch),
            ],
        )

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype != "application/websocket-events":
            return self.reply(400, [("Content-Type", "text/plain")], b"want websocket-events\n")
        try:
            events = parse_events(body)
        except ValueError as e:
            return self.reply(400, [("Content-Type", "text/plain")], f"{e}\n".encode())
        out = b""
        headers = [("Content-Type", "application/websocket-events")]
        for kind, content in events:
            if kind == "OPEN":
                ch = channel_of(self.path)
                if ch is None:
                    return self.reply(404, [("Content-Type", "text/plain")], b"no channel\n")
                sub = json.dumps({"type": "subscribe", "channel": ch}, separators=(",", ":"))
                out += event("OPEN")
                out += event("TEXT", b"c:" + sub.encode())
                out += event("TEXT", b'{"type":"opened"}')
                # An empty message prefix: TEXT events not starting with "c:" go to
                # the client as they are (the default prefix would be "m:").
                headers.append(("Sec-WebSocket-Extensions", 'grip; message-prefix=""'))
            elif kind == "CLOSE":
                out += event("CLOSE", content)
            elif kind == "PING":
                out += event("PONG", content)
            # TEXT/BINARY from the client, PONG, DISCONNECT: nothing to say.
        self.reply(200, headers, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the bound port here once listening")
    a = ap.parse_args()
    if not a.host.startswith("127."):
        sys.exit("grip_origin: loopback addresses only")
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 4096
    srv = ThreadingHTTPServer((a.host, a.port), Origin)
    port = srv.server_address[1]
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, a.port_file)
    print(f"grip_origin listening on http://{a.host}:{port}", file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
