//! The loopback device: its frames carry an Ethernet header (of zeroes), but
//! its link type is not Ethernet, and its own statistics count from the IP
//! header on. Per-IP counters must still equal iptables rules, and the
//! interface's counters its statistics.

use crate::harness::{As, Env, add_rule, addresses, assert_address, assert_link, finish_all};

/// Traffic between two addresses of `lo` in namespace `a`, IPv4 and IPv6.
#[test]
fn loopback_counts_equal_iptables_and_its_statistics() {
    loopback_counts_exactly(&[]);
}

/// [`loopback_counts_equal_iptables_and_its_statistics`], with the agent's environment
/// `vars`.
pub fn loopback_counts_exactly(vars: &[(&str, &str)]) {
    let env = Env::watching("lo", "");
    let agent = env.agent_with(vars);
    let addrs = [("192.0.2.1", false), ("2001:db8::1", true)];
    for (i, (addr, v6)) in addrs.iter().enumerate() {
        let host = format!("{addr}/{}", if *v6 { 128 } else { 32 });
        env.a.exec(&["ip", "addr", "add", &host, "dev", "lo"]);
        add_rule(&env.a, *v6, "INPUT", &["-d", addr], &format!("tm-in-{i}"));
        add_rule(&env.a, *v6, "OUTPUT", &["-s", addr], &format!("tm-out-{i}"));
    }
    // Up only now, with the programs attached: the statistics start at 0
    // where trafmon does.
    env.a.exec(&["ip", "link", "set", "lo", "up"]);

    let root = As::root(&env.a);
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for (i, (addr, _)) in addrs.iter().enumerate() {
        let (tcp, udp) = ((8300 + i).to_string(), (8400 + i).to_string());
        let rx = [
            env.traffic(root, &["tcp-recv", addr, &tcp, "1"]),
            env.traffic(root, &["udp-recv", addr, &udp, "20"]),
        ];
        for r in &rx {
            r.wait_listening();
        }
        receivers.extend(rx);
        senders.push(env.traffic(root, &["tcp-send", addr, &tcp, "200000"]));
        senders.push(env.traffic(root, &["udp-send", addr, &udp, "700", "20"]));
    }
    finish_all(senders, receivers);
    std::thread::sleep(std::time::Duration::from_millis(300));
    agent.stop();

    let counts = env.counts("");
    for (i, (addr, v6)) in addrs.iter().enumerate() {
        let rules = (&*format!("tm-in-{i}"), &*format!("tm-out-{i}"));
        let ours = assert_address(&counts, &env.a, addr, *v6, rules);
        assert!(ours.rx_bytes > 200_000, "{addr} received the traffic");
    }
    // Nothing but those two addresses went over lo, and nothing was read
    // at the wrong offset.
    assert_eq!(
        addresses(&counts),
        ["192.0.2.1", "2001:db8::1"],
        "addresses counted on lo"
    );
    assert_link(&env, "lo", &[]);
}
