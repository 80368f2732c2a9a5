//! `trafmon stats --reset --as NAME`: a caller sees only the traffic since
//! its last reset; other callers and the report keep the full totals.

use crate::harness::{As, Env, add_owner_rules, owner_counters};

fn send(env: &Env, port: &str, count: &str) {
    let receiver = env.traffic(As::root(&env.b), &["udp-recv", "192.0.2.100", port, count]);
    receiver.wait_listening();
    env.traffic(
        As::user(&env.a, 61301),
        &["udp-send", "192.0.2.100", port, "500", count],
    )
    .finish();
    receiver.finish();
}

fn uplink(env: &Env, args: &[&str]) -> u64 {
    let mut full = vec!["stats", "--pattern", "user>>>61301>>>traffic>>>uplink"];
    full.extend_from_slice(args);
    let out = env.trafmon(&full);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("a counter line: {text:?}"));
    let (name, value) = line.split_once('\t').expect("name<TAB>value");
    assert_eq!(name, "user>>>61301>>>traffic>>>uplink");
    value.parse().expect("a number")
}

#[test]
fn reset_shows_only_the_traffic_since_the_callers_last_reset() {
    let env = Env::new("");
    let agent = env.agent();
    env.up(&[]);
    add_owner_rules(&env.a, 61301, false);
    send(&env, "9800", "20");
    agent.stop();
    let (_, first) = owner_counters(&env.a, 61301, false);
    assert_eq!(
        uplink(&env, &["--reset", "--as", "a"]),
        first,
        "no baseline yet: everything"
    );

    let agent = env.agent();
    send(&env, "9801", "7");
    agent.stop();
    let (_, second) = owner_counters(&env.a, 61301, false);
    assert_eq!(
        uplink(&env, &["--reset", "--as", "a"]),
        second - first,
        "only what came after the reset"
    );
    assert_eq!(uplink(&env, &["--reset", "--as", "a"]), 0, "nothing since");
    assert_eq!(
        uplink(&env, &["--as", "b"]),
        second,
        "another caller still sees everything"
    );
    assert_eq!(uplink(&env, &[]), second, "so does the default caller");

    let out = env.trafmon(&["report", "--json", "--user", "61301"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        json["rows"][0]["tx_bytes"].as_u64(),
        Some(second),
        "the report keeps the full totals"
    );
}

/// Callers that reset at the same moment under one name (two cron jobs, a
/// panel and a script) are served one after the other: together they are
/// shown the traffic exactly once, never twice.
#[test]
fn simultaneous_resets_of_one_caller_show_the_traffic_once() {
    let env = Env::new("");
    let agent = env.agent();
    env.up(&[]);
    add_owner_rules(&env.a, 61301, false);
    send(&env, "9802", "20");
    agent.stop();
    let (_, sent) = owner_counters(&env.a, 61301, false);
    let start = std::sync::Barrier::new(8);
    let shown: u64 = std::thread::scope(|s| {
        let callers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    uplink(&env, &["--reset", "--as", "panel"])
                })
            })
            .collect();
        callers.into_iter().map(|c| c.join().expect("caller")).sum()
    });
    assert_eq!(shown, sent, "the callers together saw every byte once");
}
