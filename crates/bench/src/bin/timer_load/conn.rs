//! One WebSocket connection of the load: connect, open its streams, hold
//! them (reading frames, answering pings) and count what comes back.

use super::*;

pub(super) struct Conn {
    pub(super) tcp: TcpStream,
    pub(super) buf: Vec<u8>,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) mask: u32,
}

impl Conn {
    pub(super) fn next_mask(&mut self) -> [u8; 4] {
        // xorshift32: masks need not be secret here, only present.
        let mut x = self.mask;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask = x;
        x.to_be_bytes()
    }

    /// Reads more bytes, first making room for a frame of `need` bytes.
    pub(super) async fn fill(&mut self, need: usize) -> Result<(), String> {
        // `ws_frame` has refused a frame over MAX_FRAME.
        wire::compact(
            &mut self.buf,
            &mut self.start,
            &mut self.end,
            need,
            usize::MAX,
        )
        .map_err(|e| e.to_string())?;
        match self.tcp.read(&mut self.buf[self.end..]).await {
            Ok(0) => Err("server closed the connection".into()),
            Ok(n) => {
                self.end += n;
                Ok(())
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }
}

/// What one text frame or control frame meant.
pub(super) enum Seen {
    Opened,
    Rejected(String),
    Nothing,
    Closed(String),
}

/// Handles the whole frames in the buffer; queues pongs in `reply`.
pub(super) fn frames(
    c: &mut Conn,
    sh: &Counters,
    reply: &mut Vec<u8>,
    seen: &mut Vec<Seen>,
) -> Result<usize, String> {
    loop {
        match ws_frame(&c.buf[c.start..c.end])? {
            Frame::Need(n) => return Ok(n),
            Frame::Whole {
                opcode, start, len, ..
            } => {
                let (a, b) = (c.start + start, c.start + start + len);
                c.start = b;
                match opcode {
                    1 => {
                        let p = &c.buf[a..b];
                        let s = match serde_json::from_slice::<ServerFrame>(p) {
                            Ok(f) => match f.kind.as_ref() {
                                "opened" => Seen::Opened,
                                "rejected" => Seen::Rejected(cut(p)),
                                "error" if f.stream.is_some() => Seen::Rejected(cut(p)),
                                "ping" => {
                                    inc(&sh.pings);
                                    Seen::Nothing
                                }
                                "event" => {
                                    inc(&sh.events);
                                    Seen::Nothing
                                }
                                "closed" => {
                                    inc(&sh.streams_closed);
                                    first(&sh.first_close, || cut(p));
                                    Seen::Nothing
                                }
                                _ => {
                                    inc(&sh.other);
                                    first(&sh.first_other, || cut(p));
                                    Seen::Nothing
                                }
                            },
                            Err(_) => {
                                inc(&sh.other);
                                first(&sh.first_other, || cut(p));
                                Seen::Nothing
                            }
                        };
                        seen.push(s);
                    }
                    8 => {
                        let p = &c.buf[a..b];
                        let code = if p.len() >= 2 {
                            u16::from_be_bytes([p[0], p[1]])
                        } else {
                            1005
                        };
                        seen.push(Seen::Closed(format!(
                            "server closed the WebSocket with {code}"
                        )));
                        return Ok(0);
                    }
                    9 => {
                        let mask = c.next_mask();
                        wire::client_frame(10, &c.buf[a..b], mask, reply);
                    }
                    10 => {}
                    _ => {
                        inc(&sh.other);
                    }
                }
            }
        }
    }
}

/// Connects, upgrades to WebSocket on `/v1/ws` (no stream opened yet).
pub(super) async fn connect(args: &Args, target: &Target, idx: usize) -> Result<Conn> {
    let sock = TcpSocket::new_v4()?;
    let src = args.source(idx);
    sock.bind(SocketAddr::new(src, 0))
        .map_err(|e| anyhow!("bind {src}: {e}"))?;
    let mut tcp = sock.connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    let req = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c3dpdGNoYm9hcmQtYmVuY2g=\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.host
    );
    tcp.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = 0;
    let head = loop {
        if let Some(h) = wire::whole_response_head(&buf[..end]) {
            break h.map_err(|e| anyhow!(e))?;
        }
        if end == buf.len() {
            bail!("response head larger than {} bytes", buf.len());
        }
        let n = tcp.read(&mut buf[end..]).await?;
        if n == 0 {
            bail!("closed during the handshake");
        }
        end += n;
    };
    if head.status != 101 {
        bail!("handshake answered {} (want 101)", head.status);
    }
    Ok(Conn {
        tcp,
        buf,
        start: head.len,
        end,
        mask: (0x9e37_79b9 ^ (idx as u32).wrapping_mul(0x85eb_ca6b)) | 1,
    })
}

/// Opens this connection's streams, at most `open_window` unanswered at a time.
pub(super) async fn open_streams(
    args: &Args,
    c: &mut Conn,
    idx: usize,
    sh: &Counters,
) -> Result<()> {
    let total = args.streams;
    let (mut next, mut pending, mut answered) = (0usize, 0usize, 0usize);
    let mut out = Vec::new();
    let mut seen = Vec::new();
    while answered < total {
        while pending < args.open_window.max(1) && next < total {
            let i = idx * total + next;
            let frame = json!({
                "type": "open",
                "stream": format!("s{next}"),
                "app": args.app,
                "params": {"timer_ms": args.timer_ms, "topic": format!("{}{i}", args.topic_prefix)},
            });
            let text = serde_json::to_vec(&frame)?;
            let mask = c.next_mask();
            wire::client_frame(1, &text, mask, &mut out);
            next += 1;
            pending += 1;
        }
        if !out.is_empty() {
            c.tcp.write_all(&out).await?;
            out.clear();
        }
        let need = frames(c, sh, &mut out, &mut seen).map_err(|e| anyhow!(e))?;
        for s in seen.drain(..) {
            match s {
                Seen::Opened => {
                    inc(&sh.opened);
                    pending = pending.saturating_sub(1);
                    answered += 1;
                }
                Seen::Rejected(why) => {
                    inc(&sh.rejected);
                    first(&sh.first_error, || format!("connection {idx}: {why}"));
                    pending = pending.saturating_sub(1);
                    answered += 1;
                }
                Seen::Closed(why) => bail!(why),
                Seen::Nothing => {}
            }
        }
        if answered >= total {
            break;
        }
        if !out.is_empty() {
            // Pongs first; opens are added on the next turn.
            c.tcp.write_all(&out).await?;
            out.clear();
        }
        // Send more opens first while the window has room; else wait for answers.
        if pending >= args.open_window.max(1) || next >= total {
            c.fill(need).await.map_err(|e| anyhow!(e))?;
        }
    }
    Ok(())
}

/// Reads and discards frames (answering pings) until `stop` or the end.
pub(super) async fn hold(
    c: &mut Conn,
    sh: &Counters,
    mut stop: watch::Receiver<bool>,
) -> Option<String> {
    let mut reply = Vec::new();
    let mut seen = Vec::new();
    loop {
        let need = match frames(c, sh, &mut reply, &mut seen) {
            Ok(n) => n,
            Err(e) => return Some(e),
        };
        for s in seen.drain(..) {
            if let Seen::Closed(why) = s {
                return Some(why);
            }
        }
        if !reply.is_empty() {
            if let Err(e) = c.tcp.write_all(&reply).await {
                return Some(format!("write: {e}"));
            }
            reply.clear();
        }
        tokio::select! {
            r = c.fill(need) => {
                if let Err(e) = r {
                    return Some(e);
                }
            }
            _ = stop.wait_for(|s| *s) => return None,
        }
    }
}

pub(super) async fn connection(
    args: Arc<Args>,
    target: Target,
    idx: usize,
    sh: Arc<Counters>,
    gate: Arc<Semaphore>,
    open_deadline: Instant,
    stop: watch::Receiver<bool>,
) {
    let opened = {
        let _permit = gate.acquire().await;
        tokio::time::timeout_at(open_deadline, async {
            let mut c = connect(&args, &target, idx).await?;
            open_streams(&args, &mut c, idx, &sh).await?;
            Ok::<_, anyhow::Error>(c)
        })
        .await
        .unwrap_or_else(|_| Err(anyhow!("open phase timed out")))
    };
    let mut c = match opened {
        Ok(c) => {
            inc(&sh.conns_ok);
            inc(&sh.conns_done);
            sh.progress.notify_one();
            c
        }
        Err(e) => {
            inc(&sh.conns_failed);
            first(&sh.first_error, || format!("connection {idx}: {e:#}"));
            inc(&sh.conns_done);
            sh.progress.notify_one();
            return;
        }
    };
    if let Some(why) = hold(&mut c, &sh, stop).await {
        inc(&sh.conns_closed);
        first(&sh.first_close, || why);
    }
}

// ---------------------------------------------------------------- measuring
