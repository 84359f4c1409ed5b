//! A development PKI, behind `gwmo certs`: one CA (`ca.pem`, `ca-key.pem`, made on
//! first use and reused after) and the certificates it issues (`<name>.pem`,
//! `<name>-key.pem`) for the host names and addresses a role's listeners answer on.
//! For test networks and trials: the CA's key lies unencrypted beside what it signed.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::TlsSettings;

/// The files `issue` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub ca: PathBuf,
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

impl Issued {
    /// Where `issue(dir, name, ..)` writes (or wrote) its files.
    pub fn in_dir(dir: &Path, name: &str) -> Issued {
        Issued {
            ca: dir.join("ca.pem"),
            certificate: dir.join(format!("{name}.pem")),
            private_key: dir.join(format!("{name}-key.pem")),
        }
    }

    /// The `[tls]` settings of a role that presents this certificate and trusts its CA.
    pub fn tls_settings(&self) -> TlsSettings {
        TlsSettings {
            certificate: Some(self.certificate.clone()),
            private_key: Some(self.private_key.clone()),
            ca: Some(self.ca.clone()),
            plain_http: false,
        }
    }
}

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0} exists but {1} does not: remove it to make a new CA")]
    HalfCa(PathBuf, PathBuf),
}

const CA_NAME: &str = "gwmo development CA";
/// How long a certificate it issues is valid (the longest browsers accept).
const VALIDITY_DAYS: i64 = 397;
const CA_VALIDITY_DAYS: i64 = 3650;

/// Issues `<dir>/<name>.pem` and its key for `hosts` (DNS names or IP addresses),
/// signed by the CA in `dir`, which is made first if there is none.
pub fn issue(dir: &Path, name: &str, hosts: &[String]) -> Result<Issued, CertError> {
    std::fs::create_dir_all(dir).map_err(|e| CertError::Io(dir.to_owned(), e))?;
    let issued = Issued::in_dir(dir, name);
    let issuer = ca_issuer(dir, &issued.ca)?;
    let mut params = CertificateParams::new(hosts.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        hosts.first().map_or(name, String::as_str),
    );
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity(&mut params, VALIDITY_DAYS);
    let key = KeyPair::generate()?;
    let certificate = params.signed_by(&key, &issuer)?;
    write_private(&issued.private_key, &key.serialize_pem())?;
    write(&issued.certificate, &certificate.pem())?;
    Ok(issued)
}

/// The CA of `dir`: loaded when `ca.pem` and `ca-key.pem` are there, made otherwise.
fn ca_issuer(dir: &Path, ca: &Path) -> Result<Issuer<'static, KeyPair>, CertError> {
    let key_path = dir.join("ca-key.pem");
    match (ca.exists(), key_path.exists()) {
        (true, true) => {
            let pem = std::fs::read_to_string(&key_path)
                .map_err(|e| CertError::Io(key_path.clone(), e))?;
            // The CA's parameters follow from its key, so the key is all an issuer
            // needs; the certificate itself need not be parsed.
            let key = KeyPair::from_pem(&pem)?;
            Ok(Issuer::new(ca_params(&key), key))
        }
        (true, false) => Err(CertError::HalfCa(ca.to_owned(), key_path)),
        (false, true) => Err(CertError::HalfCa(key_path, ca.to_owned())),
        (false, false) => {
            let key = KeyPair::generate()?;
            let params = ca_params(&key);
            let certificate = params.self_signed(&key)?;
            write_private(&key_path, &key.serialize_pem())?;
            write(ca, &certificate.pem())?;
            Ok(Issuer::new(params, key))
        }
    }
}

/// The CA's parameters, all derived from its key: its name carries a fingerprint of
/// the key, so that two development CAs are told apart by name (a certificate from
/// the other one is "unknown issuer", not a puzzling bad signature).
fn ca_params(key: &KeyPair) -> CertificateParams {
    let fingerprint: String = key
        .public_key_raw()
        .iter()
        .skip(1)
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{CA_NAME} {fingerprint}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "gwmo");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, CA_VALIDITY_DAYS);
    params
}

/// From a day ago (clocks differ) for `days`.
fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(days);
}

fn write(path: &Path, text: &str) -> Result<(), CertError> {
    std::fs::write(path, text).map_err(|e| CertError::Io(path.to_owned(), e))
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CertError::Io(path.to_owned(), e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| CertError::Io(path.to_owned(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        vec!["localhost".into(), "127.0.0.1".into()]
    }

    #[test]
    fn issued_certificates_load_as_a_listener_and_as_a_trust_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let issued = issue(dir.path(), "server", &hosts()).unwrap();
        assert_eq!(issued, Issued::in_dir(dir.path(), "server"));
        let settings = issued.tls_settings();
        assert!(settings.acceptor("test").unwrap().is_some());
        assert!(settings.client().is_ok());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&issued.private_key)
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o077, 0, "the key is readable by others");
    }

    #[test]
    fn a_second_certificate_is_signed_by_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = issue(dir.path(), "server", &hosts()).unwrap();
        let ca = std::fs::read(&first.ca).unwrap();
        issue(dir.path(), "gateway", &hosts()).unwrap();
        assert_eq!(std::fs::read(&first.ca).unwrap(), ca, "the CA was replaced");
    }

    #[test]
    fn a_ca_without_its_key_is_not_silently_replaced() {
        let dir = tempfile::tempdir().unwrap();
        issue(dir.path(), "server", &hosts()).unwrap();
        std::fs::remove_file(dir.path().join("ca-key.pem")).unwrap();
        let error = issue(dir.path(), "gateway", &hosts()).unwrap_err();
        assert!(matches!(error, CertError::HalfCa(..)), "{error}");
    }
}
