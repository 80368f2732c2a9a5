//! Flush with N live keys: the agent's own flush code ([`Collector`]) on
//! the env's pinned maps and store, after the agent has stopped (its
//! programs stay attached), so nothing else flushes meanwhile.

use anyhow::{Context as _, bail};
use jiff::Timestamp;
use trafmon::{config::Config, counters::Maps, flush::Collector, paths::PinDir, store::Store};

use crate::{
    fill::Live,
    results::{Flush, median},
    world::Env,
};

fn ms(us: i64) -> f64 {
    us as f64 / 1000.0
}

/// Runs `rounds` rounds over `sizes` (rotating the order per round); each
/// flush drains `n` live addresses written into the active side.
pub fn run(env: &Env, live: &Live, sizes: &[u32], rounds: usize) -> anyhow::Result<Vec<Flush>> {
    let config = Config::load(&env.config, true)?;
    let maps = Maps::open(&PinDir::new(&env.pins))?;
    let store = Store::open(&config.store_path())?;
    let mut collector = Collector::new(maps, store, &config, None);
    collector.recover(true)?;
    // The first flush moves whatever the agent left; not measured.
    collector.flush(Timestamp::now())?;
    let mut out: Vec<(u32, Vec<[f64; 5]>)> = sizes.iter().map(|n| (*n, Vec::new())).collect();
    for round in 0..rounds {
        for i in 0..sizes.len() {
            let k = (i + round) % sizes.len();
            let n = sizes[k];
            live.fill_ips(live.active()?, n)?;
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
    }
    Ok(out
        .into_iter()
        .map(|(keys, s)| {
            let col = |i: usize| median(&s.iter().map(|r| r[i]).collect::<Vec<_>>());
            Flush {
                keys,
                total_ms: col(0),
                flip_ms: col(1),
                drain_ms: col(2),
                commit_ms: col(3),
                clear_ms: col(4),
                samples_ms: s.iter().map(|r| r[0]).collect(),
            }
        })
        .collect())
}
