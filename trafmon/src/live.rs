//! Lifetime counters right now: the store's totals plus what the kernel
//! holds and the store does not, read consistently while the agent flushes.

use std::collections::{BTreeMap, HashMap};

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

/// Per entity: (label, lifetime counters). The label is empty where it is
/// the key itself (addresses): no second copy of each address ([`label`]).
pub type Lifetime = BTreeMap<Entity, (String, Counters)>;

/// The label of a [`Lifetime`] entry.
pub fn label<'a>(entity: &'a Entity, label: &'a str) -> &'a str {
    if label.is_empty() { &entity.key } else { label }
}

/// Reads the lifetime counters. A flush that committed but has not cleared
/// its side yet has that side both in the store and in the kernel: the
/// side is skipped. The read is retried when a flush record changed
/// between its start and its end.
pub fn read(store: &Store, maps: &Maps, groups: &Groups) -> Result<Lifetime, LiveError> {
    read_with(
        store,
        maps,
        groups,
        Lifetime::new,
        |out, entity, label, c| {
            let entry = out.entry(entity).or_insert_with(|| (label, Counters::ZERO));
            entry.1.add(&c);
        },
    )
}

/// [`read`] without collecting: `each` gets every entity once, with its
/// label (empty where it is the key, see [`Lifetime`]) and lifetime
/// counters, into a fresh `T` per try. The store's entities come one at a
/// time, so a reader of a million of them need not hold them all.
pub fn read_with<T>(
    store: &Store,
    maps: &Maps,
    groups: &Groups,
    mut fresh: impl FnMut() -> T,
    mut each: impl FnMut(&mut T, Entity, String, Counters),
) -> Result<T, LiveError> {
    let short = |entity: &Entity, label: String| {
        if label == entity.key {
            String::new()
        } else {
            label
        }
    };
    for _ in 0..20 {
        let before = store.last_flush()?;
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
        let mut unflushed: HashMap<Entity, (String, Counters)> = deltas(&kernel, groups)
            .into_iter()
            .map(|d| {
                let (entity, label, c) = d.into_parts();
                let label = short(&entity, label);
                (entity, (label, c))
            })
            .collect();
        drop(kernel);
        let mut out = fresh();
        store.each_total(|t| {
            let mut c = t.counters;
            if let Some((_, k)) = unflushed.remove(&t.entity) {
                c.add(&k);
            }
            let label = short(&t.entity, t.label);
            each(&mut out, t.entity, label, c);
        })?;
        if store.last_flush()? != before {
            continue;
        }
        for (entity, (label, c)) in unflushed {
            each(&mut out, entity, label, c);
        }
        return Ok(out);
    }
    Err(LiveError::Busy)
}
