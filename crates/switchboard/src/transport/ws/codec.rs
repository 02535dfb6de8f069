//! RFC 6455 framing for the server side: decodes masked client frames into whole messages
//! and writes unmasked server frame headers, so a connection can send a per-stream head and
//! a shared body with one vectored write.

use bytes::{Buf, Bytes, BytesMut};

use super::utf8::Utf8Stream;

/// Longest server frame header: two bytes plus a 64-bit length (servers never mask).
pub const MAX_HEADER: usize = 10;

/// Longest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;

const FIN: u8 = 0x80;
const RSV: u8 = 0x70;
const MASKED: u8 = 0x80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// One whole message from the client; `Text` holds bytes already checked to be UTF-8.
#[derive(Debug, PartialEq, Eq)]
pub enum WsMessage {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// `None` when the close frame had no payload, else the code and reason.
    Close(Option<(u16, String)>),
}

/// Why a client's bytes cannot be read; each kind ends the connection with its close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("websocket protocol violation: {0}")]
    Protocol(&'static str),
    #[error("websocket message over the size limit")]
    TooBig,
    #[error("websocket text is not valid UTF-8")]
    BadUtf8,
}

impl WsError {
    /// The close code to send before dropping the connection (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            Self::Protocol(_) => 1002,
            Self::TooBig => 1009,
            Self::BadUtf8 => 1007,
        }
    }

    /// The close frame's reason: what was wrong, in a few words.
    pub fn close_reason(&self) -> &'static str {
        match self {
            Self::Protocol(what) => what,
            Self::TooBig => "message over the size limit",
            Self::BadUtf8 => "text is not valid UTF-8",
        }
    }
}

/// A data message whose first frames arrived but not its FIN frame.
#[derive(Debug)]
struct Partial {
    opcode: Opcode,
    data: BytesMut,
}

/// A frame header that is complete and passed every check that needs no payload.
struct Header {
    fin: bool,
    opcode: Opcode,
    mask: [u8; 4],
    header_len: usize,
    payload_len: usize,
}

/// Turns client bytes into messages. Holds only the partial fragmented message: incomplete
/// frames stay in the caller's buffer, so an idle connection costs no memory here.
#[derive(Debug)]
pub struct FrameDecoder {
    max_message: usize,
    partial: Option<Partial>,
    /// Payload bytes of the incomplete frame at the front of the caller's buffer already
    /// unmasked in place (and, in a text message, validated).
    unmasked: usize,
    /// The text message being received, validated as its bytes arrive.
    utf8: Utf8Stream,
}

