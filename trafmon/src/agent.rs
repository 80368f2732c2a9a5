//! The daemon: install (or take over) the programs, then print live totals
//! on wall-clock multiples of the interval until SIGINT or SIGTERM.

use std::{
    io::{self, Write},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    config::Config,
    counters::{CountersError, Maps},
    loader::{Installed, LoaderError},
    paths::PinDir,
    print,
};

/// Errors of the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Loading or attaching failed.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// Reading counters failed.
    #[error(transparent)]
    Counters(#[from] CountersError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] io::Error),
    /// Writing the printout failed.
    #[error("cannot write the totals")]
    Output(#[source] io::Error),
}

/// How long until the next multiple of `interval` since the epoch.
pub fn until_next_tick(now: SystemTime, interval: Duration) -> Duration {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    let step = interval.as_nanos().max(1);
    let next = (since / step + 1) * step;
    Duration::from_nanos(u64::try_from(next - since).unwrap_or(u64::MAX))
}

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), AgentError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
    let mut installed = Installed::install(&config)?;
    let maps = Maps::open(&PinDir::new(&config.pin_dir))?;
    let attached: Vec<String> = installed.attached().iter().map(|a| a.pin_name()).collect();
    tracing::info!(
        cgroup = %installed.cgroup().display(),
        attached = ?attached,
        pin_dir = %config.pin_dir.display(),
        "counting"
    );
    loop {
        let wait = until_next_tick(SystemTime::now(), config.interval.0);
        let stop = tokio::select! {
            () = tokio::time::sleep(wait) => false,
            _ = sigterm.recv() => true,
            _ = sigint.recv() => true,
        };
        let totals = maps.read_all()?;
        let mut out = io::stdout().lock();
        print::write_rows(&mut out, &print::rows(&totals))
            .and_then(|()| writeln!(out))
            .and_then(|()| out.flush())
            .map_err(AgentError::Output)?;
        if stop {
            tracing::info!("stopping; the pinned programs keep counting");
            return Ok(());
        }
        if let Err(e) = installed.sync_interfaces() {
            tracing::warn!(error = %crate::error_chain(&e), "cannot follow interfaces");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_fall_on_wall_clock_multiples() {
        let t = UNIX_EPOCH + Duration::from_millis(1_234_567);
        assert_eq!(until_next_tick(t, Duration::from_secs(10)), Duration::from_millis(5_433));
        let on = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(until_next_tick(on, Duration::from_secs(10)), Duration::from_secs(10));
        assert_eq!(
            until_next_tick(t, Duration::from_millis(100)),
            Duration::from_millis(33)
        );
    }
}
