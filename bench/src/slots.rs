//! Counters by slot: a design that trafmon has not built, measured beside
//! the one it has, because it would take both kernel walks out of the
//! flush.
//!
//! Today each side of the address counters is a per-CPU hash, which the
//! flush walks twice, to drain it and to clear it. In the slot design the
//! agent gives every live key a slot, and the key's counters live in a
//! memory-mapped array (`BPF_F_MMAPABLE`) at `(side × CPUs + cpu) × max +
//! slot`. A program looks up the key's slot in its side's slot hash, then
//! the array element of its CPU, and adds; a key without a slot is counted
//! in the side's per-CPU hash as today. The flush reads the idle side's
//! slots through the mapping and zeroes them, with no system call per key,
//! and walks only the keys that are new since the last flush.
//!
//! The slot hash exists once per side, like every other map, and only the
//! agent writes it, only while its side is idle (after the grace period):
//! it gives the keys the drain found in the per-CPU hash their slots, and
//! takes back the slots of keys idle for a while; the other side's hash
//! gets the same at the next flush. A slot goes back to the free list when
//! neither side's hash holds its key and both sides' counters have been
//! drained. One shared hash written under running programs would not do:
//! the kernel hands a deleted or replaced hash element to the next update
//! at once (its free list, or the per-CPU spare element of an update), so
//! a program still holding it could read another key's slot. Nothing is
//! allocated in the kernel, and after a crash the agent rebuilds its slot
//! table from the two pinned slot hashes.
//!
//! Measured here, each beside its counterpart of today:
//! - the drain and the clear through the mapping, as rows of the kernel
//!   walks table ([`walks`]), and what the mapping adds to the resident
//!   set (the kernel maps such an array whole at `mmap`, and all of it
//!   counts at once, before any access);
//! - the same drain and clear with system calls on a per-CPU array of
//!   slots instead, which needs no mapping, also rows of that table;
//! - the bookkeeping: writing every key's slot into a slot hash, and
//!   deleting them all, also rows of that table (what a flush pays for keys
//!   that came or went; nothing in a steady state);
//! - the walks of the side's per-CPU hash that its flush still makes, over
//!   the map empty (as in a steady state), also rows of that table;
//! - the counting in the kernel's test loop: programs that differ only in
//!   it (a per-CPU hash lookup; the same with a 4-byte IPv4 key, as a map
//!   of IPv4 addresses alone would count, also not built; or a slot lookup
//!   then an array lookup; or the address's place in a configured prefix
//!   then an array lookup, with no hash at all, a third design not built;
//!   each then two atomic adds), beside an empty program.

use std::{
    net::{IpAddr, Ipv4Addr},
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd},
    ptr::NonNull,
    time::Instant,
};

use anyhow::{Context as _, bail};
use aya_obj::generated::{
    BPF_F_MMAPABLE, bpf_attach_type, bpf_attr, bpf_cmd, bpf_map_type, bpf_prog_type,
};
use trafmon::{
    batch::{self, bpf, zeroed_attr},
    counters::{key_of, sum_cpus},
};
use trafmon_common::{Counters, IpKey};

use crate::{
    asm::{self, R0, R1, R2, R6, R10},
    fill, floor, memory,
    results::{LoopCost, SlotMapping, Walk},
    testrun, walks,
};

/// The key's slot in the keys array: an `IpKey`, padded as the kernel's
/// array pads every element (to 8 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
struct KeySlot {
    key: IpKey,
    _pad: u32,
}

/// A shared, writable mapping of a whole `BPF_F_MMAPABLE` array; unmapped
/// on drop.
struct Mapped<T> {
    ptr: NonNull<T>,
    len: usize,
}

