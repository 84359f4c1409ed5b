//! The device's side of FUMO (docs/FUMO.md). An Exec of `<x>/Download`, `<x>/Update`
//! or `<x>/DownloadAndUpdate`, which the tree answered 202, becomes a job kept in the
//! state directory (so that a restart goes on with it): the package is downloaded
//! (each attempt resuming the one before with HTTP Range), checked against the
//! descriptor the server wrote under `<x>/Ext` (Man and Mod before anything is
//! fetched; then size and SHA-256), installed through the configured step, and
//! `<x>/State` follows. The result code waits in the job until a session with the
//! server that asked has carried it in a Generic Alert. A package that fails any check
//! is deleted and the firmware stays as it was.

use std::path::Path;
use std::time::Duration;

use gwmo_net::{HttpClient, NetError};
use gwmo_proto::{Alert, Data, Item, Location, Meta, codes};
use gwmo_tree::fumo::{self, Operation, ResultCode, State};
use gwmo_tree::{ExecRequest, Format, Tree};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::settings::{DeviceSettings, FirmwareSettings};

/// The job's record in the state directory.
pub const JOB_FILE: &str = "firmware-job.json";
/// A package being downloaded.
const PARTIAL_FILE: &str = "firmware.part";
/// A package downloaded and verified, waiting for an Update.
const PACKAGE_FILE: &str = "firmware.pkg";

/// One firmware operation a server asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The server to report to.
    pub server_id: String,
    /// The FUMO object, `./FUMO/<x>`.
    pub object: String,
    pub operation: Operation,
    pub correlator: Option<String>,
    /// What the server wrote before its Exec.
    pub descriptor: Descriptor,
    /// Set once the job ended: the FUMO result code to report.
    pub result: Option<ResultCode>,
}

/// The package as the server described it in the FUMO object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    pub url: String,
    pub version: String,
    pub sha256: String,
    pub size: Option<u64>,
    pub man: String,
    pub model: String,
}

impl Job {
    /// The job an accepted Exec asks for, read from the tree it ran against; none if
    /// the Exec is not of a FUMO operation.
    pub fn of_exec(tree: &Tree, request: &ExecRequest) -> Option<Job> {
        let (object, operation) = Operation::of_target(&request.uri)?;
        let leaf = |node: &str| {
            tree.value(&format!("{object}/{node}"))
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let url = match operation {
            Operation::Update => String::new(),
            _ => leaf(&format!("{}/PkgURL", operation.node())),
        };
        Some(Job {
            server_id: request.server_id.clone(),
            object: object.clone(),
            operation,
            correlator: request.correlator.clone(),
            descriptor: Descriptor {
                url,
                version: leaf("PkgVersion"),
                sha256: leaf(fumo::EXT_SHA256).to_ascii_lowercase(),
                size: leaf(fumo::EXT_SIZE).parse().ok(),
                man: leaf(fumo::EXT_MAN),
                model: leaf(fumo::EXT_MOD),
            },
            result: None,
        })
    }

    /// The Generic Alert that reports the job's result (FUMO 1.0 §10.2.1).
    pub fn alert(&self) -> Option<Alert> {
        let ResultCode(code) = self.result?;
        Some(Alert {
            cmd_id: 0,
            code: codes::alert::GENERIC_ALERT,
            correlator: self.correlator.clone(),
            items: vec![Item {
                source: Some(Location::new(format!(
                    "{}/{}",
                    self.object,
                    self.operation.node()
                ))),
                meta: Some(Box::new(Meta {
                    r#type: Some(self.operation.alert_type().into()),
                    format: Some("int".into()),
                    ..Meta::default()
                })),
                data: Some(Data::Text(code.to_string())),
                ..Item::default()
            }],
        })
    }
}

/// Where a job stopped, in FUMO's terms: the result code and the state it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    pub result: ResultCode,
    pub state: State,
}

fn failed_download(result: ResultCode) -> Ending {
    Ending {
        result,
        state: State::DownloadFailed,
    }
}

