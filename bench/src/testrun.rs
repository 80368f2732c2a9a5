//! Per-packet cost without bpf_stats: each program run in a loop inside
//! the kernel by `BPF_PROG_TEST_RUN` on one made-up frame, next to an
//! empty program of the same type run the same way.
//!
//! It answers what the bpf_stats figure cannot: how much of it is the
//! program. bpf_stats reads the clock twice around every run, which this
//! VM makes slow (kvm-clock); the test loop reads it when it starts and
//! ends (and when it yields the CPU). The empty program's loop gives what
//! the loop itself costs. The same frame again and again keeps the caches
//! warm, which real traffic does not, so this is a lower bound, beside the
//! bpf_stats figure and never instead of it.
//!
//! What the kernel's test run gives the programs: tc programs get the
//! frame from its Ethernet header, so the address is counted in the hash
//! map of addresses (its first run inserts it, the others find it among
//! the live keys); cgroup_skb programs get a socket that the kernel makes
//! up for the test, owned by UID 0, which is counted in the per-CPU array.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd},
};

use anyhow::{Context as _, bail};
use aya::programs::{ProgramFd, loaded_programs};
use aya_obj::generated::{bpf_attach_type, bpf_cmd, bpf_prog_type};
use trafmon::{
    batch::{bpf, zeroed_attr},
    counters::key_of,
};
use trafmon_common::Counters;

use crate::{fill::Live, floor, results::LoopCost, world::Env};

/// A 60-byte Ethernet frame: IPv4, UDP, from 203.0.113.1 to 198.51.100.1
/// (documentation addresses that the benchmark's own traffic does not use;
/// the frame is never sent, only handed to programs).
pub fn frame() -> [u8; 60] {
    let mut f = [0u8; 60];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[203, 0, 113, 1]);
    ip[16..20].copy_from_slice(&[198, 51, 100, 1]);
    let sum = checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&9u16.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    f
}

/// The IPv4 header checksum (RFC 791) of `header` with its checksum field
/// zero.
fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Runs `prog` `repeat` times on `data`; the kernel's average per run, in
/// ns. The program must return `verdict` (let the packet pass).
pub fn test_run(
    prog: BorrowedFd<'_>,
    data: &[u8],
    repeat: u32,
    verdict: i32,
) -> anyhow::Result<u32> {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integer fields of the union.
    unsafe {
        let t = &mut attr.test;
        t.prog_fd = prog.as_raw_fd() as u32;
        t.data_in = data.as_ptr() as u64;
        t.data_size_in = data.len() as u32;
        t.repeat = repeat;
    }
    // SAFETY: `data` outlives the call; no output buffers are given.
    unsafe { bpf(bpf_cmd::BPF_PROG_TEST_RUN, &mut attr) }.context("BPF_PROG_TEST_RUN failed")?;
    // SAFETY: the kernel wrote back the test member of the union.
    let (retval, duration) = unsafe { (attr.test.retval, attr.test.duration) };
    if retval != verdict as u32 {
        bail!("a program returned {retval} to the test run, not {verdict}");
    }
    Ok(duration)
}

/// What a cgroup_skb program returns to pass a packet.
const CGROUP_PASS: i32 = 1;
/// What trafmon's tc programs return to pass a packet on (TC_ACT_UNSPEC).
pub const TC_NEXT: i32 = -1;

/// The programs to time: name, what it counts the frame in, and whether it
/// is a cgroup_skb program (else tc).
const PROGRAMS: [(&str, &str, bool); 4] = [
    ("cgroup_egress", "array (UID 0)", true),
    ("cgroup_ingress", "array (UID 0)", true),
    ("tc_eth_egress", "hash (its source address)", false),
    ("tc_eth_ingress", "hash (its destination address)", false),
];

/// (program, empty program) samples per program: `rounds` rounds of
/// every program, in an order that rotates per round.
type Samples = BTreeMap<&'static str, (Vec<f64>, Vec<f64>)>;

fn rounds_of(
    fds: &BTreeMap<String, ProgramFd>,
    [empty_cgroup, empty_tc]: [&OwnedFd; 2],
    rounds: usize,
    repeat: u32,
) -> anyhow::Result<Samples> {
    let data = frame();
    let mut samples = Samples::new();
    for round in 0..rounds {
        for i in 0..PROGRAMS.len() {
            let (name, _, cgroup) = PROGRAMS[(i + round) % PROGRAMS.len()];
            let Some(fd) = fds.get(name) else {
                bail!("program {name} is not loaded");
            };
            let (empty, pass) = if cgroup {
                (empty_cgroup, CGROUP_PASS)
            } else {
                (empty_tc, TC_NEXT)
            };
            let ours = test_run(fd.as_fd(), &data, repeat, pass)?;
            let floor = test_run(empty.as_fd(), &data, repeat, pass)?;
            let e = samples.entry(name).or_default();
            e.0.push(f64::from(ours));
            e.1.push(f64::from(floor));
        }
    }
    Ok(samples)
}

