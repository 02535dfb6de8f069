//! The connection caps: `max_connections` for the node and
//! `max_connections_per_ip` for one client address. A connection over a cap
//! is closed at once (counted by reason) and costs nobody else anything.
//! The descriptor limit is raised to its hard maximum at start, and the
//! default `max_connections` leaves room under it for listeners, broker,
//! lambda and sink sockets and files, so that a flood meets the cap before
//! it meets EMFILE.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::real_ip::{is_trusted, Cidr};
use crate::ops::config::EdgeConfig;
use crate::ops::metrics::EdgeStats;

/// Why a connection (or, behind a trusted proxy, a WebSocket or SSE
/// request) was refused: the `reason` label of the refusal counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections,
    MaxConnectionsPerIp,
    ProxyHeader,
    /// A failed TLS handshake (a timeout counts as a header timeout).
    TlsHandshake,
}

pub struct Edge {
    pub max_connections: usize,
    max_per_ip: Option<usize>,
    /// With the PROXY protocol, the client is known only after its header:
    /// the per-address cap is applied then, not at accept.
    proxy_protocol: bool,
    pub trusted_proxies: Vec<Cidr>,
    open: AtomicUsize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
    pub stats: EdgeStats,
}

/// One accepted connection's place under `max_connections` (and its
/// address's, once known); given back when dropped.
pub struct ConnSlot {
    edge: Arc<Edge>,
    ip: Option<IpSlot>,
}

/// One place under `max_connections_per_ip`; given back when dropped.
pub struct IpSlot {
    edge: Arc<Edge>,
    ip: IpAddr,
}

impl Edge {
    pub fn new(config: &EdgeConfig) -> Self {
        let max_connections = config.max_connections.unwrap_or_else(|| {
            let (limit, max) = default_max_connections();
            tracing::info!(
                descriptors = limit,
                max_connections = max,
                "max_connections from the descriptor limit"
            );
            max
        });
        Self {
            max_connections,
            max_per_ip: config.max_connections_per_ip,
            proxy_protocol: config.proxy_protocol,
            trusted_proxies: config.trusted_proxies.clone(),
            open: AtomicUsize::new(0),
            by_ip: Mutex::new(HashMap::new()),
            stats: EdgeStats::default(),
        }
    }

    /// A new TCP connection from `peer`: its slot, or the refusal (counted).
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<ConnSlot, Refusal> {
        let prev = self.open.fetch_add(1, Ordering::Relaxed);
        let mut slot = ConnSlot {
            edge: self.clone(),
            ip: None,
        };
        self.stats.tcp_connections.add(1);
        if prev >= self.max_connections {
            return Err(self.refuse(Refusal::MaxConnections));
        }
        if !self.proxy_protocol && !is_trusted(&self.trusted_proxies, peer) {
            slot.ip = Some(self.claim_ip(peer)?);
        }
        Ok(slot)
    }

    /// The PROXY protocol named the client `ip`: it counts under its cap.
    pub fn admit_proxied(self: &Arc<Self>, slot: &mut ConnSlot, ip: IpAddr) -> Result<(), Refusal> {
        if !is_trusted(&self.trusted_proxies, ip) {
            slot.ip = Some(self.claim_ip(ip)?);
        }
        Ok(())
    }

    /// Whether connections from `peer` are counted per address at accept
    /// (else their WebSocket and SSE requests are, by forwarded address).
    pub fn counts_connection_of(&self, peer: IpAddr) -> bool {
        !is_trusted(&self.trusted_proxies, peer)
    }

    /// A place for `ip` under `max_connections_per_ip` (always, when off).
    pub fn claim_ip(self: &Arc<Self>, ip: IpAddr) -> Result<IpSlot, Refusal> {
        let ip = ip.to_canonical();
        if let Some(max) = self.max_per_ip {
            let mut by_ip = self.by_ip.lock();
            let n = by_ip.entry(ip).or_insert(0);
            if *n >= max {
                drop(by_ip);
                return Err(self.refuse(Refusal::MaxConnectionsPerIp));
            }
            *n += 1;
        }
        Ok(IpSlot {
            edge: self.clone(),
            ip,
        })
    }

