//! The commit of one flush of N addresses, three ways, in turn: the
//! store's own ([`Store::commit`]: an upsert per address into `recent`,
//! in a 5-minute bucket that already holds them, as in a steady state);
//! one that appends the flush's deltas as one record, a design not built
//! (the 5-minute fold would spread the records into the tables, and
//! readers would add up those not yet folded); and one that appends them
//! as rows, one per address, to a log with `recent`'s columns and
//! references, the plain insert that a reader of the store's commit would
//! think of first (readers and the fold would sum them as they sum
//! `recent`). Each way writes a scratch store of its own, made by the
//! store's own code, on the same file system as the flush benchmark's;
//! each commits the flush record with `synchronous = FULL`, as the agent
//! does.
//!
//! A record moves work rather than saving it unless its fold is cheaper
//! than the upserts it spares: so the store's fold of a 5-minute bucket
//! (`recent` into the four tables, [`Store::fold`]) is also timed, in
//! turn, beside the fold that the record way would need (its bucket's
//! records summed per entity and added into the same tables), each after
//! a bucket's worth of flushes. Before each fold, a report's read of the
//! bucket is timed both ways too: the record way's readers would decode
//! its records on every read until the fold.

use std::{
    fmt::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, bail};
use jiff::{SignedDuration, Timestamp};
use rusqlite::{Connection, OpenFlags, Transaction, params};
use trafmon::{
    calendar::{Calendar, Resolution},
    config::Config,
    counters::ip_of,
    store::{Delta, FlushCommit, Kind, Rows, Store, Subject},
};
use trafmon_common::Counters;

use crate::{fill, results::CommitWay};

/// Bytes of one delta in a record: entity id (`u32`) and the four counters
/// (`u64`), little-endian.
const RECORD_ROW: usize = 4 + 4 * 8;

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `n` deltas of the bench's synthetic addresses, in address order (as a
/// flush's come), with counters that differ per `round`.
fn deltas(n: u32, round: u64) -> Vec<Delta> {
    (0..n)
        .map(|i| Delta {
            subject: Subject::Ip(ip_of(&fill::address(i))),
            counters: Counters {
                rx_bytes: 1500 * (round + 1),
                rx_packets: round + 1,
                tx_bytes: 60 + u64::from(i),
                tx_packets: 1,
            },
        })
        .collect()
}

/// Rows per insert statement of [`Append::Rows`] and of the record way's
/// fold, as the store's commit upserts them.
const ROWS: usize = trafmon::store::ROWS_PER_STATEMENT;

/// Reads of each unfolded bucket, each way.
const READS: usize = 3;

/// Flushes in a 5-minute bucket at the default interval.
pub fn flushes_per_bucket() -> usize {
    let interval = Config::default().interval.0;
    (300_000 / interval.as_millis().max(1)) as usize
}

/// How an [`Appender`] appends a flush's deltas.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Append {
    /// One record: entity id and four counters per delta.
    Record,
    /// One row per delta in `recent_log`.
    Rows,
}

/// An appending way's store: the schema the agent makes, plus a table of
/// records or a log of rows, with the agent's pragmas.
struct Appender {
    conn: Connection,
    how: Append,
    /// Address and entity id, in address order (the store keeps the same
    /// between flushes).
    ids: Vec<(IpAddr, u32)>,
}