impl FrameDecoder {
    /// `max_message` bounds a whole data message, summed over its fragments.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            partial: None,
            unmasked: 0,
            utf8: Utf8Stream::default(),
        }
    }

    /// Decodes one complete message from the front of `buf` (advancing it), `Ok(None)` if more
    /// bytes are needed. Non-final fragments are consumed into the decoder, and control frames
    /// interleaved in a fragmented message come out as soon as they are complete.
    ///
    /// `buf` must grow to hold a whole frame; the decoder deliberately does not reserve the
    /// length a header announces, so a client that claims a large frame and sends it slowly
    /// only costs the memory of the bytes it actually sent.
    ///
    /// After an error the connection must be closed with [`WsError::close_code`]; the
    /// decoder drops its partial message and is not meant to be used again.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<WsMessage>, WsError> {
        let result = self.decode_frames(buf);
        if result.is_err() {
            self.partial = None;
            self.unmasked = 0;
            self.utf8 = Utf8Stream::default();
        }
        result
    }

    fn decode_frames(&mut self, buf: &mut BytesMut) -> Result<Option<WsMessage>, WsError> {
        loop {
            let Some(header) = self.parse_header(buf)? else {
                return Ok(None);
            };
            let frame_len = header
                .header_len
                .checked_add(header.payload_len)
                .ok_or(WsError::TooBig)?;
            if buf.len() < frame_len {
                // Text is checked on what has arrived, so a bad byte fails at once.
                if let Some(arrived) = buf.get_mut(header.header_len..) {
                    self.unmask_arrived(&header, arrived)?;
                }
                return Ok(None);
            }
            buf.advance(header.header_len);
            let mut payload = buf.split_to(header.payload_len);
            self.unmask_arrived(&header, &mut payload)?;
            self.unmasked = 0;

            match header.opcode {
                Opcode::Ping => return Ok(Some(WsMessage::Ping(payload.freeze()))),
                Opcode::Pong => return Ok(Some(WsMessage::Pong(payload.freeze()))),
                Opcode::Close => {
                    return parse_close(&payload).map(|close| Some(WsMessage::Close(close)))
                }
                opcode @ (Opcode::Text | Opcode::Binary) => {
                    if header.fin {
                        return self.finish(opcode, payload).map(Some);
                    }
                    self.partial = Some(Partial {
                        opcode,
                        data: payload,
                    });
                }
                Opcode::Continuation => {
                    let Some(partial) = self.partial.as_mut() else {
                        // parse_header already rejects this; kept so no input can reach a panic.
                        return Err(WsError::Protocol(
                            "continuation frame without a message to continue",
                        ));
                    };
                    partial.data.extend_from_slice(&payload);
                    if header.fin {
                        if let Some(partial) = self.partial.take() {
                            return self.finish(partial.opcode, partial.data).map(Some);
                        }
                    }
                }
            }
        }
    }

    /// Unmasks the payload bytes of the frame `header` starts that arrived since the last
    /// call (`payload` is what has arrived of it), and validates them if they are text.
    fn unmask_arrived(&mut self, header: &Header, payload: &mut [u8]) -> Result<(), WsError> {
        let Some(fresh) = payload.get_mut(self.unmasked..) else {
            return Ok(());
        };
        let mut mask = header.mask;
        mask.rotate_left(self.unmasked % 4);
        unmask(fresh, mask);
        self.unmasked += fresh.len();
        let text = match header.opcode {
            Opcode::Text => true,
            Opcode::Continuation => self
                .partial
                .as_ref()
                .is_some_and(|p| p.opcode == Opcode::Text),
            _ => false,
        };
        if text {
            self.utf8.feed(fresh).map_err(|_| WsError::BadUtf8)?;
        }
        Ok(())
    }

    /// The whole message; a text message's last code point must be complete.
    fn finish(&mut self, opcode: Opcode, data: BytesMut) -> Result<WsMessage, WsError> {
        let data = data.freeze();
        if opcode == Opcode::Text {
            // Every byte was validated as it arrived (`unmask_arrived`).
            self.utf8.finish().map_err(|_| WsError::BadUtf8)?;
            Ok(WsMessage::Text(data))
        } else {
            Ok(WsMessage::Binary(data))
        }
    }

    /// Parses the frame header at the front of `buf` without consuming it. Each check runs
    /// as soon as the bytes it needs are present, so a bad or oversized frame is refused
    /// before the rest of it is waited for.
    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, WsError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        if b0 & RSV != 0 {
            // No extension is negotiated, so no RSV bit may be set (§5.2).
            return Err(WsError::Protocol("reserved bits set"));
        }
        let fin = b0 & FIN != 0;
        let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(WsError::Protocol("reserved opcode"))?;
        if opcode.is_control() && !fin {
            return Err(WsError::Protocol("fragmented control frame"));
        }
        match (opcode, &self.partial) {
            (Opcode::Continuation, None) => {
                return Err(WsError::Protocol(
                    "continuation frame without a message to continue",
                ))
            }
            (Opcode::Text | Opcode::Binary, Some(_)) => {
                return Err(WsError::Protocol(
                    "new data message inside a fragmented message",
                ))
            }
            _ => {}
        }

        let Some(&b1) = buf.get(1) else {
            return Ok(None);
        };
        if b1 & MASKED == 0 {
            return Err(WsError::Protocol("unmasked client frame"));
        }
        let (len, len_end) = match b1 & 0x7F {
            126 => match array::<2>(buf, 2) {
                Some(bytes) => (u64::from(u16::from_be_bytes(bytes)), 4),
                None => return Ok(None),
            },
            127 => match array::<8>(buf, 2) {
                Some(bytes) => (u64::from_be_bytes(bytes), 10),
                None => return Ok(None),
            },
            short => (u64::from(short), 2),
        };
        if len >> 63 != 0 {
            return Err(WsError::Protocol(
                "64-bit payload length with the high bit set",
            ));
        }
        if opcode.is_control() {
            if len > MAX_CONTROL as u64 {
                return Err(WsError::Protocol("control frame payload over 125 bytes"));
            }
        } else {
            let assembled = self
                .partial
                .as_ref()
                .map_or(0, |partial| partial.data.len());
            if (assembled as u64).saturating_add(len) > self.max_message as u64 {
                return Err(WsError::TooBig);
            }
        }
        // Fits in usize: it is at most 125 or at most max_message.
        let payload_len = usize::try_from(len).map_err(|_| WsError::TooBig)?;

        let Some(mask) = array::<4>(buf, len_end) else {
            return Ok(None);
        };
        Ok(Some(Header {
            fin,
            opcode,
            mask,
            header_len: len_end + 4,
            payload_len,
        }))
    }
}

/// `N` bytes of `buf` starting at `at`, or `None` if they have not all arrived.
fn array<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// XORs the client's masking key over the payload, eight bytes at a time.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let mask8 = [a, b, c, d, a, b, c, d];
    let wide = u64::from_ne_bytes(mask8);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        if let Ok(word) = <&mut [u8; 8]>::try_from(chunk) {
            *word = (u64::from_ne_bytes(*word) ^ wide).to_ne_bytes();
        }
    }
    // Whole chunks are a multiple of four bytes, so the tail starts at mask phase zero.
    for (byte, m) in chunks.into_remainder().iter_mut().zip(mask8) {
        *byte ^= m;
    }
}

fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, WsError> {
    if payload.is_empty() {
        return Ok(None);
    }
    let Some((code, reason)) = payload.split_first_chunk::<2>() else {
        return Err(WsError::Protocol("close payload of one byte"));
    };
    let code = u16::from_be_bytes(*code);
    if !peer_may_send(code) {
        return Err(WsError::Protocol("close code a peer may not send"));
    }
    let reason = std::str::from_utf8(reason).map_err(|_| WsError::BadUtf8)?;
    Ok(Some((code, reason.to_owned())))
}

/// Codes defined for use on the wire (§7.4.1 and the IANA registry) plus the ranges for
/// libraries and applications; 1005, 1006 and 1015 only ever describe a missing close.
fn peer_may_send(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Writes an unmasked FIN frame header for a server frame into `out`, returns its length
/// (2, 4 or 10).
pub fn write_header(opcode: Opcode, payload_len: usize, out: &mut [u8; MAX_HEADER]) -> usize {
    out[0] = FIN | opcode.bits();
    if let Some(short) = u8::try_from(payload_len).ok().filter(|&len| len < 126) {
        out[1] = short;
        2
    } else if let Ok(medium) = u16::try_from(payload_len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&medium.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    }
}

/// Payload of a close frame: code (big-endian) + reason truncated to fit 123 bytes on a char
/// boundary, since a control frame carries at most 125 bytes.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL - 2);
    // Terminates: offset zero is always a char boundary.
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.get(..end).unwrap_or_default().as_bytes());
    payload
}
