//! Real shared brokers for scale-out tests: `nats-server -js` and
//! `redis-server` on free loopback ports, killed on drop and restartable on
//! the same port (outage tests), a TCP proxy that cuts one node off its
//! broker, and the brokers' own view of subscriptions.

mod nats;
mod proxy;
mod redis;

pub use nats::NatsServer;
pub use proxy::TcpProxy;
pub use redis::{redis_command, redis_command_on, RedisServer};

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::BufReader;
use tokio::process::{Child, Command};

use crate::{forward_lines, within, WAIT};

/// How long a broker may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Spawns `program args`, output forwarded with `prefix`, killed on drop.
/// Debian installs nats-server to /usr/sbin, not on every user's PATH.
fn spawn(program: &str, args: &[String], prefix: &'static str) -> anyhow::Result<Child> {
    let start = |path: &str| {
        Command::new(path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
    };
    let found = match start(program) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            start(&format!("/usr/sbin/{program}"))
        }
        other => other,
    };
    let mut child = match found {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "`{program}` is not installed (apt-get install -y nats-server redis-server); \
             the project's test script installs it"
        ),
        Err(e) => return Err(e).with_context(|| format!("spawning {program}")),
    };
    forward_lines(
        prefix,
        BufReader::new(child.stdout.take().context("stdout")?),
    );
    forward_lines(
        prefix,
        BufReader::new(child.stderr.take().context("stderr")?),
    );
    Ok(child)
}

/// Kills `child` (SIGKILL: a crash, no goodbye) and waits for it.
async fn kill(child: &mut Option<Child>) -> anyhow::Result<()> {
    if let Some(mut c) = child.take() {
        let _ = c.start_kill();
        within(WAIT, "the broker to exit", async {
            c.wait().await.context("waiting for the broker")?;
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// Waits until `ready` says yes, failing early if the process exited (a port
/// taken by someone else, for instance).
async fn wait_until<F, Fut>(child: &mut Child, what: &str, mut ready: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("{what} exited at start: {status}");
        }
        if ready().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{what} not ready within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
