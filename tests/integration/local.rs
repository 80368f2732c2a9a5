//! Local networks: on an interface that faces a guest, the guest's address
//! is the key in both directions.

use trafmon::store::Kind;

use crate::harness::{As, Env, add_rule, assert_address, finish_all};

/// `a` is the host with trafmon on its veth; `b` is a guest that owns
/// 198.51.100.7 and 2001:db8:7::7, routed through the veth. With the
/// guest's prefixes configured as local, every packet on the host's veth is
/// keyed by the guest's address: tx what the guest sent, rx what it got,
/// equal to the guest's own per-address rules.
#[test]
fn the_guests_address_is_the_key_in_both_directions() {
    let env = Env::new("local_networks = [\"198.51.100.0/24\", \"2001:db8:7::/48\"]\n");
    let agent = env.agent();
    env.up(&[]);
    env.b
        .exec(&["ip", "addr", "add", "198.51.100.7/32", "dev", &env.vb]);
    env.b.exec(&[
        "ip",
        "addr",
        "add",
        "2001:db8:7::7/128",
        "dev",
        &env.vb,
        "nodad",
    ]);
    env.b.exec(&[
        "ip",
        "route",
        "replace",
        "192.0.2.0/24",
        "dev",
        &env.vb,
        "src",
        "198.51.100.7",
    ]);
    env.b.exec(&[
        "ip",
        "-6",
        "route",
        "replace",
        "2001:db8::/64",
        "dev",
        &env.vb,
        "src",
        "2001:db8:7::7",
        "metric",
        "256",
    ]);
    env.a.exec(&[
        "ip",
        "route",
        "add",
        "198.51.100.0/24",
        "via",
        "192.0.2.100",
    ]);
    env.a.exec(&[
        "ip",
        "-6",
        "route",
        "add",
        "2001:db8:7::/48",
        "via",
        "2001:db8::100",
    ]);
    let guest = [("198.51.100.7", false), ("2001:db8:7::7", true)];
    for (i, (addr, v6)) in guest.iter().enumerate() {
        add_rule(
            &env.b,
            *v6,
            "INPUT",
            &["-d", addr],
            &format!("tm-guest-in-{i}"),
        );
        add_rule(
            &env.b,
            *v6,
            "OUTPUT",
            &["-s", addr],
            &format!("tm-guest-out-{i}"),
        );
    }
    let host = As::root(&env.a);
    let vm = As::root(&env.b);
    let receivers = [
        env.traffic(vm, &["tcp-recv", "198.51.100.7", "9500", "1"]),
        env.traffic(vm, &["udp-recv", "2001:db8:7::7", "9501", "30"]),
        env.traffic(host, &["tcp-recv", "2001:db8::1", "9502", "1"]),
        env.traffic(host, &["udp-recv", "192.0.2.1", "9503", "20"]),
    ];
    for r in &receivers {
        r.wait_listening();
    }
    let senders = [
        env.traffic(host, &["tcp-send", "198.51.100.7", "9500", "250000"]),
        env.traffic(host, &["udp-send", "2001:db8:7::7", "9501", "900", "30"]),
        env.traffic(vm, &["tcp-send", "2001:db8::1", "9502", "180000"]),
        env.traffic(vm, &["udp-send", "192.0.2.1", "9503", "700", "20"]),
    ];
    finish_all(senders, receivers);
    std::thread::sleep(std::time::Duration::from_millis(300));
    agent.stop();
    let counts = env.counts("");
    for (i, (addr, v6)) in guest.iter().enumerate() {
        // The host's veth sees the guest's packets; the guest's own rules
        // count the same packets.
        let rules = (&*format!("tm-guest-in-{i}"), &*format!("tm-guest-out-{i}"));
        let ours = assert_address(&counts, &env.b, addr, *v6, rules);
        assert!(
            ours.rx_bytes > 20_000 && ours.tx_bytes > 14_000,
            "{addr} both ways: {ours:?}"
        );
    }
    // The host's own addresses are not keys on this interface any more.
    assert!(
        !counts.contains_key(&(Kind::Ip, "192.0.2.1".into())),
        "{counts:?}"
    );
}
