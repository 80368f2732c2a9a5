//! Traffic for the benchmarks, from the project's own generator
//! (`trafgen udp-blast`/`udp-count`, `tcp-flood`/`tcp-recv-for`): bounded
//! in time and bytes, between the benchmark's own namespaces.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::world::{ADDR_A, ADDR_B, Cgroup, Netns, Pair};

/// Payload of the small datagrams: 18 bytes make a 60-byte Ethernet frame,
/// the smallest there is.
pub const SMALL: &str = "18";

/// The CPU that both ends of a TCP run are pinned to.
const TCP_CPU: usize = 0;

/// The most a TCP run may send.
const TCP_MAX_BYTES: &str = "68719476736";

/// A running generator process.
struct Running {
    /// Taken by [`Running::finish`].
    child: Option<Child>,
    what: String,
}

impl Running {
    fn spawn(
        trafgen: &Path,
        ns: &Netns,
        cgroup: Option<&Cgroup>,
        args: &[&str],
        listens: bool,
    ) -> anyhow::Result<Self> {
        Self::spawn_as(trafgen, ns, cgroup, None, args, listens)
    }

    /// [`Running::spawn`], as user `uid` when given.
    fn spawn_as(
        trafgen: &Path,
        ns: &Netns,
        cgroup: Option<&Cgroup>,
        uid: Option<u32>,
        args: &[&str],
        listens: bool,
    ) -> anyhow::Result<Self> {
        Self::start(ns.command_as(trafgen, cgroup, uid)?, args, listens)
    }

    /// Starts `cmd` with `args`; with `listens`, waits for its
    /// `listening` line.
    fn start(mut cmd: Command, args: &[&str], listens: bool) -> anyhow::Result<Self> {
        let mut child = cmd
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start trafgen {}", args[0]))?;
        let what = format!("trafgen {}", args.join(" "));
        if listens {
            let mut line = String::new();
            let stdout = child.stdout.as_mut().context("trafgen stdout")?;
            BufReader::new(stdout).read_line(&mut line)?;
            if line.trim() != "listening" {
                bail!("{what} did not start listening");
            }
        }
        Ok(Self {
            child: Some(child),
            what,
        })
    }

