//! The daemon: open the store, install (or take over) the programs, finish
//! what the last run left undone, then flush on wall-clock multiples of the
//! interval until SIGINT or SIGTERM, and flush once more before exiting.
//! SIGHUP flushes and serves on with the configuration read anew
//! ([`crate::reload`]).

use std::{
    io::{self, Write},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jiff::Timestamp;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::{
    config::Config,
    counters::{CountersError, Maps},
    fault::Fault,
    flush::{Collector, FlushError},
    grace,
    link_events::LinkEvents,
    loader::{Installed, LoaderError},
    paths::PinDir,
    print,
    quota::run::{Engine, QuotaError},
    reload::{self, Source},
    store::{Store, StoreError},
};

/// Errors of the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Loading or attaching failed.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// Opening the maps failed.
    #[error(transparent)]
    Counters(#[from] CountersError),
    /// The store cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Recovery or the last flush failed.
    #[error(transparent)]
    Flush(#[from] FlushError),
    /// The maps could not be given their configured sizes.
    #[error(transparent)]
    Resize(#[from] crate::resize::ResizeError),
    /// The metrics endpoint cannot start.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::BindError),
    /// The quota state could not be restored.
    #[error(transparent)]
    Quota(#[from] QuotaError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] io::Error),
    /// Writing the printout failed.
    #[error("cannot write the totals")]
    Output(#[source] io::Error),
    /// Another agent runs on the same state directory, or the pid file
    /// cannot be written.
    #[error(transparent)]
    Lock(#[from] crate::exclusive::LockError),
    /// A malformed fault-injection variable.
    #[error("{0}")]
    Fault(String),
}

/// How the agent runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Print the stored totals after every flush.
    pub print: bool,
}

/// The next multiple of `interval` since the epoch after `now`, and how long
/// until then.
pub fn next_tick(now: SystemTime, interval: Duration) -> (Duration, Timestamp) {
    let since = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let step = interval.as_nanos().max(1);
    let next = (since / step + 1) * step;
    let wait = Duration::from_nanos(u64::try_from(next - since).unwrap_or(u64::MAX));
    let tick = Timestamp::from_nanosecond(i128::try_from(next).unwrap_or(i128::MAX))
        .unwrap_or(Timestamp::MAX);
    (wait, tick)
}

/// The signals the agent answers.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> Result<Self, AgentError> {
        let one = |kind| signal(kind).map_err(AgentError::Signals);
        Ok(Self {
            term: one(SignalKind::terminate())?,
            int: one(SignalKind::interrupt())?,
            hup: one(SignalKind::hangup())?,
        })
    }
}

/// Why [`serve`] ended.
enum Exit {
    /// SIGINT or SIGTERM: flushed, stop.
    Stop,
    /// SIGHUP with a good configuration: flushed, serve on with it.
    Reload(Box<Config>),
}

/// Runs the agent until SIGINT or SIGTERM; SIGHUP reads the configuration
/// from `source` again ([`crate::reload`]).
pub async fn run(source: Source, config: Config, options: Options) -> Result<(), AgentError> {
    // Installed first, so that a signal during the start is not lost.
    let mut signals = Signals::install()?;
    let fault = Fault::from_env().map_err(AgentError::Fault)?;
    // The store first: a store that cannot be used stops the agent before
    // it touches the kernel.
    let mut store = Store::open(&config.store_path())?;
    // One agent per state directory and per pin directory. Both stay
    // locked across reloads, which keep these places.
    let _pid = crate::pidfile::PidFile::create(&config.state_dir)?;
    let _pins = crate::loader::lock_pins(&PinDir::new(&config.pin_dir))?;
    let mut config = config;
    loop {
        match serve(&config, store, &source, &mut signals, fault, options).await? {
            (Exit::Stop, _) => return Ok(()),
            (Exit::Reload(new), kept) => {
                tracing::info!(config = %source.path.display(), "reloading the configuration");
                config = *new;
                store = kept;
            }
        }
    }
}

/// Installs the programs (or takes them over) for `config` and flushes
/// until a signal; hands the store back for a reload.
async fn serve(
    config: &Config,
    store: Store,
    source: &Source,
    signals: &mut Signals,
    fault: Option<Fault>,
    options: Options,
) -> Result<(Exit, Store), AgentError> {
    let pins = PinDir::new(&config.pin_dir);
    let maps_survived = pins.map(trafmon_common::SELECTOR).exists();
    let remade = crate::resize::missing(&pins);
    let mut installed = Installed::install(config)?;
    let mut collector = Collector::new(Maps::open(&pins)?, store, config, fault);
    collector.recover(maps_survived)?;
    crate::resize::record_remade(&remade, config, &collector)?;
    crate::resize::apply(config, &mut installed, &mut collector)?;
    let mut quotas = Engine::start(config, &pins, collector.store())?;
    let server = if config.metrics.enabled {
        let server = crate::metrics::bind(config).await?;
        Some(tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "the metrics endpoint stopped");
            }
        }))
    } else {
        None
    };
    let grace = grace::wait();
    if grace != grace::Grace::Membarrier {
        tracing::warn!("grace periods use {grace}");
    }
    let attached: Vec<String> = installed.attached().iter().map(|a| a.pin_name()).collect();
    tracing::info!(
        cgroup = %installed.cgroup().display(),
        attached = ?attached,
        tc = ?installed.tc_mode(),
        store = %config.store_path().display(),
        grace = %grace,
        metrics = %if config.metrics.enabled { config.metrics.listen.to_string() } else { "off".into() },
        "counting"
    );
    let mut events = match LinkEvents::subscribe() {
        Ok(events) => Some(events),
        Err(e) => {
            tracing::warn!(error = %e, "cannot follow interfaces as they change; checking them after every flush only");
            None
        }
    };
    let exit = loop {
        let (wait, tick) = next_tick(SystemTime::now(), config.interval.0);
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        let exit = loop {
            tokio::select! {
                () = &mut sleep => break None,
                _ = signals.term.recv() => break Some(Exit::Stop),
                _ = signals.int.recv() => break Some(Exit::Stop),
                _ = signals.hup.recv() => match reload::next(source, config) {
                    Ok(new) => break Some(Exit::Reload(Box::new(new))),
                    Err(e) => tracing::error!(
                        "reload refused; running on with the configuration as it was: {}",
                        crate::error_chain(&e)
                    ),
                },
                changed = link_changed(&mut events) => match changed {
                    Ok(()) => {
                        if let Err(e) = installed.sync_interfaces() {
                            tracing::warn!(error = %crate::error_chain(&e), "cannot follow interfaces");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "interface events stopped; checking interfaces after every flush only");
                        events = None;
                    }
                },
            }
        };
        let at = if exit.is_some() {
            Timestamp::now()
        } else {
            tick
        };
        let flushed = collector.flush(at);
        match &flushed {
            Ok(f) => tracing::debug!(
                seq = f.seq,
                entities = f.entities,
                us = f.duration_us,
                phases = ?f.phases,
                "flushed"
            ),
            Err(e) => tracing::warn!(
                error = %crate::error_chain(e),
                "flush failed; the counts are kept (in the kernel or in memory) and retried at the next flush"
            ),
        }
        let exit = match (exit, flushed) {
            (Some(Exit::Stop), Err(e)) => return Err(e.into()),
            // A reload starts from a finished flush, so that nothing is
            // left in this collector's memory.
            (Some(Exit::Reload(_)), Err(_)) => {
                tracing::error!(
                    "reload postponed: the flush before it failed; running on with the configuration as it was (send SIGHUP again)"
                );
                None
            }
            (exit, _) => exit,
        };
        match collector.fold(at) {
            Ok(Some(f)) => tracing::debug!(rows = f.rows, us = f.duration_us, "folded"),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                error = %crate::error_chain(&e),
                "fold failed; the rows stay where reports see them and are folded at the next flush"
            ),
        }
        if let Err(e) = quotas.step(collector.store(), at) {
            tracing::warn!(error = %crate::error_chain(&e), "quota step failed; retried after the next flush");
        }
        if options.print {
            print_totals(collector.store())?;
        }
        crate::memory::release_freed();
        if let Some(exit) = exit {
            break exit;
        }
        if let Err(e) = installed.sync_interfaces() {
            tracing::warn!(error = %crate::error_chain(&e), "cannot follow interfaces");
        }
    };
    if let Some(server) = server {
        // Awaited, so that its socket is closed before a reload binds anew.
        server.abort();
        let _ = server.await;
    }
    if matches!(exit, Exit::Stop) {
        tracing::info!("flushed and stopping; the pinned programs keep counting");
    }
    Ok((exit, collector.into_store()))
}

/// The next interface event, or never without a subscription.
async fn link_changed(events: &mut Option<LinkEvents>) -> io::Result<()> {
    match events {
        Some(events) => events.changed().await,
        None => std::future::pending().await,
    }
}

fn print_totals(store: &Store) -> Result<(), AgentError> {
    let totals = match store.totals() {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "cannot read totals to print");
            return Ok(());
        }
    };
    let mut out = io::stdout().lock();
    print::write_rows(&mut out, &print::rows(&totals))
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush())
        .map_err(AgentError::Output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_fall_on_wall_clock_multiples() {
        let t = UNIX_EPOCH + Duration::from_millis(1_234_567);
        let (wait, tick) = next_tick(t, Duration::from_secs(10));
        assert_eq!(wait, Duration::from_millis(5_433));
        assert_eq!(tick, Timestamp::from_second(1_240).unwrap());
        let on = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            next_tick(on, Duration::from_secs(10)).0,
            Duration::from_secs(10)
        );
        assert_eq!(
            next_tick(t, Duration::from_millis(100)).0,
            Duration::from_millis(33)
        );
    }
}
