//! Switchboard: a stateful real-time gateway. Clients hold streams over
//! WebSocket or SSE; stateless HTTP lambdas answer the streams' events with
//! actions. The modules follow the two paths of docs/ARCHITECTURE.md:
//! transport -> stream -> dispatcher -> lambda, and broker -> router -> stream.

pub mod broker;
pub mod cli;
pub mod dispatcher;
pub mod gateway;
pub mod ops;
pub mod router;
pub mod stream;
pub mod transport;

use std::sync::Arc;

pub use gateway::Gateway;
use tokio::net::TcpListener;

/// A bound, running gateway.
pub struct Running {
    pub gateway: Arc<Gateway>,
    pub addr: std::net::SocketAddr,
}

/// Binds the listener and starts serving in the background.
pub async fn start(config: ops::config::Config) -> anyhow::Result<Running> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let gateway = Gateway::new(config);
    gateway
        .tracker
        .spawn(transport::http::serve(gateway.clone(), listener));
    Ok(Running { gateway, addr })
}

impl Running {
    /// The drain: stop accepting, close every stream (WS 1012, SSE `closed`),
    /// give lambdas their `close` events, and wait for it all, bounded by the drain timeout.
    pub async fn drain(self) -> bool {
        let timeout = self.gateway.config.drain_timeout;
        self.gateway.begin_drain();
        self.gateway.tracker.close();
        tokio::time::timeout(timeout, self.gateway.tracker.wait())
            .await
            .is_ok()
    }
}
