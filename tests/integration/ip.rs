//! Per-IP counters equal per-address iptables rule counters (IP length).

use trafmon::store::Kind;

use crate::harness::{
    As, Env, add_rule, addresses, assert_address, assert_link, count_of, finish_all, rule_counters,
};

/// The three addresses form one group.
const GROUPS: &str = "[groups]\ncust = [\"192.0.2.1\", \"192.0.2.2/32\", \"2001:db8::1/128\"]\n";

/// A network holding 192.0.2.1 and 192.0.2.2 (and no other address of
/// the test).
const NET: &str = "192.0.2.0/30";

/// Per-address counts equal per-address rules, and the group of all three
/// addresses equals the sum of its members.
#[test]
fn per_ip_equals_iptables_address_rules() {
    let env = Env::new(GROUPS);
    let agent = env.agent();
    env.up(&["192.0.2.2/24"]);
    let addrs = [
        ("192.0.2.1", false),
        ("192.0.2.2", false),
        ("2001:db8::1", true),
    ];
    for (i, (addr, v6)) in addrs.iter().enumerate() {
        add_rule(&env.a, *v6, "INPUT", &["-d", addr], &format!("tm-in-{i}"));
        add_rule(&env.a, *v6, "OUTPUT", &["-s", addr], &format!("tm-out-{i}"));
    }
    // The network of the two IPv4 addresses, for `report --ip NET`.
    add_rule(&env.a, false, "INPUT", &["-d", NET], "tm-in-net");
    add_rule(&env.a, false, "OUTPUT", &["-s", NET], "tm-out-net");
    let root_a = As::root(&env.a);
    let root_b = As::root(&env.b);
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for (i, (addr, _)) in addrs.iter().enumerate() {
        let n = i as u64 + 1;
        let (tcp, udp) = ((8000 + i).to_string(), (8100 + i).to_string());
        let rx = [
            env.traffic(root_a, &["tcp-recv", addr, &tcp, "1"]),
            env.traffic(root_a, &["udp-recv", addr, &udp, &(25 * n).to_string()]),
        ];
        for r in &rx {
            r.wait_listening();
        }
        receivers.extend(rx);
        senders.push(env.traffic(
            root_b,
            &["tcp-send", addr, &tcp, &(150_000 * n).to_string()],
        ));
        senders.push(env.traffic(
            root_b,
            &["udp-send", addr, &udp, "1000", &(25 * n).to_string()],
        ));
    }
    // And from `a` out to `b`, with `a`'s default source address.
    let back = env.traffic(root_b, &["udp-recv", "192.0.2.100", "8200", "10"]);
    back.wait_listening();
    senders.push(env.traffic(root_a, &["udp-send", "192.0.2.100", "8200", "600", "10"]));
    receivers.push(back);
    finish_all(senders, receivers);
    std::thread::sleep(std::time::Duration::from_millis(300));
    agent.stop();
    let counts = env.counts(GROUPS);
    for (i, (addr, v6)) in addrs.iter().enumerate() {
        let rules = (&*format!("tm-in-{i}"), &*format!("tm-out-{i}"));
        let ours = assert_address(&counts, &env.a, addr, *v6, rules);
        assert!(ours.rx_bytes > 150_000, "{addr} received traffic");
    }
    let mut sum = trafmon_common::Counters::ZERO;
    for (addr, _) in &addrs {
        sum.add(&counts[&(Kind::Ip, (*addr).to_string())]);
    }
    assert_eq!(
        counts[&(Kind::Group, "cust".into())],
        sum,
        "the group is the sum of its members"
    );

    // `report --ip NET` keeps the addresses inside the network, and their
    // sum equals the network's rules.
    let out = env.trafmon(&["report", "--total", "--ip", NET, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut keys: Vec<&str> = json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["key"].as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["192.0.2.1", "192.0.2.2"], "{json}");
    let (rx, tx) = (
        rule_counters(&env.a, false, "tm-in-net"),
        rule_counters(&env.a, false, "tm-out-net"),
    );
    let sum = &json["sum"];
    assert_eq!(
        [
            &sum["rx_packets"],
            &sum["rx_bytes"],
            &sum["tx_packets"],
            &sum["tx_bytes"]
        ]
        .map(|v| v.as_u64().expect("a count")),
        [rx.0, rx.1, tx.0, tx.1],
        "{json}"
    );
}

/// With `address_interfaces`, addresses are counted only on the listed
/// interfaces, while every watched interface still counts its device: here
/// `lo` is watched for its device only, so traffic over it adds no address,
/// and the veth's address still equals its rules exactly.
#[test]
fn addresses_are_counted_only_on_address_interfaces() {
    let env = Env::new("");
    let config = std::fs::read_to_string(&env.config).expect("config");
    let only_va = format!("interfaces = [\"{}\"]", env.va);
    assert!(config.contains(&only_va), "{config}");
    std::fs::write(
        &env.config,
        config.replace(
            &only_va,
            &format!(
                "interfaces = [\"{va}\", \"lo\"]\naddress_interfaces = [\"{va}\"]",
                va = env.va
            ),
        ),
    )
    .expect("config");
    let agent = env.agent();
    assert!(
        agent.logged("link=tc_ingress@lo addresses=false"),
        "lo counts its device only"
    );
    env.up(&[]);
    // Up only now, with the programs attached: the statistics start at 0
    // where trafmon does.
    env.a.exec(&["ip", "link", "set", "lo", "up"]);
    add_rule(&env.a, false, "INPUT", &["-d", "192.0.2.1"], "tm-in");
    add_rule(&env.a, false, "OUTPUT", &["-s", "192.0.2.1"], "tm-out");
    let (root_a, root_b) = (As::root(&env.a), As::root(&env.b));
    let receivers = [
        env.traffic(root_a, &["udp-recv", "192.0.2.1", "8500", "30"]),
        env.traffic(root_b, &["udp-recv", "192.0.2.100", "8501", "20"]),
        env.traffic(root_a, &["udp-recv", "127.0.0.1", "8502", "25"]),
    ];
    for r in &receivers {
        r.wait_listening();
    }
    let senders = [
        env.traffic(root_b, &["udp-send", "192.0.2.1", "8500", "500", "30"]),
        env.traffic(root_a, &["udp-send", "192.0.2.100", "8501", "400", "20"]),
        env.traffic(root_a, &["udp-send", "127.0.0.1", "8502", "300", "25"]),
    ];
    finish_all(senders, receivers);
    std::thread::sleep(std::time::Duration::from_millis(300));
    agent.stop();

    let status = String::from_utf8_lossy(&env.trafmon(&["status"]).stdout).into_owned();
    for (link, program) in [
        ("tc ingress on lo", "(tcd_lo_ingress)"),
        (&*format!("tc ingress on {}", env.va), "(tc_eth_ingress)"),
    ] {
        assert!(
            status
                .lines()
                .any(|l| l.contains(link) && l.contains(program)),
            "{link} runs {program}:\n{status}"
        );
    }

    let counts = env.counts("");
    let ours = assert_address(&counts, &env.a, "192.0.2.1", false, ("tm-in", "tm-out"));
    assert_eq!((ours.rx_packets, ours.tx_packets), (30, 20));
    let seen = addresses(&counts);
    assert!(
        !seen.iter().any(|a| *a == "127.0.0.1" || *a == "::1"),
        "no address counted on lo: {seen:?}"
    );
    assert_link(&env, &env.va, &[]);
    assert_link(&env, "lo", &[]);
    assert!(
        count_of(&counts, Kind::Iface, "lo").rx_packets >= 25,
        "lo counted its device"
    );
}

/// GRO on `a`'s veth merges the frames `b` sends (cut by `b` itself: TSO
/// and GSO off there) into larger packets before tc and iptables see them:
/// per-address counts, IPv4 and IPv6, still equal the rules exactly, while
/// the device's own statistics count every frame (README, How to read the
/// numbers).
#[test]
fn per_ip_equals_iptables_when_gro_merges_received_frames() {
    let env = Env::new("");
    env.a.exec(&["ethtool", "-K", &env.va, "gro", "on"]);
    env.b
        .exec(&["ethtool", "-K", &env.vb, "tso", "off", "gso", "off"]);
    let agent = env.agent();
    env.up(&[]);
    let addrs = [("192.0.2.1", false), ("2001:db8::1", true)];
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for (i, (addr, v6)) in addrs.iter().enumerate() {
        add_rule(
            &env.a,
            *v6,
            "INPUT",
            &["-d", addr],
            &format!("tm-gro-in-{i}"),
        );
        add_rule(
            &env.a,
            *v6,
            "OUTPUT",
            &["-s", addr],
            &format!("tm-gro-out-{i}"),
        );
        let port = (8000 + i).to_string();
        let rx = env.traffic(As::root(&env.a), &["tcp-recv", addr, &port, "1"]);
        rx.wait_listening();
        receivers.push(rx);
        senders.push(env.traffic(As::root(&env.b), &["tcp-send", addr, &port, "20000000"]));
    }
    finish_all(senders, receivers);
    std::thread::sleep(std::time::Duration::from_millis(300));
    agent.stop();
    let counts = env.counts("");
    for (i, (addr, v6)) in addrs.iter().enumerate() {
        let rules = (&*format!("tm-gro-in-{i}"), &*format!("tm-gro-out-{i}"));
        let ours = assert_address(&counts, &env.a, addr, *v6, rules);
        assert!(ours.rx_bytes > 20_000_000, "{addr}: {ours:?}");
    }
    // GRO did merge: the device received many more frames than tc saw.
    let link = count_of(&counts, Kind::Iface, &env.va);
    let device = Env::link_stats(&env.a, &env.va);
    assert!(
        link.rx_packets * 4 < device[1],
        "GRO merged frames: tc saw {} packets, {} received {}",
        link.rx_packets,
        env.va,
        device[1]
    );
}
