//! One subscriber connection: connect (WebSocket or SSE), wait for its
//! open, then read and count deliveries until told to stop.

use super::*;

pub(super) enum Conn {
    Ws(Open),
    Sse(Open),
}

/// A connection past its handshake, with what was read beyond the head.
pub(super) struct Open {
    pub(super) tcp: TcpStream,
    pub(super) buf: Vec<u8>,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) chunked: bool,
}

pub(super) async fn connect(cfg: &SubCfg, i: usize) -> Result<Conn> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(cfg.source(i), 0))
        .map_err(|e| anyhow!("bind {}: {e}", cfg.source(i)))?;
    let mut tcp = sock.connect(cfg.target.addr).await?;
    tcp.set_nodelay(true)?;
    let topic = format!("bench/{}", i % cfg.topics);
    let ws = cfg.transport == Transport::Ws;
    let path = cfg.server.subscribe_path(ws, &cfg.app, &topic);
    let req = match cfg.transport {
        Transport::Ws => format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c3dpdGNoYm9hcmQtYmVuY2g=\r\nSec-WebSocket-Version: 13\r\n\r\n",
            cfg.target.host
        ),
        Transport::Sse => format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            cfg.target.host
        ),
    };
    tcp.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; READ_BUF];
    let mut end = 0;
    let head = loop {
        if let Some(h) = wire::response_head(&buf[..end]) {
            break h;
        }
        if end == buf.len() {
            bail!("response head larger than {READ_BUF} bytes");
        }
        let n = tcp.read(&mut buf[end..]).await?;
        if n == 0 {
            bail!("closed during the handshake");
        }
        end += n;
    };
    let mut open = Open {
        tcp,
        buf,
        start: head.len,
        end,
        chunked: head.chunked,
    };
    match cfg.transport {
        Transport::Ws => {
            if head.status != 101 {
                bail!("handshake answered {} (want 101)", head.status);
            }
            match cfg.server.ws_ready() {
                // The stream is live once `opened` arrives.
                WsReady::Opened => wait_opened(&mut open).await?,
                WsReady::Upgrade => {}
            }
            Ok(Conn::Ws(open))
        }
        Transport::Sse => {
            if head.status != 200 {
                let body = String::from_utf8_lossy(&open.buf[open.start..open.end]).into_owned();
                bail!("SSE open answered {}: {}", head.status, body.trim());
            }
            Ok(Conn::Sse(open))
        }
    }
}

/// Reads WebSocket frames until `opened` (frames after it stay buffered).
async fn wait_opened(c: &mut Open) -> Result<()> {
    loop {
        while let Frame::Whole {
            opcode, start, len, ..
        } = wire::ws_frame(&c.buf[c.start..c.end])
        {
            let p = &c.buf[c.start + start..c.start + start + len];
            c.start += start + len;
            if opcode == 8 {
                bail!("closed before opened");
            }
            if opcode == 1 {
                match wire::frame_type(p) {
                    b"opened" => return Ok(()),
                    b"rejected" | b"error" | b"closed" => {
                        bail!("{}", String::from_utf8_lossy(p))
                    }
                    _ => {}
                }
            }
        }
        wire::compact(&mut c.buf, &mut c.start, &mut c.end, 0, MAX_FRAME)?;
        let n = c.tcp.read(&mut c.buf[c.end..]).await?;
        if n == 0 {
            bail!("closed before opened");
        }
        c.end += n;
    }
}

