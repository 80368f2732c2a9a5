//! Per-interface counters equal the interface's own statistics.

use trafmon::store::Kind;

use std::{
    thread::sleep,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::harness::{
    Agent, As, Env, Paced, assert_link, assert_paced_flows, count_of, finish_all,
};

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

/// An interface removed and made again under the same name (as
/// `wg-quick down; wg-quick up` does, which takes the old device's links
/// with it) is attached again within moments, from the kernel's link
/// events, long before the agent's next flush, and counted exactly.
#[test]
fn an_interface_made_anew_is_attached_at_once_and_counted() {
    made_anew_is_attached_at_once_and_counted(&[]);
}

/// [`an_interface_made_anew_is_attached_at_once_and_counted`], with the
/// agent's environment `vars`.
pub fn made_anew_is_attached_at_once_and_counted(vars: &[(&str, &str)]) {
    let env = Env::with_interval("30s", "");
    let agent = env.agent_with(vars);
    // Just after a flush, so that no flush (and no interface check after
    // it) comes for the next 30 s.
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let to_tick = 30_000 - u64::try_from(since % 30_000).expect("ms");
    sleep(Duration::from_millis(to_tick + 300));
    let attached = format!("link=tc_egress@{}", env.va);
    assert_eq!(agent.logged_times(&attached), 1);
    let old = Env::ifindex(&env.a, &env.va);
    env.remake_veth();
    assert_ne!(Env::ifindex(&env.a, &env.va), old, "a new device");
    let deadline = Instant::now() + Duration::from_secs(5);
    while agent.logged_times(&attached) < 2 {
        assert!(
            Instant::now() < deadline,
            "the new device was not attached within 5 s"
        );
        sleep(Duration::from_millis(20));
    }
    counters_equal_the_kernels(&env, agent);
}

/// An interface renamed while it is up and carries traffic (`ip link set
/// NAME name NEW`; udev, or an admin): with `interfaces = "auto"` its links
/// go with it under the new name, so that no packet of the device goes
/// uncounted, and its counts (under the old name, then the new one) and
/// the address's equal the device's statistics and iptables rules exactly.
#[test]
fn an_interface_renamed_while_up_keeps_being_counted() {
    renamed_while_up_keeps_being_counted(&[], |_| ("interface renamed".into(), 2));
}

/// [`an_interface_renamed_while_up_keeps_being_counted`], with the agent's
/// environment `vars`; `moved` gives, for the new name, the log line that
/// says the programs are on it under that name and how many times it
/// comes.
pub fn renamed_while_up_keeps_being_counted(
    vars: &[(&str, &str)],
    moved: impl Fn(&str) -> (String, usize),
) {
    let env = Env::auto("");
    let agent = env.agent_with(vars);
    let paced = Paced::start(&env, 61070, 9720);
    sleep(Duration::from_millis(1200));
    let renamed = format!("{}r", env.va);
    env.a
        .exec(&["ip", "link", "set", &env.va, "name", &renamed]);
    let (line, times) = moved(&renamed);
    assert!(
        agent.wait_logged(&line, times, Duration::from_secs(5)),
        "both hooks went with the device: {line:?} {times} times"
    );
    let uid = paced.finish();
    sleep(Duration::from_millis(300));
    assert!(
        !agent.logged("cannot follow interfaces"),
        "no attach failed"
    );
    agent.stop();

    let counts = env.stored();
    assert_paced_flows(&counts, &env, uid);
    assert_link(&env, &renamed, &[&env.va]);
    assert!(
        count_of(&counts, Kind::Iface, &renamed).tx_packets > 0,
        "counted under the new name after the rename"
    );
}

/// With `interfaces = "auto"`, an interface that is down is attached at
/// the start too: the kernel sends packets of its own (IPv6 listener
/// reports) the moment a device comes up, before a link event could get it
/// attached, and its statistics count those.
#[test]
fn auto_attaches_interfaces_that_are_down_so_their_first_packets_count() {
    let env = Env::auto("");
    let agent = env.agent();
    for hook in ["tc_ingress", "tc_egress"] {
        assert!(
            agent.logged(&format!("link={hook}@{}", env.va)),
            "{} (down) was attached before the agent started counting",
            env.va
        );
    }
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
    let kernel = assert_link(env, &env.va, &[]);
    // At least the payload that crossed in each direction.
    assert!(
        kernel[0] >= 300_000 + 40 * 1200 && kernel[2] >= 200_000 + 30 * 333,
        "the traffic went through: {kernel:?}"
    );
}
