//! Per-interface and per-IP counting at the tc hooks.

use aya_ebpf::{maps::lpm_trie::Key, programs::TcContext};
use trafmon_common::{
    FAMILY_IPV4, FAMILY_IPV6, IFACE_FAST_SLOTS, IpKey, KIND_IFACE, KIND_IP, SETTING_LOCAL_NETWORKS,
};

use crate::{
    count::{Dir, count, count_small},
    enforce::{self, Verdict},
    maps::{IFACE_A, IFACE_B, IFACE_FAST, IP_A, IP_B, LOCAL4, LOCAL6, settings, side},
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;

/// How a program counts a packet for its interface, so that the count
/// equals the interface's own statistics.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The whole frame, in the packet's direction.
    Frame,
    /// The loopback device counts each packet once, from the IP header on,
    /// as both sent and received, when it hands it back to the stack: after
    /// egress, where a GSO packet too large for it is still one packet. Its
    /// ingress program counts the packet both ways, its egress program not
    /// at all.
    LoopedIn,
    /// See [`Link::LoopedIn`].
    LoopedOut,
}

/// Counts the packet for its interface (as `link` says) and, with
/// `addresses`, for the IP address on our side (the IP length, from
/// `l2_len` bytes on), and returns what a quota on that address says.
///
/// A packet that a quota drops is not counted for its address. For the
/// interface it is counted on ingress (the interface did receive it, and its
/// own counters include it) but not on egress (it never reaches the device).
#[inline(always)]
pub fn try_count(ctx: &TcContext, dir: Dir, l2_len: u32, link: Link, addresses: bool) -> Verdict {
    let side = side();
    let settings = settings();
    let frame_len = ctx.len();
    let local = settings & SETTING_LOCAL_NETWORKS != 0;
    let key = if addresses {
        ip_key(ctx, dir, l2_len, frame_len, local)
    } else {
        Err(0)
    };
    let verdict = match key {
        Ok((key, ip_dir, ip_len)) => {
            let verdict = enforce::ip(settings, &key, ip_dir, u64::from(ip_len));
            if verdict != Verdict::Drop {
                let ips = if side == 0 { &IP_A } else { &IP_B };
                count(ips, &key, ip_dir, u64::from(ip_len), side, KIND_IP);
            }
            verdict
        }
        Err(_) => Verdict::Pass,
    };
    if verdict == Verdict::Drop && matches!(dir, Dir::Tx) {
        return verdict;
    }
    // SAFETY: the context pointer is valid for the program's run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let count_link = |dir, bytes| {
        count_small(
            &IFACE_FAST,
            IFACE_FAST_SLOTS,
            [&IFACE_A, &IFACE_B],
            ifindex,
            dir,
            u64::from(bytes),
            side,
            KIND_IFACE,
        )
    };
    match link {
        Link::Frame => count_link(dir, frame_len),
        Link::LoopedIn => {
            let looped = frame_len.saturating_sub(l2_len);
            count_link(Dir::Rx, looped);
            count_link(Dir::Tx, looped);
        }
        Link::LoopedOut => {}
    }
    verdict
}

/// The `N` bytes at `offset` of the packet: read straight from the linear
/// data when they are there (no helper call), else copied with
/// `bpf_skb_load_bytes` (headers outside the linear part are rare).
#[inline(always)]
fn header<const N: usize>(ctx: &TcContext, offset: usize) -> Result<[u8; N], i64> {
    let start = ctx.data();
    if start + offset + N <= ctx.data_end() {
        // SAFETY: the N bytes lie within [data, data_end), checked above.
        return Ok(unsafe { core::ptr::read_unaligned((start + offset) as *const [u8; N]) });
    }
    ctx.load(offset)
}

/// Bytes `at..at + N` of `h`.
#[inline(always)]
fn field<const N: usize, const H: usize>(h: &[u8; H], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&h[at..at + N]);
    out
}

/// Which address of the packet is ours.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ours {
    Source,
    Destination,
}

/// Ours is the destination on ingress and the source on egress (right on an
/// uplink). With local networks configured (an interface facing guests),
/// ours is the address inside them when exactly one of the two is.
#[inline(always)]
fn pick(dir: Dir, src_local: bool, dst_local: bool) -> Ours {
    match (src_local, dst_local, dir) {
        (true, false, _) => Ours::Source,
        (false, true, _) => Ours::Destination,
        (_, _, Dir::Rx) => Ours::Destination,
        (_, _, Dir::Tx) => Ours::Source,
    }
}

/// The address on our side, the direction for it (rx: towards it, tx: from
/// it) and the packet's IP length; `local`: local networks are configured.
///
/// The IP length is the frame minus the link-layer header, but never more
/// than the header's own length field says, so that Ethernet padding of
/// short frames is not counted (iptables does not count it either). A length
/// field of 0 (IPv6 jumbograms, BIG TCP) falls back to the frame length.
/// A header whose version is not its protocol's (the link-layer header is
/// not `l2` bytes long) counts under no address: what would be read there
/// is not one.
#[inline(always)]
fn ip_key(
    ctx: &TcContext,
    dir: Dir,
    l2: u32,
    frame_len: u32,
    local: bool,
) -> Result<(IpKey, Dir, u32), i64> {
    let l3_len = frame_len.saturating_sub(l2);
    let l2 = l2 as usize;
    let mut key = IpKey {
        addr: [0; 16],
        family: 0,
    };
    let (ours, header_len) = match u16::from_be(ctx.skb.protocol() as u16) {
        ETH_P_IP => {
            key.family = FAMILY_IPV4;
            let h: [u8; 20] = header(ctx, l2)?;
            if h[0] >> 4 != 4 {
                return Err(0);
            }
            let src: [u8; 4] = field(&h, 12);
            let dst: [u8; 4] = field(&h, 16);
            let ours = if local {
                let src_local = LOCAL4.get(Key::new(32, src)).is_some();
                let dst_local = LOCAL4.get(Key::new(32, dst)).is_some();
                pick(dir, src_local, dst_local)
            } else {
                pick(dir, false, false)
            };
            let addr = if ours == Ours::Source { src } else { dst };
            key.addr[..4].copy_from_slice(&addr);
            (ours, u32::from(u16::from_be_bytes(field(&h, 2))))
        }
        ETH_P_IPV6 => {
            key.family = FAMILY_IPV6;
            let h: [u8; 40] = header(ctx, l2)?;
            if h[0] >> 4 != 6 {
                return Err(0);
            }
            let src: [u8; 16] = field(&h, 8);
            let dst: [u8; 16] = field(&h, 24);
            let ours = if local {
                let src_local = LOCAL6.get(Key::new(128, src)).is_some();
                let dst_local = LOCAL6.get(Key::new(128, dst)).is_some();
                pick(dir, src_local, dst_local)
            } else {
                pick(dir, false, false)
            };
            key.addr = if ours == Ours::Source { src } else { dst };
            let payload = u32::from(u16::from_be_bytes(field(&h, 4)));
            (ours, if payload == 0 { 0 } else { payload + 40 })
        }
        _ => return Err(0),
    };
    let ip_len = if header_len != 0 && header_len < l3_len {
        header_len
    } else {
        l3_len
    };
    let ip_dir = match ours {
        Ours::Source => Dir::Tx,
        Ours::Destination => Dir::Rx,
    };
    Ok((key, ip_dir, ip_len))
}
