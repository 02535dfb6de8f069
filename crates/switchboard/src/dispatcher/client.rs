//! The pooled keep-alive HTTP client that carries lambda requests (and sink
//! batches), over `http://` or `https://`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Duration;

use super::https::Connector;
use crate::tls::CaFile;

/// Largest lambda answer we read.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Why one lambda request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("lambda unreachable: {0}")]
    Connect(String),
    #[error("lambda timed out")]
    Timeout,
    #[error("lambda answered HTTP {0}")]
    Status(u16),
    #[error("lambda answer is invalid: {0}")]
    BadAnswer(String),
    #[error("lambda queue is full")]
    Overloaded,
    #[error("lambda circuit is open after repeated failures")]
    CircuitOpen,
}

impl CallError {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Timeout => "timeout",
            Self::Status(_) => "status",
            Self::BadAnswer(_) => "bad_answer",
            Self::Overloaded => "overloaded",
            Self::CircuitOpen => "circuit_open",
        }
    }
}

#[derive(Clone)]
pub struct LambdaClient {
    http: Client<Connector, Full<Bytes>>,
}

/// Trusts the system's roots for `https://`.
impl Default for LambdaClient {
    fn default() -> Self {
        Self::new(None)
    }
}

impl LambdaClient {
    /// `https://` servers must present a certificate for their host, signed
    /// by `ca` (the CA file) or else by a system root.
    pub fn new(ca: Option<CaFile>) -> Self {
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(Connector::new(ca));
        Self { http }
    }

    /// POSTs `body` as JSON and returns a 200 answer's body.
    pub async fn post(
        &self,
        url: &hyper::Uri,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let req = hyper::Request::post(url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("switchboard/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(|e| CallError::Connect(e.to_string()))?;
        let call = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| CallError::Connect(with_causes(&e)))?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| CallError::BadAnswer(e.to_string()))?
                .to_bytes();
            if status != 200 {
                return Err(CallError::Status(status));
            }
            Ok(body)
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or(Err(CallError::Timeout))
    }
}

/// `e` and its causes, `: `-separated: hyper's own text ("client error
/// (Connect)") hides the reason (refused, bad certificate...) in its source.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
