//! Report latency: a store holding a year of synthetic history for N users
//! (every resolution, as far back as the default retention keeps it), then
//! `trafmon report` timed as a process, output read to the end.

use std::{collections::BTreeSet, path::Path, process::Command, time::Instant};

use anyhow::{Context as _, bail};
use jiff::{Timestamp, ToSpan as _};
use trafmon::{
    calendar::{Calendar, Resolution},
    config::Config,
    store::Store,
};

use crate::results::{Latency, median};

/// How far back each resolution goes (the default retention, capped at a
/// year), and the step that visits every bucket of it.
fn reach(res: Resolution) -> (i64, i64) {
    const DAY: i64 = 86_400;
    match res {
        Resolution::FiveMin => (2 * DAY, 300),
        Resolution::Hour => (60 * DAY, 3600),
        Resolution::Day | Resolution::Month => (365 * DAY, DAY),
    }
}

/// Every bucket start of `res` in the year before `now`.
fn buckets(cal: &Calendar, res: Resolution, now: Timestamp) -> anyhow::Result<Vec<i64>> {
    let (back, step) = reach(res);
    let mut out = BTreeSet::new();
    let mut t = now.as_second() - back;
    while t <= now.as_second() {
        out.insert(cal.bucket(res, Timestamp::from_second(t)?)?);
        t += step;
    }
    Ok(out.into_iter().collect())
}

/// Fills the store at `path` with `users` users' history; returns the rows.
fn synthesize(path: &Path, cal: &Calendar, users: u32) -> anyhow::Result<u64> {
    drop(Store::open(path)?);
    let mut conn = rusqlite::Connection::open(path)?;
    let tx = conn.transaction()?;
    let now = Timestamp::now() - 1.second();
    let mut rows = 0u64;
    {
        let mut entity =
            tx.prepare("INSERT INTO entity (id, kind, key, label) VALUES (?1, 'uid', ?2, ?3)")?;
        for u in 0..users {
            let uid = 2_000_000 + u;
            entity.execute(rusqlite::params![
                u + 1,
                uid.to_string(),
                format!("user{u}")
            ])?;
        }
        for res in Resolution::ALL {
            let table = res.table();
            let mut insert = tx.prepare(&format!(
                "INSERT INTO {table} (entity, start, rx_bytes, rx_packets, tx_bytes, tx_packets) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?;
            for start in buckets(cal, res, now)? {
                for u in 0..users {
                    let rx = 1_000_000 + i64::from(u) * 7919 + start % 1_000_003;
                    let tx_bytes = rx / 3;
                    insert.execute(rusqlite::params![
                        u + 1,
                        start,
                        rx,
                        rx / 1000,
                        tx_bytes,
                        tx_bytes / 1000
                    ])?;
                    rows += 1;
                }
            }
        }
    }
    tx.commit()?;
    Ok(rows)
}

/// Times `trafmon --config CONFIG report ARGS`, `runs` times each, taking
/// turns.
pub fn run(
    trafmon: &Path,
    dir: &Path,
    users: u32,
    commands: &[&[&str]],
    runs: usize,
) -> anyhow::Result<Vec<Latency>> {
    std::fs::create_dir_all(dir)?;
    let config_path = dir.join("trafmon.toml");
    std::fs::write(
        &config_path,
        format!("state_dir = \"{}\"\n", dir.join("state").display()),
    )?;
    let config = Config::load(&config_path, true)?;
    let started = Instant::now();
    let rows = synthesize(&config.store_path(), &config.calendar(), users)
        .context("cannot write the synthetic history")?;
    eprintln!(
        "trafbench: {rows} history rows for {users} users in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut samples = vec![Vec::new(); commands.len()];
    let mut lines = vec![0; commands.len()];
    for round in 0..runs {
        for i in 0..commands.len() {
            let k = (i + round) % commands.len();
            let t = Instant::now();
            let out = Command::new(trafmon)
                .arg("--config")
                .arg(&config_path)
                .args(commands[k])
                .output()?;
            let took = t.elapsed();
            if !out.status.success() {
                bail!(
                    "trafmon {} failed: {}",
                    commands[k].join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            lines[k] = out.stdout.iter().filter(|b| **b == b'\n').count();
            samples[k].push(took.as_secs_f64() * 1000.0);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(commands
        .iter()
        .zip(samples)
        .zip(lines)
        .map(|((cmd, s), output_lines)| Latency {
            command: format!("trafmon {}", cmd.join(" ")),
            users,
            history_rows: rows,
            output_lines,
            median_ms: median(&s),
            samples_ms: s,
        })
        .collect())
}