impl Appender {
    fn open(path: &Path, how: Append, cal: &Calendar, first: FlushCommit) -> anyhow::Result<Self> {
        // The store's own commit makes the entities, and its fold leaves
        // `recent` empty: from here on the store holds this way's appends.
        let mut store = Store::open(path)?;
        store.commit(&first, cal)?;
        store.fold(i64::MAX)?;
        drop(store);
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
             CREATE TABLE flush_record (
                 seq INTEGER PRIMARY KEY REFERENCES flush (seq),
                 bucket INTEGER NOT NULL REFERENCES recent_bucket (id),
                 rows BLOB NOT NULL
             );
             CREATE TABLE recent_log (
                 id INTEGER PRIMARY KEY,
                 bucket INTEGER NOT NULL REFERENCES recent_bucket (id),
                 entity INTEGER NOT NULL REFERENCES entity (id),
                 rx_bytes INTEGER NOT NULL,
                 rx_packets INTEGER NOT NULL,
                 tx_bytes INTEGER NOT NULL,
                 tx_packets INTEGER NOT NULL
             );",
        )?;
        let mut ids = Vec::new();
        {
            let mut stmt = conn.prepare("SELECT key, id FROM entity WHERE kind = ?1")?;
            let mut rows = stmt.query([Kind::Ip.as_str()])?;
            while let Some(r) = rows.next()? {
                let key: String = r.get(0)?;
                let ip: IpAddr = key.parse().with_context(|| format!("entity key {key}"))?;
                ids.push((ip, u32::try_from(r.get::<_, i64>(1)?)?));
            }
        }
        ids.sort_unstable();
        Ok(Self { conn, how, ids })
    }

    /// Commits `flush` with its flush record, as one record or as rows;
    /// the record's size in bytes.
    fn commit(&mut self, flush: &FlushCommit, cal: &Calendar) -> anyhow::Result<usize> {
        let mut starts = [0i64; 4];
        for (start, res) in starts.iter_mut().zip(Resolution::ALL) {
            *start = cal.flush_bucket(res, flush.at)?;
        }
        let tx = self.conn.transaction()?;
        tx.prepare_cached(
            "INSERT INTO recent_bucket (fivemin, hour, day, month) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (fivemin) DO NOTHING",
        )?
        .execute(starts)?;
        let bucket: i64 = tx
            .prepare_cached("SELECT id FROM recent_bucket WHERE fivemin = ?1")?
            .query_row([starts[0]], |r| r.get(0))?;
        // The deltas and the ids are both in address order: one merge.
        let mut record = Vec::with_capacity(flush.deltas.len() * RECORD_ROW);
        let mut at = 0;
        for d in &flush.deltas {
            let Subject::Ip(ip) = d.subject else {
                bail!("the bench commits addresses only");
            };
            while self.ids.get(at).is_some_and(|(known, _)| *known < ip) {
                at += 1;
            }
            let id = match self.ids.get(at) {
                Some((known, id)) if *known == ip => *id,
                _ => bail!("{ip} has no entity id"),
            };
            record.extend_from_slice(&id.to_le_bytes());
            let c = &d.counters;
            for v in [c.rx_bytes, c.rx_packets, c.tx_bytes, c.tx_packets] {
                record.extend_from_slice(&v.to_le_bytes());
            }
        }
        tx.prepare_cached("INSERT INTO flush (seq, side, at_ms) VALUES (?1, ?2, ?3)")?
            .execute(params![flush.seq, flush.side, flush.at.as_millisecond()])?;
        if self.how == Append::Rows {
            // The record's bytes, as rows: the same work before SQLite.
            append_rows(&tx, bucket, &record)?;
            tx.commit()?;
            return Ok(0);
        }
        tx.prepare_cached("INSERT INTO flush_record (seq, bucket, rows) VALUES (?1, ?2, ?3)")?
            .execute(params![flush.seq, bucket, record])?;
        tx.commit()?;
        Ok(record.len())
    }

    /// The record way's fold: the records of every 5-minute bucket that
    /// starts before `before` summed per entity and added into the four
    /// bucket tables, then deleted with their buckets, in one transaction;
    /// how many deltas it read.
    fn fold(&mut self, before: i64) -> anyhow::Result<usize> {
        if self.how != Append::Record {
            bail!("only the record way is folded here");
        }
        let tx = self.conn.transaction()?;
        let buckets: Vec<(i64, [i64; 4])> = tx
            .prepare_cached(
                "SELECT id, fivemin, hour, day, month FROM recent_bucket WHERE fivemin < ?1",
            )?
            .query_map([before], |r| {
                Ok((r.get(0)?, [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?]))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut read = 0;
        for (bucket, starts) in buckets {
            let (sums, deltas) = sum_records(&tx, bucket)?;
            read += deltas;
            // A delta of nothing is never written, so a sum of nothing is
            // an entity without a delta in this bucket.
            let rows: Vec<(i64, [u64; 4])> = sums
                .iter()
                .enumerate()
                .filter(|(_, c)| **c != [0; 4])
                .map(|(id, c)| (id as i64, *c))
                .collect();
            for (res, start) in Resolution::ALL.into_iter().zip(starts) {
                add_rows(&tx, res.table(), start, &rows)?;
            }
            tx.prepare_cached("DELETE FROM flush_record WHERE bucket = ?1")?
                .execute([bucket])?;
            tx.prepare_cached("DELETE FROM recent_bucket WHERE id = ?1")?
                .execute([bucket])?;
        }
        tx.commit()?;
        Ok(read)
    }

    /// Checks that flush `seq` was stored as `expected`: as many deltas in
    /// its record, or as many rows in the log as all the commits so far
    /// (`flushes` of them); and the last delta's rx bytes.
    fn check(&self, seq: i64, flushes: usize, expected: &[Delta]) -> anyhow::Result<()> {
        let last_rx = expected.last().map(|d| d.counters.rx_bytes);
        if self.how == Append::Rows {
            let (rows, rx): (i64, i64) = self.conn.query_row(
                "SELECT (SELECT COUNT(*) FROM recent_log),
                        (SELECT rx_bytes FROM recent_log ORDER BY id DESC LIMIT 1)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if usize::try_from(rows)? != flushes * expected.len() {
                bail!("the log holds {rows} rows after {flushes} flushes");
            }
            if Some(u64::try_from(rx)?) != last_rx {
                bail!("the log's last row is not flush {seq}'s last delta");
            }
            return Ok(());
        }
        let record: Vec<u8> =
            self.conn
                .query_row("SELECT rows FROM flush_record WHERE seq = ?1", [seq], |r| {
                    r.get(0)
                })?;
        if record.len() != expected.len() * RECORD_ROW {
            bail!(
                "record {seq} holds {} bytes, not {} deltas",
                record.len(),
                expected.len()
            );
        }
        let last = &record[record.len().saturating_sub(RECORD_ROW)..];
        let rx_bytes = last
            .get(4..12)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes);
        if rx_bytes != last_rx {
            bail!("record {seq}'s last delta is not the flush's");
        }
        Ok(())
    }
}

/// The records of bucket `bucket` (its id) summed per entity, indexed by
/// entity id, and how many deltas they held. The store gives ids out from
/// 1 up, so the array is as long as the store has entities (a hash would
/// do where ids are sparse).
fn sum_records(conn: &Connection, bucket: i64) -> anyhow::Result<(Vec<[u64; 4]>, usize)> {
    let (mut sums, mut read) = (Vec::<[u64; 4]>::new(), 0);
    let mut stmt = conn.prepare_cached("SELECT rows FROM flush_record WHERE bucket = ?1")?;
    let mut records = stmt.query([bucket])?;
    while let Some(r) = records.next()? {
        for row in r.get_ref(0)?.as_blob()?.chunks_exact(RECORD_ROW) {
            let id = u32::from_le_bytes(row[..4].try_into()?) as usize;
            if sums.len() <= id {
                sums.resize(id + 1, [0; 4]);
            }
            for (sum, v) in sums[id].iter_mut().zip(row[4..].chunks_exact(8)) {
                *sum += u64::from_le_bytes(v.try_into()?);
            }
            read += 1;
        }
    }
    Ok((sums, read))
}

/// What a report reads of the 5-minute bucket at `start` while it is
/// unfolded, the store's way: [`Store::rows`], which adds `recent`'s rows
/// to the table's.
fn read_upserted(path: &Path, start: i64) -> anyhow::Result<Rows> {
    let store = Store::open_read_only(path)?;
    Ok(store.rows(Resolution::FiveMin, Kind::Ip, start, start + 300)?)
}

/// The same read the record way: [`Store::rows`] for the table's rows
/// (none yet), plus the bucket's records summed per entity and named by
/// the entity table, as a reader of a store of records would have to.
/// The two parts are read on two connections, so in two snapshots: the
/// bench writes nothing between them (a real reader would read both in
/// one transaction).
fn read_recorded(path: &Path, start: i64) -> anyhow::Result<Rows> {
    let mut out = read_upserted(path, start)?;
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let tx = conn.unchecked_transaction()?;
    let bucket: i64 = tx.query_row(
        "SELECT id FROM recent_bucket WHERE fivemin = ?1",
        [start],
        |r| r.get(0),
    )?;
    let (sums, _) = sum_records(&tx, bucket)?;
    let mut stmt = tx.prepare("SELECT id, key, label FROM entity WHERE kind = ?1")?;
    let mut entities = stmt.query([Kind::Ip.as_str()])?;
    while let Some(e) = entities.next()? {
        let id = usize::try_from(e.get::<_, i64>(0)?)?;
        let Some(&[rx_bytes, rx_packets, tx_bytes, tx_packets]) = sums.get(id) else {
            continue;
        };
        if [rx_bytes, rx_packets, tx_bytes, tx_packets] == [0; 4] {
            continue;
        }
        let c = Counters {
            rx_bytes,
            rx_packets,
            tx_bytes,
            tx_packets,
        };
        let (key, label): (String, String) = (e.get(1)?, e.get(2)?);
        out.entry((key, start))
            .or_insert((label, Counters::ZERO))
            .1
            .add(&c);
    }
    Ok(out)
}

/// Appends the deltas of `record` to `recent_log` in bucket `bucket`,
/// [`ROWS`] rows per statement, each row's key the next one.
fn append_rows(tx: &Transaction<'_>, bucket: i64, record: &[u8]) -> anyhow::Result<()> {
    let full = insert_rows(ROWS);
    for chunk in record.chunks(ROWS * RECORD_ROW) {
        let rows = chunk.len() / RECORD_ROW;
        let last;
        let text = if rows == ROWS {
            &full
        } else {
            last = insert_rows(rows);
            &last
        };
        let mut stmt = tx.prepare_cached(text)?;
        stmt.raw_bind_parameter(1, bucket)?;
        for (i, row) in chunk.chunks_exact(RECORD_ROW).enumerate() {
            let entity = u32::from_le_bytes(row[..4].try_into()?);
            stmt.raw_bind_parameter(2 + i * 5, i64::from(entity))?;
            for (j, v) in row[4..].chunks_exact(8).enumerate() {
                let v = i64::try_from(u64::from_le_bytes(v.try_into()?))?;
                stmt.raw_bind_parameter(3 + i * 5 + j, v)?;
            }
        }
        stmt.raw_execute()?;
    }
    Ok(())
}

/// Adds `rows` (entity and four counters) into bucket table `table` at
/// `start`, [`ROWS`] rows per statement, as the store's fold adds its sums.
fn add_rows(
    tx: &Transaction<'_>,
    table: &str,
    start: i64,
    rows: &[(i64, [u64; 4])],
) -> anyhow::Result<()> {
    let full = add_sql(table, ROWS);
    for chunk in rows.chunks(ROWS) {
        let last;
        let text = if chunk.len() == ROWS {
            &full
        } else {
            last = add_sql(table, chunk.len());
            &last
        };
        let mut stmt = tx.prepare_cached(text)?;
        stmt.raw_bind_parameter(1, start)?;
        for (i, (entity, c)) in chunk.iter().enumerate() {
            stmt.raw_bind_parameter(2 + i * 5, entity)?;
            for (j, v) in c.iter().enumerate() {
                stmt.raw_bind_parameter(3 + i * 5 + j, i64::try_from(*v)?)?;
            }
        }
        stmt.raw_execute()?;
    }
    Ok(())
}

/// An upsert of `rows` rows into bucket table `table`: `?1` is the
/// bucket's start, then per row entity and the four counters, added to a
/// row already there.
fn add_sql(table: &str, rows: usize) -> String {
    let mut sql = format!(
        "INSERT INTO {table} (start, entity, rx_bytes, rx_packets, tx_bytes, tx_packets) VALUES "
    );
    push_rows(&mut sql, rows);
    sql.push_str(
        " ON CONFLICT (entity, start) DO UPDATE SET
           rx_bytes = rx_bytes + excluded.rx_bytes,
           rx_packets = rx_packets + excluded.rx_packets,
           tx_bytes = tx_bytes + excluded.tx_bytes,
           tx_packets = tx_packets + excluded.tx_packets",
    );
    sql
}

/// An insert of `rows` rows into `recent_log`: `?1` is the bucket's id,
/// then per row entity, rx bytes, rx packets, tx bytes and tx packets.
fn insert_rows(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO recent_log (bucket, entity, rx_bytes, rx_packets, tx_bytes, tx_packets) VALUES ",
    );
    push_rows(&mut sql, rows);
    sql
}

