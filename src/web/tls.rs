//! HTTPS for dsms itself: the certificate chain and private key (PEM files named by `tls_cert`
//! and `tls_key`) turned into a rustls acceptor that offers HTTP/2 and HTTP/1.1 (ALPN). Owns:
//! reading and checking the files. Leaves: the handshake and serving (server.rs).

use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the server's certificate chain and private key are (both PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why HTTPS cannot start: names the key and the file, in one French line.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls_cert : {path} : {message}")]
    Cert { path: PathBuf, message: String },
    #[error("tls_key : {path} : {message}")]
    Key { path: PathBuf, message: String },
    #[error("tls_cert et tls_key ne vont pas ensemble : {0}")]
    Mismatch(String),
}

/// Reads both files and builds the acceptor; any problem is reported before the server listens.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let cert_error = |message: String| TlsError::Cert { path: files.cert.clone(), message };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| cert_error(pem_message(&e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_error(pem_message(&e)))?;
    if certs.is_empty() {
        return Err(cert_error("aucun certificat PEM (-----BEGIN CERTIFICATE-----) dans ce fichier".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key { path: files.key.clone(), message: pem_message(&e) })?;
    // ring, the one provider in this build (sqlx's PostgreSQL TLS uses it too). Later rustls
    // releases deprecate it for aws-lc-rs (post-quantum key exchange), which would add a second
    // provider and a C/cmake build: revisit together with sqlx 0.9.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The host names the certificate (the chain's first) is for: its DNS subject alternative names,
/// lower case, wildcards (`*.example.sn`) included. Empty when the file cannot be read (`acceptor`
/// reports that).
pub fn certificate_names(files: &TlsFiles) -> Vec<String> {
    let Ok(Some(Ok(leaf))) = CertificateDer::pem_file_iter(&files.cert).map(|mut certs| certs.next()) else { return Vec::new() };
    let Ok(cert) = webpki::EndEntityCert::try_from(&leaf) else { return Vec::new() };
    cert.valid_dns_names().map(str::to_ascii_lowercase).collect()
}

fn pem_message(error: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::Io(e) => format!("fichier illisible ({e})"),
        Error::NoItemsFound => "aucun élément PEM dans ce fichier".into(),
        other => format!("PEM invalide ({other:?})"),
    }
}
