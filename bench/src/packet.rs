//! Per-packet cost of each attached program, from the kernel's own
//! bpf_stats (run time over run count), with a given number of live keys
//! in the side the programs write.

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::{Context as _, bail};
use aya::{
    maps::MapData,
    programs::loaded_programs,
    sys::{Stats, enable_stats},
};
use trafmon::paths::PinDir;

use crate::{
    fill::Live,
    floor::Noop,
    profile::{Profile, Recorder, Scope},
    results::{PacketCost, median},
    traffic::{self, Outlast},
    world::Env,
};

/// How the do-nothing program shows in the results.
pub const FLOOR: &str = "floor (empty program)";

/// The UID of the traffic in the sweep over live keys: past the per-CPU
/// array of small UIDs, so that it is counted in the hash map that holds
/// the live keys (and is the last of them).
pub const HASH_UID: u32 = 1_999_999;
/// The UID of the extra run with 10 k keys: the first regular user, counted
/// in the per-CPU array.
pub const ARRAY_UID: u32 = 1_000;
const _: () = assert!(HASH_UID >= trafmon_common::UID_FAST_SLOTS);
const _: () = assert!(ARRAY_UID < trafmon_common::UID_FAST_SLOTS);

/// Whether a UID is counted in the per-CPU array or in the hash map.
pub fn uid_path(uid: u32) -> &'static str {
    if uid < trafmon_common::UID_FAST_SLOTS {
        "array"
    } else {
        "hash"
    }
}

/// The programs of this env's agent: name → id. They are the ones that
/// use this env's pinned selector map.
pub fn programs(env: &Env) -> anyhow::Result<BTreeMap<String, u32>> {
    let selector = MapData::from_pin(PinDir::new(&env.pins).map(trafmon_common::SELECTOR))?
        .info()?
        .id();
    let mut out = BTreeMap::new();
    for info in loaded_programs() {
        let info = info?;
        let ours = info.map_ids()?.is_some_and(|ids| ids.contains(&selector));
        if ours && let Some(name) = info.name_as_str() {
            out.insert(name.to_owned(), info.id());
        }
    }
    if out.is_empty() {
        bail!("no loaded program uses the benchmark's maps");
    }
    Ok(out)
}

/// (run time in ns, run count) of every program in `ids`.
fn snapshot(ids: &BTreeMap<String, u32>) -> anyhow::Result<BTreeMap<String, (u64, u64)>> {
    let mut out = BTreeMap::new();
    for info in loaded_programs() {
        let info = info?;
        if let Some((name, _)) = ids.iter().find(|(_, id)| **id == info.id()) {
            let ns = u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX);
            out.insert(name.clone(), (ns, info.run_count()));
        }
    }
    Ok(out)
}

/// Runs `rounds` rounds; each round measures every size in `sizes` with
/// traffic from [`HASH_UID`], and 10 k keys (or the largest size below)
/// with traffic from [`ARRAY_UID`], in an order that rotates per round,
/// for `window` of traffic both ways.
pub fn run(
    trafgen: &Path,
    env: &Env,
    live: &Live,
    sizes: &[u32],
    rounds: usize,
    window: Duration,
) -> anyhow::Result<Vec<PacketCost>> {
    let mut ids = programs(env)?;
    let noop = Noop::attach(&env.cgroup.path)?;
    ids.insert(FLOOR.to_owned(), noop.id()?);
    // Statistics are on while this fd is open, and off again after.
    let _stats = enable_stats(Stats::RunTime).context("cannot enable bpf_stats")?;
    let mut cases: Vec<(u32, u32)> = sizes.iter().map(|&n| (n, HASH_UID)).collect();
    if let Some(&n) = sizes.iter().filter(|&&n| n <= 10_000).max() {
        cases.push((n, ARRAY_UID));
    }
    let mut samples: BTreeMap<(u32, u32, String), (Vec<f64>, u64)> = BTreeMap::new();
    for round in 0..rounds {
        let mut i = 0;
        while i < cases.len() {
            let (n, uid) = cases[(i + round) % cases.len()];
            let side = live.active()?;
            live.clear(side)?;
            // The traffic's own address (and UID, in the hash) is the
            // last live key.
            live.fill_uids(side, n - 1)?;
            live.fill_ips(side, n - 1)?;
            let before = snapshot(&ids)?;
            let datagrams = traffic::both_ways(
                trafgen,
                &env.pair,
                &env.cgroup,
                uid,
                window,
                Outlast::Senders,
            )?;
            let after = snapshot(&ids)?;
            if live.active()? != side {
                // The agent flushed meanwhile (and emptied the keys): again.
                continue;
            }
            i += 1;
            if datagrams == 0 {
                bail!("no traffic arrived");
            }
            for (name, (t1, c1)) in &after {
                let (t0, c0) = before.get(name).copied().unwrap_or_default();
                let runs = c1 - c0;
                if runs > 0 {
                    let e = samples.entry((n, uid, name.clone())).or_default();
                    e.0.push((t1 - t0) as f64 / runs as f64);
                    e.1 += runs;
                }
            }
            eprintln!("trafbench: per-packet cost, {n} keys, uid {uid}: {datagrams} datagrams");
        }
    }
    let side = live.active()?;
    live.clear(side)?;
    Ok(samples
        .into_iter()
        .map(|((keys, uid, program), (s, runs))| PacketCost {
            keys,
            uid,
            program,
            ns_per_run: median(&s),
            runs,
            samples: s,
        })
        .collect())
}

/// A profile of the programs' runs as [`run`] measures them: traffic both
/// ways from [`HASH_UID`] with `keys` live keys and bpf_stats on.
pub fn profile(
    trafgen: &Path,
    env: &Env,
    live: &Live,
    keys: u32,
    window: Duration,
) -> anyhow::Result<Profile> {
    let _stats = enable_stats(Stats::RunTime).context("cannot enable bpf_stats")?;
    let mut perf = Recorder::start(Scope::System, 1999)?;
    // The agent flushes every 5 minutes: should it flush meanwhile, the
    // rest of the run counts into emptied maps, which is the same code.
    let side = live.active()?;
    live.clear(side)?;
    live.fill_uids(side, keys - 1)?;
    live.fill_ips(side, keys - 1)?;
    let datagrams = perf.during(|| {
        traffic::both_ways(
            trafgen,
            &env.pair,
            &env.cgroup,
            HASH_UID,
            window,
            Outlast::Sinks,
        )
    })?;
    live.clear(live.active()?)?;
    if datagrams == 0 {
        bail!("no traffic arrived");
    }
    perf.finish(
        &format!(
            "Per-packet: UDP both ways as UID {HASH_UID}, {} live keys, bpf_stats on",
            crate::results::keys(keys)
        ),
        Some("trafgen"),
    )
}
