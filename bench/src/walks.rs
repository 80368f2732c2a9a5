//! The kernel's batch walks over a per-CPU hash of N keys, each timed
//! alone: the floor under the flush's drain (one `BPF_MAP_LOOKUP_BATCH`
//! walk) and clear (a `BPF_MAP_DELETE_BATCH` of the drained keys, then a
//! `BPF_MAP_LOOKUP_AND_DELETE_BATCH` walk of what is left), beside
//! the other ways there are to empty such a map, and what creating a
//! fresh one costs (a map swap would do that instead of the clear). The
//! map is made for this benchmark, shaped like the IP maps (key `IpKey`,
//! value `Counters` per CPU, preallocated), and closed after it. It runs
//! with the flush benchmark's max entries and with the smallest power of
//! two that holds the keys: a hash map has as many buckets as that, and
//! the walks visit the empty ones too.

use std::{
    os::fd::{AsFd as _, FromRawFd as _, OwnedFd},
    time::Instant,
};

use anyhow::{Context as _, bail};
use aya_obj::generated::{bpf_cmd, bpf_map_type};
use trafmon::batch;
use trafmon_common::{Counters, IpKey};

use crate::{
    fill,
    results::{SlotMapping, Walk},
    slots,
};

/// The ways to walk the map; the last one is not a walk but what a map
/// swap would do instead of the clear. The drain's and the clear's come
/// first (the results add those two).
#[derive(Clone, Copy)]
enum Method {
    Lookup,
    LookupAndDelete,
    DeleteKnown,
    Zero,
    Create,
}

impl Method {
    const ALL: [Self; 5] = [
        Self::Lookup,
        Self::LookupAndDelete,
        Self::DeleteKnown,
        Self::Zero,
        Self::Create,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Lookup => "`BPF_MAP_LOOKUP_BATCH`",
            Self::LookupAndDelete => "`BPF_MAP_LOOKUP_AND_DELETE_BATCH`",
            Self::DeleteKnown => "`BPF_MAP_DELETE_BATCH` of the drained keys",
            Self::Zero => "`BPF_MAP_UPDATE_BATCH` of zeroes",
            Self::Create => "`BPF_MAP_CREATE` of an empty map as large",
        }
    }

    fn purpose(self) -> &'static str {
        match self {
            Self::Lookup => "the drain: reads every key and its per-CPU values",
            Self::LookupAndDelete => "a clear by walk alone: deletes every key (reading it again)",
            Self::DeleteKnown => "the clear: deletes the drained keys (then walks an emptied map)",
            Self::Zero => "a clear that keeps the keys",
            Self::Create => "a map swap (map-in-map) instead of the clear",
        }
    }
}

/// A preallocated per-CPU hash like `IP_A`.
pub fn create(max_entries: u32) -> anyhow::Result<OwnedFd> {
    create_map(
        bpf_map_type::BPF_MAP_TYPE_PERCPU_HASH,
        size_of::<IpKey>(),
        size_of::<Counters>(),
        max_entries,
        0,
    )
}

/// A map made with the raw `BPF_MAP_CREATE` (aya makes maps only from ELF
/// objects), closed with the fd.
pub fn create_map(
    map_type: bpf_map_type,
    key_size: usize,
    value_size: usize,
    max_entries: u32,
    flags: u32,
) -> anyhow::Result<OwnedFd> {
    let mut attr = batch::zeroed_attr();
    // SAFETY: the map-create member of the union, on a zeroed attr.
    unsafe {
        let create = &mut attr.__bindgen_anon_1;
        create.map_type = map_type as u32;
        create.key_size = u32::try_from(key_size)?;
        create.value_size = u32::try_from(value_size)?;
        create.max_entries = max_entries;
        create.map_flags = flags;
    }
    // SAFETY: attr is zeroed with the map-create fields set.
    let fd = unsafe { batch::bpf(bpf_cmd::BPF_MAP_CREATE, &mut attr) }
        .with_context(|| format!("cannot create a map of type {map_type:?}"))?;
    // SAFETY: BPF_MAP_CREATE returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd)?) })
}

