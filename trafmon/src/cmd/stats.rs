//! `trafmon stats`: every counter by name, in the form proxy panels parse
//! (`user>>>alice>>>traffic>>>uplink`), with "since my last reset"
//! semantics that never touch the history: `--reset` only moves a
//! per-caller baseline, kept in `<state_dir>/baselines/<NAME>.json`.

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use nix::fcntl::{Flock, FlockArg};

use super::{CmdError, open_store};
use crate::{
    config::{Config, plain_name},
    store::{Kind, Total},
};

/// `trafmon stats` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only counters whose name contains this.
    #[arg(long, value_name = "P")]
    pattern: Option<String>,
    /// Show the traffic since this caller's last reset, then reset its
    /// baseline (history is never changed).
    #[arg(long)]
    reset: bool,
    /// The caller whose baseline to use (letters, digits, `.`, `_`, `-`).
    #[arg(long = "as", value_name = "NAME", default_value = "default")]
    caller: String,
    /// JSON output: {"stat": [{"name": ..., "value": ...}]}.
    #[arg(long)]
    json: bool,
}

/// Counter names and values from stored totals. Uplink is what the entity
/// sent (tx), downlink what it received (rx).
pub fn counters(totals: &[Total]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for t in totals {
        let prefix = match t.entity.kind {
            Kind::Uid => "user",
            Kind::Ip => "ip",
            Kind::Iface => "interface",
            Kind::Group => "group",
            Kind::Overflow => "overflow",
        };
        let name = if t.entity.kind == Kind::Uid {
            &t.label
        } else {
            &t.entity.key
        };
        let base = format!("{prefix}>>>{name}>>>traffic>>>");
        *out.entry(format!("{base}uplink")).or_insert(0) += t.counters.tx_bytes;
        *out.entry(format!("{base}downlink")).or_insert(0) += t.counters.rx_bytes;
    }
    out
}

fn baseline_path(config: &Config, caller: &str) -> Result<PathBuf, CmdError> {
    if !plain_name(caller) || caller.starts_with('.') {
        return Err(CmdError::Usage(format!(
            "--as {caller}: a caller name is letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(config
        .state_dir
        .join("baselines")
        .join(format!("{caller}.json")))
}

fn read_baseline(path: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{}: not a baseline file ({e}); remove it to start over",
                path.display()
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(anyhow::anyhow!(
            "{}: cannot read the baseline: {e}",
            path.display()
        )),
    }
}

/// Writes atomically and durably ([`crate::durable`]), so that a crash or
/// a power loss leaves the old baseline or the new one, never an empty
/// file.
fn write_baseline(path: &Path, values: &BTreeMap<String, u64>) -> anyhow::Result<()> {
    crate::durable::write(path, &serde_json::to_vec_pretty(values)?)
        .map_err(|e| anyhow::anyhow!("{}: cannot write the baseline: {e}", path.display()))
}

/// Takes the caller's lock (`<NAME>.lock` beside its baseline), waiting
/// for another `--reset` of the same caller to finish: two at once would
/// both show the traffic since the old baseline, and it would be billed
/// twice.
fn lock_caller(path: &Path) -> anyhow::Result<Flock<fs::File>> {
    let fail = |e: io::Error| anyhow::anyhow!("{}: cannot lock the baseline: {e}", path.display());
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(fail)?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("lock"))
        .map_err(fail)?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| fail(errno.into()))
}

/// Runs `trafmon stats`.
pub fn run(args: &Args, config: &Config) -> anyhow::Result<()> {
    let path = baseline_path(config, &args.caller)?;
    let store = open_store(&config.store_path())?;
    // Held until the new baseline is written; the totals are read under
    // it, so that a baseline never moves backwards.
    let _lock = if args.reset {
        Some(lock_caller(&path)?)
    } else {
        None
    };
    let now = counters(&store.totals().map_err(CmdError::from)?);
    let mut baseline = read_baseline(&path)?;
    let matches = |name: &str| args.pattern.as_deref().is_none_or(|p| name.contains(p));
    let shown: Vec<(&String, u64)> = now
        .iter()
        .filter(|(name, _)| matches(name))
        .map(|(name, v)| {
            (
                name,
                v.saturating_sub(baseline.get(name).copied().unwrap_or(0)),
            )
        })
        .collect();
    let mut out = io::stdout().lock();
    if args.json {
        let stat: Vec<_> = shown
            .iter()
            .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
            .collect();
        serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "stat": stat }))?;
        writeln!(out)?;
    } else {
        for (name, value) in &shown {
            writeln!(out, "{name}\t{value}")?;
        }
    }
    out.flush()?;
    if args.reset {
        for (name, value) in now.iter().filter(|(name, _)| matches(name)) {
            baseline.insert(name.clone(), *value);
        }
        write_baseline(&path, &baseline)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use trafmon_common::Counters;

    use super::*;
    use crate::store::Entity;

    #[test]
    fn names_follow_the_proxy_convention() {
        let t = |kind, key: &str, label: &str, rx, tx| Total {
            entity: Entity {
                kind,
                key: key.into(),
            },
            label: label.into(),
            counters: Counters {
                rx_bytes: rx,
                rx_packets: 1,
                tx_bytes: tx,
                tx_packets: 1,
            },
        };
        let c = counters(&[
            t(Kind::Uid, "1000", "alice", 10, 20),
            t(Kind::Ip, "192.0.2.1", "192.0.2.1", 30, 40),
            t(Kind::Iface, "eth0", "eth0", 50, 60),
        ]);
        assert_eq!(c["user>>>alice>>>traffic>>>uplink"], 20);
        assert_eq!(c["user>>>alice>>>traffic>>>downlink"], 10);
        assert_eq!(c["ip>>>192.0.2.1>>>traffic>>>uplink"], 40);
        assert_eq!(c["interface>>>eth0>>>traffic>>>downlink"], 50);
        assert_eq!(c.len(), 6);
    }

    #[test]
    fn caller_names_cannot_escape_the_directory() {
        let config = Config::default();
        assert!(baseline_path(&config, "panel-1").is_ok());
        assert!(baseline_path(&config, "../x").is_err());
        assert!(baseline_path(&config, ".hidden").is_err());
        assert!(baseline_path(&config, "").is_err());
    }
}
