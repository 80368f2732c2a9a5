//! The lossless flush (Android netd's scheme): flip the selector, wait for
//! an RCU grace period, drain the now idle side, commit its deltas with a
//! flush record in one transaction, clear the idle side, record the clear.
//!
//! Invariant: a side is only cleared after exactly its content was
//! committed, and the selector is never flipped while a commit or a clear
//! is outstanding. So a crash at any point neither loses nor doubles a
//! byte: uncommitted counts stay in the kernel until a later flush commits
//! them; committed-but-uncleared counts are cleared without reading on
//! start ([`Collector::recover`]).

use std::time::Instant;

use jiff::Timestamp;
use trafmon_common::{Counters, IpKey, KINDS};

use crate::{
    calendar::{Calendar, Resolution},
    config::{Config, Retention},
    counters::{CountersError, Drained, Maps},
    deltas::{self, Groups},
    fault::{Fault, Step},
    grace::{self, Grace},
    store::{FlushCommit, FlushRecord, Store, StoreError},
};

/// Errors of a flush. Counts are never lost by one: they stay in the kernel
/// or in memory and the next flush retries.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// Reading or writing the maps failed.
    #[error(transparent)]
    Counters(#[from] CountersError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Work left over from a flush that could not finish.
#[derive(Debug)]
enum Outstanding {
    /// Drained but not committed (the store failed): commit these. `keys`
    /// are the addresses the side holds ([`Outstanding::Clear`]).
    Commit {
        commit: FlushCommit,
        keys: Vec<IpKey>,
    },
    /// Committed but not cleared or not recorded as cleared; `keys` are
    /// the addresses the side holds, in the order the drain's walk read
    /// them (none when recovering): the clear deletes them in that order.
    Clear {
        seq: i64,
        side: u32,
        keys: Vec<IpKey>,
    },
}

/// What a finished flush did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flushed {
    /// Its sequence number.
    pub seq: i64,
    /// Entities with traffic.
    pub entities: usize,
    /// How the grace period was waited for.
    pub grace: Grace,
    /// Flip to recorded clear.
    pub duration_us: i64,
    /// Where that time went.
    pub phases: Phases,
}

/// What a fold of closed 5-minute buckets did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Folded {
    /// Rows moved out of `recent`.
    pub rows: usize,
    /// How long it took.
    pub duration_us: i64,
}

/// Microseconds spent in each step of a flush.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phases {
    /// Flipping the selector and waiting for the grace period.
    pub flip_us: i64,
    /// Reading the idle side and turning it into deltas.
    pub drain_us: i64,
    /// The store transaction.
    pub commit_us: i64,
    /// Emptying the idle side and recording that.
    pub clear_us: i64,
}

fn us_since(t: Instant) -> i64 {
    i64::try_from(t.elapsed().as_micros()).unwrap_or(i64::MAX)
}

/// Owns the maps and the store for the agent.
pub struct Collector {
    maps: Maps,
    store: Store,
    calendar: Calendar,
    groups: Groups,
    retention: Retention,
    outstanding: Option<Outstanding>,
    fault: Option<Fault>,
    flushes: u32,
    last_prune: Option<i64>,
    phases: Phases,
    map_fill: crate::map_fill::Watch,
}

