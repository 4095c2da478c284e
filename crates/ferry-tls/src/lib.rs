//! Client TLS for ferry's connections (`rediss://`): the replica link to the
//! source and the cluster writer's node connections.
//!
//! ```text
//! connect(addr, tls, timeout)     one bound over both steps
//!   ├─ TCP connect, NODELAY                      -> ConnectError::Io / Timeout (retriable)
//!   └─ tls: Some(cfg)
//!        ├─ cfg.client_config()   built once per distinct TlsConfig, then cached
//!        │     roots: cfg.ca_file, else the system's root certificates
//!        │     client cert: cfg.cert_file + cfg.key_file (both or neither)
//!        │     cfg.insecure: no certificate check at all (warns once)
//!        │                                       -> ConnectError::Tls (fatal: fix the config)
//!        └─ TLS handshake, SNI / name check = cfg.server_name or addr's host
//!              a rustls error (bad certificate, not a TLS port, client cert refused)
//!                                                -> ConnectError::Tls (fatal)
//!              a socket error                    -> ConnectError::Io (retriable)
//! ```
//!
//! The result is a [`Stream`], plain TCP or TLS, usable wherever a
//! `TcpStream` was (`AsyncRead + AsyncWrite + Unpin`; split it with
//! `tokio::io::split`).

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, IoSlice};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use ferry_ops::host_of;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub use rustls;

/// How to speak TLS to a server. `TlsConfig::default()` verifies the server
/// against the system's root certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsConfig {
    /// PEM file of the CA certificate(s) to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain (mutual TLS); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Skip certificate verification entirely (the traffic is still
    /// encrypted, but the server's identity is not checked).
    pub insecure: bool,
    /// Name to send (SNI) and to check the certificate against; default:
    /// the host part of the address (a DNS name or an IP address).
    pub server_name: Option<String>,
}

/// The warning logged (once per config) when verification is disabled.
pub const INSECURE_WARNING: &str = "TLS certificate verification is disabled (insecure): \
     the connection is encrypted but the server's identity is not checked";

impl TlsConfig {
    /// Verify the server against the CA certificate(s) in `path`.
    pub fn with_ca_file(path: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            ca_file: Some(path.into()),
            ..TlsConfig::default()
        }
    }

    /// No certificate verification.
    pub fn insecure() -> TlsConfig {
        TlsConfig {
            insecure: true,
            ..TlsConfig::default()
        }
    }

    /// What to warn the operator about, if anything (`insecure`).
    pub fn warning(&self) -> Option<&'static str> {
        self.insecure.then_some(INSECURE_WARNING)
    }

    /// The rustls client config: built (reading the files) on first use,
    /// then shared by every connection with an equal `TlsConfig`.
    ///
    /// # Errors
    /// [`TlsError`] when a file cannot be read or holds nothing usable.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        static CACHE: Mutex<Vec<(TlsConfig, Arc<ClientConfig>)>> = Mutex::new(Vec::new());
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = cache.iter().find(|(k, _)| k == self) {
            return Ok(c.clone());
        }
        let built = Arc::new(self.build()?);
        if let Some(w) = self.warning() {
            tracing::warn!("{w}");
        }
        cache.push((self.clone(), built.clone()));
        Ok(built)
    }

    fn build(&self) -> Result<ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        } else {
            builder.with_root_certificates(self.roots()?)
        };
        match (&self.cert_file, &self.key_file) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert), Some(key)) => {
                let certs = read_certs(cert, "client certificate")?;
                let key = read_key(key)?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(TlsError::Rustls)
            }
            (Some(_), None) => Err(TlsError::ClientPair { given: "cert_file" }),
            (None, Some(_)) => Err(TlsError::ClientPair { given: "key_file" }),
        }
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        if let Some(ca) = &self.ca_file {
            for cert in read_certs(ca, "CA certificate")? {
                roots.add(cert).map_err(|e| TlsError::BadCert {
                    path: ca.clone(),
                    error: e,
                })?;
            }
        } else {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(TlsError::NoRoots);
            }
        }
        Ok(roots)
    }

    fn server_name(&self, addr: &str) -> Result<ServerName<'static>, TlsError> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => host_of(addr).to_owned(),
        };
        ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName { name })
    }
}

fn open(path: &Path, what: &'static str) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        })
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut open(path, what)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = "private key";
    rustls_pemfile::private_key(&mut open(path, what)?)
        .map_err(|source| TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::Empty {
            what,
            path: path.to_owned(),
        })
}

