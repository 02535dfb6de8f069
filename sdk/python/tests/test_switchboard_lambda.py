"""Tests of the Python helper and its example: python3 -m unittest discover -s sdk/python/tests"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import sys
import threading
import unittest
import urllib.error
import urllib.request
from wsgiref.util import setup_testing_defaults

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from switchboard_lambda import (  # noqa: E402
    Actions,
    Batch,
    ClientMessage,
    Close,
    InvalidRequest,
    Message,
    Open,
    Timer,
    Unknown,
    actions_for,
    handle,
    make_server,
    parse_event,
    respond,
    wsgi_app,
)


def body(*events):
    return json.dumps({"v": 1, "app": "test", "events": list(events)}).encode()


def open_event(sid, params=None, state=None):
    return {"type": "open", "stream": {"id": sid, "state": state}, "transport": "ws",
            "params": params or {}, "headers": {"User-Agent": "ua"}, "remote_addr": "127.0.0.1"}


def results(out: bytes):
    return [r["actions"] for r in json.loads(out)["results"]]


class ActionsTest(unittest.TestCase):
    def test_every_builder_writes_the_wire_shape(self):
        a = (Actions().accept().reject(404, "nope").subscribe("t/1").subscribe("v/1", deliver="direct")
             .unsubscribe("old").push({"x": 1}, event="e").push("plain").publish("t/1", {"y": 2}, dedup_key="k")
             .set_state({"n": 1}).timer("tick", every_ms=1000).timer("once", after_ms=5).cancel_timer("tick")
             .buffer("logs", [1]).close(4001, "bye").raw({"type": "future", "z": True}))
        self.assertEqual(a.to_list(), [
            {"type": "accept"},
            {"type": "reject", "code": 404, "reason": "nope"},
            {"type": "subscribe", "topic": "t/1"},
            {"type": "subscribe", "topic": "v/1", "deliver": "direct"},
            {"type": "unsubscribe", "topic": "old"},
            {"type": "push", "data": {"x": 1}, "event": "e"},
            {"type": "push", "data": "plain"},
            {"type": "publish", "topic": "t/1", "data": {"y": 2}, "dedup_key": "k"},
            {"type": "set_state", "state": {"n": 1}},
            {"type": "timer", "name": "tick", "every_ms": 1000},
            {"type": "timer", "name": "once", "after_ms": 5},
            {"type": "cancel_timer", "name": "tick"},
            {"type": "buffer", "sink": "logs", "data": [1]},
            {"type": "close", "code": 4001, "reason": "bye"},
            {"type": "future", "z": True},
        ])
        self.assertEqual(len(a), 15)

    def test_subscribe_options(self):
        a = Actions().subscribe("a", deliver="lambda", rate_per_second=10, rate_burst=20, dedup_window_ms=60000,
                                batch_max_messages=50, batch_max_delay_ms=1000).subscribe("b", rate_per_second=2.5)
        self.assertEqual(a.to_list(), [
            {"type": "subscribe", "topic": "a", "deliver": "lambda", "rate_limit": {"per_second": 10, "burst": 20},
             "dedup": {"window_ms": 60000}, "batch": {"max_messages": 50, "max_delay_ms": 1000}},
            {"type": "subscribe", "topic": "b", "rate_limit": {"per_second": 2.5, "burst": 3}},
        ])

    def test_builders_refuse_what_the_gateway_would_skip(self):
        a = Actions()
        for bad in (
            lambda: a.reject(200), lambda: a.close(1000), lambda: a.subscribe("has space"),
            lambda: a.subscribe(""), lambda: a.subscribe("x" * 257), lambda: a.publish("a b", 1),
            lambda: a.subscribe("t", deliver="maybe"), lambda: a.subscribe("t", rate_per_second=0),
            lambda: a.subscribe("t", rate_burst=2), lambda: a.subscribe("t", rate_per_second=1, rate_burst=0),
            lambda: a.subscribe("t", rate_per_second=math.inf), lambda: a.subscribe("t", batch_max_messages=0),
            lambda: a.subscribe("t", batch_max_delay_ms=5), lambda: a.timer("t"),
            lambda: a.timer("t", every_ms=1, after_ms=1), lambda: a.timer("t", every_ms=0), lambda: a.timer(""),
            lambda: a.cancel_timer("x" * 129), lambda: a.buffer("", 1), lambda: a.raw({"no": "type"}),
        ):
            with self.assertRaises(ValueError):
                bad()
        self.assertEqual(len(a), 0)
        a.subscribe("A-z_0.9:/@=+-")
        self.assertEqual(len(a), 1)

    def test_merge_state(self):
        a = Actions({"video": "1", "n": 1}).merge_state(n=2).merge_state(lang="fr")
        self.assertEqual(a.state, {"video": "1", "n": 2, "lang": "fr"})
        self.assertEqual(a.to_list()[-1], {"type": "set_state", "state": {"video": "1", "n": 2, "lang": "fr"}})
        self.assertEqual(Actions(None).merge_state(n=1).to_list(), [{"type": "set_state", "state": {"n": 1}}])


class EventsTest(unittest.TestCase):
    def test_typed_events(self):
        o = parse_event(open_event("s1", {"video": "1"}), "app")
        self.assertIsInstance(o, Open)
        self.assertEqual((o.type, o.app, o.stream_id, o.state, o.transport), ("open", "app", "s1", None, "ws"))
        self.assertEqual(o.param("video"), "1")
        self.assertEqual(o.param("nope", "d"), "d")
        self.assertEqual(o.header("user-agent"), "ua")
        self.assertEqual(o.remote_addr, "127.0.0.1")
        m = parse_event({"type": "message", "stream": {"id": "s", "state": {"k": 1}}, "topic": "t", "id": "7", "data": [1]})
        self.assertIsInstance(m, Message)
        self.assertEqual((m.topic, m.id, m.data, m.state_get("k"), m.state_get("x", 0)), ("t", "7", [1], 1, 0))
        b = parse_event({"type": "batch", "stream": {"id": "s", "state": None},
                         "messages": [{"topic": "t", "id": "1", "data": "a"}, "junk", {"topic": "t", "id": "2", "data": "b"}]})
        self.assertIsInstance(b, Batch)
        self.assertEqual([(x.id, x.data) for x in b.messages], [("1", "a"), ("2", "b")])
        c = parse_event({"type": "client_message", "stream": {"id": "s", "state": None}, "data": {"t": 1}})
        self.assertIsInstance(c, ClientMessage)
        self.assertEqual(c.data, {"t": 1})
        t = parse_event({"type": "timer", "stream": {"id": "s", "state": None}, "name": "n", "fired_at_ms": 17})
        self.assertIsInstance(t, Timer)
        self.assertEqual((t.name, t.fired_at_ms), ("n", 17))
        x = parse_event({"type": "close", "stream": {"id": "s", "state": None}, "reason": "shutdown"})
        self.assertIsInstance(x, Close)
        self.assertEqual(x.reason, "shutdown")
        u = parse_event({"type": "newer", "stream": {"id": "s"}})
        self.assertIsInstance(u, Unknown)
        self.assertEqual(u.type, "newer")
        for bad in (5, {"stream": {"id": "s"}}, {"type": "open"}, {"type": "open", "stream": {"id": 1}}):
            with self.assertRaises(ValueError):
                parse_event(bad)


class RespondTest(unittest.TestCase):
    def test_one_result_per_event_in_order(self):
        def h(e, do):
            if isinstance(e, Open):
                do.accept().subscribe("t/" + e.param("video"))
            elif isinstance(e, ClientMessage):
                do.push({"echo": e.data})

        out = respond(body(open_event("a", {"video": "1"}),
                           {"type": "client_message", "stream": {"id": "b", "state": None}, "data": "hi"},
                           {"type": "close", "stream": {"id": "c", "state": None}, "reason": "client"}), h)
        self.assertEqual(results(out), [
            [{"type": "accept"}, {"type": "subscribe", "topic": "t/1"}],
            [{"type": "push", "data": {"echo": "hi"}}],
            [],
        ])
        self.assertEqual(json.loads(respond(body(), h)), {"results": []})

    def test_failures_yield_empty_results_for_that_event_only(self):
        def h(e, do):
            do.accept()
            if e.stream_id == "raise":
                raise RuntimeError("boom")
            if e.stream_id == "bad_topic":
                do.subscribe("no spaces")
            if e.stream_id == "nan":
                do.push(float("nan"))
            if e.stream_id == "object":
                do.push(object())

        with self.assertLogs("switchboard_lambda", level="WARNING") as logs:
            out = respond(body(open_event("raise"), open_event("bad_topic"), open_event("nan"), open_event("object"),
                               5, {"type": "open"}, open_event("ok")), h)
        self.assertEqual(results(out), [[], [], [], [], [], [], [{"type": "accept"}]])
        text = "\n".join(logs.output)
        self.assertIn("handler failed on events[0] (open, stream raise)", text)
        self.assertIn("RuntimeError: boom", text)
        self.assertIn("cannot be encoded", text)
        self.assertEqual(len(logs.output), 6)

    def test_handlers_may_return_actions(self):
        def h(e, do):
            return {"a": Actions().accept(), "b": [{"type": "accept"}]}.get(e.stream_id)

        self.assertEqual(results(respond(body(open_event("a"), open_event("b"), open_event("c")), h)),
                         [[{"type": "accept"}], [{"type": "accept"}], []])

    def test_invalid_requests(self):
        h = lambda e, do: None  # noqa: E731
        for bad in (b"", b"{", b"[1]", b'"x"', b'{"v":1}', b'{"v":1,"events":{}}', b'{"v":2,"events":[]}', b"\xff"):
            with self.assertRaises(InvalidRequest, msg=bad):
                respond(bad, h)

    def test_handle_statuses(self):
        h = lambda e, do: do.accept()  # noqa: E731
        status, headers, out = handle("POST", body(open_event("a")), h)
        self.assertEqual((status, dict(headers)["Content-Type"]), (200, "application/json"))
        self.assertEqual(results(out), [[{"type": "accept"}]])
        status, _, out = handle("POST", b"nope", h)
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(out)["error"]["code"], "bad_request")
        status, headers, _ = handle("GET", b"", h)
        self.assertEqual((status, dict(headers)["Allow"]), (405, "POST"))

    def test_actions_for(self):
        h = lambda e, do: do.merge_state(n=e.state_get("n", 0) + 1)  # noqa: E731
        self.assertEqual(actions_for(open_event("s", state={"n": 4}), h), [{"type": "set_state", "state": {"n": 5}}])


class ServersTest(unittest.TestCase):
    handler = staticmethod(lambda e, do: do.accept().push({"stream": e.stream_id}))

    def test_http_server(self):
        server = make_server(self.handler, port=0)
        t = threading.Thread(target=server.serve_forever, daemon=True)
        t.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/"
            req = urllib.request.Request(url, data=body(open_event("s9")), headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                self.assertEqual(r.status, 200)
                self.assertEqual(results(r.read()), [[{"type": "accept"}, {"type": "push", "data": {"stream": "s9"}}]])
            with self.assertRaises(urllib.error.HTTPError) as bad:
                urllib.request.urlopen(urllib.request.Request(url, data=b"{oops"), timeout=10)
            self.assertEqual(bad.exception.code, 400)
            with self.assertRaises(urllib.error.HTTPError) as get:
                urllib.request.urlopen(url, timeout=10)
            self.assertEqual(get.exception.code, 405)
        finally:
            server.shutdown()
            server.server_close()

    def test_wsgi_app(self):
        app = wsgi_app(self.handler)
        data = body(open_event("w1"))
        environ = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data)}
        setup_testing_defaults(environ)
        seen = {}
        out = b"".join(app(environ, lambda status, headers: seen.update(status=status, headers=dict(headers))))
        self.assertEqual(seen["status"], "200 OK")
        self.assertEqual(seen["headers"]["Content-Length"], str(len(out)))
        self.assertEqual(results(out), [[{"type": "accept"}, {"type": "push", "data": {"stream": "w1"}}]])


def load_example():
    spec = importlib.util.spec_from_file_location("chat_room", os.path.join(HERE, "..", "examples", "chat_room.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class ChatRoomExampleTest(unittest.TestCase):
    def setUp(self):
        self.chat = load_example()

    def test_open_validates_room_and_nick(self):
        h = self.chat.handler
        ok = actions_for(open_event("s", {"room": "lobby", "nick": "ann"}), h)
        self.assertEqual(ok[0], {"type": "accept"})
        self.assertIn({"type": "subscribe", "topic": "chat/lobby", "deliver": "lambda",
                       "rate_limit": {"per_second": 50, "burst": 100}}, ok)
        self.assertEqual(actions_for(open_event("s", {"room": "Bad Room", "nick": "ann"}), h)[0]["code"], 400)
        self.assertEqual(actions_for(open_event("s", {"room": "lobby"}), h)[0]["code"], 400)

    def test_rate_limit_on_the_publish_path(self):
        h, state = self.chat.handler, {"room": "lobby", "nick": "ann", "sent": []}
        self.chat.now_ms = lambda: 100_000
        for i in range(3):
            acts = actions_for({"type": "client_message", "stream": {"id": "s", "state": state}, "data": {"text": f"m{i}"}}, h)
            self.assertEqual(acts[0]["type"], "publish")
            self.assertEqual(acts[0]["data"]["text"], f"m{i}")
            state = acts[-1]["state"]
        acts = actions_for({"type": "client_message", "stream": {"id": "s", "state": state}, "data": {"text": "m3"}}, h)
        self.assertEqual([a["type"] for a in acts], ["set_state", "push"])
        self.assertEqual(acts[1]["event"], "rate_limited")
        self.chat.now_ms = lambda: 105_001  # the window has passed
        acts = actions_for({"type": "client_message", "stream": {"id": "s", "state": state}, "data": {"text": "m4"}}, h)
        self.assertEqual(acts[0]["type"], "publish")

    def test_messages_are_masked_and_marked_mine(self):
        ev = lambda sid: {"type": "message", "stream": {"id": sid, "state": {"room": "lobby"}}, "topic": "chat/lobby",  # noqa: E731
                          "id": "3", "data": {"from": "ann", "stream": "s1", "text": "no spam here", "at": 1}}
        mine = actions_for(ev("s1"), self.chat.handler)
        self.assertEqual(mine, [{"type": "push", "event": "chat",
                                 "data": {"from": "ann", "text": "no **** here", "mine": True, "at": 1}}])
        self.assertFalse(actions_for(ev("s2"), self.chat.handler)[0]["data"]["mine"])


if __name__ == "__main__":
    unittest.main()
