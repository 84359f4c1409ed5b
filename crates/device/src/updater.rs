//! The agent's firmware worker: takes the FUMO jobs sessions accepted, runs them one
//! at a time (`firmware.rs` does each step), moves `<x>/State` and `./DevDetail/FwV`
//! along, and reports each result to the server that asked, in a session of its own,
//! until one carried it. Jobs live in the state directory, so a device restarted
//! mid-download resumes the download and one restarted before reporting reports.

use std::time::Duration;

use gwmo_session::Trigger;
use gwmo_tree::Tree;
use gwmo_tree::fumo::{Operation, ResultCode, State};
use tracing::{info, warn};

use crate::DeviceError;
use crate::agent::Agent;
use crate::backoff::Backoff;
use crate::firmware::{self, Ending, JOB_FILE, Job};

impl Agent {
    /// Takes a job a session's Exec asked for (its lock on the tree held): recorded
    /// before the session's answer leaves, its state shown in the tree.
    pub(crate) fn accept_firmware_job(&self, tree: &mut Tree, job: Job) -> Result<(), DeviceError> {
        let state = match job.operation {
            Operation::Update => State::UpdateProgressing,
            _ => State::DownloadProgressing,
        };
        tree.set_fumo_state(&job.object, state)?;
        info!(operation = ?job.operation, url = %job.descriptor.url, version = %job.descriptor.version, "firmware job accepted");
        self.change_jobs(|jobs| jobs.push(job))?;
        self.firmware_wake.notify_one();
        Ok(())
    }

    /// Changes the job list and stores it.
    fn change_jobs(&self, change: impl FnOnce(&mut Vec<Job>)) -> Result<(), DeviceError> {
        let mut jobs = self
            .firmware_jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut jobs);
        if jobs.is_empty() {
            self.state.remove_file(JOB_FILE)
        } else {
            self.state.save_record(JOB_FILE, &*jobs)
        }
    }

    fn jobs(&self) -> Vec<Job> {
        self.firmware_jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs jobs and reports their results, for ever ([`Agent::run`] runs it).
    pub async fn run_firmware_jobs(&self) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        loop {
            let jobs = self.jobs();
            if let Some(position) = jobs.iter().position(|job| job.result.is_none()) {
                let ending = self.perform(&jobs[position]).await;
                if let Err(error) = self.finish(position, ending).await {
                    warn!(%error, "a firmware job's end could not be stored");
                }
                continue;
            }
            if jobs.is_empty() {
                self.firmware_wake.notified().await;
                continue;
            }
            if self.report(&jobs).await {
                backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_wait()) => {}
                    _ = self.firmware_wake.notified() => {}
                }
            }
        }
    }

    /// Runs one job to its end.
    async fn perform(&self, job: &Job) -> Ending {
        let settings = &self.settings().firmware;
        let dir = self.settings().state_path();
        let idle = Duration::from_secs(self.settings().timeout_secs.max(1));
        if let Err(ending) = self.read_tree(|tree| firmware::precheck(job, tree)).await {
            return ending;
        }
        if job.operation.downloads() {
            if let Err(ending) = firmware::download(job, &dir, &self.client, settings, idle).await {
                return ending;
            }
            if job.operation == Operation::Download {
                return Ending {
                    result: ResultCode::SUCCESSFUL,
                    state: State::DownloadComplete,
                };
            }
            let object = job.object.clone();
            if let Err(error) = self
                .update_tree(|tree| tree.set_fumo_state(&object, State::UpdateProgressing))
                .await
            {
                warn!(%error, "the FUMO state could not be stored");
            }
        }
        match firmware::install(job, &dir, settings).await {
            Ok(()) => Ending {
                result: ResultCode::SUCCESSFUL,
                state: State::UpdateSuccessfulNoData,
            },
            Err(ending) => ending,
        }
    }

    /// Records how job `position` ended: in the tree (State, and FwV after an
    /// install), then in the job, to be reported.
    async fn finish(&self, position: usize, ending: Ending) -> Result<(), DeviceError> {
        let Some(job) = self.jobs().get(position).cloned() else {
            return Ok(());
        };
        let installed = ending.state == State::UpdateSuccessfulNoData;
        self.update_tree(|tree| {
            tree.set_fumo_state(&job.object, ending.state)?;
            if installed {
                firmware::record_version(tree, &job.descriptor.version)?;
            }
            Ok(())
        })
        .await?;
        let ResultCode(code) = ending.result;
        match ending.result.is_success() {
            true => {
                info!(operation = ?job.operation, version = %job.descriptor.version, result = code, "firmware job done")
            }
            false => {
                warn!(operation = ?job.operation, result = code, meaning = ending.result.meaning(), "firmware job failed: the firmware stays as it was")
            }
        }
        self.change_jobs(|jobs| {
            if let Some(stored) = jobs.get_mut(position) {
                stored.result = Some(ending.result);
            }
        })
    }

    /// Reports every ended job in one session with each server that asked; returns
    /// whether all were carried.
    async fn report(&self, jobs: &[Job]) -> bool {
        let mut servers: Vec<&str> = jobs
            .iter()
            .filter(|job| job.result.is_some())
            .map(|job| job.server_id.as_str())
            .collect();
        servers.sort_unstable();
        servers.dedup();
        let mut all = true;
        for server in servers {
            let reported: Vec<Job> = jobs
                .iter()
                .filter(|job| job.server_id == server && job.result.is_some())
                .cloned()
                .collect();
            let alerts = reported.iter().filter_map(Job::alert).collect();
            match self.session(server, Trigger::Client, None, alerts).await {
                Ok(_) => {
                    info!(
                        server,
                        results = reported.len(),
                        "firmware results reported"
                    );
                    if let Err(error) =
                        self.change_jobs(|jobs| jobs.retain(|job| !reported.contains(job)))
                    {
                        warn!(%error, "reported firmware jobs could not be forgotten");
                    }
                }
                Err(DeviceError::NoAccount(_)) => {
                    // The server is gone from the device: nobody to tell.
                    let _ = self.change_jobs(|jobs| jobs.retain(|job| !reported.contains(job)));
                }
                Err(error) => {
                    warn!(server, %error, "firmware results not reported yet");
                    all = false;
                }
            }
        }
        all
    }
}