impl<T: Copy> Mapped<T> {
    /// Maps the `len` elements of `map`, whose values are `T`s.
    fn new(map: BorrowedFd<'_>, len: usize) -> anyhow::Result<Self> {
        let bytes = (len * size_of::<T>()).next_multiple_of(page_size());
        // SAFETY: a fresh shared mapping of the map's fd, which the kernel
        // sizes and aligns to pages; nothing else in this process uses it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("cannot mmap an array map");
        }
        let ptr = NonNull::new(ptr.cast()).context("mmap returned null")?;
        Ok(Self { ptr, len })
    }

    fn slice(&self) -> &[T] {
        // SAFETY: `len` elements of T are mapped; no program writes the
        // array while a slice of it lives (none is attached to it, and the
        // test loop runs between such reads).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn slice_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `slice`, and `&mut self` makes it the only one.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for Mapped<T> {
    fn drop(&mut self) {
        let bytes = (self.len * size_of::<T>()).next_multiple_of(page_size());
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), bytes) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// The two arrays of one side: keys by slot (standing in for the agent's
/// table of them), counters by CPU and slot.
struct Arrays {
    /// Kept open beside its mapping, as the agent would keep it.
    _keys_map: OwnedFd,
    counts_map: OwnedFd,
    keys: Mapped<KeySlot>,
    counts: Mapped<Counters>,
    cpus: usize,
    max: usize,
}

impl Arrays {
    fn new(max_entries: u32, cpus: usize) -> anyhow::Result<Self> {
        let array = bpf_map_type::BPF_MAP_TYPE_ARRAY;
        let flags = BPF_F_MMAPABLE;
        let max = max_entries as usize;
        let total = u32::try_from(max * cpus).context("too many slots for one array")?;
        let keys_map = walks::create_map(array, 4, size_of::<KeySlot>(), max_entries, flags)?;
        let counts_map = walks::create_map(array, 4, size_of::<Counters>(), total, flags)?;
        let keys = Mapped::new(keys_map.as_fd(), max)?;
        let counts = Mapped::new(counts_map.as_fd(), max * cpus)?;
        Ok(Self {
            _keys_map: keys_map,
            counts_map,
            keys,
            counts,
            cpus,
            max,
        })
    }

    /// What a flush's drain would do: every used slot's key and its
    /// counters summed over the CPUs, for the slots that saw traffic.
    fn drain(&self, used: usize) -> Vec<(IpKey, Counters)> {
        let (keys, counts) = (self.keys.slice(), self.counts.slice());
        let mut out = Vec::with_capacity(used);
        for (slot, k) in keys[..used].iter().enumerate() {
            let sum = sum_cpus((0..self.cpus).map(|cpu| &counts[cpu * self.max + slot]));
            if !sum.is_zero() {
                out.push((k.key, sum));
            }
        }
        out
    }

    /// What its clear would do: zero the used slots of every CPU.
    fn clear(&mut self, used: usize) {
        self.fill(used, Counters::ZERO);
    }

    /// Writes `value` into the used slots of every CPU.
    fn fill(&mut self, used: usize, value: Counters) {
        let max = self.max;
        let counts = self.counts.slice_mut();
        for cpu in 0..self.cpus {
            counts[cpu * max..][..used].fill(value);
        }
    }
}

/// The drain and the clear through the mapping of arrays of
/// `max_entries` slots, `n` of them used, `rounds` times each: two rows for
/// the walks table. Every drain must find each key with every CPU's
/// counters, and every clear must leave nothing.
///
/// Also returns what making and mapping the arrays added to this process's
/// resident set, before any access.
pub fn mapped_walks(
    n: u32,
    max_entries: u32,
    rounds: usize,
) -> anyhow::Result<([Walk; 2], SlotMapping)> {
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
    let before = memory::status_mib(std::process::id(), "VmRSS:")?;
    let mut arrays = Arrays::new(max_entries, cpus)?;
    let mapping = SlotMapping {
        max_entries,
        cpus,
        mapped_mib: ((size_of::<KeySlot>() + size_of::<Counters>() * cpus) * max_entries as usize)
            as f64
            / f64::from(1 << 20),
        resident_mib: memory::status_mib(std::process::id(), "VmRSS:")? - before,
    };
    let used = n as usize;
    for (slot, k) in arrays.keys.slice_mut()[..used].iter_mut().enumerate() {
        *k = KeySlot {
            key: fill::address(slot as u32),
            _pad: 0,
        };
    }
    let value = fill::values(1, 1)[0];
    let want = sum_cpus(std::iter::repeat_n(&value, cpus));
    let (mut drains, mut clears) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        arrays.fill(used, value);
        let started = Instant::now();
        let drained = arrays.drain(used);
        drains.push(walks::ms_since(started));
        let started = Instant::now();
        arrays.clear(used);
        clears.push(walks::ms_since(started));
        if drained.len() != used || drained.iter().any(|(_, c)| *c != want) {
            bail!("the mapped drain found {} of {n} keys whole", drained.len());
        }
        if !arrays.drain(used).is_empty() {
            bail!("the mapped clear left counters behind");
        }
    }
    let walks = [
        Walk::new(
            "reads through `mmap` of a slot array",
            "a drain by slot (a design not built, see below)",
            n,
            max_entries,
            drains,
        ),
        Walk::new(
            "zeroes through `mmap` of a slot array",
            "a clear by slot (a design not built)",
            n,
            max_entries,
            clears,
        ),
    ];
    Ok((walks, mapping))
}

