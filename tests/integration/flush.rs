//! The lossless flush: under load, across SIGKILLs at every step and at
//! random moments, and at a clean stop, the store equals iptables exactly.

use std::{
    os::unix::process::ExitStatusExt as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use trafmon::store::{Kind, Store};
use trafmon_common::Counters;

use crate::{
    harness::Env,
    load::{Load, check},
};

/// Several UIDs and addresses send for 20 s while the agent flushes every
/// 100 ms and a reader queries the store in a loop: the reader never sees a
/// total go down or resolutions that disagree (half a flush), and the store
/// ends equal to iptables.
#[test]
fn no_byte_lost_or_doubled_under_load_and_readers_see_whole_flushes() {
    let env = Env::with_interval("100ms", "");
    let agent = env.agent();
    env.up(&[]);
    let load = Load::start(&env, 20);

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, path) = (stop.clone(), env.store_path());
        std::thread::spawn(move || {
            let mut store = Store::open_read_only(&path).expect("open the store read-only");
            let (mut reads, mut last) = (0u64, Counters::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let sums = store.resolution_sums().expect("read sums");
                assert!(
                    sums.iter().all(|s| *s == sums[0]),
                    "resolutions disagree: {sums:?}"
                );
                let now = sums[3];
                assert!(
                    now.rx_bytes >= last.rx_bytes
                        && now.tx_bytes >= last.tx_bytes
                        && now.rx_packets >= last.rx_packets
                        && now.tx_packets >= last.tx_packets,
                    "a total went down: {last:?} -> {now:?}"
                );
                last = now;
                reads += 1;
            }
            (reads, last)
        })
    };
    load.finish();
    agent.stop();
    stop.store(true, Ordering::Relaxed);
    let (reads, seen) = reader.join().expect("the reader found no inconsistency");
    assert!(reads > 100, "the reader read often ({reads} times)");
    assert!(seen.tx_bytes > 0, "the reader saw flushes");

    check(&env, &env.counts(""));
}

/// After SIGTERM the store holds everything and both sides are empty.
#[test]
fn a_clean_stop_leaves_nothing_unstored() {
    let env = Env::with_interval("10s", "");
    let agent = env.agent();
    env.up(&[]);
    Load::start(&env, 2).finish();
    agent.stop();
    let kernel = env.kernel();
    assert!(
        kernel
            .uids
            .values()
            .chain(kernel.ips.values())
            .chain(kernel.ifaces.values())
            .all(Counters::is_zero),
        "both sides are empty after the final flush: {kernel:?}"
    );
    assert!(kernel.overflow.iter().all(Counters::is_zero));
    check(&env, &env.stored());
}

/// SIGKILL right after each step of a flush, in turn, under load; every
/// restart recovers, and the store ends exact.
#[test]
fn kill_9_after_every_step_of_a_flush_loses_and_doubles_nothing() {
    let env = Env::with_interval("100ms", "");
    // Install the pinned programs before any traffic flows.
    env.agent().stop();
    env.up(&[]);
    let load = Load::start(&env, 12);
    for step in ["flip", "grace", "drain", "commit", "clear", "recorded"] {
        let agent = env.agent_with(&[("TRAFMON_FAULT", &format!("after-{step}:3"))]);
        let status = agent.wait_exit(Duration::from_secs(10));
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "killed after {step}: {status}"
        );
    }
    let agent = env.agent();
    load.finish();
    agent.stop();
    let events = Store::open_read_only(&env.store_path())
        .expect("store")
        .events()
        .expect("events");
    let recovered = events
        .iter()
        .filter(|(_, kind, _)| kind == "recovered")
        .count();
    assert!(
        recovered >= 2,
        "kills after commit and clear were recovered: {events:?}"
    );
    check(&env, &env.counts(""));
}

/// Twenty SIGKILLs at random moments under load; the store ends exact.
#[test]
fn kill_9_at_random_moments_loses_and_doubles_nothing() {
    let env = Env::with_interval("100ms", "");
    env.agent().stop();
    env.up(&[]);
    let load = Load::start(&env, 15);
    let mut seed = Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id());
    for _ in 0..20 {
        let agent = env.agent();
        // xorshift: 20-400 ms, so kills land anywhere in the flush cycle.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 380));
        agent.kill(libc::SIGKILL);
    }
    let agent = env.agent();
    load.finish();
    agent.stop();
    check(&env, &env.counts(""));
    let stored = env.stored();
    assert!(
        stored.keys().any(|(k, _)| *k == Kind::Uid),
        "the store holds the traffic"
    );
}
