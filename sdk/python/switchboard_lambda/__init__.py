"""Write Switchboard lambdas in Python: typed events in, actions out.

Standard library only. A handler is ``handler(event, actions)``; it adds
actions with the fluent builders of :class:`Actions`::

    from switchboard_lambda import Actions, Open, serve

    def handler(event, do: Actions):
        if isinstance(event, Open):
            do.accept().subscribe("news/" + event.param("topic", "all"))

    serve(handler, port=9000)          # http.server, or:
    app = wsgi_app(handler)            # any WSGI server
    body = respond(request_body, handler)  # pure: bytes in, bytes out

Every request gets exactly one result per event: a handler that raises on
one event gets an empty result for it (logged), never a wrong count. A body
that is not a lambda request is answered 400 with a JSON error.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

__all__ = [
    "Actions",
    "Batch",
    "BatchMessage",
    "ClientMessage",
    "Close",
    "Event",
    "InvalidRequest",
    "Message",
    "Open",
    "Timer",
    "Unknown",
    "actions_for",
    "handle",
    "make_server",
    "parse_event",
    "respond",
    "serve",
    "wsgi_app",
]

log = logging.getLogger("switchboard_lambda")

_TOPIC = re.compile(r"^[A-Za-z0-9_.:/@=+-]{1,256}$")


# ---- events -----------------------------------------------------------------


class Event:
    """One event from the gateway; see the subclasses."""

    type: str = ""

    def __init__(self, raw: Dict[str, Any], app: str = "") -> None:
        self.raw = raw
        self.app = app
        stream = raw.get("stream") or {}
        self.stream_id: str = stream.get("id", "")
        #: The stream's state as set by ``set_state`` (None until then).
        self.state: Any = stream.get("state")

    def state_get(self, key: str, default: Any = None) -> Any:
        """One key of a dict state, or ``default``."""
        if isinstance(self.state, dict):
            return self.state.get(key, default)
        return default

    def __repr__(self) -> str:
        return f"{type(self).__name__}(stream={self.stream_id!r})"


class Open(Event):
    """A client asks to open a stream: accept (and subscribe...) or reject."""

    type = "open"

    @property
    def transport(self) -> str:
        return str(self.raw.get("transport", ""))

    @property
    def params(self) -> Dict[str, Any]:
        p = self.raw.get("params")
        return p if isinstance(p, dict) else {}

    def param(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)

    @property
    def headers(self) -> Dict[str, str]:
        h = self.raw.get("headers")
        return {str(k).lower(): str(v) for k, v in h.items()} if isinstance(h, dict) else {}

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())

    @property
    def remote_addr(self) -> str:
        return str(self.raw.get("remote_addr", ""))


class Message(Event):
    """A message on a topic the stream follows (deliver "lambda")."""

    type = "message"

    @property
    def topic(self) -> str:
        return str(self.raw.get("topic", ""))

    @property
    def id(self) -> str:
        return str(self.raw.get("id", ""))

    @property
    def data(self) -> Any:
        return self.raw.get("data")


class BatchMessage:
    """One message of a :class:`Batch`."""

    def __init__(self, topic: str, id: str, data: Any) -> None:
        self.topic = topic
        self.id = id
        self.data = data

    def __repr__(self) -> str:
        return f"BatchMessage(topic={self.topic!r}, id={self.id!r})"


class Batch(Event):
    """Several messages at once (a subscription with a ``batch`` option)."""

    type = "batch"

    @property
    def messages(self) -> List[BatchMessage]:
        out = []
        for m in self.raw.get("messages") or []:
            if isinstance(m, dict):
                out.append(BatchMessage(str(m.get("topic", "")), str(m.get("id", "")), m.get("data")))
        return out


class ClientMessage(Event):
    """Data the client sent on its stream."""

    type = "client_message"

    @property
    def data(self) -> Any:
        return self.raw.get("data")


class Timer(Event):
    """A timer set with the ``timer`` action fired."""

    type = "timer"

    @property
    def name(self) -> str:
        return str(self.raw.get("name", ""))

    @property
    def fired_at_ms(self) -> int:
        v = self.raw.get("fired_at_ms", 0)
        return int(v) if isinstance(v, (int, float)) else 0


class Close(Event):
    """The stream ended; only ``publish`` and ``buffer`` actions apply."""

    type = "close"

    @property
    def reason(self) -> str:
        return str(self.raw.get("reason", ""))


class Unknown(Event):
    """An event type this helper does not know (a newer gateway)."""

    @property
    def type(self) -> str:  # type: ignore[override]
        return str(self.raw.get("type", ""))


_TYPES = {c.type: c for c in (Open, Message, Batch, ClientMessage, Timer, Close)}


def parse_event(raw: Any, app: str = "") -> Event:
    """The typed event for one decoded event; ValueError if it is not one."""
    if not isinstance(raw, dict):
        raise ValueError("event is not a JSON object")
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind:
        raise ValueError('event has no "type"')
    stream = raw.get("stream")
    if not isinstance(stream, dict) or not isinstance(stream.get("id"), str):
        raise ValueError(f'"{kind}" event has no "stream":{{"id":...}}')
    return _TYPES.get(kind, Unknown)(raw, app)


# ---- actions ----------------------------------------------------------------


def _topic(topic: str) -> str:
    if not isinstance(topic, str) or not _TOPIC.match(topic):
        raise ValueError(f"invalid topic {topic!r}: 1-256 of [A-Za-z0-9_.:/@=+-]")
    return topic


class Actions:
    """The actions answering one event, applied by the gateway in order.

    Builders check their arguments against the wire contract and raise
    ValueError on a mistake.
    """

    def __init__(self, state: Any = None) -> None:
        self._actions: List[Dict[str, Any]] = []
        #: The stream's state after these actions (what merge_state builds on).
        self.state = state

    def accept(self) -> "Actions":
        return self._add({"type": "accept"})

    def reject(self, code: int = 403, reason: str = "") -> "Actions":
        if not 400 <= code <= 599:
            raise ValueError(f"reject code {code} is not 400-599")
        return self._add({"type": "reject", "code": code, "reason": reason})

    def subscribe(
        self,
        topic: str,
        deliver: Optional[str] = None,
        rate_per_second: Optional[float] = None,
        rate_burst: Optional[int] = None,
        dedup_window_ms: Optional[int] = None,
        batch_max_messages: Optional[int] = None,
        batch_max_delay_ms: Optional[int] = None,
    ) -> "Actions":
        action: Dict[str, Any] = {"type": "subscribe", "topic": _topic(topic)}
        if deliver is not None:
            if deliver not in ("lambda", "direct"):
                raise ValueError(f'deliver must be "lambda" or "direct", not {deliver!r}')
            action["deliver"] = deliver
        if rate_per_second is not None or rate_burst is not None:
            if rate_per_second is None or not math.isfinite(rate_per_second) or rate_per_second <= 0:
                raise ValueError("rate limit needs rate_per_second > 0")
            burst = rate_burst if rate_burst is not None else max(1, math.ceil(rate_per_second))
            if burst < 1:
                raise ValueError("rate limit needs rate_burst >= 1")
            action["rate_limit"] = {"per_second": rate_per_second, "burst": burst}
        if dedup_window_ms is not None:
            if dedup_window_ms < 0:
                raise ValueError("dedup_window_ms must be >= 0")
            action["dedup"] = {"window_ms": dedup_window_ms}
        if batch_max_messages is not None or batch_max_delay_ms is not None:
            if (batch_max_messages or 0) < 1:
                raise ValueError("batch needs batch_max_messages >= 1")
            delay = 1000 if batch_max_delay_ms is None else batch_max_delay_ms
            if delay < 0:
                raise ValueError("batch_max_delay_ms must be >= 0")
            action["batch"] = {"max_messages": batch_max_messages, "max_delay_ms": delay}
        return self._add(action)

    def unsubscribe(self, topic: str) -> "Actions":
        return self._add({"type": "unsubscribe", "topic": _topic(topic)})

    def push(self, data: Any, event: Optional[str] = None) -> "Actions":
        action: Dict[str, Any] = {"type": "push", "data": data}
        if event is not None:
            action["event"] = event
        return self._add(action)

    def publish(self, topic: str, data: Any, dedup_key: Optional[str] = None) -> "Actions":
        action: Dict[str, Any] = {"type": "publish", "topic": _topic(topic), "data": data}
        if dedup_key is not None:
            action["dedup_key"] = dedup_key
        return self._add(action)

    def set_state(self, state: Any) -> "Actions":
        self.state = state
        return self._add({"type": "set_state", "state": state})

    def merge_state(self, **changes: Any) -> "Actions":
        """Sets these keys in a dict state (None counts as empty), keeping the others."""
        base = dict(self.state) if isinstance(self.state, dict) else {}
        base.update(changes)
        return self.set_state(base)

    def timer(self, name: str, every_ms: Optional[int] = None, after_ms: Optional[int] = None) -> "Actions":
        _timer_name(name)
        if (every_ms is None) == (after_ms is None):
            raise ValueError("timer needs exactly one of every_ms, after_ms")
        action: Dict[str, Any] = {"type": "timer", "name": name}
        key, value = ("every_ms", every_ms) if every_ms is not None else ("after_ms", after_ms)
        if value is None or value <= 0:
            raise ValueError(f"{key} must be > 0")
        action[key] = value
        return self._add(action)

    def cancel_timer(self, name: str) -> "Actions":
        _timer_name(name)
        return self._add({"type": "cancel_timer", "name": name})

    def buffer(self, sink: str, data: Any) -> "Actions":
        if not sink:
            raise ValueError("buffer needs a sink name")
        return self._add({"type": "buffer", "sink": sink, "data": data})

    def close(self, code: int = 4000, reason: str = "") -> "Actions":
        if not 4000 <= code <= 4999:
            raise ValueError(f"close code {code} is not 4000-4999")
        return self._add({"type": "close", "code": code, "reason": reason})

    def raw(self, action: Dict[str, Any]) -> "Actions":
        """Adds an action as is (one this helper has no builder for)."""
        if not isinstance(action, dict) or not isinstance(action.get("type"), str):
            raise ValueError('an action needs a "type"')
        return self._add(dict(action))

    def to_list(self) -> List[Dict[str, Any]]:
        return list(self._actions)

    def __len__(self) -> int:
        return len(self._actions)

    def _add(self, action: Dict[str, Any]) -> "Actions":
        self._actions.append(action)
        return self


def _timer_name(name: str) -> None:
    if not isinstance(name, str) or not 1 <= len(name.encode()) <= 128:
        raise ValueError("timer name must be 1-128 bytes")


# ---- dispatch ---------------------------------------------------------------


Handler = Callable[[Event, Actions], Any]


class InvalidRequest(ValueError):
    """The body is not ``{"v":1,"app":..,"events":[..]}``: answered 400."""

    def to_json(self) -> bytes:
        return json.dumps({"error": {"code": "bad_request", "message": str(self)}}).encode()


_EMPTY = b'{"actions":[]}'


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def actions_for(raw_event: Dict[str, Any], handler: Handler, app: str = "") -> List[Dict[str, Any]]:
    """The actions for one event (the handler's exceptions propagate): for tests."""
    return _run(parse_event(raw_event, app), handler).to_list()


def _run(event: Event, handler: Handler) -> Actions:
    actions = Actions(event.state)
    returned = handler(event, actions)
    if isinstance(returned, Actions):
        return returned
    if isinstance(returned, (list, tuple)):
        for a in returned:
            actions.raw(a)
    return actions


def _result(i: int, raw: Any, app: str, handler: Handler) -> bytes:
    try:
        event = parse_event(raw, app)
    except ValueError as e:
        log.warning("events[%d]: %s; answering it with no actions", i, e)
        return _EMPTY
    what = f"events[{i}] ({event.type}, stream {event.stream_id})"
    try:
        actions = _run(event, handler)
    except Exception:  # noqa: BLE001 - one event's failure must not fail the others
        log.error("handler failed on %s; answering it with no actions\n%s", what, traceback.format_exc().rstrip())
        return _EMPTY
    try:
        return _dumps({"actions": actions.to_list()})
    except (TypeError, ValueError) as e:
        log.error("actions for %s cannot be encoded as JSON (%s); answering it with no actions", what, e)
        return _EMPTY


def respond(body: Union[bytes, str], handler: Handler) -> bytes:
    """``{"results":[..]}`` for a request body, one result per event, in order.

    Raises InvalidRequest when the body is not a lambda request.
    """
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidRequest(f"body is not JSON: {e}") from None
    if not isinstance(request, dict):
        raise InvalidRequest('body must be a JSON object {"v":1,"app":..,"events":[..]}')
    if request.get("v", 1) != 1:
        raise InvalidRequest(f"unsupported protocol version {request.get('v')!r} (this helper speaks v 1)")
    events = request.get("events")
    if not isinstance(events, list):
        raise InvalidRequest('"events" must be a JSON array')
    app = request.get("app") if isinstance(request.get("app"), str) else ""
    return b'{"results":[' + b",".join(_result(i, e, app, handler) for i, e in enumerate(events)) + b"]}"


def handle(method: str, body: bytes, handler: Handler) -> Tuple[int, List[Tuple[str, str]], bytes]:
    """(status, headers, body) for one HTTP request: 405 unless POST, 400 on a bad body."""
    json_headers = [("Content-Type", "application/json")]
    if method.upper() != "POST":
        msg = {"error": {"code": "method_not_allowed", "message": "this is a Switchboard lambda: the gateway POSTs events here"}}
        return 405, json_headers + [("Allow", "POST")], _dumps(msg)
    try:
        return 200, json_headers, respond(body, handler)
    except InvalidRequest as e:
        log.warning("bad request: %s", e)
        return 400, json_headers, e.to_json()


def wsgi_app(handler: Handler) -> Callable[..., Iterable[bytes]]:
    """A WSGI application serving ``handler`` on every path."""

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        status, headers, out = handle(environ.get("REQUEST_METHOD", "GET"), body, handler)
        reason = {200: "OK", 400: "Bad Request", 405: "Method Not Allowed"}.get(status, "")
        start_response(f"{status} {reason}", headers + [("Content-Length", str(len(out)))])
        return [out]

    return app


def _request_handler(handler: Handler) -> type:
    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            status, headers, out = handle(method, body, handler)
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self._answer("POST")

        def do_GET(self) -> None:  # noqa: N802
            self._answer("GET")

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), fmt % args)

    return RequestHandler


def make_server(handler: Handler, host: str = "127.0.0.1", port: int = 9000) -> ThreadingHTTPServer:
    """An http.server serving ``handler`` (port 0: any free port; see ``server_address``)."""
    return ThreadingHTTPServer((host, port), _request_handler(handler))


def serve(handler: Handler, host: str = "127.0.0.1", port: int = 9000) -> None:
    """Serves ``handler`` until interrupted; prints the URL first."""
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = make_server(handler, host, port)
    print(f"switchboard lambda listening on http://{host}:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
