//! DM 1.2 authentication: `syncml:auth-basic` and `syncml:auth-md5` credentials in
//! the SyncHdr, challenges with NextNonce, the HMAC-MD5 transport header
//! (`x-syncml-hmac`), and the HMAC-SHA1 MAC of bootstrap documents. Every check of a
//! secret compares in constant time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::model::{Chal, Cred, Meta};

/// The credential schemes DM servers and clients use. In settings files, the admin API
/// and the store they are named by [`AuthType::name`]; MD5 unless said otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum AuthType {
    /// `syncml:auth-basic`: B64(name:password).
    Basic,
    /// `syncml:auth-md5`: B64(MD5(B64(MD5(name:password)):nonce)).
    #[default]
    Md5,
    /// `syncml:auth-MAC`: a MAC over every message, in the `x-syncml-hmac` header.
    Hmac,
}

impl AuthType {
    /// The `Meta/Type` of a Cred or Chal for this scheme.
    pub fn meta_type(self) -> &'static str {
        match self {
            AuthType::Basic => "syncml:auth-basic",
            AuthType::Md5 => "syncml:auth-md5",
            AuthType::Hmac => "syncml:auth-MAC",
        }
    }

    pub fn from_meta_type(value: &str) -> Option<AuthType> {
        AuthType::ALL
            .into_iter()
            .find(|a| a.meta_type().eq_ignore_ascii_case(value.trim()))
    }

    /// Every scheme, in the order of their names.
    pub const ALL: [AuthType; 3] = [AuthType::Basic, AuthType::Md5, AuthType::Hmac];

    /// The scheme's short name: in settings, the admin API and the store.
    pub fn name(self) -> &'static str {
        match self {
            AuthType::Basic => "basic",
            AuthType::Md5 => "md5",
            AuthType::Hmac => "hmac",
        }
    }

    /// The scheme a short name names.
    pub fn from_name(name: &str) -> Option<AuthType> {
        AuthType::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Why credentials, a challenge or a MAC were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("credentials do not match")]
    Mismatch,
    #[error("credential scheme {0:?} is not basic, md5 or MAC")]
    UnknownScheme(String),
    #[error("NextNonce is not base64: {0}")]
    BadNonce(String),
    #[error("malformed x-syncml-hmac header: {0}")]
    BadHmacHeader(String),
    #[error("HMAC algorithm {0:?} is not supported (only MD5)")]
    UnsupportedAlgorithm(String),
}

/// `B64(name:password)`.
pub fn basic_data(name: &str, password: &str) -> String {
    B64.encode(format!("{name}:{password}"))
}

/// `B64(MD5(name:password))`, the digest both MD5 credentials and HMACs start from.
fn secret_digest(name: &str, password: &str) -> String {
    B64.encode(Md5::digest(format!("{name}:{password}").as_bytes()))
}

/// `B64(MD5(B64(MD5(name:password)) + ":" + nonce))`; the nonce is raw bytes.
pub fn md5_data(name: &str, password: &str, nonce: &[u8]) -> String {
    let mut hasher = Md5::new();
    hasher.update(secret_digest(name, password).as_bytes());
    hasher.update(b":");
    hasher.update(nonce);
    B64.encode(hasher.finalize())
}

/// The Cred of a header (none for HMAC, which travels in the transport header).
pub fn cred(auth: AuthType, name: &str, password: &str, nonce: &[u8]) -> Option<Cred> {
    let data = match auth {
        AuthType::Basic => basic_data(name, password),
        AuthType::Md5 => md5_data(name, password, nonce),
        AuthType::Hmac => return None,
    };
    Some(Cred {
        meta: Meta {
            format: Some("b64".into()),
            r#type: Some(auth.meta_type().into()),
            ..Meta::default()
        },
        data,
    })
}

/// Checks a received Cred against the account's name, password and current nonce.
pub fn verify_cred(cred: &Cred, name: &str, password: &str, nonce: &[u8]) -> Result<(), AuthError> {
    let scheme = cred
        .meta
        .r#type
        .as_deref()
        .unwrap_or(AuthType::Basic.meta_type());
    let expected = match AuthType::from_meta_type(scheme) {
        Some(AuthType::Basic) => basic_data(name, password),
        Some(AuthType::Md5) => md5_data(name, password, nonce),
        Some(AuthType::Hmac) | None => return Err(AuthError::UnknownScheme(scheme.into())),
    };
    constant_time(expected.as_bytes(), cred.data.trim().as_bytes())
}

