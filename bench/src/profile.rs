//! Where the time of a missed target goes: `perf record` around the runs
//! that measure it, and the hottest symbols of what it sampled. perf does
//! the sampling and resolves the kernel's symbols, the JIT-compiled eBPF
//! programs (from the kernel's BPF kallsyms) and our own binaries; this
//! module only starts it, gates it to the runs that matter through its
//! control FIFO, and reads its report.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{ErrorKind, Read as _, Write as _},
    os::unix::{fs::OpenOptionsExt as _, process::ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{
    sys::{signal, stat::Mode},
    unistd::{Pid, mkfifo},
};
use serde::Serialize;

/// How many symbols a profile keeps.
const TOP: usize = 12;
/// How long perf may take to start, to acknowledge a command or to write
/// its data once stopped.
const PATIENCE: Duration = Duration::from_secs(30);

/// What perf samples.
pub enum Scope {
    /// Every CPU (traffic runs in many processes and in softirqs).
    System,
    /// This process only (the flush runs here).
    Myself,
}

/// A running `perf record`, started with its events disabled.
pub struct Recorder {
    child: Child,
    ctl: File,
    ack: File,
    dir: PathBuf,
    hz: u32,
}

/// A symbol and its share of the samples.
#[derive(Clone, Debug, Serialize)]
pub struct Symbol {
    /// `kernel`, `kernel: BPF hooks, helpers and maps`, `eBPF program`,
    /// or the binary or library's file name.
    pub place: String,
    pub name: String,
    pub samples: u64,
    pub percent: f64,
}

/// A profile: what ran while perf counted, its samples by place and its
/// hottest symbols.
#[derive(Debug, Serialize)]
pub struct Profile {
    pub what: String,
    /// Only samples of processes with this name count (with the softirqs
    /// that ran in them).
    pub comm: Option<String>,
    pub hz: u32,
    /// The event perf sampled on: `cycles`, or `cpu-clock` (a timer) where
    /// the CPU's counters are out of reach, as in many VMs.
    pub event: String,
    pub samples: u64,
    pub places: Vec<(String, f64)>,
    pub symbols: Vec<Symbol>,
    /// The hottest symbols of the eBPF programs and the BPF code of the
    /// kernel.
    pub bpf_symbols: Vec<Symbol>,
}

impl Recorder {
    /// Starts `perf record` at `hz` samples per second and CPU, counting
    /// nothing until [`Recorder::during`].
    pub fn start(scope: Scope, hz: u32) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("trafbench-perf-{}", std::process::id()));
        // A directory left by a killed earlier run of this PID.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for fifo in ["ctl", "ack"] {
            mkfifo(&dir.join(fifo), Mode::S_IRUSR | Mode::S_IWUSR)
                .with_context(|| format!("cannot make a FIFO in {}", dir.display()))?;
        }
        let log = File::create(dir.join("perf.log"))?;
        let mut cmd = Command::new("perf");
        cmd.arg("record")
            .args(["-F", &hz.to_string(), "-D", "-1", "-o"])
            .arg(dir.join("perf.data"))
            .arg("--control")
            .arg(format!(
                "fifo:{},{}",
                dir.join("ctl").display(),
                dir.join("ack").display()
            ));
        match scope {
            Scope::System => cmd.arg("-a"),
            Scope::Myself => cmd.args(["-p", &std::process::id().to_string()]),
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot run perf (Debian package linux-perf)")?;
        // Non-blocking both: a FIFO with no reader cannot be opened for
        // writing (ENXIO) until perf has opened it, and a perf that died
        // must not leave us blocked.
        let ack = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(dir.join("ack"))?;
        let since = Instant::now();
        let ctl = loop {
            match OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(dir.join("ctl"))
            {
                Ok(f) => break f,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                    wait_a_little(&mut child, &dir, since)?;
                }
                Err(e) => return Err(e).context("cannot open perf's control FIFO"),
            }
        };
        Ok(Self {
            child,
            ctl,
            ack,
            dir,
            hz,
        })
    }

    /// Sends `command` and waits until perf has carried it out.
    fn command(&mut self, command: &str) -> anyhow::Result<()> {
        self.ctl
            .write_all(format!("{command}\n").as_bytes())
            .with_context(|| format!("cannot send `{command}` to perf"))?;
        let since = Instant::now();
        let mut got = Vec::new();
        // perf 6.1 writes "ack\n" and a NUL.
        while !got.windows(4).any(|w| w == b"ack\n") {
            let mut buf = [0u8; 16];
            match self.ack.read(&mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                // No data yet (or perf has not opened its end yet).
                Ok(_) => wait_a_little(&mut self.child, &self.dir, since)?,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    wait_a_little(&mut self.child, &self.dir, since)?
                }
                Err(e) => return Err(e).context("cannot read perf's acknowledgement"),
            }
        }
        Ok(())
    }

    /// Runs `f` with sampling on.
    pub fn during<T>(&mut self, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        self.command("enable")?;
        let out = f();
        self.command("disable")?;
        out
    }

    /// Stops perf and reads what it sampled, only of processes named
    /// `comm` if given.
    pub fn finish(mut self, what: &str, comm: Option<&str>) -> anyhow::Result<Profile> {
        signal::kill(Pid::from_raw(self.child.id() as i32), signal::SIGINT)?;
        let since = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if since.elapsed() > PATIENCE {
                let _ = self.child.kill();
                bail!("perf record did not stop within {PATIENCE:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // perf ends by SIGINT (re-raised, or as exit code 128 + 2) once it
        // has written its data.
        let stopped = status.success()
            || status.code() == Some(128 + libc::SIGINT)
            || status.signal() == Some(libc::SIGINT);
        if !stopped {
            bail!("perf record failed ({status}): {}", log(&self.dir));
        }
        let mut report = Command::new("perf");
        report
            .args(["report", "--stdio", "--no-children", "--sort", "dso,sym"])
            .args(["-n", "-q", "-t", "\t", "-i"])
            .arg(self.dir.join("perf.data"));
        if let Some(c) = comm {
            report.args(["--comms", c, "--percentage", "relative"]);
        }
        let out = report.stderr(Stdio::null()).output()?;
        if !out.status.success() {
            bail!("perf report failed ({})", out.status);
        }
        let rows = parse(&String::from_utf8_lossy(&out.stdout))?;
        if rows.is_empty() {
            bail!("perf sampled nothing during {what}");
        }
        let events = Command::new("perf")
            .args(["evlist", "-i"])
            .arg(self.dir.join("perf.data"))
            .stderr(Stdio::null())
            .output()?;
        let event = String::from_utf8_lossy(&events.stdout)
            .lines()
            .next()
            .and_then(|l| l.split(':').next())
            .unwrap_or("unknown")
            .to_owned();
        let mut profile = summarise(what, comm, self.hz, rows);
        profile.event = event;
        Ok(profile)
    }
}

/// Fails if perf has exited or `since` is too long ago; else sleeps a
/// moment.
fn wait_a_little(child: &mut Child, dir: &Path, since: Instant) -> anyhow::Result<()> {
    if let Some(status) = child.try_wait()? {
        bail!("perf record exited ({status}): {}", log(dir));
    }
    if since.elapsed() > PATIENCE {
        bail!(
            "perf record did not answer within {PATIENCE:?}: {}",
            log(dir)
        );
    }
    std::thread::sleep(Duration::from_millis(2));
    Ok(())
}

/// What perf said on its standard error, on one line.
fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("perf.log"))
        .unwrap_or_default()
        .trim()
        .replace('\n', "; ")
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kernel functions of the BPF machinery that trafmon's programs use:
/// the hooks' dispatch, the helpers and the hash map code. By name,
/// because a flat profile has nothing else to tell them by; anything
/// else in the kernel stays `kernel`.
const BPF_RUNTIME: [&str; 10] = [
    "bpf_",
    "__bpf_",
    "htab_",
    "__htab_",
    "lookup_nulls_elem_raw",
    "generic_map_",
    "array_map_",
    "__cgroup_bpf_",
    "tcx_",
    "pcpu_freelist_",
];
const BPF_RUNTIME_PLACE: &str = "kernel: BPF hooks, helpers and maps";
const BPF_PROGRAM_PLACE: &str = "eBPF program";
/// How many symbols of the BPF part a profile keeps besides its hottest.
const TOP_BPF: usize = 8;

