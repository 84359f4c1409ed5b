//! The Firmware Update Management Object (OMA FUMO 1.0, `urn:oma:mo:oma-fumo:1.0`):
//! its node names, the states a device passes through, the result codes it reports in
//! a Generic Alert, and which Exec targets start a long-running operation (answered
//! 202, their result coming later). docs/FUMO.md gives the sources and gwmo's choices.

use gwmo_proto::codes::alert_type;

use crate::TreeError;
use crate::acl::Acl;
use crate::node::Format;
use crate::tree::Tree;

/// Where FUMO objects live in a gwmo device (FUMO leaves the place to the DDF).
pub const ROOT: &str = "./FUMO";
/// The one FUMO object a gwmo device offers.
pub const OBJECT: &str = "./FUMO/Firmware";
/// The management object identifier, the `x` node's Type.
pub const MO_TYPE: &str = "urn:oma:mo:oma-fumo:1.0";

/// The package descriptor gwmo's server writes under `<x>/Ext` beside the PkgURL, for
/// the device to check what it downloads (FUMO 1.0 leaves the descriptor to OMA
/// Download's; docs/FUMO.md): hex SHA-256, size in bytes, and the Man and Mod the
/// package is built for.
pub const EXT_SHA256: &str = "Ext/SHA256";
pub const EXT_SIZE: &str = "Ext/Size";
pub const EXT_MAN: &str = "Ext/Man";
pub const EXT_MOD: &str = "Ext/Mod";

/// The three long-running operations, each an executable node of `<x>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Operation {
    /// Fetch the package from `Download/PkgURL`; the update waits for `Update`.
    Download,
    /// Install the package downloaded before.
    Update,
    /// Fetch from `DownloadAndUpdate/PkgURL`, then install without further word.
    DownloadAndUpdate,
}

impl Operation {
    pub const ALL: [Operation; 3] = [
        Operation::Download,
        Operation::Update,
        Operation::DownloadAndUpdate,
    ];

    /// The node's name under `<x>`.
    pub fn node(self) -> &'static str {
        match self {
            Operation::Download => "Download",
            Operation::Update => "Update",
            Operation::DownloadAndUpdate => "DownloadAndUpdate",
        }
    }

    /// The Generic Alert type that reports its result.
    pub fn alert_type(self) -> &'static str {
        match self {
            Operation::Download => alert_type::FUMO_DOWNLOAD,
            Operation::Update => alert_type::FUMO_UPDATE,
            Operation::DownloadAndUpdate => alert_type::FUMO_DOWNLOAD_AND_UPDATE,
        }
    }

    /// Whether it fetches a package (and so reads a PkgURL).
    pub fn downloads(self) -> bool {
        self != Operation::Update
    }

    /// The operation an Exec on `uri` starts: `uri` is `<x>/<operation>` for a FUMO
    /// object `<x>` directly under [`ROOT`].
    pub fn of_target(uri: &str) -> Option<(String, Operation)> {
        let rest = uri.strip_prefix(ROOT)?.strip_prefix('/')?;
        let (object, node) = rest.split_once('/')?;
        if object.is_empty() || object.contains('/') {
            return None;
        }
        let operation = Operation::ALL.into_iter().find(|o| o.node() == node)?;
        Some((format!("{ROOT}/{object}"), operation))
    }
}

/// `<x>/State` (FUMO 1.0 §10.2): where the device is in an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum State {
    Idle = 10,
    DownloadFailed = 20,
    DownloadProgressing = 30,
    DownloadComplete = 40,
    ReadyToUpdate = 50,
    UpdateProgressing = 60,
    UpdateFailedHaveData = 70,
    UpdateFailedNoData = 80,
    UpdateSuccessfulHaveData = 90,
    UpdateSuccessfulNoData = 100,
}

impl State {
    pub fn value(self) -> u16 {
        self as u16
    }
}

/// A FUMO result code (FUMO 1.0, Result Codes): what the Generic Alert carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResultCode(pub u16);

impl ResultCode {
    pub const SUCCESSFUL: ResultCode = ResultCode(200);
    pub const CLIENT_ERROR: ResultCode = ResultCode(400);
    pub const CORRUPTED_PACKAGE: ResultCode = ResultCode(402);
    pub const DEVICE_MISMATCH: ResultCode = ResultCode(403);
    pub const VALIDATION_FAILED: ResultCode = ResultCode(404);
    pub const NOT_ACCEPTABLE: ResultCode = ResultCode(405);
    pub const DOWNLOAD_TIMEOUT: ResultCode = ResultCode(407);
    pub const NOT_IMPLEMENTED: ResultCode = ResultCode(408);
    pub const UNDEFINED_ERROR: ResultCode = ResultCode(409);
    pub const UPDATE_FAILED: ResultCode = ResultCode(410);
    pub const BAD_URL: ResultCode = ResultCode(411);
    pub const SERVER_UNAVAILABLE: ResultCode = ResultCode(412);
    pub const SERVER_ERROR: ResultCode = ResultCode(500);
    pub const DOWNLOAD_OUT_OF_MEMORY: ResultCode = ResultCode(501);
    pub const NETWORK_ISSUES: ResultCode = ResultCode(503);

