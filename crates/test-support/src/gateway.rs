//! The real gateway as a child process on a port the OS picked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{keep_lines, TempDir};

/// How long the gateway may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// What the gateway prints, as its first stdout line, before the URL.
const READY_PREFIX: &str = "switchboard listening on ";

/// A running `switchboard serve`, killed when dropped.
pub struct Gateway {
    child: Child,
    addr: SocketAddr,
    /// It serves TLS (its ready line says `https://`).
    tls: bool,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    /// Runs `bin serve --listen 127.0.0.1:0 ARGS...` and waits for its address.
    pub async fn start(bin: &str, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(bin, args, &[]).await
    }

    /// Like [`Gateway::start`], with extra environment variables. Inherited
    /// `SWITCHBOARD_*` variables (but `SWITCHBOARD_LOG`) are removed so that
    /// tests stay hermetic.
    pub async fn start_with_env(
        bin: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args);
        for (key, _) in std::env::vars() {
            if key.starts_with("SWITCHBOARD_") && key != "SWITCHBOARD_LOG" {
                cmd.env_remove(key);
            }
        }
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning gateway {bin}"))?;

        let stderr = keep_lines(
            "gateway",
            BufReader::new(child.stderr.take().context("gateway stderr")?),
        );
        let mut stdout = BufReader::new(child.stdout.take().context("gateway stdout")?);
        let mut first = String::new();
        let read = tokio::time::timeout(START_TIMEOUT, stdout.read_line(&mut first)).await;
        let addr = match read {
            Err(_) => anyhow::bail!("gateway printed no address within {START_TIMEOUT:?}"),
            Ok(Err(e)) => return Err(e).context("reading gateway stdout"),
            Ok(Ok(0)) => {
                let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                anyhow::bail!("gateway exited before printing its address: {status:?}")
            }
            Ok(Ok(_)) => parse_ready_line(first.trim_end())?,
        };
        let kept = keep_lines("gateway stdout", stdout);
        Ok(Self {
            child,
            addr: addr.0,
            tls: addr.1,
            stdout: kept,
            stderr,
        })
    }

    /// What the gateway printed to stdout after its address line (e.g. `dev` output).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Everything the gateway wrote to stderr so far (its logs).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS), no trailing slash.
    pub fn http_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT` (`wss://` with TLS) + `path` (which starts with `/`).
    pub fn ws_url(&self, path: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS) + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http_url())
    }

    /// Waits until `GET /readyz` answers 200 (a shared broker is connected),
    /// for at most `limit`.
    pub async fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let url = self.url("/readyz");
        let deadline = tokio::time::Instant::now() + limit;
        while crate::get(&url).await?.status != 200 {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "gateway not ready within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends a signal by name (`"TERM"`, `"INT"`, ...) with `kill(1)`.
    pub fn signal(&self, sig: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("gateway already exited")?;
        let status = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .context("running kill")?;
        anyhow::ensure!(status.success(), "kill -{sig} {pid} failed: {status}");
        Ok(())
    }

    /// Waits for the process to exit, for at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => anyhow::bail!("gateway still running after {limit:?}"),
        }
    }
}

/// The address in `switchboard listening on http(s)://ADDR`, and whether it is https.
fn parse_ready_line(line: &str) -> anyhow::Result<(SocketAddr, bool)> {
    let url = line
        .strip_prefix(READY_PREFIX)
        .with_context(|| format!("unexpected first stdout line from gateway: {line:?}"))?;
    let (rest, tls) = crate::tls::after_scheme(url, "http", "https")?;
    let addr = rest
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("bad address in gateway line: {line:?}"))?;
    Ok((addr, tls))
}

/// Writes `toml` to `switchboard.toml` in `dir`; pass the path with `--config`.
pub fn write_config(dir: &TempDir, toml: &str) -> anyhow::Result<PathBuf> {
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, toml).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The gateway `bin` with [`write_config`] `toml` in `dir` as `--config`,
/// and `args` after it.
pub async fn gateway_with_config(
    bin: &str,
    dir: &TempDir,
    toml: &str,
    args: &[&str],
) -> anyhow::Result<Gateway> {
    let config = write_config(dir, toml)?;
    let mut all = vec!["--config", config.to_str().context("UTF-8 temp path")?];
    all.extend_from_slice(args);
    Gateway::start(bin, &all).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_gives_the_address() {
        let (addr, tls) =
            parse_ready_line("switchboard listening on http://127.0.0.1:4321").unwrap();
        assert_eq!((addr.port(), tls), (4321, false));
        let (_, tls) = parse_ready_line("switchboard listening on https://127.0.0.1:1").unwrap();
        assert!(tls);
        assert!(parse_ready_line("listening on 127.0.0.1:1").is_err());
    }
}
