//! HTTPS for both servers, on rustls: `--tls-cert` and `--tls-key`, and a
//! certificate renewed on disk taken without a restart.
//!
//! [`TlsArgs::load`] reads the files once (a bad file stops the start with
//! one line naming it); [`serve`](crate::serve) then hands every accepted
//! connection to [`accept`], which performs the handshake within the
//! header-read timeout. At most every [`RELOAD_CHECK`], a new connection
//! reads the two files first (a few KiB); when their bytes changed and
//! they are a valid certificate chain with its key, that pair is served
//! from then on (open connections keep theirs). A bad
//! new pair (half-written, a key of another certificate) is logged as an
//! error once per change and the old certificate stays.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How often, at most, the certificate files are looked at for a renewal.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The HTTPS flags every server has.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Serve HTTPS with this certificate chain (PEM, the server's own
    /// certificate first), with --tls-key; the server then prints
    /// `listening on https://HOST:PORT`. A renewed file is served within a
    /// few seconds, without a restart.
    #[arg(long, env = "PLEXUS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "PLEXUS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The TLS of these flags: `None` without them (plain HTTP), an error
    /// naming the file when one cannot be used.
    pub fn load(&self) -> Result<Option<Tls>, TlsError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Tls::new(cert.clone(), key.clone()).map(Some),
            (None, None) => Ok(None),
            _ => Err(TlsError::Pair),
        }
    }
}

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Only one of the two flags was given.
    #[error("give both --tls-cert and --tls-key")]
    Pair,
    /// A file could not be read or holds no PEM of the expected kind.
    #[error("{flag} {path}: {reason}")]
    File {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The key does not fit the certificate, or rustls refused the pair.
    #[error("--tls-cert {cert} and --tls-key {key}: {reason}")]
    Pairing {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

/// A server's TLS: the acceptor and the certificate it reloads.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    certs: Arc<Reloading>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.certs.cert)
            .field("key", &self.certs.key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS with the chain in `cert` and the key in `key` (PEM files), both
    /// read now and again when they change.
    pub fn new(cert: PathBuf, key: PathBuf) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let file = |flag, path: &Path| {
            std::fs::read(path).map_err(|e| TlsError::File {
                flag,
                path: path.to_owned(),
                reason: e.to_string(),
            })
        };
        let seen = (file("--tls-cert", &cert)?, file("--tls-key", &key)?);
        let current = load_pair(&cert, &key, &seen, &provider)?;
        let certs = Arc::new(Reloading {
            current: RwLock::new(Arc::new(current)),
            check: Mutex::new(Check {
                at: Instant::now(),
                seen: Some(seen),
            }),
            cert,
            key,
            provider: Arc::clone(&provider),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Pairing {
                cert: certs.cert.clone(),
                key: certs.key.clone(),
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certs) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certs,
        })
    }

    /// The DER of the certificate served now (the chain's first).
    pub fn served(&self) -> Vec<u8> {
        self.certs
            .current()
            .cert
            .first()
            .map(|c| c.to_vec())
            .unwrap_or_default()
    }

    /// Reads the files again if they changed since they were last looked
    /// at, at most every [`RELOAD_CHECK`]; whether a new certificate is served.
    pub fn reload_if_changed(&self) -> bool {
        self.certs.reload_if_changed(RELOAD_CHECK)
    }
}

/// A connection, plain or over TLS.
#[derive(Debug)]
pub enum MaybeTls<IO> {
    /// Plain HTTP.
    Plain(IO),
    /// HTTPS, after the handshake.
    Tls(Box<TlsStream<IO>>),
}

/// Performs the handshake of `io` with `tls` (if any) within `timeout`.
pub async fn accept<IO>(tls: Option<&Tls>, io: IO, timeout: Duration) -> io::Result<MaybeTls<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let Some(tls) = tls else {
        return Ok(MaybeTls::Plain(io));
    };
    tls.reload_if_changed();
    match tokio::time::timeout(timeout, tls.acceptor.accept(io)).await {
        Ok(Ok(stream)) => Ok(MaybeTls::Tls(Box::new(stream))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake not done in time (--header-read-timeout)",
        )),
    }
}

/// A bound socket and how it serves: what [`crate::bind`] returns and
/// [`crate::serve`] takes.
#[derive(Debug)]
pub struct Listener {
    /// The socket.
    pub tcp: TcpListener,
    /// Its TLS, for HTTPS.
    pub tls: Option<Tls>,
}

impl Listener {
    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        scheme(self.tls.is_some())
    }
}

/// `https` when `tls`, else `http`: the scheme of a server's own URLs.
pub fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Self {
        Self { tcp, tls: None }
    }
}