    /// The number on its last line (`sent N` / `received N`).
    fn finish(mut self) -> anyhow::Result<u64> {
        let out = self
            .child
            .take()
            .context("finished twice")?
            .wait_with_output()?;
        if !out.status.success() {
            bail!("{} failed: {}", self.what, out.status);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .last()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("{}: unexpected output {text:?}", self.what))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `cmd`, to run on CPU `cpu` only.
fn pinned(mut cmd: Command, cpu: usize) -> Command {
    // SAFETY: an all-zero cpu_set_t is the empty set, and CPU_SET only
    // sets a bit of it.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    };
    // SAFETY: sched_setaffinity(2) is a plain system call on a set made
    // before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// Runs the counting `sink` in `b`, then the `sender` in `a` (in
/// `cgroup`, if given), both on CPU `cpu` only when given; returns what
/// the sink counted.
fn one_way(
    trafgen: &Path,
    pair: &Pair,
    cgroup: Option<&Cgroup>,
    cpu: Option<usize>,
    sink: &[&str],
    sender: &[&str],
) -> anyhow::Result<u64> {
    let command = |ns: &Netns, cgroup| -> anyhow::Result<Command> {
        let cmd = ns.command_as(trafgen, cgroup, None)?;
        Ok(match cpu {
            Some(cpu) => pinned(cmd, cpu),
            None => cmd,
        })
    };
    let sink = Running::start(command(&pair.b, None)?, sink, true)?;
    let sender = Running::start(command(&pair.a, cgroup)?, sender, false)?;
    let counted = sink.finish()?;
    sender.finish()?;
    Ok(counted)
}

/// Which end of a UDP run lasts longer.
#[derive(Clone, Copy, Debug)]
pub enum Outlast {
    /// The senders: the counting window, which starts at the first
    /// datagram, is full of traffic to its end (for rates).
    Senders,
    /// The sinks: no datagram arrives at a closed socket and makes the
    /// kernel answer with ICMP (for profiles of the traffic alone).
    Sinks,
}

impl Outlast {
    /// (seconds to send, seconds to count) for a run of `window`.
    fn seconds(self, window: Duration, margin: Duration) -> (String, String) {
        match self {
            Self::Senders => (secs(window + margin), secs(window)),
            Self::Sinks => (secs(window), secs(window + margin)),
        }
    }
}

/// Small datagrams from `a` (in `cgroup`, if given) to `b` for `window`;
/// returns the datagrams per second that arrived at `b`'s socket.
pub fn udp_rate(
    trafgen: &Path,
    pair: &Pair,
    cgroup: Option<&Cgroup>,
    window: Duration,
    outlast: Outlast,
) -> anyhow::Result<f64> {
    let (send_for, count_for) = outlast.seconds(window, Duration::from_millis(700));
    let received = one_way(
        trafgen,
        pair,
        cgroup,
        None,
        &["udp-count", ADDR_B, "9000", &count_for],
        &["udp-blast", ADDR_B, "9000", SMALL, &send_for],
    )?;
    Ok(received as f64 / window.as_secs_f64())
}

/// One bulk TCP stream from `a` (in `cgroup`, if given) to `b`; returns
/// the bits per second that arrived in `window`.
pub fn tcp_rate(
    trafgen: &Path,
    pair: &Pair,
    cgroup: Option<&Cgroup>,
    window: Duration,
) -> anyhow::Result<f64> {
    let window_s = secs(window);
    // Both ends on one CPU: left to the scheduler, a stream on this VM
    // ran at about 55 or about 90 to 110 Gbit/s from one run to the next,
    // whatever was attached, and a median of a few such runs compared
    // the modes, not the variants; pinned, it ran at 71 to 73.
    let received = one_way(
        trafgen,
        pair,
        cgroup,
        Some(TCP_CPU),
        &["tcp-recv-for", ADDR_B, "9001", &window_s],
        &["tcp-flood", ADDR_B, "9001", &window_s, TCP_MAX_BYTES],
    )?;
    Ok(received as f64 * 8.0 / window.as_secs_f64())
}

/// Small datagrams both ways for `window`: `a` (in `cgroup`) sends to `b`
/// while `b` sends to a socket of `a` in `cgroup`, so that every program
/// (cgroup and tc, ingress and egress) runs; the processes in `cgroup` run
/// as `uid`. Returns the datagrams counted at both sockets.
pub fn both_ways(
    trafgen: &Path,
    pair: &Pair,
    cgroup: &Cgroup,
    uid: u32,
    window: Duration,
    outlast: Outlast,
) -> anyhow::Result<u64> {
    let (send_for, count_for) = outlast.seconds(window, Duration::from_millis(500));
    let sink_b = Running::spawn(
        trafgen,
        &pair.b,
        None,
        &["udp-count", ADDR_B, "9002", &count_for],
        true,
    )?;
    let sink_a = Running::spawn_as(
        trafgen,
        &pair.a,
        Some(cgroup),
        Some(uid),
        &["udp-count", ADDR_A, "9003", &count_for],
        true,
    )?;
    let to_b = Running::spawn_as(
        trafgen,
        &pair.a,
        Some(cgroup),
        Some(uid),
        &["udp-blast", ADDR_B, "9002", SMALL, &send_for],
        false,
    )?;
    let to_a = Running::spawn(
        trafgen,
        &pair.b,
        None,
        &["udp-blast", ADDR_A, "9003", SMALL, &send_for],
        false,
    )?;
    let got = sink_b.finish()? + sink_a.finish()?;
    to_b.finish()?;
    to_a.finish()?;
    Ok(got)
}
