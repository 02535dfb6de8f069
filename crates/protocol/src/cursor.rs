//! Cursors: a stream's position in every topic it follows, as one opaque string.
//!
//! Text form: `<epoch>~<topic>~<id>~<topic>~<id>...`. `~` appears in neither
//! topics nor ids, and is unreserved in URLs, so a cursor travels unchanged in
//! JSON, an SSE `id:` line and a `?resume=` query. The epoch names the
//! broker's store; a cursor from another epoch (the store was lost) means `gap`.
//! A stream with one topic gets `<epoch>~<topic>~<id>`, the same bytes as every
//! other stream on that topic.

use crate::names::Topic;

/// Why a cursor could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("cursor is empty")]
    Empty,
    #[error("cursor has a topic without a position")]
    Unpaired,
    #[error("cursor names an invalid topic: {0}")]
    Topic(#[from] crate::names::NameError),
    #[error("cursor has an empty position or epoch")]
    EmptyPart,
    #[error("cursor epoch must be 1-64 of [A-Za-z0-9_.-]")]
    BadEpoch,
    #[error("cursor is longer than {0} bytes")]
    TooLong(usize),
}

/// A parsed cursor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    pub epoch: String,
    /// Position (message id) per topic, in the order the stream subscribed.
    pub positions: Vec<(Topic, String)>,
}

impl Cursor {
    /// Longest cursor we read back (a stream with many topics).
    pub const MAX_LEN: usize = 64 * 1024;

    pub fn parse(s: &str) -> Result<Self, CursorError> {
        if s.is_empty() {
            return Err(CursorError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(CursorError::TooLong(Self::MAX_LEN));
        }
        let mut parts = s.split('~');
        let epoch = parts.next().unwrap_or_default();
        if epoch.is_empty() {
            return Err(CursorError::EmptyPart);
        }
        if epoch.len() > 64
            || !epoch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(CursorError::BadEpoch);
        }
        let mut positions = Vec::new();
        while let Some(topic) = parts.next() {
            let id = parts.next().ok_or(CursorError::Unpaired)?;
            if id.is_empty() {
                return Err(CursorError::EmptyPart);
            }
            positions.push((Topic::new(topic)?, id.to_owned()));
        }
        Ok(Self {
            epoch: epoch.to_owned(),
            positions,
        })
    }

    pub fn position(&self, topic: &str) -> Option<&str> {
        self.positions
            .iter()
            .find(|(t, _)| t.as_str() == topic)
            .map(|(_, id)| id.as_str())
    }

    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 + self.positions.len() * 24);
        out.push_str(&self.epoch);
        for (t, id) in &self.positions {
            push_entry(&mut out, t.as_str(), id);
        }
        out
    }
}

/// The order of message ids within one topic: `"42"` (a sequence) or
/// `"1700000000000-3"` (a Redis stream id). None if `id` is neither.
pub fn id_order(id: &str) -> Option<(u64, u64)> {
    match id.split_once('-') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => Some((id.parse().ok()?, 0)),
    }
}

/// Appends `~topic~id` to a cursor being built.
pub fn push_entry(out: &mut String, topic: &str, id: &str) {
    out.push('~');
    out.push_str(topic);
    out.push('~');
    out.push_str(id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn roundtrip() {
        let c = Cursor::parse("e1~a/b~3~c:d~17-0").unwrap();
        assert_eq!(c.epoch, "e1");
        assert_eq!(c.position("a/b"), Some("3"));
        assert_eq!(c.position("c:d"), Some("17-0"));
        assert_eq!(c.encode(), "e1~a/b~3~c:d~17-0");
        assert_eq!(Cursor::parse("e1").unwrap().positions.len(), 0);
    }

    #[test]
    fn id_order_sorts_sequences_and_stream_ids() {
        assert!(id_order("9") < id_order("10"));
        assert!(id_order("5-1") < id_order("5-2"));
        assert!(id_order("5-9") < id_order("6-0"));
        assert_eq!(id_order("x"), None);
        assert_eq!(id_order("1-"), None);
    }

    #[test]
    fn errors() {
        assert_eq!(Cursor::parse(""), Err(CursorError::Empty));
        assert_eq!(Cursor::parse("e~a"), Err(CursorError::Unpaired));
        assert_eq!(Cursor::parse("garbage cursor"), Err(CursorError::BadEpoch));
        assert_eq!(Cursor::parse("~a~1"), Err(CursorError::EmptyPart));
        assert_eq!(Cursor::parse("e~a~"), Err(CursorError::EmptyPart));
        assert!(matches!(
            Cursor::parse("e~a b~1"),
            Err(CursorError::Topic(_))
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = Cursor::parse(&s);
        }
        #[test]
        fn encode_parse_roundtrip(epoch in "[a-z0-9]{1,8}",
                                  entries in proptest::collection::vec(("[a-z/:]{1,10}", "[0-9]{1,6}(-[0-9])?"), 0..5)) {
            let c = Cursor {
                epoch,
                positions: entries.into_iter().map(|(t, i)| (Topic::new(&t).unwrap(), i)).collect(),
            };
            prop_assert_eq!(Cursor::parse(&c.encode()).unwrap(), c);
        }
    }
}