/// The drain and the clear of the same slots without a mapping, `rounds`
/// times each, as two rows for the walks table: the counters in a per-CPU
/// array of `max_entries` slots (`n` used), read with
/// `BPF_MAP_LOOKUP_BATCH` and paired with their keys from the agent's own
/// table of them, then zeroed with `BPF_MAP_UPDATE_BATCH`, a chunk of
/// slots per call ([`batch`]). Every drain must find each key with every
/// CPU's counters, and every clear must leave nothing.
pub fn syscall_walks(n: u32, max_entries: u32, rounds: usize) -> anyhow::Result<[Walk; 2]> {
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
    let array = walks::create_map(
        bpf_map_type::BPF_MAP_TYPE_PERCPU_ARRAY,
        4,
        size_of::<Counters>(),
        max_entries,
        0,
    )?;
    let keys: Vec<IpKey> = (0..n).map(fill::address).collect();
    let slots: Vec<u32> = (0..n).collect();
    let values = fill::values(slots.len(), cpus);
    let zeroes = vec![Counters::ZERO; slots.len() * cpus];
    let want = sum_cpus(&values[..cpus]);
    let drain = || -> std::io::Result<Vec<(IpKey, Counters)>> {
        let mut out = Vec::with_capacity(keys.len());
        batch::lookup_range(array.as_fd(), cpus, 0, n, |slot, per_cpu| {
            let sum = sum_cpus(per_cpu);
            if !sum.is_zero() {
                out.push((keys[slot as usize], sum));
            }
        })?;
        Ok(out)
    };
    let (mut drains, mut clears) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        batch::update(array.as_fd(), cpus, &slots, &values)?;
        let started = Instant::now();
        let drained = drain()?;
        drains.push(walks::ms_since(started));
        let started = Instant::now();
        batch::update(array.as_fd(), cpus, &slots, &zeroes)?;
        clears.push(walks::ms_since(started));
        if drained.len() != keys.len() || drained.iter().any(|(_, c)| *c != want) {
            bail!(
                "the slot array's drain found {} of {n} keys whole",
                drained.len()
            );
        }
        if !drain()?.is_empty() {
            bail!("zeroing the slot array left counters behind");
        }
    }
    Ok([
        Walk::new(
            "`BPF_MAP_LOOKUP_BATCH` of a per-CPU slot array",
            "a drain by slot without the mapping (a design not built)",
            n,
            max_entries,
            drains,
        ),
        Walk::new(
            "`BPF_MAP_UPDATE_BATCH` of zeroes into it",
            "a clear by slot without the mapping (a design not built)",
            n,
            max_entries,
            clears,
        ),
    ])
}

/// The two walks of a per-CPU hash of `max_entries` that holds no key,
/// `rounds` times each, as rows for the walks table: the slot design's
/// flush still drains and clears the side's per-CPU hash, which holds only
/// the keys new since the last flush, none in a steady state, but a walk
/// visits every bucket. Both must find nothing.
pub fn empty_walks(max_entries: u32, rounds: usize) -> anyhow::Result<[Walk; 2]> {
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
    let hash = walks::create(max_entries)?;
    let (mut reads, mut deletes) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        let read = batch::lookup_all::<IpKey>(hash.as_fd(), cpus, |_, _| {})?;
        reads.push(walks::ms_since(started));
        let started = Instant::now();
        let deleted = batch::delete_all::<IpKey>(hash.as_fd(), cpus)?;
        deletes.push(walks::ms_since(started));
        if read + deleted != 0 {
            bail!("the empty map held {} keys", read.max(deleted));
        }
    }
    Ok([
        Walk::new(
            "`BPF_MAP_LOOKUP_BATCH` of the same map, empty",
            "a drain by slot still walks the hash of keys without a slot (a design not built)",
            0,
            max_entries,
            reads,
        ),
        Walk::new(
            "`BPF_MAP_LOOKUP_AND_DELETE_BATCH` of the same map, empty",
            "and so does a clear by slot (a design not built)",
            0,
            max_entries,
            deletes,
        ),
    ])
}

