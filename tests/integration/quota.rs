//! Quotas: throttling per UID (cgroup_skb) and per IP group (tc) holds the
//! configured rate while other traffic runs at full speed, blocking stops a
//! transfer until lifted (or the quota is removed), the alert command runs
//! once per crossing, and `trafmon quota` reports what the store holds.

use std::{
    fs,
    time::{Duration, Instant},
};

use serde_json::Value;
use trafmon::store::Kind;

use crate::harness::{As, Env, Traffic, add_owner_rules, assert_uid_tx, count_of, finish_all};

const MIB: f64 = 1024.0 * 1024.0;
/// Every bulk transfer stops after this much, whatever its time: 1 TiB,
/// far above what a 10-second flood moves over a veth pair (about 80 GiB
/// here), so that a rate is never the bound's. (64 GiB was once the
/// bound, and a fast run reached it: the flood beside a throttled one
/// then showed 6553.6 MiB/s, 64 GiB over 10 s, against 8404 alone.)
const MAX_BYTES: &str = "1099511627776";

/// `trafmon quota --json`, the entry named `name`.
fn quota(env: &Env, name: &str) -> Value {
    let out = env.trafmon(&["quota", "--json"]);
    assert!(
        out.status.success(),
        "trafmon quota: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("quota JSON");
    assert_eq!(v["jsonversion"], 1);
    v["quotas"]
        .as_array()
        .expect("quotas")
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no quota {name} in {v}"))
        .clone()
}

/// Waits (at most 15 s) until quota `name` is in `state`.
fn wait_state(env: &Env, name: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let q = quota(env, name);
        if q["state"] == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "quota {name} never became {state}: {q}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A receiver that counts for `seconds` after its accept, and its sender.
fn flood(
    env: &Env,
    from: As<'_>,
    to_ns: As<'_>,
    addr: &str,
    port: &str,
    seconds: u32,
) -> (Traffic, Traffic) {
    let rx = env.traffic(to_ns, &["tcp-recv-for", addr, port, &seconds.to_string()]);
    rx.wait_listening();
    let tx = env.traffic(
        from,
        &[
            "tcp-flood",
            addr,
            port,
            &(seconds + 2).to_string(),
            MAX_BYTES,
        ],
    );
    (rx, tx)
}

/// Sends 100 000 bytes as `uid` (to port `ports[0]`) over its quota
/// `name`, waits for the block, and checks that a flood of `seconds` (to
/// `ports[1]`) then moves nothing; the blocked sender and the receiving
/// side.
fn send_until_blocked<'a>(
    env: &'a Env,
    uid: u32,
    name: &str,
    ports: [&str; 2],
    seconds: u32,
) -> (As<'a>, As<'a>) {
    let blocked = As::user(&env.a, uid);
    let root_b = As::root(&env.b);
    assert_eq!(env.send(blocked, "192.0.2.100", ports[0], 100_000), 100_000);
    wait_state(env, name, "blocked");
    let (rx, tx) = flood(env, blocked, root_b, "192.0.2.100", ports[1], seconds);
    assert_eq!(rx.finish(), 0, "a blocked uid moved data");
    drop(tx);
    (blocked, root_b)
}

/// Bytes per second that `rx` saw in its window of `seconds`.
fn rate(rx: Traffic, tx: Traffic, seconds: u32) -> f64 {
    let got = rx.finish();
    drop(tx);
    got as f64 / f64::from(seconds)
}

/// Floods of 10 s side by side, from `throttled` to `throttled_addr` and
/// from `free` to `free_addr` (both received as `to`): checks that the
/// throttled one moves at 1 MiB/s (± 15 %) and that the other keeps 90 %
/// of its unthrottled rate, measured alone for 5 s just before and just
/// after (the slower of the two: on this VM one stream runs at one of two
/// rates, about 7 or 12 GiB/s, by where the scheduler puts its ends, and
/// the two windows alone often land one on each). A flood here fills both
/// CPUs, so a window's rate also moves by up to about 10 % with whatever
/// else the VM runs: a round whose free flood falls short is run again,
/// up to three rounds, each on ports of its own from `port`. Throttling
/// that slowed other traffic fails every round.
fn throttled_beside_free(
    env: &Env,
    (throttled, throttled_addr): (As<'_>, &str),
    (free, free_addr): (As<'_>, &str),
    to: As<'_>,
    port: u16,
) {
    let mut rounds = Vec::new();
    for round in 0..3u16 {
        let port = |i: u16| (port + 10 * round + i).to_string();
        let (rx, tx) = flood(env, free, to, free_addr, &port(0), 5);
        let before = rate(rx, tx, 5);
        let (slow_rx, slow_tx) = flood(env, throttled, to, throttled_addr, &port(1), 10);
        let (fast_rx, fast_tx) = flood(env, free, to, free_addr, &port(2), 10);
        let fast = rate(fast_rx, fast_tx, 10);
        let slow = rate(slow_rx, slow_tx, 10);
        let (rx, tx) = flood(env, free, to, free_addr, &port(3), 5);
        let after = rate(rx, tx, 5);
        let alone = before.min(after);
        let line = format!(
            "throttled: {:.3} MiB/s; other: {:.1} MiB/s beside it, alone {:.1} before and {:.1} after",
            slow / MIB,
            fast / MIB,
            before / MIB,
            after / MIB
        );
        eprintln!("round {round}: {line}");
        assert!((0.85 * MIB..=1.15 * MIB).contains(&slow), "{line}");
        rounds.push(line);
        if fast >= 0.9 * alone {
            return;
        }
    }
    panic!("the other flood kept less than 90 % of its rate alone in every round: {rounds:#?}");
}

const THROTTLED: u32 = 61101;
const FREE: u32 = 61102;

/// A UID over its quota is held at 1 MiB/s by cgroup_skb while another
/// UID's bulk transfer in the same run keeps at least 90 % of its rate.
#[test]
fn a_throttled_uid_moves_at_the_rate_and_others_at_full_speed() {
    let env = Env::new(&format!(
        r#"
[[quota]]
name = "seedbox"
user = {THROTTLED}
limit = "64KiB"
direction = "tx"
action = "throttle"
rate = "1MiB/s"
"#
    ));
    let agent = env.agent();
    env.up(&[]);
    let throttled = As::user(&env.a, THROTTLED);
    let free = As::user(&env.a, FREE);
    let root_b = As::root(&env.b);
    assert_eq!(quota(&env, "seedbox")["state"], "ok");
    env.send(throttled, "192.0.2.100", "7100", 200_000);
    wait_state(&env, "seedbox", "throttled");

    throttled_beside_free(
        &env,
        (throttled, "192.0.2.100"),
        (free, "192.0.2.100"),
        root_b,
        7101,
    );
    drop(agent);
}

/// An IP group over its quota is held at 1 MiB/s by the tc programs, for
/// traffic towards its address; another address keeps 90 % of its rate.
#[test]
fn a_throttled_ip_group_moves_at_the_rate_on_the_tc_path() {
    let env = Env::new(
        r#"
[groups]
customer = ["192.0.2.50/32", "2001:db8::50/128"]
[[quota]]
name = "customer"
group = "customer"
limit = "64KiB"
action = "throttle"
rate = "1MiB/s"
"#,
    );
    let agent = env.agent();
    env.up(&["192.0.2.50/24", "2001:db8::50/64"]);
    let root_a = As::root(&env.a);
    let root_b = As::root(&env.b);
    // Downloads: namespace b sends to the addresses in a, where tc counts
    // them at ingress of the veth.
    let rx = env.traffic(root_a, &["tcp-recv", "192.0.2.50", "7200", "1"]);
    rx.wait_listening();
    let tx = env.traffic(root_b, &["tcp-send", "192.0.2.50", "7200", "200000"]);
    finish_all([tx], [rx]);
    wait_state(&env, "customer", "throttled");

    throttled_beside_free(
        &env,
        (root_b, "2001:db8::50"),
        (root_b, "192.0.2.1"),
        root_a,
        7201,
    );
    drop(agent);
}

const BLOCKED: u32 = 61111;

/// A blocked UID cannot complete a transfer, even after the agent is
/// killed; once the block is lifted (the limit raised, the agent
/// restarted), it can.
#[test]
fn a_blocked_uid_cannot_transfer_until_the_block_is_lifted() {
    let env = Env::new(&format!(
        r#"
[[quota]]
name = "cut"
user = {BLOCKED}
limit = "64KiB"
action = "block"
"#
    ));
    let agent = env.agent();
    env.up(&[]);
    let (blocked, root_b) = send_until_blocked(&env, BLOCKED, "cut", ["7300", "7301"], 3);
    // Other users are not affected.
    let other = As::user(&env.a, BLOCKED + 1);
    assert_eq!(env.send(other, "192.0.2.100", "7302", 100_000), 100_000);

    // An agent that crashes leaves enforcement as it was.
    agent.kill(libc::SIGKILL);
    let (rx, tx) = flood(&env, blocked, root_b, "192.0.2.100", "7304", 2);
    assert_eq!(
        rx.finish(),
        0,
        "a blocked uid moved data after the agent died"
    );
    drop(tx);

    let text = fs::read_to_string(&env.config).expect("config");
    fs::write(&env.config, text.replace("\"64KiB\"", "\"1GiB\"")).expect("config");
    let agent = env.agent();
    wait_state(&env, "cut", "ok");
    assert_eq!(env.send(blocked, "192.0.2.100", "7303", 100_000), 100_000);
    assert!(agent.logged("lifted"), "the lift is logged");
    drop(agent);
}

const REMOVED: u32 = 61131;

/// Taking a quota out of the configuration lifts its block at the reload,
/// with a logged and recorded event, and a restart does not bring it back.
#[test]
fn a_blocked_uid_is_free_once_its_quota_is_removed_from_the_configuration() {
    let quota = format!(
        r#"
[[quota]]
name = "gone"
user = {REMOVED}
limit = "64KiB"
action = "block"
"#
    );
    let env = Env::new(&quota);
    let agent = env.agent();
    env.up(&[]);
    let (blocked, _) = send_until_blocked(&env, REMOVED, "gone", ["7310", "7311"], 2);

    let text = fs::read_to_string(&env.config).expect("config");
    fs::write(&env.config, text.replace(&quota, "")).expect("config");
    agent.signal(libc::SIGHUP);
    assert!(
        agent.wait_logged(
            "quota gone: lifted (no longer configured)",
            1,
            Duration::from_secs(15)
        ),
        "the lift is logged"
    );
    assert_eq!(env.send(blocked, "192.0.2.100", "7312", 100_000), 100_000);

    // The event is in the store; a restart neither blocks again nor
    // repeats it.
    drop(agent);
    let agent = env.agent();
    assert_eq!(env.send(blocked, "192.0.2.100", "7313", 100_000), 100_000);
    let status = env.trafmon(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert_eq!(
        status
            .matches("quota gone: lifted (no longer configured)")
            .count(),
        1,
        "{status}"
    );
    drop(agent);
}

const ALERTED: u32 = 61121;

/// The alert command runs exactly once per crossing (warning, then action)
/// with the quota's name, target, usage and limit, also across a restart;
/// `trafmon quota --json` reports the store's usage, which equals the
/// iptables owner rule.
#[test]
fn the_alert_command_runs_once_per_crossing_and_usage_equals_the_store() {
    let log = std::env::temp_dir().join(format!("trafmon-alerts-{}.log", std::process::id()));
    let _ = fs::remove_file(&log);
    let env = Env::new(&format!(
        r#"
[[quota]]
name = "mail"
user = {ALERTED}
limit = "100KiB"
direction = "tx"
warn = 50
command = 'echo "$TRAFMON_EVENT $TRAFMON_QUOTA $TRAFMON_TARGET $TRAFMON_USAGE $TRAFMON_LIMIT $TRAFMON_ACTION" >> {}'
"#,
        log.display()
    ));
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }
    let _cleanup = Remove(log.clone());
    let agent = env.agent();
    env.up(&[]);
    add_owner_rules(&env.a, ALERTED, false);
    let who = As::user(&env.a, ALERTED);
    env.send(who, "192.0.2.100", "7400", 60_000);
    wait_state(&env, "mail", "warned");
    env.send(who, "192.0.2.100", "7401", 60_000);
    wait_state(&env, "mail", "over");
    std::thread::sleep(Duration::from_secs(2));
    agent.stop();
    let agent = env.agent();
    std::thread::sleep(Duration::from_secs(3));
    agent.stop();

    let lines: Vec<String> = fs::read_to_string(&log)
        .expect("the command ran")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, event) in lines.iter().zip(["warning", "action"]) {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f[0], event, "{line}");
        assert_eq!(f[1..3], ["mail", &format!("user:{ALERTED}")], "{line}");
        assert_eq!(f[4], "102400", "{line}");
        assert_eq!(f[5], "alert", "{line}");
        let used: u64 = f[3].parse().expect("usage");
        let floor = if event == "warning" { 51_200 } else { 102_400 };
        assert!(used >= floor && used < 102_400 + 80_000, "{line}");
    }

    // The agent is stopped: the store holds everything, the kernel nothing.
    let counts = env.counts("");
    let ours = assert_uid_tx(&counts, &env.a, ALERTED, false);
    assert_eq!(
        count_of(&env.stored(), Kind::Uid, &ALERTED.to_string()),
        ours
    );
    let q = quota(&env, "mail");
    assert_eq!(q["used"], ours.tx_bytes, "{q}");
    assert_eq!(q["limit"], 102_400);
    assert_eq!(q["state"], "over");
}
