// Unit tests of switchboard.js's protocol logic with a fake WebSocket and
// EventSource and mocked timers: node --test sdk/js/test/client.test.mjs
// (the browser end to end is e2e.mjs).

import assert from 'node:assert/strict';
import { beforeEach, describe, it, mock } from 'node:test';

import { Switchboard, backoffDelay } from '../switchboard.js';

class FakeWebSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeWebSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
  }
  // Test side:
  accept() {
    this.readyState = 1;
    this.onopen?.();
  }
  frame(f) {
    this.onmessage?.({ data: JSON.stringify(f) });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }
  opens() {
    return this.sent.filter((f) => f.type === 'open');
  }
}

class FakeEventSource {
  static all = [];
  constructor(url) {
    this.url = url;
    this.listeners = {};
    this.closed = false;
    FakeEventSource.all.push(this);
  }
  addEventListener(name, fn) {
    (this.listeners[name] ||= []).push(fn);
  }
  close() {
    this.closed = true;
  }
  emit(name, data, lastEventId = '') {
    const e = { data: JSON.stringify(data), lastEventId };
    if (name === 'message') this.onmessage?.(e);
    else for (const fn of this.listeners[name] || []) fn(e);
  }
}

const last = () => FakeWebSocket.all[FakeWebSocket.all.length - 1];

function client(options = {}) {
  return new Switchboard('http://gw.test:8080', {
    WebSocket: FakeWebSocket,
    EventSource: FakeEventSource,
    backoff: { initialMs: 100, maxMs: 1000, factor: 2 },
    ...options,
  });
}

/** Records every callback of a stream. */
function recorder() {
  const log = [];
  const h = {};
  for (const name of ['onOpen', 'onEvent', 'onGap', 'onRejected', 'onClose', 'onError']) {
    h[name] = (arg) => log.push([name, arg]);
  }
  return { log, h, of: (name) => log.filter(([n]) => n === name).map(([, a]) => a) };
}

