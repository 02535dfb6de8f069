//! Validated names from outside: app names, topics, client stream names.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} bytes")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} contains {ch:?}, allowed: {allowed}")]
    BadChar {
        kind: &'static str,
        ch: char,
        allowed: &'static str,
    },
}

fn check(
    s: &str,
    kind: &'static str,
    max: usize,
    allowed: &'static str,
    ok: fn(u8) -> bool,
) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if s.len() > max {
        return Err(NameError::TooLong { kind, max });
    }
    if let Some(ch) = s.chars().find(|c| !c.is_ascii() || !ok(*c as u8)) {
        return Err(NameError::BadChar { kind, ch, allowed });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr, $allowed:literal, $ok:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            pub const MAX_LEN: usize = $max;
            pub fn new(s: &str) -> Result<Self, NameError> {
                check(s, $kind, $max, $allowed, $ok)?;
                Ok(Self(Arc::from(s)))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }
        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// An app name: `[a-z0-9_-]{1,64}`.
    AppName, "app name", 64, "[a-z0-9_-]",
    |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
);

name_type!(
    /// A topic: `[A-Za-z0-9_.:/@=+-]{1,256}`. `~` and `,` are never in a topic,
    /// which the cursor format relies on.
    Topic, "topic", 256, "[A-Za-z0-9_.:/@=+-]",
    |b| b.is_ascii_alphanumeric() || b"_.:/@=+-".contains(&b)
);

name_type!(
    /// A client's name for one stream on its connection: 1 to 128 printable
    /// ASCII characters other than `"` and `\`.
    StreamName, "stream name", 128, "printable ASCII except '\"' and '\\\\'",
    |b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn topics() {
        assert!(Topic::new("live_video_comment/1234").is_ok());
        assert!(Topic::new("a:b@c=d+e-f.g").is_ok());
        assert!(matches!(Topic::new(""), Err(NameError::Empty { .. })));
        assert!(matches!(
            Topic::new("a b"),
            Err(NameError::BadChar { ch: ' ', .. })
        ));
        assert!(matches!(Topic::new("a*"), Err(NameError::BadChar { .. })));
        assert!(matches!(Topic::new("a~b"), Err(NameError::BadChar { .. })));
        assert!(matches!(
            Topic::new(&"x".repeat(257)),
            Err(NameError::TooLong { .. })
        ));
        assert!(Topic::new(&"x".repeat(256)).is_ok());
    }

    #[test]
    fn apps() {
        assert!(AppName::new("live_comments").is_ok());
        assert!(AppName::new("Live").is_err());
        assert!(AppName::new(&"a".repeat(65)).is_err());
    }

    proptest! {
        #[test]
        fn topic_new_never_panics_and_roundtrips(s in ".{0,300}") {
            if let Ok(t) = Topic::new(&s) {
                prop_assert_eq!(t.as_str(), s.as_str());
                prop_assert!(!s.contains('~') && !s.contains(','));
            }
        }
        #[test]
        fn valid_topics_accepted(s in "[A-Za-z0-9_.:/@=+-]{1,256}") {
            prop_assert!(Topic::new(&s).is_ok());
        }
    }
}
