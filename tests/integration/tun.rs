//! An L3 device (a tun device: no link-layer header in front of the IP
//! header). Per-IP counters must equal iptables rules, and the device's
//! counters its own statistics. `trafgen tun-reflect` is the far end: it
//! sends every UDP datagram back to its sender.

use crate::harness::{As, Env, add_rule, addresses, assert_address, assert_link};

const TUN: &str = "tmtun0";

#[test]
fn tun_counts_equal_iptables_and_its_statistics() {
    tun_counts_exactly(&[]);
}

/// [`tun_counts_equal_iptables_and_its_statistics`], with the agent's environment
/// `vars`.
pub fn tun_counts_exactly(vars: &[(&str, &str)]) {
    let env = Env::watching(TUN, "");
    env.a
        .exec(&["ip", "tuntap", "add", "dev", TUN, "mode", "tun"]);
    let agent = env.agent_with(vars);
    let root = As::root(&env.a);
    let per_family = 20;
    let reflector = env.traffic(root, &["tun-reflect", TUN, &(2 * per_family).to_string()]);
    reflector.wait_listening();
    // Quiet: no multicast listener reports, no link-local address.
    env.a.exec(&[
        "ip",
        "link",
        "set",
        TUN,
        "multicast",
        "off",
        "addrgenmode",
        "none",
    ]);
    let ours = [("198.51.100.1", false), ("2001:db8:1::1", true)];
    for (i, (addr, v6)) in ours.iter().enumerate() {
        let net = format!("{addr}/{}", if *v6 { 64 } else { 24 });
        let mut add = vec!["ip", "addr", "add", &net, "dev", TUN];
        if *v6 {
            add.push("nodad");
        }
        env.a.exec(&add);
        add_rule(&env.a, *v6, "INPUT", &["-d", addr], &format!("tm-in-{i}"));
        add_rule(&env.a, *v6, "OUTPUT", &["-s", addr], &format!("tm-out-{i}"));
    }
    env.a.exec(&["ip", "link", "set", TUN, "up"]);

    let count = per_family.to_string();
    let senders = [
        env.traffic(root, &["udp-send", "198.51.100.2", "9000", "700", &count]),
        env.traffic(root, &["udp-send", "2001:db8:1::2", "9001", "900", &count]),
    ];
    for s in senders {
        s.finish();
    }
    assert_eq!(reflector.finish(), 2 * per_family, "datagrams reflected");
    agent.stop();

    let counts = env.counts("");
    for (i, (addr, v6)) in ours.iter().enumerate() {
        let rules = (&*format!("tm-in-{i}"), &*format!("tm-out-{i}"));
        let got = assert_address(&counts, &env.a, addr, *v6, rules);
        assert!(
            got.rx_packets >= per_family,
            "{addr} got its datagrams back"
        );
    }
    assert_eq!(
        addresses(&counts),
        ["198.51.100.1", "2001:db8:1::1"],
        "addresses counted"
    );
    assert_link(&env, TUN, &[]);
}