impl Collector {
    /// A collector over opened maps and store.
    pub fn new(maps: Maps, store: Store, config: &Config, fault: Option<Fault>) -> Self {
        Self {
            maps,
            store,
            calendar: config.calendar(),
            groups: config.groups.clone(),
            retention: config.retention.clone(),
            outstanding: None,
            fault,
            flushes: 0,
            last_prune: None,
            phases: Phases::default(),
            map_fill: crate::map_fill::Watch::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, for a collector to come (a reload).
    pub fn into_store(self) -> Store {
        self.store
    }

    /// The side the programs write now.
    pub fn active_side(&self) -> Result<u32, FlushError> {
        Ok(self.maps.active_side()?)
    }

    /// Goes on with `maps`, opened anew after some were recreated
    /// ([`crate::resize`]).
    pub fn replace_maps(&mut self, maps: Maps) {
        self.maps = maps;
    }

    /// Finishes what the last flush record says was left undone, before
    /// anything else, then folds the buckets that closed meanwhile.
    /// `maps_survived` is false when the pinned maps had to be recreated
    /// (a reboot): their old content is gone, nothing to clear.
    pub fn recover(&mut self, maps_survived: bool) -> Result<(), FlushError> {
        self.finish_last_flush(maps_survived)?;
        // Buckets that closed while the agent was away. A fold that fails
        // here leaves the rows where readers see them; the agent folds
        // after its next flush.
        if let Err(e) = self.fold(Timestamp::now()) {
            tracing::warn!(error = %crate::error_chain(&e), "cannot fold recent traffic yet");
        }
        Ok(())
    }

    /// What the last flush record says is left undone ([`Self::recover`]).
    fn finish_last_flush(&mut self, maps_survived: bool) -> Result<(), FlushError> {
        let Some(last) = self.store.last_flush()? else {
            return Ok(());
        };
        if !maps_survived && self.uninstalled_since(&last)? {
            // `trafmon uninstall` stored everything and removed the maps
            // on purpose: nothing was lost, so nothing to warn about.
            tracing::info!(
                "installing again after `trafmon uninstall` (it stored flush {})",
                last.seq
            );
            return Ok(());
        }
        if !maps_survived {
            let detail = format!(
                "pinned maps were missing and have been recreated; traffic after flush {} (at {}) and before this start was not counted",
                last.seq,
                Timestamp::from_millisecond(last.at_ms)
                    .map_or_else(|_| format!("{} ms", last.at_ms), |t| t.to_string())
            );
            tracing::warn!("{detail}");
            self.store.record_event("maps-recreated", &detail)?;
            if !last.cleared {
                self.store.mark_cleared(last.seq, None)?;
            }
            return Ok(());
        }
        if !last.cleared {
            tracing::info!(
                seq = last.seq,
                side = last.side,
                "recovering: flush was committed but its side not cleared; clearing it without reading"
            );
            self.store.record_event(
                "recovered",
                &format!(
                    "flush {} committed, side {} cleared on start",
                    last.seq, last.side
                ),
            )?;
            self.outstanding = Some(Outstanding::Clear {
                seq: last.seq,
                side: last.side,
                keys: Vec::new(),
            });
            self.finish_outstanding(Instant::now())?;
        }
        Ok(())
    }

    /// Whether the newest event is an uninstall after the flush `last`:
    /// then it was the uninstall's own flush, and the maps are gone
    /// because it removed them.
    fn uninstalled_since(&self, last: &FlushRecord) -> Result<bool, FlushError> {
        Ok(self
            .store
            .last_event()?
            .is_some_and(|(at_ms, kind)| kind == crate::uninstall::EVENT && at_ms >= last.at_ms))
    }

    /// Folds the unfolded rows of every 5-minute bucket that closed before
    /// `now` into the bucket tables ([`Store::fold`]); `None` when there
    /// was nothing to fold. Runs after a flush, outside its flip-to-clear
    /// window, and once per 5 minutes in the normal course; a failed fold
    /// leaves the rows where readers still see them, for the next try.
    pub fn fold(&mut self, now: Timestamp) -> Result<Option<Folded>, FlushError> {
        let open = self
            .calendar
            .bucket(Resolution::FiveMin, now)
            .map_err(StoreError::from)?;
        match self.store.oldest_unfolded()? {
            Some(oldest) if oldest < open => {
                let t = Instant::now();
                let rows = self.store.fold(open)?;
                Ok(Some(Folded {
                    rows,
                    duration_us: us_since(t),
                }))
            }
            _ => Ok(None),
        }
    }

    /// The fault to inject, if the crash tests asked for one.
    pub fn injected(&self) -> Option<Fault> {
        self.fault
    }

    fn fault(&self, step: Step) {
        if let Some(f) = &self.fault {
            f.check(step, self.flushes);
        }
    }

    /// Commits and clears whatever an earlier flush left undone. On error
    /// the work stays outstanding.
    fn finish_outstanding(&mut self, started: Instant) -> Result<(), FlushError> {
        // Each step puts `outstanding` back as it was when it fails.
        loop {
            match self.outstanding.take() {
                None => return Ok(()),
                Some(Outstanding::Commit { commit, keys }) => {
                    let t = Instant::now();
                    if let Err(e) = self.store.commit(&commit, &self.calendar) {
                        self.outstanding = Some(Outstanding::Commit { commit, keys });
                        return Err(e.into());
                    }
                    self.phases.commit_us = us_since(t);
                    // The deltas are stored: their memory goes before the
                    // clear.
                    self.outstanding = Some(Outstanding::Clear {
                        seq: commit.seq,
                        side: commit.side,
                        keys,
                    });
                    self.fault(Step::Commit);
                }
                Some(Outstanding::Clear { seq, side, keys }) => {
                    let t = Instant::now();
                    if let Err(e) = self.maps.clear_side(side, keys.iter().copied()) {
                        self.outstanding = Some(Outstanding::Clear { seq, side, keys });
                        return Err(e.into());
                    }
                    self.fault(Step::Clear);
                    if let Err(e) = self.store.mark_cleared(seq, Some(us_since(started))) {
                        // The side is empty now: a retry's walk finds
                        // nothing, no addresses needed.
                        self.outstanding = Some(Outstanding::Clear {
                            seq,
                            side,
                            keys: Vec::new(),
                        });
                        return Err(e.into());
                    }
                    self.phases.clear_us = us_since(t);
                    self.fault(Step::Recorded);
                }
            }
        }
    }

    /// One flush for the traffic up to `at` (the tick it runs for).
    pub fn flush(&mut self, at: Timestamp) -> Result<Flushed, FlushError> {
        let started = Instant::now();
        self.flushes += 1;
        if self.outstanding.is_some() {
            self.finish_outstanding(started)?;
            tracing::info!("the outstanding flush is now stored");
        }
        self.phases = Phases::default();
        let drained = self.maps.active_side()?;
        self.maps.set_active_side(1 - drained)?;
        self.fault(Step::Flip);
        let grace = grace::wait();
        self.fault(Step::Grace);
        self.phases.flip_us = us_since(started);
        let t = Instant::now();
        let mut deltas = deltas::builder(&self.groups);
        // The addresses in the order the walk reads them, for the clear.
        // Deleted by key in this order, they are reached bucket after
        // bucket through the map's table; in the deltas' order (by
        // address) the deletes jump about it: the clear took 25 against
        // 32 ms at 100 000 keys in maps of 1 048 576 entries, 186 against
        // 327 ms at 1 000 000 (the bench's flush, keys written in random
        // order as traffic brings them).
        let mut keys = Vec::new();
        let mut overflow = [Counters::ZERO; KINDS as usize];
        let fill = self.maps.drain_side(drained, |d| {
            match d {
                Drained::Ip(key, _) => keys.push(key),
                Drained::Overflow(kind, c) => overflow[kind as usize] = c,
                _ => {}
            }
            deltas.push(d);
        })?;
        self.fault(Step::Drain);
        for warning in self.map_fill.observe(Instant::now(), &fill, &overflow) {
            tracing::warn!("{warning}");
        }
        let commit = FlushCommit {
            seq: self.store.next_seq()?,
            side: drained,
            at,
            deltas: deltas.finish(),
        };
        let (seq, entities) = (commit.seq, commit.deltas.len());
        self.phases.drain_us = us_since(t);
        self.outstanding = Some(Outstanding::Commit { commit, keys });
        self.finish_outstanding(started)?;
        self.prune(at);
        Ok(Flushed {
            seq,
            entities,
            grace,
            duration_us: us_since(started),
            phases: self.phases,
        })
    }

    /// Applies retention, at most once a minute. Failures only warn: the
    /// rows stay until the next try.
    fn prune(&mut self, now: Timestamp) {
        let minute = now.as_second() / 60;
        if self.last_prune == Some(minute) {
            return;
        }
        self.last_prune = Some(minute);
        for res in Resolution::ALL {
            let result = self
                .retention
                .kept_from(res, &self.calendar, now)
                .map_err(|e| e.to_string())
                .and_then(|cutoff| match cutoff {
                    Some(cutoff) => self
                        .store
                        .prune(res, cutoff)
                        .map(drop)
                        .map_err(|e| crate::error_chain(&e)),
                    None => Ok(()),
                });
            if let Err(e) = result {
                tracing::warn!(table = res.table(), error = %e, "cannot apply retention");
            }
        }
    }
}
