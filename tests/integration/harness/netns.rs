//! Processes and places of a test: commands, network namespaces, the
//! cgroup, and traffic generators running as other UIDs.

use std::{
    fs,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::mpsc,
    time::{Duration, Instant},
};

/// Runs a command and returns stdout; panics with stderr on failure.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The trafmon binary under test (set by `cargo xtask test`).
pub fn trafmon_bin() -> PathBuf {
    let bin = std::env::var_os("TRAFMON_BIN")
        .map(PathBuf::from)
        .expect("TRAFMON_BIN is not set: run the integration tests with `cargo xtask test`");
    assert!(bin.exists(), "TRAFMON_BIN={} does not exist", bin.display());
    bin
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub(super) fn new(name: String) -> Self {
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Self { name }
    }

    /// Runs a command inside this namespace.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// `program`, to be run inside this namespace: the child joins it with
    /// setns only (`ip netns exec` would also remount /sys).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let netns = fs::File::open(self.path()).expect("open netns");
        let mut cmd = Command::new(program);
        // SAFETY: setns is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A cgroup v2 directory, emptied and removed on drop.
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    /// Makes `name` under the cgroup v2 root.
    pub fn new(name: &str) -> Self {
        let root = trafmon::mounts::cgroup2_root().expect("a cgroup v2 mount");
        let path = root.join(name);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self { path }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let procs = fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|p| p.parse::<i32>().ok()) {
                // SAFETY: plain kill(2) of a process of this test's cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("warning: cannot remove cgroup {}", self.path.display());
    }
}

/// Where a traffic process runs and as whom.
#[derive(Clone, Copy)]
pub struct As<'a> {
    pub ns: &'a Netns,
    pub uid: u32,
    /// Moved into the test's cgroup (counted by cgroup_skb) or not.
    pub counted: bool,
}

impl<'a> As<'a> {
    /// Root in `ns`, outside the test's cgroup (not counted per UID).
    pub fn root(ns: &'a Netns) -> Self {
        Self {
            ns,
            uid: 0,
            counted: false,
        }
    }

    /// `uid` in `ns`, inside the test's cgroup (counted per UID).
    pub fn user(ns: &'a Netns, uid: u32) -> Self {
        Self {
            ns,
            uid,
            counted: true,
        }
    }
}

/// A running traffic generator.
pub struct Traffic {
    pub(super) child: Child,
    pub(super) lines: mpsc::Receiver<String>,
    pub(super) what: String,
}

impl Traffic {
    /// Waits for the `listening` line of a receiver.
    pub fn wait_listening(&self) {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{} did not start listening", self.what));
        assert_eq!(line, "listening", "{}", self.what);
    }

    /// Waits for it to finish and returns the bytes it reports.
    pub fn finish(mut self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "{} failed: {status}", self.what);
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{} did not finish in time", self.what);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let last = self.lines.iter().last().unwrap_or_default();
        last.split(' ')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}: unexpected output {last:?}", self.what))
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
