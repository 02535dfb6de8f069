//! `php -S` with a router script on a free loopback port: a real PHP lambda;
//! the scripts of the gateway's tests, and one that logs its events.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::io::BufReader;
use tokio::process::{Child, Command};

use crate::read_json_lines;
use crate::{eventually, forward_lines, free_port, TempDir, WAIT};

/// `path` from the workspace root (the repository).
pub fn repo_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The gateway's test lambda `name`: `crates/switchboard/tests/php/<name>`.
pub fn php_script(name: &str) -> PathBuf {
    repo_path("crates/switchboard/tests/php").join(name)
}

/// How long `php -S` may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running PHP built-in web server, killed when dropped.
pub struct PhpServer {
    child: Child,
    port: u16,
}

impl PhpServer {
    /// Serves every request with `router_script`.
    pub async fn start(router_script: &Path) -> anyhow::Result<Self> {
        Self::start_with_env(router_script, &[]).await
    }

    /// Like [`PhpServer::start`]; the script sees `env` through `getenv()`.
    pub async fn start_with_env(
        router_script: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_on_port(free_port(), router_script, env).await
    }

    /// Like [`PhpServer::start_with_env`] on a `port` the test chose (a
    /// server that comes up after the gateway already points at it).
    pub async fn start_on_port(
        port: u16,
        router_script: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            router_script.is_file(),
            "PHP router script {} does not exist",
            router_script.display()
        );
        let docroot = router_script.parent().unwrap_or(Path::new("."));
        let mut cmd = Command::new("php");
        cmd.args(["-d", "display_errors=stderr", "-d", "error_reporting=-1"])
            .arg("-S")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-t")
            .arg(docroot)
            .arg(router_script)
            .envs(env.iter().copied())
            .env_remove("PHP_CLI_SERVER_WORKERS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "`php` is not installed: install php-cli (apt-get install -y php-cli); \
                 the project's test script installs it"
            ),
            Err(e) => return Err(e).context("spawning php -S"),
        };
        forward_lines(
            "php",
            BufReader::new(child.stdout.take().context("php stdout")?),
        );
        forward_lines(
            "php",
            BufReader::new(child.stderr.take().context("php stderr")?),
        );

        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("php -S on port {port} exited at start: {status}");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(Self { child, port });
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("php -S on port {port} not accepting within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/`: the lambda URL to give the gateway.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// A test lambda ([`php_script`] `script`) that logs every event it is given
/// as JSON lines to `lambda.log` (its `LAMBDA_LOG`) in a temp dir of its own.
pub struct LoggingPhp {
    php: PhpServer,
    log: PathBuf,
    dir: TempDir,
}

impl LoggingPhp {
    /// The temp dir is named after `prefix`; the script also sees `env`.
    pub async fn start(prefix: &str, script: &str, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = TempDir::new(prefix)?;
        let log = dir.path().join("lambda.log");
        let mut all = vec![("LAMBDA_LOG", log.to_str().context("UTF-8 temp path")?)];
        all.extend_from_slice(env);
        let php = PhpServer::start_with_env(&php_script(script), &all).await?;
        Ok(Self { php, log, dir })
    }

    /// The lambda URL to give the gateway.
    pub fn url(&self) -> String {
        self.php.url()
    }

    /// The temp dir (also for the test's other files: config, sinks).
    pub fn dir(&self) -> &TempDir {
        &self.dir
    }

    /// The log file, one JSON object per line.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Every event the lambda was given so far, in order.
    pub fn events(&self) -> Vec<Value> {
        read_json_lines(&self.log)
    }

    /// The events of type `kind` so far, in order.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["type"] == kind)
            .collect()
    }

    /// Waits (at most `limit`) until the lambda has been given a `close`
    /// event; returns the first one's reason.
    pub async fn close_reason(&self, limit: std::time::Duration) -> anyhow::Result<String> {
        eventually(limit, "a close event at the lambda", || {
            self.events_of("close")
                .first()
                .and_then(|e| e["reason"].as_str().map(str::to_owned))
        })
        .await
    }

    /// Waits (at most [`WAIT`]) until the lambda has been given an event of
    /// type `kind`; `what` names the wait in the error.
    pub async fn wait_for(&self, kind: &str, what: &str) -> anyhow::Result<()> {
        eventually(WAIT, what, || {
            (!self.events_of(kind).is_empty()).then_some(())
        })
        .await
    }
}