/// Where a symbol of perf's report runs, by its DSO and name.
fn place(dso: &str, sym: &str) -> String {
    if dso.starts_with("[kernel") {
        if BPF_RUNTIME.iter().any(|p| sym.starts_with(p)) {
            BPF_RUNTIME_PLACE.into()
        } else {
            "kernel".into()
        }
    } else if dso.starts_with("bpf_prog_") {
        BPF_PROGRAM_PLACE.into()
    } else {
        dso.rsplit('/').next().unwrap_or(dso).to_owned()
    }
}

/// (place, symbol, samples) per line of `perf report -n -t '\t'`:
/// percent, samples, DSO, then `[k] symbol` or `[.] symbol`.
fn parse(text: &str) -> anyhow::Result<Vec<(String, String, u64)>> {
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').map(str::trim).collect();
        let [_, samples, dso, sym] = f[..] else {
            bail!("unexpected line from perf report: {line:?}");
        };
        let samples = samples
            .parse()
            .with_context(|| format!("unexpected sample count from perf report: {line:?}"))?;
        let name = sym
            .strip_prefix("[k] ")
            .or_else(|| sym.strip_prefix("[.] "))
            .unwrap_or(sym);
        rows.push((place(dso, name), name.to_owned(), samples));
    }
    Ok(rows)
}

