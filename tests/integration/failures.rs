//! Bad input stops the agent with one clear line and loses nothing: a bad
//! configuration, a corrupt database (left byte for byte as it was), a
//! store directory that turns read-only for a while.

use std::{fs, path::Path, process::Command, time::Duration};

use crate::{
    harness::{Env, sh, trafmon_bin},
    load::{Load, check},
};

fn agent_with_config(text: &str, dir: &Path) -> (bool, String) {
    fs::create_dir_all(dir).expect("dir");
    let path = dir.join("bad.toml");
    fs::write(&path, text).expect("write config");
    run_agent(&path)
}

fn run_agent(config: &Path) -> (bool, String) {
    let out = Command::new(trafmon_bin())
        .arg("--config")
        .arg(config)
        .arg("agent")
        .output()
        .expect("run trafmon");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_configuration_is_one_line_naming_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("trafmon-badcfg-{}", std::process::id()));
    let file = dir.join("bad.toml");
    let file = file.display();
    for (text, expected) in [
        (
            "interval = \"10s\"\nbogus = 1\n",
            format!("{file}:2: bogus: unknown field `bogus`"),
        ),
        (
            "[groups]\ncust = [\"192.0.2.0/33\"]\n",
            format!("{file}:2: groups.cust[0]: `192.0.2.0/33` is not an address or a CIDR network"),
        ),
        (
            "\ninterval = \"-10s\"\n",
            format!("{file}:2: interval: `-10s` must be positive"),
        ),
    ] {
        let (ok, stderr) = agent_with_config(text, &dir);
        assert!(!ok, "the agent refuses {text:?}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.starts_with(&format!("trafmon: {expected}")),
            "{stderr}"
        );
    }
    // A file that cannot be read (a directory, since root reads anything).
    let (ok, stderr) = run_agent(&dir);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "trafmon: {}: cannot read the configuration: Is a directory",
            dir.display()
        )),
        "{stderr}"
    );
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_corrupt_database_is_left_untouched_and_stops_the_agent() {
    let env = Env::new("");
    let path = env.store_path();
    fs::create_dir_all(path.parent().expect("dir")).expect("state dir");
    let mut garbage = b"SQLite format 3\0".to_vec();
    garbage.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    fs::write(&path, &garbage).expect("write garbage");
    let (ok, stderr) = run_agent(&env.config);
    assert!(!ok, "the agent must not start");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&path.display().to_string()) && stderr.contains("corrupt"),
        "{stderr}"
    );
    assert_eq!(
        fs::read(&path).expect("read"),
        garbage,
        "byte for byte untouched"
    );
    assert!(!env.pin_dir.exists(), "nothing was loaded");
}

/// A tmpfs mounted over the state directory, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(env: &Env, size: &str) -> (Tmpfs, std::path::PathBuf) {
    let state = env.store_path().parent().expect("state dir").to_path_buf();
    fs::create_dir_all(&state).expect("state dir");
    let dir = state.to_str().expect("utf-8");
    sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        &format!("size={size}"),
        "trafmon-test",
        dir,
    ]);
    (Tmpfs(state.clone()), state)
}

/// Fills the file system of `dir` with a file, and returns it.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut f = fs::File::create(&path).expect("filler");
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    path
}

/// The disk fills up while the agent runs: commits fail, the deltas are
/// kept (in memory and in the kernel) and stored once there is room.
#[test]
fn a_full_disk_loses_no_delta_once_there_is_room() {
    let env = Env::with_interval("100ms", "");
    let (_tmpfs, state) = mount_tmpfs(&env, "8m");
    let agent = env.agent();
    env.up(&[]);
    let load = Load::start(&env, 8);
    let filler = fill(&state);
    std::thread::sleep(Duration::from_secs(3));
    assert!(agent.logged("flush failed"), "the agent saw the store fail");
    fs::remove_file(filler).expect("make room");
    load.finish();
    agent.stop();
    check(&env, &env.counts(""));
}

