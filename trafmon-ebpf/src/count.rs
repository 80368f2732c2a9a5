//! The per-packet path: a lookup, an in-place atomic add and, on a miss
//! only, an insert; a failed insert goes to the overflow counters.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    maps::{PerCpuArray, PerCpuHashMap},
};
use trafmon_common::{Counters, fast_slot, overflow_slot};

use crate::maps::OVERFLOW;

/// Which half of [`Counters`] a packet goes to.
#[derive(Clone, Copy)]
pub enum Dir {
    Rx,
    Tx,
}

/// Adds `v` to `*p` with the BPF atomic add instruction (`BPF_ATOMIC |
/// BPF_ADD`, no fetch). Per-CPU values still need it: a cgroup_skb egress
/// program runs in process context and a softirq on the same CPU can run it
/// again for the same UID (a TCP ACK sent from the receive path) between a
/// plain load and store, which would lose that packet. `AtomicU64` does not
/// compile for bpfel-unknown-none with this toolchain, hence inline asm.
#[inline(always)]
pub fn atomic_add(p: *mut u64, v: u64) {
    // SAFETY: `p` points into a map value returned by the kernel (or a
    // stack value); the instruction is the kernel's own atomic add.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({p} + 0) += {v}",
            p = in(reg) p,
            v = in(reg) v,
            options(nostack),
        );
    }
}

/// Adds one packet of `bytes` to the counters at `c`.
#[inline(always)]
fn bump(c: *mut Counters, dir: Dir, bytes: u64) {
    // SAFETY: `c` is a valid, aligned map value pointer.
    unsafe {
        match dir {
            Dir::Rx => {
                atomic_add(&raw mut (*c).rx_bytes, bytes);
                atomic_add(&raw mut (*c).rx_packets, 1);
            }
            Dir::Tx => {
                atomic_add(&raw mut (*c).tx_bytes, bytes);
                atomic_add(&raw mut (*c).tx_packets, 1);
            }
        }
    }
}

/// Counts one packet of `bytes` for `key` in `map` (the active side).
#[inline(always)]
pub fn count<K>(
    map: &PerCpuHashMap<K, Counters>,
    key: &K,
    dir: Dir,
    bytes: u64,
    side: u32,
    kind: u32,
) {
    if let Some(c) = map.get_ptr_mut(key) {
        bump(c, dir, bytes);
        return;
    }
    let mut fresh = Counters::ZERO;
    match dir {
        Dir::Rx => {
            fresh.rx_bytes = bytes;
            fresh.rx_packets = 1;
        }
        Dir::Tx => {
            fresh.tx_bytes = bytes;
            fresh.tx_packets = 1;
        }
    }
    if map.insert(key, &fresh, u64::from(BPF_NOEXIST)).is_ok() {
        return;
    }
    // Either another CPU inserted the key since our lookup (EEXIST), or the
    // map is full (E2BIG): look again, and count as overflow only if absent.
    if let Some(c) = map.get_ptr_mut(key) {
        bump(c, dir, bytes);
    } else if let Some(c) = OVERFLOW.get_ptr_mut(overflow_slot(side, kind)) {
        bump(c, dir, bytes);
    }
}

/// Counts one packet for a `u32` key (a UID, an ifindex): in `fast`, an
/// array of `slots` slots per side, when the key is below `slots` (an
/// inlined lookup); else with [`count`] in the hash map of the side,
/// `hash[side]`, with its overflow accounting.
#[inline(always)]
pub fn count_small(
    fast: &PerCpuArray<Counters>,
    slots: u32,
    hash: [&PerCpuHashMap<u32, Counters>; 2],
    key: u32,
    dir: Dir,
    bytes: u64,
    side: u32,
    kind: u32,
) {
    match fast_slot(side, key, slots).and_then(|slot| fast.get_ptr_mut(slot)) {
        Some(c) => bump(c, dir, bytes),
        None => {
            let map = if side == 0 { hash[0] } else { hash[1] };
            count(map, &key, dir, bytes, side, kind);
        }
    }
}
