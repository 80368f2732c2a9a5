//! Per-IP counters equal per-address iptables rule counters (IP length).

use crate::harness::{As, Env, add_rule, rule_counters};

#[test]
fn per_ip_equals_iptables_address_rules() {
    let env = Env::new("");
    let _agent = env.agent();
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
    let root_a = As {
        ns: &env.a,
        uid: 0,
        counted: false,
    };
    let root_b = As {
        ns: &env.b,
        uid: 0,
        counted: false,
    };
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
    for s in senders {
        s.finish();
    }
    for r in receivers {
        r.finish();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));

    let totals = env.totals();
    for (i, (addr, v6)) in addrs.iter().enumerate() {
        let key = key_of(addr);
        let ours = totals.ips.get(&key).copied().unwrap_or_default();
        let (pi, bi) = rule_counters(&env.a, *v6, &format!("tm-in-{i}"));
        let (po, bo) = rule_counters(&env.a, *v6, &format!("tm-out-{i}"));
        assert_eq!(
            [
                ours.rx_packets,
                ours.rx_bytes,
                ours.tx_packets,
                ours.tx_bytes
            ],
            [pi, bi, po, bo],
            "{addr}: trafmon [rx p, rx B, tx p, tx B] vs INPUT -d / OUTPUT -s rules"
        );
        assert!(ours.rx_bytes > 150_000, "{addr} received traffic");
    }
}

fn key_of(addr: &str) -> trafmon_common::IpKey {
    let ip: std::net::IpAddr = addr.parse().expect("address");
    let mut key = trafmon_common::IpKey {
        addr: [0; 16],
        family: 0,
    };
    match ip {
        std::net::IpAddr::V4(v4) => {
            key.family = trafmon_common::FAMILY_IPV4;
            key.addr[..4].copy_from_slice(&v4.octets());
        }
        std::net::IpAddr::V6(v6) => {
            key.family = trafmon_common::FAMILY_IPV6;
            key.addr = v6.octets();
        }
    }
    key
}