fn constant_time(expected: &[u8], given: &[u8]) -> Result<(), AuthError> {
    if bool::from(expected.ct_eq(given)) {
        Ok(())
    } else {
        Err(AuthError::Mismatch)
    }
}

/// A challenge for a Status: the scheme, Format b64, and the next nonce.
pub fn chal(auth: AuthType, next_nonce: &[u8]) -> Chal {
    Chal {
        meta: Meta {
            format: Some("b64".into()),
            r#type: Some(auth.meta_type().into()),
            next_nonce: Some(B64.encode(next_nonce)),
            ..Meta::default()
        },
    }
}

/// The raw nonce a challenge carries; none when it carries no NextNonce (a Basic
/// challenge needs none, and many clients send one without it).
pub fn next_nonce(chal: &Chal) -> Result<Option<Vec<u8>>, AuthError> {
    let Some(text) = chal.meta.next_nonce.as_deref() else {
        return Ok(None);
    };
    B64.decode(text.trim())
        .map(Some)
        .map_err(|e| AuthError::BadNonce(e.to_string()))
}

/// The parameters of an `x-syncml-hmac` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacHeader {
    pub algorithm: String,
    pub username: String,
    pub mac: String,
}

/// `B64(MD5(B64(MD5(name:password)) + ":" + nonce + ":" + B64(MD5(body))))`.
pub fn hmac_mac(name: &str, password: &str, nonce: &[u8], body: &[u8]) -> String {
    let mut hasher = Md5::new();
    hasher.update(secret_digest(name, password).as_bytes());
    hasher.update(b":");
    hasher.update(nonce);
    hasher.update(b":");
    hasher.update(B64.encode(Md5::digest(body)).as_bytes());
    B64.encode(hasher.finalize())
}

/// The `x-syncml-hmac` header value for a message body.
pub fn hmac_header(name: &str, password: &str, nonce: &[u8], body: &[u8]) -> String {
    format!(
        "algorithm=MD5, username=\"{name}\", mac={}",
        hmac_mac(name, password, nonce, body)
    )
}

/// Reads an `x-syncml-hmac` value: comma-separated `key=value` pairs in any order,
/// values optionally quoted; `algorithm` defaults to MD5, `username` and `mac` are required.
pub fn parse_hmac_header(value: &str) -> Result<HmacHeader, AuthError> {
    let (mut algorithm, mut username, mut mac) = (None, None, None);
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, raw) = part
            .split_once('=')
            .ok_or_else(|| AuthError::BadHmacHeader(format!("{part:?} is not key=value")))?;
        let unquoted = raw.trim().trim_matches('"').to_owned();
        match key.trim().to_ascii_lowercase().as_str() {
            "algorithm" => algorithm = Some(unquoted),
            "username" => username = Some(unquoted),
            "mac" => mac = Some(unquoted),
            _ => {}
        }
    }
    let algorithm = algorithm.unwrap_or_else(|| "MD5".into());
    if !algorithm.eq_ignore_ascii_case("MD5") {
        return Err(AuthError::UnsupportedAlgorithm(algorithm));
    }
    Ok(HmacHeader {
        algorithm,
        username: username.ok_or_else(|| AuthError::BadHmacHeader("no username".into()))?,
        mac: mac.ok_or_else(|| AuthError::BadHmacHeader("no mac".into()))?,
    })
}

/// Checks a received MAC against the exact bytes of the message body.
pub fn verify_hmac(
    header: &HmacHeader,
    name: &str,
    password: &str,
    nonce: &[u8],
    body: &[u8],
) -> Result<(), AuthError> {
    let expected = hmac_mac(name, password, nonce, body);
    let same_user = bool::from(header.username.as_bytes().ct_eq(name.as_bytes()));
    constant_time(expected.as_bytes(), header.mac.as_bytes())?;
    if same_user {
        Ok(())
    } else {
        Err(AuthError::Mismatch)
    }
}

