//! TLS for every listener and every client of gwmo: rustls with the aws-lc-rs
//! provider, the only one compiled in (passed explicitly, so no process-wide default
//! has to be installed). TLS is on by default: a listener presents a certificate, a
//! client verifies its peer against the configured CA (or the system's roots). Plain
//! HTTP needs `plain_http`, and a listener serving it says so in a warning.
//!
//! A listener's certificate is read again from its files without a restart
//! ([`reload_certificates`], what a daemon does on SIGHUP after the certificate was
//! renewed): new handshakes get the new one, connections already open keep theirs, and
//! a reload that fails (a file half written, a key that does not match) changes
//! nothing.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;

/// The `[tls]` table of every role's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain (leaf first) this role's listeners present.
    pub certificate: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub private_key: Option<PathBuf>,
    /// PEM CA certificates trusted for the servers this role calls; unset: the
    /// system's roots.
    pub ca: Option<PathBuf>,
    /// Serve and call plain HTTP, without TLS: only for closed test networks.
    pub plain_http: bool,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, String),
    #[error("{0} holds no {1}")]
    Missing(PathBuf, &'static str),
    #[error(
        "TLS is on by default, and [tls] certificate and private_key are unset: make them \
         with `gwmo certs --dir DIR`, or serve plain HTTP with --plain-http \
         (plain_http = true under [tls])"
    )]
    NoCertificate,
    #[error("the TLS configuration is refused: {0}")]
    Refused(String),
}

/// What a client needs to call peers: whom it trusts, and whether it may call plain
/// HTTP.
#[derive(Clone)]
pub struct ClientTls {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) plain_http: bool,
}

impl ClientTls {
    /// A client that trusts the CA certificates in `ca` (PEM), or the system's roots.
    pub fn trusting(ca: Option<&Path>, plain_http: bool) -> Result<ClientTls, TlsError> {
        let roots = match ca {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for certificate in read_certificates(path)? {
                    roots
                        .add(certificate)
                        .map_err(|e| TlsError::Refused(format!("{}: {e}", path.display())))?;
                }
                roots
            }
            None => system_roots().clone(),
        };
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Refused(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
            plain_http,
        })
    }

    /// The rustls configuration behind this client, for code that drives TLS over a
    /// transport of its own (the handshake benchmark, which runs both sides in memory).
    pub fn rustls_config(&self) -> &Arc<ClientConfig> {
        &self.config
    }
}

impl TlsSettings {
    /// `https`, or `http` with `plain_http`: the scheme of this role's own URLs.
    pub fn scheme(&self) -> &'static str {
        if self.plain_http { "http" } else { "https" }
    }

    /// What a listener serving `what` needs: a TLS acceptor, or None (and a warning)
    /// for plain HTTP.
    pub fn acceptor(&self, what: &str) -> Result<Option<TlsAcceptor>, TlsError> {
        if self.plain_http {
            tracing::warn!(
                listener = what,
                "serving plain HTTP (plain_http): messages, credentials and commands cross the network unencrypted"
            );
            return Ok(None);
        }
        let (Some(certificate), Some(key)) = (&self.certificate, &self.private_key) else {
            return Err(TlsError::NoCertificate);
        };
        // Read again on SIGHUP (`reload_certificates`).
        let files = CertificateFiles::open(certificate, key, provider())?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Refused(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(files);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // TLS 1.3 session tickets (stateless: any number of peers, and the key rotates
        // every 6 h): a device's next connection resumes without the public-key work
        // of a full handshake, the largest cost of a short DM exchange.
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
            .map_err(|e| TlsError::Refused(format!("session tickets: {e}")))?;
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
    }

    /// What this role's clients need to call its peers.
    pub fn client(&self) -> Result<ClientTls, TlsError> {
        if self.plain_http {
            tracing::warn!(
                "plain HTTP allowed toward peers (plain_http): nothing verifies who answers"
            );
        }
        ClientTls::trusting(self.ca.as_deref(), self.plain_http)
    }
}

fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // AES-128-GCM with SHA-256 before the provider's first choice, AES-256-GCM with
    // SHA-384: both are sound, and where the CPU hashes SHA-256 in hardware (SHA-NI)
    // the handshake's key schedule costs a fraction (SHA-384 was 2 % of the server's
    // CPU in a rollout). Each side offers in this order, so two gwmo peers agree on it;
    // any other peer still gets what it asks for.
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(provider)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = std::fs::read(path).map_err(|e| TlsError::Read(path.to_owned(), e.to_string()))?;
    let certificates = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read(path.to_owned(), e.to_string()))?;
    if certificates.is_empty() {
        return Err(TlsError::Missing(path.to_owned(), "PEM certificate"));
    }
    Ok(certificates)
}

/// The operating system's trust anchors, read once per process (a simulator runs
/// thousands of devices). Unreadable ones are skipped, with a warning.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "reading the system's CA certificates");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "system CA certificates loaded");
        roots
    })
}

/// A listener's certificate and private key, as their files last read.
pub struct CertificateFiles {
    certificate: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertificateFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateFiles")
            .field("certificate", &self.certificate)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Every certificate this process presents, for [`reload_certificates`].
static PRESENTED: Mutex<Vec<Weak<CertificateFiles>>> = Mutex::new(Vec::new());

impl CertificateFiles {
    /// Reads `certificate` (a PEM chain) and `key`; the result is reloaded by
    /// [`reload_certificates`] for as long as it lives.
    pub fn open(
        certificate: &Path,
        key: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<CertificateFiles>, TlsError> {
        let current = RwLock::new(Arc::new(read_certified(certificate, key, &provider)?));
        let files = Arc::new(CertificateFiles {
            certificate: certificate.to_owned(),
            key: key.to_owned(),
            provider,
            current,
        });
        let mut presented = PRESENTED.lock().unwrap_or_else(|p| p.into_inner());
        presented.retain(|files| files.strong_count() > 0);
        presented.push(Arc::downgrade(&files));
        Ok(files)
    }

    /// Reads the files again; on failure what is presented stays as it was.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = read_certified(&self.certificate, &self.key, &self.provider)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(())
    }
}

impl ResolvesServerCert for CertificateFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn read_certified(
    certificate: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = read_certificates(certificate)?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            TlsError::Missing(key.to_owned(), "private key")
        }
        e => TlsError::Read(key.to_owned(), e.to_string()),
    })?;
    CertifiedKey::from_der(chain, private, provider).map_err(|e| {
        TlsError::Refused(format!(
            "{} and its private key: {e}",
            certificate.display()
        ))
    })
}

