// Switchboard browser client: one plain ES module, no dependencies, no build.
//
//   import { Switchboard } from './switchboard.js';
//   const sb = new Switchboard('http://127.0.0.1:8080');
//   const comments = sb.open('live_comments', { video: '1234' }, {
//     onEvent: (ev) => console.log(ev.event, ev.data),  // {event, data, id, topic}
//     onGap: (topics) => refetch(),                       // history did not reach back
//   });
//   comments.send({ text: 'hello' });
//
// Streams are multiplexed over one WebSocket (`GET /v1/ws`). When the socket
// drops, the client reconnects with exponential backoff and jitter and
// re-opens every stream with the last event `id` it saw (`resume`), so the
// gateway replays what was missed, or sends `gap` when it cannot. With
// `transport: 'sse'` (or `'auto'` when WebSockets never get through) each
// stream is an EventSource on `GET /v1/sse/{app}` resumed with `?resume=`;
// SSE is receive-only, so `send()` needs the WebSocket transport.

/** Close codes after which a stream is over for good (client or lambda closed it). */
function isFinalClose(code) {
  return code === 1000 || (code >= 4000 && code <= 4999);
}

/** Rejections worth retrying: the lambda or the gateway failed, not a refusal. */
function isRetryableReject(code) {
  return code === 502 || code === 503 || code === 504;
}

const DEFAULTS = {
  /** 'ws' | 'sse' | 'auto' (WebSocket, falling back to SSE when it never connects). */
  transport: 'auto',
  /** Reconnect delays: min(maxMs, initialMs * factor^attempt), then jittered into [d/2, d]. */
  backoff: { initialMs: 250, maxMs: 15000, factor: 2 },
  /** WebSocket attempts that never opened before 'auto' switches to SSE. */
  wsFailuresBeforeSse: 3,
  /** Client ping interval; a socket silent for pingIntervalMs + pongTimeoutMs is dead. */
  pingIntervalMs: 20000,
  pongTimeoutMs: 10000,
  /** How long a WebSocket may take to open. */
  connectTimeoutMs: 10000,
  /** Messages kept by send() while a stream is (re)connecting. */
  maxQueued: 100,
  /** Event names to listen for on SSE (EventSource only reports names it is told). */
  events: [],
  /** EventSource `withCredentials`. */
  withCredentials: false,
  /** For tests and other runtimes: the WebSocket and EventSource constructors. */
  WebSocket: undefined,
  EventSource: undefined,
};

/** The delay before reconnect attempt `attempt` (0-based), with jitter. */
export function backoffDelay(attempt, { initialMs, maxMs, factor }, random = Math.random) {
  const d = Math.min(maxMs, initialMs * Math.pow(factor, Math.min(attempt, 30)));
  return Math.round(d / 2 + random() * (d / 2));
}

