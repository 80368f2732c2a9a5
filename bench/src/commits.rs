//! The commit of one flush of N addresses, two ways, alternately: the
//! store's own ([`Store::commit`]: an upsert per address into `recent`,
//! in a 5-minute bucket that already holds them, as in a steady state)
//! and one that appends the flush's deltas as one record, a design not
//! built (the 5-minute fold would spread the records into the tables, and
//! readers would add up those not yet folded). Each way writes a scratch
//! store of its own, made by the store's own code, on the same file system
//! as the flush benchmark's; both commit the flush record with `synchronous
//! = FULL`, as the agent does.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, bail};
use jiff::Timestamp;
use rusqlite::{Connection, params};
use trafmon::{
    calendar::{Calendar, Resolution},
    config::Config,
    counters::ip_of,
    store::{Delta, FlushCommit, Kind, Store, Subject},
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

/// The appended-record way's store: the schema the agent makes, plus a
/// table of records, with the agent's pragmas.
struct Appender {
    conn: Connection,
    /// Address and entity id, in address order (the store keeps the same
    /// between flushes).
    ids: Vec<(IpAddr, u32)>,
}

impl Appender {
    fn open(path: &Path, cal: &Calendar, first: FlushCommit) -> anyhow::Result<Self> {
        // The store's own commit makes the entities and the bucket's row.
        let mut store = Store::open(path)?;
        store.commit(&first, cal)?;
        drop(store);
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
             CREATE TABLE flush_record (
                 seq INTEGER PRIMARY KEY REFERENCES flush (seq),
                 bucket INTEGER NOT NULL REFERENCES recent_bucket (id),
                 rows BLOB NOT NULL
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
        Ok(Self { conn, ids })
    }

    /// Commits `flush` as one record with its flush record; the record's
    /// size in bytes.
    fn commit(&mut self, flush: &FlushCommit, cal: &Calendar) -> anyhow::Result<usize> {
        let fivemin = cal.flush_bucket(Resolution::FiveMin, flush.at)?;
        let tx = self.conn.transaction()?;
        let bucket: i64 = tx
            .prepare_cached("SELECT id FROM recent_bucket WHERE fivemin = ?1")?
            .query_row([fivemin], |r| r.get(0))?;
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
        tx.prepare_cached("INSERT INTO flush_record (seq, bucket, rows) VALUES (?1, ?2, ?3)")?
            .execute(params![flush.seq, bucket, record])?;
        tx.commit()?;
        Ok(record.len())
    }

    /// Checks that the record of flush `seq` holds `expected`: as many
    /// rows, and the last one's rx bytes.
    fn check(&self, seq: i64, expected: &[Delta]) -> anyhow::Result<()> {
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
        if rx_bytes != expected.last().map(|d| d.counters.rx_bytes) {
            bail!("record {seq}'s last delta is not the flush's");
        }
        Ok(())
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

/// `rounds` commits of `n` deltas each way, alternately; each way's first
/// two (which make its entities and bucket rows) are not measured.
pub fn run(n: u32, rounds: usize) -> anyhow::Result<Vec<CommitWay>> {
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
    let mut appender = Appender::open(&dir.0.join("append.db"), &cal, flush(1, 0))?;
    appender.commit(&flush(2, 1), &cal)?;

    let (mut upserts, mut appends, mut record_bytes) = (Vec::new(), Vec::new(), 0);
    let mut expected_rx = 1500 * 3;
    for round in 0..rounds {
        let seq = 3 + round as i64;
        let one = flush(seq, 2 + round as u64);
        let mut upsert = || -> anyhow::Result<()> {
            let t = Instant::now();
            store.commit(&one, &cal)?;
            upserts.push(t.elapsed().as_secs_f64() * 1e3);
            Ok(())
        };
        let mut append = || -> anyhow::Result<()> {
            let t = Instant::now();
            record_bytes = appender.commit(&one, &cal)?;
            appends.push(t.elapsed().as_secs_f64() * 1e3);
            Ok(())
        };
        if round % 2 == 0 {
            upsert()?;
            append()?;
        } else {
            append()?;
            upsert()?;
        }
        // Both ways really stored the flush.
        expected_rx += 1500 * (3 + round as u64);
        appender.check(seq, &one.deltas)?;
        let first = ip_of(&fill::address(0));
        let stored = stored_rx(&upsert_path, first)?;
        if stored != expected_rx {
            bail!("the store holds {stored} rx bytes for {first}, not {expected_rx}");
        }
    }
    eprintln!(
        "trafbench: commit of {n} deltas: upserts {:.1} ms, one record {:.1} ms",
        crate::results::median(&upserts),
        crate::results::median(&appends)
    );
    Ok(vec![
        CommitWay::new(
            "upserts into `recent` (the store's commit)",
            n,
            None,
            upserts,
        ),
        CommitWay::new(
            "one appended record (a design not built)",
            n,
            Some(record_bytes),
            appends,
        ),
    ])
}
