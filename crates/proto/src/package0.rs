//! Package 0: the DM 1.2 General Notification a server sends to make a device open
//! a session. Bit layout (big-endian): 128-bit digest, then version (10 bits),
//! ui-mode (2), initiator (1), future use (27), session id (16), server-id length
//! (8), the server id, and optional vendor-specific bytes.
//!
//! digest = MD5(B64(MD5(server-id:password)) ":" nonce ":" B64(MD5(trigger))) where
//! the trigger is everything after the digest and password/nonce are the server's
//! credentials toward the device.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// The version written: 1.1 as 11, the only value libdmclient accepts (its package0.c; OMA DM 1.2 Notification Initiated Session).
pub const VERSION: u16 = 11;
/// Bytes of the digest a package 0 starts with.
pub const DIGEST_LEN: usize = 16;
const HEADER_LEN: usize = 8;

/// How the device should involve its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiMode {
    NotSpecified,
    Background,
    Informative,
    UserInteraction,
}

/// Who asked for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    Client,
    Server,
}

/// A decoded notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub version: u16,
    pub ui_mode: UiMode,
    pub initiator: Initiator,
    pub session_id: u16,
    pub server_id: String,
    pub vendor_specific: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Package0Error {
    #[error("a notification needs at least 24 bytes, got {0}")]
    TooShort(usize),
    #[error("the server id claims {claimed} bytes but only {available} follow")]
    ServerIdPastEnd { claimed: usize, available: usize },
    #[error("the server id is not UTF-8")]
    ServerIdNotUtf8,
    #[error("server ids are at most 255 bytes, got {0}")]
    ServerIdTooLong(usize),
    #[error("version {0} is not supported (11 or 12)")]
    Version(u16),
    #[error("the digest does not verify")]
    Digest,
}

/// SessionID text for a notification's session id: upper-case hex, no leading zeros.
pub fn session_id_text(id: u16) -> String {
    format!("{id:X}")
}

fn digest(server_id: &str, password: &str, nonce: &[u8], trigger: &[u8]) -> [u8; DIGEST_LEN] {
    let mut hasher = Md5::new();
    hasher.update(B64.encode(Md5::digest(format!("{server_id}:{password}").as_bytes())));
    hasher.update(b":");
    hasher.update(nonce);
    hasher.update(b":");
    hasher.update(B64.encode(Md5::digest(trigger)));
    hasher.finalize().into()
}

/// Writes a notification with its digest.
pub fn encode(
    notification: &Notification,
    server_id: &str,
    server_password: &str,
    nonce: &[u8],
) -> Result<Vec<u8>, Package0Error> {
    let id = notification.server_id.as_bytes();
    let id_len = u8::try_from(id.len()).map_err(|_| Package0Error::ServerIdTooLong(id.len()))?;
    let ui = match notification.ui_mode {
        UiMode::NotSpecified => 0u64,
        UiMode::Background => 1,
        UiMode::Informative => 2,
        UiMode::UserInteraction => 3,
    };
    let initiator = match notification.initiator {
        Initiator::Client => 0u64,
        Initiator::Server => 1,
    };
    let header = (u64::from(notification.version & 0x3ff) << 54)
        | (ui << 52)
        | (initiator << 51)
        | (u64::from(notification.session_id) << 8)
        | u64::from(id_len);
    let mut trigger =
        Vec::with_capacity(HEADER_LEN + id.len() + notification.vendor_specific.len());
    trigger.extend_from_slice(&header.to_be_bytes());
    trigger.extend_from_slice(id);
    trigger.extend_from_slice(&notification.vendor_specific);
    let mut out = digest(server_id, server_password, nonce, &trigger).to_vec();
    out.extend_from_slice(&trigger);
    Ok(out)
}

