//! What every integration test needs: its own network namespaces, veth
//! pair, cgroup and pin directory (all removed in `Drop`, even when the test
//! fails), an agent running in its namespace, traffic generators running as
//! other UIDs, and the ground truths (iptables counters, interface counters).
//!
//! Traffic only flows between the test's own namespaces, on documentation
//! addresses.
//!
//! Here: [`Env`], one test's world. `netns.rs`: commands, namespaces, the
//! cgroup and traffic processes; `agent.rs`: the agent under test;
//! `truth.rs`: the ground truths and the assertions against them.

mod agent;
mod netns;
mod truth;

use std::{
    ffi::CString,
    fs,
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Command, Stdio},
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

pub use agent::Agent;
pub use netns::*;
pub use truth::*;

/// Counts per (kind, key): the store's totals plus what the kernel holds.
pub type Counts = std::collections::BTreeMap<(Kind, String), Counters>;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A short unique id for names of this test's objects.
fn unique() -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{n:x}", std::process::id() & 0xffff)
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

/// Keeps the links that `ns` will have quiet, so that nothing but a
/// test's own traffic crosses them once [`Env::up`] returns: no router
/// solicitations, no DAD, and the MLD reports of a new address sent within
/// 10 ms instead of 1 s (and again up to seconds later after DAD). A
/// device takes the `default` values when it is made, so this runs before.
fn quiet(ns: &Netns) {
    ns.exec(&[
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.router_solicitations=0",
        "net.ipv6.conf.default.router_solicitations=0",
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
        "net.ipv6.conf.default.mldv1_unsolicited_report_interval=10",
        "net.ipv6.conf.default.mldv2_unsolicited_report_interval=10",
    ]);
}

/// What `ip -j ARGS` prints in `ns`, parsed.
fn ip_json(ns: &Netns, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["ip", "-j"];
    full.extend_from_slice(args);
    serde_json::from_str(&ns.exec(&full)).expect("ip -j output")
}

/// Waits until `dev` in `ns` has its link-local address (made once the
/// kernel sees the carrier, up to a second after `up`), then as long as
/// its MLD reports take to go out: from then on the link is quiet.
fn wait_quiet(ns: &Netns, dev: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = ip_json(ns, &["-6", "addr", "show", "dev", dev, "scope", "link"]);
        if v[0]["addr_info"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{dev} got no link-local address in 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Two reports (the robustness count), each within 10 ms.
    std::thread::sleep(Duration::from_millis(100));
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
        for ns in [&a, &b] {
            quiet(ns);
        }
        let (va, vb) = (format!("tma{id}"), format!("tmb{id}"));
        add_veth(&va, &vb, &a, &b, ifindex);
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
    /// 192.0.2.100/24 + 2001:db8::100/64 on `vb`, plus `more_a` on `va`;
    /// returns once the link is quiet (see [`quiet`]).
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
        wait_quiet(&self.a, &self.va);
        wait_quiet(&self.b, &self.vb);
    }

    /// Starts the agent inside namespace `a` and waits until it counts.
    pub fn agent(&self) -> Agent {
        Agent::start(self, &[])
    }

    /// Starts the agent with extra environment variables.
    pub fn agent_with(&self, vars: &[(&str, &str)]) -> Agent {
        Agent::start(self, vars)
    }

    /// Starts the agent with extra environment variables through
    /// `wrapper` (`setpriv ...`), which ends with the program it runs.
    pub fn agent_wrapped(&self, vars: &[(&str, &str)], wrapper: &[&str]) -> Agent {
        Agent::start_with(self, vars, wrapper)
    }

    /// Pins a map `name` made as another version might have made it
    /// (`kind`, key and value sizes in bytes, entries) in this env's pin
    /// directory; returns its path.
    pub fn pin_map(&self, name: &str, kind: &str, sizes: [u32; 3]) -> PathBuf {
        let maps = self.pin_dir.join("maps");
        fs::create_dir_all(&maps).expect("pin dir");
        let path = maps.join(name);
        let [key, value, entries] = sizes.map(|n| n.to_string());
        sh(&[
            "bpftool",
            "map",
            "create",
            path.to_str().expect("utf-8"),
            "type",
            kind,
            "key",
            &key,
            "value",
            &value,
            "entries",
            &entries,
            "name",
            name,
        ]);
        path
    }

    /// What `bpftool -j link show` says of the link pinned as `pin`
    /// (`cgroup_egress`, ...) in this env's pin directory.
    pub fn pinned_link(&self, pin: &str) -> String {
        let path = self.pin_dir.join("links").join(pin);
        sh(&[
            "bpftool",
            "-j",
            "link",
            "show",
            "pinned",
            path.to_str().expect("utf-8"),
        ])
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
        let v = ip_json(ns, &["link", "show", dev]);
        v[0]["ifindex"].as_u64().expect("ifindex") as u32
    }

    /// The interface's own counters: (rx bytes, rx packets, tx bytes, tx packets).
    pub fn link_stats(ns: &Netns, dev: &str) -> [u64; 4] {
        let v = ip_json(ns, &["-s", "link", "show", dev]);
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
