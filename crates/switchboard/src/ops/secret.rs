//! Secrets: keys and broker URLs with passwords. A [`Secret`] never shows
//! its text in `Debug` or `Display`; [`redact_url`] is the one way a URL
//! with credentials reaches a log line or an error.

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context};

/// A key (publish, admin). Reads as `&str` where it is compared; prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// None for an empty key (an empty string means "no key", as before).
    pub fn new(text: String) -> Option<Self> {
        (!text.is_empty()).then_some(Self(text))
    }

    /// Reads a key from a file: surrounding white space (the trailing
    /// newline of `echo KEY > file`) is trimmed; an empty file is an error.
    pub fn from_file(path: &Path, what: &str) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading {what} from {}", path.display()))?;
        match Self::new(text.trim().to_owned()) {
            Some(s) => Ok(s),
            None => bail!("{what} file {} is empty", path.display()),
        }
    }
}

impl std::ops::Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The URL with its userinfo (user, password or token) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match userinfo(url) {
        Some(info) => format!("{}***{}", &url[..info.start], &url[info.end - 1..]),
        None => url.to_owned(),
    }
}

/// The URL without its userinfo: for a client that is given the
/// credentials apart and would log the URL it connects to.
pub fn strip_userinfo(url: &str) -> String {
    match userinfo(url) {
        Some(info) => format!("{}{}", &url[..info.start], &url[info.end..]),
        None => url.to_owned(),
    }
}

/// Where the userinfo of `url` is, its `@` included.
fn userinfo(url: &str) -> Option<std::ops::Range<usize>> {
    let scheme_end = url.find("://")? + 3;
    // Userinfo ends at the last `@` before the path.
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    let at = url[scheme_end..authority_end].rfind('@')?;
    Some(scheme_end..scheme_end + at + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        let cases = [
            ("nats://u:hunter2@h:4222", "nats://***@h:4222"),
            ("redis://:hunter2@h:6379/2", "redis://***@h:6379/2"),
            ("rediss://u:p@ss@h/0", "rediss://***@h/0"),
            ("nats://token@h", "nats://***@h"),
            ("nats://h:4222", "nats://h:4222"),
            ("redis://h/0?x=a@b", "redis://h/0?x=a@b"),
            ("memory", "memory"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
            assert_eq!(strip_userinfo(url), want.replace("***@", ""), "{url}");
        }
    }

    #[test]
    fn a_secret_never_prints() {
        let s = Secret::new("hunter2".into()).unwrap();
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(&*s, "hunter2");
        assert!(Secret::new(String::new()).is_none());
    }

    #[test]
    fn key_files_are_trimmed_and_checked() {
        let dir = std::env::temp_dir().join(format!("sb-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = dir.join("ok");
        std::fs::write(&ok, "hunter2\n").unwrap();
        assert_eq!(&*Secret::from_file(&ok, "publish key").unwrap(), "hunter2");
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(Secret::from_file(&empty, "publish key").is_err());
        assert!(Secret::from_file(&dir.join("missing"), "publish key").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
