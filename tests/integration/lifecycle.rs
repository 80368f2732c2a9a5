//! The kernel counts while no agent runs; uninstall leaves nothing behind.

use trafmon::store::Kind;

use crate::harness::{As, Env, add_rule, rule_counters, sh};

#[test]
fn counting_survives_a_killed_agent() {
    let env = Env::new("");
    let agent = env.agent();
    env.up(&[]);
    let status = agent.kill(libc::SIGKILL);
    assert!(!status.success(), "the agent was killed");

    add_rule(
        &env.a,
        false,
        "OUTPUT",
        &["-m", "owner", "--uid-owner", "61030"],
        "tm-uid-61030",
    );
    let receiver = env.traffic(
        As {
            ns: &env.b,
            uid: 0,
            counted: false,
        },
        &["udp-recv", "192.0.2.100", "9100", "50"],
    );
    receiver.wait_listening();
    let sent = env
        .traffic(
            As {
                ns: &env.a,
                uid: 61030,
                counted: true,
            },
            &["udp-send", "192.0.2.100", "9100", "1000", "50"],
        )
        .finish();
    receiver.finish();
    assert_eq!(sent, 50_000);

    env.agent().stop();
    let (packets, bytes) = rule_counters(&env.a, false, "tm-uid-61030");
    let ours = env
        .stored()
        .get(&(Kind::Uid, "61030".into()))
        .copied()
        .unwrap_or_default();
    assert_eq!((ours.tx_packets, ours.tx_bytes), (packets, bytes));
    assert_eq!((packets, bytes), (50, 50 * 1028));
}

#[test]
fn uninstall_leaves_nothing() {
    let env = Env::new("");
    let agent = env.agent();
    env.up(&[]);
    assert!(env.pin_dir.join("links").read_dir().expect("links").count() >= 4);
    let status = agent.kill(libc::SIGTERM);
    assert!(
        status.success(),
        "the agent stops cleanly on SIGTERM: {status}"
    );

    let out = env.trafmon(&["uninstall"]);
    assert!(
        out.status.success(),
        "uninstall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!env.pin_dir.exists(), "{} is gone", env.pin_dir.display());

    let cgroup = sh(&[
        "bpftool",
        "-j",
        "cgroup",
        "show",
        env.cgroup.path.to_str().expect("utf-8"),
    ]);
    let attached: serde_json::Value = serde_json::from_str(if cgroup.trim().is_empty() {
        "[]"
    } else {
        &cgroup
    })
    .expect("bpftool json");
    assert_eq!(
        attached,
        serde_json::json!([]),
        "nothing attached to the cgroup"
    );

    let net = env
        .a
        .exec(&["bpftool", "-j", "net", "show", "dev", &env.va]);
    let net: serde_json::Value = serde_json::from_str(&net).expect("bpftool json");
    let text = net.to_string();
    for name in [
        "tc_eth_ingress",
        "tc_eth_egress",
        "tc_ip_ingress",
        "tc_ip_egress",
    ] {
        assert!(
            !text.contains(&name[..name.len().min(15)]),
            "{name} still attached: {text}"
        );
    }
}
