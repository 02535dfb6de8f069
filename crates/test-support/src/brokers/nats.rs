//! `nats-server -js` on a free loopback port.

use std::path::Path;

use tokio::process::Child;

use crate::{free_port, get, TempDir};

use super::{kill, spawn, wait_until};

/// `nats-server -js` with its store in a temp dir and monitoring on (for
/// `/connz`). A restart keeps the port and the store, like a real restart.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    monitor_port: u16,
    store: TempDir,
    /// `--user` and `--pass`, if clients must log in.
    login: Option<(String, String)>,
    /// Certificate and key files: clients must speak TLS (`tls://`).
    tls: Option<(String, String)>,
}

impl NatsServer {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None, None).await
    }

    /// A server whose clients must give `user` and `password`; [`Self::url`]
    /// carries them.
    pub async fn start_with_user(user: &str, password: &str) -> anyhow::Result<Self> {
        Self::start_with(Some((user.to_owned(), password.to_owned())), None).await
    }

    /// A server that requires TLS from clients, with `cert`.
    pub async fn start_tls(cert: &crate::tls::ServerCert) -> anyhow::Result<Self> {
        let files = (
            cert.cert.display().to_string(),
            cert.key.display().to_string(),
        );
        Self::start_with(None, Some(files)).await
    }

    async fn start_with(
        login: Option<(String, String)>,
        tls: Option<(String, String)>,
    ) -> anyhow::Result<Self> {
        let mut server = Self {
            child: None,
            port: free_port(),
            monitor_port: free_port(),
            store: TempDir::new("sb-nats")?,
            login,
            tls,
        };
        server.launch().await?;
        Ok(server)
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let mut args: Vec<String> = [
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-m",
            &self.monitor_port.to_string(),
            "-sd",
            &self.store.path().display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some((user, password)) = &self.login {
            args.extend([
                "--user".into(),
                user.clone(),
                "--pass".into(),
                password.clone(),
            ]);
        }
        if let Some((cert, key)) = &self.tls {
            args.extend(["--tls", "--tlscert", cert, "--tlskey", key].map(String::from));
        }
        let mut child = spawn("nats-server", &args, "nats")?;
        let health = self.monitor_url("/healthz");
        wait_until(&mut child, "nats-server", || {
            let url = health.clone();
            async move { matches!(get(&url).await, Ok(r) if r.status == 200) }
        })
        .await?;
        self.child = Some(child);
        Ok(())
    }

    /// `nats://[USER:PASSWORD@]127.0.0.1:PORT` (`tls://` with TLS), for `--broker`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "tls" } else { "nats" };
        match &self.login {
            Some((user, password)) => {
                format!("{scheme}://{user}:{password}@127.0.0.1:{}", self.port)
            }
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn monitor_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.monitor_port)
    }

    pub fn store(&self) -> &Path {
        self.store.path()
    }

    /// Kills the server (SIGKILL).
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        kill(&mut self.child).await
    }

    /// Starts it again on the same ports with the same store.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        kill(&mut self.child).await?;
        self.launch().await
    }

    /// How many client subscriptions the server holds on exactly `subject`,
    /// over all connections (`/connz?subs=1`).
    pub async fn subscription_count(&self, subject: &str) -> anyhow::Result<usize> {
        let resp = get(&self.monitor_url("/connz?subs=1&limit=10000")).await?;
        anyhow::ensure!(resp.status == 200, "connz answered {}", resp.status);
        let body = resp.json()?;
        Ok(body["connections"]
            .as_array()
            .map(|conns| {
                conns
                    .iter()
                    .flat_map(|c| {
                        c["subscriptions_list"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                    })
                    .filter(|s| s.as_str() == Some(subject))
                    .count()
            })
            .unwrap_or(0))
    }
}
