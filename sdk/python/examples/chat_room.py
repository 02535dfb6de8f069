"""A chat room lambda, with the Python helper.

    python3 sdk/python/examples/chat_room.py --port 9100
    switchboard serve --app chat=http://127.0.0.1:9100/

- open: params.room (1-32 of a-z 0-9 _ -) and params.nick (1-20 letters,
  digits, _ -) are required; the stream follows ``chat/<room>`` through this
  lambda and is told who it is.
- client_message {"text": ...}: at most 3 per 5 s per stream (kept in the
  stream state), published on the room's topic.
- message: pushed as event "chat", with "mine": true on the sender's own
  messages and words from a small blocklist masked.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from switchboard_lambda import Actions, ClientMessage, Event, Message, Open, serve  # noqa: E402

ROOM = re.compile(r"^[a-z0-9_-]{1,32}$")
NICK = re.compile(r"^[A-Za-z0-9_-]{1,20}$")
BLOCKED = re.compile(r"\b(spam|scam)\b", re.IGNORECASE)
RATE_MAX, RATE_WINDOW_MS = 3, 5000


def now_ms() -> int:
    return int(time.time() * 1000)


def handler(event: Event, do: Actions) -> None:
    if isinstance(event, Open):
        room, nick = event.param("room"), event.param("nick")
        if not isinstance(room, str) or not ROOM.match(room):
            do.reject(400, "room must be 1-32 of a-z 0-9 _ -")
        elif not isinstance(nick, str) or not NICK.match(nick):
            do.reject(400, "nick must be 1-20 letters, digits, _ -")
        else:
            do.accept().subscribe(f"chat/{room}", deliver="lambda", rate_per_second=50, rate_burst=100)
            do.set_state({"room": room, "nick": nick, "sent": []})
            do.push({"room": room, "nick": nick}, event="welcome")
    elif isinstance(event, ClientMessage):
        room = event.state_get("room")
        text = event.data.get("text") if isinstance(event.data, dict) else None
        if not isinstance(room, str) or not isinstance(text, str) or not 0 < len(text.strip()) <= 500:
            do.push({"message": 'send {"text": "..."} (1-500 characters)'}, event="notice")
            return
        t = now_ms()
        sent = [s for s in event.state_get("sent", []) if isinstance(s, int) and s > t - RATE_WINDOW_MS]
        if len(sent) >= RATE_MAX:
            do.merge_state(sent=sent).push({"retry_after_ms": sent[0] + RATE_WINDOW_MS - t}, event="rate_limited")
            return
        do.publish(f"chat/{room}", {"from": event.state_get("nick"), "stream": event.stream_id, "text": text.strip(), "at": t})
        do.merge_state(sent=sent + [t])
    elif isinstance(event, Message):
        m = event.data if isinstance(event.data, dict) else {}
        if not isinstance(m.get("text"), str):
            return
        do.push(
            {
                "from": m.get("from"),
                "text": BLOCKED.sub(lambda w: "*" * len(w.group(0)), m["text"]),
                "mine": m.get("stream") == event.stream_id,
                "at": m.get("at"),
            },
            event="chat",
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9100, help="0 picks a free port (printed)")
    args = ap.parse_args()
    serve(handler, args.host, args.port)
