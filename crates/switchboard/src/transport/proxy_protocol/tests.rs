use super::*;

fn parse_all(bytes: &[u8]) -> Result<(Option<SocketAddr>, usize), ProxyError> {
    let mut len = 0;
    loop {
        match need(&bytes[..len])? {
            Need::Done(a) => return Ok((a, len)),
            Need::More(n) => {
                if len + n > bytes.len() {
                    return Err(ProxyError::Eof);
                }
                len += n;
            }
        }
    }
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn v1_lines_name_the_client() {
    let line = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n";
    let (addr, len) = parse_all(line).unwrap();
    assert_eq!(addr, Some(sock("203.0.113.7:56324")));
    assert_eq!(
        &line[len..len + 3],
        b"GET",
        "nothing past the header is taken"
    );
    let six = b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n";
    assert_eq!(parse_all(six).unwrap().0, Some(sock("[2001:db8::1]:1")));
    assert_eq!(parse_all(b"PROXY UNKNOWN\r\nGET").unwrap(), (None, 15));
    assert_eq!(
        parse_all(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n").unwrap().0,
        None
    );
}

#[test]
fn bad_v1_lines_are_refused() {
    let bad: [&[u8]; 9] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
    ];
    for b in bad {
        assert!(
            matches!(
                parse_all(b),
                Err(ProxyError::Invalid(_) | ProxyError::Missing)
            ),
            "{:?}",
            String::from_utf8_lossy(b)
        );
    }
    let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
    assert_eq!(
        parse_all(&long),
        Err(ProxyError::Invalid("v1 line too long"))
    );
}

#[test]
fn v2_headers_name_the_client() {
    let four = v2_header(Some(sock("198.51.100.4:4000")), &[]);
    assert_eq!(
        parse_all(&four).unwrap(),
        (Some(sock("198.51.100.4:4000")), 28)
    );
    let six = v2_header(Some(sock("[2001:db8::9]:9")), &[0x04, 0, 1, 0xaa]);
    assert_eq!(parse_all(&six).unwrap().0, Some(sock("[2001:db8::9]:9")));
    assert_eq!(parse_all(&v2_header(None, &[])).unwrap(), (None, 16));
}

#[test]
fn bad_v2_headers_are_refused() {
    let mut wrong_version = v2_header(Some(sock("1.2.3.4:1")), &[]);
    wrong_version[12] = 0x11;
    let mut wrong_cmd = v2_header(Some(sock("1.2.3.4:1")), &[]);
    wrong_cmd[12] = 0x22;
    let mut short = v2_header(Some(sock("1.2.3.4:1")), &[]);
    short[15] = 4;
    short.truncate(20);
    let mut huge = v2_header(None, &[]);
    huge[14] = 0xff;
    for b in [wrong_version, wrong_cmd, short, huge] {
        assert!(
            matches!(parse_all(&b), Err(ProxyError::Invalid(_))),
            "{b:?}"
        );
    }
}

#[tokio::test]
async fn the_reader_takes_the_header_only() {
    let mut bytes = v2_header(Some(sock("192.0.2.1:7")), &[]);
    bytes.extend_from_slice(b"GET /");
    let mut io = &bytes[..];
    assert_eq!(read_header(&mut io).await, Ok(Some(sock("192.0.2.1:7"))));
    assert_eq!(io, b"GET /");
    let mut cut = &b"PROXY TCP4 1.2"[..];
    assert_eq!(read_header(&mut cut).await, Err(ProxyError::Eof));
}

proptest::proptest! {
    #[test]
    fn garbage_never_panics_and_never_overreads(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        if let Ok((_, len)) = parse_all(&bytes) {
            proptest::prop_assert!(len <= 16 + V2_MAX_PAYLOAD);
        }
    }

    #[test]
    fn mutated_headers_never_panic(pos in 0usize..40, byte in proptest::num::u8::ANY, v6 in proptest::bool::ANY) {
        let src = if v6 { sock("[2001:db8::1]:5") } else { sock("1.2.3.4:5") };
        let mut b = v2_header(Some(src), &[]);
        if let Some(x) = b.get_mut(pos) { *x = byte; }
        let _ = parse_all(&b);
        let mut line = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n".to_vec();
        if let Some(x) = line.get_mut(pos) { *x = byte; }
        let _ = parse_all(&line);
    }

    #[test]
    fn v1_roundtrips(a in proptest::num::u32::ANY, p in proptest::num::u16::ANY) {
        let ip = Ipv4Addr::from(a);
        let line = format!("PROXY TCP4 {ip} 10.0.0.1 {p} 80\r\n");
        proptest::prop_assert_eq!(parse_all(line.as_bytes()).unwrap().0, Some(SocketAddr::new(IpAddr::V4(ip), p)));
    }
}
