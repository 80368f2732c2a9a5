//! Per-UID counting at the cgroup_skb hooks.

use aya_ebpf::{helpers::bpf_sk_fullsock, programs::SkBuffContext};
use trafmon_common::{KERNEL_OVERFLOW_UID, KIND_UID, UID_FAST_SLOTS, UID_NO_SOCKET};

use crate::{
    count::{Dir, count_small},
    enforce::{self, Verdict},
    maps::{UID_A, UID_B, UID_FAST, side},
};

/// The key of a packet: its socket's UID, or [`UID_NO_SOCKET`] when the
/// packet has no full socket (the kernel then reports the overflow UID).
#[inline(always)]
fn uid_key(ctx: &SkBuffContext) -> u32 {
    let uid = ctx.get_socket_uid();
    if uid != KERNEL_OVERFLOW_UID {
        return uid;
    }
    // SAFETY: reading `sk` from the context is what the verifier allows for
    // cgroup_skb; the helper accepts a null-checked socket pointer.
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() || unsafe { bpf_sk_fullsock(sk) }.is_null() {
        UID_NO_SOCKET
    } else {
        uid
    }
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