/// Reads a notification without checking its digest (returned beside it).
pub fn decode(bytes: &[u8]) -> Result<(Notification, [u8; DIGEST_LEN]), Package0Error> {
    let too_short = || Package0Error::TooShort(bytes.len());
    let digest: [u8; DIGEST_LEN] = bytes
        .get(..DIGEST_LEN)
        .and_then(|d| d.try_into().ok())
        .ok_or_else(too_short)?;
    let header: [u8; HEADER_LEN] = bytes
        .get(DIGEST_LEN..DIGEST_LEN + HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(too_short)?;
    let header = u64::from_be_bytes(header);
    let version = (header >> 54) as u16;
    if version != 11 && version != 12 {
        return Err(Package0Error::Version(version));
    }
    let ui_mode = match (header >> 52) & 0b11 {
        0 => UiMode::NotSpecified,
        1 => UiMode::Background,
        2 => UiMode::Informative,
        _ => UiMode::UserInteraction,
    };
    let initiator = if (header >> 51) & 1 == 1 {
        Initiator::Server
    } else {
        Initiator::Client
    };
    let session_id = ((header >> 8) & 0xffff) as u16;
    let id_len = (header & 0xff) as usize;
    let rest = &bytes[DIGEST_LEN + HEADER_LEN..];
    let id = rest.get(..id_len).ok_or(Package0Error::ServerIdPastEnd {
        claimed: id_len,
        available: rest.len(),
    })?;
    let server_id = std::str::from_utf8(id)
        .map_err(|_| Package0Error::ServerIdNotUtf8)?
        .to_owned();
    Ok((
        Notification {
            version,
            ui_mode,
            initiator,
            session_id,
            server_id,
            vendor_specific: rest[id_len..].to_vec(),
        },
        digest,
    ))
}

/// Reads a notification and checks its digest with the server's credentials.
pub fn verify(
    bytes: &[u8],
    server_id: &str,
    server_password: &str,
    nonce: &[u8],
) -> Result<Notification, Package0Error> {
    let (notification, given) = decode(bytes)?;
    let expected = digest(server_id, server_password, nonce, &bytes[DIGEST_LEN..]);
    if bool::from(expected.ct_eq(&given)) {
        Ok(notification)
    } else {
        Err(Package0Error::Digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Notification {
        Notification {
            version: VERSION,
            ui_mode: UiMode::Background,
            initiator: Initiator::Server,
            session_id: 0x1A2B,
            server_id: "gwmo-dms".into(),
            vendor_specific: vec![9, 8],
        }
    }

    #[test]
    fn the_header_bits_are_where_the_spec_puts_them() {
        let bytes = encode(&sample(), "gwmo-dms", "pw", b"nonce").unwrap();
        // version 11 = 0b0000001011, ui 01, initiator 1, 27 zero bits, 0x1A2B, length 8.
        assert_eq!(
            &bytes[16..24],
            &[0x02, 0xD8, 0x00, 0x00, 0x00, 0x1A, 0x2B, 0x08]
        );
        assert_eq!(&bytes[24..32], b"gwmo-dms");
        assert_eq!(&bytes[32..], &[9, 8]);
    }

    #[test]
    fn round_trip_and_digest() {
        let bytes = encode(&sample(), "gwmo-dms", "pw", b"nonce").unwrap();
        assert_eq!(verify(&bytes, "gwmo-dms", "pw", b"nonce"), Ok(sample()));
        assert_eq!(
            verify(&bytes, "gwmo-dms", "other", b"nonce"),
            Err(Package0Error::Digest)
        );
        assert_eq!(
            verify(&bytes, "gwmo-dms", "pw", b"old"),
            Err(Package0Error::Digest)
        );
        let mut tampered = bytes.clone();
        tampered[22] ^= 1; // the session id
        assert_eq!(
            verify(&tampered, "gwmo-dms", "pw", b"nonce"),
            Err(Package0Error::Digest)
        );
        assert_eq!(session_id_text(0x1A2B), "1A2B");
        assert_eq!(session_id_text(0x0001), "1");
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode(&sample(), "gwmo-dms", "pw", b"nonce").unwrap();
        for end in 0..32 {
            assert!(decode(&bytes[..end]).is_err(), "accepted {end} bytes");
        }
        assert!(decode(&bytes[..32]).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..96)) {
            let _ = decode(&bytes);
            let _ = verify(&bytes, "s", "p", b"n");
        }
    }
}
