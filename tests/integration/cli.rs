//! `trafmon top` and `trafmon status` against a running agent.

use std::process::{Command, Stdio};

use crate::harness::{As, Env, trafmon_bin};

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
    agent.stop();
    let text = String::from_utf8_lossy(&env.trafmon(&["status"]).stdout).into_owned();
    assert!(
        text.contains("agent:      not running; the programs below count on"),
        "{text}"
    );
    env.uninstall();
    let text = String::from_utf8_lossy(&env.trafmon(&["status"]).stdout).into_owned();
    assert!(text.contains("agent:      not running\n"), "{text}");
    // Nothing pinned is a state, not an error.
    assert!(
        text.contains("maps:       none pinned under") && !text.contains("cannot open"),
        "{text}"
    );
}

/// A reader that may not read the store is told which file and which
/// permission; a closed pipe ends a command quietly.
#[test]
fn permission_and_broken_pipe_errors() {
    use std::os::unix::{fs::PermissionsExt as _, process::CommandExt as _};

    let env = Env::new("");
    env.agent().stop();
    let db = env.store_path();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).expect("chmod");
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
