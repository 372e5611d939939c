//! TLS through rustls (ring provider, as kiln-registry): the certificate and key are read
//! from PEM files and read again when either file changes, so a rotated certificate
//! (cert-manager, a Secret update) is served without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("TLS {what} {path}: {reason} (hint: --tls-cert takes a PEM certificate chain, --tls-key its PEM private key)")]
pub struct TlsError {
    /// `certificate` or `key`.
    pub what: &'static str,
    /// The file.
    pub path: String,
    /// What failed.
    pub reason: String,
}

fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let bad = |what, path: &Path, reason: String| TlsError {
        what,
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("certificate", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("certificate", cert, "no CERTIFICATE block".into()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, e.to_string()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| bad("key", key, e.to_string()))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match()
        .map_err(|e| bad("key", key, format!("it does not match the certificate: {e}")))?;
    Ok(ck)
}

/// A file's modification time and length, if it can be read.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: &Path) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The certificate being served, reloaded when its files change.
#[derive(Debug)]
pub struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, [Stamp; 2])>,
}

impl Reloading {
    /// Loads the pair once; an error here stops the server from starting.
    pub fn new(cert: &Path, key: &Path) -> Result<Arc<Reloading>, TlsError> {
        let stamps = [stamp(cert), stamp(key)];
        let ck = load(cert, key)?;
        Ok(Arc::new(Reloading {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new((Arc::new(ck), stamps)),
        }))
    }

    /// Reads the pair again if either file changed; a pair that does not load is reported
    /// and the old one kept. Returns whether a new certificate is served.
    pub fn refresh(&self) -> Result<bool, TlsError> {
        let stamps = [stamp(&self.cert), stamp(&self.key)];
        if self.current.read().map(|c| c.1 == stamps).unwrap_or(false) {
            return Ok(false);
        }
        let ck = load(&self.cert, &self.key)?;
        if let Ok(mut c) = self.current.write() {
            *c = (Arc::new(ck), stamps);
        }
        Ok(true)
    }

    /// Checks the files every `every` for as long as the server runs.
    pub fn watch(self: Arc<Self>, every: Duration) {
        tokio::spawn(async move {
            let mut last_error = String::new();
            loop {
                tokio::time::sleep(every).await;
                match self.refresh() {
                    Ok(true) => {
                        last_error.clear();
                        eprintln!("kiln serve: TLS certificate reloaded from {}", self.cert.display());
                    }
                    Ok(false) => {}
                    Err(e) if e.to_string() != last_error => {
                        last_error = e.to_string();
                        eprintln!("kiln serve: keeping the old certificate: {e}");
                    }
                    Err(_) => {}
                }
            }
        });
    }

    /// The rustls server configuration serving this certificate (HTTP/1.1).
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut c = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(c)
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.0.clone())
    }
}
