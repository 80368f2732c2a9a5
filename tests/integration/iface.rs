//! Per-interface counters equal the interface's own statistics.

use trafmon::store::Kind;

use std::{
    thread::sleep,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::harness::{Agent, As, Env, finish_all};

/// A small ifindex: counted in the per-CPU array of slots.
#[test]
fn interface_counters_equal_the_kernels() {
    let env = Env::new("");
    assert!(Env::ifindex(&env.a, &env.va) < trafmon_common::IFACE_FAST_SLOTS);
    counters_equal_the_kernels(&env, env.agent());
}

/// An ifindex beyond the array: counted in the hash map.
#[test]
fn interface_counters_equal_the_kernels_for_a_large_ifindex() {
    let ifindex = trafmon_common::IFACE_FAST_SLOTS + 4000;
    let env = Env::with_ifindex(ifindex, "");
    assert_eq!(Env::ifindex(&env.a, &env.va), ifindex);
    counters_equal_the_kernels(&env, env.agent());
}

/// An interface removed and made again under the same name between two
/// of the agent's checks (as `wg-quick down; wg-quick up` does) is
/// attached again: its old links went with the old device.
#[test]
fn an_interface_made_anew_is_counted_again() {
    let env = Env::with_interval("2s", "");
    let agent = env.agent();
    // Just after a flush, which the agent's interface check follows, so
    // that the next check comes only after the device is back.
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let to_tick = 2000 - u64::try_from(since % 2000).expect("ms");
    sleep(Duration::from_millis(to_tick + 300));
    let old = Env::ifindex(&env.a, &env.va);
    env.remake_veth();
    assert_ne!(Env::ifindex(&env.a, &env.va), old, "a new device");
    // Two checks later.
    sleep(Duration::from_millis(4500));
    assert!(
        agent.logged("interface made anew"),
        "the agent noticed the new device"
    );
    counters_equal_the_kernels(&env, agent);
}

fn counters_equal_the_kernels(env: &Env, agent: Agent) {
    env.up(&[]);
    let in_a = As::root(&env.a);
    let in_b = As::root(&env.b);

    // TCP and UDP, both directions, IPv4 and IPv6.
    let receivers = [
        env.traffic(in_a, &["tcp-recv", "192.0.2.1", "5001", "1"]),
        env.traffic(in_b, &["tcp-recv", "2001:db8::100", "5002", "1"]),
        env.traffic(in_a, &["udp-recv", "2001:db8::1", "5003", "40"]),
        env.traffic(in_b, &["udp-recv", "192.0.2.100", "5004", "30"]),
    ];
    for r in &receivers {
        r.wait_listening();
    }
    let senders = [
        env.traffic(in_b, &["tcp-send", "192.0.2.1", "5001", "300000"]),
        env.traffic(in_a, &["tcp-send", "2001:db8::100", "5002", "200000"]),
        env.traffic(in_b, &["udp-send", "2001:db8::1", "5003", "1200", "40"]),
        env.traffic(in_a, &["udp-send", "192.0.2.100", "5004", "333", "30"]),
    ];
    finish_all(senders, receivers);

    agent.stop();
    let key = (Kind::Iface, env.va.clone());
    // Read trafmon, the interface, trafmon again, until nothing moved in
    // between (a stray IPv6 multicast report may still be on its way).
    for _ in 0..50 {
        let before = env.counts("").get(&key).copied().unwrap_or_default();
        let kernel = Env::link_stats(&env.a, &env.va);
        let after = env.counts("").get(&key).copied().unwrap_or_default();
        if before != after {
            sleep(Duration::from_millis(100));
            continue;
        }
        let ours = [
            after.rx_bytes,
            after.rx_packets,
            after.tx_bytes,
            after.tx_packets,
        ];
        assert_eq!(
            ours, kernel,
            "trafmon [rx B, rx p, tx B, tx p] vs {}'s statistics",
            env.va
        );
        // At least the payload that crossed in each direction.
        assert!(
            kernel[0] >= 300_000 + 40 * 1200 && kernel[2] >= 200_000 + 30 * 333,
            "the traffic went through: {kernel:?}"
        );
        return;
    }
    panic!("the interface never went quiet");
}