/// Checks what can be checked before fetching anything: the package is for this
/// device, and its URL is one this device can fetch.
pub fn precheck(job: &Job, tree: &Tree) -> Result<(), Ending> {
    let own = |leaf: &str| tree.value(&format!("./DevInfo/{leaf}")).unwrap_or_default();
    let d = &job.descriptor;
    if (!d.man.is_empty() && d.man != own("Man")) || (!d.model.is_empty() && d.model != own("Mod"))
    {
        return Err(failed_download(ResultCode::DEVICE_MISMATCH));
    }
    if job.operation.downloads() && !(d.url.starts_with("https://") || d.url.starts_with("http://"))
    {
        return Err(failed_download(ResultCode::BAD_URL));
    }
    Ok(())
}

/// What a failed fetch means as a FUMO result.
fn fetch_failure(error: &NetError) -> ResultCode {
    match error {
        NetError::Url(..) | NetError::PlainHttp(_) => ResultCode::BAD_URL,
        NetError::Timeout(..) => ResultCode::DOWNLOAD_TIMEOUT,
        NetError::Status(_, 401 | 403) => ResultCode(406),
        NetError::Status(..) => ResultCode::SERVER_ERROR,
        NetError::TooLarge(..) => ResultCode::DOWNLOAD_OUT_OF_MEMORY,
        NetError::File(..) => ResultCode::CLIENT_ERROR,
        NetError::Tls(..) => ResultCode(406),
        NetError::Request(..) => ResultCode::SERVER_UNAVAILABLE,
    }
}

/// Downloads the job's package into the state directory (resuming what an earlier
/// attempt left) and verifies it; `Ok` leaves it as the package to install.
pub async fn download(
    job: &Job,
    dir: &Path,
    client: &HttpClient,
    settings: &FirmwareSettings,
    idle: Duration,
) -> Result<(), Ending> {
    if settings.streaming {
        return fetch_streamed(client, &job.descriptor, settings, idle)
            .await
            .map_err(failed_download);
    }
    let partial = dir.join(PARTIAL_FILE);
    fetch_verified(client, &job.descriptor, &partial, settings, idle)
        .await
        .map_err(failed_download)?;
    std::fs::rename(&partial, dir.join(PACKAGE_FILE))
        .map_err(|_| failed_download(ResultCode::CLIENT_ERROR))
}

/// Fetches the package `descriptor` names and checks its size and digest as it
/// arrives, keeping none of it (`[firmware] streaming`); each failed attempt starts
/// over. The error is the FUMO result code.
async fn fetch_streamed(
    client: &HttpClient,
    descriptor: &Descriptor,
    settings: &FirmwareSettings,
    idle: Duration,
) -> Result<(), ResultCode> {
    let max_len = package_limit(descriptor, settings)?;
    let (length, digest) = with_retries(settings, &descriptor.url, || async {
        let mut hasher = Sha256::new();
        let length = client
            .fetch_streamed(&descriptor.url, max_len, idle, |piece| hasher.update(piece))
            .await?;
        Ok((length, hex(hasher)))
    })
    .await
    .map_err(|error| failure_of(error, descriptor))?;
    check(length, &digest, descriptor)
}

/// Fetches the package `descriptor` names into `partial`, each attempt (up to
/// `download_attempts`) resuming the one before, and verifies it against the
/// descriptor. A package that fails is deleted; the error is its FUMO result code.
pub async fn fetch_verified(
    client: &HttpClient,
    descriptor: &Descriptor,
    partial: &Path,
    settings: &FirmwareSettings,
    idle: Duration,
) -> Result<(), ResultCode> {
    let max_len = package_limit(descriptor, settings)?;
    let fetched = with_retries(settings, &descriptor.url, || {
        client.fetch_to(&descriptor.url, partial, max_len, idle)
    })
    .await
    .map_err(|error| {
        let _ = std::fs::remove_file(partial);
        failure_of(error, descriptor)
    })?;
    if fetched.resumed_from > 0 {
        info!(from = fetched.resumed_from, "firmware download resumed");
    }
    let verdict = verify(partial, descriptor).await;
    if verdict.is_err() {
        let _ = std::fs::remove_file(partial);
    }
    verdict
}

