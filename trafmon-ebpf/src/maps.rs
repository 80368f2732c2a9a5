//! Map definitions. Each stats map exists twice (side A and B); `SELECTOR`
//! says which side the programs write, so userspace can drain the other one
//! while counting goes on. Max entries here are placeholders: the loader sets
//! them from the configuration. Every map is pinned by name, so the counts
//! outlive the agent.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, PerCpuHashMap},
};
use trafmon_common::{
    Counters, DEFAULT_IFACE_ENTRIES, DEFAULT_IP_ENTRIES, DEFAULT_UID_ENTRIES, ENFORCE_NET_ENTRIES,
    ENFORCE_SLOTS, ENFORCE_UID_ENTRIES, Enforcement, IFACE_FAST_SLOTS, IpKey, KINDS,
    LOCAL_NETWORK_ENTRIES, SIDES, UID_FAST_SLOTS,
};

#[map]
pub static UID_A: PerCpuHashMap<u32, Counters> = PerCpuHashMap::pinned(DEFAULT_UID_ENTRIES, 0);
#[map]
pub static UID_B: PerCpuHashMap<u32, Counters> = PerCpuHashMap::pinned(DEFAULT_UID_ENTRIES, 0);
#[map]
pub static UID_FAST: PerCpuArray<Counters> = PerCpuArray::pinned(SIDES * UID_FAST_SLOTS, 0);
#[map]
pub static IP_A: PerCpuHashMap<IpKey, Counters> = PerCpuHashMap::pinned(DEFAULT_IP_ENTRIES, 0);
#[map]
pub static IP_B: PerCpuHashMap<IpKey, Counters> = PerCpuHashMap::pinned(DEFAULT_IP_ENTRIES, 0);
#[map]
pub static IFACE_A: PerCpuHashMap<u32, Counters> = PerCpuHashMap::pinned(DEFAULT_IFACE_ENTRIES, 0);
#[map]
pub static IFACE_B: PerCpuHashMap<u32, Counters> = PerCpuHashMap::pinned(DEFAULT_IFACE_ENTRIES, 0);
#[map]
pub static IFACE_FAST: PerCpuArray<Counters> = PerCpuArray::pinned(SIDES * IFACE_FAST_SLOTS, 0);
#[map]
pub static SELECTOR: Array<u32> = Array::pinned(1, 0);
#[map]
pub static OVERFLOW: PerCpuArray<Counters> = PerCpuArray::pinned(SIDES * KINDS, 0);

#[map]
pub static SETTINGS: Array<u32> = Array::pinned(1, 0);
#[map]
pub static LOCAL4: LpmTrie<[u8; 4], u8> = LpmTrie::pinned(LOCAL_NETWORK_ENTRIES, 0);
#[map]
pub static LOCAL6: LpmTrie<[u8; 16], u8> = LpmTrie::pinned(LOCAL_NETWORK_ENTRIES, 0);

// Enforcement: written by the agent's quota engine only.
#[map]
pub static ENFORCE: Array<Enforcement> = Array::pinned(ENFORCE_SLOTS, 0);
#[map]
pub static ENFORCE_UID: HashMap<u32, u32> = HashMap::pinned(ENFORCE_UID_ENTRIES, 0);
#[map]
pub static ENFORCE4: LpmTrie<[u8; 4], u32> = LpmTrie::pinned(ENFORCE_NET_ENTRIES, 0);
#[map]
pub static ENFORCE6: LpmTrie<[u8; 16], u32> = LpmTrie::pinned(ENFORCE_NET_ENTRIES, 0);

/// The flags of [`SETTINGS`].
#[inline(always)]
pub fn settings() -> u32 {
    SETTINGS.get(0).map_or(0, |flags| *flags)
}

/// The side that programs write now: 0 (A) or 1 (B).
#[inline(always)]
pub fn side() -> u32 {
    match SELECTOR.get(0) {
        Some(side) => *side & 1,
        None => 0,
    }
}