/// The address the test programs count: the test frame's destination.
fn probe() -> IpKey {
    key_of(IpAddr::from([198, 51, 100, 1]))
}

/// The IP length of the test frame, which the programs add as bytes.
const IP_LEN: i32 = 46;

/// Puts `key` on the stack at `r10 - 24`, four bytes at a time.
fn key_on_stack(key: &IpKey) -> Vec<u64> {
    // SAFETY: IpKey is repr(C) plain data of 20 bytes, no padding.
    let bytes: [u8; 20] = unsafe { std::mem::transmute(*key) };
    bytes
        .chunks(4)
        .zip((-24i16..).step_by(4))
        .map(|(w, off)| asm::store_imm32(R10, off, i32::from_le_bytes([w[0], w[1], w[2], w[3]])))
        .collect()
}

/// `r0 = bpf_map_lookup_elem(map, r10 + key_at)`.
fn lookup(map: BorrowedFd<'_>, key_at: i32) -> Vec<u64> {
    let mut p = vec![asm::mov(R2, R10), asm::add_imm(R2, key_at)];
    p.extend(asm::load_map(R1, map));
    p.push(asm::call(asm::MAP_LOOKUP_ELEM));
    p
}

/// Adds one received packet of `IP_LEN` bytes to the `Counters` at `r0`.
fn count() -> [u64; 4] {
    [
        asm::mov_imm(R1, IP_LEN),
        asm::atomic_add64(R0, R1, 0),
        asm::mov_imm(R1, 1),
        asm::atomic_add64(R0, R1, 8),
    ]
}

/// Looks up the key at `r10 + key_at` in `map` and, if found, counts the
/// packet in its value; a miss jumps past the adds.
fn lookup_and_count(map: BorrowedFd<'_>, key_at: i32) -> Vec<u64> {
    let mut p = lookup(map, key_at);
    p.push(asm::jump_if_eq(R0, 0, skip(count().len())));
    p.extend(count());
    p
}

/// Returns "next" (TC_ACT_UNSPEC), as trafmon's tc programs do.
fn pass() -> [u64; 2] {
    [asm::mov_imm(R0, testrun::TC_NEXT), asm::exit()]
}

fn skip(insns: usize) -> i16 {
    i16::try_from(insns).unwrap_or(i16::MAX)
}

/// Today's counting: the key's per-CPU value in a hash.
fn by_hash(hash: BorrowedFd<'_>) -> Vec<u64> {
    counted_in(hash, key_on_stack(&probe()))
}

/// The test frame's destination as an IPv4-only key: its four address
/// bytes, as a map of 4-byte keys would hold them.
const PROBE_V4: [u8; 4] = [198, 51, 100, 1];

fn probe_v4() -> u32 {
    u32::from_ne_bytes(PROBE_V4)
}

/// Live IPv4 keys beside the probe, from the benchmarking range
/// 198.18.0.0/15 (map keys only: nothing is sent to them).
fn address_v4(i: u32) -> u32 {
    u32::from_ne_bytes(Ipv4Addr::from(0xc612_0000 + i).octets())
}

/// Today's counting with a 4-byte key, as a map of IPv4 addresses alone
/// would count them (not built).
fn by_hash_v4(hash: BorrowedFd<'_>) -> Vec<u64> {
    counted_in(
        hash,
        vec![asm::store_imm32(R10, -24, i32::from_ne_bytes(PROBE_V4))],
    )
}

/// `key`, the instructions that put a key at `r10 - 24`, then a lookup of
/// it in `hash` and the adds to its per-CPU value.
fn counted_in(hash: BorrowedFd<'_>, key: Vec<u64>) -> Vec<u64> {
    let mut p = key;
    p.extend(lookup_and_count(hash, -24));
    p.extend(pass());
    p
}

/// The slot design's: the key's slot in a hash, then its element of the
/// array for this CPU.
fn by_slot(slots: BorrowedFd<'_>, counts: BorrowedFd<'_>, max: i32) -> Vec<u64> {
    let mut p = key_on_stack(&probe());
    p.extend(lookup(slots, -24));
    let mut found = vec![
        asm::load32(R6, R0, 0),
        asm::call(asm::GET_SMP_PROCESSOR_ID),
        asm::mul_imm(R0, max),
        asm::add(R0, R6),
        asm::store32(R10, R0, -28),
    ];
    found.extend(lookup_and_count(counts, -28));
    p.push(asm::jump_if_eq(R0, 0, skip(found.len())));
    p.extend(found);
    p.extend(pass());
    p
}

