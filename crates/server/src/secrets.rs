//! Secrets the server makes: device and gateway credentials, admin tokens.

/// 128 random bits as 32 hex digits (DM Security recommends at least 128-bit secrets).
pub fn random_secret() -> String {
    rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