fn summarise(what: &str, comm: Option<&str>, hz: u32, rows: Vec<(String, String, u64)>) -> Profile {
    let samples: u64 = rows.iter().map(|r| r.2).sum();
    let percent = |n: u64| n as f64 * 100.0 / samples as f64;
    let mut by_place: BTreeMap<&str, u64> = BTreeMap::new();
    for (p, _, n) in &rows {
        *by_place.entry(p).or_default() += n;
    }
    let mut places: Vec<(String, f64)> = by_place
        .into_iter()
        .map(|(p, n)| (p.to_owned(), percent(n)))
        .collect();
    places.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut symbols: Vec<Symbol> = rows
        .iter()
        .map(|(place, name, n)| Symbol {
            place: place.clone(),
            name: name.clone(),
            samples: *n,
            percent: percent(*n),
        })
        .collect();
    symbols.sort_by(|a, b| b.samples.cmp(&a.samples).then_with(|| a.name.cmp(&b.name)));
    let bpf_symbols = symbols
        .iter()
        .filter(|s| s.place == BPF_RUNTIME_PLACE || s.place == BPF_PROGRAM_PLACE)
        .take(TOP_BPF)
        .cloned()
        .collect();
    symbols.truncate(TOP);
    Profile {
        what: what.to_owned(),
        comm: comm.map(str::to_owned),
        hz,
        event: String::new(),
        samples,
        places,
        symbols,
        bpf_symbols,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_report_lines_become_places_and_shares() {
        let text = " 60.00% \t 6          \t[kernel.kallsyms]\t[k] __htab_map_lookup_and_delete_batch\n\
                    \n 20.00% \t 2 \tbpf_prog_6deef7357e7b4530_cgroup_ingress\t[k] bpf_prog_6deef7357e7b4530_cgroup_ingress\n\
                    10.00%\t1\t/work/target/release/trafbench\t[.] sqlite3VdbeExec\n\
                    10.00%\t1\t[kernel.kallsyms]\t[k] memcpy\n";
        let p = summarise("flush", None, 999, parse(text).unwrap());
        assert_eq!(p.samples, 10);
        assert_eq!(
            p.places,
            vec![
                ("kernel: BPF hooks, helpers and maps".to_owned(), 60.0),
                ("eBPF program".to_owned(), 20.0),
                ("kernel".to_owned(), 10.0),
                ("trafbench".to_owned(), 10.0)
            ]
        );
        let top: Vec<(&str, f64)> = p
            .symbols
            .iter()
            .map(|s| (s.name.as_str(), s.percent))
            .collect();
        assert_eq!(top[0], ("__htab_map_lookup_and_delete_batch", 60.0));
        assert_eq!(top[1], ("bpf_prog_6deef7357e7b4530_cgroup_ingress", 20.0));
        // Equal counts in name order.
        assert_eq!(top[2], ("memcpy", 10.0));
        assert_eq!(top[3], ("sqlite3VdbeExec", 10.0));
        let bpf: Vec<&str> = p.bpf_symbols.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            bpf,
            [
                "__htab_map_lookup_and_delete_batch",
                "bpf_prog_6deef7357e7b4530_cgroup_ingress"
            ]
        );
    }

    #[test]
    fn a_line_perf_did_not_write_is_an_error() {
        assert!(parse("12.5% something else\n").is_err());
    }
}
