//! `deploy/trafmon.service` passes `systemd-analyze verify` without a
//! warning, in a scratch root that holds systemd's own units and the
//! binary where the unit expects it.

use std::{fs, path::Path, process::Command};

use crate::harness::{As, Env, add_owner_rules, assert_link, assert_uid_tx, trafmon_bin};

/// A scratch root, removed on drop.
struct Root(std::path::PathBuf);

impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read dir").map(Result::unwrap) {
        let target = to.join(entry.file_name());
        let meta = fs::symlink_metadata(entry.path()).expect("stat");
        if meta.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if meta.file_type().is_symlink() {
            let link = fs::read_link(entry.path()).expect("readlink");
            std::os::unix::fs::symlink(link, target).expect("symlink");
        } else {
            fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn the_unit_file_verifies_cleanly_and_grants_only_what_the_agent_needs() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/trafmon.service");
    let text = fs::read_to_string(&unit).expect("deploy/trafmon.service");
    for line in [
        "ExecStart=/usr/local/bin/trafmon agent",
        "Restart=on-failure",
        "ExecReload=/usr/local/bin/trafmon check",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=trafmon",
        "CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_NET_ADMIN",
    ] {
        assert!(text.lines().any(|l| l == line), "the unit lacks `{line}`");
    }

    let root = Root(std::env::temp_dir().join(format!("trafmon-unit-{}", std::process::id())));
    copy_dir(
        Path::new("/usr/lib/systemd/system"),
        &root.0.join("usr/lib/systemd/system"),
    );
    fs::create_dir_all(root.0.join("usr/local/bin")).expect("mkdir");
    fs::copy(trafmon_bin(), root.0.join("usr/local/bin/trafmon")).expect("copy the binary");
    // ExecReload's kill(1), where the unit names it.
    fs::create_dir_all(root.0.join("bin")).expect("mkdir");
    fs::copy("/bin/kill", root.0.join("bin/kill")).expect("copy kill");
    fs::create_dir_all(root.0.join("etc/systemd/system")).expect("mkdir");
    fs::copy(&unit, root.0.join("etc/systemd/system/trafmon.service")).expect("copy the unit");

    let out = Command::new("systemd-analyze")
        .arg(format!("--root={}", root.0.display()))
        .args(["verify", "/etc/systemd/system/trafmon.service"])
        .output()
        .expect("systemd-analyze (Debian package systemd; cargo xtask test installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {said}"
    );
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warned: {said}"
    );
}

/// The agent counts exactly with only the unit's capabilities (as root,
/// with every other capability out of the bounding set, as systemd runs it),
/// also across a restart, which hands the pinned links new programs, and
/// across a reload (SIGHUP), which does the same in the same process.
#[test]
fn the_agent_counts_with_only_the_units_capabilities() {
    counts_with_only_the_units_capabilities(&[]);
}

/// [`the_agent_counts_with_only_the_units_capabilities`], with the agent's
/// environment `vars`; the veth's counts are checked against its
/// statistics too, so that the tc programs are seen to run.
pub fn counts_with_only_the_units_capabilities(vars: &[(&str, &str)]) {
    let env = Env::new("");
    let caps = "-all,+bpf,+perfmon,+net_admin";
    let wrapper = [
        "setpriv",
        "--bounding-set",
        caps,
        "--inh-caps",
        caps,
        "--ambient-caps",
        caps,
        "--",
    ];
    let agent = env.agent_wrapped(vars, &wrapper);
    env.up(&[]);
    add_owner_rules(&env.a, 61301, false);
    let who = As::user(&env.a, 61301);
    assert_eq!(env.send(who, "192.0.2.100", "7600", 200_000), 200_000);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    agent.stop();
    // A restart, as `systemctl restart` after an upgrade: the pinned links
    // get the new programs, with the same capabilities.
    let agent = env.agent_wrapped(vars, &wrapper);
    assert_eq!(env.send(who, "192.0.2.100", "7601", 100_000), 100_000);
    // A reload, as `systemctl reload`: the unit's check passes with the
    // unit's capabilities, then the same, in the same process.
    let check = env
        .a
        .command(wrapper[0])
        .args(&wrapper[1..])
        .arg(trafmon_bin())
        .arg("--config")
        .arg(&env.config)
        .arg("check")
        .output()
        .expect("trafmon check");
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && said.contains(&format!("running (pid {})", agent.pid())),
        "{said}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    agent.signal(libc::SIGHUP);
    assert!(
        agent.wait_logged(" counting ", 2, std::time::Duration::from_secs(15)),
        "the agent serves on after a reload with the unit's capabilities"
    );
    assert_eq!(env.send(who, "192.0.2.100", "7602", 100_000), 100_000);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    agent.stop();
    let ours = assert_uid_tx(&env.counts(""), &env.a, 61301, false);
    assert!(ours.tx_bytes > 400_000);
    assert_link(&env, &env.va, &[]);
}
