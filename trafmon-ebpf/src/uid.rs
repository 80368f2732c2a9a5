//! Per-UID counting at the cgroup_skb hooks.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel, macros::map, maps::PerCpuArray, programs::SkBuffContext,
};
use trafmon_common::{KERNEL_OVERFLOW_UID, KIND_UID, UID_FAST_SLOTS, UID_NO_SOCKET};

use crate::{
    count::{Dir, count_small},
    enforce::{self, Verdict},
    maps::{UID_A, UID_B, UID_FAST, side},
};

/// `offsetof(struct sock, sk_uid)` in the running kernel, from its BTF;
/// set by the loader (0: unknown, use the helper).
#[unsafe(no_mangle)]
static SK_UID_OFFSET: u32 = 0;

/// 1: [`address`] may take a socket's address through [`SCRATCH`]; 0: by
/// the kernel's reader only (set by the loader for the test of that path).
#[unsafe(no_mangle)]
static SCRATCH_ADDRESS: u32 = 1;

/// One 8-byte scratch value per CPU, where [`address`] turns a socket
/// pointer into a number. Not pinned: it holds nothing between runs.
#[map]
static SCRATCH: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The address in `p` as a plain number. The verifier forbids arithmetic
/// on socket pointers and reading a spilled pointer as a number, but lets
/// a program with CAP_PERFMON store a pointer into a map value and compare
/// it with a number, and a load from a map value is a number: so the
/// pointer goes into this CPU's scratch value and comes back as a number,
/// which costs two memory accesses. Another program on this CPU (a softirq
/// in between, or a task that preempted this one) may have written the
/// slot in between: then the number differs from the pointer, and the
/// kernel's reader copies the pointer out of this frame's stack instead, a
/// helper call.
#[inline(always)]
fn address<T>(p: *const T) -> Option<u64> {
    // SAFETY: a read-only global that the loader sets.
    let scratch = unsafe { core::ptr::read_volatile(&raw const SCRATCH_ADDRESS) } != 0;
    if scratch && let Some(slot) = SCRATCH.get_ptr_mut(0) {
        // SAFETY: `slot` is this CPU's value of a one-entry per-CPU array,
        // valid for the whole run; volatile keeps both accesses, so that
        // the compiler cannot turn them into a pointer cast.
        let at = unsafe {
            core::ptr::write_volatile(slot.cast::<*const T>(), p);
            core::ptr::read_volatile(slot)
        };
        if at == p as u64 {
            return Some(at);
        }
    }
    let slot = p;
    // SAFETY: reads this frame's own stack slot.
    unsafe { bpf_probe_read_kernel((&raw const slot).cast::<u64>()) }.ok()
}

/// `TCP_TIME_WAIT` and `TCP_NEW_SYN_RECV`: the states of the sockets that
/// are not full sockets (`sk_fullsock()`), which have no owner of their own.
const NOT_FULL: u32 = (1 << 6) | (1 << 12);

/// The key of a packet: the UID that owns its socket as the host (the init
/// user namespace) sees it, also for a socket in a user namespace, where
/// `bpf_get_socket_uid()` gives the UID as that namespace sees it (a
/// container's root as 0). Without the offset, or for a packet without a
/// full socket, the helper's answer: a request socket's listener, else
/// [`UID_NO_SOCKET`] (the kernel reports the overflow UID).
#[inline(always)]
fn uid_key(ctx: &SkBuffContext) -> u32 {
    // SAFETY: reading `sk` from the context is what the verifier allows for
    // cgroup_skb.
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return UID_NO_SOCKET;
    }
    // SAFETY: `sk` is a non-null socket the verifier lets us read.
    let full = (1u32 << (unsafe { (*sk).state } & 31)) & NOT_FULL == 0;
    // SAFETY: a read-only global that the loader sets.
    let offset = unsafe { core::ptr::read_volatile(&raw const SK_UID_OFFSET) };
    if full
        && offset != 0
        && let Some(at) = address(sk)
        // SAFETY: the kernel's reader checks the address; `sk_uid` is a
        // `kuid_t`, one u32.
        && let Ok(uid) = unsafe { bpf_probe_read_kernel((at + u64::from(offset)) as *const u32) }
    {
        return uid;
    }
    let uid = ctx.get_socket_uid();
    if uid != KERNEL_OVERFLOW_UID || full {
        return uid;
    }
    UID_NO_SOCKET
}

/// At cgroup_skb the packet starts at the IP header: `len` is the IP length,
/// as iptables counts it. A packet that a quota drops is not counted: it
/// did not reach the socket or the network.
#[inline(always)]
pub fn try_count(ctx: &SkBuffContext, dir: Dir) -> Verdict {
    let key = uid_key(ctx);
    let bytes = u64::from(ctx.len());
    let verdict = enforce::uid(key, dir, bytes);
    if verdict != Verdict::Drop {
        let hash = [&UID_A, &UID_B];
        count_small(
            &UID_FAST,
            UID_FAST_SLOTS,
            hash,
            key,
            dir,
            bytes,
            side(),
            KIND_UID,
        );
    }
    verdict
}