/// The prefix the prefix design counts in: the smallest aligned block of
/// addresses around the probe with room for `keys` (its first address, as
/// a number, and its size). Map slots only: nothing is sent to them.
fn prefix_of(keys: u32) -> (u32, u32) {
    let size = keys.max(1).next_power_of_two();
    (u32::from_be_bytes(PROBE_V4) & !(size - 1), size)
}

/// A design not built: the addresses of a configured prefix counted by
/// their place in it, in a per-CPU array of the prefix's size, with no hash
/// at all. The address is taken as the frame holds it and turned into a
/// number; its place is the number minus the prefix's first address, which
/// is also the test whether it lies inside (an address outside would go to
/// the hash, as today: here, to the return).
fn by_prefix(counts: BorrowedFd<'_>, first: u32, size: u32) -> Vec<u64> {
    let mut p = vec![
        asm::mov32_imm(R6, i32::from_le_bytes(PROBE_V4)),
        asm::to_be32(R6),
        asm::sub32_imm(R6, first.cast_signed()),
    ];
    let mut inside = vec![asm::store32(R10, R6, -28)];
    inside.extend(lookup_and_count(counts, -28));
    p.push(asm::jump_if_ge(R6, size.cast_signed(), skip(inside.len())));
    p.extend(inside);
    p.extend(pass());
    p
}

/// The attr of a one-element syscall on `key` of `map`, with the value at
/// `value`.
fn element(map: BorrowedFd<'_>, key: &IpKey, value: u64) -> bpf_attr {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integer fields of the union.
    unsafe {
        let u = &mut attr.__bindgen_anon_2;
        u.map_fd = map.as_raw_fd() as u32;
        u.key = std::ptr::from_ref(key) as u64;
        u.__bindgen_anon_1.value = value;
    }
    attr
}

/// Writes `value` under `key` in a map with the one-element syscall.
fn update<V>(map: BorrowedFd<'_>, key: &IpKey, value: &V) -> anyhow::Result<()> {
    let mut attr = element(map, key, std::ptr::from_ref(value) as u64);
    // SAFETY: key and value outlive the call and have the map's sizes.
    unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr) }.context("cannot write a slot")?;
    Ok(())
}

/// The slot of `key` in a slot hash, read with the one-element syscall.
fn slot_of(map: BorrowedFd<'_>, key: &IpKey) -> anyhow::Result<Option<u32>> {
    let mut slot = 0u32;
    let mut attr = element(map, key, std::ptr::from_mut(&mut slot) as u64);
    // SAFETY: key and value outlive the call and have the map's sizes.
    match unsafe { bpf(bpf_cmd::BPF_MAP_LOOKUP_ELEM, &mut attr) } {
        Ok(_) => Ok(Some(slot)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e).context("cannot read a slot"),
    }
}

/// An empty slot hash of `max_entries`: address key, slot value.
fn slot_hash(max_entries: u32) -> anyhow::Result<OwnedFd> {
    walks::create_map(
        bpf_map_type::BPF_MAP_TYPE_HASH,
        size_of::<IpKey>(),
        size_of::<u32>(),
        max_entries,
        0,
    )
}

