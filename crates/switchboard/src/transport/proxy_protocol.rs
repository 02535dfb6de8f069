//! The PROXY protocol (HAProxy's spec, v1 text and v2 binary): behind
//! HAProxy or an NLB, the first bytes of a connection name the real client.
//! [`need`] is the sans-IO parser: it says how many bytes to read next,
//! exactly, so nothing past the header is taken from the socket and the
//! connection's bytes after it go to the HTTP layer untouched.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature.
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The spec's longest v1 line, CRLF included.
const V1_MAX: usize = 107;
/// The shortest v1 line (`PROXY UNKNOWN\r\n`): read first, in one go.
const V1_MIN: usize = 15;
/// Largest v2 payload (addresses and TLVs) accepted, bytes.
pub const V2_MAX_PAYLOAD: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    #[error("bad PROXY protocol header: {0}")]
    Invalid(&'static str),
    #[error("the connection ended inside the PROXY protocol header")]
    Eof,
}

/// What to do next with the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Need {
    /// Read exactly this many more bytes.
    More(usize),
    /// A whole header: the client's address, or `None` when the proxy
    /// speaks for itself (v2 LOCAL, v1 UNKNOWN, a non-IP family): the TCP
    /// peer's address stands.
    Done(Option<SocketAddr>),
}

/// Looks at the header bytes read so far (`buf` holds nothing else).
pub fn need(buf: &[u8]) -> Result<Need, ProxyError> {
    if buf.len() < V1_MIN {
        return Ok(Need::More(V1_MIN - buf.len()));
    }
    if buf.starts_with(&V2_SIG[..]) {
        if buf.len() < 16 {
            return Ok(Need::More(16 - buf.len()));
        }
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if len > V2_MAX_PAYLOAD {
            return Err(ProxyError::Invalid("v2 payload too long"));
        }
        if buf.len() < 16 + len {
            return Ok(Need::More(16 + len - buf.len()));
        }
        return parse_v2(buf).map(Need::Done);
    }
    if buf.starts_with(b"PROXY ") {
        if buf.ends_with(b"\r\n") {
            return parse_v1(&buf[..buf.len() - 2]).map(Need::Done);
        }
        if buf.len() >= V1_MAX {
            return Err(ProxyError::Invalid("v1 line too long"));
        }
        return Ok(Need::More(1));
    }
    Err(ProxyError::Missing)
}

/// Reads one header from `io`, byte-exact. The caller bounds it in time.
pub async fn read_header<R: AsyncRead + Unpin>(
    io: &mut R,
) -> Result<Option<SocketAddr>, ProxyError> {
    let mut buf = Vec::with_capacity(64);
    loop {
        match need(&buf)? {
            Need::Done(addr) => return Ok(addr),
            Need::More(n) => {
                let start = buf.len();
                buf.resize(start + n, 0);
                io.read_exact(&mut buf[start..])
                    .await
                    .map_err(|_| ProxyError::Eof)?;
            }
        }
    }
}

/// The v2 header a proxy sends for a TCP connection from `src` to port 80
/// of the loopback address of its family (command `LOCAL` with `None`),
/// with `tlv` after the addresses. For tests and tools: the gateway reads
/// headers, it never sends one.
pub fn v2_header(src: Option<SocketAddr>, tlv: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    let (cmd, fam) = match src {
        None => (0x20, 0x00),
        Some(SocketAddr::V4(a)) => {
            payload.extend_from_slice(&a.ip().octets());
            payload.extend_from_slice(&Ipv4Addr::LOCALHOST.octets());
            (0x21, 0x11)
        }
        Some(SocketAddr::V6(a)) => {
            payload.extend_from_slice(&a.ip().octets());
            payload.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
            (0x21, 0x21)
        }
    };
    if let Some(a) = src {
        payload.extend_from_slice(&a.port().to_be_bytes());
        payload.extend_from_slice(&80u16.to_be_bytes());
    }
    payload.extend_from_slice(tlv);
    let mut out = V2_SIG.to_vec();
    out.extend_from_slice(&[cmd, fam]);
    out.extend_from_slice(
        &u16::try_from(payload.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(&payload);
    out
}

/// `PROXY TCP4 SRC DST SPORT DPORT` (CRLF removed), or `PROXY UNKNOWN ...`.
fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    let line = std::str::from_utf8(line).map_err(|_| ProxyError::Invalid("v1 not ASCII"))?;
    let mut fields = line.split(' ');
    let _proxy = fields.next();
    let family = fields.next();
    if family == Some("UNKNOWN") {
        return Ok(None);
    }
    let want_v4 = match family {
        Some("TCP4") => true,
        Some("TCP6") => false,
        _ => {
            return Err(ProxyError::Invalid(
                "v1 family is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let fields: Vec<&str> = fields.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(ProxyError::Invalid("v1 needs four fields after the family"));
    };
    let src: IpAddr = src
        .parse()
        .map_err(|_| ProxyError::Invalid("v1 source address"))?;
    let dst: IpAddr = dst
        .parse()
        .map_err(|_| ProxyError::Invalid("v1 destination address"))?;
    if src.is_ipv4() != want_v4 || dst.is_ipv4() != want_v4 {
        return Err(ProxyError::Invalid("v1 address of the wrong family"));
    }
    let source_port = port(sport)?;
    port(dport)?;
    Ok(Some(SocketAddr::new(src, source_port)))
}

fn port(text: &str) -> Result<u16, ProxyError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProxyError::Invalid("v1 port"));
    }
    text.parse().map_err(|_| ProxyError::Invalid("v1 port"))
}

/// A whole v2 header: signature, version/command, family, length, payload.
fn parse_v2(buf: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Invalid("v2 version is not 2"));
    }
    match ver_cmd & 0x0f {
        0 => return Ok(None),
        1 => {}
        _ => return Err(ProxyError::Invalid("v2 command is not LOCAL or PROXY")),
    }
    let payload = &buf[16..];
    match buf[13] >> 4 {
        1 => {
            let a = payload
                .get(..12)
                .ok_or(ProxyError::Invalid("v2 IPv4 payload too short"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let port = u16::from_be_bytes([a[8], a[9]]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        2 => {
            let a = payload
                .get(..36)
                .ok_or(ProxyError::Invalid("v2 IPv6 payload too short"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            Ok(Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                port,
            )))
        }
        0 | 3 => Ok(None),
        _ => Err(ProxyError::Invalid("v2 address family")),
    }
}

#[cfg(test)]
mod tests;