    /// 200 and the vendor-specified successes (250-299).
    pub fn is_success(self) -> bool {
        self.0 == 200 || (250..=299).contains(&self.0)
    }

    /// The specification's name for the code.
    pub fn meaning(self) -> &'static str {
        match self.0 {
            200 => "Successful",
            250..=299 => "Successful - Vendor Specified",
            400 => "Management Client Error",
            401 => "User Cancelled",
            402 => "Corrupted Firmware Update Package",
            403 => "Firmware Update Package - Device Mismatch",
            404 => "Failed Firmware Update Package Validation",
            405 => "Firmware Update Package Not Acceptable",
            406 => "Alternate Download Authentication Failure",
            407 => "Alternate Download Request Time-Out",
            408 => "Not Implemented",
            409 => "Undefined Error",
            410 => "Firmware Update Failed",
            411 => "Malformed or Bad URL",
            412 => "Alternate Download Server Unavailable",
            450..=499 => "Client Error - Vendor Specified",
            500 => "Alternate Download Server Error",
            501 => "Download Fails due to Device is Out of Memory",
            502 => "Firmware Update Fails due to Device Out of Memory",
            503 => "Download Fails due to Network Issues",
            550..=599 => "Alternate Download Server Error - Vendor Specified",
            _ => "not a FUMO result code",
        }
    }
}

impl Tree {
    /// Creates the FUMO object `object` (`./FUMO/<x>`) in state Idle, with `acl` on it:
    /// the servers that may update the device's firmware.
    pub fn install_fumo(&mut self, object: &str, acl: Acl) -> Result<(), TreeError> {
        self.ensure_interior(ROOT)?;
        self.ensure_interior(object)?;
        for leaf in ["PkgName", "PkgVersion"] {
            self.set_leaf(&format!("{object}/{leaf}"), "", Format::Chr)?;
        }
        for operation in Operation::ALL {
            let node = format!("{object}/{}", operation.node());
            self.ensure_interior(&node)?;
            if operation.downloads() {
                self.set_leaf(&format!("{node}/PkgURL"), "", Format::Chr)?;
            }
        }
        self.set_leaf(
            &format!("{object}/State"),
            &State::Idle.value().to_string(),
            Format::Int,
        )?;
        for leaf in [EXT_SHA256, EXT_SIZE, EXT_MAN, EXT_MOD] {
            self.set_leaf(&format!("{object}/{leaf}"), "", Format::Chr)?;
        }
        self.set_node_type(object, MO_TYPE)?;
        self.set_acl(object, acl)
    }

    /// Sets `<x>/State`.
    pub fn set_fumo_state(&mut self, object: &str, state: State) -> Result<(), TreeError> {
        self.set_leaf(
            &format!("{object}/State"),
            &state.value().to_string(),
            Format::Int,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_targets_name_an_operation_of_an_object_directly_under_fumo() {
        assert_eq!(
            Operation::of_target("./FUMO/Firmware/DownloadAndUpdate"),
            Some(("./FUMO/Firmware".into(), Operation::DownloadAndUpdate))
        );
        assert_eq!(
            Operation::of_target("./FUMO/x/Update"),
            Some(("./FUMO/x".into(), Operation::Update))
        );
        for other in [
            "./FUMO/Firmware",
            "./FUMO/Firmware/State",
            "./FUMO/a/b/Download",
            "./FUMO//Download",
            "./Vendor/FUMO/x/Download",
        ] {
            assert_eq!(Operation::of_target(other), None, "{other}");
        }
    }

    #[test]
    fn states_and_result_codes_have_the_specification_values() {
        assert_eq!(State::Idle.value(), 10);
        assert_eq!(State::UpdateSuccessfulNoData.value(), 100);
        assert!(ResultCode::SUCCESSFUL.is_success());
        assert!(ResultCode(251).is_success());
        assert!(!ResultCode::CORRUPTED_PACKAGE.is_success());
        assert_eq!(
            ResultCode::SERVER_UNAVAILABLE.meaning(),
            "Alternate Download Server Unavailable"
        );
    }

    #[test]
    fn a_new_object_is_idle_with_every_node_fumo_names() {
        let mut tree = Tree::default();
        tree.install_fumo(OBJECT, Acl::parse("Get=*&Exec=dms&Replace=dms").unwrap())
            .unwrap();
        assert_eq!(tree.value("./FUMO/Firmware/State"), Some("10"));
        for node in [
            "PkgName",
            "PkgVersion",
            "Download/PkgURL",
            "DownloadAndUpdate/PkgURL",
            "Update",
            "Ext/SHA256",
        ] {
            assert!(tree.exists(&format!("{OBJECT}/{node}")), "{node}");
        }
    }
}
