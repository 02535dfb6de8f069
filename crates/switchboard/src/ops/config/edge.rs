//! The `[http]` table: timeouts, head size, connection caps, the real
//! client address behind a proxy, allowed origins, TLS (docs/security.md
//! "The HTTP edge", "Origin checks", "TLS").

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::positive;
use crate::cli::EdgeArgs;
use crate::tls::ServerTls;
use crate::transport::origin::OriginPattern;
use crate::transport::real_ip::Cidr;

/// Smallest and largest `max_head_bytes`.
const HEAD_BYTES: std::ops::RangeInclusive<usize> = 1024..=1 << 20;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// A request head must be whole within this long, ms: from the accept
    /// on a new connection, from its first byte on a keep-alive one. Default 10000.
    pub header_timeout_ms: Option<u64>,
    /// A keep-alive connection waiting this long for its next request is closed, ms. Default 75000.
    pub idle_timeout_ms: Option<u64>,
    /// A request body (publish, admin) must be whole within this long, ms. Default 10000.
    pub body_timeout_ms: Option<u64>,
    /// Largest request head (request line and headers), bytes; past it 431. Default 16384.
    pub max_head_bytes: Option<usize>,
    /// Open TCP connections at most. Default: the descriptor limit less headroom.
    pub max_connections: Option<usize>,
    /// Open connections from one client address at most. Default: no cap.
    pub max_connections_per_ip: Option<usize>,
    /// Every connection starts with a PROXY protocol header (v1 or v2). Default false.
    pub proxy_protocol: Option<bool>,
    /// Peers whose `X-Forwarded-For` (and `X-Forwarded-Proto`) is believed, CIDR. Default none.
    pub trusted_proxies: Option<Vec<String>>,
    /// Origins besides the request's own that browsers may come from. Default none.
    pub allowed_origins: Option<Vec<String>>,
    /// PEM certificate chain (leaf first): the listener serves TLS. With `tls_key`. Default none.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`. Default none.
    pub tls_key: Option<PathBuf>,
}

/// Validated `[http]` settings.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    pub max_head_bytes: usize,
    /// None: from the descriptor limit, at start.
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub proxy_protocol: bool,
    pub trusted_proxies: Vec<Cidr>,
    pub allowed_origins: Vec<OriginPattern>,
    /// None: plain HTTP.
    pub tls: Option<ServerTls>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            body_timeout: Duration::from_secs(10),
            max_head_bytes: 16 * 1024,
            max_connections: None,
            max_connections_per_ip: None,
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
            allowed_origins: Vec::new(),
            tls: None,
        }
    }
}

impl EdgeConfig {
    /// The file's `[http]` table with the flags (and their env twins) over it.
    pub fn from_parts(raw: RawHttp, args: &EdgeArgs) -> anyhow::Result<Self> {
        let d = Self::default();
        let ms = |flag: Option<u64>, file: Option<u64>, default: Duration, key: &str| {
            positive(flag.or(file), default.as_millis() as u64, key).map(Duration::from_millis)
        };
        let max_head_bytes = args
            .max_head_bytes
            .or(raw.max_head_bytes)
            .unwrap_or(d.max_head_bytes);
        if !HEAD_BYTES.contains(&max_head_bytes) {
            bail!(
                "http.max_head_bytes must be between {} and {}, not {max_head_bytes}",
                HEAD_BYTES.start(),
                HEAD_BYTES.end()
            );
        }
        let list = |flag: &[String], file: Option<Vec<String>>| {
            if flag.is_empty() {
                file.unwrap_or_default()
            } else {
                flag.to_vec()
            }
        };
        let trusted_proxies = list(&args.trusted_proxies, raw.trusted_proxies)
            .iter()
            .map(|c| Cidr::parse(c.trim()))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?;
        let allowed_origins = list(&args.allowed_origins, raw.allowed_origins)
            .iter()
            .map(|o| OriginPattern::parse(o.trim()))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?;
        let max_connections = args.max_connections.or(raw.max_connections);
        let max_connections_per_ip = args.max_connections_per_ip.or(raw.max_connections_per_ip);
        if max_connections == Some(0) || max_connections_per_ip == Some(0) {
            bail!("http.max_connections and http.max_connections_per_ip must be greater than 0");
        }
        let tls = match (
            args.tls_cert.as_ref().or(raw.tls_cert.as_ref()),
            args.tls_key.as_ref().or(raw.tls_key.as_ref()),
        ) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(ServerTls::load(cert, key)?),
            _ => bail!("http.tls_cert and http.tls_key go together: give both or neither"),
        };
        Ok(Self {
            tls,
            header_timeout: ms(
                args.header_timeout_ms,
                raw.header_timeout_ms,
                d.header_timeout,
                "http.header_timeout_ms",
            )?,
            idle_timeout: ms(
                args.idle_timeout_ms,
                raw.idle_timeout_ms,
                d.idle_timeout,
                "http.idle_timeout_ms",
            )?,
            body_timeout: ms(
                args.body_timeout_ms,
                raw.body_timeout_ms,
                d.body_timeout,
                "http.body_timeout_ms",
            )?,
            max_head_bytes,
            max_connections,
            max_connections_per_ip,
            proxy_protocol: args.proxy_protocol || raw.proxy_protocol.unwrap_or(false),
            trusted_proxies,
            allowed_origins,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str, args: &EdgeArgs) -> anyhow::Result<EdgeConfig> {
        EdgeConfig::from_parts(toml::from_str(toml)?, args)
    }

    #[test]
    fn defaults_and_overrides() {
        let d = parse("", &EdgeArgs::default()).unwrap();
        assert_eq!(d.header_timeout, Duration::from_secs(10));
        assert_eq!(d.idle_timeout, Duration::from_secs(75));
        assert_eq!(d.max_head_bytes, 16384);
        assert_eq!(d.max_connections, None);
        assert!(!d.proxy_protocol);
        let file = "header_timeout_ms = 500\nmax_connections = 9\ntrusted_proxies = [\"10.0.0.0/8\"]\nallowed_origins = [\"https://*.example.com\"]\n";
        let args = EdgeArgs {
            max_connections: Some(7),
            trusted_proxies: vec!["127.0.0.1".into(), "::1".into()],
            ..EdgeArgs::default()
        };
        let c = parse(file, &args).unwrap();
        assert_eq!(c.header_timeout, Duration::from_millis(500));
        assert_eq!(c.max_connections, Some(7), "the flag wins");
        assert_eq!(
            c.trusted_proxies.len(),
            2,
            "the flag's list replaces the file's"
        );
        assert_eq!(c.allowed_origins.len(), 1);
    }

    #[test]
    fn bad_values_are_refused() {
        let a = EdgeArgs::default();
        for bad in [
            "header_timeout_ms = 0",
            "max_head_bytes = 100",
            "max_head_bytes = 99999999",
            "max_connections = 0",
            "max_connections_per_ip = 0",
            "trusted_proxies = [\"10.0.0.0/40\"]",
            "allowed_origins = [\"example.com\"]",
            "tls_cert = \"/nonexistent/cert.pem\"",
            "tls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"",
            "unknown_key = 1",
        ] {
            assert!(parse(bad, &a).is_err(), "{bad}");
        }
    }
}
