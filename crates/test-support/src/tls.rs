//! TLS for tests: a CA the test makes (with the `openssl` CLI), server
//! certificates for `127.0.0.1` and `localhost`, and the client side that
//! the HTTP, SSE and WebSocket helpers use for `https://` and `wss://` URLs
//! (they trust the CAs passed to [`TestCa::trust`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::either::Either;

use crate::TempDir;

/// CAs the client helpers trust, added by [`TestCa::trust`].
static TRUSTED: Mutex<Vec<CertificateDer<'static>>> = Mutex::new(Vec::new());

/// A certificate authority made for one test, in a temp dir.
pub struct TestCa {
    dir: TempDir,
    cert: PathBuf,
    key: PathBuf,
}

/// A server certificate (for `127.0.0.1` and `localhost`) and its key, PEM.
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `openssl req` arguments for a new P-256 key, unencrypted.
const NEW_P256_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

fn openssl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl (apt-get install -y openssl)")?;
    anyhow::ensure!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("temp path is not UTF-8")
}

impl TestCa {
    /// A new CA (P-256, valid for two days) named `name`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new(&format!("sb-ca-{name}"))?;
        let cert = dir.path().join("ca.pem");
        let key = dir.path().join("ca.key");
        let subject = format!("/CN=switchboard test CA {name}");
        let mut args = vec!["req", "-x509", "-new", "-days", "2", "-subj", &subject];
        args.extend(NEW_P256_KEY);
        args.extend(["-keyout", path_str(&key)?, "-out", path_str(&cert)?]);
        openssl(&args)?;
        Ok(Self { dir, cert, key })
    }

    /// The CA certificate, PEM: what a client given a CA file trusts.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// A server certificate signed by this CA, for `127.0.0.1` and `localhost`.
    pub fn issue(&self, name: &str) -> anyhow::Result<ServerCert> {
        let at = |ext: &str| self.dir.path().join(format!("{name}.{ext}"));
        let (cert, key, csr, ext) = (at("pem"), at("key"), at("csr"), at("ext"));
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        )?;
        let mut args = vec!["req", "-new", "-subj", "/CN=localhost"];
        args.extend(NEW_P256_KEY);
        args.extend(["-keyout", path_str(&key)?, "-out", path_str(&csr)?]);
        openssl(&args)?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            path_str(&csr)?,
            "-CA",
            path_str(&self.cert)?,
            "-CAkey",
            path_str(&self.key)?,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            path_str(&ext)?,
            "-out",
            path_str(&cert)?,
        ])?;
        Ok(ServerCert { cert, key })
    }

    /// The client helpers (`get`, `http_request`, `SseClient`, `WsClient`)
    /// trust this CA from now on, in this process.
    pub fn trust(&self) -> anyhow::Result<()> {
        let cert = CertificateDer::from_pem_file(&self.cert).context("reading the CA")?;
        TRUSTED.lock().expect("trusted CAs lock").push(cert);
        Ok(())
    }
}

impl ServerCert {
    /// A rustls acceptor presenting this certificate (for servers in the test).
    pub fn acceptor(&self) -> anyhow::Result<TlsAcceptor> {
        let chain = CertificateDer::pem_file_iter(&self.cert)?.collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(&self.key)?;
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// A client config trusting the CAs of [`TestCa::trust`] only.
pub fn client_config() -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in TRUSTED.lock().expect("trusted CAs lock").iter() {
        roots.add(cert.clone())?;
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// `url` after its scheme, and whether the scheme is `secure` (else it must
/// be `plain`): `("h:1/x", true)` for `https://h:1/x` with `http`/`https`.
pub(crate) fn after_scheme<'a>(
    url: &'a str,
    plain: &str,
    secure: &str,
) -> anyhow::Result<(&'a str, bool)> {
    let (scheme, rest) = url
        .split_once("://")
        .with_context(|| format!("not a URL: {url:?}"))?;
    anyhow::ensure!(
        scheme == plain || scheme == secure,
        "only {plain}:// and {secure}:// URLs are supported: {url:?}"
    );
    Ok((rest, scheme == secure))
}

/// A client connection, plain or TLS.
pub type Stream = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// Connects to `authority` (`host:port`); with `tls`, completes a handshake
/// that verifies the server against the trusted CAs.
pub async fn connect(authority: &str, tls: bool) -> anyhow::Result<Stream> {
    let tcp = TcpStream::connect(authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    if !tls {
        return Ok(Either::Left(tcp));
    }
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .trim_matches(['[', ']']);
    let name = ServerName::try_from(host.to_owned())?;
    let stream = TlsConnector::from(client_config()?)
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS handshake with {authority}"))?;
    Ok(Either::Right(Box::new(stream)))
}