/// The agent's bookkeeping in the slot design, as rows for the walks
/// table: writing `n` keys' slots into a slot hash of `max_entries` (what
/// a flush pays for keys that are new since the last one) and deleting
/// them again (for keys that went idle), `rounds` times each, one side's
/// hash (the other side's gets the same at the next flush). After each
/// write every key must have its slot, after each delete none may be
/// left.
pub fn bookkeeping(n: u32, max_entries: u32, rounds: usize) -> anyhow::Result<[Walk; 2]> {
    let hash = slot_hash(max_entries)?;
    let mut keys: Vec<IpKey> = (0..n).map(fill::address).collect();
    let slots: Vec<u32> = (0..n).collect();
    let mut order = fill::order();
    let (mut gives, mut takes) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Keys come and go in orders of their own, each round anew (the
        // i-th key of a round gets slot i).
        order.shuffle(&mut keys);
        let started = Instant::now();
        batch::update(hash.as_fd(), 1, &keys, &slots)?;
        gives.push(walks::ms_since(started));
        for (key, slot) in keys.iter().zip(&slots) {
            if slot_of(hash.as_fd(), key)? != Some(*slot) {
                bail!("the slot hash lost the slot of a key it was given");
            }
        }
        let mut going = keys.clone();
        order.shuffle(&mut going);
        let started = Instant::now();
        batch::delete(hash.as_fd(), &going)?;
        takes.push(walks::ms_since(started));
        for key in &keys {
            if slot_of(hash.as_fd(), key)?.is_some() {
                bail!("the slot hash kept a key it deleted");
            }
        }
    }
    Ok([
        Walk::new(
            "`BPF_MAP_UPDATE_BATCH` of slot numbers into a slot hash",
            "slots for keys new since the last flush (a design not built)",
            n,
            max_entries,
            gives,
        ),
        Walk::new(
            "`BPF_MAP_DELETE_BATCH` from a slot hash",
            "slots taken back from idle keys (a design not built)",
            n,
            max_entries,
            takes,
        ),
    ])
}

