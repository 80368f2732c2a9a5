//! Resizing the pinned hash maps when `[maps]` changes, without losing or
//! doubling a count.
//!
//! A pinned map keeps the size it was created with, and the kernel cannot
//! resize a map. So each side is replaced while it is idle and clear: its
//! pins are removed, the programs are loaded again (aya creates the missing
//! maps at the configured sizes and reuses every other pin) and given to
//! the pinned links in one step. A flush then makes the other side idle,
//! and it is replaced the same way. The old maps go with the old programs.
//!
//! Crash safety: a removed pin belongs to a map that is idle and clear, and
//! no flush runs until the new programs write the new maps, so a crash at
//! any point leaves nothing uncommitted in a map without a pin; the next
//! start simply goes on (a missing pin is created at the configured size).

use std::{fs, io, path::PathBuf};

use aya::maps::MapInfo;
use jiff::Timestamp;
use trafmon_common as common;

use crate::{
    config::{Config, MapSizes},
    counters::Maps,
    fault::Step,
    flush::{Collector, FlushError},
    loader::{Installed, LoaderError},
    paths::PinDir,
    store::StoreError,
};

/// Errors of a resize. None of them loses a count: the maps keep their
/// sizes and contents, or the replaced side was empty.
#[derive(Debug, thiserror::Error)]
pub enum ResizeError {
    /// A pinned map cannot be read.
    #[error("cannot read the size of pinned map {path}")]
    Info {
        /// The pin.
        path: PathBuf,
        /// Why.
        #[source]
        source: aya::maps::MapError,
    },
    /// A pin cannot be removed.
    #[error("cannot remove pin {path}")]
    Unpin {
        /// The pin.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reloading the programs failed.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// Reopening the maps failed.
    #[error(transparent)]
    Counters(#[from] crate::counters::CountersError),
    /// The flush that makes the other side idle failed.
    #[error(transparent)]
    Flush(#[from] FlushError),
    /// The event could not be recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A pinned map whose size is not the configured one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Misfit {
    /// The map's name.
    pub name: &'static str,
    /// Its side (0 for A, 1 for B).
    pub side: u32,
    /// Its size now.
    pub pinned: u32,
    /// The configured size.
    pub wanted: u32,
}

/// The maps whose size `[maps]` sets, side A then side B of each kind (so
/// a map's side is its index modulo 2).
pub const RESIZABLE: [&str; 6] = [
    common::UID_A,
    common::UID_B,
    common::IP_A,
    common::IP_B,
    common::IFACE_A,
    common::IFACE_B,
];

/// The configured size of the resizable map `name`.
pub fn configured(sizes: &MapSizes, name: &str) -> Option<u32> {
    match name {
        common::UID_A | common::UID_B => Some(sizes.uid_entries.0),
        common::IP_A | common::IP_B => Some(sizes.ip_entries.0),
        common::IFACE_A | common::IFACE_B => Some(sizes.iface_entries.0),
        _ => None,
    }
}

/// The pinned maps whose size differs from `sizes`.
pub fn misfits(pins: &PinDir, sizes: &MapSizes) -> Result<Vec<Misfit>, ResizeError> {
    let mut out = Vec::new();
    for (side, name) in (0..).map(|i: u32| i % 2).zip(RESIZABLE) {
        let wanted = configured(sizes, name).unwrap_or_default();
        let path = pins.map(name);
        let pinned = MapInfo::from_pin(&path)
            .map_err(|source| ResizeError::Info { path, source })?
            .max_entries();
        if pinned != wanted {
            out.push(Misfit {
                name,
                side,
                pinned,
                wanted,
            });
        }
    }
    Ok(out)
}

/// The resizable maps whose pin is missing while the others survived: a
/// resize was killed after it removed them (or they were removed by
/// hand). The next install makes them at the configured size.
pub fn missing(pins: &PinDir) -> Vec<&'static str> {
    if !pins.map(common::SELECTOR).exists() {
        return Vec::new();
    }
    RESIZABLE
        .into_iter()
        .filter(|name| !pins.map(name).exists())
        .collect()
}

/// Records the maps of [`missing`], made anew by the install, as resized:
/// each resize is recorded even when the one that began it was killed.
pub fn record_remade(
    names: &[&str],
    config: &Config,
    collector: &Collector,
) -> Result<(), ResizeError> {
    for name in names {
        let wanted = configured(&config.maps, name).unwrap_or_default();
        let detail =
            format!("{name} made at {wanted} entries: its pin was missing (an interrupted resize)");
        tracing::info!("{detail}");
        collector.store().record_event("maps-resized", &detail)?;
    }
    Ok(())
}

/// Gives every pinned hash map the configured size, one idle side at a
/// time (flushing once in between when the active side needs it). Runs at
/// start, after [`Collector::recover`], so that the idle side is clear.
pub fn apply(
    config: &Config,
    installed: &mut Installed,
    collector: &mut Collector,
) -> Result<(), ResizeError> {
    let pins = PinDir::new(&config.pin_dir);
    // At most: replace the idle side, flush, replace the other side.
    let mut unpins = 0;
    for _ in 0..3 {
        let misfits = misfits(&pins, &config.maps)?;
        if misfits.is_empty() {
            return Ok(());
        }
        let idle = 1 - collector.active_side()?;
        let (now, later): (Vec<_>, Vec<_>) = misfits.into_iter().partition(|m| m.side == idle);
        if now.is_empty() {
            // Only the side the programs write is off: make it idle.
            collector.flush(Timestamp::now())?;
            continue;
        }
        for m in &now {
            let path = pins.map(m.name);
            fs::remove_file(&path).map_err(|source| ResizeError::Unpin { path, source })?;
        }
        unpins += 1;
        if let Some(fault) = collector.injected() {
            fault.check(Step::Unpin, unpins);
        }
        // The new programs write the new maps (and the active side's old
        // ones) from the moment the links get them.
        *installed = Installed::install(config)?;
        collector.replace_maps(Maps::open(&pins)?);
        for m in &now {
            let detail = format!(
                "{} resized from {} to {} entries",
                m.name, m.pinned, m.wanted
            );
            tracing::info!("{detail}");
            collector.store().record_event("maps-resized", &detail)?;
        }
        if later.is_empty() {
            return Ok(());
        }
    }
    for m in misfits(&pins, &config.maps)? {
        tracing::warn!(
            map = m.name,
            entries = m.pinned,
            wanted = m.wanted,
            "map not resized"
        );
    }
    Ok(())
}
