//! An app's `topics` setting: the patterns bounding what its streams may
//! follow. A pattern is a topic (exact), or a topic prefix followed by one
//! trailing `*` that matches any rest (`scores/*`; `*` alone matches every
//! topic, which the operator then writes down on purpose).

use std::fmt;

use switchboard_protocol::Topic;

/// Most patterns an app may list (a start-up bound; matching is a scan).
pub const MAX_PATTERNS: usize = 1024;

#[derive(Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

/// Validated patterns, checked at start-up.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TopicPatterns(Vec<Pattern>);

impl TopicPatterns {
    /// Checks each pattern: an exact one must be a valid topic; a prefix
    /// (what precedes the one trailing `*`) must be made of topic characters.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, String> {
        if patterns.len() > MAX_PATTERNS {
            return Err(format!("at most {MAX_PATTERNS} patterns"));
        }
        let mut out = Vec::with_capacity(patterns.len());
        for p in patterns {
            let p = p.as_ref();
            let pattern = match p.strip_suffix('*') {
                Some(prefix) => {
                    if !prefix.is_empty() {
                        // The prefix of a topic: valid as a topic itself.
                        Topic::new(prefix).map_err(|e| format!("pattern {p:?}: {e}"))?;
                    }
                    Pattern::Prefix(prefix.to_owned())
                }
                None => {
                    Topic::new(p).map_err(|e| {
                        format!("pattern {p:?}: {e} (a `*` may only end a pattern)")
                    })?;
                    Pattern::Exact(p.to_owned())
                }
            };
            out.push(pattern);
        }
        Ok(Self(out))
    }

    /// Whether `topic` is one the patterns allow.
    pub fn allows(&self, topic: &str) -> bool {
        self.0.iter().any(|p| match p {
            Pattern::Exact(t) => t == topic,
            Pattern::Prefix(pre) => topic.starts_with(pre.as_str()),
        })
    }
}

impl fmt::Debug for TopicPatterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|p| match p {
                Pattern::Exact(t) => t.clone(),
                Pattern::Prefix(pre) => format!("{pre}*"),
            }))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_trailing_star() {
        let p = TopicPatterns::parse(&["news", "scores/*"]).unwrap();
        assert!(p.allows("news"));
        assert!(!p.allows("news/1"), "exact means exact");
        assert!(!p.allows("new"));
        assert!(p.allows("scores/1"));
        assert!(p.allows("scores/"));
        assert!(!p.allows("scores"), "the prefix includes the slash");
        assert!(!p.allows("private/1"));
        assert!(TopicPatterns::parse(&["*"]).unwrap().allows("anything"));
        assert!(!TopicPatterns::parse::<&str>(&[]).unwrap().allows("x"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "a*b", "**", "a b", "sc*res/*", "x~y", "a,b"] {
            assert!(TopicPatterns::parse(&[bad]).is_err(), "{bad:?}");
        }
        let long = format!("{}*", "x".repeat(257));
        assert!(TopicPatterns::parse(&[long]).is_err());
        let many = vec!["a"; MAX_PATTERNS + 1];
        assert!(TopicPatterns::parse(&many).is_err());
    }
}
