//! Origin checks (PROTOCOL.md "Edge rules"): a browser request whose
//! `Origin` is neither the request's own origin nor allowed by
//! `allowed_origins` is refused, so that a page of another site cannot use
//! the user's cookies on `/v1/ws`, SSE, publish or admin. A request without
//! `Origin` (not a browser) passes.

use hyper::HeaderMap;

/// The longest `Origin` value looked at; a longer one is foreign.
const MAX_ORIGIN_BYTES: usize = 1024;

/// One `allowed_origins` entry: `https://app.example.com`,
/// `https://*.example.com` (any subdomain, not the bare domain),
/// `http://localhost:3000`, or `*` (any origin: the check is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    Any,
    Exact(Origin),
    /// Scheme and port exact; the host ends with `.` + this suffix.
    Subdomains {
        scheme: String,
        suffix: String,
        port: u16,
    },
}

/// A parsed origin: lowercase scheme and host, and the port (the scheme's
/// default when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// `host[:port]` (IPv6 in brackets) into host and optional port.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        return Some((host, port));
    }
    match authority.split_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}

impl Origin {
    /// `scheme://host[:port]`, nothing after; `None` for anything else
    /// (`null` included).
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() > MAX_ORIGIN_BYTES {
            return None;
        }
        let (scheme, authority) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default = default_port(&scheme)?;
        let (host, port) = split_host_port(authority)?;
        let host = host.to_ascii_lowercase();
        if !valid_host(&host) {
            return None;
        }
        Some(Self {
            scheme,
            host,
            port: port.unwrap_or(default),
        })
    }
}

impl OriginPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(Self::Any);
        }
        let bad = || {
            format!(
                "allowed_origins: {text:?} is not `*` or SCHEME://HOST[:PORT] \
                 (http or https; HOST may start with `*.`)"
            )
        };
        if let Some((scheme, rest)) = text.split_once("://*.") {
            let origin = Origin::parse(&format!("{scheme}://{rest}")).ok_or_else(bad)?;
            return Ok(Self::Subdomains {
                scheme: origin.scheme,
                suffix: origin.host,
                port: origin.port,
            });
        }
        Origin::parse(text).map(Self::Exact).ok_or_else(bad)
    }

    fn matches(&self, origin: &Origin) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(o) => o == origin,
            Self::Subdomains {
                scheme,
                suffix,
                port,
            } => {
                *scheme == origin.scheme
                    && *port == origin.port
                    && origin
                        .host
                        .strip_suffix(suffix.as_str())
                        .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
            }
        }
    }
}

/// Whether the request may go on: no `Origin`, or one equal to the
/// request's own origin (`scheme` of the listener, host and port of
/// `Host`), or one that `allowed` matches. With `loopback_names`, the own
/// origin counts only when `Host` names the loopback (`localhost`,
/// `*.localhost`, `127.0.0.0/8`, `[::1]`): a DNS-rebinding page
/// (`evil.test` made to resolve to 127.0.0.1) sends a `Host` and an
/// `Origin` that agree, and must not pass as same-origin.
pub fn allowed(
    headers: &HeaderMap,
    scheme: &str,
    allowed: &[OriginPattern],
    loopback_names: bool,
) -> bool {
    let mut values = headers.get_all(hyper::header::ORIGIN).iter();
    let Some(value) = values.next() else {
        return true;
    };
    if values.next().is_some() {
        return false;
    }
    let Some(origin) = value.to_str().ok().and_then(Origin::parse) else {
        return allowed.contains(&OriginPattern::Any);
    };
    own_origin(headers, scheme)
        .is_some_and(|own| own == origin && (!loopback_names || names_loopback(&own.host)))
        || allowed.iter().any(|p| p.matches(&origin))
}

/// Whether `host` (lowercase, as [`Origin`] keeps it) can only mean this
/// machine: browsers resolve `localhost` and `*.localhost` to the loopback
/// themselves, and an IP literal is not looked up.
fn names_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost"
        || bare.ends_with(".localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The scheme a request came by: `listener`'s, or `https` when a trusted
/// proxy says so in `X-Forwarded-Proto` (it ended TLS).
pub fn request_scheme(
    headers: &HeaderMap,
    listener: &'static str,
    via_proxy: bool,
) -> &'static str {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').next().unwrap_or("").trim());
    match forwarded {
        Some(p) if via_proxy && p.eq_ignore_ascii_case("https") => "https",
        Some(p) if via_proxy && p.eq_ignore_ascii_case("http") => "http",
        _ => listener,
    }
}

