//! The kernel counts while no agent runs; uninstall leaves nothing behind.

use trafmon::store::Kind;

use crate::harness::{As, Cgroup, Env, add_owner_rules, owner_counters, sh};

#[test]
fn counting_survives_a_killed_agent() {
    let env = Env::new("");
    let agent = env.agent();
    env.up(&[]);
    let status = agent.kill(libc::SIGKILL);
    assert!(!status.success(), "the agent was killed");

    add_owner_rules(&env.a, 61030, false);
    let receiver = env.traffic(As::root(&env.b), &["udp-recv", "192.0.2.100", "9100", "50"]);
    receiver.wait_listening();
    let sent = env
        .traffic(
            As::user(&env.a, 61030),
            &["udp-send", "192.0.2.100", "9100", "1000", "50"],
        )
        .finish();
    receiver.finish();
    assert_eq!(sent, 50_000);

    env.agent().stop();
    let (packets, bytes) = owner_counters(&env.a, 61030, false);
    let ours = env
        .stored()
        .get(&(Kind::Uid, "61030".into()))
        .copied()
        .unwrap_or_default();
    assert_eq!((ours.tx_packets, ours.tx_bytes), (packets, bytes));
    assert_eq!((packets, bytes), (50, 50 * 1028));
}

/// Under systemd the agent's stderr is the journal, which would keep
/// terminal colour codes as text: off a terminal the log is plain.
#[test]
fn the_log_is_plain_text_off_a_terminal() {
    let env = Env::new("");
    let agent = env.agent();
    assert!(agent.logged(" INFO trafmon::agent: counting cgroup="));
    assert!(!agent.logged("\x1b"), "no escape codes in the log");
    agent.stop();
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

    let said = env.uninstall();
    assert!(
        said.starts_with("detached everything, stored the last counts (flush "),
        "{said}"
    );
    assert!(!env.pin_dir.exists(), "{} is gone", env.pin_dir.display());
    let said = env.uninstall();
    assert!(said.starts_with("nothing was installed under "), "{said}");

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
        "tc_lo_ingress",
        "tc_lo_egress",
        "tcd_eth_ingress",
        "tcd_eth_egress",
    ] {
        assert!(
            !text.contains(&name[..name.len().min(15)]),
            "{name} still attached: {text}"
        );
    }
}

/// After a reboot the pins are gone: the agent recreates the maps, records
/// the event, and goes on counting into the same store.
#[test]
fn vanished_maps_are_recreated_and_recorded() {
    let env = Env::new("");
    env.agent().stop();
    // What a reboot does to bpffs: the pins are gone, nothing stored them
    // (`trafmon uninstall` would have, and says so to the next start).
    trafmon::loader::uninstall(&env.pin_dir).expect("remove the pins");
    let agent = env.agent();
    env.up(&[]);
    add_owner_rules(&env.a, 61040, false);
    let receiver = env.traffic(As::root(&env.b), &["udp-recv", "192.0.2.100", "9600", "10"]);
    receiver.wait_listening();
    env.traffic(
        As::user(&env.a, 61040),
        &["udp-send", "192.0.2.100", "9600", "100", "10"],
    )
    .finish();
    receiver.finish();
    agent.stop();
    let store = trafmon::store::Store::open_read_only(&env.store_path()).expect("store");
    let events = store.events().expect("events");
    let (_, _, detail) = events
        .iter()
        .find(|(_, kind, _)| kind == "maps-recreated")
        .unwrap_or_else(|| panic!("the recreation is recorded: {events:?}"));
    // It says since when traffic went uncounted, as a time a reader can read.
    let since: jiff::Timestamp = detail
        .split_once("(at ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(at, _)| at.parse().ok())
        .unwrap_or_else(|| panic!("a time in {detail:?}"));
    let ago = jiff::Timestamp::now().duration_since(since);
    assert!(
        ago.is_positive() && ago.as_secs() < 120,
        "{since} is the last flush before the maps vanished"
    );
    let ours = env.stored()[&(Kind::Uid, "61040".into())];
    assert_eq!(
        (ours.tx_packets, ours.tx_bytes),
        owner_counters(&env.a, 61040, false)
    );
}

/// The pinned cgroup links cannot move to another cgroup without a moment
/// in which a packet is counted twice or not at all: a changed `cgroup`
/// stops the agent with one line that says to uninstall first, and after
/// `trafmon uninstall` the agent counts the new cgroup.
#[test]
fn a_changed_cgroup_needs_an_uninstall() {
    let env = Env::new("");
    env.agent().stop();
    let other = Cgroup::new(&format!(
        "{}-other",
        env.cgroup.path.file_name().unwrap().to_string_lossy()
    ));
    let config = std::fs::read_to_string(&env.config).expect("config");
    let moved = config.replace(
        &format!("cgroup = \"{}\"", env.cgroup.path.display()),
        &format!("cgroup = \"{}\"", other.path.display()),
    );
    assert_ne!(config, moved, "the config names the test's cgroup");
    std::fs::write(&env.config, moved).expect("config");

    let link = || env.pinned_link("cgroup_egress");
    let before = link();
    let out = env.trafmon_bounded(&["agent"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("trafmon: cgroup: ") && err.contains("trafmon uninstall"),
        "naming the setting and the way out: {err}"
    );
    assert_eq!(link(), before, "the refused start changed nothing");

    env.uninstall();
    let agent = env.agent();
    let link = link();
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&other.path).expect("stat"));
    assert!(
        link.contains(&format!("\"cgroup_id\":{ino}")),
        "the new link counts the new cgroup ({ino}): {link}"
    );
    agent.stop();
}