/// The MAC of a bootstrap document (DM Security): HMAC-SHA1 as upper-case hex.
pub fn bootstrap_mac(key: &[u8], document: &[u8]) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(document);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// Checks a bootstrap document's MAC (hex, either case).
pub fn verify_bootstrap_mac(key: &[u8], document: &[u8], mac_hex: &str) -> Result<(), AuthError> {
    let expected = bootstrap_mac(key, document);
    constant_time(
        expected.as_bytes(),
        mac_hex.trim().to_ascii_uppercase().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_matches_the_spec_vector() {
        assert_eq!(basic_data("Bruce2", "OhBehave"), "QnJ1Y2UyOk9oQmVoYXZl");
    }

    #[test]
    fn md5_matches_the_spec_vector() {
        assert_eq!(
            secret_digest("Bruce2", "OhBehave"),
            "PtEdr8lBQ45IbT1bZIkrOQ=="
        );
        assert_eq!(
            md5_data("Bruce2", "OhBehave", b"Nonce"),
            "Zz6EivR3yeaaENcRN6lpAQ=="
        );
    }

    #[test]
    fn a_cred_verifies_only_with_the_same_name_password_and_nonce() {
        let cred = cred(AuthType::Md5, "Bruce2", "OhBehave", b"Nonce").unwrap();
        assert_eq!(verify_cred(&cred, "Bruce2", "OhBehave", b"Nonce"), Ok(()));
        assert_eq!(
            verify_cred(&cred, "Bruce2", "OhBehave", b"Other"),
            Err(AuthError::Mismatch)
        );
        assert_eq!(
            verify_cred(&cred, "Bruce2", "wrong", b"Nonce"),
            Err(AuthError::Mismatch)
        );
        assert_eq!(
            verify_cred(&cred, "Bruce3", "OhBehave", b"Nonce"),
            Err(AuthError::Mismatch)
        );
        let basic = super::cred(AuthType::Basic, "Bruce2", "OhBehave", b"").unwrap();
        assert_eq!(
            verify_cred(&basic, "Bruce2", "OhBehave", b"ignored"),
            Ok(())
        );
        assert!(super::cred(AuthType::Hmac, "a", "b", b"c").is_none());
    }

    #[test]
    fn challenges_carry_the_nonce_in_base64() {
        let chal = chal(AuthType::Md5, &[0, 1, 2, 255]);
        assert_eq!(chal.meta.next_nonce.as_deref(), Some("AAEC/w=="));
        assert_eq!(next_nonce(&chal), Ok(Some(vec![0, 1, 2, 255])));
        let basic = Chal {
            meta: Meta {
                r#type: Some(AuthType::Basic.meta_type().into()),
                ..Meta::default()
            },
        };
        assert_eq!(
            next_nonce(&basic),
            Ok(None),
            "a Basic challenge needs no nonce"
        );
        let broken = Chal {
            meta: Meta {
                next_nonce: Some("***".into()),
                ..Meta::default()
            },
        };
        assert!(matches!(next_nonce(&broken), Err(AuthError::BadNonce(_))));
    }

    #[test]
    fn hmac_header_round_trips_and_detects_tampering() {
        let body = b"<SyncML>...</SyncML>";
        let value = hmac_header("dev", "secret", b"n1", body);
        let header = parse_hmac_header(&value).unwrap();
        assert_eq!(header.username, "dev");
        assert_eq!(verify_hmac(&header, "dev", "secret", b"n1", body), Ok(()));
        assert!(verify_hmac(&header, "dev", "secret", b"n2", body).is_err());
        assert!(verify_hmac(&header, "dev", "secret", b"n1", b"<SyncML>..,</SyncML>").is_err());
        assert!(verify_hmac(&header, "other", "secret", b"n1", body).is_err());
    }

    #[test]
    fn hmac_headers_are_read_tolerantly() {
        let header = parse_hmac_header(" mac=abc==,username=\"x y\" ").unwrap();
        assert_eq!(
            (
                header.algorithm.as_str(),
                header.username.as_str(),
                header.mac.as_str()
            ),
            ("MD5", "x y", "abc==")
        );
        assert!(matches!(
            parse_hmac_header("algorithm=SHA1,username=a,mac=b"),
            Err(AuthError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            parse_hmac_header("username=a"),
            Err(AuthError::BadHmacHeader(_))
        ));
        assert!(matches!(
            parse_hmac_header("garbage"),
            Err(AuthError::BadHmacHeader(_))
        ));
    }

    #[test]
    fn bootstrap_mac_is_hmac_sha1_hex() {
        // RFC 2202 test case 2.
        assert_eq!(
            bootstrap_mac(b"Jefe", b"what do ya want for nothing?"),
            "EFFCDF6AE5EB2FA2D27416D5F184DF9C259A7C79"
        );
        let mac = bootstrap_mac(b"1234", b"doc");
        assert_eq!(
            verify_bootstrap_mac(b"1234", b"doc", &mac.to_lowercase()),
            Ok(())
        );
        assert!(verify_bootstrap_mac(b"1235", b"doc", &mac).is_err());
        assert!(verify_bootstrap_mac(b"1234", b"doc!", &mac).is_err());
    }
}
