//! The real client address behind a proxy: `X-Forwarded-For` is believed
//! only from a peer in `trusted_proxies`, and read from the right, skipping
//! trusted hops, as nginx's `real_ip_recursive on` does.

use std::net::IpAddr;

use hyper::HeaderMap;

/// Addresses read from `X-Forwarded-For` at most (the rest, on the left, is
/// not looked at): a long header costs a bounded amount of work.
const MAX_HOPS: usize = 32;

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("trusted_proxies: {text:?} is not an IP address or ADDRESS/PREFIX");
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

pub fn is_trusted(trusted: &[Cidr], ip: IpAddr) -> bool {
    trusted.iter().any(|c| c.contains(ip))
}

/// The client of a request that came from `peer` (the TCP peer, or the
/// PROXY protocol's source). From a trusted peer, the rightmost
/// `X-Forwarded-For` address that is not trusted itself; when every
/// address is trusted, the leftmost one looked at; an entry that is not an
/// address stops the walk at the last good one.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let mut client = peer.to_canonical();
    if !is_trusted(trusted, client) {
        return client;
    }
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let hops = values.iter().rev().flat_map(|v| v.rsplit(','));
    for hop in hops.take(MAX_HOPS) {
        let Some(ip) = parse_hop(hop.trim()) else {
            break;
        };
        client = ip;
        if !is_trusted(trusted, ip) {
            break;
        }
    }
    client
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`
/// or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    hop.parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| Cidr::parse(c).unwrap()).collect()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains(ip("10.1.255.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(c.contains(ip("::ffff:10.1.0.9")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(!Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.2")));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains(ip("2001:db8:1::5")));
        for bad in ["", "10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/-1"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_read_from_trusted_peers_only() {
        let trusted = cidrs(&["127.0.0.0/8", "10.0.0.0/8"]);
        let h = xff(&["203.0.113.9, 198.51.100.7, 10.0.0.2"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("198.51.100.7"));
        assert_eq!(client_ip(ip("192.0.2.1"), &h, &trusted), ip("192.0.2.1"));
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &[]), ip("127.0.0.1"));
        let two = xff(&["203.0.113.9", "10.0.0.3, 10.0.0.2"]);
        assert_eq!(client_ip(ip("10.9.9.9"), &two, &trusted), ip("203.0.113.9"));
        let all_trusted = xff(&["10.0.0.5, 10.0.0.2"]);
        assert_eq!(
            client_ip(ip("10.9.9.9"), &all_trusted, &trusted),
            ip("10.0.0.5")
        );
        let garbage = xff(&["203.0.113.9, bogus, 10.0.0.2"]);
        assert_eq!(
            client_ip(ip("10.9.9.9"), &garbage, &trusted),
            ip("10.0.0.2")
        );
        let ports = xff(&["[2001:db8::7]:443, 198.51.100.7:1234"]);
        assert_eq!(
            client_ip(ip("10.9.9.9"), &ports, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("10.9.9.9"), &HeaderMap::new(), &trusted),
            ip("10.9.9.9")
        );
    }

    proptest::proptest! {
        #[test]
        fn any_header_gives_an_address(value in "\\PC{0,200}") {
            let mut h = HeaderMap::new();
            if let Ok(v) = value.parse() { h.insert("x-forwarded-for", v); }
            let trusted = cidrs(&["127.0.0.0/8"]);
            let _ = client_ip(ip("127.0.0.1"), &h, &trusted);
            let _ = Cidr::parse(&value);
        }
    }
}
