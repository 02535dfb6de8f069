//! `redis-server` on a free loopback port, and a RESP client for the
//! tests' own commands.

use anyhow::Context;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;

use crate::tls::Stream;
use crate::{free_port, within, TempDir, WAIT};

use super::{kill, spawn, wait_until};

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
