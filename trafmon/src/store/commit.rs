//! Writing the store: a flush's deltas into `recent` with its flush record,
//! the fold of closed 5-minute buckets into the bucket tables, events and
//! retention.

use std::fmt::Write as _;

use jiff::Timestamp;
use rusqlite::{OptionalExtension as _, Transaction, params};

use super::{
    FlushCommit, FlushRecord, ROWS_PER_STATEMENT as ROWS, Store, StoreError, entities,
    schema::{BUCKET_SPAN, add_into, recent_column, recent_id},
    to_sql,
};
use crate::calendar::{Calendar, Resolution};

/// An upsert of `rows` rows into `recent`: `?1` is the bucket's id, then
/// per row key, entity, rx bytes, rx packets, tx bytes and tx packets.
fn recent_upsert(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO recent (id, bucket, entity, rx_bytes, rx_packets, tx_bytes, tx_packets) VALUES ",
    );
    for i in 0..rows {
        let p = 2 + i * 6;
        if i > 0 {
            sql.push(',');
        }
        write!(
            sql,
            "(?{p}, ?1, ?{}, ?{}, ?{}, ?{}, ?{})",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5
        )
        .expect("writing to a String");
    }
    sql.push_str(
        " ON CONFLICT (id) DO UPDATE SET
           rx_bytes = rx_bytes + excluded.rx_bytes,
           rx_packets = rx_packets + excluded.rx_packets,
           tx_bytes = tx_bytes + excluded.tx_bytes,
           tx_packets = tx_packets + excluded.tx_packets",
    );
    sql
}

/// Which unfolded buckets a fold moves: the 5-minute buckets before `?1`,
/// or the one at `?1`.
#[derive(Clone, Copy)]
enum Buckets {
    Before,
    At,
}

impl Buckets {
    /// The condition on `recent_bucket`'s columns.
    fn condition(self) -> &'static str {
        match self {
            Self::Before => "fivemin < ?1",
            Self::At => "fivemin = ?1",
        }
    }
}

/// Adds the unfolded rows of `which` buckets into the table of `res`, one
/// row per entity and bucket.
fn fold_sql(res: Resolution, which: Buckets) -> String {
    let column = recent_column(res);
    add_into(
        res.table(),
        &format!(
            "SELECT r.entity, b.{column}, SUM(r.rx_bytes), SUM(r.rx_packets), SUM(r.tx_bytes), SUM(r.tx_packets)
             FROM recent r JOIN recent_bucket b ON b.id = r.bucket
             WHERE b.{condition}
             GROUP BY r.entity, b.{column}",
            condition = which.condition(),
        ),
    )
}

