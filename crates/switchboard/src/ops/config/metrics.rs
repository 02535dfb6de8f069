//! Where `/metrics` is served (`metrics_listen`) and who may read it
//! (`metrics_auth`); docs/security.md "Secrets".

use std::net::SocketAddr;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::cli::ServeArgs;

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MetricsAuth {
    /// Whoever reaches its listener.
    #[default]
    None,
    /// Requests with the admin key, as the admin API.
    AdminKey,
}

impl MetricsAuth {
    fn parse(text: &str) -> anyhow::Result<Self> {
        match text {
            "none" => Ok(Self::None),
            "admin_key" => Ok(Self::AdminKey),
            other => bail!("metrics_auth {other:?} is not `none` or `admin_key`"),
        }
    }
}

/// Where `/metrics` is served and who may read it.
pub fn listener(
    args: &ServeArgs,
    file: (Option<&str>, Option<MetricsAuth>),
    listen: SocketAddr,
    has_admin_key: bool,
) -> anyhow::Result<(Option<SocketAddr>, MetricsAuth)> {
    let addr = args
        .metrics_listen
        .as_deref()
        .or(file.0)
        .map(|text| {
            text.parse::<SocketAddr>()
                .with_context(|| format!("metrics_listen {text:?} is not IP:PORT"))
        })
        .transpose()?;
    if addr.is_some_and(|a| a == listen && a.port() != 0) {
        bail!("metrics_listen {listen} is the same address as listen");
    }
    let auth = match &args.metrics_auth {
        Some(text) => MetricsAuth::parse(text)?,
        None => file.1.unwrap_or_default(),
    };
    if auth == MetricsAuth::AdminKey && !has_admin_key {
        bail!("metrics_auth = \"admin_key\" needs an admin key (--admin-key or --admin-key-file)");
    }
    Ok((addr, auth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_and_admin_key_auth_needs_a_key() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let mut args = ServeArgs::default();
        let none = listener(&args, (None, None), listen, false).unwrap();
        assert_eq!(none, (None, MetricsAuth::None));
        let file = (Some("127.0.0.1:9090"), Some(MetricsAuth::AdminKey));
        let (at, auth) = listener(&args, file, listen, true).unwrap();
        assert_eq!(
            (at.map(|a| a.port()), auth),
            (Some(9090), MetricsAuth::AdminKey)
        );
        assert!(
            listener(&args, file, listen, false).is_err(),
            "no admin key"
        );
        args.metrics_listen = Some("127.0.0.1:9091".into());
        args.metrics_auth = Some("none".into());
        let (at, auth) = listener(&args, file, listen, false).unwrap();
        assert_eq!(
            (at.map(|a| a.port()), auth),
            (Some(9091), MetricsAuth::None)
        );
        for bad in ["localhost:9090", "127.0.0.1:8080"] {
            args.metrics_listen = Some(bad.into());
            assert!(
                listener(&args, (None, None), listen, false).is_err(),
                "{bad}"
            );
        }
        args.metrics_listen = None;
        args.metrics_auth = Some("basic".into());
        assert!(listener(&args, (None, None), listen, true).is_err());
    }
}
