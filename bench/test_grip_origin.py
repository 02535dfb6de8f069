#!/usr/bin/env python3
"""Tests of bench/grip_origin.py: python3 bench/test_grip_origin.py"""

import http.client
import os
import sys
import threading
import unittest
from http.server import ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grip_origin as g  # noqa: E402


class Parsing(unittest.TestCase):
    def test_channels(self):
        self.assertEqual(g.channel_of("/sub/bench/0"), "bench/0")
        self.assertEqual(g.channel_of("/sub/a%2Fb?x=1"), "a/b")
        self.assertIsNone(g.channel_of("/sub/"))
        self.assertIsNone(g.channel_of("/other/x"))

    def test_events(self):
        body = b"OPEN\r\nTEXT 5\r\nhello\r\nCLOSE 2\r\n\x03\xe8\r\nDISCONNECT\r\n"
        self.assertEqual(
            g.parse_events(body),
            [("OPEN", None), ("TEXT", b"hello"), ("CLOSE", b"\x03\xe8"), ("DISCONNECT", None)],
        )
        # Sizes are hex.
        self.assertEqual(g.parse_events(b"TEXT a\r\n0123456789\r\n"), [("TEXT", b"0123456789")])
        for bad in (b"OPEN", b"TEXT 5\r\nhel\r\n", b"TEXT 2\r\nhello\r\n", b"TEXT zz\r\nx\r\n"):
            with self.assertRaises(ValueError, msg=bad):
                g.parse_events(bad)

    def test_encoding(self):
        self.assertEqual(g.event("OPEN"), b"OPEN\r\n")
        self.assertEqual(g.event("TEXT", b"x" * 16), b"TEXT 10\r\n" + b"x" * 16 + b"\r\n")
        round_trip = g.event("OPEN") + g.event("TEXT", b"c:{}")
        self.assertEqual(g.parse_events(round_trip), [("OPEN", None), ("TEXT", b"c:{}")])


class Serving(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = ThreadingHTTPServer(("127.0.0.1", 0), g.Origin)
        cls.port = cls.srv.server_address[1]
        threading.Thread(target=cls.srv.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.shutdown()
        cls.srv.server_close()

    def request(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r, data

    def test_ws_open_subscribes(self):
        r, data = self.request(
            "POST",
            "/sub/bench/3",
            b"OPEN\r\n",
            {"Content-Type": "application/websocket-events"},
        )
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Sec-WebSocket-Extensions"), 'grip; message-prefix=""')
        events = g.parse_events(data)
        self.assertEqual(events[0], ("OPEN", None))
        self.assertEqual(events[1], ("TEXT", b'c:{"type":"subscribe","channel":"bench/3"}'))
        self.assertEqual(events[2], ("TEXT", b'{"type":"opened"}'))

    def test_ws_close_is_acknowledged(self):
        r, data = self.request(
            "POST", "/sub/x", b"CLOSE 2\r\n\x03\xe8\r\n", {"Content-Type": "application/websocket-events"}
        )
        self.assertEqual(g.parse_events(data), [("CLOSE", b"\x03\xe8")])

    def test_sse_hold(self):
        r, data = self.request("GET", "/sub/bench/0")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Grip-Hold"), "stream")
        self.assertEqual(r.getheader("Grip-Channel"), "bench/0")
        self.assertEqual(r.getheader("Content-Type"), "text/event-stream")

    def test_errors(self):
        r, _ = self.request("GET", "/nowhere")
        self.assertEqual(r.status, 404)
        r, _ = self.request("POST", "/sub/x", b"OPEN\r\n", {"Content-Type": "text/plain"})
        self.assertEqual(r.status, 400)
        r, _ = self.request("POST", "/sub/x", b"TEXT 9\r\nab\r\n", {"Content-Type": "application/websocket-events"})
        self.assertEqual(r.status, 400)
        r, body = self.request("GET", "/health")
        self.assertEqual((r.status, body), (200, b"ok\n"))


if __name__ == "__main__":
    unittest.main()