/// `rows` rows of placeholders for an insert's VALUES: `?1` first in
/// each, then five of the row's own (`?2` to `?6` for the first row).
fn push_rows(sql: &mut String, rows: usize) {
    for i in 0..rows {
        let p = 2 + i * 5;
        if i > 0 {
            sql.push(',');
        }
        let _ = write!(
            sql,
            "(?1, ?{p}, ?{}, ?{}, ?{}, ?{})",
            p + 1,
            p + 2,
            p + 3,
            p + 4
        );
    }
}

/// The rx bytes that the store holds for `ip` in `recent`.
fn stored_rx(path: &Path, ip: IpAddr) -> anyhow::Result<u64> {
    let conn = Connection::open(path)?;
    let v: i64 = conn.query_row(
        "SELECT SUM(r.rx_bytes) FROM recent r JOIN entity e ON e.id = r.entity
         WHERE e.kind = ?1 AND e.key = ?2",
        params![Kind::Ip.as_str(), ip.to_string()],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(v)?)
}

/// `rounds` commits of `n` deltas each way, each way first in turn; each
/// way's first two (which make its entities and bucket rows) are not
/// measured. Then `folds` times, the store's and the record way's stores
/// each get `per_bucket` flushes in a 5-minute bucket of their own (not
/// measured), and each folds it, each first in turn.
pub fn run(
    n: u32,
    rounds: usize,
    folds: usize,
    per_bucket: usize,
) -> anyhow::Result<Vec<CommitWay>> {
    let dir =
        Scratch(std::env::temp_dir().join(format!("trafbench-commit-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)
        .with_context(|| format!("cannot create {}", dir.0.display()))?;
    let cal = Config::parse("", &dir.0.join("trafmon.toml"))?.calendar();
    // Every commit in the middle of one 5-minute bucket.
    let at = Timestamp::from_second(cal.bucket(Resolution::FiveMin, Timestamp::now())? + 150)?;
    let flush = |seq: i64, round: u64| FlushCommit {
        seq,
        side: (seq & 1) as u32,
        at,
        deltas: deltas(n, round),
    };
    let upsert_path = dir.0.join("upsert.db");
    let mut store = Store::open(&upsert_path)?;
    store.commit(&flush(1, 0), &cal)?;
    store.commit(&flush(2, 1), &cal)?;
    let record_path = dir.0.join("record.db");
    let mut record = Appender::open(&record_path, Append::Record, &cal, flush(1, 0))?;
    record.commit(&flush(2, 1), &cal)?;
    let mut log = Appender::open(&dir.0.join("rows.db"), Append::Rows, &cal, flush(1, 0))?;
    log.commit(&flush(2, 1), &cal)?;

    // Per way (the store's, the record's, the rows'): the samples.
    let mut samples = [Vec::new(), Vec::new(), Vec::new()];
    let mut record_bytes = 0;
    let mut expected_rx = 1500 * 3;
    for round in 0..rounds {
        let seq = 3 + round as i64;
        let one = flush(seq, 2 + round as u64);
        // Each way goes first in turn.
        for way in (0..3).map(|i| (round + i) % 3) {
            let t = Instant::now();
            match way {
                0 => store.commit(&one, &cal)?,
                1 => record_bytes = record.commit(&one, &cal)?,
                _ => {
                    log.commit(&one, &cal)?;
                }
            }
            samples[way].push(t.elapsed().as_secs_f64() * 1e3);
        }
        // Every way really stored the flush (the log holds the flush that
        // `open` committed through the store in `recent`, not in the log).
        expected_rx += 1500 * (3 + round as u64);
        record.check(seq, round + 2, &one.deltas)?;
        log.check(seq, round + 2, &one.deltas)?;
        let first = ip_of(&fill::address(0));
        let stored = stored_rx(&upsert_path, first)?;
        if stored != expected_rx {
            bail!("the store holds {stored} rx bytes for {first}, not {expected_rx}");
        }
    }
    let [upserts, records, rows] = samples;
    eprintln!(
        "trafbench: commit of {n} deltas: upserts {:.1} ms, one record {:.1} ms, appended rows {:.1} ms",
        crate::results::median(&upserts),
        crate::results::median(&records),
        crate::results::median(&rows)
    );

    // The folds. The bucket of the commits above first, not measured.
    let next_bucket =
        |t: Timestamp| -> anyhow::Result<i64> { Ok(cal.bucket(Resolution::FiveMin, t)? + 300) };
    store.fold(next_bucket(at)?)?;
    record.fold(next_bucket(at)?)?;
    let mut seq = 3 + rounds as i64;
    let mut fold_samples = [Vec::new(), Vec::new()];
    let mut read_samples = [Vec::new(), Vec::new()];
    for f in 0..folds {
        let bucket_at = at + SignedDuration::from_secs(300 * (f as i64 + 1));
        for k in 0..per_bucket {
            let one = FlushCommit {
                seq,
                side: (seq & 1) as u32,
                at: bucket_at,
                deltas: deltas(n, k as u64),
            };
            store.commit(&one, &cal)?;
            record.commit(&one, &cal)?;
            seq += 1;
        }
        // A report's read of the bucket, unfolded, each way first in turn.
        let start = cal.bucket(Resolution::FiveMin, bucket_at)?;
        for r in 0..READS {
            let mut read = [Rows::new(), Rows::new()];
            for way in (0..2).map(|i| (f + r + i) % 2) {
                let t = Instant::now();
                read[way] = if way == 0 {
                    read_upserted(&upsert_path, start)?
                } else {
                    read_recorded(&record_path, start)?
                };
                read_samples[way].push(t.elapsed().as_secs_f64() * 1e3);
            }
            if read[0].len() != n as usize || read[0] != read[1] {
                bail!(
                    "the reads of bucket {f} differ or miss addresses: {} rows upserted, {} \
                     recorded, of {n} addresses",
                    read[0].len(),
                    read[1].len()
                );
            }
        }
        let before = next_bucket(bucket_at)?;
        for way in (0..2).map(|i| (f + i) % 2) {
            let t = Instant::now();
            let (folded, expected) = if way == 0 {
                (store.fold(before)?, n as usize)
            } else {
                (record.fold(before)?, n as usize * per_bucket)
            };
            fold_samples[way].push(t.elapsed().as_secs_f64() * 1e3);
            if folded != expected {
                bail!("fold {f} of way {way} moved {folded} rows or deltas, not {expected}");
            }
        }
        // Both folded the same traffic into every table.
        let totals = |path: &Path| -> anyhow::Result<Vec<[i64; 3]>> {
            let conn = Connection::open(path)?;
            Resolution::ALL
                .iter()
                .map(|res| {
                    Ok(conn.query_row(
                        &format!(
                            "SELECT COUNT(*), SUM(rx_bytes), SUM(tx_packets) FROM {}",
                            res.table()
                        ),
                        [],
                        |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?]),
                    )?)
                })
                .collect()
        };
        let (upserted, recorded) = (totals(&upsert_path)?, totals(&record_path)?);
        if upserted != recorded {
            bail!("after fold {f} the tables differ: {upserted:?} against {recorded:?}");
        }
    }
    let [upsert_folds, record_folds] = fold_samples;
    let [upsert_reads, record_reads] = read_samples;
    Ok(vec![
        CommitWay::new(
            "upserts into `recent` (the store's commit)",
            n,
            None,
            upserts,
        )
        .with_folds(upsert_folds, per_bucket, flushes_per_bucket())
        .with_reads(upsert_reads),
        CommitWay::new(
            "one appended record (a design not built)",
            n,
            Some(record_bytes),
            records,
        )
        .with_folds(record_folds, per_bucket, flushes_per_bucket())
        .with_reads(record_reads),
        CommitWay::new(
            "a row per address appended to a log (a design not built)",
            n,
            None,
            rows,
        ),
    ])
}