/// Folds `which` buckets in `tx` and deletes them and their rows from
/// `recent`; the number of rows moved.
fn fold_in(tx: &Transaction<'_>, which: Buckets, at: i64) -> rusqlite::Result<usize> {
    for res in Resolution::ALL {
        tx.prepare_cached(&fold_sql(res, which))?.execute([at])?;
    }
    // A bucket's rows are one range of keys (`recent_id`).
    let delete_rows = format!(
        "DELETE FROM recent WHERE id >= ?1 * {BUCKET_SPAN} AND id < (?1 + 1) * {BUCKET_SPAN}"
    );
    let mut moved = 0;
    let buckets: Vec<i64> = tx
        .prepare_cached(&format!(
            "SELECT id FROM recent_bucket WHERE {}",
            which.condition()
        ))?
        .query_map([at], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for bucket in buckets {
        moved += tx.prepare_cached(&delete_rows)?.execute([bucket])?;
    }
    tx.prepare_cached(&format!(
        "DELETE FROM recent_bucket WHERE {}",
        which.condition()
    ))?
    .execute([at])?;
    Ok(moved)
}

/// The id of the unfolded 5-minute bucket `buckets[0]`, filed under the
/// coarser `buckets[1..]`, made when there is none. Rows of that 5-minute
/// bucket filed under other coarser buckets (the month start day or the
/// time zone changed within it) are folded first, so that the bucket's
/// rows agree.
fn bucket_id(tx: &Transaction<'_>, buckets: [i64; 4]) -> rusqlite::Result<i64> {
    let filed: Option<(i64, [i64; 3])> = tx
        .prepare_cached("SELECT id, hour, day, month FROM recent_bucket WHERE fivemin = ?1")?
        .query_row([buckets[0]], |r| {
            Ok((r.get(0)?, [r.get(1)?, r.get(2)?, r.get(3)?]))
        })
        .optional()?;
    match filed {
        Some((id, coarser)) if coarser[..] == buckets[1..] => return Ok(id),
        Some(_) => {
            fold_in(tx, Buckets::At, buckets[0])?;
        }
        None => {}
    }
    tx.prepare_cached(
        "INSERT INTO recent_bucket (fivemin, hour, day, month) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(buckets)?;
    Ok(tx.last_insert_rowid())
}

impl Store {
    /// The newest flush record.
    pub fn last_flush(&self) -> Result<Option<FlushRecord>, StoreError> {
        self.conn
            .query_row(
                "SELECT seq, side, at_ms, cleared, duration_us FROM flush ORDER BY seq DESC LIMIT 1",
                [],
                |r| {
                    Ok(FlushRecord {
                        seq: r.get(0)?,
                        side: r.get(1)?,
                        at_ms: r.get(2)?,
                        cleared: r.get::<_, i64>(3)? != 0,
                        duration_us: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sql("read the last flush record", e))
    }

    /// Commits a flush: its deltas into `recent` under the bucket of every
    /// resolution, and the flush record, in one transaction. Only one
    /// table is written per flush; [`Store::fold`] moves closed buckets
    /// into the four bucket tables once per 5 minutes.
    pub fn commit(&mut self, flush: &FlushCommit, cal: &Calendar) -> Result<(), StoreError> {
        let mut buckets = [0i64; 4];
        for (b, res) in buckets.iter_mut().zip(Resolution::ALL) {
            *b = cal.flush_bucket(res, flush.at)?;
        }
        let path = self.path.clone();
        let sql = |what: &'static str| {
            let path = path.clone();
            move |source| StoreError::Sql { path, what, source }
        };
        let tx = self.conn.transaction().map_err(sql("begin a flush"))?;
        let ids = entities::ids(&tx, &self.known, &flush.deltas, sql)?;
        if !flush.deltas.is_empty() {
            let bucket = bucket_id(&tx, buckets).map_err(sql("file recent traffic"))?;
            // Many rows per statement, in key order (the entity's, within
            // one bucket): the B-tree is walked in key order once (ids
            // follow first appearance, not the order of the deltas).
            // Sorted as id and row packed into one integer (a key's entity
            // is 32 bits, [`recent_id`]): comparing ids held in place reads
            // memory in order, where a key looked up through each index
            // reads it at random, and 8 bytes per row keep the agent's peak
            // as low as a list of indices did.
            let key_range = |entity| StoreError::KeyRange {
                path: self.path.clone(),
                bucket,
                entity,
            };
            let mut order = Vec::with_capacity(ids.len());
            for (row, &id) in ids.iter().enumerate() {
                let entity = u32::try_from(id).map_err(|_| key_range(id))?;
                let row = u32::try_from(row).map_err(|_| key_range(id))?;
                order.push(u64::from(entity) << 32 | u64::from(row));
            }
            order.sort_unstable();
            let full = recent_upsert(ROWS);
            for chunk in order.chunks(ROWS) {
                let last;
                let text = if chunk.len() == ROWS {
                    &full
                } else {
                    last = recent_upsert(chunk.len());
                    &last
                };
                let mut stmt = tx.prepare_cached(text).map_err(sql("prepare an upsert"))?;
                stmt.raw_bind_parameter(1, bucket)
                    .map_err(sql("write recent traffic"))?;
                for (i, &packed) in chunk.iter().enumerate() {
                    let (entity, row) = ((packed >> 32) as i64, packed as u32 as usize);
                    let key = recent_id(bucket, entity).ok_or_else(|| key_range(entity))?;
                    let c = &flush.deltas[row].counters;
                    let values = [
                        key,
                        entity,
                        to_sql(c.rx_bytes),
                        to_sql(c.rx_packets),
                        to_sql(c.tx_bytes),
                        to_sql(c.tx_packets),
                    ];
                    for (j, v) in values.into_iter().enumerate() {
                        stmt.raw_bind_parameter(2 + i * 6 + j, v)
                            .map_err(sql("write recent traffic"))?;
                    }
                }
                stmt.raw_execute().map_err(sql("write recent traffic"))?;
            }
        }
        tx.execute(
            "INSERT INTO flush (seq, side, at_ms) VALUES (?1, ?2, ?3)",
            params![flush.seq, flush.side, flush.at.as_millisecond()],
        )
        .map_err(sql("write the flush record"))?;
        tx.commit().map_err(sql("commit a flush"))?;
        self.known.remember(&flush.deltas, &ids);
        Ok(())
    }

    /// Folds the unfolded rows of every 5-minute bucket that starts before
    /// `before` into the four bucket tables and deletes them from `recent`,
    /// in one transaction: a reader sees them in `recent` or in the tables,
    /// never in both. Returns how many rows were folded.
    pub fn fold(&mut self, before: i64) -> Result<usize, StoreError> {
        let path = self.path.clone();
        let sql = |what: &'static str| {
            let path = path.clone();
            move |source| StoreError::Sql { path, what, source }
        };
        let tx = self.conn.transaction().map_err(sql("begin a fold"))?;
        let n = fold_in(&tx, Buckets::Before, before).map_err(sql("fold recent traffic"))?;
        tx.commit().map_err(sql("commit a fold"))?;
        Ok(n)
    }

    /// The start of the oldest 5-minute bucket with unfolded rows.
    pub fn oldest_unfolded(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row("SELECT MIN(fivemin) FROM recent_bucket", [], |r| r.get(0))
            .map_err(|e| self.sql("read the oldest unfolded bucket", e))
    }

    /// Records that the side of flush `seq` was cleared.
    pub fn mark_cleared(&self, seq: i64, duration_us: Option<i64>) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE flush SET cleared = 1, duration_us = ?2 WHERE seq = ?1",
                params![seq, duration_us],
            )
            .map(drop)
            .map_err(|e| self.sql("record a cleared side", e))
    }

    /// The next flush sequence number.
    pub fn next_seq(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM flush", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.sql("read the flush sequence", e))
    }

    /// Records an event (recovery, recreated maps) for `trafmon status`.
    pub fn record_event(&self, kind: &str, detail: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO event (at_ms, kind, detail) VALUES (?1, ?2, ?3)",
                params![Timestamp::now().as_millisecond(), kind, detail],
            )
            .map(drop)
            .map_err(|e| self.sql("record an event", e))
    }

    /// The newest event: (Unix ms, kind).
    pub fn last_event(&self) -> Result<Option<(i64, String)>, StoreError> {
        self.conn
            .query_row(
                "SELECT at_ms, kind FROM event ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.sql("read events", e))
    }

    /// Every event, oldest first: (Unix ms, kind, detail).
    pub fn events(&self) -> Result<Vec<(i64, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT at_ms, kind, detail FROM event ORDER BY id")
            .map_err(|e| self.sql("read events", e))?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.sql("read events", e))
    }

    /// Deletes the folded rows of `res` that start before `cutoff` (rows
    /// still in `recent` wait for their fold), and flush records older
    /// than the newest 10 000. Monthly rows are added to their entity's
    /// sum in `pruned` in the same transaction, so that lifetime totals
    /// stay as they were.
    pub fn prune(&self, res: Resolution, cutoff: i64) -> Result<usize, StoreError> {
        let err = |e| self.sql("prune old rows", e);
        // Unchecked: the store's one connection has no other transaction
        // open while the agent prunes.
        let tx = self.conn.unchecked_transaction().map_err(err)?;
        if res == Resolution::Month {
            tx.execute(
                "INSERT INTO pruned (entity, rx_bytes, rx_packets, tx_bytes, tx_packets)
                 SELECT entity, SUM(rx_bytes), SUM(rx_packets), SUM(tx_bytes), SUM(tx_packets)
                 FROM monthly WHERE start < ?1 GROUP BY entity
                 ON CONFLICT (entity) DO UPDATE SET
                     rx_bytes = rx_bytes + excluded.rx_bytes,
                     rx_packets = rx_packets + excluded.rx_packets,
                     tx_bytes = tx_bytes + excluded.tx_bytes,
                     tx_packets = tx_packets + excluded.tx_packets",
                [cutoff],
            )
            .map_err(err)?;
        }
        let n = tx
            .execute(
                &format!("DELETE FROM {} WHERE start < ?1", res.table()),
                [cutoff],
            )
            .map_err(err)?;
        tx.commit().map_err(err)?;
        self.conn
            .execute(
                "DELETE FROM flush WHERE seq < (SELECT MAX(seq) FROM flush) - 10000",
                [],
            )
            .map_err(|e| self.sql("prune flush records", e))?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use jiff::Timestamp;
    use trafmon_common::Counters;

    use crate::{
        calendar::Resolution,
        store::{Delta, Kind, Store, testing::*},
    };

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// Per resolution: key, start, rx bytes and tx packets of each row.
    type AllRows = Vec<Vec<(String, i64, u64, u64)>>;

    /// Every resolution's rows of every kind, and the sums.
    fn everything(store: &mut Store) -> (AllRows, [Counters; 4]) {
        let mut rows = Vec::new();
        for res in Resolution::ALL {
            let mut all = Vec::new();
            for kind in [Kind::Uid, Kind::Ip] {
                for ((key, start), (_, c)) in store.rows(res, kind, i64::MIN, i64::MAX).unwrap() {
                    all.push((key, start, c.rx_bytes, c.tx_packets));
                }
            }
            rows.push(all);
        }
        (rows, store.resolution_sums().unwrap())
    }

    #[test]
    fn flushes_add_up_in_every_resolution() {
        let path = tmp("add");
        let mut store = Store::open(&path).unwrap();
        for (seq, t) in [
            (1, "2026-11-22T10:04:50Z"),
            (2, "2026-11-22T10:05:00Z"),
            (3, "2026-11-22T10:05:10Z"),
        ] {
            commit(
                &mut store,
                seq,
                at(t),
                vec![delta(Kind::Uid, "1000", 10, 20)],
            );
            store.mark_cleared(seq, Some(5)).unwrap();
        }
        let five = store
            .rows(Resolution::FiveMin, Kind::Uid, i64::MIN, i64::MAX)
            .unwrap();
        let starts: Vec<i64> = five.keys().map(|(_, s)| *s).collect();
        // 10:04:50 and 10:05:00 close 10:00-10:05; 10:05:10 opens 10:05-10:10.
        assert_eq!(
            starts,
            vec![
                at("2026-11-22T10:00:00Z").as_second(),
                at("2026-11-22T10:05:00Z").as_second()
            ]
        );
        assert_eq!(five.values().next().unwrap().1.rx_bytes, 20);
        let totals = store.totals().unwrap();
        assert_eq!(totals.len(), 1);
        assert_eq!(totals[0].counters.tx_bytes, 60);
        assert_eq!(store.last_flush().unwrap().unwrap().seq, 3);
        assert_eq!(store.next_seq().unwrap(), 4);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn many_entities_land_in_their_own_rows_in_every_resolution() {
        // More than two statements' worth of rows, and a remainder.
        let path = tmp("many");
        let mut store = Store::open(&path).unwrap();
        let n = 150u64;
        let deltas = |round: u64| -> Vec<Delta> {
            (0..n)
                .map(|i| delta(Kind::Ip, &format!("192.0.2.{i}"), i * round, i + 1))
                .collect()
        };
        for (seq, round) in [(1, 1), (2, 3)] {
            commit(&mut store, seq, at("2026-11-22T10:04:50Z"), deltas(round));
        }
        for res in Resolution::ALL {
            let rows = store.rows(res, Kind::Ip, i64::MIN, i64::MAX).unwrap();
            assert_eq!(rows.len(), n as usize, "{res:?}");
            for i in 0..n {
                let (label, c) = &rows[&(format!("192.0.2.{i}"), rows.keys().next().unwrap().1)];
                assert_eq!(label, &format!("192.0.2.{i}"));
                assert_eq!(
                    (c.rx_bytes, c.tx_bytes, c.rx_packets),
                    (4 * i, 2 * (i + 1), 2)
                );
            }
        }
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn pruning_removes_exactly_the_rows_before_the_cutoff() {
        let path = tmp("prune");
        let mut store = Store::open(&path).unwrap();
        let base = "2026-11-20T00:00:00Z".parse::<Timestamp>().unwrap();
        for i in 0..10i64 {
            let t = base + jiff::SignedDuration::from_secs(300 * (i + 1));
            commit(
                &mut store,
                i + 1,
                t,
                vec![delta(Kind::Ip, "192.0.2.1", 1, 1)],
            );
        }
        store.fold(i64::MAX).unwrap();
        let cutoff = base.as_second() + 300 * 4;
        assert_eq!(store.prune(Resolution::FiveMin, cutoff).unwrap(), 4);
        let left = store
            .rows(Resolution::FiveMin, Kind::Ip, i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(left.len(), 6);
        assert_eq!(left.keys().next().unwrap().1, cutoff);
        // Coarser resolutions are untouched.
        assert_eq!(store.totals().unwrap()[0].counters.rx_bytes, 10);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// Monthly retention removes old months from the tables, but not from
    /// the lifetime totals that `stats`, `/metrics` and `report --total`
    /// show: Prometheus would take a total that shrinks for a counter
    /// reset, and a `stats --reset` caller would miss traffic until the
    /// total grew past its baseline again.
    #[test]
    fn pruned_months_stay_in_the_lifetime_totals() {
        let path = tmp("prune-months");
        let mut store = Store::open(&path).unwrap();
        for (i, month) in ["2026-01", "2026-02", "2026-03", "2026-04"]
            .iter()
            .enumerate()
        {
            let deltas = vec![
                delta(Kind::Uid, "1000", 100, 7),
                delta(Kind::Ip, "192.0.2.1", 10 * (i as u64 + 1), 1),
            ];
            commit(
                &mut store,
                i as i64 + 1,
                at(&format!("{month}-10T12:00:00Z")),
                deltas,
            );
        }
        store.fold(i64::MAX).unwrap();
        let before = store.totals().unwrap();
        // Twice, as the agent prunes every minute: the second finds nothing.
        for cutoff in [
            "2026-03-01T00:00:00Z",
            "2026-03-01T00:00:00Z",
            "2026-04-01T00:00:00Z",
        ] {
            store
                .prune(Resolution::Month, at(cutoff).as_second())
                .unwrap();
            assert_eq!(
                store.totals().unwrap(),
                before,
                "after pruning before {cutoff}"
            );
        }
        let months = store
            .rows(Resolution::Month, Kind::Uid, i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(months.len(), 1, "only April is left in the table");
        let uid = &before[0];
        assert_eq!((uid.counters.rx_bytes, uid.counters.tx_packets), (400, 4));
        assert_eq!(before[1].counters.rx_bytes, 10 + 20 + 30 + 40);
        // Traffic after the prune adds to them.
        commit(
            &mut store,
            5,
            at("2026-04-20T12:00:00Z"),
            vec![delta(Kind::Uid, "1000", 5, 0)],
        );
        assert_eq!(store.totals().unwrap()[0].counters.rx_bytes, 405);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_fold_moves_closed_buckets_once_and_readers_see_the_same_rows() {
        let path = tmp("fold");
        let mut store = Store::open(&path).unwrap();
        let mut seq = 0;
        let mut flush = |store: &mut Store, t: &str, deltas: Vec<Delta>| {
            seq += 1;
            commit(store, seq, at(t), deltas);
        };
        for t in [
            "2026-11-22T23:54:50Z",
            "2026-11-22T23:55:00Z",
            "2026-11-22T23:59:50Z",
            "2026-11-23T00:00:00Z",
            "2026-11-23T00:00:10Z",
        ] {
            flush(
                &mut store,
                t,
                vec![
                    delta(Kind::Ip, "192.0.2.7", 100, 5),
                    delta(Kind::Uid, "1000", 7, 3),
                ],
            );
        }
        let before = everything(&mut store);
        assert_eq!(before.1[0].rx_bytes, 5 * 107);
        assert!(before.1.iter().all(|c| *c == before.1[0]), "{:?}", before.1);
        // Folds the buckets before the open one (00:00): 23:50 and 23:55,
        // two entities each.
        let open = at("2026-11-23T00:00:00Z").as_second();
        assert_eq!(store.oldest_unfolded().unwrap(), Some(open - 600));
        assert_eq!(store.fold(open).unwrap(), 2 * 2);
        assert_eq!(store.oldest_unfolded().unwrap(), Some(open));
        assert_eq!(everything(&mut store), before);
        // Folding again moves nothing and doubles nothing.
        assert_eq!(store.fold(open).unwrap(), 0);
        assert_eq!(everything(&mut store), before);
        // A late flush into a folded bucket (the clock stepped back) is
        // added to it by the next fold.
        flush(
            &mut store,
            "2026-11-22T23:59:55Z",
            vec![delta(Kind::Ip, "192.0.2.7", 1000, 0)],
        );
        assert_eq!(store.fold(i64::MAX).unwrap(), 3);
        assert_eq!(store.oldest_unfolded().unwrap(), None);
        let (rows, sums) = everything(&mut store);
        assert_eq!(sums[0].rx_bytes, 5 * 107 + 1000);
        assert!(sums.iter().all(|c| *c == sums[0]), "{sums:?}");
        // The day of 2026-11-22 holds four flushes and the late one.
        let day = rows[2]
            .iter()
            .find(|(k, s, _, _)| k == "192.0.2.7" && *s == open - 86400)
            .unwrap();
        assert_eq!(day.2, 4 * 100 + 1000);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn entities_are_found_relabelled_and_written_once_per_key() {
        let path = tmp("entities");
        let mut store = Store::open(&path).unwrap();
        let named = |key: &str, label: &str| {
            Delta::named(
                Kind::Uid,
                key.into(),
                label.into(),
                Counters {
                    rx_bytes: 1,
                    rx_packets: 1,
                    tx_bytes: 0,
                    tx_packets: 0,
                },
            )
        };
        // More keys of one kind than one lookup statement takes, a key
        // twice and a second kind.
        let mut deltas: Vec<Delta> = (0..70).map(|i| named(&i.to_string(), "old")).collect();
        deltas.push(named("5", "old"));
        deltas.push(delta(Kind::Ip, "2001:db8::1", 1, 0));
        for (seq, label) in [(1, "old"), (2, "new")] {
            for d in &mut deltas {
                if let crate::store::Subject::Named(named) = &mut d.subject {
                    named.1 = label.into();
                }
            }
            commit(&mut store, seq, at("2026-11-22T10:00:10Z"), deltas.clone());
        }
        assert_eq!(entity_rows(&store), 71);
        let totals = store.totals().unwrap();
        assert_eq!(totals.len(), 71);
        let five = totals.iter().find(|t| t.entity.key == "5").unwrap();
        assert_eq!((five.label.as_str(), five.counters.rx_bytes), ("new", 4));
        assert!(
            totals
                .iter()
                .all(|t| t.entity.kind == Kind::Ip || t.label == "new")
        );
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_fold_that_fails_half_way_leaves_nothing_folded() {
        let path = tmp("fold-fails");
        let mut store = Store::open(&path).unwrap();
        commit(
            &mut store,
            1,
            at("2026-11-22T10:04:50Z"),
            vec![delta(Kind::Uid, "1000", 10, 20)],
        );
        let before = everything(&mut store);
        // The delete, after the four inserts, fails (as a crash would stop
        // it): the inserts must go with it.
        store
            .conn
            .execute_batch(
                "CREATE TRIGGER crash BEFORE DELETE ON recent BEGIN SELECT RAISE(ABORT, 'crash'); END;",
            )
            .unwrap();
        assert!(store.fold(i64::MAX).is_err());
        assert_eq!(everything(&mut store), before);
        store.conn.execute_batch("DROP TRIGGER crash").unwrap();
        assert_eq!(store.fold(i64::MAX).unwrap(), 1);
        assert_eq!(everything(&mut store), before);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn ids_of_a_failed_commit_are_not_remembered() {
        let path = tmp("commit-fails");
        let mut store = Store::open(&path).unwrap();
        let of = |seq, ips: &[&str]| {
            let deltas = ips.iter().map(|ip| delta(Kind::Ip, ip, 1, 1)).collect();
            flush(seq, at("2026-11-22T10:04:50Z"), deltas)
        };
        store.commit(&of(1, &["192.0.2.1"]), &cal()).unwrap();
        // The flush record fails after the new entity was written: the
        // whole commit is rolled back, the new entity's id with it.
        store
            .conn
            .execute_batch(
                "CREATE TRIGGER full BEFORE INSERT ON flush BEGIN SELECT RAISE(ABORT, 'full'); END;",
            )
            .unwrap();
        assert!(
            store
                .commit(&of(2, &["192.0.2.1", "192.0.2.2"]), &cal())
                .is_err()
        );
        store.conn.execute_batch("DROP TRIGGER full").unwrap();
        // A new entity takes the rolled-back id in the next commit; the
        // address that had it must get an id of its own.
        store
            .commit(&of(2, &["192.0.2.1", "192.0.2.2", "192.0.2.3"]), &cal())
            .unwrap();
        let rows = store
            .rows(Resolution::FiveMin, Kind::Ip, i64::MIN, i64::MAX)
            .unwrap();
        let got: Vec<(&str, u64)> = rows
            .iter()
            .map(|((k, _), (_, c))| (k.as_str(), c.rx_bytes))
            .collect();
        assert_eq!(
            got,
            vec![("192.0.2.1", 2), ("192.0.2.2", 1), ("192.0.2.3", 1)]
        );
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// The same keys flush after flush (their ids come from the cache of
    /// the last flush's), then a set with one key gone and one new, then
    /// the first set again, then one key twice: every key keeps its one
    /// row.
    #[test]
    fn keys_that_stay_come_and_go_keep_their_ids() {
        let path = tmp("steady");
        let mut store = Store::open(&path).unwrap();
        let sets: [&[&str]; 5] = [
            &["192.0.2.1", "192.0.2.2"],
            &["192.0.2.1", "192.0.2.2"],
            &["192.0.2.1", "192.0.2.3"],
            &["192.0.2.2", "192.0.2.1"],
            &["192.0.2.3", "192.0.2.3"],
        ];
        for (seq, ips) in (1..).zip(sets) {
            let deltas = ips.iter().map(|ip| delta(Kind::Ip, ip, 1, 0)).collect();
            commit(&mut store, seq, at("2026-11-22T10:04:50Z"), deltas);
        }
        assert_eq!(entity_rows(&store), 3);
        let got: Vec<(String, u64)> = store
            .totals()
            .unwrap()
            .into_iter()
            .map(|t| (t.entity.key, t.counters.rx_bytes))
            .collect();
        assert_eq!(
            got,
            [("192.0.2.1", 4), ("192.0.2.2", 3), ("192.0.2.3", 3)].map(|(k, n)| (k.to_owned(), n))
        );
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// An entity id that `recent`'s key cannot hold stops the commit with
    /// a message, and nothing of the flush is written (no row can land on
    /// another entity's key).
    #[test]
    fn an_entity_id_beyond_the_key_is_refused_and_nothing_is_written() {
        let path = tmp("key-range");
        let mut store = Store::open(&path).unwrap();
        store
            .conn
            .execute_batch(
                "INSERT INTO entity (id, kind, key, label) VALUES (4294967296, 'ip', '192.0.2.9', '192.0.2.9')",
            )
            .unwrap();
        let deltas = vec![
            delta(Kind::Ip, "192.0.2.1", 5, 5),
            delta(Kind::Ip, "192.0.2.9", 7, 7),
        ];
        let f = flush(1, at("2026-11-22T10:04:50Z"), deltas);
        let e = store.commit(&f, &cal()).expect_err("must fail");
        assert!(
            e.to_string().contains(
                "in unfolded bucket 1 is beyond the unfolded rows' key; the flush was not committed"
            ),
            "{e}"
        );
        assert_eq!(store.next_seq().unwrap(), 1);
        assert_eq!(store.oldest_unfolded().unwrap(), None);
        assert!(store.totals().unwrap().is_empty());
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_billing_day_changed_within_a_bucket_files_each_flush_in_its_own_month() {
        let path = tmp("rebill");
        let mut store = Store::open(&path).unwrap();
        let mut rebilled = cal();
        rebilled.month_start_day = 22;
        let f = |seq, rx| {
            flush(
                seq,
                at("2026-11-22T10:04:50Z"),
                vec![delta(Kind::Uid, "1000", rx, 1)],
            )
        };
        // The agent restarted with a new month start day within 10:00-10:05.
        store.commit(&f(1, 10), &cal()).unwrap();
        store.commit(&f(2, 100), &rebilled).unwrap();
        store.commit(&f(3, 1000), &rebilled).unwrap();
        let month = |store: &Store| {
            store
                .rows(Resolution::Month, Kind::Uid, i64::MIN, i64::MAX)
                .unwrap()
                .into_iter()
                .map(|((_, start), (_, c))| (start, c.rx_bytes))
                .collect::<Vec<_>>()
        };
        let nov1 = at("2026-11-01T00:00:00Z").as_second();
        let nov22 = at("2026-11-22T00:00:00Z").as_second();
        assert_eq!(month(&store), vec![(nov1, 10), (nov22, 1100)]);
        let five = store
            .rows(Resolution::FiveMin, Kind::Uid, i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(
            five.values().map(|(_, c)| c.rx_bytes).collect::<Vec<_>>(),
            vec![1110]
        );
        store.fold(i64::MAX).unwrap();
        assert_eq!(month(&store), vec![(nov1, 10), (nov22, 1100)]);
        let sums = store.resolution_sums().unwrap();
        assert!(sums.iter().all(|c| c.rx_bytes == 1110), "{sums:?}");
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
