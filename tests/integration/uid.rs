//! Per-UID counters equal iptables owner and port rule counters, and count
//! a socket in a user namespace under the UID the host sees.

use std::collections::BTreeMap;

use trafmon::store::Kind;

use trafmon_common::Counters;

use crate::harness::{
    As, Env, add_owner_rules, add_rule, assert_uid_tx, count_of, finish_all, rule_counters,
};

/// The last UID of the per-CPU array of slots, the first one past it, and
/// one far beyond it (both counted in the hash map).
const UIDS: [u32; 3] = [
    trafmon_common::UID_FAST_SLOTS - 1,
    trafmon_common::UID_FAST_SLOTS,
    61003,
];

/// Three UIDs send TCP and UDP over IPv4 and IPv6 at the same time; their tx
/// equals `--uid-owner` rule counters in OUTPUT.
#[test]
fn per_uid_egress_equals_iptables_owner_rules() {
    let env = Env::new("");
    let agent = env.agent();
    env.up(&[]);
    for uid in UIDS {
        add_owner_rules(&env.a, uid, true);
    }
    let root_b = As::root(&env.b);
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for (i, uid) in UIDS.into_iter().enumerate() {
        let n = i as u64 + 1;
        let ports: Vec<String> = (0..4).map(|k| (6000 + 100 * k + i).to_string()).collect();
        let rx = [
            env.traffic(root_b, &["tcp-recv", "192.0.2.100", &ports[0], "1"]),
            env.traffic(root_b, &["tcp-recv", "2001:db8::100", &ports[1], "1"]),
            env.traffic(
                root_b,
                &["udp-recv", "192.0.2.100", &ports[2], &(20 * n).to_string()],
            ),
            env.traffic(
                root_b,
                &[
                    "udp-recv",
                    "2001:db8::100",
                    &ports[3],
                    &(10 * n).to_string(),
                ],
            ),
        ];
        for r in &rx {
            r.wait_listening();
        }
        receivers.extend(rx);
        let who = As::user(&env.a, uid);
        senders.push(env.traffic(
            who,
            &[
                "tcp-send",
                "192.0.2.100",
                &ports[0],
                &(100_000 * n).to_string(),
            ],
        ));
        senders.push(env.traffic(
            who,
            &[
                "tcp-send",
                "2001:db8::100",
                &ports[1],
                &(50_000 * n).to_string(),
            ],
        ));
        senders.push(env.traffic(
            who,
            &[
                "udp-send",
                "192.0.2.100",
                &ports[2],
                "700",
                &(20 * n).to_string(),
            ],
        ));
        senders.push(env.traffic(
            who,
            &[
                "udp-send",
                "2001:db8::100",
                &ports[3],
                "900",
                &(10 * n).to_string(),
            ],
        ));
    }
    finish_all(senders, receivers);
    std::thread::sleep(std::time::Duration::from_millis(300));
    agent.stop();
    let counts = env.counts("");
    for uid in UIDS {
        let ours = assert_uid_tx(&counts, &env.a, uid, true);
        assert!(ours.tx_bytes > 100_000, "uid {uid} sent traffic");
    }
}

