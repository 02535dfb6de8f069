//! The lambda client's connector: TCP for `http://`, TCP then a rustls
//! handshake for `https://` (server name and certificate verified against
//! the CA file, or the system's roots). By hand because hyper-rustls is not
//! in the build, and this is all of it that we need.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsConnector, TlsStream};

use crate::tls::{client_config, CaFile, Socket};

/// One lambda connection, plain or TLS.
pub type Conn = TokioIo<Socket>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `http://` and `https://` connections; clones share the TLS settings.
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    ca: Option<CaFile>,
    /// Built on the first `https://` connection: a node with only plain
    /// lambdas never reads the system's roots.
    tls: Arc<OnceLock<TlsConnector>>,
}

impl Connector {
    pub fn new(ca: Option<CaFile>) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        Self {
            http,
            ca,
            tls: Arc::default(),
        }
    }

    fn tls(&self) -> TlsConnector {
        self.tls
            .get_or_init(|| TlsConnector::from(client_config(self.ca.as_ref())))
            .clone()
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = match uri.scheme_str() {
            Some("https") => Some(self.tls()),
            Some("http") => None,
            _ => {
                let e = io::Error::new(io::ErrorKind::InvalidInput, "not an http(s) URL");
                return Box::pin(std::future::ready(Err(e.into())));
            }
        };
        // IPv6 hosts come bracketed; a server name is the bare address.
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        let connecting = self.http.call(uri);
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            let Some(tls) = tls else {
                return Ok(TokioIo::new(Socket::Plain(tcp)));
            };
            let name = ServerName::try_from(host)?;
            let stream = tls.connect(name, tcp).await?;
            Ok(TokioIo::new(Socket::Tls(Box::new(TlsStream::Client(
                stream,
            )))))
        })
    }
}
