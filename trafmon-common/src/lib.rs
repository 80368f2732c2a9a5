//! Keys, values and constants shared by trafmon's eBPF programs and its
//! userspace agent. Every type is `#[repr(C)]`, has no implicit padding and
//! has its size asserted at compile time, because the kernel and userspace
//! must agree on it byte for byte.
#![no_std]
#![deny(missing_docs)]

use core::mem::size_of;

/// Byte and packet counters of one key, one per CPU in the per-CPU maps.
///
/// `rx` is traffic towards this host (cgroup_skb ingress, tc ingress), `tx`
/// traffic leaving it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
}
const _: () = assert!(size_of::<Counters>() == 32);

impl Counters {
    /// All zero.
    pub const ZERO: Self = Self {
        rx_bytes: 0,
        rx_packets: 0,
        tx_bytes: 0,
        tx_packets: 0,
    };

    /// Adds `other` field by field (wrapping, as the kernel's counters do).
    pub fn add(&mut self, other: &Self) {
        self.rx_bytes = self.rx_bytes.wrapping_add(other.rx_bytes);
        self.rx_packets = self.rx_packets.wrapping_add(other.rx_packets);
        self.tx_bytes = self.tx_bytes.wrapping_add(other.tx_bytes);
        self.tx_packets = self.tx_packets.wrapping_add(other.tx_packets);
    }

    /// True when every field is zero.
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }
}

/// Key of the per-IP maps: the address on our side of the packet.
///
/// IPv4 addresses occupy the first four bytes of `addr`, the rest is zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpKey {
    /// The address in network byte order.
    pub addr: [u8; 16],
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u32,
}
const _: () = assert!(size_of::<IpKey>() == 20);

/// `IpKey::family` of an IPv4 address.
pub const FAMILY_IPV4: u32 = 4;
/// `IpKey::family` of an IPv6 address.
pub const FAMILY_IPV6: u32 = 6;

/// The UID key under which cgroup_skb counts packets that have no full
/// socket (a TCP time-wait ACK or RST, for example). The kernel reports such
/// packets as the overflow UID (65534, `nobody`); trafmon tells them apart
/// from the real `nobody` user by the socket's state (the states of
/// sockets that are not full) and counts them here.
/// `(uid_t)-1` is never a valid UID, so this key cannot collide with a user.
pub const UID_NO_SOCKET: u32 = u32::MAX;

/// The helper number of the calls that the loader turns into calls of the
/// kernel function `bpf_rdonly_cast` (aya cannot relocate calls of kernel
/// functions): no helper has it.
pub const KFUNC_MARKER: u32 = 0x7af0_bcde;

/// The UID that `bpf_get_socket_uid` returns when there is no full socket.
pub const KERNEL_OVERFLOW_UID: u32 = 65534;

/// Index of the uid maps in [`OVERFLOW`] slots.
pub const KIND_UID: u32 = 0;
/// Index of the ip maps in [`OVERFLOW`] slots.
pub const KIND_IP: u32 = 1;
/// Index of the interface maps in [`OVERFLOW`] slots.
pub const KIND_IFACE: u32 = 2;
/// Number of stats map kinds.
pub const KINDS: u32 = 3;

/// Number of sides (A and B) of every stats map.
pub const SIDES: u32 = 2;

/// Slot of the overflow counters for `kind` on `side`.
pub const fn overflow_slot(side: u32, kind: u32) -> u32 {
    side * KINDS + kind
}

/// Per-UID counters of UIDs from [`UID_FAST_SLOTS`] on, side A. Key `u32`
/// (socket UID), value [`Counters`].
pub const UID_A: &str = "UID_A";
/// Per-UID counters (UID ≥ [`UID_FAST_SLOTS`]), side B.
pub const UID_B: &str = "UID_B";
/// Per-UID counters of UIDs below [`UID_FAST_SLOTS`]: a per-CPU array of
/// [`Counters`] indexed by [`fast_slot`], both sides in one map (see
/// [`IFACE_FAST`] for why one map).
pub const UID_FAST: &str = "UID_FAST";
/// Per-IP counters, side A. Key [`IpKey`], value [`Counters`].
pub const IP_A: &str = "IP_A";
/// Per-IP counters, side B.
pub const IP_B: &str = "IP_B";
/// Per-interface counters of interfaces whose ifindex is at least
/// [`IFACE_FAST_SLOTS`], side A. Key `u32` (ifindex), value [`Counters`].
pub const IFACE_A: &str = "IFACE_A";
/// Per-interface counters (ifindex ≥ [`IFACE_FAST_SLOTS`]), side B.
pub const IFACE_B: &str = "IFACE_B";
/// Per-interface counters of interfaces whose ifindex is below
/// [`IFACE_FAST_SLOTS`]: a per-CPU array of [`Counters`] indexed by
/// [`fast_slot`], both sides in one map (one map, so that the
/// programs' lookup is inlined: the verifier inlines an array lookup only
/// where the map is the same on every path).
pub const IFACE_FAST: &str = "IFACE_FAST";
/// One-entry array: the side (0 = A, 1 = B) that the programs write.
pub const SELECTOR: &str = "SELECTOR";
/// Per-CPU array of [`Counters`] for packets whose key could not be
/// inserted because the map was full, indexed by [`overflow_slot`].
pub const OVERFLOW: &str = "OVERFLOW";

/// One-entry array of [`SETTING_LOCAL_NETWORKS`]-style flags for the programs.
pub const SETTINGS: &str = "SETTINGS";
/// LPM trie of local IPv4 networks (key: prefix length + 4 address bytes).
pub const LOCAL4: &str = "LOCAL4";
/// LPM trie of local IPv6 networks (key: prefix length + 16 address bytes).
pub const LOCAL6: &str = "LOCAL6";