    /// Counts and logs one refusal.
    pub fn refuse(&self, why: Refusal) -> Refusal {
        let counter = match why {
            Refusal::MaxConnections => &self.stats.refused_max_connections,
            Refusal::MaxConnectionsPerIp => &self.stats.refused_max_connections_per_ip,
            Refusal::ProxyHeader => &self.stats.refused_proxy_header,
            Refusal::TlsHandshake => &self.stats.refused_tls_handshake,
        };
        counter.inc();
        tracing::debug!(reason = ?why, "connection refused");
        why
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.edge.open.fetch_sub(1, Ordering::Relaxed);
        self.edge.stats.tcp_connections.add(-1);
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if self.edge.max_per_ip.is_none() {
            return;
        }
        let mut by_ip = self.edge.by_ip.lock();
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// Raises the soft descriptor limit to the hard one (as nginx's
/// `worker_rlimit_nofile` and Go's runtime do) and returns it, with the
/// default `max_connections` under it: the limit less a tenth (at least
/// 128, at most half), kept for everything that is not a client.
pub fn default_max_connections() -> (u64, usize) {
    let limit = raise_nofile_limit();
    let headroom = (limit / 10).max(128).min(limit / 2);
    let max = usize::try_from(limit - headroom)
        .unwrap_or(usize::MAX)
        .max(1);
    (limit, max)
}

fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    // RLIM_INFINITY and the like: a figure the kernel cannot have.
    lim.rlim_cur.min(1 << 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(max: usize, per_ip: Option<usize>, trusted: &[&str]) -> Arc<Edge> {
        let config = EdgeConfig {
            max_connections: Some(max),
            max_connections_per_ip: per_ip,
            trusted_proxies: trusted.iter().map(|c| Cidr::parse(c).unwrap()).collect(),
            ..EdgeConfig::default()
        };
        Arc::new(Edge::new(&config))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_node_cap_refuses_and_frees() {
        let e = edge(2, None, &[]);
        let a = e.admit(ip("10.0.0.1")).unwrap();
        let _b = e.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(e.admit(ip("10.0.0.3")).err(), Some(Refusal::MaxConnections));
        assert_eq!(
            e.open_connections(),
            2,
            "a refused connection gives its place back"
        );
        drop(a);
        assert!(e.admit(ip("10.0.0.3")).is_ok());
        assert_eq!(e.stats.refused_max_connections.get(), 1);
    }

    #[test]
    fn the_address_cap_counts_each_address() {
        let e = edge(100, Some(2), &["10.9.0.0/16"]);
        let a1 = e.admit(ip("10.0.0.1")).unwrap();
        let _a2 = e.admit(ip("::ffff:10.0.0.1")).unwrap();
        let err = e.admit(ip("10.0.0.1")).err();
        assert_eq!(err, Some(Refusal::MaxConnectionsPerIp));
        assert!(e.admit(ip("10.0.0.2")).is_ok());
        let proxies: Vec<_> = (0..5).map(|_| e.admit(ip("10.9.0.1")).unwrap()).collect();
        assert_eq!(
            proxies.len(),
            5,
            "a trusted proxy is not capped per address"
        );
        drop(a1);
        assert!(e.admit(ip("10.0.0.1")).is_ok());
        let _x1 = e.claim_ip(ip("203.0.113.1")).unwrap();
        let _x2 = e.claim_ip(ip("203.0.113.1")).unwrap();
        assert!(e.claim_ip(ip("203.0.113.1")).is_err());
        assert_eq!(e.stats.refused_max_connections_per_ip.get(), 2);
    }

    #[test]
    fn the_default_leaves_headroom() {
        let (limit, max) = default_max_connections();
        assert!(limit >= 2 && (max as u64) < limit, "{limit} {max}");
    }
}
