//! Lifetime counters right now: the store's totals plus what the kernel
//! holds and the store does not, read consistently while the agent flushes.

use std::collections::BTreeMap;

use trafmon_common::Counters;

use crate::{
    counters::{CountersError, Maps, Totals},
    deltas::{Groups, deltas},
    store::{Entity, Store, StoreError},
};

/// Errors of a live read.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The maps failed.
    #[error(transparent)]
    Counters(#[from] CountersError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The agent flushed during every try.
    #[error("the agent flushed during every read; try again")]
    Busy,
}

/// Per entity: (label, lifetime counters).
pub type Lifetime = BTreeMap<Entity, (String, Counters)>;

/// Reads the lifetime counters. A flush that committed but has not cleared
/// its side yet has that side both in the store and in the kernel: the
/// side is skipped. The read is retried when a flush record changed
/// between its start and its end.
pub fn read(store: &Store, maps: &Maps, groups: &Groups) -> Result<Lifetime, LiveError> {
    for _ in 0..20 {
        let before = store.last_flush()?;
        let mut out = Lifetime::new();
        for t in store.totals()? {
            out.insert(t.entity, (t.label, t.counters));
        }
        let mut kernel = Totals::default();
        for side in 0..trafmon_common::SIDES {
            if before
                .as_ref()
                .is_some_and(|f| !f.cleared && f.side == side)
            {
                continue;
            }
            kernel.add(&maps.read_side(side)?);
        }
        if store.last_flush()? != before {
            continue;
        }
        for d in deltas(&kernel, groups) {
            let entry = out
                .entry(d.entity)
                .or_insert_with(|| (d.label, Counters::ZERO));
            entry.1.add(&d.counters);
        }
        return Ok(out);
    }
    Err(LiveError::Busy)
}
