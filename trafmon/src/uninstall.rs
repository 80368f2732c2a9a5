//! `trafmon uninstall`: detach every program, store what the maps counted
//! since the agent's last flush, then remove every pin.
//!
//! The programs count while no agent runs (that is what the pins are
//! for), so the maps hold the traffic since the last flush: seconds after
//! a clean stop, days after an agent stopped days ago. Removing their pins
//! would drop it. The links go first, so that nothing counts any more;
//! then the agent's own flush, with its grace period and its recovery of a
//! flush a crash left unfinished, once for each side, moves everything
//! into the store; then the maps go. A kill at any point loses nothing: until the
//! flush is recorded the counts stay in the pinned maps, which the next
//! agent or uninstall picks up, and the selector's pin is removed first,
//! so maps without it are known to be stored and clear.

use std::path::PathBuf;

use jiff::Timestamp;
use trafmon_common as common;

use crate::{
    config::Config,
    counters::{CountersError, Maps},
    exclusive::{self, LockError},
    fault::{Fault, Step},
    flush::{Collector, FlushError},
    layout::LayoutError,
    loader::{self, LoaderError},
    paths::PinDir,
    pidfile::PidFile,
    store::{Store, StoreError},
};

/// Errors of `trafmon uninstall`. Each one that stops it before the maps
/// are removed says how to go on.
#[derive(Debug, thiserror::Error)]
pub enum UninstallError {
    /// An agent runs, or a lock cannot be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Removing a pin failed.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// The maps were made by another version.
    #[error("cannot store the counts of the pinned maps")]
    Layout(#[source] LayoutError),
    /// Some maps lack their pins while the others are there.
    #[error(
        "cannot store the counts of the pinned maps: {} are missing (a start was interrupted); start the agent once, which stores them, or run `trafmon uninstall --discard`",
        missing.join(", ")
    )]
    Incomplete {
        /// The maps without a pin.
        missing: Vec<&'static str>,
    },
    /// The store cannot be opened; nothing was detached.
    #[error(
        "cannot store the counts of the pinned maps, so nothing was detached; fix the store, or run `trafmon uninstall --discard` to drop them"
    )]
    Store(#[source] StoreError),
    /// The maps cannot be opened; nothing was detached.
    #[error(
        "cannot read the pinned maps, so nothing was detached; run `trafmon uninstall --discard` to drop their counts"
    )]
    Maps(#[source] CountersError),
    /// A malformed fault-injection variable.
    #[error("{0}")]
    Fault(String),
    /// The last flush failed after the programs were detached.
    #[error(
        "detached the programs, but cannot store their last counts, which stay in the maps pinned under {}; run `trafmon uninstall` again once the cause is fixed, or start the agent",
        pins.display()
    )]
    Flush {
        /// The pin directory.
        pins: PathBuf,
        /// Why.
        #[source]
        source: Box<FlushError>,
    },
}

/// The kind of the event an uninstall records.
pub const EVENT: &str = "uninstalled";

/// What an uninstall did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uninstalled {
    /// How many pins were removed.
    pub pins: usize,
    /// The sequence number of the flush that stored the maps' counts, if
    /// there were maps to store.
    pub stored: Option<i64>,
}

/// Uninstalls what `config` installed; with `discard`, drops the maps'
/// counts instead of storing them.
pub fn run(config: &Config, discard: bool) -> Result<Uninstalled, UninstallError> {
    let fault = Fault::from_env().map_err(UninstallError::Fault)?;
    let pins = PinDir::new(&config.pin_dir);
    if discard || !pins.map(common::SELECTOR).exists() {
        // No selector: nothing pinned, or a reboot emptied bpffs, or an
        // uninstall stopped after its flush; nothing left to store.
        let removed = loader::uninstall(pins.root())?;
        return Ok(Uninstalled {
            pins: removed,
            stored: None,
        });
    }
    let _pins_lock = exclusive::lock_dir(pins.root())?;
    loader::check_layout(&pins).map_err(UninstallError::Layout)?;
    let missing = crate::resize::missing(&pins);
    if !missing.is_empty() {
        return Err(UninstallError::Incomplete { missing });
    }
    // The store's writer: no agent may run on this state directory.
    let _state_lock = PidFile::hold(&config.state_dir)?;
    let store = Store::open(&config.store_path()).map_err(UninstallError::Store)?;
    // Whether the store takes a write at all, before anything is detached:
    // on a full disk the flush below would fail once the programs are gone
    // (the counts stay in the maps, but counting would stop for nothing).
    store.probe_write().map_err(UninstallError::Store)?;
    let maps = Maps::open(&pins).map_err(UninstallError::Maps)?;

    let mut removed = loader::remove_pins(&pins.links())?;
    loader::detach_filters(pins.root())?;
    let crash_point = |step| {
        if let Some(f) = fault {
            f.check(step, 1);
        }
    };
    crash_point(Step::Detach);
    let flush_failed = |source| UninstallError::Flush {
        pins: pins.root().into(),
        source: Box::new(source),
    };
    let mut collector = Collector::new(maps, store, config, fault);
    collector.recover(true).map_err(flush_failed)?;
    // Two flushes, one per side: a flush drains the side the selector
    // names, and a run killed after its flip left the counts on the other.
    collector.flush(Timestamp::now()).map_err(flush_failed)?;
    let flushed = collector.flush(Timestamp::now()).map_err(flush_failed)?;
    // For `status`: why the counting stopped here.
    collector
        .store()
        .record_event(
            EVENT,
            &format!(
                "programs detached; their last counts stored by flush {}",
                flushed.seq
            ),
        )
        .map_err(|e| flush_failed(e.into()))?;
    // No fold here: `recover` folded the closed buckets, the flushes wrote
    // the open one, and readers see its rows in `recent` until the next
    // agent folds them.
    // The selector first: maps without it are known to be stored.
    loader::remove_pin(&pins.map(common::SELECTOR))?;
    crash_point(Step::Unpin);
    removed += 1 + loader::remove_pins(&pins.maps())?;
    loader::remove_dir(pins.root())?;
    Ok(Uninstalled {
        pins: removed,
        stored: Some(flushed.seq),
    })
}
