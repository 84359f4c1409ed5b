//! Who may use the admin API: operator accounts, each with a role, and their bearer
//! tokens. A token is made here, shown once, and kept only as its SHA-256 digest (a
//! token is 256 random bits, so a plain digest is enough: nothing to guess).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What an operator may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads devices, gateways, commands, fan-outs and events.
    Viewer,
    /// Also enrolls devices, queues and cancels commands, wakes devices, sends
    /// fan-outs and validates gateways.
    Operator,
    /// Also manages operators, registers and removes gateways, decommissions devices,
    /// changes a device's authentication, and reads the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.name() == name)
    }
}

/// The name the configured `admin_token` acts under (an admin).
pub const CONFIGURED_ADMIN: &str = "config";

/// Prefix of the tokens made here, so that a leaked one is recognisable.
const TOKEN_PREFIX: &str = "gwmo_";

/// A new operator token: 256 random bits, hex.
pub fn new_token() -> String {
    let random: String = rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{TOKEN_PREFIX}{random}")
}

/// The digest a token is kept and looked up as.
pub fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `name` may name an operator: 1 to 64 letters, digits, `.`, `_`, `-` or
/// `@`, and not the configured admin's name.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name != CONFIGURED_ADMIN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_what_they_may_do_and_read_back_from_their_names() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for role in Role::ALL {
            assert_eq!(Role::from_name(role.name()), Some(role));
        }
        assert_eq!(Role::from_name("root"), None);
    }

    #[test]
    fn a_token_is_fresh_each_time_and_kept_as_a_digest_that_does_not_contain_it() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        let digest = token_digest(&a);
        assert_eq!(digest.len(), 64);
        assert!(!digest.contains(&a[TOKEN_PREFIX.len()..]));
        assert_eq!(digest, token_digest(&a));
        // SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        assert_eq!(
            token_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn operator_names_are_short_plain_and_never_the_configured_admin() {
        assert!(valid_name("alice@example.net"));
        assert!(valid_name("ops-1.b_c"));
        for bad in ["", "config", "a b", "é", &"x".repeat(65), "a/b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