/// Receives WebSocket frames until the connection ends; returns why it ended.
/// With `raw`, every text frame is a message as published (Pushpin, Nchan);
/// otherwise frames are the gateway's JSON frames, classified by `type`.
pub(super) async fn ws_loop(mut c: Open, topic: usize, raw: bool, stats: &SharedStats) -> String {
    let mut last_seq = 0u64;
    let mut reply: Vec<u8> = Vec::new();
    let mut now = unix_ns();
    loop {
        let need = {
            let mut s = stats.borrow_mut();
            loop {
                match wire::ws_frame(&c.buf[c.start..c.end]) {
                    Frame::Need(n) => break n,
                    Frame::Whole {
                        opcode, start, len, ..
                    } => {
                        let p = &c.buf[c.start + start..c.start + start + len];
                        c.start += start + len;
                        match opcode {
                            1 if raw => s.event(p, now, topic, &mut last_seq),
                            1 => match wire::frame_type(p) {
                                b"event" => s.event(p, now, topic, &mut last_seq),
                                b"ping" => s.r.pings += 1,
                                b"closed" => {
                                    s.r.streams_closed += 1;
                                    s.other(p);
                                }
                                _ => s.other(p),
                            },
                            8 => {
                                let code = if p.len() >= 2 {
                                    u16::from_be_bytes([p[0], p[1]])
                                } else {
                                    1005
                                };
                                return format!("server closed the WebSocket with {code}");
                            }
                            9 => wire::client_frame(10, p, [0x5a, 0xa5, 0x3c, 0xc3], &mut reply),
                            _ => s.other(p),
                        }
                    }
                }
            }
        };
        if !reply.is_empty() {
            if let Err(e) = c.tcp.write_all(&reply).await {
                return format!("write: {e}");
            }
            reply.clear();
        }
        if let Err(e) = wire::compact(&mut c.buf, &mut c.start, &mut c.end, need, MAX_FRAME) {
            return e.to_string();
        }
        match c.tcp.read(&mut c.buf[c.end..]).await {
            Ok(0) => return "server closed the connection".into(),
            Ok(n) => c.end += n,
            Err(e) => return format!("read: {e}"),
        }
        now = unix_ns();
    }
}

/// Receives an SSE body (chunked or not) until it ends; returns why it ended.
pub(super) async fn sse_loop(mut c: Open, topic: usize, stats: &SharedStats) -> String {
    let mut last_seq = 0u64;
    let mut dechunk = c.chunked.then(Dechunk::default);
    let mut body: Vec<u8> = Vec::new();
    let mut named: bool = false;
    let mut now = unix_ns();
    loop {
        // Raw bytes -> body bytes.
        let raw = &c.buf[c.start..c.end];
        let lines: &[u8] = match dechunk.as_mut() {
            Some(d) => match d.feed(raw, &mut body) {
                Some(used) => {
                    c.start += used;
                    &body
                }
                None => return "malformed chunked body".into(),
            },
            None => {
                c.start = c.end;
                raw
            }
        };
        // Whole lines -> events.
        let mut used = 0;
        {
            let mut s = stats.borrow_mut();
            while let Some(nl) = lines[used..].iter().position(|b| *b == b'\n') {
                let line = &lines[used..used + nl];
                used += nl + 1;
                if let Some(data) = line.strip_prefix(b"data: ") {
                    if named {
                        // `event: closed` and `event: gap` carry no message.
                        s.other(line);
                    } else {
                        s.event(data, now, topic, &mut last_seq);
                    }
                } else if line.starts_with(b"event: closed") {
                    named = true;
                    s.r.streams_closed += 1;
                } else if line.starts_with(b"event: ") {
                    named = true;
                } else if line.starts_with(b": ping") {
                    s.r.pings += 1;
                } else if line.is_empty() || line == b"\r" {
                    named = false;
                }
            }
        }
        let partial = lines.len() - used;
        if dechunk.is_some() {
            body.drain(..used);
        } else if partial > 0 {
            // Keep the unfinished line in the read buffer.
            c.start = c.end - partial;
        }
        if partial > MAX_FRAME {
            return "SSE line over the limit".into();
        }
        if dechunk.as_ref().is_some_and(Dechunk::done) {
            return "server ended the SSE response".into();
        }
        let need = if dechunk.is_none() { partial + 1 } else { 0 };
        if let Err(e) = wire::compact(
            &mut c.buf,
            &mut c.start,
            &mut c.end,
            need.min(MAX_FRAME),
            MAX_FRAME,
        ) {
            return e.to_string();
        }
        if c.end == c.buf.len() {
            // A line longer than the buffer: grow it.
            let n = c.buf.len() * 2;
            c.buf.resize(n.min(MAX_FRAME), 0);
        }
        match c.tcp.read(&mut c.buf[c.end..]).await {
            Ok(0) => return "server closed the connection".into(),
            Ok(n) => c.end += n,
            Err(e) => return format!("read: {e}"),
        }
        now = unix_ns();
    }
}
