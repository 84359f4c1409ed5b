//! Local DM Bootstrap Server Assisted Gateway Bootstrapping, device side (seed 8.x.2,
//! DESIGN.md §2 B): checking a Gateway Bootstrap against the device's policy (USERPIN
//! MAC, unsigned documents), and applying it as a restricted account that lapses
//! unless a management session with the gateway follows in time.

use gwmo_proto::auth;
use gwmo_tree::{Acl, GatewayBootstrap, Op, Origin, Provenance, Tree, Trust};

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

/// Applies a checked Gateway Bootstrap: the gateway's account, restricted, lapsing at
/// `now` plus the shorter of what it asks and the device's maximum, with the right to
/// bootstrap the device to other servers (Add on ./DMAcc). Never overwrites an account
/// that did not come from a local bootstrap. `now_unix` gives the deadline.
pub fn apply(
    tree: &mut Tree,
    bootstrap: &GatewayBootstrap,
    now_unix: i64,
    policy: &Policy,
) -> Result<String, DeviceError> {
    let server_id = bootstrap.account.server_id.clone();
    if let Some(existing) = gwmo_tree::account_of(tree, &server_id)
        && gwmo_tree::provenance(tree, &existing).origin != Origin::LocalBootstrap
    {
        return Err(DeviceError::Bootstrap(format!(
            "it would replace the account of {server_id}, which did not come from a local bootstrap"
        )));
    }
    let name = gwmo_tree::segment_for(&server_id);
    let lapse_secs = bootstrap
        .lapse_secs
        .unwrap_or(policy.max_lapse_secs)
        .min(policy.max_lapse_secs);
    gwmo_tree::write_dm_account(tree, &name, &bootstrap.account)?;
    gwmo_tree::write_provenance(
        tree,
        &name,
        &Provenance {
            origin: Origin::LocalBootstrap,
            parent: None,
            trust: Trust::Restricted,
            lapse_at: Some(rfc3339(now_unix.saturating_add(lapse_secs as i64))),
            confirmed: false,
        },
    )?;
    let mut acl = tree
        .acl(gwmo_tree::DMACC)
        .cloned()
        .unwrap_or_else(|| Acl::granting("*", &[Op::Get]));
    acl.grant(Op::Add, &server_id);
    tree.set_acl(gwmo_tree::DMACC, acl)?;
    Ok(server_id)
}

/// RFC 3339 UTC to the second (`YYYY-MM-DDTHH:MM:SSZ`), the form LapseAt compares in.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "9999-12-31T23:59:59Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwmo_proto::auth::AuthType;
    use gwmo_tree::{DeviceInfo, DmAccount, bootstrap_document, read_bootstrap};

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
        let p = gwmo_tree::provenance(&tree, &gateway);
        assert_eq!(
            (p.origin, p.trust, p.confirmed),
            (Origin::LocalBootstrap, Trust::Restricted, false)
        );
        assert_eq!(
            p.lapse_at.as_deref(),
            Some(rfc3339(1_800_000_600).as_str()),
            "the bootstrap's 600 s < 3600 s"
        );
        assert!(tree.lapse(&rfc3339(1_800_000_599)).is_empty());
        // Its own DM Server may validate it; the gateway may not.
        let validate = gwmo_proto::Command::Replace(gwmo_proto::ItemCommand {
            cmd_id: 1,
            meta: None,
            items: vec![gwmo_proto::Item {
                target: Some(gwmo_proto::Location::new("./DMAcc/gw-l/Ext/GwBoot/Trust")),
                data: Some(gwmo_proto::Data::Text("validated".into())),
                ..gwmo_proto::Item::default()
            }],
        });
        let code = |tree: &mut Tree, server: &str| match &tree.execute(
            server,
            1,
            &validate,
            &mut gwmo_proto::CmdIds::new(),
        )[0]
        {
            gwmo_proto::Command::Status(s) => s.code,
            _ => 0,
        };
        assert_eq!(code(&mut tree, "gw-l"), 425);
        let dms = DmAccount::new("dms", "http://dms/dm", AuthType::Md5, "d", "c", "dms", "s");
        gwmo_tree::write_dm_account(&mut tree, "dms", &dms).unwrap();
        assert_eq!(code(&mut tree, "dms"), 200);
        assert_eq!(tree.lapse(&rfc3339(1_800_000_600)), vec!["gw-l"]);
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
        gwmo_tree::write_dm_account(&mut tree, "gw-l", &factory).unwrap();
        let before = serde_json::to_string(&tree).unwrap();
        let bootstrap = read_bootstrap(&document()).unwrap();
        assert!(apply(&mut tree, &bootstrap, 0, &policy(None, true)).is_err());
        assert_eq!(serde_json::to_string(&tree).unwrap(), before);
    }

    #[test]
    fn deadlines_are_whole_seconds_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
