//! The agent's side of quotas: on start, put the persisted enforcement back
//! into the maps; after every flush, step every quota with the usage in the
//! store, persist the new state with its events, update the maps, then log
//! and run the commands.
//!
//! The state is saved before the command runs: a crash in between loses
//! that one run of the command, never the event (it is in the event table
//! and the state), and a restart does not repeat it.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::{
    calendar::{Calendar, CalendarError},
    config::Config,
    counters::CountersError,
    paths::PinDir,
    quota::{
        alert::Notice,
        engine::{self, State},
        kernel::{self, Enforcer},
        period,
        spec::{Direction, Quota},
    },
    store::{Store, StoreError},
};

/// Errors of the quota engine.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The enforcement maps failed.
    #[error(transparent)]
    Maps(#[from] CountersError),
    /// A period could not be computed.
    #[error(transparent)]
    Calendar(#[from] CalendarError),
}

/// Bytes of `c` that count for `direction`.
pub fn counted(direction: Direction, c: &trafmon_common::Counters) -> u64 {
    match direction {
        Direction::Rx => c.rx_bytes,
        Direction::Tx => c.tx_bytes,
        Direction::Total => c.rx_bytes.wrapping_add(c.tx_bytes),
    }
}

/// Usage of `q` in its period that holds `now`: (bytes, period).
pub fn usage(
    store: &Store,
    cal: &Calendar,
    q: &Quota,
    now: Timestamp,
) -> Result<(u64, (i64, i64)), QuotaError> {
    let bounds = period::bounds(cal, q.period, now)?;
    let c = store.usage(&q.target.entity(), bounds.0, bounds.1)?;
    Ok((counted(q.direction, &c), bounds))
}

/// The quota engine of the agent.
pub struct Engine {
    config: Config,
    calendar: Calendar,
    states: BTreeMap<String, State>,
    enforcer: Enforcer,
}

impl Engine {
    /// Loads the persisted state and makes the maps enforce it, so that a
    /// restart changes nothing the kernel does.
    pub fn start(config: &Config, pins: &PinDir, store: &Store) -> Result<Self, QuotaError> {
        let mut engine = Self {
            config: config.clone(),
            calendar: config.calendar(),
            states: store.quota_states()?,
            enforcer: Enforcer::open(pins)?,
        };
        engine.sync()?;
        Ok(engine)
    }

    fn sync(&mut self) -> Result<(), QuotaError> {
        let wanted = kernel::wanted(&self.config, &self.states);
        self.enforcer.sync(&wanted)?;
        Ok(())
    }

    /// Steps every quota at `now` with the usage in `store`.
    pub fn step(&mut self, store: &Store, now: Timestamp) -> Result<(), QuotaError> {
        let mut notices = Vec::new();
        for q in &self.config.quotas {
            let (used, bounds) = usage(store, &self.calendar, q, now)?;
            let prev = self.states.get(&q.name).copied();
            let (state, events) = engine::step(q, prev, used, now.as_second(), bounds.0);
            if prev == Some(state) {
                continue;
            }
            let mine: Vec<Notice<'_>> = events
                .into_iter()
                .map(|event| Notice {
                    quota: q,
                    event,
                    used,
                    period: bounds,
                    hold_until: state.hold_until,
                })
                .collect();
            let rows: Vec<(String, String)> = mine
                .iter()
                .map(|n| ("quota".to_string(), n.summary()))
                .collect();
            store.save_quota_state(&q.name, &state, &rows)?;
            self.states.insert(q.name.clone(), state);
            notices.extend(mine);
        }
        // Every step, not only on a change: a failed sync is retried (a
        // sync with nothing to change costs nothing).
        let wanted = kernel::wanted(&self.config, &self.states);
        self.enforcer.sync(&wanted)?;
        for n in &notices {
            n.announce();
        }
        Ok(())
    }
}
