//! The gateway's image store. GwMO 1.0 lets a gateway keep software images for its
//! end devices; here, when a fan-out carries a FUMO update, the gateway fetches the
//! package once (resuming a cut download, verifying size and SHA-256 against the
//! descriptor the DM Server wrote), keeps it in its embedded server's artifact
//! directory, serves it to its end devices over its own TLS listener, and points the
//! command's PkgURL at that copy: a thousand devices behind a gateway cost one
//! download across the WAN. The store evicts the oldest images no update in flight
//! uses when a new one would not fit, and what it holds is written to the gateway's
//! tree (`./GwMO/ImageInventory`, for the DM Server to read). docs/FUMO.md says where
//! this departs from what GwMO publishes.

use std::time::Duration;

use gwmo_device::firmware::{Descriptor, fetch_verified};
use gwmo_device::settings::FirmwareSettings;
use gwmo_net::HttpClient;
use gwmo_server::{CommandSpec, EndDevices, NewImage, StoredImage};
use gwmo_tree::fumo::{self, Operation};
use gwmo_tree::{Format, Tree, TreeError};
use tracing::info;

/// Where the gateway lists the images it holds.
pub const IMAGE_INVENTORY: &str = "./GwMO/ImageInventory";

/// The FUMO update a fan-out's command carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub descriptor: Descriptor,
    /// The Exec's correlator, which each device's Generic Alert carries back.
    pub correlator: Option<String>,
}

/// The Replaces and the Exec of a command, through Atomic and Sequence.
fn flatten(spec: &CommandSpec) -> Vec<&CommandSpec> {
    match spec {
        CommandSpec::Atomic { commands } | CommandSpec::Sequence { commands } => {
            commands.iter().flat_map(flatten).collect()
        }
        other => vec![other],
    }
}

/// The FUMO package `spec` installs: a command that Replaces a PkgURL of a FUMO object
/// and Execs one of its download operations.
pub fn package_of(spec: &CommandSpec) -> Option<Package> {
    let members = flatten(spec);
    let (object, operation, correlator) = members.iter().find_map(|member| match member {
        CommandSpec::Exec {
            target, correlator, ..
        } => {
            let (object, operation) = Operation::of_target(target)?;
            operation
                .downloads()
                .then(|| (object, operation, correlator.clone()))
        }
        _ => None,
    })?;
    let replaced = |node: &str| {
        let target = format!("{object}/{node}");
        members.iter().find_map(|member| match member {
            CommandSpec::Replace {
                target: t, data, ..
            } if *t == target => Some(data.trim().to_owned()),
            _ => None,
        })
    };
    let url = replaced(&format!("{}/PkgURL", operation.node()))?;
    Some(Package {
        name: replaced("PkgName").unwrap_or_default(),
        correlator,
        descriptor: Descriptor {
            url,
            version: replaced("PkgVersion").unwrap_or_default(),
            sha256: replaced(fumo::EXT_SHA256)
                .unwrap_or_default()
                .to_ascii_lowercase(),
            size: replaced(fumo::EXT_SIZE).and_then(|size| size.parse().ok()),
            man: replaced(fumo::EXT_MAN).unwrap_or_default(),
            model: replaced(fumo::EXT_MOD).unwrap_or_default(),
        },
    })
}

/// `spec` with every FUMO PkgURL it Replaces pointed at `url`.
pub fn pointed_at(spec: &CommandSpec, url: &str) -> CommandSpec {
    match spec {
        CommandSpec::Atomic { commands } => CommandSpec::Atomic {
            commands: commands.iter().map(|c| pointed_at(c, url)).collect(),
        },
        CommandSpec::Sequence { commands } => CommandSpec::Sequence {
            commands: commands.iter().map(|c| pointed_at(c, url)).collect(),
        },
        CommandSpec::Replace {
            target,
            format,
            mime,
            ..
        } if target.starts_with(fumo::ROOT) && target.ends_with("/PkgURL") => {
            CommandSpec::Replace {
                target: target.clone(),
                data: url.to_owned(),
                format: format.clone(),
                mime: mime.clone(),
            }
        }
        other => other.clone(),
    }
}

/// The images a gateway holds for its end devices.
pub struct ImageStore {
    end_devices: EndDevices,
    client: HttpClient,
    /// The most the images may take together, in bytes.
    capacity: u64,
    fetching: FirmwareSettings,
    idle: Duration,
    /// One fetch at a time: two fan-outs of one package download it once.
    lock: tokio::sync::Mutex<()>,
}