/// The package against its descriptor: a short one is corrupted (402), one with
/// another digest fails validation (404).
async fn verify(path: &Path, descriptor: &Descriptor) -> Result<(), ResultCode> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|_| ResultCode::CLIENT_ERROR)?;
    let mut hasher = Sha256::new();
    let mut length = 0u64;
    let mut buffer = vec![0; 256 * 1024];
    loop {
        let read = file
            .read(&mut buffer)
            .await
            .map_err(|_| ResultCode::CLIENT_ERROR)?;
        if read == 0 {
            break;
        }
        length += read as u64;
        hasher.update(&buffer[..read]);
    }
    check(length, &hex(hasher), descriptor)
}

/// A package of `length` bytes and digest `digest` against its descriptor.
fn check(length: u64, digest: &str, descriptor: &Descriptor) -> Result<(), ResultCode> {
    if descriptor.size.is_some_and(|size| size != length) {
        return Err(ResultCode::CORRUPTED_PACKAGE);
    }
    if descriptor.sha256.is_empty() || digest != descriptor.sha256 {
        return Err(ResultCode::VALIDATION_FAILED);
    }
    Ok(())
}

fn hex(hasher: Sha256) -> String {
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The most bytes to take of the package: one past its stated size is enough to know
/// it is not the package; `Err` when the stated size is more than the device takes.
fn package_limit(descriptor: &Descriptor, settings: &FirmwareSettings) -> Result<u64, ResultCode> {
    let limit = settings.max_package_mib.saturating_mul(1 << 20);
    match descriptor.size {
        Some(size) if size > limit => Err(ResultCode::DOWNLOAD_OUT_OF_MEMORY),
        Some(size) => Ok(size + 1),
        None => Ok(limit),
    }
}

/// Runs `attempt` until it succeeds, or fails for good: anything but a connection
/// that failed or stalled, or `download_attempts` failures. A pause that grows
/// (`Backoff`) separates the attempts.
async fn with_retries<T, F, Fut>(
    settings: &FirmwareSettings,
    url: &str,
    mut attempt: F,
) -> Result<T, NetError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, NetError>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    let mut tried = 0;
    loop {
        tried += 1;
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let retry = matches!(error, NetError::Request(..) | NetError::Timeout(..))
            && tried < settings.download_attempts.max(1);
        warn!(%url, attempt = tried, %error, retry, "firmware download failed");
        if !retry {
            return Err(error);
        }
        tokio::time::sleep(backoff.next_wait()).await;
    }
}

/// The FUMO result code of a download that failed for good.
fn failure_of(error: NetError, descriptor: &Descriptor) -> ResultCode {
    match error {
        NetError::TooLarge(..) if descriptor.size.is_some() => ResultCode::CORRUPTED_PACKAGE,
        other => fetch_failure(&other),
    }
}

/// Installs the verified package through the configured step; the package is gone
/// afterwards, whatever the outcome. (A streamed package went where it goes as it
/// arrived: only the simulated step is left.)
pub async fn install(job: &Job, dir: &Path, settings: &FirmwareSettings) -> Result<(), Ending> {
    let package = dir.join(PACKAGE_FILE);
    if !settings.streaming && !package.exists() {
        // An Update with nothing downloaded before.
        return Err(Ending {
            result: ResultCode::NOT_ACCEPTABLE,
            state: State::UpdateFailedNoData,
        });
    }
    let installed = match &settings.install_command {
        Some(command) if !settings.streaming => {
            let status = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .env("GWMO_FIRMWARE_IMAGE", &package)
                .env("GWMO_FIRMWARE_VERSION", &job.descriptor.version)
                .status()
                .await;
            match status {
                Ok(status) => status.success(),
                Err(error) => {
                    warn!(%error, "the firmware install command could not run");
                    false
                }
            }
        }
        _ => {
            tokio::time::sleep(Duration::from_millis(settings.simulated_install_ms)).await;
            !settings.simulated_install_fails
        }
    };
    let _ = std::fs::remove_file(&package);
    match installed {
        true => Ok(()),
        false => Err(Ending {
            result: ResultCode::UPDATE_FAILED,
            state: State::UpdateFailedNoData,
        }),
    }
}

