//! Local DM Bootstrap Server Assisted Gateway Bootstrapping, device side (seed 8.x.2,
//! docs/DECISIONS.md §2 B): checking a Gateway Bootstrap against the device's policy (USERPIN
//! MAC, unsigned documents), and applying it as a restricted account that lapses
//! unless a management session with the gateway follows in time.

use gwmo_proto::auth;
use gwmo_tree::{GatewayBootstrap, Tree};

use crate::DeviceError;

/// What the device accepts from a local bootstrap server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The PIN a bootstrap's MAC must be made with (DM Security: USERPIN).
    pub userpin: Option<String>,
    /// Whether a document without a MAC is accepted at all (never when a PIN is set).
    pub accept_unsigned: bool,
    /// The longest a Gateway Bootstrap may wait for its first management session.
    pub max_lapse_secs: u64,
}

/// The `SEC` and `MAC` parameters of a bootstrap's content type.
fn mac_parameter(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("MAC")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// Checks a bootstrap document against the policy: with a USERPIN the MAC must be
/// there and verify; without one, unsigned documents pass only if the policy says so.
pub fn check(document: &[u8], content_type: &str, policy: &Policy) -> Result<(), DeviceError> {
    let refused = |why: &str| DeviceError::Bootstrap(why.to_owned());
    match (&policy.userpin, mac_parameter(content_type)) {
        (Some(pin), Some(mac)) => auth::verify_bootstrap_mac(pin.as_bytes(), document, &mac)
            .map_err(|_| refused("its MAC does not verify with this device's USERPIN")),
        (Some(_), None) => Err(refused("it carries no MAC and this device has a USERPIN")),
        (None, _) if policy.accept_unsigned => Ok(()),
        (None, _) => Err(refused("this device accepts no unsigned local bootstrap")),
    }
}

/// Applies a checked Gateway Bootstrap: the gateway's account on a node of its own,
/// restricted, lapsing after the shorter of what it asks and the device's maximum
/// unless a management session follows. Never replaces an account the device has.
/// Returns the gateway's ServerID.
pub fn apply(
    tree: &mut Tree,
    bootstrap: &GatewayBootstrap,
    now_unix: i64,
    policy: &Policy,
) -> Result<String, DeviceError> {
    let lapse_secs = bootstrap
        .lapse_secs
        .unwrap_or(policy.max_lapse_secs)
        .min(policy.max_lapse_secs);
    tree.apply_gateway_bootstrap(&bootstrap.account, now_unix, lapse_secs)
        .map_err(|error| DeviceError::Bootstrap(error.to_string()))?;
    Ok(bootstrap.account.server_id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwmo_proto::auth::AuthType;
    use gwmo_tree::{
        DeviceInfo, DmAccount, Elapsed, Origin, Trust, bootstrap_document, read_bootstrap, rfc3339,
    };
    use std::time::Duration;

    fn policy(pin: Option<&str>, accept_unsigned: bool) -> Policy {
        Policy {
            userpin: pin.map(str::to_owned),
            accept_unsigned,
            max_lapse_secs: 3600,
        }
    }

    fn document() -> String {
        let account = DmAccount::new(
            "gw-l",
            "http://gw/dm",
            AuthType::Md5,
            "IMEI:1",
            "c",
            "gw-l",
            "s",
        );
        bootstrap_document(&account, 600).unwrap()
    }

    #[test]
    fn req_8x2_with_a_userpin_only_a_document_whose_mac_verifies_is_accepted() {
        let doc = document();
        let mac = auth::bootstrap_mac(b"1234", doc.as_bytes());
        let signed = format!("application/vnd.syncml.dmtnds+xml; SEC=USERPIN; MAC={mac}");
        assert!(check(doc.as_bytes(), &signed, &policy(Some("1234"), false)).is_ok());
        assert!(
            check(doc.as_bytes(), &signed, &policy(Some("9999"), false)).is_err(),
            "wrong PIN"
        );
        let tampered = doc.replace("http://gw/dm", "http://evil/dm");
        assert!(
            check(tampered.as_bytes(), &signed, &policy(Some("1234"), false)).is_err(),
            "tampered"
        );
        assert!(
            check(
                doc.as_bytes(),
                "application/vnd.syncml.dmtnds+xml",
                &policy(Some("1234"), true)
            )
            .is_err(),
            "unsigned"
        );
    }

    #[test]
    fn req_8x2_the_device_policy_decides_about_unsigned_bootstraps() {
        let doc = document();
        let plain = "application/vnd.syncml.dmtnds+xml";
        assert!(check(doc.as_bytes(), plain, &policy(None, false)).is_err());
        assert!(check(doc.as_bytes(), plain, &policy(None, true)).is_ok());
    }

    #[test]
    fn req_8x2_an_applied_bootstrap_is_restricted_and_lapses_at_the_shorter_interval() {
        let mut tree = Tree::new_device(&DeviceInfo {
            dev_id: "IMEI:1".into(),
            ..DeviceInfo::default()
        });
        let bootstrap = read_bootstrap(&document()).unwrap();
        let gateway = apply(&mut tree, &bootstrap, 1_800_000_000, &policy(None, true)).unwrap();
        let p = tree.provenance_of(&gateway).unwrap();
        assert_eq!(
            (p.origin, p.trust, p.confirmed),
            (Origin::LocalBootstrap, Trust::Restricted, false)
        );
        assert_eq!(
            p.lapse_at.as_deref(),
            Some(rfc3339(1_800_000_600).as_str()),
            "the bootstrap's 600 s < 3600 s"
        );
        assert!(
            tree.lapse(1_800_000_599, Elapsed::Measured(Duration::from_secs(599)))
                .is_empty()
        );
        assert_eq!(
            tree.lapse(1_800_000_600, Elapsed::Measured(Duration::from_secs(1))),
            vec!["gw-l"]
        );
    }

    #[test]
    fn a_local_bootstrap_never_replaces_a_factory_account() {
        let mut tree = Tree::new_device(&DeviceInfo::default());
        let factory = DmAccount::new(
            "gw-l",
            "http://real/dm",
            AuthType::Md5,
            "d",
            "c",
            "gw-l",
            "s",
        );
        tree.add_factory_account(&factory).unwrap();
        let before = serde_json::to_string(&tree).unwrap();
        let bootstrap = read_bootstrap(&document()).unwrap();
        assert!(apply(&mut tree, &bootstrap, 0, &policy(None, true)).is_err());
        assert_eq!(serde_json::to_string(&tree).unwrap(), before);
    }
}
