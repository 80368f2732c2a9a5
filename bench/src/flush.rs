//! Flush with N live keys: the agent's own flush code ([`Collector`]) on
//! the env's pinned maps and store, after the agent has stopped (its
//! programs stay attached), so nothing else flushes meanwhile. Then the
//! fold of a closed 5-minute bucket of N keys into the bucket tables,
//! which the agent runs once per 5 minutes after a flush.

use anyhow::{Context as _, bail};
use jiff::{SignedDuration, Timestamp};
use trafmon::{config::Config, counters::Maps, flush::Collector, paths::PinDir, store::Store};

use crate::{
    fill::Live,
    profile::{Profile, Recorder, Scope},
    results::{Flush, keys, median},
    world::Env,
};

fn ms(us: i64) -> f64 {
    us as f64 / 1000.0
}

/// `rounds` times each size, with its index, the order rotating per round.
fn rotation(sizes: &[u32], rounds: usize) -> impl Iterator<Item = (usize, u32)> + '_ {
    (0..rounds).flat_map(move |round| {
        (0..sizes.len()).map(move |i| {
            let k = (i + round) % sizes.len();
            (k, sizes[k])
        })
    })
}

/// The agent's collector on the env's maps and store, recovered, with
/// whatever the agent left flushed.
fn collector(env: &Env) -> anyhow::Result<Collector> {
    let config = Config::load(&env.config, true)?;
    let maps = Maps::open(&PinDir::new(&env.pins))?;
    let store = Store::open(&config.store_path())?;
    let mut collector = Collector::new(maps, store, &config, None);
    collector.recover(true)?;
    collector.flush(Timestamp::now())?;
    Ok(collector)
}

/// Past the open bucket: every unfolded row.
fn later() -> Timestamp {
    Timestamp::now() + SignedDuration::from_mins(10)
}

/// Writes `n` live addresses and flushes them, so that the next flush of
/// `n` addresses is one of the steady state (not measured).
fn steady(collector: &mut Collector, live: &Live, n: u32) -> anyhow::Result<()> {
    // The 5-minute bucket holds just these live keys (what other sizes
    // left is folded away), and the interval before had the same keys.
    collector.fold(later())?;
    live.fill_ips(live.active()?, n)?;
    collector.flush(Timestamp::now())?;
    live.fill_ips(live.active()?, n)?;
    Ok(())
}

/// Runs `rounds` rounds over `sizes` (rotating the order per round); each
/// flush drains `n` live addresses written into the active side, after a
/// flush of the same addresses, as in steady state. The
/// flushes of the first pass are not folded in between, as in a 5-minute
/// bucket; the second pass folds the `n` rows of one flush. `max_entries`
/// is what the env's config gives the address maps.
pub fn run(
    env: &Env,
    live: &Live,
    max_entries: u32,
    sizes: &[u32],
    rounds: usize,
) -> anyhow::Result<Vec<Flush>> {
    let mut collector = collector(env)?;
    // The addresses first appear in waves spread over their range, as
    // customers come and go over time, so that entity ids do not follow
    // the addresses' order (not measured).
    const WAVES: u32 = 8;
    let largest = sizes.iter().copied().max().unwrap_or(0);
    for wave in 0..WAVES {
        live.fill_ip_wave(live.active()?, largest, wave, WAVES)?;
        collector.flush(Timestamp::now())?;
    }
    let mut out: Vec<(u32, Vec<[f64; 5]>)> = sizes.iter().map(|n| (*n, Vec::new())).collect();
    let mut folds: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    for (k, n) in rotation(sizes, rounds) {
        steady(&mut collector, live, n)?;
        let f = collector
            .flush(Timestamp::now())
            .with_context(|| format!("flush of {n} keys"))?;
        // The flush must really have carried every key into the store.
        if f.entities < n as usize {
            bail!(
                "a flush of {n} live keys stored only {} entities",
                f.entities
            );
        }
        let p = f.phases;
        out[k].1.push([
            ms(f.duration_us),
            ms(p.flip_us),
            ms(p.drain_us),
            ms(p.commit_us),
            ms(p.clear_us),
        ]);
        eprintln!(
            "trafbench: flush of {n} keys: {:.1} ms ({p:?})",
            ms(f.duration_us)
        );
    }
    collector.fold(later())?;
    for (k, n) in rotation(sizes, rounds) {
        live.fill_ips(live.active()?, n)?;
        collector.flush(Timestamp::now())?;
        let folded = collector
            .fold(later())
            .with_context(|| format!("fold of {n} keys"))?
            .context("a flush left nothing to fold")?;
        if folded.rows < n as usize {
            bail!("a fold of {n} keys moved only {} rows", folded.rows);
        }
        folds[k].push(ms(folded.duration_us));
        eprintln!(
            "trafbench: fold of {n} keys: {:.1} ms",
            ms(folded.duration_us)
        );
    }
    Ok(out
        .into_iter()
        .zip(folds)
        .map(|((keys, s), folds)| {
            let col = |i: usize| median(&s.iter().map(|r| r[i]).collect::<Vec<_>>());
            Flush {
                keys,
                max_entries,
                total_ms: col(0),
                flip_ms: col(1),
                drain_ms: col(2),
                commit_ms: col(3),
                clear_ms: col(4),
                fold_ms: median(&folds),
                samples_ms: s.iter().map(|r| r[0]).collect(),
            }
        })
        .collect())
}

/// A profile of `flushes` steady-state flushes of `n` live addresses,
/// sampled only while they run (after [`run`], on the same store).
pub fn profile(env: &Env, live: &Live, n: u32, flushes: usize) -> anyhow::Result<Profile> {
    let mut collector = collector(env)?;
    let mut perf = Recorder::start(Scope::Myself, 4999)?;
    for _ in 0..flushes {
        steady(&mut collector, live, n)?;
        let f = perf.during(|| Ok(collector.flush(Timestamp::now())?))?;
        if f.entities < n as usize {
            bail!(
                "a flush of {n} live keys stored only {} entities",
                f.entities
            );
        }
    }
    perf.finish(
        &format!("Flush: {flushes} flushes of {} live keys", keys(n)),
        None,
    )
}
