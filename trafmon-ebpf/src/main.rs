//! trafmon's eBPF programs. Entry points are thin: they call a `try_*`
//! function and always let the packet pass; trafmon only counts.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

mod count;
mod iface;
mod maps;
mod uid;

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC,
    macros::{cgroup_skb, classifier},
    programs::{SkBuffContext, TcContext},
};
use trafmon_common::ETH_HLEN;

use crate::count::Dir;

/// cgroup_skb verdict that lets the packet through.
const CGROUP_SKB_PASS: i32 = 1;

/// Counts packets delivered to sockets of the cgroup, per socket UID.
#[cgroup_skb(ingress)]
pub fn cgroup_ingress(ctx: SkBuffContext) -> i32 {
    uid::try_count(&ctx, Dir::Rx);
    CGROUP_SKB_PASS
}

/// Counts packets sent by sockets of the cgroup, per socket UID.
#[cgroup_skb(egress)]
pub fn cgroup_egress(ctx: SkBuffContext) -> i32 {
    uid::try_count(&ctx, Dir::Tx);
    CGROUP_SKB_PASS
}

// tc programs return TC_ACT_UNSPEC (TCX_NEXT): pass the packet on to the next
// program of the chain, so trafmon never changes what other programs decide.

/// Counts packets arriving on an Ethernet-like interface.
#[classifier]
pub fn tc_eth_ingress(ctx: TcContext) -> i32 {
    let _ = iface::try_count(&ctx, Dir::Rx, ETH_HLEN);
    TC_ACT_UNSPEC
}

/// Counts packets leaving an Ethernet-like interface.
#[classifier]
pub fn tc_eth_egress(ctx: TcContext) -> i32 {
    let _ = iface::try_count(&ctx, Dir::Tx, ETH_HLEN);
    TC_ACT_UNSPEC
}

/// Counts packets arriving on an L3 interface (tun, WireGuard): no link-layer header.
#[classifier]
pub fn tc_ip_ingress(ctx: TcContext) -> i32 {
    let _ = iface::try_count(&ctx, Dir::Rx, 0);
    TC_ACT_UNSPEC
}

/// Counts packets leaving an L3 interface.
#[classifier]
pub fn tc_ip_egress(ctx: TcContext) -> i32 {
    let _ = iface::try_count(&ctx, Dir::Tx, 0);
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
