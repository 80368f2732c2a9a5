//! A change of `[maps]` resizes the pinned maps at the next start, while
//! traffic flows, without losing or doubling a packet.

use std::{fs, os::unix::process::ExitStatusExt as _, thread::sleep, time::Duration};

use crate::harness::{Env, Paced, assert_paced, resized_events, trafmon_bin};

const SMALL: &str = "[maps]\nuid_entries = 64\nip_entries = 64\niface_entries = 64\n";
const LARGE: &str = "[maps]\nuid_entries = 256\nip_entries = 512\niface_entries = 128\n";

/// The size `trafmon status` shows for map `name`.
fn shown_size(status: &str, name: &str) -> u32 {
    let line = status
        .lines()
        .find(|l| l.starts_with("map:") && l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no {name} in status:\n{status}"));
    let after = line.split(" / ").nth(1).expect("keys / max");
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("size in {line:?}"))
}

/// Paced traffic (UID `uid`, port `port`) counted by an agent with SMALL
/// maps for a while; then the agent stops and the config asks for LARGE.
fn paced_then_grown(env: &Env, uid: u32, port: u16, vars: &[(&str, &str)]) -> Paced {
    let agent = env.agent_with(vars);
    let paced = Paced::start(env, uid, port);
    sleep(Duration::from_millis(1200));
    agent.stop();
    let config = fs::read_to_string(&env.config).expect("config");
    fs::write(&env.config, config.replace(SMALL, LARGE)).expect("config");
    paced
}

/// Every hash map has its LARGE size in `trafmon status`, each resize is
/// recorded once, and the paced traffic of `uid` is stored exactly.
fn assert_grown(env: &Env, uid: u32) {
    let status = env.trafmon(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    for (names, size) in [
        (["UID_A", "UID_B"], 256),
        (["IP_A", "IP_B"], 512),
        (["IFACE_A", "IFACE_B"], 128),
    ] {
        for name in names {
            assert_eq!(shown_size(&status, name), size, "{name}:\n{status}");
        }
    }
    assert_eq!(resized_events(env), 6, "one event per resized map");
    assert_paced(env, uid);
}

/// The agent is restarted with larger maps in the middle of paced traffic
/// both ways: every hash map gets its new size (recorded as an event), and
/// the stored counts of a UID and an address in those hash maps, and of
/// the interface, still equal iptables rules and the interface's own
/// statistics exactly. The cgroup programs must move to the new maps too,
/// or the UID's packets after the restart would go into a map that nobody
/// reads.
#[test]
fn changed_map_sizes_apply_at_restart_and_lose_nothing() {
    grown_at_restart_loses_nothing(&[]);
}

/// [`changed_map_sizes_apply_at_restart_and_lose_nothing`], with the
/// agent's environment `vars`.
pub fn grown_at_restart_loses_nothing(vars: &[(&str, &str)]) {
    let env = Env::new(SMALL);
    let paced = paced_then_grown(&env, 61050, 9700, vars);
    let agent = env.agent_with(vars);
    assert!(
        agent.logged("resized"),
        "the restart resized the maps while traffic flowed"
    );
    let uid = paced.finish();
    sleep(Duration::from_millis(300));
    agent.stop();
    assert_grown(&env, uid);
}

/// SIGKILL right after a resize removed the pins of one side, and again
/// after the next start removed those of the other: the maps that lost
/// their pins were idle and clear, so every start goes on, each map ends at
/// its new size with its resize recorded, and the counts of paced traffic
/// stay exact against iptables and the interface's statistics.
#[test]
fn kill_9_after_a_resize_removed_pins_loses_and_doubles_nothing() {
    let env = Env::new(SMALL);
    let paced = paced_then_grown(&env, 61051, 9701, &[]);
    for killed in 1..=2 {
        let status = env
            .a
            .command("timeout")
            .arg("20")
            .arg(trafmon_bin())
            .arg("--config")
            .arg(&env.config)
            .arg("agent")
            .env("TRAFMON_FAULT", "after-unpin")
            .status()
            .expect("run the agent");
        // `timeout` passes its child's signal on by raising it.
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "kill {killed}: the agent killed itself after removing pins: {status}"
        );
        sleep(Duration::from_millis(300));
    }
    let agent = env.agent();
    let uid = paced.finish();
    sleep(Duration::from_millis(300));
    agent.stop();
    assert_grown(&env, uid);
}
