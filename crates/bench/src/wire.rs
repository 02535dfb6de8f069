//! Just enough wire parsing for the load generator, kept allocation-free on
//! the hot path: HTTP response heads, server WebSocket frame headers,
//! HTTP/1.1 chunked bodies, and the two numbers we need from each event
//! (`"t":` and `"seq":`), found with a byte search instead of a JSON parse.

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last = hay.len() - needle.len();
    let mut i = 0;
    while i <= last {
        match hay[i..=last].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// The unsigned integer right after `key` (e.g. `"t":`), spaces allowed.
pub fn number_after(hay: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(hay, key)? + key.len();
    let mut digits = hay[at..].iter().skip_while(|b| **b == b' ').peekable();
    digits.peek().filter(|b| b.is_ascii_digit())?;
    let mut n: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            break;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// The send timestamp and sequence number the publisher put in a message's data.
pub fn stamp(payload: &[u8]) -> Option<(u64, u64)> {
    Some((
        number_after(payload, b"\"t\":")?,
        number_after(payload, b"\"seq\":")?,
    ))
}

/// The value of the first `"type":"..."` in a server frame.
pub fn frame_type(payload: &[u8]) -> &[u8] {
    const KEY: &[u8] = b"\"type\":\"";
    // The gateway writes "type" first; fall back to a search otherwise.
    let at = if payload.starts_with(b"{\"type\":\"") {
        Some(1 + KEY.len())
    } else {
        find(payload, KEY).map(|p| p + KEY.len())
    };
    match at {
        Some(a) => {
            let rest = &payload[a..];
            let end = rest.iter().position(|b| *b == b'"').unwrap_or(rest.len());
            &rest[..end]
        }
        None => b"",
    }
}

/// A parsed HTTP response head.
#[derive(Debug, Default)]
pub struct Head {
    pub status: u16,
    pub content_length: Option<usize>,
    /// A `Content-Length` header was there but was not a number.
    pub bad_content_length: bool,
    pub chunked: bool,
    pub close: bool,
    /// Bytes of the head, up to and including the blank line.
    pub len: usize,
}

/// Parses a response head if `buf` holds all of it.
pub fn response_head(buf: &[u8]) -> Option<Head> {
    let end = find(buf, b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let mut head = Head {
        status,
        len: end,
        ..Head::default()
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().ok();
            head.bad_content_length = head.content_length.is_none();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        }
    }
    Some(head)
}

/// Like [`response_head`], but a whole head that does not parse is an
/// error (more bytes would not help), not `None`.
#[allow(dead_code)] // timer_load's
pub fn whole_response_head(buf: &[u8]) -> Option<Result<Head, String>> {
    let end = find(buf, b"\r\n\r\n")?;
    Some(response_head(buf).ok_or_else(|| {
        let line_end = find(buf, b"\r\n").unwrap_or(end);
        format!(
            "bad status line {:?}",
            String::from_utf8_lossy(&buf[..line_end])
        )
    }))
}

/// One server-to-client WebSocket frame at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole frame: opcode, where its payload starts, its length.
    Whole {
        fin: bool,
        opcode: u8,
        start: usize,
        len: usize,
    },
    /// More bytes are needed: at least this many in all.
    Need(usize),
}

/// Reads a frame header (2, 4 or 10 bytes; a mask key if one is set).
#[inline]
pub fn ws_frame(b: &[u8]) -> Frame {
    // No frame is over usize::MAX bytes.
    ws_frame_within(b, usize::MAX).unwrap_or(Frame::Need(usize::MAX))
}

/// [`ws_frame`], refusing a frame whose payload is over `max` bytes before
/// it is read: `Err` holds the length the header declares.
#[inline]
pub fn ws_frame_within(b: &[u8], max: usize) -> Result<Frame, u64> {
    if b.len() < 2 {
        return Ok(Frame::Need(2));
    }
    let fin = b[0] & 0x80 != 0;
    let opcode = b[0] & 0x0f;
    let masked = b[1] & 0x80 != 0;
    let (mut start, len) = match b[1] & 0x7f {
        126 => {
            if b.len() < 4 {
                return Ok(Frame::Need(4));
            }
            (4, u64::from(u16::from_be_bytes([b[2], b[3]])))
        }
        127 => {
            if b.len() < 10 {
                return Ok(Frame::Need(10));
            }
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[2..10]);
            (10, u64::from_be_bytes(n))
        }
        n => (2, u64::from(n)),
    };
    if len > max as u64 {
        return Err(len);
    }
    let len = len as usize;
    if masked {
        start += 4;
    }
    if b.len() < start + len {
        return Ok(Frame::Need(start.saturating_add(len)));
    }
    Ok(Frame::Whole {
        fin,
        opcode,
        start,
        len,
    })
}

/// Writes a masked client frame (used for pong and close replies).
pub fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// Incremental HTTP/1.1 chunked-body decoder.
#[derive(Debug, Default)]
pub struct Dechunk {
    state: ChunkState,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(usize),
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailer,
    Done,
}

