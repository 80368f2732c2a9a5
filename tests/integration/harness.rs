//! What every integration test needs: its own network namespaces, veth
//! pair, cgroup and pin directory (all removed in `Drop`, even when the test
//! fails), an agent running in its namespace, traffic generators running as
//! other UIDs, and the ground truths (iptables counters, interface counters).
//!
//! Traffic only flows between the test's own namespaces, on documentation
//! addresses.

use std::{
    ffi::CString,
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use trafmon::{
    counters::{Maps, Totals},
    paths::PinDir,
    store::{Kind, Store},
};
use trafmon_common::Counters;

/// Counts per (kind, key): the store's totals plus what the kernel holds.
pub type Counts = std::collections::BTreeMap<(Kind, String), Counters>;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A short unique id for names of this test's objects.
fn unique() -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{n:x}", std::process::id() & 0xffff)
}

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

/// Fails the test unless it runs as root.
fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "integration tests need root (they load eBPF programs): run `sudo -E cargo xtask test`"
    );
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    fn new(name: String) -> Self {
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
    child: Child,
    lines: mpsc::Receiver<String>,
    what: String,
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

/// Makes the veth pair `va` in `a`, `vb` in `b`, `va` at `ifindex` if
/// given.
fn add_veth(va: &str, vb: &str, a: &Netns, b: &Netns, ifindex: Option<u32>) {
    let index = ifindex.map(|i| i.to_string());
    let mut add = vec!["ip", "link", "add", va];
    if let Some(i) = &index {
        add.extend(["index", i.as_str()]);
    }
    add.extend([
        "netns", &a.name, "type", "veth", "peer", "name", vb, "netns", &b.name,
    ]);
    sh(&add);
}

/// One test's world: two namespaces joined by a veth pair (`va` in `a`,
/// `vb` in `b`), a cgroup, a pin directory and a config file.
pub struct Env {
    pub pin_dir: PathBuf,
    pub config: PathBuf,
    pub cgroup: Cgroup,
    pub va: String,
    pub vb: String,
    /// The interface the tc programs watch: `va`, or `lo` of `a`.
    pub watched: String,
    // Dropped last: everything above lives in them.
    pub a: Netns,
    pub b: Netns,
    tmp: PathBuf,
}

/// What the env's agent is configured to watch.
enum Watch<'a> {
    /// `va`.
    Veth,
    /// This device of `a`.
    Device(&'a str),
    /// `interfaces = "auto"`.
    Auto,
}

impl Env {
    /// [`Env::with_interval`] with a 1 s interval.
    pub fn new(extra: &str) -> Self {
        Self::with_interval("1s", extra)
    }

    /// Creates the namespaces, the veth pair (down, no addresses), the
    /// cgroup and a config with this flush interval and `extra` appended.
    pub fn with_interval(interval: &str, extra: &str) -> Self {
        Self::build(interval, extra, None, Watch::Veth)
    }

    /// [`Env::new`], with `va` created at interface index `ifindex`.
    pub fn with_ifindex(ifindex: u32, extra: &str) -> Self {
        Self::build("1s", extra, Some(ifindex), Watch::Veth)
    }

    /// [`Env::new`], with the tc programs on `device` of `a` (its
    /// loopback device, or one the test makes) instead of `va`.
    pub fn watching(device: &str, extra: &str) -> Self {
        Self::build("1s", extra, None, Watch::Device(device))
    }

    /// [`Env::new`], with `interfaces = "auto"`: the agent watches every
    /// interface of `a` but `lo`, `va` among them.
    pub fn auto(extra: &str) -> Self {
        Self::build("1s", extra, None, Watch::Auto)
    }

    fn build(interval: &str, extra: &str, ifindex: Option<u32>, watch: Watch) -> Self {
        require_root();
        let id = unique();
        let a = Netns::new(format!("tm-{id}-a"));
        let b = Netns::new(format!("tm-{id}-b"));
        let (va, vb) = (format!("tma{id}"), format!("tmb{id}"));
        add_veth(&va, &vb, &a, &b, ifindex);
        for ns in [&a, &b] {
            // Keep the link quiet: no router solicitations, no DAD.
            ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.router_solicitations=0"]);
            ns.exec(&[
                "sysctl",
                "-qw",
                "net.ipv6.conf.default.router_solicitations=0",
            ]);
            ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]);
        }
        let cgroup = Cgroup::new(&format!("trafmon-test-{id}"));
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/trafmon-test-{id}"));
        let tmp = std::env::temp_dir().join(format!("trafmon-test-{id}"));
        fs::create_dir_all(&tmp).expect("tmp dir");
        let config = tmp.join("trafmon.toml");
        let (watched, interfaces) = match watch {
            Watch::Veth => (va.clone(), format!("[\"{va}\"]")),
            Watch::Device(d) => (d.to_owned(), format!("[\"{d}\"]")),
            Watch::Auto => (va.clone(), "\"auto\"".to_owned()),
        };
        fs::write(
            &config,
            format!(
                "interval = \"{interval}\"\npin_dir = \"{}\"\nstate_dir = \"{}\"\ncgroup = \"{}\"\ninterfaces = {interfaces}\n{extra}\n",
                pin_dir.display(),
                tmp.join("state").display(),
                cgroup.path.display()
            ),
        )
        .expect("write config");
        Self {
            pin_dir,
            config,
            cgroup,
            va,
            vb,
            watched,
            a,
            b,
            tmp,
        }
    }

    /// Removes the veth pair and makes it again under the same names (down,
    /// no addresses), as a new device.
    pub fn remake_veth(&self) {
        self.a.exec(&["ip", "link", "del", &self.va]);
        add_veth(&self.va, &self.vb, &self.a, &self.b, None);
    }

    /// Brings the veth up with 192.0.2.1/24 + 2001:db8::1/64 on `va` and
    /// 192.0.2.100/24 + 2001:db8::100/64 on `vb`, plus `more_a` on `va`.
    pub fn up(&self, more_a: &[&str]) {
        for (ns, dev, v4, v6) in [
            (&self.a, &self.va, "192.0.2.1/24", "2001:db8::1/64"),
            (&self.b, &self.vb, "192.0.2.100/24", "2001:db8::100/64"),
        ] {
            ns.exec(&["ip", "addr", "add", v4, "dev", dev]);
            ns.exec(&["ip", "addr", "add", v6, "dev", dev, "nodad"]);
        }
        for addr in more_a {
            let mut args = vec!["ip", "addr", "add", addr, "dev", &self.va];
            if addr.contains(':') {
                args.push("nodad");
            }
            self.a.exec(&args);
        }
        self.a.exec(&["ip", "link", "set", &self.va, "up"]);
        self.b.exec(&["ip", "link", "set", &self.vb, "up"]);
    }

    /// Starts the agent inside namespace `a` and waits until it counts.
    pub fn agent(&self) -> Agent {
        Agent::start(self, &[])
    }

    /// Starts the agent with extra environment variables.
    pub fn agent_with(&self, vars: &[(&str, &str)]) -> Agent {
        Agent::start(self, vars)
    }

    /// Starts the agent through `wrapper` (`setpriv ...`), which ends
    /// with the program it runs.
    pub fn agent_wrapped(&self, wrapper: &[&str]) -> Agent {
        Agent::start_with(self, &[], wrapper)
    }

    /// Runs `trafmon uninstall` with this env's config and checks that it
    /// succeeded.
    pub fn uninstall(&self) -> String {
        let out = self.trafmon(&["uninstall"]);
        assert!(
            out.status.success(),
            "uninstall: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// [`Env::trafmon`] bounded to 20 s (`timeout`), for commands that must
    /// stop by themselves, such as an agent that has to be refused.
    pub fn trafmon_bounded(&self, args: &[&str]) -> std::process::Output {
        Command::new("timeout")
            .arg("20")
            .arg(trafmon_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run trafmon")
    }

    /// Runs `trafmon <args>` with this env's config.
    pub fn trafmon(&self, args: &[&str]) -> std::process::Output {
        Command::new(trafmon_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run trafmon")
    }

    /// Sends `bytes` over TCP as `who` to `to`:`port`, received by root in
    /// namespace `b`; returns what arrived once the transfer is complete.
    pub fn send(&self, who: As<'_>, to: &str, port: &str, bytes: u64) -> u64 {
        let rx = self.traffic(As::root(&self.b), &["tcp-recv", to, port, "1"]);
        rx.wait_listening();
        self.traffic(who, &["tcp-send", to, port, &bytes.to_string()])
            .finish();
        rx.finish()
    }

    /// Starts the traffic generator `args` as `who`.
    pub fn traffic(&self, who: As<'_>, args: &[&str]) -> Traffic {
        let what = format!("trafgen {} as uid {}", args.join(" "), who.uid);
        let procs = CString::new(
            self.cgroup
                .path
                .join("cgroup.procs")
                .to_str()
                .expect("utf-8"),
        )
        .expect("no NUL");
        let (uid, counted) = (who.uid, who.counted);
        let mut cmd = who.ns.command(env!("CARGO_BIN_EXE_trafgen"));
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: only async-signal-safe calls (open, write, close,
        // setgroups, setgid, setuid) between fork and exec; they run after
        // the setns of `command`.
        unsafe {
            cmd.pre_exec(move || {
                if counted {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(uid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Traffic { child, lines, what }
    }

    /// The counters both sides of the pinned maps hold now.
    pub fn kernel(&self) -> Totals {
        Maps::open(&PinDir::new(&self.pin_dir))
            .expect("open pinned maps")
            .read_all()
            .expect("read maps")
    }

    /// The store of this env's agent.
    pub fn store_path(&self) -> PathBuf {
        self.tmp.join("state/trafmon.db")
    }

    /// What the store holds.
    pub fn stored(&self) -> Counts {
        let mut out = Counts::new();
        if !self.store_path().exists() {
            return out;
        }
        let store = Store::open_read_only(&self.store_path()).expect("open the store");
        for t in store.totals().expect("read totals") {
            out.insert((t.entity.kind, t.entity.key), t.counters);
        }
        out
    }

    /// Everything counted: stored totals plus what the kernel still holds
    /// (the watched interface named). Read it with the agent stopped, or a
    /// flush may move counts between the two reads.
    pub fn counts(&self, groups: &str) -> Counts {
        self.counts_on(groups, &self.watched)
    }

    /// [`Env::counts`], with the kernel's counts of the device that is
    /// called `dev` now (in `a`) named `dev`: for a device that was renamed.
    pub fn counts_on(&self, groups: &str, dev: &str) -> Counts {
        let mut out = self.stored();
        let watched = Self::ifindex(&self.a, dev);
        let groups = trafmon::config::Config::parse(groups, "groups".as_ref())
            .expect("groups")
            .groups;
        let mut live = trafmon::deltas::Builder::new(
            &groups,
            |u| u.to_string(),
            |i| (i == watched).then(|| dev.to_owned()),
        );
        self.kernel().drained().for_each(|d| live.push(d));
        for d in live.finish() {
            let (entity, _, counters) = d.into_parts();
            out.entry((entity.kind, entity.key))
                .or_default()
                .add(&counters);
        }
        out
    }

    /// The `ifindex` of `dev` in `ns`.
    pub fn ifindex(ns: &Netns, dev: &str) -> u32 {
        let json = ns.exec(&["ip", "-j", "link", "show", dev]);
        let v: serde_json::Value = serde_json::from_str(&json).expect("ip -j output");
        v[0]["ifindex"].as_u64().expect("ifindex") as u32
    }

    /// The interface's own counters: (rx bytes, rx packets, tx bytes, tx packets).
    pub fn link_stats(ns: &Netns, dev: &str) -> [u64; 4] {
        let json = ns.exec(&["ip", "-j", "-s", "link", "show", dev]);
        let v: serde_json::Value = serde_json::from_str(&json).expect("ip -j output");
        let s = &v[0]["stats64"];
        let get = |dir: &str, what: &str| s[dir][what].as_u64().expect("stats64 field");
        [
            get("rx", "bytes"),
            get("rx", "packets"),
            get("tx", "bytes"),
            get("tx", "packets"),
        ]
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.pin_dir.exists() {
            let _ = trafmon::loader::uninstall(&self.pin_dir);
        }
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

/// An agent process running in the env's namespace `a`.
pub struct Agent {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Agent {
    fn start(env: &Env, vars: &[(&str, &str)]) -> Self {
        Self::start_with(env, vars, &[])
    }

    fn start_with(env: &Env, vars: &[(&str, &str)], wrapper: &[&str]) -> Self {
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = env.a.command(program);
                c.args(args).arg(trafmon_bin());
                c
            }
            None => env.a.command(trafmon_bin()),
        };
        cmd.envs(vars.iter().copied());
        cmd.arg("--config")
            .arg(&env.config)
            .arg("agent")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the agent");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("agent: {line}");
                keep.lock().expect("log").push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(" counting ") => break,
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    panic!("the agent did not start counting: {:?}", child.wait());
                }
            }
        }
        Self { child, log }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True when a line the agent wrote to stderr so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.logged_times(text) > 0
    }

    /// How many lines the agent wrote to stderr so far contain `text`.
    pub fn logged_times(&self, text: &str) -> usize {
        self.log
            .lock()
            .expect("log")
            .iter()
            .filter(|l| l.contains(text))
            .count()
    }

    /// Sends `signal` to the agent, which goes on running.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) of our own child.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "signal {signal} to the agent");
    }

    /// Waits up to `timeout` until `times` lines the agent wrote contain
    /// `text`; false if they did not.
    pub fn wait_logged(&self, text: &str, times: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.logged_times(text) < times {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// True while the agent process has not exited.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// Kills the agent with `signal` and waits for it.
    pub fn kill(mut self, signal: i32) -> std::process::ExitStatus {
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        self.child.wait().expect("wait for the agent")
    }

    /// Stops the agent with SIGTERM (it flushes first) and checks that it
    /// exited cleanly.
    pub fn stop(self) {
        let status = self.kill(libc::SIGTERM);
        assert!(
            status.success(),
            "the agent stops cleanly on SIGTERM: {status}"
        );
    }

    /// Waits up to `timeout` for the agent to exit by itself.
    pub fn wait_exit(mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counters of the iptables (or ip6tables) rules in `ns` whose comment is
/// `comment`: (packets, bytes).
pub fn rule_counters(ns: &Netns, v6: bool, comment: &str) -> (u64, u64) {
    let save = ns.exec(&[
        if v6 {
            "ip6tables-save"
        } else {
            "iptables-save"
        },
        "-c",
    ]);
    let mut found = None;
    for line in save.lines() {
        if line.contains(&format!("--comment {comment} "))
            || line.ends_with(&format!("--comment {comment}"))
        {
            let counters = line
                .strip_prefix('[')
                .and_then(|l| l.split(']').next())
                .unwrap_or_else(|| panic!("no counters in {line:?}"));
            let (p, b) = counters.split_once(':').expect("pkts:bytes");
            found = Some((p.parse().expect("packets"), b.parse().expect("bytes")));
        }
    }
    found.unwrap_or_else(|| panic!("no rule with comment {comment} in {ns}", ns = ns.name))
}

/// Adds an accounting rule (no target) with a comment to find it by.
pub fn add_rule(ns: &Netns, v6: bool, chain: &str, spec: &[&str], comment: &str) {
    let mut args = vec![if v6 { "ip6tables" } else { "iptables" }, "-w", "-A", chain];
    args.extend_from_slice(spec);
    args.extend_from_slice(&["-m", "comment", "--comment", comment]);
    ns.exec(&args);
}

/// Waits for every sender, then for every receiver.
pub fn finish_all(
    senders: impl IntoIterator<Item = Traffic>,
    receivers: impl IntoIterator<Item = Traffic>,
) {
    for s in senders {
        s.finish();
    }
    for r in receivers {
        r.finish();
    }
}

/// The counts of one entity (zero when absent).
pub fn count_of(counts: &Counts, kind: Kind, key: &str) -> Counters {
    counts
        .get(&(kind, key.to_owned()))
        .copied()
        .unwrap_or_default()
}

/// Asserts that the counts of address `addr` equal, exactly, the INPUT
/// `-d` rule `rule_in` (rx) and the OUTPUT `-s` rule `rule_out` (tx) in
/// `ns`; returns the counts.
pub fn assert_address(
    counts: &Counts,
    ns: &Netns,
    addr: &str,
    v6: bool,
    (rule_in, rule_out): (&str, &str),
) -> Counters {
    let ours = count_of(counts, Kind::Ip, addr);
    let (pi, bi) = rule_counters(ns, v6, rule_in);
    let (po, bo) = rule_counters(ns, v6, rule_out);
    assert_eq!(
        [
            ours.rx_packets,
            ours.rx_bytes,
            ours.tx_packets,
            ours.tx_bytes
        ],
        [pi, bi, po, bo],
        "{addr}: trafmon [rx p, rx B, tx p, tx B] vs INPUT -d / OUTPUT -s rules in {}",
        ns.name
    );
    ours
}

/// The addresses counted, in order.
pub fn addresses(counts: &Counts) -> Vec<&str> {
    counts
        .keys()
        .filter(|(kind, _)| *kind == Kind::Ip)
        .map(|(_, key)| key.as_str())
        .collect()
}

/// Asserts that trafmon's counts of the device called `dev` in `a` now
/// (summed with those under its earlier names `was`) equal its own
/// statistics exactly, and returns them. Read with the agent stopped, as
/// trafmon, the device, trafmon again until nothing moved in between: the
/// kernel may send a packet of its own on the device at any moment (an
/// IPv6 multicast listener report), which trafmon counts too.
pub fn assert_link(env: &Env, dev: &str, was: &[&str]) -> [u64; 4] {
    for _ in 0..50 {
        let before = env.counts_on("", dev);
        let device = Env::link_stats(&env.a, dev);
        let after = env.counts_on("", dev);
        if before != after {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let mut ours = count_of(&after, Kind::Iface, dev);
        for name in was {
            ours.add(&count_of(&after, Kind::Iface, name));
        }
        assert_eq!(
            [
                ours.rx_bytes,
                ours.rx_packets,
                ours.tx_bytes,
                ours.tx_packets
            ],
            device,
            "trafmon [rx B, rx p, tx B, tx p] of {dev} (was {was:?}) vs its statistics in {}; trafmon's interfaces: {:?}",
            env.a.name,
            after
                .iter()
                .filter(|((kind, _), _)| *kind == Kind::Iface)
                .collect::<Vec<_>>()
        );
        return device;
    }
    panic!("{dev} never went quiet");
}

/// Adds OUTPUT `--uid-owner` rules for `uid` to iptables and, with `v6`,
/// to ip6tables.
pub fn add_owner_rules(ns: &Netns, uid: u32, v6: bool) {
    let u = uid.to_string();
    for family in [false, true].into_iter().take(if v6 { 2 } else { 1 }) {
        add_rule(
            ns,
            family,
            "OUTPUT",
            &["-m", "owner", "--uid-owner", &u],
            &format!("tm-uid-{uid}"),
        );
    }
}

/// What the owner rules of `uid` counted: (packets, bytes), over IPv4 and,
/// with `v6`, IPv6.
pub fn owner_counters(ns: &Netns, uid: u32, v6: bool) -> (u64, u64) {
    let (mut packets, mut bytes) = rule_counters(ns, false, &format!("tm-uid-{uid}"));
    if v6 {
        let (p, b) = rule_counters(ns, true, &format!("tm-uid-{uid}"));
        packets += p;
        bytes += b;
    }
    (packets, bytes)
}

/// Asserts that the tx of `uid` equals its owner rules exactly; returns
/// its counts.
pub fn assert_uid_tx(counts: &Counts, ns: &Netns, uid: u32, v6: bool) -> Counters {
    let ours = count_of(counts, Kind::Uid, &uid.to_string());
    assert_eq!(
        (ours.tx_packets, ours.tx_bytes),
        owner_counters(ns, uid, v6),
        "uid {uid}: trafmon tx (packets, bytes) vs --uid-owner rules"
    );
    ours
}

/// 4 s of paced UDP both ways over the veth: 1500 datagrams of 700 bytes
/// from UID `uid` in `a` to `b`, and 1500 of 500 bytes from `b` to
/// 192.0.2.1 in `a`, with the iptables rules that count them. For tests
/// that change the agent while packets flow.
pub struct Paced {
    uid: u32,
    senders: Vec<Traffic>,
    receivers: Vec<Traffic>,
}

impl Paced {
    /// Brings the veth up and starts the traffic, on ports `port` and
    /// `port + 1`.
    pub fn start(env: &Env, uid: u32, port: u16) -> Self {
        env.up(&[]);
        add_owner_rules(&env.a, uid, false);
        add_rule(&env.a, false, "INPUT", &["-d", "192.0.2.1"], "tm-in");
        add_rule(&env.a, false, "OUTPUT", &["-s", "192.0.2.1"], "tm-out");
        let (to_b, to_a) = (port.to_string(), (port + 1).to_string());
        let receivers = vec![
            env.traffic(
                As::root(&env.b),
                &["udp-recv", "192.0.2.100", &to_b, "1500"],
            ),
            env.traffic(As::root(&env.a), &["udp-recv", "192.0.2.1", &to_a, "1500"]),
        ];
        for r in &receivers {
            r.wait_listening();
        }
        let senders = vec![
            env.traffic(
                As::user(&env.a, uid),
                &["udp-send", "192.0.2.100", &to_b, "700", "1500", "4"],
            ),
            env.traffic(
                As::root(&env.b),
                &["udp-send", "192.0.2.1", &to_a, "500", "1500", "4"],
            ),
        ];
        Self {
            uid,
            senders,
            receivers,
        }
    }

    /// Waits for the traffic to end; returns the UID.
    pub fn finish(self) -> u32 {
        finish_all(self.senders, self.receivers);
        self.uid
    }
}

/// Asserts that the stored counts of [`Paced`] traffic of `uid` are exact
/// and complete: the UID, 192.0.2.1 and the veth against iptables rules
/// and the device's statistics (read with the agent stopped). Returns the
/// address's counts.
pub fn assert_paced(env: &Env, uid: u32) -> Counters {
    let counts = env.stored();
    let ip = assert_paced_flows(&counts, env, uid);
    assert_link(env, &env.va, &[]);
    ip
}

/// [`assert_paced`] without the interface: the UID and 192.0.2.1 in
/// `counts`. Returns the address's counts.
pub fn assert_paced_flows(counts: &Counts, env: &Env, uid: u32) -> Counters {
    let ours = assert_uid_tx(counts, &env.a, uid, false);
    assert_eq!(
        ours.tx_packets, 1500,
        "every datagram of the UID was counted"
    );
    let ip = assert_address(counts, &env.a, "192.0.2.1", false, ("tm-in", "tm-out"));
    assert_eq!(
        ip.rx_packets, 1500,
        "every datagram to the address was counted"
    );
    ip
}

/// How many `maps-resized` events the env's store holds.
pub fn resized_events(env: &Env) -> usize {
    let store = Store::open_read_only(&env.store_path()).expect("store");
    store
        .events()
        .expect("events")
        .into_iter()
        .filter(|(_, kind, _)| kind == "maps-resized")
        .count()
}

/// GET `path` from `addr` inside `ns` (a thread joins the namespace, so
/// the test itself stays where it is). Returns (status line, body).
pub fn get_in(ns: &Netns, addr: &str, path: &str) -> std::io::Result<(String, String)> {
    let netns = fs::File::open(ns.path())?;
    let (addr, path) = (addr.to_owned(), path.to_owned());
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with a valid namespace fd.
        if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut s = TcpStream::connect(&addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\n\r\n"
        )?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        Ok((
            head.lines().next().unwrap_or("").to_owned(),
            body.to_owned(),
        ))
    })
    .join()
    .expect("the request thread")
}
