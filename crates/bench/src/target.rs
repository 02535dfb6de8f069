//! The gateway under test: `http://HOST:PORT` on loopback only.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The `Host` header value.
    pub host: String,
}

impl Target {
    /// Parses `http://HOST[:PORT][/]`; refuses anything outside 127.0.0.0/8.
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("{url:?}: only http:// URLs are supported"))?;
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.contains('?') {
            bail!("{url:?}: give the gateway's base URL, without a path");
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .with_context(|| format!("{url:?}: bad port"))?,
            ),
            None => (rest, 80),
        };
        let ip: Ipv4Addr = if host.eq_ignore_ascii_case("localhost") {
            Ipv4Addr::LOCALHOST
        } else {
            host.parse().with_context(|| {
                format!("{url:?}: the host must be an IPv4 loopback address or localhost")
            })?
        };
        if !ip.is_loopback() {
            bail!("{url:?}: refusing a non-loopback target; load goes to 127.0.0.0/8 only");
        }
        Ok(Self {
            addr: SocketAddr::V4(SocketAddrV4::new(ip, port)),
            host: format!("{host}:{port}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(t.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(t.host, "127.0.0.1:8080");
        assert!(Target::parse("http://localhost:9/").is_ok());
        assert!(Target::parse("http://127.9.8.7:1").is_ok());
        assert!(Target::parse("http://10.0.0.1:8080").is_err());
        assert!(Target::parse("http://example.com:8080").is_err());
        assert!(Target::parse("https://127.0.0.1:8080").is_err());
        assert!(Target::parse("http://127.0.0.1:8080/x").is_err());
    }
}