impl ImageStore {
    pub fn new(
        end_devices: EndDevices,
        client: HttpClient,
        capacity_mib: u64,
        idle: Duration,
    ) -> ImageStore {
        ImageStore {
            end_devices,
            client,
            capacity: capacity_mib.saturating_mul(1 << 20),
            fetching: FirmwareSettings {
                max_package_mib: capacity_mib,
                ..FirmwareSettings::default()
            },
            idle,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The gateway's copy of `package`: the one it holds, or one fetched now, with the
    /// bytes fetched for it (0 for one held). The error says why there is none, for the
    /// fan-out's results.
    pub async fn local_copy(&self, package: &Package) -> Result<(StoredImage, u64), String> {
        let _one_at_a_time = self.lock.lock().await;
        let d = &package.descriptor;
        let held = self.end_devices.images().await.map_err(|e| e.to_string())?;
        if let Some(image) = held
            .iter()
            .find(|kept| kept.image.sha256 == d.sha256 && !d.sha256.is_empty())
        {
            return Ok((image.clone(), 0));
        }
        let size = d.size.ok_or("the update states no package size")?;
        if size > self.capacity {
            return Err(format!(
                "the package ({size} bytes) is larger than the gateway's image store"
            ));
        }
        let dir = self.end_devices.image_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("the image store cannot be written: {e}"))?;
        // Named by the digest: a gateway restarted mid-download resumes it.
        let partial = dir.join(format!(".fetch-{}", d.sha256));
        if let Err(code) =
            fetch_verified(&self.client, d, &partial, &self.fetching, self.idle).await
        {
            return Err(format!(
                "the gateway could not fetch the image: {} {}",
                code.0,
                code.meaning()
            ));
        }
        self.make_room(held, size as i64).await;
        let image = self
            .end_devices
            .add_image(
                NewImage {
                    name: package.name.clone(),
                    version: d.version.clone(),
                    man: d.man.clone(),
                    model: d.model.clone(),
                    sha256: d.sha256.clone(),
                    size: size as i64,
                },
                &partial,
            )
            .await
            .map_err(|e| e.to_string())?;
        info!(image = %image.id, version = %image.image.version, size, "firmware image fetched into the image store");
        Ok((image, size))
    }

    /// Removes the oldest images no update in flight uses until `size` more bytes fit.
    async fn make_room(&self, mut held: Vec<StoredImage>, size: i64) {
        let mut total: i64 = held.iter().map(|kept| kept.image.size).sum();
        held.sort_by_key(|image| image.created_at);
        for image in held {
            if total + size <= self.capacity as i64 {
                break;
            }
            if let Ok(true) = self.end_devices.remove_image(&image.id).await {
                info!(image = %image.id, version = %image.image.version, "image evicted from the image store");
                total -= image.image.size;
            }
        }
    }

    pub async fn images(&self) -> Vec<StoredImage> {
        self.end_devices.images().await.unwrap_or_default()
    }
}

/// Writes the image inventory: one node per image held, with its name, version,
/// digest, size and the URL end devices fetch it from.
pub fn write_inventory(tree: &mut Tree, images: &[StoredImage]) -> Result<(), TreeError> {
    if tree.exists(IMAGE_INVENTORY) {
        tree.remove(IMAGE_INVENTORY)?;
    }
    tree.ensure_interior(IMAGE_INVENTORY)?;
    for image in images {
        let node = format!("{IMAGE_INVENTORY}/{}", image.id);
        for (leaf, value) in [
            ("Name", image.image.name.as_str()),
            ("Version", &image.image.version),
            ("SHA256", &image.image.sha256),
            ("Size", &image.image.size.to_string()),
            ("URL", &image.url),
        ] {
            tree.set_leaf(&format!("{node}/{leaf}"), value, Format::Chr)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replace(node: &str, data: &str) -> CommandSpec {
        CommandSpec::Replace {
            target: format!("./FUMO/Firmware/{node}"),
            data: data.into(),
            format: Some("chr".into()),
            mime: None,
        }
    }

    fn update() -> CommandSpec {
        CommandSpec::Sequence {
            commands: vec![
                replace("PkgName", "fw"),
                replace("PkgVersion", "2.0"),
                replace("Ext/SHA256", "AB"),
                replace("Ext/Size", "10"),
                replace("DownloadAndUpdate/PkgURL", "https://dms/firmware/1"),
                CommandSpec::Exec {
                    target: "./FUMO/Firmware/DownloadAndUpdate".into(),
                    data: None,
                    correlator: Some("fw-1".into()),
                },
            ],
        }
    }

    #[test]
    fn a_fumo_update_names_its_package_and_is_pointed_at_the_gateways_copy() {
        let package = package_of(&update()).unwrap();
        assert_eq!(package.descriptor.url, "https://dms/firmware/1");
        assert_eq!(package.descriptor.sha256, "ab");
        assert_eq!(package.descriptor.size, Some(10));
        assert_eq!(package.correlator.as_deref(), Some("fw-1"));
        let local = pointed_at(&update(), "https://gateway/firmware/2");
        assert_eq!(
            package_of(&local).unwrap().descriptor.url,
            "https://gateway/firmware/2"
        );
    }

    #[test]
    fn other_commands_carry_no_package() {
        let get = CommandSpec::Get {
            target: "./DevInfo/Man".into(),
        };
        assert_eq!(package_of(&get), None);
        // An Update installs what is there: nothing to fetch.
        let install = CommandSpec::Exec {
            target: "./FUMO/Firmware/Update".into(),
            data: None,
            correlator: None,
        };
        assert_eq!(package_of(&install), None);
        assert_eq!(pointed_at(&get, "https://x"), get);
    }
}