describe('switchboard.js', () => {
  beforeEach(() => {
    FakeWebSocket.all = [];
    FakeEventSource.all = [];
    mock.timers.reset();
    mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
  });

  it('backoff grows exponentially, is capped and jittered into [d/2, d]', () => {
    const b = { initialMs: 100, maxMs: 1000, factor: 2 };
    assert.equal(backoffDelay(0, b, () => 0), 50);
    assert.equal(backoffDelay(0, b, () => 1), 100);
    assert.equal(backoffDelay(3, b, () => 1), 800);
    assert.equal(backoffDelay(10, b, () => 1), 1000);
    assert.equal(backoffDelay(10, b, () => 0), 500);
  });

  it('multiplexes streams on one socket and delivers events', () => {
    const sb = client();
    const a = recorder();
    const b = recorder();
    const s1 = sb.open('live', { video: '1' }, a.h);
    const s2 = sb.open('live', { video: '2' }, b.h);
    assert.equal(FakeWebSocket.all.length, 1);
    const ws = last();
    assert.equal(ws.url, 'ws://gw.test:8080/v1/ws');
    ws.accept();
    assert.deepEqual(ws.opens(), [
      { type: 'open', stream: 's1', app: 'live', params: { video: '1' } },
      { type: 'open', stream: 's2', app: 'live', params: { video: '2' } },
    ]);
    ws.frame({ type: 'opened', stream: 's1' });
    ws.frame({ type: 'event', stream: 's1', id: 'e~t~1', event: 'comment', data: { x: 1 } });
    ws.frame({ type: 'event', stream: 's2', id: 'e~v~4', topic: 'v', data: 2 });
    assert.deepEqual(a.of('onEvent'), [{ event: 'comment', data: { x: 1 }, id: 'e~t~1', topic: null }]);
    assert.deepEqual(b.of('onEvent'), [{ event: null, data: 2, id: 'e~v~4', topic: 'v' }]);
    assert.equal(s1.state, 'open');
    assert.equal(s1.lastId, 'e~t~1');
    assert.equal(s2.lastId, 'e~v~4');
    s1.send({ text: 'hi' });
    assert.deepEqual(ws.sent.at(-1), { type: 'send', stream: 's1', data: { text: 'hi' } });
  });

  it('reconnects with backoff and resumes each stream from its last id', () => {
    const sb = client();
    const r = recorder();
    const s = sb.open('live', { video: '1' }, r.h);
    const statuses = [];
    sb.onStatus((x) => statuses.push(x));
    let ws = last();
    ws.accept();
    ws.frame({ type: 'opened', stream: 's1' });
    ws.frame({ type: 'event', stream: 's1', id: 'e~t~7', data: 1 });
    // A push answering a client message carries no id: the resume point stays.
    ws.frame({ type: 'event', stream: 's1', data: 'ack' });
    ws.frame({ type: 'closed', stream: 's1', code: 1012, reason: 'shutdown' });
    ws.drop(1012);
    assert.equal(s.state, 'reconnecting');
    assert.equal(r.of('onClose').length, 0, 'a shutdown is not the end of the stream');
    assert.equal(FakeWebSocket.all.length, 1, 'no reconnect before the backoff');
    mock.timers.tick(100);
    assert.equal(FakeWebSocket.all.length, 2);
    ws = last();
    ws.drop(); // still down
    mock.timers.tick(99);
    assert.equal(FakeWebSocket.all.length, 2, 'the second delay is longer');
    mock.timers.tick(101);
    assert.equal(FakeWebSocket.all.length, 3);
    ws = last();
    s.send({ text: 'queued while away' });
    ws.accept();
    assert.deepEqual(ws.opens(), [{ type: 'open', stream: 's1', app: 'live', params: { video: '1' }, resume: 'e~t~7' }]);
    ws.frame({ type: 'gap', stream: 's1', topics: ['t'] });
    ws.frame({ type: 'opened', stream: 's1' });
    assert.deepEqual(r.of('onGap'), [['t']]);
    assert.deepEqual(r.of('onOpen').at(-1), { resumed: true });
    assert.deepEqual(ws.sent.at(-1), { type: 'send', stream: 's1', data: { text: 'queued while away' } });
    assert.deepEqual(statuses, ['open', 'reconnecting', 'open']);
  });

  it('takes ping cursors as the resume point', () => {
    const sb = client();
    const s = sb.open('live', {}, {});
    const ws = last();
    ws.accept();
    ws.frame({ type: 'opened', stream: 's1' });
    ws.frame({ type: 'event', stream: 's1', id: 'e~t~1', data: 1 });
    ws.frame({ type: 'ping', cursors: { s1: 'e~t~5', other: 'x' } });
    assert.equal(s.lastId, 'e~t~5');
  });

  it('ends streams on client and lambda closes and on refusals, retries lambda failures', () => {
    const sb = client();
    const a = recorder();
    const b = recorder();
    const c = recorder();
    sb.open('live', {}, a.h);
    const s2 = sb.open('live', {}, b.h);
    sb.open('live', {}, c.h);
    const ws = last();
    ws.accept();
    ws.frame({ type: 'opened', stream: 's1' });
    ws.frame({ type: 'closed', stream: 's1', code: 4001, reason: 'bye' });
    assert.deepEqual(a.of('onClose'), [{ code: 4001, reason: 'bye' }]);
    ws.frame({ type: 'rejected', stream: 's2', code: 502, reason: 'lambda failed' });
    assert.equal(s2.state, 'reconnecting');
    assert.equal(b.of('onError').length, 1);
    mock.timers.tick(100);
    assert.equal(ws.opens().filter((f) => f.stream === 's2').length, 2, 'the open is sent again');
    ws.frame({ type: 'rejected', stream: 's3', code: 404, reason: 'no such video' });
    assert.deepEqual(c.of('onRejected'), [{ code: 404, reason: 'no such video' }]);
    assert.deepEqual([...sb.streams.keys()], ['s2']);
  });

  it('re-opens a stream closed for slow_consumer on the same socket', () => {
    const sb = client();
    const s = sb.open('live', {}, {});
    const ws = last();
    ws.accept();
    ws.frame({ type: 'opened', stream: 's1' });
    ws.frame({ type: 'event', stream: 's1', id: 'e~t~3', data: 1 });
    ws.frame({ type: 'closed', stream: 's1', code: 1013, reason: 'slow_consumer' });
    mock.timers.tick(100);
    assert.equal(FakeWebSocket.all.length, 1);
    assert.deepEqual(ws.opens().at(-1).resume, 'e~t~3');
    assert.equal(s.state, 'reconnecting');
  });

  it('closes a stream on request and sends close', () => {
    const sb = client();
    const r = recorder();
    const s = sb.open('live', {}, r.h);
    const ws = last();
    ws.accept();
    s.close();
    assert.deepEqual(ws.sent.at(-1), { type: 'close', stream: 's1' });
    assert.deepEqual(r.of('onClose'), [{ code: 1000, reason: 'client' }]);
    assert.throws(() => s.send(1), /closed/);
  });

  it('declares a silent socket dead and reconnects', () => {
    const sb = client({ pingIntervalMs: 1000, pongTimeoutMs: 500 });
    sb.open('live', {}, {});
    const ws = last();
    ws.accept();
    mock.timers.tick(1000);
    assert.deepEqual(ws.sent.at(-1), { type: 'ping' });
    mock.timers.tick(1000);
    mock.timers.tick(100);
    assert.equal(FakeWebSocket.all.length, 2, 'a new socket after the silence');
  });

  it("falls back to SSE in 'auto' when WebSockets never open, and resumes with ?resume=", () => {
    const sb = client({ wsFailuresBeforeSse: 2, events: ['comment'] });
    const r = recorder();
    const s = sb.open('live', { video: '1', n: 2 }, r.h);
    last().drop();
    mock.timers.tick(100);
    last().drop();
    assert.equal(sb.transport, 'sse');
    let es = FakeEventSource.all.at(-1);
    assert.equal(es.url, 'http://gw.test:8080/v1/sse/live?video=1&n=2');
    es.onopen();
    es.emit('comment', { x: 1 }, 'e~t~2');
    es.emit('message', { kind: 'viewers' }, 'e~t~2~v~1');
    assert.deepEqual(r.of('onEvent').map((e) => [e.event, e.id]), [['comment', 'e~t~2'], [null, 'e~t~2~v~1']]);
    assert.throws(() => s.send({}), /WebSocket transport/);
    es.emit('closed', { code: 1012, reason: 'shutdown' });
    assert.ok(es.closed);
    mock.timers.tick(100);
    es = FakeEventSource.all.at(-1);
    assert.equal(es.url, 'http://gw.test:8080/v1/sse/live?video=1&n=2&resume=e%7Et%7E2%7Ev%7E1');
    es.emit('gap', { topics: ['t'] });
    assert.deepEqual(r.of('onGap'), [['t']]);
    es.emit('closed', { code: 4001, reason: 'bye' });
    assert.deepEqual(r.of('onClose'), [{ code: 4001, reason: 'bye' }]);
  });
});
