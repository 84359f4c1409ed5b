//! Running and stopping: a task that runs until told to stop, waiting for a condition
//! with a deadline, and the signal that stops a daemon.

use std::future::Future;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::WiringError;

/// A task that runs until told to stop.
pub struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Spawns `run`, handing it a future that resolves when [`Running::stop`] is called
    /// (or the `Running` dropped).
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(
        run: impl FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> F,
    ) -> Running {
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = Box::pin(async move {
            let _ = stopped.await;
        });
        Running {
            stop,
            task: tokio::spawn(run(stopped)),
        }
    }

    /// Tells the task to stop and waits until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Calls `probe` every 20 ms until it yields a value, for at most `patience`.
pub async fn poll<T, E, F, Fut>(what: &str, patience: Duration, mut probe: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
    E: From<WiringError>,
{
    let deadline = Instant::now() + patience;
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(WiringError::Timeout(what.to_owned(), patience).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}