/// The frame went through the counting, once per run: its destination
/// holds every run of tc_eth_ingress as a received packet, its source
/// every run of tc_eth_egress as a sent one, and UID 0's slot of the UID
/// array (`uid0_before`: what it held before the loop) every run of the
/// cgroup programs, each with the frame's IP length.
fn check(live: &Live, side: usize, runs: u64, uid0_before: Counters) -> anyhow::Result<()> {
    let f = frame();
    let ip_len = u64::from(u16::from_be_bytes([f[16], f[17]]));
    let at = |o: usize| IpAddr::from([f[o], f[o + 1], f[o + 2], f[o + 3]]);
    let dst = live.ip_counts(side, key_of(at(30)))?;
    let src = live.ip_counts(side, key_of(at(26)))?;
    let uid0 = live.uid_array_counts(side, 0)?;
    let want = (runs, runs * ip_len);
    for (what, got) in [
        (
            "received at its destination",
            (dst.rx_packets, dst.rx_bytes),
        ),
        ("sent from its source", (src.tx_packets, src.tx_bytes)),
        (
            "received by UID 0",
            (
                uid0.rx_packets - uid0_before.rx_packets,
                uid0.rx_bytes - uid0_before.rx_bytes,
            ),
        ),
        (
            "sent by UID 0",
            (
                uid0.tx_packets - uid0_before.tx_packets,
                uid0.tx_bytes - uid0_before.tx_bytes,
            ),
        ),
    ] {
        if got != want {
            bail!(
                "the test frame was counted {got:?} (packets, bytes) as {what}, not {want:?}: the programs did not count every run once"
            );
        }
    }
    Ok(())
}

/// Times trafmon's programs and an empty program of each type, `rounds`
/// rounds of `repeat` runs each, alternating, with `keys` live keys. The
/// kernel must not be timing programs (bpf_stats off): then every run
/// would pay the clock reads this leaves out.
pub fn run(
    env: &Env,
    live: &Live,
    keys: u32,
    rounds: usize,
    repeat: u32,
) -> anyhow::Result<Vec<LoopCost>> {
    crate::stats_off()?;
    let ids = crate::packet::programs(env)?;
    let mut fds = BTreeMap::new();
    for info in loaded_programs() {
        let info = info?;
        if let Some((name, _)) = ids.iter().find(|(_, id)| **id == info.id()) {
            fds.insert(name.clone(), info.fd()?);
        }
    }
    let empty_cgroup = floor::load_returning(
        bpf_prog_type::BPF_PROG_TYPE_CGROUP_SKB,
        bpf_attach_type::BPF_CGROUP_INET_EGRESS,
        CGROUP_PASS,
        "trafbench_empty",
    )?;
    let empty_tc = floor::load_returning(
        bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS,
        bpf_attach_type::BPF_CGROUP_INET_INGRESS,
        TC_NEXT,
        "trafbench_empty",
    )?;
    let mut samples = None;
    // The agent flushes every 5 minutes; should it flip sides during the
    // loop, the counts cannot be checked: once again.
    for _ in 0..3 {
        let side = live.active()?;
        live.clear(side)?;
        live.fill_uids(side, keys - 1)?;
        live.fill_ips(side, keys - 1)?;
        let uid0_before = live.uid_array_counts(side, 0)?;
        let got = rounds_of(&fds, [&empty_cgroup, &empty_tc], rounds, repeat)?;
        if live.active()? == side {
            check(live, side, u64::from(repeat) * rounds as u64, uid0_before)?;
            samples = Some(got);
            break;
        }
    }
    let Some(mut samples) = samples else {
        bail!("the agent flushed during each of 3 test loops");
    };
    live.clear(live.active()?)?;
    Ok(PROGRAMS
        .iter()
        .map(|&(name, path, _)| {
            let (ours, floor) = samples.remove(name).unwrap_or_default();
            LoopCost::new(name, path, keys, repeat, ours, floor)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_is_a_valid_ipv4_udp_frame() {
        let f = frame();
        // A header with its checksum in place sums to 0xffff.
        assert_eq!(checksum(&f[14..34]), 0);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]) as usize, f.len() - 14);
        assert_eq!(u16::from_be_bytes([f[38], f[39]]) as usize, f.len() - 34);
    }

    #[test]
    fn the_checksum_is_rfc_1071s_example() {
        // RFC 1071, section 3: the sum of these words is 0xddf2.
        let words = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&words), !0xddf2);
    }
}