/// The two files' bytes, as last read (`None`: one could not be read).
type Seen = Option<(Vec<u8>, Vec<u8>)>;

fn read_both(cert: &Path, key: &Path) -> Seen {
    Some((std::fs::read(cert).ok()?, std::fs::read(key).ok()?))
}

#[derive(Debug)]
struct Check {
    /// When the files were last looked at.
    at: Instant,
    /// What they held then.
    seen: Seen,
}

/// The certificate being served, and where it comes from.
#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
    check: Mutex<Check>,
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
}

impl Reloading {
    fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn reload_if_changed(&self, every: Duration) -> bool {
        // One connection looks; the others go on with what is served.
        let Ok(mut check) = self.check.try_lock() else {
            return false;
        };
        if check.at.elapsed() < every {
            return false;
        }
        check.at = Instant::now();
        // The bytes, not the modification times: a renewal written twice
        // within the file system's clock tick, at the same length, is seen.
        let seen = read_both(&self.cert, &self.key);
        if seen == check.seen {
            return false;
        }
        check.seen = seen;
        let Some(files) = &check.seen else {
            tracing::error!(cert = %self.cert.display(), key = %self.key.display(), "the certificate or its key cannot be read; still serving the previous one");
            return false;
        };
        match load_pair(&self.cert, &self.key, files, &self.provider) {
            Ok(pair) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(pair);
                tracing::info!(cert = %self.cert.display(), "serving the renewed certificate");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "the changed certificate cannot be used; still serving the previous one");
                false
            }
        }
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn load_pair(
    cert: &Path,
    key: &Path,
    (cert_pem, key_pem): &(Vec<u8>, Vec<u8>),
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let file = |flag, path: &Path, reason: String| TlsError::File {
        flag,
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file("--tls-cert", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file("--tls-cert", cert, "no PEM certificate in it".into()));
    }
    let private = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| file("--tls-key", key, format!("no PEM private key in it ({e})")))?;
    CertifiedKey::from_der(chain, private, provider).map_err(|e| TlsError::Pairing {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Self::Tls(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Self::Tls(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_flush(cx),
            Self::Tls(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Self::Tls(io) => Pin::new(io).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Self::Tls(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(io) => io.is_write_vectored(),
            Self::Tls(io) => io.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A CA, and a function that issues a certificate and key (PEM) signed by it.
    fn ca() -> impl Fn() -> (String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        move || {
            let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            (cert.pem(), key.serialize_pem())
        }
    }

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn a_renewed_pair_is_served_and_a_bad_one_keeps_the_old() {
        let issue = ca();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (first, first_key) = issue();
        std::fs::write(&cert, &first).unwrap();
        std::fs::write(&key, &first_key).unwrap();
        let tls = Tls::new(cert.clone(), key.clone()).unwrap();
        assert_eq!(tls.served(), der(&first));
        let reload = || tls.certs.reload_if_changed(Duration::ZERO);
        assert!(!reload(), "nothing changed");

        // Half-written renewal: the new certificate with the old key.
        let (second, second_key) = issue();
        std::fs::write(&cert, &second).unwrap();
        assert!(!reload());
        assert_eq!(tls.served(), der(&first), "a mismatched pair is not served");
        std::fs::write(&key, &second_key).unwrap();
        assert!(reload());
        assert_eq!(tls.served(), der(&second), "the renewal is served");

        // A broken file, and a missing one: the renewal stays.
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
        assert!(!reload());
        std::fs::remove_file(&key).unwrap();
        assert!(!reload());
        assert_eq!(tls.served(), der(&second));

        // Checked at most every RELOAD_CHECK.
        let (third, third_key) = issue();
        std::fs::write(&cert, &third).unwrap();
        std::fs::write(&key, &third_key).unwrap();
        assert!(!tls.reload_if_changed(), "checked a moment ago");
        assert!(reload());
        assert_eq!(tls.served(), der(&third));
    }

    #[test]
    fn a_bad_pair_at_start_names_its_file() {
        let issue = ca();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (pem, _) = issue();
        let (_, other_key) = issue();
        std::fs::write(&cert, &pem).unwrap();
        std::fs::write(&key, &other_key).unwrap();
        let refused = Tls::new(cert.clone(), key.clone()).unwrap_err().to_string();
        assert!(
            refused.contains("--tls-cert") && refused.contains("--tls-key"),
            "{refused}"
        );
        let missing = Tls::new(cert, dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(missing.starts_with("--tls-key"), "{missing}");
        let only_one = TlsArgs {
            tls_cert: Some("c".into()),
            tls_key: None,
        };
        assert!(matches!(only_one.load(), Err(TlsError::Pair)));
    }
}