/// Each UID receives on its own ports; its rx equals INPUT `--dport` rule
/// counters. Senders close first, so every packet the receivers get meets a
/// full socket (no time-wait on the receiving side): the two sides see the
/// same packets and must match exactly.
#[test]
fn per_uid_ingress_equals_iptables_port_rules() {
    let env = Env::new("");
    let agent = env.agent();
    env.up(&[]);
    let root_b = As::root(&env.b);
    let mut rule_names: BTreeMap<u32, Vec<(bool, String)>> = BTreeMap::new();
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for (i, uid) in UIDS.into_iter().enumerate() {
        let n = i as u64 + 1;
        let ports: Vec<String> = (0..4).map(|k| (7000 + 100 * k + i).to_string()).collect();
        for (k, (proto, v6)) in [("tcp", false), ("tcp", true), ("udp", false), ("udp", true)]
            .into_iter()
            .enumerate()
        {
            let name = format!("tm-port-{}", ports[k]);
            add_rule(
                &env.a,
                v6,
                "INPUT",
                &["-p", proto, "--dport", &ports[k]],
                &name,
            );
            rule_names.entry(uid).or_default().push((v6, name));
        }
        let who = As::user(&env.a, uid);
        let rx = [
            env.traffic(who, &["tcp-recv", "192.0.2.1", &ports[0], "1"]),
            env.traffic(who, &["tcp-recv", "2001:db8::1", &ports[1], "1"]),
            env.traffic(
                who,
                &["udp-recv", "192.0.2.1", &ports[2], &(15 * n).to_string()],
            ),
            env.traffic(
                who,
                &["udp-recv", "2001:db8::1", &ports[3], &(12 * n).to_string()],
            ),
        ];
        for r in &rx {
            r.wait_listening();
        }
        receivers.extend(rx);
        senders.push(env.traffic(
            root_b,
            &[
                "tcp-send",
                "192.0.2.1",
                &ports[0],
                &(120_000 * n).to_string(),
            ],
        ));
        senders.push(env.traffic(
            root_b,
            &[
                "tcp-send",
                "2001:db8::1",
                &ports[1],
                &(60_000 * n).to_string(),
            ],
        ));
        senders.push(env.traffic(
            root_b,
            &[
                "udp-send",
                "192.0.2.1",
                &ports[2],
                "800",
                &(15 * n).to_string(),
            ],
        ));
        senders.push(env.traffic(
            root_b,
            &[
                "udp-send",
                "2001:db8::1",
                &ports[3],
                "500",
                &(12 * n).to_string(),
            ],
        ));
    }
    finish_all(senders, receivers);
    std::thread::sleep(std::time::Duration::from_millis(300));
    agent.stop();
    let counts = env.counts("");
    for (uid, rules) in rule_names {
        let (mut packets, mut bytes) = (0, 0);
        for (v6, name) in rules {
            let (p, b) = rule_counters(&env.a, v6, &name);
            packets += p;
            bytes += b;
        }
        let ours = counts
            .get(&(Kind::Uid, uid.to_string()))
            .copied()
            .unwrap_or_default();
        assert_eq!(
            (ours.rx_packets, ours.rx_bytes),
            (packets, bytes),
            "uid {uid}: trafmon rx (packets, bytes) vs INPUT --dport rules"
        );
        assert!(ours.rx_bytes > 100_000, "uid {uid} received traffic");
    }
}

/// A socket in a user namespace that maps UIDs 0..65536 to the host's
/// 300000.. (as an unprivileged container's does) is counted under the UID
/// the host sees, exactly what the generator sent and received over the
/// namespace's loopback; the host's user with the number the namespace
/// sees is not charged a byte.
#[test]
fn a_socket_in_a_user_namespace_is_counted_under_its_host_uid() {
    user_namespace_traffic(&[]);
}

/// The same, with the cgroup programs reading sockets' owners as they do on
/// kernels without `bpf_rdonly_cast` (before 6.2): the socket's address
/// through a per-CPU scratch value, then the kernel's reader.
#[test]
fn a_socket_in_a_user_namespace_is_counted_under_its_host_uid_without_the_cast() {
    user_namespace_traffic(&[("TRAFMON_FAULT_SOCKET_OWNER", "scratch")]);
}

/// The same, with the programs' rarest path: the kernel's reader for the
/// address too, as when another program on the CPU wrote the scratch value
/// in between.
#[test]
fn a_socket_in_a_user_namespace_is_counted_under_its_host_uid_by_the_readers_path() {
    user_namespace_traffic(&[("TRAFMON_FAULT_SOCKET_OWNER", "reader")]);
}

/// Runs the user-namespace traffic with an agent started with `vars` and
/// checks its counts.
fn user_namespace_traffic(vars: &[(&str, &str)]) {
    const BASE: u32 = 300_000;
    const INNER: u32 = 1000;
    const SIZE: u64 = 972;
    const COUNT: u64 = 200;
    let env = Env::new("");
    let agent = env.agent_with(vars);
    env.up(&[]);
    let generator = env.traffic(
        As::user(&env.a, 0),
        &[
            "userns-loop",
            &BASE.to_string(),
            &INNER.to_string(),
            &SIZE.to_string(),
            &COUNT.to_string(),
        ],
    );
    assert_eq!(generator.finish(), SIZE * COUNT);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        agent.logged("socket owners are read with bpf_probe_read_kernel"),
        !vars.is_empty(),
        "the agent loaded its programs with the path the test asked for"
    );
    agent.stop();
    let counts = env.counts("");
    // IPv4 and UDP headers: 28 bytes per datagram.
    let ip_bytes = (SIZE + 28) * COUNT;
    let host = count_of(&counts, Kind::Uid, &(BASE + INNER).to_string());
    assert_eq!(
        (
            host.tx_packets,
            host.tx_bytes,
            host.rx_packets,
            host.rx_bytes
        ),
        (COUNT, ip_bytes, COUNT, ip_bytes),
        "uid {}: what the generator sent and received",
        BASE + INNER
    );
    for seen in [INNER, 0] {
        assert_eq!(
            count_of(&counts, Kind::Uid, &seen.to_string()),
            Counters::default(),
            "uid {seen}, as the namespace sees its socket, is charged nothing"
        );
    }
}