impl Dechunk {
    /// Consumes what it can of `raw`, appending body bytes to `body`.
    /// Returns bytes consumed; `None` on a malformed body.
    pub fn feed(&mut self, raw: &[u8], body: &mut Vec<u8>) -> Option<usize> {
        let mut at = 0;
        loop {
            match self.state {
                ChunkState::Done => return Some(at),
                ChunkState::Size => {
                    let Some(nl) = find(&raw[at..], b"\r\n") else {
                        return if raw.len() - at > 1024 {
                            None
                        } else {
                            Some(at)
                        };
                    };
                    let line = std::str::from_utf8(&raw[at..at + nl]).ok()?;
                    let hex = line.split(';').next()?.trim();
                    let size = usize::from_str_radix(hex, 16).ok()?;
                    at += nl + 2;
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    let take = left.min(raw.len() - at);
                    if take == 0 {
                        return Some(at);
                    }
                    body.extend_from_slice(&raw[at..at + take]);
                    at += take;
                    self.state = if take == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take)
                    };
                }
                ChunkState::Trailer => {
                    let Some(nl) = find(&raw[at..], b"\r\n") else {
                        return if raw.len() - at > 1024 {
                            None
                        } else {
                            Some(at)
                        };
                    };
                    at += nl + 2;
                    if nl == 0 {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::DataEnd => {
                    if raw.len() - at < 2 {
                        return Some(at);
                    }
                    if &raw[at..at + 2] != b"\r\n" {
                        return None;
                    }
                    at += 2;
                    self.state = ChunkState::Size;
                }
            }
        }
    }

    /// The terminating zero-size chunk was seen.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// The last (zero-size) chunk's size line was read; the trailer may be
    /// still to come.
    #[allow(dead_code)] // timer_load's
    pub fn last_chunk(&self) -> bool {
        matches!(self.state, ChunkState::Trailer | ChunkState::Done)
    }
}

/// Makes room at the end of `buf`: moves unread bytes (`start..end`) to the
/// front, and grows the buffer when one frame needs more than it holds
/// (up to `max` bytes).
pub fn compact(
    buf: &mut Vec<u8>,
    start: &mut usize,
    end: &mut usize,
    need: usize,
    max: usize,
) -> anyhow::Result<()> {
    if *start == *end {
        *start = 0;
        *end = 0;
    } else if *start > 0 && (*end == buf.len() || *start + need > buf.len()) {
        buf.copy_within(*start..*end, 0);
        *end -= *start;
        *start = 0;
    }
    if need > buf.len() {
        if need > max {
            anyhow::bail!("frame of {need} bytes is over the limit");
        }
        buf.resize(need, 0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_from_event_frames() {
        let f = br#"{"type":"event","stream":"0","id":"m1~bench/0~7","topic":"bench/0","data":{"t":1700000000123456789,"seq":42,"pad":"xx"}}"#;
        assert_eq!(stamp(f), Some((1_700_000_000_123_456_789, 42)));
        assert_eq!(frame_type(f), b"event");
        assert_eq!(frame_type(br#"{"type":"ping","cursors":{}}"#), b"ping");
        assert_eq!(frame_type(br#"{"stream":"0","type":"opened"}"#), b"opened");
        assert_eq!(stamp(br#"{"seq":1}"#), None);
        assert_eq!(number_after(br#"{"t": 12}"#, b"\"t\":"), Some(12));
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"ab", b"abc"), None);
    }

    #[test]
    fn frame_headers() {
        assert_eq!(ws_frame(&[0x81]), Frame::Need(2));
        assert_eq!(
            ws_frame(&[0x81, 3, b'a', b'b', b'c']),
            Frame::Whole {
                fin: true,
                opcode: 1,
                start: 2,
                len: 3
            }
        );
        assert_eq!(ws_frame(&[0x81, 126, 1]), Frame::Need(4));
        assert_eq!(ws_frame(&[0x81, 126, 1, 0]), Frame::Need(4 + 256));
        let mut big = vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        big.resize(10 + 65536, 0);
        assert!(matches!(
            ws_frame(&big),
            Frame::Whole {
                start: 10,
                len: 65536,
                ..
            }
        ));
        let mut out = Vec::new();
        client_frame(10, b"hi", [1, 2, 3, 4], &mut out);
        assert_eq!(out, [0x8a, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
    }

    #[test]
    fn heads_and_chunks() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n5\r\nhel";
        let h = response_head(r).unwrap();
        assert_eq!((h.status, h.chunked, h.content_length), (200, true, None));
        let mut d = Dechunk::default();
        let mut body = Vec::new();
        let raw = &r[h.len..];
        let used = d.feed(raw, &mut body).unwrap();
        assert_eq!((used, &body[..]), (raw.len(), &b"hel"[..]));
        let used = d.feed(b"lo\r\n3;x=y\r\n, w\r\n0\r\n", &mut body).unwrap();
        assert_eq!(&body[..], b"hello, w");
        assert!(!d.done(), "the trailer's blank line is still to come");
        assert_eq!(used, 19);
        assert_eq!(d.feed(b"\r\n", &mut body), Some(2));
        assert!(d.done());
        let h = response_head(
            b"HTTP/1.1 101 Switching Protocols\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        assert_eq!((h.status, h.content_length, h.close), (101, Some(0), true));
        assert!(response_head(b"HTTP/1.1 200 OK\r\n").is_none());
    }
}
