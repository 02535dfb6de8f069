//! Real shared brokers for scale-out tests: `nats-server -js` and
//! `redis-server` on free loopback ports, killed on drop and restartable on
//! the same port (outage tests), a TCP proxy that cuts one node off its
//! broker, and the brokers' own view of subscriptions.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::AbortHandle;

use crate::tls::Stream;
use crate::{forward_lines, free_port, get, within, TempDir, WAIT};

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

/// `redis-server` without persistence: a restart loses the store, like a
/// crashed cache.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    /// `requirepass`, if clients must log in.
    password: Option<String>,
    /// Some: the port speaks TLS only (no plain port), with these flags.
    tls: Option<Vec<String>>,
}

impl RedisServer {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None, None).await
    }

    /// A server with `requirepass password`; [`Self::url`] carries it (and
    /// [`Self::command`], which does not log in, gets `NOAUTH`).
    pub async fn start_with_password(password: &str) -> anyhow::Result<Self> {
        Self::start_with(Some(password.to_owned()), None).await
    }

    /// A server whose one port is TLS (`rediss://`), with `cert` signed by
    /// `ca` (which the test's own Redis client trusts from now on; Redis
    /// does not ask clients for certificates).
    pub async fn start_tls(
        cert: &crate::tls::ServerCert,
        ca: &crate::tls::TestCa,
    ) -> anyhow::Result<Self> {
        ca.trust()?;
        let tls = [
            "--tls-cert-file",
            &cert.cert.display().to_string(),
            "--tls-key-file",
            &cert.key.display().to_string(),
            "--tls-ca-cert-file",
            &ca.cert_path().display().to_string(),
            "--tls-auth-clients",
            "no",
        ]
        .map(String::from);
        Self::start_with(None, Some(tls.to_vec())).await
    }

    async fn start_with(
        password: Option<String>,
        tls: Option<Vec<String>>,
    ) -> anyhow::Result<Self> {
        let mut server = Self {
            child: None,
            port: free_port(),
            dir: TempDir::new("sb-redis")?,
            password,
            tls,
        };
        server.launch().await?;
        Ok(server)
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let port_flags = match &self.tls {
            None => vec!["--port".to_owned(), self.port.to_string()],
            Some(files) => {
                let mut flags = ["--port", "0", "--tls-port"].map(String::from).to_vec();
                flags.push(self.port.to_string());
                flags.extend(files.iter().cloned());
                flags
            }
        };
        let mut args: Vec<String> = [
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &self.dir.path().display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(port_flags);
        if let Some(password) = &self.password {
            args.extend(["--requirepass".into(), password.clone()]);
        }
        let mut child = spawn("redis-server", &args, "redis")?;
        let (port, tls) = (self.port, self.tls.is_some());
        wait_until(&mut child, "redis-server", || async move {
            match redis_command_on(port, tls, &["PING"]).await {
                Ok(Value::String(s)) => s == "PONG",
                // Up, and asking for the password.
                Err(e) => e.to_string().contains("NOAUTH"),
                Ok(_) => false,
            }
        })
        .await?;
        self.child = Some(child);
        Ok(())
    }

    /// `redis://[:PASSWORD@]127.0.0.1:PORT` (`rediss://` with TLS), for `--broker`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.password {
            Some(password) => format!("{scheme}://:{password}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn kill(&mut self) -> anyhow::Result<()> {
        kill(&mut self.child).await
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        kill(&mut self.child).await?;
        self.launch().await
    }

    /// One command, its reply as JSON (see [`redis_command`]).
    pub async fn command(&self, args: &[&str]) -> anyhow::Result<Value> {
        redis_command_on(self.port, self.tls.is_some(), args).await
    }

    /// How many clients are subscribed to `channel` (`PUBSUB NUMSUB`).
    pub async fn subscriber_count(&self, channel: &str) -> anyhow::Result<u64> {
        let reply = self.command(&["PUBSUB", "NUMSUB", channel]).await?;
        reply[1]
            .as_u64()
            .with_context(|| format!("PUBSUB NUMSUB reply {reply}"))
    }
}

/// Sends one command to Redis on `port` and reads the reply: simple strings
/// and bulk strings as JSON strings, integers as numbers, nil as null,
/// arrays as arrays; an error reply is an `Err`.
pub async fn redis_command(port: u16, args: &[&str]) -> anyhow::Result<Value> {
    redis_command_on(port, false, args).await
}

/// Like [`redis_command`], over TLS when `tls` (trusting the CAs of `TestCa::trust`).
pub async fn redis_command_on(port: u16, tls: bool, args: &[&str]) -> anyhow::Result<Value> {
    within(WAIT, "a Redis reply", async {
        let mut stream = crate::tls::connect(&format!("127.0.0.1:{port}"), tls).await?;
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        stream.write_all(&req).await?;
        stream.flush().await?;
        let mut reader = BufReader::new(stream);
        read_resp(&mut reader).await
    })
    .await
}

fn read_resp<'a>(
    r: &'a mut BufReader<Stream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Value>> + Send + 'a>> {
    Box::pin(async move {
        let mut line = String::new();
        r.read_line(&mut line).await?;
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(line.len().min(1));
        Ok(match kind {
            "+" => Value::String(rest.to_owned()),
            "-" => anyhow::bail!("Redis error: {rest}"),
            ":" => Value::from(rest.parse::<i64>()?),
            "$" => {
                let n: i64 = rest.parse()?;
                if n < 0 {
                    return Ok(Value::Null);
                }
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf).await?;
                buf.truncate(n as usize);
                Value::String(String::from_utf8_lossy(&buf).into_owned())
            }
            "*" => {
                let n: i64 = rest.parse()?;
                if n < 0 {
                    return Ok(Value::Null);
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(read_resp(r).await?);
                }
                Value::Array(items)
            }
            _ => anyhow::bail!("unexpected Redis reply line {line:?}"),
        })
    })
}

/// A TCP proxy on its own loopback port in front of a broker: give one node
/// the proxy's address, then [`TcpProxy::cut`] it off the broker (its
/// connections drop, new ones are refused) while the others stay connected.
pub struct TcpProxy {
    port: u16,
    target: u16,
    /// The accept loop and every relay, to abort on a cut.
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

fn track(tasks: &Mutex<Vec<AbortHandle>>, h: AbortHandle) {
    if let Ok(mut v) = tasks.lock() {
        v.retain(|t| !t.is_finished());
        v.push(h);
    }
}

impl TcpProxy {
    pub async fn start(target_port: u16) -> anyhow::Result<Self> {
        let proxy = Self {
            port: free_port(),
            target: target_port,
            tasks: Arc::default(),
        };
        proxy.listen().await?;
        Ok(proxy)
    }

    async fn listen(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        // The port was ours a moment ago; a cut may leave it briefly busy.
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e).context("binding the proxy port again"),
            }
        };
        let target = self.target;
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
                track(&tasks, relay.abort_handle());
            }
        });
        track(&self.tasks, accept.abort_handle());
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drops every relayed connection and stops accepting.
    pub fn cut(&self) {
        if let Ok(mut v) = self.tasks.lock() {
            for t in v.drain(..) {
                t.abort();
            }
        }
    }

    /// Accepts again on the same port.
    pub async fn restore(&self) -> anyhow::Result<()> {
        self.listen().await
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