/// While an agent runs, a second agent on the same state and pin
/// directories and an uninstall are refused with one line each, and the
/// running agent goes on as before: its pid file, its pins and its counts
/// are untouched.
#[test]
fn a_running_agent_is_not_disturbed_by_a_second_or_an_uninstall() {
    let env = Env::new("[metrics]\nenabled = false\n");
    let agent = env.agent();
    env.up(&[]);
    add_owner_rules(&env.a, 61060, false);
    for (args, says) in [
        (
            ["agent"],
            "agent.pid is in use by a running trafmon agent (pid ",
        ),
        (
            ["uninstall"],
            "is in use by a running trafmon agent: stop it first",
        ),
    ] {
        // Bounded: a second agent that is not refused would run on.
        let out = env.trafmon_bounded(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("trafmon: ") && last.contains(says),
            "{args:?}: {err}"
        );
    }
    let status = env.trafmon(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains(&format!("agent:      running (pid {})", agent.pid())),
        "{status}"
    );
    assert!(env.pin_dir.join("links").read_dir().expect("links").count() >= 4);

    let receiver = env.traffic(As::root(&env.b), &["udp-recv", "192.0.2.100", "9800", "20"]);
    receiver.wait_listening();
    env.traffic(
        As::user(&env.a, 61060),
        &["udp-send", "192.0.2.100", "9800", "300", "20"],
    )
    .finish();
    receiver.finish();
    agent.stop();
    let ours = env.stored()[&(Kind::Uid, "61060".into())];
    assert_eq!(
        (ours.tx_packets, ours.tx_bytes),
        owner_counters(&env.a, 61060, false)
    );
    assert_eq!(ours.tx_packets, 20);
}

/// A map pinned by another version with another layout (here a wider
/// address key) is never reused, which would read garbage keys: the agent
/// stops with one line naming the pin and both layouts, attaches nothing
/// and leaves the map as it was.
#[test]
fn a_pinned_map_of_another_layout_stops_the_agent() {
    let env = Env::new("");
    let pin = env.pin_map("IP_A", "percpu_hash", [24, 32, 1024]);
    let pin = pin.to_str().expect("utf-8");
    let out = env.trafmon_bounded(&["agent"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(pin) && err.contains("key 24 B") && err.contains("key 20 B"),
        "{err}"
    );
    let links = env.pin_dir.join("links");
    assert_eq!(
        std::fs::read_dir(&links).map_or(0, Iterator::count),
        0,
        "nothing attached"
    );
    let shown = sh(&["bpftool", "-j", "map", "show", "pinned", pin]);
    assert!(shown.contains("\"bytes_key\":24"), "untouched: {shown}");
}
