//! `php -S` with a router script on a free loopback port: a real PHP lambda.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::BufReader;
use tokio::process::{Child, Command};

use crate::{forward_lines, free_port};

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
        anyhow::ensure!(
            router_script.is_file(),
            "PHP router script {} does not exist",
            router_script.display()
        );
        let port = free_port();
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