/// The state directory is read-only when the agent starts (as root ignores
/// mode bits, a read-only mount): the agent refuses with one line and the
/// kernel keeps counting; once writable, the agent stores everything.
#[test]
fn a_read_only_store_directory_loses_nothing_once_writable() {
    let env = Env::with_interval("100ms", "");
    // Install the pinned programs first (with a store elsewhere).
    let (_tmpfs, state) = mount_tmpfs(&env, "16m");
    env.agent().stop();
    fs::remove_file(env.store_path()).expect("remove that first store");
    let dir = state.to_str().expect("utf-8");
    sh(&["mount", "-o", "remount,ro", dir]);
    env.up(&[]);
    let load = Load::start(&env, 4);
    let (ok, stderr) = run_agent(&env.config);
    assert!(!ok, "the agent cannot start on a read-only state directory");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&env.store_path().display().to_string()),
        "{stderr}"
    );
    load.finish();
    sh(&["mount", "-o", "remount,rw", dir]);
    env.agent().stop();
    check(&env, &env.counts(""));
}

/// `trafmon uninstall` on a full disk cannot store what the maps hold:
/// it detaches nothing and says so in one line; once there is room, the
/// next uninstall stores every count.
#[test]
fn an_uninstall_on_a_full_disk_detaches_nothing_until_there_is_room() {
    let env = Env::with_interval("100ms", "");
    let (_tmpfs, state) = mount_tmpfs(&env, "8m");
    env.agent().stop();
    env.up(&[]);
    Load::start(&env, 2).finish();
    let links = || {
        fs::read_dir(env.pin_dir.join("links"))
            .expect("links")
            .count()
    };
    let attached = links();
    let filler = fill(&state);
    let out = env.trafmon(&["uninstall"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("nothing was detached"), "{err}");
    assert_eq!(links(), attached, "every link is still pinned");

    fs::remove_file(filler).expect("make room");
    let said = env.uninstall();
    assert!(
        said.starts_with("detached everything, stored the last counts (flush "),
        "{said}"
    );
    assert!(!env.pin_dir.exists(), "{} is gone", env.pin_dir.display());
    check(&env, &env.stored());
}

/// Runs the agent on `env` with another `pin_dir` or `cgroup`, from a
/// config in a directory `name` of the env's own; returns that directory,
/// whether the agent started, and its stderr.
fn agent_placed(
    env: &Env,
    name: &str,
    place: impl Fn(&Path) -> (std::path::PathBuf, std::path::PathBuf),
) -> (std::path::PathBuf, bool, String) {
    let dir = env.config.parent().expect("the env's directory").join(name);
    fs::create_dir_all(&dir).expect("dir");
    let (pins, cgroup) = place(&dir);
    let text = format!(
        "pin_dir = \"{}\"\nstate_dir = \"{}\"\ncgroup = \"{}\"\ninterfaces = []\n[metrics]\nenabled = false\n",
        pins.display(),
        dir.join("state").display(),
        cgroup.display()
    );
    let (ok, stderr) = agent_with_config(&text, &dir);
    (dir, ok, stderr)
}

/// A pin directory that is not on a bpffs stops the agent with one line
/// naming it; no bpffs is mounted over /sys/fs/bpf, which would hide the
/// pins below it (other agents' maps and links).
#[test]
fn a_pin_dir_off_bpffs_is_one_line_and_mounts_nothing() {
    let env = Env::new("");
    let bpf_mounts = || {
        fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .lines()
            .filter(|l| l.contains(" - bpf "))
            .count()
    };
    let before = bpf_mounts();
    let (dir, ok, stderr) = agent_placed(&env, "elsewhere", |dir| {
        (dir.join("pins"), env.cgroup.path.clone())
    });
    let after = bpf_mounts();
    for _ in before..after {
        // Undo what a broken agent stacked, before failing.
        let _ = Command::new("umount").arg("/sys/fs/bpf").status();
    }
    assert_eq!(after, before, "no bpffs was mounted");
    assert!(!ok, "the agent refuses");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "trafmon: pin_dir {}: not on a bpffs",
            dir.join("pins").display()
        )),
        "{stderr}"
    );
}

/// A `cgroup` that is not a cgroup v2 directory (here a plain directory;
/// on a hybrid system also a v1 controller's) stops the agent with one line
/// naming it, before anything is loaded.
#[test]
fn a_cgroup_that_is_not_cgroup_v2_is_one_line_and_loads_nothing() {
    let env = Env::new("");
    let (dir, ok, stderr) = agent_placed(&env, "not-a-cgroup", |dir| {
        (env.pin_dir.clone(), dir.into())
    });
    assert!(!ok, "the agent refuses");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "trafmon: cgroup: {} is not a cgroup v2 directory",
            dir.display()
        )),
        "{stderr}"
    );
    let loaded = fs::read_dir(env.pin_dir.join("maps")).map_or(0, Iterator::count);
    assert_eq!(loaded, 0, "no map was pinned");
}