/// Milliseconds since `started`, as the walks table shows them.
pub fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// Keys in the map now.
fn count(fd: &OwnedFd, cpus: usize) -> anyhow::Result<usize> {
    Ok(batch::lookup_all::<IpKey>(fd.as_fd(), cpus, |_, _| {})?)
}

/// Times every method over `n` keys in a map of each of `sizes` max
/// entries (duplicates once), with the slot design's walks; and what
/// mapping that design's arrays of each size costs in memory.
pub fn run(n: u32, sizes: &[u32], rounds: usize) -> anyhow::Result<(Vec<Walk>, Vec<SlotMapping>)> {
    let mut sizes = sizes.to_vec();
    sizes.sort_unstable();
    sizes.dedup();
    let (mut out, mut mappings) = (Vec::new(), Vec::new());
    for max_entries in sizes {
        out.extend(run_one(n, max_entries, rounds)?);
        let (mapped, mapping) = slots::mapped_walks(n, max_entries, rounds)?;
        out.extend(mapped);
        mappings.push(mapping);
        out.extend(slots::syscall_walks(n, max_entries, rounds)?);
        out.extend(slots::bookkeeping(n, max_entries, rounds)?);
        out.extend(slots::empty_walks(max_entries, rounds)?);
    }
    Ok((out, mappings))
}

/// Times every method `rounds` times over a map of `n` keys, the methods'
/// order rotating per round; each walk starts from a freshly filled map.
fn run_one(n: u32, max_entries: u32, rounds: usize) -> anyhow::Result<Vec<Walk>> {
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
    let fd = create(max_entries)?;
    let mut keys: Vec<IpKey> = (0..n).map(fill::address).collect();
    let mut order = fill::order();
    let values = fill::values(keys.len(), cpus);
    let zeroes = vec![Counters::ZERO; keys.len() * cpus];
    let mut samples = vec![Vec::new(); Method::ALL.len()];
    for round in 0..rounds {
        for i in 0..Method::ALL.len() {
            let m = (i + round) % Method::ALL.len();
            let method = Method::ALL[m];
            if let Method::Create = method {
                let started = Instant::now();
                let fresh = create(max_entries)?;
                samples[m].push(ms_since(started));
                // The kernel frees it later, in a worker (not timed).
                drop(fresh);
                continue;
            }
            order.shuffle(&mut keys);
            batch::update(fd.as_fd(), cpus, &keys, &values)?;
            if let Method::DeleteKnown = method {
                // The agent deletes the keys in the order its drain's walk
                // read them (not timed).
                keys.clear();
                batch::lookup_all(fd.as_fd(), cpus, |k, _| keys.push(k))?;
            }
            let started = Instant::now();
            let walked = match method {
                Method::Lookup => count(&fd, cpus)?,
                Method::LookupAndDelete => batch::delete_all::<IpKey>(fd.as_fd(), cpus)?,
                Method::DeleteKnown => batch::delete(fd.as_fd(), &keys).map(|()| keys.len())?,
                Method::Zero => {
                    batch::update(fd.as_fd(), cpus, &keys, &zeroes).map(|()| keys.len())?
                }
                Method::Create => unreachable!("timed above: it walks nothing"),
            };
            samples[m].push(ms_since(started));
            if walked != keys.len() {
                bail!("{} walked {walked} of {n} keys", method.name());
            }
            // Methods that keep the keys leave them; empty the map for
            // the next one (not timed).
            if let Method::Lookup | Method::Zero = method {
                batch::delete(fd.as_fd(), &keys)?;
            }
            let left = count(&fd, cpus)?;
            if left != 0 {
                bail!("{left} keys left after {}", method.name());
            }
        }
    }
    Ok(Method::ALL
        .iter()
        .zip(samples)
        .map(|(method, samples_ms)| {
            Walk::new(method.name(), method.purpose(), n, max_entries, samples_ms)
        })
        .collect())
}