/// Creates the FUMO object of a device that has none (a new one, or a tree from
/// before gwmo had firmware updates): its factory servers may update it. Returns
/// whether it did.
pub fn ensure_object(
    tree: &mut Tree,
    settings: &DeviceSettings,
) -> Result<bool, gwmo_tree::TreeError> {
    if tree.exists(fumo::OBJECT) {
        return Ok(false);
    }
    let servers: Vec<&str> = settings
        .accounts
        .iter()
        .map(|a| a.server_id.as_str())
        .collect();
    let acl = match servers.is_empty() {
        true => "Get=*".to_owned(),
        false => {
            let servers = servers.join("+");
            format!("Get=*&Replace={servers}&Exec={servers}")
        }
    };
    tree.install_fumo(fumo::OBJECT, gwmo_tree::Acl::parse(&acl)?)?;
    Ok(true)
}

/// Records a new firmware version in `./DevDetail/FwV`.
pub fn record_version(tree: &mut Tree, version: &str) -> Result<(), gwmo_tree::TreeError> {
    tree.set_leaf("./DevDetail/FwV", version, Format::Chr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(man: &str, url: &str) -> Job {
        Job {
            server_id: "dms".into(),
            object: fumo::OBJECT.into(),
            operation: Operation::DownloadAndUpdate,
            correlator: Some("fw-1".into()),
            descriptor: Descriptor {
                url: url.into(),
                version: "2.0".into(),
                sha256: String::new(),
                size: Some(3),
                man: man.into(),
                model: String::new(),
            },
            result: None,
        }
    }

    fn device_tree() -> Tree {
        Tree::new_device(&gwmo_tree::DeviceInfo {
            manufacturer: "gwmo".into(),
            ..gwmo_tree::DeviceInfo::default()
        })
    }

    #[test]
    fn a_package_for_another_maker_or_a_bad_url_fails_before_any_download() {
        let tree = device_tree();
        assert_eq!(precheck(&job("gwmo", "https://x/p"), &tree), Ok(()));
        assert_eq!(
            precheck(&job("other", "https://x/p"), &tree).map_err(|e| e.result),
            Err(ResultCode::DEVICE_MISMATCH)
        );
        assert_eq!(
            precheck(&job("gwmo", "ftp://x/p"), &tree).map_err(|e| e.result),
            Err(ResultCode::BAD_URL)
        );
    }

    #[test]
    fn the_report_is_a_generic_alert_with_the_correlator_and_the_code() {
        let mut done = job("gwmo", "https://x/p");
        assert_eq!(done.alert(), None, "nothing to report before the end");
        done.result = Some(ResultCode::CORRUPTED_PACKAGE);
        let alert = done.alert().unwrap();
        assert_eq!(alert.code, 1226);
        assert_eq!(alert.correlator.as_deref(), Some("fw-1"));
        let item = &alert.items[0];
        assert_eq!(
            item.source.as_ref().unwrap().uri,
            "./FUMO/Firmware/DownloadAndUpdate"
        );
        assert_eq!(
            item.meta.as_ref().unwrap().r#type.as_deref(),
            Some(codes::alert_type::FUMO_DOWNLOAD_AND_UPDATE)
        );
        assert_eq!(item.data.as_ref().unwrap().as_text(), Some("402"));
    }

    #[tokio::test]
    async fn a_short_package_is_corrupted_and_one_with_another_digest_fails_validation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, b"abc").unwrap();
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let described = |size, sha256: &str| Descriptor {
            size: Some(size),
            sha256: sha256.into(),
            ..Descriptor::default()
        };
        assert_eq!(verify(&path, &described(3, sha)).await, Ok(()));
        assert_eq!(
            verify(&path, &described(4, sha)).await,
            Err(ResultCode::CORRUPTED_PACKAGE)
        );
        assert_eq!(
            verify(&path, &described(3, &"0".repeat(64))).await,
            Err(ResultCode::VALIDATION_FAILED)
        );
    }
}