function call(fn, ...args) {
  if (typeof fn !== 'function') return;
  try {
    fn(...args);
  } catch (e) {
    console.error('switchboard: handler threw', e);
  }
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** One logical stream to one app. Create it with `Switchboard#open`. */
export class Stream {
  constructor(client, name, app, params, handlers) {
    this.client = client;
    /** The stream's name on the connection (chosen by the client). */
    this.name = name;
    this.app = app;
    this.params = params;
    this.handlers = handlers;
    /** The last cursor seen (event `id` or ping checkpoint): what a reconnect resumes from. */
    this.lastId = handlers.resume ?? null;
    /** 'opening' | 'open' | 'reconnecting' | 'rejected' | 'closed' */
    this.state = 'opening';
    this._queue = [];
    this._attempt = 0;
    this._timer = null;
    this._es = null;
    this._sentOpen = false;
  }

  /** True while the stream is over (rejected or closed). */
  get done() {
    return this.state === 'rejected' || this.state === 'closed';
  }

  /**
   * Sends data to the lambda (a `client_message` event). While the stream is
   * (re)connecting the data is queued and sent once it is open again.
   * Returns true if sent now, false if queued. Throws on SSE (receive-only)
   * and on a finished stream.
   */
  send(data) {
    if (this.done) throw new Error(`switchboard: stream ${this.name} is ${this.state}`);
    if (this.client.transport === 'sse') {
      throw new Error('switchboard: send() needs the WebSocket transport (SSE is receive-only)');
    }
    if (this.state === 'open' && this.client._sendFrame({ type: 'send', stream: this.name, data })) {
      return true;
    }
    if (this._queue.length >= this.client.options.maxQueued) {
      throw new Error(`switchboard: stream ${this.name} send queue is full`);
    }
    this._queue.push(data);
    return false;
  }

  /** Closes the stream (the lambda gets a `close` event with reason "client"). */
  close() {
    if (this.done) return;
    this.client._closeStream(this, { code: 1000, reason: 'client' }, true);
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    call(this.handlers.onState, state);
  }

  _flush() {
    while (this._queue.length && this.state === 'open') {
      const data = this._queue.shift();
      if (!this.client._sendFrame({ type: 'send', stream: this.name, data })) {
        this._queue.unshift(data);
        return;
      }
    }
  }

  _event(ev) {
    if (ev.id) this.lastId = ev.id;
    call(this.handlers.onEvent, ev);
  }
}

/** A connection to one gateway, carrying any number of streams. */
export class Switchboard {
  /**
   * @param {string} url the gateway, e.g. 'http://127.0.0.1:8080' (ws:// and wss:// work too)
   * @param {object} options see DEFAULTS above
   */
  constructor(url, options = {}) {
    this.options = { ...DEFAULTS, ...options, backoff: { ...DEFAULTS.backoff, ...(options.backoff || {}) } };
    const base = String(url).replace(/\/+$/, '');
    this.httpUrl = base.replace(/^ws(s?):/, 'http$1:');
    this.wsUrl = base.replace(/^http(s?):/, 'ws$1:') + '/v1/ws';
    this.transport = this.options.transport === 'sse' ? 'sse' : 'ws';
    /** 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed' */
    this.status = 'idle';
    this._streams = new Map();
    this._next = 1;
    this._ws = null;
    this._attempt = 0;
    this._wsEverOpened = false;
    this._wsFailures = 0;
    this._reconnectTimer = null;
    this._pingTimer = null;
    this._lastFrameAt = 0;
    this._statusListeners = new Set();
    this._closed = false;
    this._onOnline = () => {
      if (this._reconnectTimer && this.transport === 'ws') {
        clearTimeout(this._reconnectTimer);
        this._reconnectTimer = null;
        this._connect();
      }
    };
    if (typeof addEventListener === 'function') addEventListener('online', this._onOnline);
  }

  /** Calls fn(status) on every status change; returns a function that unsubscribes. */
  onStatus(fn) {
    this._statusListeners.add(fn);
    return () => this._statusListeners.delete(fn);
  }

  /**
   * Opens a stream to `app` with `params` (strings on SSE, any JSON on WS).
   * handlers: onOpen({resumed}), onEvent({event, data, id, topic}),
   * onGap(topics), onRejected({code, reason}), onClose({code, reason}),
   * onError(error), onState(state); events: [names] for SSE; resume: a
   * cursor to start from.
   */
  open(app, params = {}, handlers = {}) {
    if (this._closed) throw new Error('switchboard: client is closed');
    const name = handlers.name ?? `s${this._next++}`;
    if (this._streams.has(name)) throw new Error(`switchboard: stream ${name} exists`);
    const stream = new Stream(this, name, app, params, handlers);
    this._streams.set(name, stream);
    if (this.transport === 'sse') {
      this._sseConnect(stream);
    } else if (this._ws && this._ws.readyState === 1) {
      this._sendOpen(stream);
    } else {
      this._connect();
    }
    return stream;
  }

  /** The open streams, by name. */
  get streams() {
    return new Map(this._streams);
  }

  /** Closes every stream and the connection; no reconnect. */
  close() {
    if (this._closed) return;
    for (const s of [...this._streams.values()]) this._closeStream(s, { code: 1000, reason: 'client' }, true);
    this._closed = true;
    clearTimeout(this._reconnectTimer);
    this._stopPing();
    if (this._ws) {
      const ws = this._ws;
      this._ws = null;
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      try {
        ws.close(1000);
      } catch {}
    }
    if (typeof removeEventListener === 'function') removeEventListener('online', this._onOnline);
    this._setStatus('closed');
  }

  // ---- WebSocket transport ------------------------------------------------

  _setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    for (const fn of this._statusListeners) call(fn, status);
  }

  _connect() {
    if (this._closed || this._ws || this._reconnectTimer) return;
    const WS = this.options.WebSocket ?? globalThis.WebSocket;
    this._setStatus(this._attempt === 0 && !this._wsEverOpened ? 'connecting' : 'reconnecting');
    let ws;
    try {
      ws = new WS(this.wsUrl);
    } catch (e) {
      this._socketGone(null, e);
      return;
    }
    this._ws = ws;
    const openedAt = { t: 0 };
    const timeout = setTimeout(() => {
      if (ws.readyState !== 1) this._socketGone(ws, new Error('WebSocket connect timeout'));
    }, this.options.connectTimeoutMs);
    ws.onopen = () => {
      clearTimeout(timeout);
      openedAt.t = Date.now();
      this._wsEverOpened = true;
      this._wsFailures = 0;
      this._lastFrameAt = Date.now();
      this._setStatus('open');
      this._startPing(ws);
      for (const s of this._streams.values()) {
        clearTimeout(s._timer);
        s._timer = null;
        this._sendOpen(s);
      }
    };
    ws.onmessage = (m) => {
      this._lastFrameAt = Date.now();
      let frame;
      try {
        frame = JSON.parse(m.data);
      } catch {
        return;
      }
      this._onFrame(frame);
    };
    ws.onerror = () => {};
    ws.onclose = (ev) => {
      clearTimeout(timeout);
      // A connection that stayed up a while starts the backoff afresh.
      if (openedAt.t && Date.now() - openedAt.t > 10000) this._attempt = 0;
      this._socketGone(ws, new Error(`WebSocket closed (${ev.code}${ev.reason ? ' ' + ev.reason : ''})`));
    };
  }

  /** The socket is gone (closed, failed or found dead): schedule a reconnect. */
  _socketGone(ws, error) {
    if (ws && ws !== this._ws) return;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      try {
        ws.close();
      } catch {}
    }
    this._ws = null;
    this._stopPing();
    if (this._closed) return;
    if (!this._wsEverOpened) this._wsFailures++;
    for (const s of this._streams.values()) {
      s._sentOpen = false;
      s._setState('reconnecting');
      call(s.handlers.onError, error);
    }
    if (this.options.transport === 'auto' && !this._wsEverOpened && this._wsFailures >= this.options.wsFailuresBeforeSse) {
      // WebSockets do not get through (a proxy?): receive over SSE instead.
      this.transport = 'sse';
      for (const s of this._streams.values()) this._sseConnect(s);
      return;
    }
    this._setStatus('reconnecting');
    const delay = backoffDelay(this._attempt++, this.options.backoff);
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      this._connect();
    }, delay);
  }

  _startPing(ws) {
    this._stopPing();
    const { pingIntervalMs, pongTimeoutMs } = this.options;
    this._pingTimer = setInterval(() => {
      if (Date.now() - this._lastFrameAt > pingIntervalMs + pongTimeoutMs) {
        this._socketGone(ws, new Error('WebSocket silent: no pong'));
        return;
      }
      this._sendFrame({ type: 'ping' });
    }, pingIntervalMs);
  }

  _stopPing() {
    clearInterval(this._pingTimer);
    this._pingTimer = null;
  }

  _sendFrame(frame) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  _sendOpen(s) {
    if (s.done || s._sentOpen) return;
    const frame = { type: 'open', stream: s.name, app: s.app, params: s.params };
    if (s.lastId) frame.resume = s.lastId;
    if (this._sendFrame(frame)) {
      s._sentOpen = true;
      s._resuming = Boolean(s.lastId);
      if (s.state !== 'opening') s._setState('reconnecting');
    }
  }

  /** Re-opens one stream on the live connection after a backoff. */
  _retryStream(s, error) {
    s._sentOpen = false;
    s._setState('reconnecting');
    call(s.handlers.onError, error);
    clearTimeout(s._timer);
    const ws = this._ws;
    s._timer = setTimeout(() => {
      s._timer = null;
      if (ws === this._ws && !s.done) this._sendOpen(s);
    }, backoffDelay(s._attempt++, this.options.backoff));
  }

  _onFrame(f) {
    if (f.type === 'pong') return;
    if (f.type === 'ping') {
      // A sync checkpoint: every frame before it arrived (one ordered socket),
      // so its cursors are where a resume should start.
      for (const [name, cursor] of Object.entries(f.cursors || {})) {
        const s = this._streams.get(name);
        if (s && s.state === 'open' && typeof cursor === 'string' && cursor) s.lastId = cursor;
      }
      return;
    }
    const s = typeof f.stream === 'string' ? this._streams.get(f.stream) : undefined;
    switch (f.type) {
      case 'opened':
        if (!s) return;
        this._attempt = 0;
        s._attempt = 0;
        s._setState('open');
        call(s.handlers.onOpen, { resumed: Boolean(s._resuming) });
        s._flush();
        return;
      case 'rejected':
        if (!s) return;
        if (isRetryableReject(f.code)) {
          this._retryStream(s, new Error(`open failed (${f.code} ${f.reason || ''}); retrying`));
          return;
        }
        this._finish(s, 'rejected');
        call(s.handlers.onRejected, { code: f.code, reason: f.reason || '' });
        return;
      case 'event':
        if (!s) return;
        s._event({ event: f.event ?? null, data: f.data, id: f.id ?? null, topic: f.topic ?? null });
        return;
      case 'gap':
        if (s) call(s.handlers.onGap, f.topics || []);
        return;
      case 'closed':
        if (!s) return;
        if (isFinalClose(f.code)) {
          this._finish(s, 'closed');
          call(s.handlers.onClose, { code: f.code, reason: f.reason || '' });
        } else {
          // shutdown (the socket closes next, and the new one re-opens it),
          // slow_consumer, timeout, error: open it again and resume.
          this._retryStream(s, new Error(`stream closed (${f.code} ${f.reason || ''}); resuming`));
        }
        return;
      case 'error':
        if (s && f.code === 'draining') {
          this._retryStream(s, new Error(f.message || 'gateway draining'));
        } else if (s) {
          call(s.handlers.onError, new Error(`${f.code}: ${f.message || ''}`));
        } else {
          for (const x of this._streams.values()) call(x.handlers.onError, new Error(`${f.code}: ${f.message || ''}`));
        }
        return;
      default:
        return;
    }
  }

  _finish(s, state) {
    clearTimeout(s._timer);
    s._timer = null;
    if (s._es) {
      s._es.close();
      s._es = null;
    }
    s._queue = [];
    s._setState(state);
    this._streams.delete(s.name);
  }

  _closeStream(s, info, byClient) {
    if (byClient && this.transport === 'ws' && s._sentOpen) this._sendFrame({ type: 'close', stream: s.name });
    this._finish(s, 'closed');
    call(s.handlers.onClose, info);
  }

  // ---- SSE transport ------------------------------------------------------

  _sseUrl(s) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(s.params || {})) {
      if (v !== undefined && v !== null) q.set(k, typeof v === 'string' ? v : JSON.stringify(v));
    }
    if (s.lastId) q.set('resume', s.lastId);
    const qs = q.toString();
    return `${this.httpUrl}/v1/sse/${encodeURIComponent(s.app)}${qs ? '?' + qs : ''}`;
  }

  _sseConnect(s) {
    if (s.done || this._closed) return;
    clearTimeout(s._timer);
    s._timer = null;
    if (s._es) s._es.close();
    const ES = this.options.EventSource ?? globalThis.EventSource;
    const resuming = Boolean(s.lastId);
    const es = new ES(this._sseUrl(s), { withCredentials: this.options.withCredentials });
    s._es = es;
    const deliver = (name) => (e) => {
      if (es !== s._es) return;
      s._event({ event: name, data: parseJson(e.data), id: e.lastEventId || null, topic: null });
    };
    es.onopen = () => {
      if (es !== s._es) return;
      s._attempt = 0;
      s._setState('open');
      this._setStatus('open');
      call(s.handlers.onOpen, { resumed: resuming });
    };
    es.onmessage = deliver(null);
    const names = new Set([...(this.options.events || []), ...(s.handlers.events || [])]);
    names.delete('gap');
    names.delete('closed');
    names.delete('message');
    for (const name of names) if (name !== 'error') es.addEventListener(name, deliver(name));
    es.addEventListener('gap', (e) => {
      if (es !== s._es) return;
      call(s.handlers.onGap, parseJson(e.data)?.topics || []);
    });
    es.addEventListener('closed', (e) => {
      if (es !== s._es) return;
      const { code, reason } = parseJson(e.data) || {};
      es.close();
      s._es = null;
      if (isFinalClose(code)) {
        this._finish(s, 'closed');
        call(s.handlers.onClose, { code, reason: reason || '' });
      } else {
        this._sseRetry(s, new Error(`stream closed (${code} ${reason || ''}); resuming`));
      }
    });
    es.onerror = (e) => {
      if (es !== s._es) return;
      // An app event named "error" arrives here too, as a MessageEvent with data.
      if (typeof MessageEvent !== 'undefined' && e instanceof MessageEvent) {
        deliver('error')(e);
        return;
      }
      // EventSource cannot tell a rejection from a network failure: retry with backoff.
      es.close();
      s._es = null;
      this._sseRetry(s, new Error('SSE connection failed or was refused'));
    };
  }

  _sseRetry(s, error) {
    if (s.done || this._closed) return;
    s._setState('reconnecting');
    this._setStatus('reconnecting');
    call(s.handlers.onError, error);
    clearTimeout(s._timer);
    s._timer = setTimeout(() => this._sseConnect(s), backoffDelay(s._attempt++, this.options.backoff));
  }
}

export default Switchboard;
