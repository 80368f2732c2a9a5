//! `trafmon check` tells beforehand what the agent will meet: it passes
//! where the agent starts, and where the agent refuses to start it fails
//! with the agent's own line, having changed nothing.

use std::{fs, process::Output};

use crate::harness::{As, Cgroup, Env, sh, trafmon_bin};

/// `trafmon <args>` with the env's configuration in namespace `a`, where
/// its agent runs, bounded to 20 s (an agent that is not refused stops).
fn in_a(env: &Env, args: &[&str]) -> Output {
    env.a
        .command("timeout")
        .arg("20")
        .arg(trafmon_bin())
        .arg("--config")
        .arg(&env.config)
        .args(args)
        .output()
        .expect("run trafmon")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The stdout of a `trafmon check` that passed.
fn passes(env: &Env) -> String {
    let out = in_a(env, &["check"]);
    assert!(out.status.success(), "check: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Runs `check`, then the agent: both must fail, the check with one line
/// that is the agent's last (its log lines come before it).
fn both_refuse(env: &Env, case: &str) -> String {
    let check = in_a(env, &["check"]);
    let said = text(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{case}: check: {said}");
    assert_eq!(said.lines().count(), 1, "{case}: one line: {said}");
    let agent = in_a(env, &["agent"]);
    let err = text(&agent.stderr);
    assert_eq!(agent.status.code(), Some(1), "{case}: the agent: {err}");
    assert_eq!(
        err.lines().last(),
        said.lines().next(),
        "{case}: the agent's own line"
    );
    said
}

#[test]
fn check_passes_where_the_agent_starts_and_shows_what_it_finds() {
    let env = Env::new("");
    let store = env.store_path();
    let head = |agent: &str, store: &str, pins: &str| {
        format!(
            "config:     {}: valid\nagent:      {agent}\nstore:      {}: {store}\npins:       {}: {pins}\ncgroup:     {} (cgroup v2)\n",
            env.config.display(),
            env.store_path().display(),
            env.pin_dir.display(),
            env.cgroup.path.display(),
        )
    };
    let before = passes(&env);
    assert_eq!(
        before,
        format!(
            "{}metrics:    127.0.0.1:9977 (free)\ninterfaces: {}\n",
            head(
                "not running",
                "none yet; the agent creates it",
                "nothing pinned yet"
            ),
            env.va
        )
    );
    assert!(!store.exists(), "check made no store");
    assert!(!env.pin_dir.exists(), "check pinned nothing");

    let agent = env.agent();
    let version = sh(&[
        "sqlite3",
        store.to_str().expect("utf-8"),
        "PRAGMA user_version",
    ]);
    let pinned = fs::read_dir(env.pin_dir.join("maps"))
        .expect("maps")
        .count();
    let during = passes(&env);
    assert_eq!(
        during,
        format!(
            "{}metrics:    127.0.0.1:9977 (not tried while the agent runs)\ninterfaces: {}\n",
            head(
                &format!(
                    "running (pid {}): a reload (SIGHUP) applies this file, a restart if it moves pin_dir, state_dir or store",
                    agent.pid()
                ),
                &format!(
                    "schema version {}, open in the running agent",
                    version.trim()
                ),
                &format!("{pinned} maps pinned, of this version's layout"),
            ),
            env.va
        )
    );
    agent.stop();

    // A watched interface that is gone is no reason to refuse: the agent
    // starts and attaches it when it appears.
    env.a.exec(&["ip", "link", "del", &env.va]);
    let gone = passes(&env);
    assert!(
        gone.ends_with(&format!(
            "interfaces: {} (absent now; watched when it appears)\n",
            env.va
        )),
        "{gone}"
    );
    env.agent().stop();
}

#[test]
fn check_fails_where_the_agent_refuses_with_its_line_and_changes_nothing() {
    let env = Env::new("");
    let config = fs::read_to_string(&env.config).expect("config");
    let write = |text: &str| fs::write(&env.config, text).expect("config");

    write(&config.replace("interval = \"1s\"", "interval = \"7s\""));
    let said = both_refuse(&env, "a bad value");
    assert!(said.contains("trafmon.toml:1: interval: `7s`"), "{said}");
    write(&config);

    let store = env.store_path();
    fs::create_dir_all(store.parent().expect("state dir")).expect("state dir");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect();
    fs::write(&store, &garbage).expect("garbage");
    let said = both_refuse(&env, "a corrupt store");
    assert!(said.contains("the database is corrupt"), "{said}");
    assert_eq!(fs::read(&store).expect("store"), garbage, "left untouched");
    fs::remove_file(&store).expect("rm store");

    let pin = env.pin_map("IP_A", "percpu_hash", [24, 32, 1024]);
    let said = both_refuse(&env, "a pinned map of another layout");
    assert!(said.contains("key 24 B"), "{said}");
    fs::remove_file(&pin).expect("rm pin");

    write(&config.replace(&env.cgroup.path.display().to_string(), "/tmp"));
    let said = both_refuse(&env, "a cgroup that is not v2");
    assert!(said.contains("/tmp is not a cgroup v2 directory"), "{said}");
    write(&config);

    // The agent finds the address taken only once it has attached: its
    // links stay pinned, as after any stop.
    let taken = env.traffic(As::root(&env.a), &["tcp-recv", "127.0.0.1", "9977", "1"]);
    taken.wait_listening();
    let said = both_refuse(&env, "a metrics address in use");
    assert!(
        said.contains("cannot listen for metrics on 127.0.0.1:9977"),
        "{said}"
    );
    drop(taken);
    assert!(env.pin_dir.join("links/cgroup_egress").exists());

    let other = Cgroup::new(&format!(
        "{}-other",
        env.cgroup.path.file_name().expect("name").to_string_lossy()
    ));
    write(&config.replace(
        &env.cgroup.path.display().to_string(),
        &other.path.display().to_string(),
    ));
    let link = || env.pinned_link("cgroup_egress");
    let before = link();
    let said = both_refuse(&env, "another cgroup while links are pinned");
    assert!(said.contains("trafmon uninstall"), "{said}");
    assert_eq!(link(), before, "the links stay as they were");
    write(&config);
    env.uninstall();
}