/// A TLS configuration that cannot be used, or a handshake rustls refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("TLS: cannot read {what} file {}: {source}", .path.display())]
    Read {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A file holds no PEM item of the expected kind.
    #[error("TLS: {} holds no PEM {what}", .path.display())]
    Empty {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A CA certificate is not usable as a trust anchor.
    #[error("TLS: bad CA certificate in {}: {error}", .path.display())]
    BadCert {
        /// The file.
        path: PathBuf,
        /// Why.
        error: rustls::Error,
    },
    /// Only one of the client certificate and key was given.
    #[error("TLS: a client certificate needs both cert_file and key_file (only {given} is set)")]
    ClientPair {
        /// The one given.
        given: &'static str,
    },
    /// No CA file and no system roots.
    #[error(
        "TLS: no CA file given and no system root certificates found; give the server's CA file (or use insecure)"
    )]
    NoRoots,
    /// The name to verify is neither a DNS name nor an IP address.
    #[error("TLS: {name:?} is not a valid server name (DNS name or IP address)")]
    ServerName {
        /// The name.
        name: String,
    },
    /// rustls refused the configuration.
    #[error("TLS: {0}")]
    Rustls(rustls::Error),
    /// rustls refused the handshake: certificate not trusted, name
    /// mismatch, client certificate refused, or not a TLS port.
    #[error("TLS handshake with {addr} failed: {error}{hint}")]
    Handshake {
        /// The server.
        addr: String,
        /// rustls' reason.
        error: rustls::Error,
        /// What to try.
        hint: &'static str,
    },
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Connecting (and the TLS handshake) took longer than the bound.
    #[error("connecting timed out after {0:?}")]
    Timeout(Duration),
    /// A socket error; retrying may help.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The TLS configuration or the handshake is wrong; retrying will not help.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl ConnectError {
    /// Whether reconnecting may help (socket errors and timeouts, not TLS).
    pub fn retriable(&self) -> bool {
        !matches!(self, ConnectError::Tls(_))
    }
}

/// Connects to `addr` (`host:port`) over TCP (NODELAY), then TLS when
/// `tls` is given; the whole is bounded by `timeout`.
///
/// # Errors
/// See [`ConnectError`].
pub async fn connect(
    addr: &str,
    tls: Option<&TlsConfig>,
    timeout: Duration,
) -> Result<Stream, ConnectError> {
    // Read the files before the clock starts and before touching the network.
    let tls = match tls {
        Some(cfg) => Some((cfg.client_config()?, cfg.server_name(addr)?)),
        None => None,
    };
    tokio::time::timeout(timeout, async move {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let Some((config, name)) = tls else {
            return Ok(Stream::Plain(tcp));
        };
        match TlsConnector::from(config).connect(name, tcp).await {
            Ok(s) => Ok(Stream::Tls(Box::new(s))),
            Err(e) => Err(handshake_error(addr, e)),
        }
    })
    .await
    .map_err(|_| ConnectError::Timeout(timeout))?
}

fn handshake_error(addr: &str, e: io::Error) -> ConnectError {
    let Some(error) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return ConnectError::Io(e);
    };
    let hint = match error {
        rustls::Error::InvalidCertificate(_) => {
            " (give the CA that signed the server's certificate as the TLS CA file, \
             set the expected server name, or use insecure to skip verification)"
        }
        rustls::Error::AlertReceived(_) => {
            " (the server refused the handshake: does it require a client certificate?)"
        }
        rustls::Error::InvalidMessage(_) => " (is this port speaking TLS?)",
        _ => "",
    };
    ConnectError::Tls(TlsError::Handshake {
        addr: addr.to_owned(),
        error: error.clone(),
        hint,
    })
}

/// A plain TCP or a TLS connection.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether this is a TLS connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_tls() { "Tls" } else { "Plain" };
        f.debug_struct("Stream")
            .field("kind", &kind)
            .field("peer", &self.tcp().peer_addr().ok())
            .finish()
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Stream {
        Stream::Plain(s)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Accepts any server certificate; still checks the handshake signatures
/// (so the peer holds the key of the certificate it sent).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_are_clear() {
        let cfg = TlsConfig::with_ca_file("/nonexistent/ca.pem");
        let e = cfg.client_config().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let cfg = TlsConfig {
            cert_file: Some("/x".into()),
            insecure: true,
            ..TlsConfig::default()
        };
        let e = cfg.client_config().unwrap_err().to_string();
        assert!(e.contains("key_file"), "{e}");
    }

    #[test]
    fn insecure_warns() {
        assert_eq!(TlsConfig::insecure().warning(), Some(INSECURE_WARNING));
        assert_eq!(TlsConfig::default().warning(), None);
        assert!(TlsConfig::insecure().client_config().is_ok());
    }
}

#[cfg(feature = "test-util")]
pub mod test_pki;