/// `scheme` with the host and port of `Host`.
fn own_origin(headers: &HeaderMap, scheme: &str) -> Option<Origin> {
    let host = headers.get(hyper::header::HOST)?.to_str().ok()?;
    Origin::parse(&format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    /// The own-origin rule of a listener that is not loopback.
    fn allowed_anywhere(h: &HeaderMap, scheme: &str, p: &[OriginPattern]) -> bool {
        allowed(h, scheme, p, false)
    }

    #[test]
    fn on_a_loopback_listener_only_loopback_names_are_the_own_origin() {
        let none = patterns(&[]);
        let same = |host: &str| headers(&[("host", host), ("origin", &format!("http://{host}"))]);
        for host in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "app.localhost:8080",
            "127.9.9.9",
        ] {
            assert!(allowed(&same(host), "http", &none, true), "{host}");
        }
        // DNS rebinding: the page's own name, made to resolve to 127.0.0.1.
        for host in [
            "evil.test:8080",
            "localhost.evil.test:8080",
            "10.0.0.5:8080",
        ] {
            assert!(!allowed(&same(host), "http", &none, true), "{host}");
            assert!(allowed(&same(host), "http", &none, false), "{host}");
        }
        // Unless the operator lists it; and clients without Origin pass.
        let listed = patterns(&["http://evil.test:8080"]);
        assert!(allowed(&same("evil.test:8080"), "http", &listed, true));
        assert!(allowed(
            &headers(&[("host", "evil.test:8080")]),
            "http",
            &none,
            true
        ));
    }

    fn patterns(list: &[&str]) -> Vec<OriginPattern> {
        list.iter()
            .map(|p| OriginPattern::parse(p).unwrap())
            .collect()
    }

    #[test]
    fn same_origin_and_no_origin_pass() {
        let none = patterns(&[]);
        assert!(allowed_anywhere(
            &headers(&[("host", "gw.test:8080")]),
            "http",
            &none
        ));
        let same = headers(&[("host", "GW.test:8080"), ("origin", "http://gw.test:8080")]);
        assert!(allowed_anywhere(&same, "http", &none));
        let default_port = headers(&[("host", "gw.test"), ("origin", "http://gw.test:80")]);
        assert!(allowed_anywhere(&default_port, "http", &none));
        let other_scheme = headers(&[("host", "gw.test"), ("origin", "https://gw.test")]);
        assert!(!allowed_anywhere(&other_scheme, "http", &none));
        assert!(allowed_anywhere(&other_scheme, "https", &none));
        let other_port = headers(&[("host", "gw.test:8080"), ("origin", "http://gw.test:8081")]);
        assert!(!allowed_anywhere(&other_port, "http", &none));
    }

    #[test]
    fn foreign_origins_need_a_pattern() {
        let h = |o: &str| headers(&[("host", "gw.test"), ("origin", o)]);
        let p = patterns(&["https://app.example.com", "https://*.example.org"]);
        assert!(allowed_anywhere(&h("https://app.example.com"), "http", &p));
        assert!(allowed_anywhere(
            &h("https://APP.example.com:443"),
            "http",
            &p
        ));
        assert!(!allowed_anywhere(&h("http://app.example.com"), "http", &p));
        assert!(!allowed_anywhere(
            &h("https://app.example.com:8443"),
            "http",
            &p
        ));
        assert!(allowed_anywhere(&h("https://a.example.org"), "http", &p));
        assert!(allowed_anywhere(&h("https://a.b.example.org"), "http", &p));
        assert!(!allowed_anywhere(&h("https://example.org"), "http", &p));
        assert!(!allowed_anywhere(&h("https://evilexample.org"), "http", &p));
        assert!(!allowed_anywhere(&h("https://evil.com"), "http", &p));
        assert!(!allowed_anywhere(&h("null"), "http", &p));
        assert!(!allowed_anywhere(
            &h("https://app.example.com/path"),
            "http",
            &p
        ));
        assert!(allowed_anywhere(&h("null"), "http", &patterns(&["*"])));
        let two = headers(&[
            ("host", "gw.test"),
            ("origin", "http://gw.test"),
            ("origin", "http://gw.test"),
        ]);
        assert!(!allowed_anywhere(&two, "http", &p));
    }

    #[test]
    fn patterns_are_checked() {
        for bad in [
            "",
            "example.com",
            "ftp://x",
            "https://",
            "https://a/b",
            "https://*.",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(OriginPattern::parse("*"), Ok(OriginPattern::Any));
        assert!(OriginPattern::parse("http://[::1]:3000").is_ok());
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_safe(text in "\\PC{0,80}", host in "\\PC{0,40}") {
            let mut h = HeaderMap::new();
            if let Ok(v) = text.parse() { h.insert("origin", v); }
            if let Ok(v) = host.parse() { h.insert("host", v); }
            let _ = allowed_anywhere(&h, "http", &patterns(&["https://*.example.com"]));
            let _ = OriginPattern::parse(&text);
        }
    }
}
