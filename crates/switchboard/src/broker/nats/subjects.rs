//! Topic names as NATS subjects, and the headers that carry a message's
//! dedup key. A topic becomes exactly one subject token, so no topic can be a
//! wildcard (`*`, `>`) or span tokens (`.`).

use sha1::{Digest as _, Sha1};
use switchboard_protocol::Topic;

/// The JetStream stream that holds every topic's history.
pub const STREAM: &str = "SWITCHBOARD";
/// Publishers write here; the stream captures `sb.msg.>`.
pub const MSG_PREFIX: &str = "sb.msg.";
/// The stream republishes each stored message here, in sequence order, with
/// its sequence and the previous sequence on the same subject in headers.
pub const LIVE_PREFIX: &str = "sb.live.";
/// The publisher's dedup key, hex, so that any bytes fit in a header.
pub const DEDUP_HEADER: &str = "Sb-Dedup-Key";
/// The message's publish hop ([`switchboard_protocol::publish::Publication::hop`]),
/// decimal; absent means 0.
pub const HOP_HEADER: &str = "Sb-Hop";

/// One subject token for `topic`: `[A-Za-z0-9_-]` kept, every other byte as
/// `=XX` (uppercase hex), `=` included, so the mapping is one-to-one.
pub fn token(topic: &Topic) -> String {
    let t = topic.as_str();
    let mut out = String::with_capacity(t.len() + 8);
    for b in t.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push('=');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0xf));
        }
    }
    out
}

/// The topic a token was made from, if it is one (the mapping is one-to-one).
#[cfg(test)]
pub fn topic_of(token: &str) -> Option<Topic> {
    let mut bytes = Vec::with_capacity(token.len());
    let mut it = token.bytes();
    while let Some(b) = it.next() {
        if b == b'=' {
            let hi = from_hex(it.next()?)?;
            let lo = from_hex(it.next()?)?;
            bytes.push(hi << 4 | lo);
        } else {
            bytes.push(b);
        }
    }
    Topic::new(std::str::from_utf8(&bytes).ok()?).ok()
}

pub fn msg_subject(topic: &Topic) -> String {
    format!("{MSG_PREFIX}{}", token(topic))
}

pub fn live_subject(topic: &Topic) -> String {
    format!("{LIVE_PREFIX}{}", token(topic))
}

/// `Nats-Msg-Id` for a publish with a dedup key: JetStream's duplicate window
/// is per stream, so the topic is part of it.
pub fn msg_id(topic: &Topic, dedup_key: &str) -> String {
    let mut h = Sha1::new();
    h.update(topic.as_str().as_bytes());
    h.update([0u8]);
    h.update(dedup_key.as_bytes());
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(hex_digit(b >> 4));
        s.push(hex_digit(b & 0xf));
    }
    s
}

pub fn unhex(s: &str) -> Option<String> {
    let pairs = s.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    let bytes = pairs
        .map(|p| Some(from_hex(p[0])? << 4 | from_hex(p[1])?))
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(n & 0xf)])
}

fn from_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tokens_keep_plain_names_readable() {
        let t = Topic::new("live_video_comment/1234").unwrap();
        assert_eq!(token(&t), "live_video_comment=2F1234");
        assert_eq!(msg_subject(&t), "sb.msg.live_video_comment=2F1234");
        let t = Topic::new("a.b.>").ok();
        assert!(t.is_none(), "> is not a topic character");
        let t = Topic::new("a.b=c").unwrap();
        assert_eq!(token(&t), "a=2Eb=3Dc");
    }

    #[test]
    fn dedup_keys_roundtrip_through_hex() {
        assert_eq!(unhex(&hex("k\n é".as_bytes())).as_deref(), Some("k\n é"));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("a"), None);
    }

    proptest! {
        #[test]
        fn a_topic_is_one_safe_token_and_comes_back(s in "[A-Za-z0-9_.:/@=+-]{1,64}") {
            let topic = Topic::new(&s).unwrap();
            let tok = token(&topic);
            prop_assert!(!tok.is_empty());
            prop_assert!(tok.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-=".contains(&b)));
            prop_assert_eq!(topic_of(&tok), Some(topic));
        }

        #[test]
        fn distinct_topics_have_distinct_ids(a in "[a-z.=]{1,8}", b in "[a-z.=]{1,8}") {
            prop_assume!(a != b);
            let (ta, tb) = (Topic::new(&a).unwrap(), Topic::new(&b).unwrap());
            prop_assert_ne!(token(&ta), token(&tb));
            prop_assert_ne!(msg_id(&ta, "k"), msg_id(&tb, "k"));
        }
    }
}
