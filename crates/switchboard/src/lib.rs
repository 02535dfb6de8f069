//! Switchboard: a stateful real-time gateway. Clients hold streams over
//! WebSocket or SSE; stateless HTTP lambdas answer the streams' events with
//! actions. The modules follow the two paths of docs/ARCHITECTURE.md:
//! transport -> stream -> dispatcher -> lambda, and broker -> router -> stream.

pub mod broker;
pub mod capability;
pub mod cli;
pub mod dispatcher;
pub mod gateway;
pub mod ops;
pub mod router;
pub mod stream;
pub mod tls;
pub mod transport;

use std::sync::Arc;

pub use gateway::Gateway;
use tokio::net::TcpListener;

/// A bound, running gateway.
pub struct Running {
    pub gateway: Arc<Gateway>,
    pub addr: std::net::SocketAddr,
    /// The metrics listener's address, when `/metrics` has its own.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Ends the accept loop, which drops the listener.
    stop_accepting: tokio_util::sync::CancellationToken,
    accepting: tokio::task::JoinHandle<()>,
}

/// Binds the listener and starts serving in the background.
pub async fn start(config: ops::config::Config) -> anyhow::Result<Running> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let metrics_listener = match config.metrics_listen {
        Some(at) => Some(
            TcpListener::bind(at)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {at} (metrics_listen): {e}"))?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let gateway = Gateway::new(config).await?;
    let stop_accepting = tokio_util::sync::CancellationToken::new();
    if let Some(listener) = metrics_listener {
        // Stops with the main listener, at the drain's start.
        tokio::spawn(transport::http::serve(
            gateway.clone(),
            listener,
            stop_accepting.clone(),
            transport::http::Role::Metrics,
        ));
    }
    let accepting = tokio::spawn(transport::http::serve(
        gateway.clone(),
        listener,
        stop_accepting.clone(),
        transport::http::Role::Main,
    ));
    Ok(Running {
        gateway,
        addr,
        metrics_addr,
        stop_accepting,
        accepting,
    })
}

impl Running {
    /// The drain: stop accepting, close every stream (WS 1012, SSE `closed`),
    /// give lambdas their `close` events, and wait for it all, bounded by the drain timeout.
    pub async fn drain(self) -> bool {
        let gw = &self.gateway;
        let deadline = tokio::time::Instant::now() + gw.config.drain_timeout;
        // The listener is closed before any client hears of the drain: a
        // client that reconnects at its 1012 must not reach this node.
        self.stop_accepting.cancel();
        let _ = tokio::time::timeout_at(deadline, self.accepting).await;
        gw.begin_drain();
        gw.tracker.close();
        let connections = tokio::time::timeout_at(deadline, gw.tracker.wait())
            .await
            .is_ok();
        // Connections are closed and their `close` events queued: the
        // dispatchers deliver them, then stop; the publishes of their
        // answers run on the same tracker, so this waits for them too.
        gw.stop_dispatch.cancel();
        gw.dispatch_tracker.close();
        let dispatch = tokio::time::timeout_at(deadline, gw.dispatch_tracker.wait())
            .await
            .is_ok();
        // Last, sinks flush what streams and close events buffered.
        gw.stop_sinks.cancel();
        gw.sink_tracker.close();
        let sinks = tokio::time::timeout_at(deadline, gw.sink_tracker.wait())
            .await
            .is_ok();
        connections && dispatch && sinks
    }
}
