//! Quota enforcement on the hot path. The lookups run only when the agent
//! has set the matching flag in `SETTINGS`, and a key without an entry is
//! never delayed or dropped.

use aya_ebpf::{helpers::bpf_ktime_get_ns, maps::lpm_trie::Key};
use trafmon_common::{
    ACTION_BLOCK, ACTION_THROTTLE, Enforcement, FAMILY_IPV4, IpKey, SETTING_ENFORCE_IP,
    SETTING_ENFORCE_UID,
};

use crate::{
    count::{Dir, atomic_add},
    maps::{self, ENFORCE, ENFORCE_UID, ENFORCE4, ENFORCE6},
};

/// What happens to a packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It passes.
    Pass,
    /// It passes, but its flow is near the rate: a local TCP sender is told
    /// to slow down (cgroup egress "congestion notification").
    Slow,
    /// It is dropped.
    Drop,
}

/// `(bpf_fetch) *p += v`, returning the old value (`BPF_ATOMIC | BPF_ADD |
/// BPF_FETCH`); see [`atomic_add`] for why inline asm.
#[inline(always)]
fn atomic_fetch_add(p: *mut u64, v: u64) -> u64 {
    let mut v = v;
    // SAFETY: `p` points into a map value returned by the kernel.
    unsafe {
        core::arch::asm!(
            "{v} = atomic_fetch_add((u64 *)({p} + 0), {v})",
            p = in(reg) p,
            v = inout(reg) v,
            options(nostack),
        );
    }
    v
}

/// The verdict for a packet of a UID.
#[inline(always)]
pub fn uid(uid: u32, dir: Dir, bytes: u64) -> Verdict {
    if maps::settings() & SETTING_ENFORCE_UID == 0 {
        return Verdict::Pass;
    }
    // SAFETY: the value is a plain u32 copied out at once.
    match unsafe { ENFORCE_UID.get(&uid) } {
        Some(slot) => apply(*slot, dir, bytes),
        None => Verdict::Pass,
    }
}

/// The verdict for a packet of an address (the one it is counted under);
/// `settings` is the packet's one read of `SETTINGS`.
#[inline(always)]
pub fn ip(settings: u32, key: &IpKey, dir: Dir, bytes: u64) -> Verdict {
    if settings & SETTING_ENFORCE_IP == 0 {
        return Verdict::Pass;
    }
    let slot = if key.family == FAMILY_IPV4 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&key.addr[..4]);
        ENFORCE4.get(Key::new(32, a)).copied()
    } else {
        ENFORCE6.get(Key::new(128, key.addr)).copied()
    };
    match slot {
        Some(slot) => apply(slot, dir, bytes),
        None => Verdict::Pass,
    }
}

#[inline(always)]
fn apply(slot: u32, dir: Dir, bytes: u64) -> Verdict {
    let Some(e) = ENFORCE.get_ptr_mut(slot) else {
        return Verdict::Pass;
    };
    // SAFETY: `e` is a valid, aligned map value pointer.
    let action = unsafe { (*e).action };
    let verdict = match action {
        ACTION_BLOCK => Verdict::Drop,
        ACTION_THROTTLE => throttle(e, dir, bytes),
        _ => Verdict::Pass,
    };
    if verdict == Verdict::Drop {
        // SAFETY: as above.
        unsafe {
            atomic_add(&raw mut (*e).dropped_packets, 1);
            atomic_add(&raw mut (*e).dropped_bytes, bytes);
        }
    }
    verdict
}

/// The GCRA policer: see [`Enforcement`]. Two CPUs may both see an idle
/// bucket and both restart it at "now"; that lets at most one extra packet
/// through per idle period, which is why no lock is needed.
#[inline(always)]
fn throttle(e: *mut Enforcement, dir: Dir, bytes: u64) -> Verdict {
    // SAFETY: `e` is a valid, aligned map value pointer; `tat` is only
    // changed with atomic adds except for the restart of an idle bucket.
    unsafe {
        let rate = (*e).rate;
        if rate == 0 {
            return Verdict::Drop;
        }
        let burst = (*e).burst_ns;
        let tat = match dir {
            Dir::Rx => &raw mut (*e).tat[0],
            Dir::Tx => &raw mut (*e).tat[1],
        };
        let now = bpf_ktime_get_ns();
        if core::ptr::read_volatile(tat) < now {
            core::ptr::write_volatile(tat, now);
        }
        let cost = bytes.saturating_mul(1_000_000_000) / rate;
        let old = atomic_fetch_add(tat, cost);
        let ahead = old.max(now) + cost - now;
        if ahead > burst {
            atomic_add(tat, cost.wrapping_neg());
            Verdict::Drop
        } else if ahead > burst / 2 {
            Verdict::Slow
        } else {
            Verdict::Pass
        }
    }
}
