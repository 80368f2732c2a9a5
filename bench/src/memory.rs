//! The real agent's peak resident set while it flushes N live keys every
//! interval and serves a /metrics scrape.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail};

use crate::{
    fill::Live,
    results::Memory,
    world::{Agent, Env},
};

/// `key=value` of a log line, as a number.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// A `VmHWM`/`VmRSS` line of /proc/PID/status, in MiB.
pub fn status_mib(pid: u32, key: &str) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

/// Scrapes the agent's /metrics from inside its namespace; returns the
/// size of the answer.
fn scrape(env: &Env) -> anyhow::Result<usize> {
    let out = env
        .pair
        .a
        .command("bash", None)?
        .args([
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/9977 && printf 'GET /metrics HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && timeout 20 cat <&3",
        ])
        .output()?;
    if !out.status.success() || !out.stdout.starts_with(b"HTTP/1") {
        bail!(
            "cannot scrape /metrics: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout.len())
}

/// Starts the agent with a 2 s interval, then `flushes` times writes
/// `keys` live addresses and waits for the agent to flush them.
pub fn run(trafmon: &Path, env: &Env, keys: u32, flushes: u32) -> anyhow::Result<Memory> {
    // A store of its own: the flush benchmark's million entities would
    // weigh on the agent's reads of the store.
    env.reconfigure("2s", "state-memory")?;
    let agent = Agent::start(trafmon, env)?;
    let pid = agent.child.id();
    // Loading the programs parses the kernel's BTF once (aya's loader
    // always does): a peak before any key exists. It is reported on its
    // own, and the peak with live keys is measured from here on (writing
    // 5 to clear_refs resets VmHWM to the current resident set).
    let startup_peak_mib = status_mib(pid, "VmHWM:")?;
    let startup_rss_mib = status_mib(pid, "VmRSS:")?;
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .context("cannot reset the agent's peak resident set")?;
    let live = Live::open(&env.pins)?;
    let mut agent_flush_ms = Vec::new();
    for _ in 0..flushes {
        live.fill_ips(live.active()?, keys)?;
        // The next flush that carries them (a flush may already be under
        // way with fewer).
        loop {
            let line = agent.wait_for(" flushed ", Duration::from_secs(60))?;
            if field(&line, "entities").unwrap_or(0.0) >= f64::from(keys) {
                agent_flush_ms.push(field(&line, "us").unwrap_or(f64::NAN) / 1000.0);
                break;
            }
        }
    }
    let before_scrape = status_mib(pid, "VmHWM:")?;
    let bytes = scrape(env)?;
    eprintln!("trafbench: /metrics answered with {bytes} bytes");
    let memory = Memory {
        startup_peak_mib,
        startup_rss_mib,
        peak_before_scrape_mib: before_scrape,
        keys,
        flushes,
        peak_rss_mib: status_mib(pid, "VmHWM:")?,
        rss_mib: status_mib(pid, "VmRSS:")?,
        agent_flush_ms,
    };
    agent.stop()?;
    Ok(memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_fields() {
        let line = "2026-11-22T10:00:00Z DEBUG trafmon::agent: flushed seq=3 entities=100001 us=41234 phases=Phases { flip_us: 5 }";
        assert_eq!(field(line, "entities"), Some(100_001.0));
        assert_eq!(field(line, "us"), Some(41_234.0));
        assert_eq!(field(line, "seq"), Some(3.0));
        assert_eq!(field(line, "flip_us"), None);
    }
}
