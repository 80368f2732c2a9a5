//! Per-interface and per-IP counting at the tc hooks.

use aya_ebpf::programs::TcContext;
use trafmon_common::{FAMILY_IPV4, FAMILY_IPV6, IpKey, KIND_IFACE, KIND_IP};

use crate::{
    count::{Dir, count},
    maps::{IFACE_A, IFACE_B, IP_A, IP_B, side},
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;

/// Counts the packet for its interface (the whole frame, as the interface's
/// own statistics do) and for the IP address on our side (the IP length).
#[inline(always)]
pub fn try_count(ctx: &TcContext, dir: Dir, l2_len: u32) -> Result<(), i64> {
    let side = side();
    let frame_len = ctx.len();
    // SAFETY: the context pointer is valid for the program's run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let ifaces = if side == 0 { &IFACE_A } else { &IFACE_B };
    count(ifaces, &ifindex, dir, u64::from(frame_len), side, KIND_IFACE);

    let (key, ip_len) = ip_key(ctx, dir, l2_len, frame_len)?;
    let ips = if side == 0 { &IP_A } else { &IP_B };
    count(ips, &key, dir, u64::from(ip_len), side, KIND_IP);
    Ok(())
}

/// The address on our side of the packet and the packet's IP length.
///
/// Ours is the destination on ingress and the source on egress. The IP
/// length is the frame minus the link-layer header, but never more than the
/// header's own length field says, so that Ethernet padding of short frames
/// is not counted (iptables does not count it either). A length field of 0
/// (IPv6 jumbograms, BIG TCP) falls back to the frame length.
#[inline(always)]
fn ip_key(ctx: &TcContext, dir: Dir, l2: u32, frame_len: u32) -> Result<(IpKey, u32), i64> {
    let l3_len = frame_len.saturating_sub(l2);
    let l2 = l2 as usize;
    let mut key = IpKey {
        addr: [0; 16],
        family: 0,
    };
    let header_len = match u16::from_be(ctx.skb.protocol() as u16) {
        ETH_P_IP => {
            key.family = FAMILY_IPV4;
            let offset = match dir {
                Dir::Rx => 16,
                Dir::Tx => 12,
            };
            let addr: [u8; 4] = ctx.load(l2 + offset)?;
            key.addr[..4].copy_from_slice(&addr);
            u32::from(u16::from_be(ctx.load::<u16>(l2 + 2)?))
        }
        ETH_P_IPV6 => {
            key.family = FAMILY_IPV6;
            let offset = match dir {
                Dir::Rx => 24,
                Dir::Tx => 8,
            };
            key.addr = ctx.load(l2 + offset)?;
            let payload = u32::from(u16::from_be(ctx.load::<u16>(l2 + 4)?));
            if payload == 0 { 0 } else { payload + 40 }
        }
        _ => return Err(0),
    };
    let ip_len = if header_len != 0 && header_len < l3_len {
        header_len
    } else {
        l3_len
    };
    Ok((key, ip_len))
}
