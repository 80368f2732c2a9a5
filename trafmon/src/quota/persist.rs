//! The quota state and usage in the store.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rusqlite::{OptionalExtension as _, Transaction, params};
use trafmon_common::Counters;

use crate::{
    calendar::Resolution,
    quota::engine::State,
    store::{Entity, Store, StoreError},
};

/// Records quota events (their details) at `now` (Unix ms) in `tx`.
fn record_quota_events(tx: &Transaction<'_>, now: i64, details: &[String]) -> rusqlite::Result<()> {
    for detail in details {
        tx.execute(
            "INSERT INTO event (at_ms, kind, detail) VALUES (?1, 'quota', ?2)",
            params![now, detail],
        )?;
    }
    Ok(())
}

impl Store {
    /// The persisted state of every quota, by name. A version 1 store
    /// opened read-only has no quota table: no state.
    pub fn quota_states(&self) -> Result<BTreeMap<String, State>, StoreError> {
        let exists = self
            .conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'quota_state'",
                [],
                |_| Ok(()),
            )
            .optional()
            .map_err(|e| self.sql("read the quota state", e))?;
        if exists.is_none() {
            return Ok(BTreeMap::new());
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, period_start, warned, acted, enforced, hold_until FROM quota_state",
            )
            .map_err(|e| self.sql("read the quota state", e))?;
        stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                State {
                    period_start: r.get(1)?,
                    warned: r.get::<_, i64>(2)? != 0,
                    acted: r.get::<_, i64>(3)? != 0,
                    enforced: r.get::<_, i64>(4)? != 0,
                    hold_until: r.get(5)?,
                },
            ))
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.sql("read the quota state", e))
    }

    /// Saves the state of quota `name` and its events (their details), in
    /// one transaction: either both or neither survive a crash.
    pub fn save_quota_state(
        &self,
        name: &str,
        s: &State,
        events: &[String],
    ) -> Result<(), StoreError> {
        let err = |e| self.sql("save the quota state", e);
        let tx = self.conn.unchecked_transaction().map_err(err)?;
        let now = Timestamp::now().as_millisecond();
        tx.execute(
            "INSERT INTO quota_state (name, period_start, warned, acted, enforced, hold_until, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (name) DO UPDATE SET period_start = excluded.period_start,
               warned = excluded.warned, acted = excluded.acted, enforced = excluded.enforced,
               hold_until = excluded.hold_until, updated_ms = excluded.updated_ms",
            params![name, s.period_start, s.warned, s.acted, s.enforced, s.hold_until, now],
        )
        .map_err(err)?;
        record_quota_events(&tx, now, events).map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Forgets the state of the quotas `names` and records `events`
    /// (quota events' details), in one transaction.
    pub fn forget_quota_states(
        &self,
        names: &[String],
        events: &[String],
    ) -> Result<(), StoreError> {
        let err = |e| self.sql("forget the state of removed quotas", e);
        let tx = self.conn.unchecked_transaction().map_err(err)?;
        let now = Timestamp::now().as_millisecond();
        for name in names {
            tx.execute("DELETE FROM quota_state WHERE name = ?1", [name])
                .map_err(err)?;
        }
        record_quota_events(&tx, now, events).map_err(err)?;
        tx.commit().map_err(err)
    }

    /// The traffic of `entity` in the days that start in `from .. to`: a
    /// quota period always starts and ends on a local day.
    pub fn usage(&self, entity: &Entity, from: i64, to: i64) -> Result<Counters, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT COALESCE(SUM(t.rx_bytes), 0), COALESCE(SUM(t.rx_packets), 0),
                        COALESCE(SUM(t.tx_bytes), 0), COALESCE(SUM(t.tx_packets), 0)
                 FROM {} t JOIN entity e ON e.id = t.entity
                 WHERE e.kind = ?1 AND e.key = ?2 AND t.start >= ?3 AND t.start < ?4",
                Resolution::Day.view()
            ))
            .map_err(|e| self.sql("read quota usage", e))?;
        stmt.query_row(params![entity.kind.as_str(), entity.key, from, to], |r| {
            Ok(Counters {
                rx_bytes: r.get::<_, i64>(0)? as u64,
                rx_packets: r.get::<_, i64>(1)? as u64,
                tx_bytes: r.get::<_, i64>(2)? as u64,
                tx_packets: r.get::<_, i64>(3)? as u64,
            })
        })
        .map_err(|e| self.sql("read quota usage", e))
    }
}
