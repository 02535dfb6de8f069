//! A TCP proxy that cuts one node off its broker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::{free_port, WAIT};
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
