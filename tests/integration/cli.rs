//! `trafmon top` and `trafmon status` against a running agent.

use std::process::{Command, Stdio};

use crate::harness::{As, Env, sh, trafmon_bin};

/// A paced 5-second transfer: the per-second tx rates `top` prints for the
/// sender add up to within 10 % of the bytes it sent.
#[test]
fn top_lines_add_up_to_what_was_sent() {
    let env = Env::new("");
    let _agent = env.agent();
    env.up(&[]);
    let top = Command::new(trafmon_bin())
        .arg("--config")
        .arg(&env.config)
        .args(["top", "--count", "8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start top");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let receiver = env.traffic(
        As::root(&env.b),
        &["udp-recv", "192.0.2.100", "9900", "5000"],
    );
    receiver.wait_listening();
    let sent = env
        .traffic(
            As::user(&env.a, 61401),
            &["udp-send", "192.0.2.100", "9900", "1000", "5000", "5"],
        )
        .finish();
    receiver.finish();
    let out = top.wait_with_output().expect("top output");
    assert!(out.status.success(), "top exits after --count");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut total = 0.0;
    for line in text.lines() {
        let cells: Vec<&str> = line.split('\t').collect();
        assert_eq!(cells.len(), 5, "a line mode line: {line:?}");
        if cells[1] == "uid" && cells[2] == "61401" {
            total += cells[4].parse::<f64>().expect("tx rate");
        }
    }
    let ip_bytes = sent as f64 + 5000.0 * 28.0;
    assert!(
        (total - ip_bytes).abs() <= 0.1 * ip_bytes,
        "sum of per-second rates {total:.0} vs {ip_bytes:.0} bytes sent:\n{text}"
    );
}

#[test]
fn status_shows_the_agent_its_attachments_and_flushes() {
    let env = Env::new("");
    let agent = env.agent();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = env.trafmon(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for expected in [
        "agent:      running".to_owned(),
        "cgroup_skb ingress".into(),
        "cgroup_skb egress".into(),
        format!("tc ingress on {}", env.va),
        format!("tc egress on {}", env.va),
        "map:        UID_A".into(),
        "last flush: #".into(),
    ] {
        assert!(text.contains(&expected), "{expected:?} in:\n{text}");
    }

    // The JSON form, against the kernel's own view (bpftool) and the
    // store's (sqlite3).
    let json = status_json(&env);
    assert_eq!(json["jsonversion"], 1);
    assert_eq!(json["agent"]["running"], true);
    assert_eq!(json["agent"]["pid"], agent.pid());
    assert_eq!(
        json["agent"]["binary_replaced"], false,
        "the agent runs the binary under test"
    );
    let links = json["links"]["attached"].as_array().expect("links");
    assert_eq!(links.len(), 4, "{links:?}");
    for link in links {
        let id = link["link_id"].as_u64().expect("a link id");
        let shown = sh(&["bpftool", "-j", "link", "show", "id", &id.to_string()]);
        let shown: serde_json::Value = serde_json::from_str(&shown).expect("bpftool json");
        assert_eq!(
            link["program_id"], shown["prog_id"],
            "{link} against {shown}"
        );
        let name = link["program"].as_str().expect("a program name");
        let prog = sh(&[
            "bpftool",
            "-j",
            "prog",
            "show",
            "id",
            &shown["prog_id"].to_string(),
        ]);
        let prog: serde_json::Value = serde_json::from_str(&prog).expect("bpftool json");
        assert_eq!(prog["name"], name, "{link}");
    }
    assert_eq!(json["maps"]["state"], "pinned");
    assert!(
        json["maps"]["maps"]
            .as_array()
            .expect("maps")
            .iter()
            .any(|m| m["name"] == "UID_A" && m["max_entries"].as_u64() > Some(0)),
        "{json}"
    );
    assert_eq!(json["store"]["state"], "open");
    let seq = sh(&[
        "sqlite3",
        &env.store_path().to_string_lossy(),
        "SELECT MAX(seq) FROM flush",
    ]);
    let shown = json["store"]["last_flush"]["seq"]
        .as_i64()
        .expect("a flush");
    // The agent may flush between the two reads.
    let stored: i64 = seq.trim().parse().expect("a sequence number");
    assert!(
        stored == shown || stored == shown + 1,
        "{shown} against {stored}"
    );

    agent.stop();
    let text = String::from_utf8_lossy(&env.trafmon(&["status"]).stdout).into_owned();
    assert!(
        text.contains("agent:      not running; the programs below count on"),
        "{text}"
    );
    let json = status_json(&env);
    assert_eq!(json["agent"]["running"], false);
    assert_eq!(json["agent"]["pid"], serde_json::Value::Null);
    env.uninstall();
    let text = String::from_utf8_lossy(&env.trafmon(&["status"]).stdout).into_owned();
    assert!(text.contains("agent:      not running\n"), "{text}");
    // Nothing pinned is a state, not an error.
    assert!(
        text.contains("maps:       none pinned under") && !text.contains("cannot open"),
        "{text}"
    );
    let json = status_json(&env);
    assert_eq!(json["maps"]["state"], "none_pinned");
    assert_eq!(json["links"]["attached"], serde_json::json!([]));
}

/// `trafmon status --json`, parsed.
fn status_json(env: &Env) -> serde_json::Value {
    let out = env.trafmon(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

/// A reader that may not read the store is told which file and which
/// permission; a closed pipe ends a command quietly.
#[test]
fn permission_and_broken_pipe_errors() {
    use std::os::unix::{fs::PermissionsExt as _, process::CommandExt as _};

    let env = Env::new("");
    env.agent().stop();
    let db = env.store_path();
    let as_another_user = |command: &str| {
        Command::new(trafmon_bin())
            .arg("--config")
            .arg(&env.config)
            .arg(command)
            .uid(61501)
            .gid(61501)
            .output()
            .expect("run as another user")
    };
    // Read permission on the store is enough, also while no agent runs:
    // SQLite opens a WAL database for a reader who may not write in its
    // directory only where the -wal and -shm files exist, and the agent
    // keeps them.
    let out = as_another_user("report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = as_another_user("report");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(&db.display().to_string())
            && err.contains("permission denied: reading the store needs read permission"),
        "{err}"
    );
    // Pins this user may not read are not shown as nothing attached.
    let links = env.pin_dir.join("links");
    std::fs::set_permissions(&links, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let out = as_another_user("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("attached:   cannot read {}", links.display()))
            && !text.contains("nothing under"),
        "{text}"
    );

    for args in [
        &["report", "--total"][..],
        &["report", "--json"],
        &["stats"],
        &["stats", "--json"],
        &["quota", "--json"],
    ] {
        let mut child = Command::new(trafmon_bin())
            .arg("--config")
            .arg(&env.config)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{args:?}: a broken pipe exits 0: {out:?}"
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: quietly: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
