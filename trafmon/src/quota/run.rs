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

/// The quotas of `states` that `config` no longer has, by name, and the
/// event of each that was in force (its action, or for `alert` its being
/// over): removing a quota lifts what it did.
fn removed(config: &Config, states: &BTreeMap<String, State>) -> (Vec<String>, Vec<String>) {
    let gone: Vec<String> = states
        .keys()
        .filter(|name| !config.quotas.iter().any(|q| &q.name == *name))
        .cloned()
        .collect();
    let lifted = gone
        .iter()
        .filter(|name| states[*name].enforced)
        .map(|name| format!("quota {name}: lifted (no longer configured)"))
        .collect();
    (gone, lifted)
}

/// Drops from `states` and the store the quotas that `config` no longer
/// has. The kernel enforces configured quotas only, so the lift does not
/// wait for the store: a failure to forget (a full disk) is logged, and
/// the next start tries again.
fn forget_removed(config: &Config, states: &mut BTreeMap<String, State>, store: &Store) {
    let (gone, lifted) = removed(config, states);
    if gone.is_empty() {
        return;
    }
    if let Err(e) = store.forget_quota_states(&gone, &lifted) {
        tracing::warn!(error = %crate::error_chain(&e), "cannot forget the state of quotas no longer configured; tried again at the next start");
    }
    for name in &gone {
        states.remove(name);
    }
    for event in &lifted {
        tracing::warn!("{event}");
    }
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
    /// The state of a quota no longer configured is forgotten, and what it
    /// enforced is lifted with a logged and recorded event.
    pub fn start(config: &Config, pins: &PinDir, store: &Store) -> Result<Self, QuotaError> {
        let mut states = store.quota_states()?;
        forget_removed(config, &mut states, store);
        let mut engine = Self {
            config: config.clone(),
            calendar: config.calendar(),
            states,
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
            let rows: Vec<String> = mine.iter().map(Notice::summary).collect();
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

#[cfg(test)]
mod tests {
    use std::{fs, path::Path};

    use super::*;
    use crate::store::testing::tmp;

    #[test]
    fn a_removed_quota_is_forgotten_and_what_it_enforced_is_lifted() {
        let config = Config::parse(
            "[[quota]]\nname = \"kept\"\nuser = 1000\nlimit = \"1GiB\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let path = tmp("quota-removed");
        let store = Store::open(&path).unwrap();
        let on = State {
            enforced: true,
            ..State::default()
        };
        let warned = State {
            warned: true,
            ..State::default()
        };
        for (name, state) in [("kept", on), ("cut", on), ("warned", warned)] {
            store.save_quota_state(name, &state, &[]).unwrap();
        }
        let mut states = store.quota_states().unwrap();
        forget_removed(&config, &mut states, &store);

        assert_eq!(states.keys().collect::<Vec<_>>(), ["kept"]);
        let stored = store.quota_states().unwrap();
        assert_eq!(stored.keys().collect::<Vec<_>>(), ["kept"]);
        // Only the one in force is lifted; a removed quota that did
        // nothing leaves no event.
        let events: Vec<_> = store
            .events()
            .unwrap()
            .into_iter()
            .map(|(_, kind, detail)| (kind, detail))
            .collect();
        assert_eq!(
            events,
            [(
                "quota".to_string(),
                "quota cut: lifted (no longer configured)".to_string()
            )]
        );
        // Nothing left to forget at the next start.
        forget_removed(&config, &mut states, &store);
        assert_eq!(store.events().unwrap().len(), 1);
        drop(store);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
