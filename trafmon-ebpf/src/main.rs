//! trafmon's eBPF programs. Entry points are thin: they call a `try_*`
//! function and let the packet pass, unless the quota engine asked for
//! enforcement of its key.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

mod count;
mod enforce;
mod iface;
mod maps;
mod owner;
mod uid;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    macros::{cgroup_skb, classifier},
    programs::{SkBuffContext, TcContext},
};
use trafmon_common::ETH_HLEN;

use crate::{count::Dir, enforce::Verdict, iface::Link};

/// cgroup_skb ingress verdict: 1 passes, 0 drops.
fn ingress_verdict(v: Verdict) -> i32 {
    match v {
        Verdict::Pass | Verdict::Slow => 1,
        Verdict::Drop => 0,
    }
}

/// cgroup_skb egress verdict: bit 0 passes, bit 1 tells the local sender of
/// congestion (TCP then enters CWR and reduces its window instead of
/// waiting for losses), as the kernel's own host bandwidth manager does.
fn egress_verdict(v: Verdict) -> i32 {
    match v {
        Verdict::Pass => 1,
        Verdict::Slow => 3,
        Verdict::Drop => 2,
    }
}

/// Counts packets delivered to sockets of the cgroup, per socket UID.
#[cgroup_skb(ingress)]
pub fn cgroup_ingress(ctx: SkBuffContext) -> i32 {
    ingress_verdict(uid::try_count(&ctx, Dir::Rx))
}

/// Counts packets sent by sockets of the cgroup, per socket UID.
#[cgroup_skb(egress)]
pub fn cgroup_egress(ctx: SkBuffContext) -> i32 {
    egress_verdict(uid::try_count(&ctx, Dir::Tx))
}

// tc programs return TC_ACT_UNSPEC (TCX_NEXT): pass the packet on to the next
// program of the chain, so trafmon never changes what other programs decide;
// only a packet that a quota drops gets TC_ACT_SHOT.
fn tc_verdict(v: Verdict) -> i32 {
    match v {
        Verdict::Pass | Verdict::Slow => TC_ACT_UNSPEC,
        Verdict::Drop => TC_ACT_SHOT as i32,
    }
}

/// Counts packets arriving on an Ethernet-like interface.
#[classifier]
pub fn tc_eth_ingress(ctx: TcContext) -> i32 {
    tc_verdict(iface::try_count(&ctx, Dir::Rx, ETH_HLEN, Link::Frame, true))
}

/// Counts packets leaving an Ethernet-like interface.
#[classifier]
pub fn tc_eth_egress(ctx: TcContext) -> i32 {
    tc_verdict(iface::try_count(&ctx, Dir::Tx, ETH_HLEN, Link::Frame, true))
}

/// Counts packets arriving on an L3 interface (tun, WireGuard): no link-layer header.
#[classifier]
pub fn tc_ip_ingress(ctx: TcContext) -> i32 {
    tc_verdict(iface::try_count(&ctx, Dir::Rx, 0, Link::Frame, true))
}

/// Counts packets leaving an L3 interface.
#[classifier]
pub fn tc_ip_egress(ctx: TcContext) -> i32 {
    tc_verdict(iface::try_count(&ctx, Dir::Tx, 0, Link::Frame, true))
}

/// Counts packets arriving on a loopback device: its frames carry an
/// Ethernet header; the device itself is counted here, both ways (see
/// [`Link::LoopedIn`]).
#[classifier]
pub fn tc_lo_ingress(ctx: TcContext) -> i32 {
    tc_verdict(iface::try_count(
        &ctx,
        Dir::Rx,
        ETH_HLEN,
        Link::LoopedIn,
        true,
    ))
}

/// Counts packets leaving a loopback device, for their addresses only.
#[classifier]
pub fn tc_lo_egress(ctx: TcContext) -> i32 {
    tc_verdict(iface::try_count(
        &ctx,
        Dir::Tx,
        ETH_HLEN,
        Link::LoopedOut,
        true,
    ))
}

// The same for interfaces whose addresses are not counted
// (`address_interfaces`): the device only. Separate programs rather than a
// flag to read per packet, so that counting addresses costs nothing more.

/// [`tc_eth_ingress`], the device only.
#[classifier]
pub fn tcd_eth_ingress(ctx: TcContext) -> i32 {
    tc_verdict(iface::try_count(
        &ctx,
        Dir::Rx,
        ETH_HLEN,
        Link::Frame,
        false,
    ))
}

/// [`tc_eth_egress`], the device only.
#[classifier]
pub fn tcd_eth_egress(ctx: TcContext) -> i32 {
    tc_verdict(iface::try_count(
        &ctx,
        Dir::Tx,
        ETH_HLEN,
        Link::Frame,
        false,
    ))
}

/// [`tc_ip_ingress`], the device only.
#[classifier]
pub fn tcd_ip_ingress(ctx: TcContext) -> i32 {
    tc_verdict(iface::try_count(&ctx, Dir::Rx, 0, Link::Frame, false))
}

/// [`tc_ip_egress`], the device only.
#[classifier]
pub fn tcd_ip_egress(ctx: TcContext) -> i32 {
    tc_verdict(iface::try_count(&ctx, Dir::Tx, 0, Link::Frame, false))
}

/// [`tc_lo_ingress`], the device only.
#[classifier]
pub fn tcd_lo_ingress(ctx: TcContext) -> i32 {
    tc_verdict(iface::try_count(
        &ctx,
        Dir::Rx,
        ETH_HLEN,
        Link::LoopedIn,
        false,
    ))
}

/// [`tc_lo_egress`]: with addresses not counted, nothing to do but be
/// there, so that the pinned link keeps its place.
#[classifier]
pub fn tcd_lo_egress(ctx: TcContext) -> i32 {
    tc_verdict(iface::try_count(
        &ctx,
        Dir::Tx,
        ETH_HLEN,
        Link::LoopedOut,
        false,
    ))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