/// Reads every certificate this process presents again; returns how many were
/// reloaded, or the first failure (the others are reloaded all the same).
pub fn reload_certificates() -> Result<usize, TlsError> {
    let presented: Vec<Arc<CertificateFiles>> = PRESENTED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    let mut first_failure = None;
    for files in &presented {
        if let Err(error) = files.reload() {
            tracing::warn!(certificate = %files.certificate.display(), %error, "certificate not reloaded: the one before stays");
            first_failure.get_or_insert(error);
        }
    }
    match first_failure {
        Some(error) => Err(error),
        None => Ok(presented.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_that_fails_keeps_the_certificate_before_and_one_that_succeeds_swaps_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = crate::certs::issue(dir.path(), "a", &["127.0.0.1".into()]).unwrap();
        let settings = first.tls_settings();
        let (certificate, key) = (settings.certificate.unwrap(), settings.private_key.unwrap());
        let files = CertificateFiles::open(&certificate, &key, provider()).unwrap();
        let shown = |files: &CertificateFiles| files.current.read().unwrap().cert[0].to_vec();
        let before = shown(&files);
        std::fs::write(&certificate, "-----BEGIN CERTIFICATE-----\nhalf writ").unwrap();
        assert!(files.reload().is_err());
        assert_eq!(shown(&files), before, "a failed reload changes nothing");
        let second = crate::certs::issue(dir.path(), "b", &["127.0.0.1".into()]).unwrap();
        let renewed = second.tls_settings();
        std::fs::copy(renewed.certificate.unwrap(), &certificate).unwrap();
        assert!(
            files.reload().is_err(),
            "the old key does not match the new certificate"
        );
        std::fs::copy(renewed.private_key.unwrap(), &key).unwrap();
        files.reload().unwrap();
        assert_ne!(shown(&files), before);
    }

    #[test]
    fn an_empty_tls_table_means_tls_without_a_certificate() {
        let settings: TlsSettings = toml::from_str("").unwrap();
        assert_eq!(settings, TlsSettings::default());
        assert_eq!(settings.scheme(), "https");
        assert!(matches!(
            settings.acceptor("test"),
            Err(TlsError::NoCertificate)
        ));
    }

    #[test]
    fn plain_http_is_only_served_when_asked_for() {
        let settings = TlsSettings {
            plain_http: true,
            ..TlsSettings::default()
        };
        assert_eq!(settings.scheme(), "http");
        assert!(settings.acceptor("test").unwrap().is_none());
    }

    /// Two gwmo peers settle on AES-128-GCM with SHA-256, the cheaper key schedule.
    #[test]
    fn two_gwmo_peers_agree_on_aes_128_gcm_with_sha_256() {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::certs::issue(dir.path(), "server", &["127.0.0.1".into()])
            .unwrap()
            .tls_settings();
        let acceptor = settings.acceptor("test").unwrap().unwrap();
        let mut server = rustls::ServerConnection::new(acceptor.config().clone()).unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut client =
            rustls::ClientConnection::new(settings.client().unwrap().config, name).unwrap();
        for _ in 0..10 {
            let mut flight = Vec::new();
            client.write_tls(&mut flight).unwrap();
            server.read_tls(&mut flight.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            flight.clear();
            server.write_tls(&mut flight).unwrap();
            client.read_tls(&mut flight.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        for suite in [
            client.negotiated_cipher_suite(),
            server.negotiated_cipher_suite(),
        ] {
            assert_eq!(
                suite.map(|s| s.suite()),
                Some(CipherSuite::TLS13_AES_128_GCM_SHA256)
            );
        }
    }

    /// A client that connected once resumes its next connection with the ticket the
    /// listener gave it (no certificate, no signature), however many other peers
    /// connected in between: more than a session cache holds (rustls keeps 256).
    #[tokio::test]
    async fn a_device_resumes_its_session_after_more_peers_than_a_cache_holds() {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::certs::issue(dir.path(), "server", &["127.0.0.1".into()])
            .unwrap()
            .tls_settings();
        let acceptor = settings.acceptor("test").unwrap().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    if let Ok(mut tls) = acceptor.accept(stream).await {
                        let _ = tls.write_all(b"x").await;
                        let mut rest = Vec::new();
                        let _ = tls.read_to_end(&mut rest).await;
                    }
                });
            }
        });
        // Each peer has its own client configuration (its own resumption store), as
        // every device does.
        let connect = |connector: tokio_rustls::TlsConnector| async move {
            use tokio::io::AsyncReadExt;
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let mut tls = connector.connect(name, stream).await.unwrap();
            // The ticket comes after the handshake: read the server's first byte.
            let mut byte = [0; 1];
            tls.read_exact(&mut byte).await.unwrap();
            tls.get_ref().1.handshake_kind()
        };
        let base = settings.client().unwrap().config;
        let peer = || {
            let mut config = (*base).clone();
            config.resumption = rustls::client::Resumption::in_memory_sessions(4);
            tokio_rustls::TlsConnector::from(Arc::new(config))
        };
        let device = peer();
        assert_eq!(
            connect(device.clone()).await,
            Some(rustls::HandshakeKind::Full)
        );
        // Every full handshake hands out two sessions: 140 other peers would have
        // pushed the device's out of a cache of 256.
        for _ in 0..140 {
            connect(peer()).await;
        }
        assert_eq!(connect(device).await, Some(rustls::HandshakeKind::Resumed));
    }

    #[test]
    fn a_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = ClientTls::trusting(Some(&empty), false).err().unwrap();
        assert!(error.to_string().contains("empty.pem"), "{error}");
        let settings = TlsSettings {
            certificate: Some(empty.clone()),
            private_key: Some(dir.path().join("absent.key")),
            ..TlsSettings::default()
        };
        let error = settings.acceptor("test").err().unwrap();
        assert!(error.to_string().contains("empty.pem"), "{error}");
    }
}