/// Array of [`Enforcement`] slots, one per enforcing quota, indexed by slot.
pub const ENFORCE: &str = "ENFORCE";
/// Hash map from UID to the slot in [`ENFORCE`] that applies to it.
pub const ENFORCE_UID: &str = "ENFORCE_UID";
/// LPM trie from IPv4 networks to the slot in [`ENFORCE`] that applies.
pub const ENFORCE4: &str = "ENFORCE4";
/// LPM trie from IPv6 networks to the slot in [`ENFORCE`] that applies.
pub const ENFORCE6: &str = "ENFORCE6";

/// Every pinned map, in a fixed order.
pub const MAP_NAMES: [&str; 17] = [
    UID_A,
    UID_B,
    UID_FAST,
    IP_A,
    IP_B,
    IFACE_A,
    IFACE_B,
    IFACE_FAST,
    SELECTOR,
    OVERFLOW,
    SETTINGS,
    LOCAL4,
    LOCAL6,
    ENFORCE,
    ENFORCE_UID,
    ENFORCE4,
    ENFORCE6,
];

/// Flag in [`SETTINGS`]: local networks are configured, so the tc programs
/// consult [`LOCAL4`]/[`LOCAL6`] to pick the address that is ours.
pub const SETTING_LOCAL_NETWORKS: u32 = 1;
/// Flag in [`SETTINGS`]: [`ENFORCE_UID`] has entries, so cgroup_skb
/// programs look the UID up there. Without it they skip the lookup.
pub const SETTING_ENFORCE_UID: u32 = 2;
/// Flag in [`SETTINGS`]: [`ENFORCE4`] or [`ENFORCE6`] has entries.
pub const SETTING_ENFORCE_IP: u32 = 4;

/// Slots of [`ENFORCE`]: at most this many quotas throttle or block at once.
pub const ENFORCE_SLOTS: u32 = 1024;
/// Max entries of [`ENFORCE_UID`].
pub const ENFORCE_UID_ENTRIES: u32 = 4096;
/// Max entries of each of [`ENFORCE4`] and [`ENFORCE6`].
pub const ENFORCE_NET_ENTRIES: u32 = 4096;

/// [`Enforcement::action`]: the slot is unused; packets pass.
pub const ACTION_NONE: u32 = 0;
/// [`Enforcement::action`]: hold each direction to [`Enforcement::rate`].
pub const ACTION_THROTTLE: u32 = 1;
/// [`Enforcement::action`]: drop every packet.
pub const ACTION_BLOCK: u32 = 2;

/// What the programs do to the packets of one enforcing quota.
///
/// Throttling is a policer in the GCRA form of a token bucket, one per
/// direction: `tat` is the theoretical arrival time (kernel ns) at which the
/// bucket is empty again. A packet of `len` bytes moves it on by
/// `len * 1e9 / rate` ns; a packet that would move it more than `burst_ns`
/// past now is dropped. Only the agent writes the whole value; the programs
/// only move `tat` and the drop counters, with atomic adds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enforcement {
    /// [`ACTION_NONE`], [`ACTION_THROTTLE`] or [`ACTION_BLOCK`].
    pub action: u32,
    /// Zero.
    pub _pad: u32,
    /// Bytes per second in each direction (throttle).
    pub rate: u64,
    /// How far ahead of now the bucket may run, in ns (the burst).
    pub burst_ns: u64,
    /// Theoretical arrival time of the rx and tx buckets, kernel ns.
    pub tat: [u64; 2],
    /// Packets dropped.
    pub dropped_packets: u64,
    /// Bytes dropped.
    pub dropped_bytes: u64,
}
const _: () = assert!(size_of::<Enforcement>() == 56);

/// Max entries of each local network trie.
pub const LOCAL_NETWORK_ENTRIES: u32 = 1024;

/// Default max entries of the per-UID maps.
pub const DEFAULT_UID_ENTRIES: u32 = 16_384;
/// Default max entries of the per-IP maps.
pub const DEFAULT_IP_ENTRIES: u32 = 65_536;
/// Default max entries of the per-interface maps.
pub const DEFAULT_IFACE_ENTRIES: u32 = 1_024;

/// Slots per side of [`IFACE_FAST`]. An interface with an ifindex below
/// this (every interface of a typical host) is counted with an array lookup
/// that the verifier inlines, instead of a hash lookup (kernel calls and a
/// jhash: about 25 ns per packet on the benchmark VM); higher ifindexes go
/// to [`IFACE_A`]/[`IFACE_B`]. Each side costs `IFACE_FAST_SLOTS * 32`
/// bytes per CPU.
pub const IFACE_FAST_SLOTS: u32 = 1_024;

/// Slots per side of [`UID_FAST`]: system users and the first three
/// thousand regular users (from UID 1000) are counted with an inlined array
/// lookup; higher UIDs (user namespaces, [`UID_NO_SOCKET`]) go to
/// [`UID_A`]/[`UID_B`]. Each side costs `UID_FAST_SLOTS * 32` bytes per CPU,
/// a quarter of the default UID hash map.
pub const UID_FAST_SLOTS: u32 = 4_096;

/// The slot of a fast array of `slots` slots per side that counts `index`
/// (a UID, an ifindex) on `side`, if the index is small enough to have one.
pub const fn fast_slot(side: u32, index: u32, slots: u32) -> Option<u32> {
    if index < slots {
        Some(side * slots + index)
    } else {
        None
    }
}

/// Length of an Ethernet header, which tc sees in front of the IP header on
/// Ethernet-like devices (including veth).
pub const ETH_HLEN: u32 = 14;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers with no padding (sizes asserted above).
    unsafe impl aya::Pod for super::Counters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::IpKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Enforcement {}
}
