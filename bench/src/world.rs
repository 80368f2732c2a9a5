//! The benchmark's own world: network namespace pairs joined by a veth,
//! a cgroup, a pin directory, a state directory and an agent process. All
//! of it is removed in `Drop`, also when a benchmark fails. Traffic only
//! flows between these namespaces, on 192.0.2.0/24.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// The sender's address (in `a`) and the receiver's (in `b`).
pub const ADDR_A: &str = "192.0.2.1";
pub const ADDR_B: &str = "192.0.2.100";

/// Runs a command; its stdout, or an error with its stderr.
pub fn sh(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("cannot run {} (is it installed?)", args[0]))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    fn new(name: String) -> anyhow::Result<Self> {
        sh(&["ip", "netns", "add", &name])?;
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs a command inside this namespace.
    pub fn exec(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// `program`, to be run inside this namespace (setns in the child),
    /// and moved into `cgroup` first when given.
    pub fn command(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        cgroup: Option<&Cgroup>,
    ) -> anyhow::Result<Command> {
        self.command_as(program, cgroup, None)
    }

    /// [`Netns::command`], run as user `uid` (with no supplementary
    /// groups) when given.
    pub fn command_as(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        cgroup: Option<&Cgroup>,
        uid: Option<u32>,
    ) -> anyhow::Result<Command> {
        let netns = fs::File::open(Path::new("/run/netns").join(&self.name))
            .with_context(|| format!("cannot open netns {}", self.name))?;
        let procs = cgroup
            .map(|c| {
                fs::OpenOptions::new()
                    .write(true)
                    .open(c.path.join("cgroup.procs"))
            })
            .transpose()
            .context("cannot open cgroup.procs")?;
        let mut cmd = Command::new(program);
        // SAFETY: setns(2) and write(2) are async-signal-safe; both fds
        // are moved into the closure and outlive the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Writing "0" moves the writing process itself.
                if let Some(f) = &procs
                    && libc::write(f.as_raw_fd(), c"0".as_ptr().cast(), 1) != 1
                {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(uid) = uid
                    && (libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(uid) != 0
                        || libc::setuid(uid) != 0)
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(cmd)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A cgroup v2 directory; its processes are killed and it is removed on drop.
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let path = trafmon::mounts::cgroup2_root()?.join(name);
        fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let procs = fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|p| p.parse::<i32>().ok()) {
                // SAFETY: kill(2) of a process in the benchmark's cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("trafbench: cannot remove cgroup {}", self.path.display());
    }
}

/// Two namespaces `a` and `b` joined by a veth pair `va`–`vb`, up, with
/// [`ADDR_A`] on `va` and [`ADDR_B`] on `vb`.
pub struct Pair {
    pub va: String,
    pub a: Netns,
    pub b: Netns,
}

impl Pair {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let id = format!("{:x}{tag}", std::process::id() & 0xffff);
        let a = Netns::new(format!("tb-{id}-a"))?;
        let b = Netns::new(format!("tb-{id}-b"))?;
        let (va, vb) = (format!("tba{id}"), format!("tbb{id}"));
        sh(&[
            "ip", "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb,
            "netns", &b.name,
        ])?;
        for (ns, dev, addr) in [(&a, &va, ADDR_A), (&b, &vb, ADDR_B)] {
            ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
            ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ns.exec(&["ip", "link", "set", dev, "up"])?;
        }
        Ok(Self { va, a, b })
    }
}

/// A pair with a cgroup, pin and state directories and an agent config.
pub struct Env {
    pub config: PathBuf,
    pub pins: PathBuf,
    pub dir: PathBuf,
    pub cgroup: Cgroup,
    pub pair: Pair,
}

impl Env {
    /// `maps` sizes every map (`uid_entries`, `ip_entries`); `interval` is
    /// the agent's flush interval.
    pub fn new(tag: &str, interval: &str, entries: u32) -> anyhow::Result<Self> {
        let pair = Pair::new(tag)?;
        let name = format!("trafbench-{}", pair.a.name);
        let cgroup = Cgroup::new(&name)?;
        let pins = PathBuf::from("/sys/fs/bpf").join(&name);
        let dir = std::env::temp_dir().join(&name);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let config = dir.join("trafmon.toml");
        fs::write(
            &config,
            format!(
                "interval = \"{interval}\"\npin_dir = \"{}\"\nstate_dir = \"{}\"\ncgroup = \"{}\"\ninterfaces = [\"{}\"]\n\n[maps]\nuid_entries = {entries}\nip_entries = {entries}\n",
                pins.display(),
                dir.join("state").display(),
                cgroup.path.display(),
                pair.va,
            ),
        )
        .context("cannot write the benchmark config")?;
        Ok(Self {
            config,
            pins,
            dir,
            cgroup,
            pair,
        })
    }
}

impl Env {
    /// Changes the flush interval of the config and gives it a new, empty
    /// state directory `state` (for the next agent start).
    pub fn reconfigure(&self, interval: &str, state: &str) -> anyhow::Result<()> {
        let text = fs::read_to_string(&self.config)?;
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with("interval = ") {
                out.push_str(&format!("interval = \"{interval}\"\n"));
            } else if line.starts_with("state_dir = ") {
                out.push_str(&format!(
                    "state_dir = \"{}\"\n",
                    self.dir.join(state).display()
                ));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        fs::write(&self.config, out)?;
        Ok(())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.pins.exists() {
            let _ = trafmon::loader::uninstall(&self.pins);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// An agent process in the env's namespace `a`; killed on drop.
pub struct Agent {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Agent {
    /// Starts `trafmon agent` and waits until it counts.
    pub fn start(trafmon: &Path, env: &Env) -> anyhow::Result<Self> {
        let mut child = env
            .pair
            .a
            .command(trafmon, None)?
            .arg("--config")
            .arg(&env.config)
            .arg("agent")
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start the agent")?;
        let stderr = child.stderr.take().context("agent stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !line.contains(" DEBUG ") {
                    eprintln!("agent: {line}");
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let agent = Self { child, lines: rx };
        agent.wait_for(" counting ", Duration::from_secs(60))?;
        Ok(agent)
    }

    /// Waits for a log line containing `text`; returns it.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return Ok(line),
                Ok(line) if line.contains(" ERROR ") => bail!("agent: {line}"),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("the agent exited before it logged {text:?}")
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("the agent did not log {text:?} within {timeout:?}")
                }
            }
        }
    }

    /// Stops it with SIGTERM (it flushes first); the pinned programs stay.
    pub fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the agent exited with {status}");
        }
        Ok(())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
