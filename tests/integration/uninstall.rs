//! `trafmon uninstall` stores what the programs counted since the agent's
//! last flush before it removes the maps, survives a kill at any step,
//! and, when it cannot store, detaches nothing until told to discard.

use std::{os::unix::process::ExitStatusExt as _, process::Command};

use trafmon::store::{Kind, Store};

use crate::harness::{As, Env, add_owner_rules, owner_counters, trafmon_bin};

/// Sends `datagrams` of 1000 bytes as `uid` from `a` to `b`.
fn send(env: &Env, uid: u32, port: &str, datagrams: u64) {
    let count = datagrams.to_string();
    let receiver = env.traffic(As::root(&env.b), &["udp-recv", "192.0.2.100", port, &count]);
    receiver.wait_listening();
    let sent = env
        .traffic(
            As::user(&env.a, uid),
            &["udp-send", "192.0.2.100", port, "1000", &count],
        )
        .finish();
    receiver.finish();
    assert_eq!(sent, 1000 * datagrams);
}

/// The bytes and packets `uid` sent, as stored.
fn stored_tx(env: &Env, uid: u32) -> (u64, u64) {
    let ours = env
        .stored()
        .get(&(Kind::Uid, uid.to_string()))
        .copied()
        .unwrap_or_default();
    (ours.tx_packets, ours.tx_bytes)
}

/// The programs count while no agent runs; an uninstall detaches them
/// and stores what they counted before it removes the maps, so the
/// traffic between the agent's last flush and the uninstall is not lost.
#[test]
fn uninstall_stores_what_was_counted_after_the_agent_stopped() {
    let env = Env::new("");
    let agent = env.agent();
    env.up(&[]);
    agent.stop();
    add_owner_rules(&env.a, 61050, false);
    send(&env, 61050, "9650", 40);

    let said = env.uninstall();
    assert!(
        said.starts_with("detached everything, stored the last counts (flush "),
        "{said}"
    );
    assert!(!env.pin_dir.exists(), "{} is gone", env.pin_dir.display());
    let rules = owner_counters(&env.a, 61050, false);
    assert_eq!(rules, (40, 40 * 1028));
    assert_eq!(stored_tx(&env, 61050), rules);
    let status = String::from_utf8_lossy(&env.trafmon(&["status"]).stdout).into_owned();
    assert!(
        status.contains(" uninstalled: programs detached; their last counts stored by flush "),
        "{status}"
    );
    // Installing again is no loss to warn about, unlike a reboot.
    let agent = env.agent();
    assert!(
        agent.logged("installing again after `trafmon uninstall`"),
        "the start knows the maps were stored and removed"
    );
    agent.stop();
    assert_eq!(recreated(&env), 0, "no maps-recreated event");
}

/// How many `maps-recreated` events the store holds.
fn recreated(env: &Env) -> usize {
    Store::open_read_only(&env.store_path())
        .expect("store")
        .events()
        .expect("events")
        .iter()
        .filter(|(_, kind, _)| kind == "maps-recreated")
        .count()
}

/// SIGKILL right after each step of an uninstall in turn (the links
/// removed, each step of its flush, the selector's pin removed), each time
/// with new traffic in the maps; the next uninstall finishes the work and
/// the store ends exact.
#[test]
fn kill_9_after_every_step_of_an_uninstall_loses_and_doubles_nothing() {
    let env = Env::new("");
    env.agent().stop();
    env.up(&[]);
    add_owner_rules(&env.a, 61051, false);
    let steps = [
        "detach", "flip", "grace", "drain", "commit", "clear", "recorded", "unpin",
    ];
    for step in steps {
        // Installs again (or takes over what the kill left).
        env.agent().stop();
        send(&env, 61051, "9651", 20);
        let out = Command::new(trafmon_bin())
            .arg("--config")
            .arg(&env.config)
            .arg("uninstall")
            .env("TRAFMON_FAULT", format!("after-{step}"))
            .output()
            .expect("run trafmon");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "killed after {step}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let said = env.uninstall();
        assert!(said.starts_with("detached everything"), "{said}");
        assert!(!env.pin_dir.exists(), "{} is gone", env.pin_dir.display());
    }
    let rules = owner_counters(&env.a, 61051, false);
    let sent = 20 * steps.len() as u64;
    assert_eq!(rules, (sent, sent * 1028));
    assert_eq!(stored_tx(&env, 61051), rules);
    assert_eq!(
        recreated(&env),
        0,
        "every start after an uninstall knew it lost nothing"
    );
}

/// An uninstall that cannot store the maps' counts (here: a corrupt
/// store) detaches nothing and says how to go on; `--discard` drops them.
#[test]
fn uninstall_with_a_corrupt_store_detaches_nothing_until_told_to_discard() {
    let env = Env::new("");
    env.agent().stop();
    let links = || {
        std::fs::read_dir(env.pin_dir.join("links"))
            .expect("links")
            .count()
    };
    let attached = links();
    assert!(attached >= 4, "{attached} links");
    let path = env.store_path();
    let mut garbage = b"SQLite format 3\0".to_vec();
    garbage.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&path, &garbage).expect("write garbage");
    for extra in ["db-wal", "db-shm"] {
        let _ = std::fs::remove_file(path.with_extension(extra));
    }

    let out = env.trafmon(&["uninstall"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("nothing was detached")
            && err.contains("trafmon uninstall --discard")
            && err.contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(links(), attached, "every link is still pinned");
    assert_eq!(std::fs::read(&path).expect("read"), garbage, "untouched");

    let out = env.trafmon(&["uninstall", "--discard"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.starts_with("detached everything and removed "),
        "{said}"
    );
    assert!(!env.pin_dir.exists(), "{} is gone", env.pin_dir.display());
}

/// Maps pinned by another version with another layout cannot be read, so
/// their counts cannot be stored: the uninstall says so in one line and
/// changes nothing; `--discard` removes them.
#[test]
fn maps_of_another_layout_are_removed_only_when_told_to_discard() {
    let env = Env::new("");
    env.pin_map("SELECTOR", "array", [4, 4, 1]);
    let ip = env.pin_map("IP_A", "percpu_hash", [24, 32, 1024]);

    let out = env.trafmon(&["uninstall"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("made by another version") && err.contains("trafmon uninstall --discard"),
        "{err}"
    );
    assert!(ip.exists(), "untouched");

    let out = env.trafmon(&["uninstall", "--discard"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!env.pin_dir.exists(), "{} is gone", env.pin_dir.display());
}
