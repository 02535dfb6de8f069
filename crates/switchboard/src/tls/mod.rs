//! TLS, for the listener and every outbound link: the material, loaded and
//! checked at start (the listener's certificate and key, the roots that
//! lambdas, sinks and brokers are verified against), and [`Socket`], plain
//! TCP or TLS. rustls with its ring provider; versions and ciphers are
//! rustls's defaults (TLS 1.3 and 1.2). Errors name the file, never its contents.

mod socket;

pub use socket::Socket;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The only application protocol the listener and the lambda client speak.
const ALPN_HTTP1: &[u8] = b"http/1.1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The listener's TLS: what its handshake presents.
#[derive(Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    cert: PathBuf,
}

/// Names the certificate file only: no key material.
impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// The certificate chain (leaf first) and its private key (PKCS#8,
    /// PKCS#1 or SEC1), both PEM; the key must match the leaf.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| pem_error(e, "certificate"))
            .with_context(|| format!("http.tls_cert {}", cert.display()))?;
        if chain.is_empty() {
            bail!("http.tls_cert {}: holds no PEM certificate", cert.display());
        }
        let private = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| pem_error(e, "private key"))
            .with_context(|| format!("http.tls_key {}", key.display()))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .with_context(|| {
                format!(
                    "http.tls_key {} does not fit http.tls_cert {}",
                    key.display(),
                    cert.display()
                )
            })?;
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(Self {
            config: Arc::new(config),
            cert: cert.to_owned(),
        })
    }
}

/// A CA file for outbound TLS: its certificates replace the system's roots.
#[derive(Clone)]
pub struct CaFile {
    pub path: PathBuf,
    /// The file as read (the Redis client takes PEM).
    pub pem: Arc<Vec<u8>>,
    pub roots: Arc<RootCertStore>,
}

impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaFile").field("path", &self.path).finish()
    }
}

impl CaFile {
    /// Reads `path` (one or more PEM certificates); `key` names the setting in errors.
    pub fn load(path: &Path, key: &str) -> anyhow::Result<Self> {
        let pem = std::fs::read(path).with_context(|| format!("{key} {}", path.display()))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(e, "certificate"))
            .with_context(|| format!("{key} {}", path.display()))?;
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots.add(cert).with_context(|| {
                format!("{key} {}: not a usable CA certificate", path.display())
            })?;
        }
        if roots.is_empty() {
            bail!("{key} {}: holds no PEM certificate", path.display());
        }
        Ok(Self {
            path: path.to_owned(),
            pem: Arc::new(pem),
            roots: Arc::new(roots),
        })
    }
}

/// A client config that trusts `ca`'s certificates, or the system's roots.
/// Server names and certificates are verified (webpki); no client certificate.
pub fn client_config(ca: Option<&CaFile>) -> Arc<ClientConfig> {
    let roots = ca.map_or_else(system_roots, |ca| ca.roots.clone());
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Arc::new(config)
}

/// The system's trusted roots (`SSL_CERT_FILE`/`SSL_CERT_DIR`, else the
/// platform's store), read once per process on first use.
pub fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "reading the system's TLS roots");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("no system TLS roots found: https/tls links need a CA file");
            }
            tracing::debug!(added, ignored, "system TLS roots");
            Arc::new(roots)
        })
        .clone()
}

/// A PEM error without the file's bytes (a malformed line could be a key's).
fn pem_error(e: pem::Error, what: &str) -> anyhow::Error {
    match e {
        pem::Error::Io(e) => anyhow::Error::new(e),
        pem::Error::NoItemsFound => anyhow::anyhow!("holds no PEM {what}"),
        _ => anyhow::anyhow!("is not a valid PEM {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn bad_files_are_clear_errors_that_show_no_contents() {
        let dir = std::env::temp_dir().join(format!("sb-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret =
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==!!\n-----END PRIVATE KEY-----\n";
        let key = write(&dir, "key.pem", secret);
        let empty = write(&dir, "empty.pem", "nothing here\n");
        let missing = dir.join("missing.pem");
        for (cert, key) in [(&missing, &key), (&empty, &key), (&key, &key)] {
            let e = format!("{:#}", ServerTls::load(cert, key).unwrap_err());
            assert!(e.contains("http.tls_cert"), "{e}");
            assert!(!e.contains("c2VjcmV0"), "{e}");
        }
        for path in [&missing, &empty, &key] {
            let e = format!("{:#}", CaFile::load(path, "lambda_ca_file").unwrap_err());
            assert!(e.contains("lambda_ca_file"), "{e}");
            assert!(!e.contains("c2VjcmV0"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
