//! Per-UID counting at the cgroup_skb hooks.

use aya_ebpf::programs::SkBuffContext;
use trafmon_common::{KERNEL_OVERFLOW_UID, KIND_UID, UID_FAST_SLOTS, UID_NO_SOCKET};

use crate::{
    count::{Dir, count_small},
    enforce::{self, Verdict},
    maps::{UID_A, UID_B, UID_FAST, side},
    owner,
};

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
    if full && let Some(uid) = owner::host_uid(sk) {
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