/// The test loop: the ways of counting, with `keys` live keys in maps
/// of `max_entries`, and an empty tc program, `rounds` rounds of `repeat`
/// runs each in a rotating order. Each must have counted every run once.
pub fn loops(
    keys: u32,
    max_entries: u32,
    rounds: usize,
    repeat: u32,
) -> anyhow::Result<Vec<LoopCost>> {
    crate::stats_off()?;
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
    let live: Vec<IpKey> = (0..keys - 1).map(fill::address).chain([probe()]).collect();
    let hash = walks::create(max_entries)?;
    batch::update(
        hash.as_fd(),
        cpus,
        &live,
        &vec![Counters::ZERO; live.len() * cpus],
    )?;
    // At most as many IPv4 keys as the range holds.
    let live_v4: Vec<u32> = (0..(keys - 1).min(1 << 17))
        .map(address_v4)
        .chain([probe_v4()])
        .collect();
    let hash_v4 = walks::create_map(
        bpf_map_type::BPF_MAP_TYPE_PERCPU_HASH,
        size_of::<u32>(),
        size_of::<Counters>(),
        max_entries,
        0,
    )?;
    batch::update(
        hash_v4.as_fd(),
        cpus,
        &live_v4,
        &vec![Counters::ZERO; live_v4.len() * cpus],
    )?;
    let slot_hash = slot_hash(max_entries)?;
    for (slot, key) in (0u32..).zip(&live) {
        update(slot_hash.as_fd(), key, &slot)?;
    }
    let arrays = Arrays::new(max_entries, cpus)?;
    let max = i32::try_from(max_entries)?;
    let (first, size) = prefix_of(keys);
    let prefix_counts = walks::create_map(
        bpf_map_type::BPF_MAP_TYPE_PERCPU_ARRAY,
        size_of::<u32>(),
        size_of::<Counters>(),
        size,
        0,
    )?;
    let tc = bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS;
    let any = bpf_attach_type::BPF_CGROUP_INET_INGRESS;
    let programs = [
        (
            "per-CPU hash (trafmon's)",
            asm::load(tc, any, &by_hash(hash.as_fd()), "trafbench_hash")?,
        ),
        (
            "per-CPU hash, 4-byte IPv4 key (not built)",
            asm::load(tc, any, &by_hash_v4(hash_v4.as_fd()), "trafbench_hash4")?,
        ),
        (
            "slot hash, then array (not built)",
            asm::load(
                tc,
                any,
                &by_slot(slot_hash.as_fd(), arrays.counts_map.as_fd(), max),
                "trafbench_slot",
            )?,
        ),
        (
            "place in a prefix, then array (not built)",
            asm::load(
                tc,
                any,
                &by_prefix(prefix_counts.as_fd(), first, size),
                "trafbench_place",
            )?,
        ),
    ];
    let empty = floor::load_returning(tc, any, testrun::TC_NEXT, "trafbench_empty")?;
    let data = testrun::frame();
    let mut samples = vec![(Vec::new(), Vec::new()); programs.len()];
    for round in 0..rounds {
        for i in 0..programs.len() {
            let k = (i + round) % programs.len();
            let ours = testrun::test_run(programs[k].1.as_fd(), &data, repeat, testrun::TC_NEXT)?;
            let floor = testrun::test_run(empty.as_fd(), &data, repeat, testrun::TC_NEXT)?;
            samples[k].0.push(f64::from(ours));
            samples[k].1.push(f64::from(floor));
        }
    }
    let runs = u64::from(repeat) * rounds as u64;
    let mut in_hash = None;
    batch::lookup_all::<IpKey>(hash.as_fd(), cpus, |k, v| {
        if k == probe() {
            in_hash = Some(sum_cpus(v));
        }
    })?;
    let mut in_hash_v4 = None;
    batch::lookup_all::<u32>(hash_v4.as_fd(), cpus, |k, v| {
        if k == probe_v4() {
            in_hash_v4 = Some(sum_cpus(v));
        }
    })?;
    let slot = live.len() - 1;
    let counts = arrays.counts.slice();
    let in_slot = sum_cpus((0..cpus).map(|cpu| &counts[cpu * arrays.max + slot]));
    let place = u32::from_be_bytes(PROBE_V4) - first;
    let mut in_prefix = Counters::ZERO;
    batch::lookup_range(prefix_counts.as_fd(), cpus, place, place + 1, |_, v| {
        in_prefix = sum_cpus(v);
    })?;
    for (what, got) in [
        ("hash", in_hash.unwrap_or_default()),
        ("4-byte key hash", in_hash_v4.unwrap_or_default()),
        ("slot array", in_slot),
        ("prefix array", in_prefix),
    ] {
        let got = (got.rx_packets, got.rx_bytes);
        let want = (runs, runs * IP_LEN as u64);
        if got != want {
            bail!("the {what} program counted {got:?} (packets, bytes), not {want:?}");
        }
    }
    Ok(programs
        .iter()
        .zip(samples)
        .map(|((name, _), (ours, floor))| {
            LoopCost::new(name, "its destination address", keys, repeat, ours, floor)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prefix holds the probe and has room for every key.
    #[test]
    fn the_prefix_holds_the_probe_and_the_keys() {
        for keys in [1, 1_000, 10_000, 100_000] {
            let (first, size) = prefix_of(keys);
            let probe = u32::from_be_bytes(PROBE_V4);
            assert!(size >= keys && size.is_power_of_two());
            assert!(first <= probe && probe - first < size, "{keys} keys");
        }
        assert_eq!(
            prefix_of(10_000),
            (u32::from(Ipv4Addr::new(198, 51, 64, 0)), 16_384)
        );
    }

    /// The immediates of `key_on_stack`, put back together, are the key's
    /// 20 bytes at `r10 - 24` onwards.
    #[test]
    fn the_key_on_the_stack_is_the_keys_bytes() {
        let key = key_of("2001:db8::1".parse().unwrap());
        let mut stack = [0u8; 24];
        for insn in key_on_stack(&key) {
            assert_eq!(insn & 0xff, 0x62, "a 32-bit store of an immediate");
            assert_eq!((insn >> 8) & 0x0f, u64::from(R10));
            let off = usize::try_from(24 + i64::from((insn >> 16) as u16 as i16)).unwrap();
            stack[off..off + 4].copy_from_slice(&((insn >> 32) as u32).to_le_bytes());
        }
        let mut want = [0u8; 24];
        want[..16].copy_from_slice(&key.addr);
        want[16..20].copy_from_slice(&key.family.to_ne_bytes());
        assert_eq!(stack, want);
    }

    /// Every miss of each program jumps to its last two instructions:
    /// return "next".
    #[test]
    fn every_miss_jumps_to_the_return() {
        // SAFETY: only the number is encoded; nothing uses the fd.
        let fd = unsafe { BorrowedFd::borrow_raw(0) };
        for prog in [
            by_hash(fd),
            by_slot(fd, fd, 1 << 17),
            by_prefix(fd, 0, 1 << 14),
        ] {
            let n = prog.len();
            let jumps: Vec<usize> = (0..n)
                .filter(|&at| matches!(prog[at] & 0xff, 0x15 | 0x35))
                .collect();
            assert!(!jumps.is_empty());
            for at in jumps {
                let off = usize::from((prog[at] >> 16) as u16);
                assert_eq!(at + 1 + off, n - 2, "the jump at {at}");
            }
            assert_eq!(prog[n - 1], asm::exit());
        }
    }
}
