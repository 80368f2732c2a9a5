//! Command line: clap derive, one variant per subcommand.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::paths::DEFAULT_CONFIG;

/// Per-user, per-IP and per-interface traffic accounting with eBPF.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file (default: /etc/trafmon/trafmon.toml; when that is
    /// absent, the embedded defaults).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and attach the programs, count and flush into the store until
    /// SIGINT or SIGTERM (then flush once more); SIGHUP reloads the
    /// configuration.
    Agent {
        /// Print the stored totals after every flush.
        #[arg(long)]
        print: bool,
    },
    /// Detach every program, store what the maps counted since the last
    /// flush, and remove every pin (stop the agent first).
    Uninstall {
        /// Drop the maps' counts instead of storing them.
        #[arg(long)]
        discard: bool,
    },
    /// Per-user (or per-IP, interface, group) totals from the store.
    Report(crate::cmd::report::Args),
    /// Counters by name (`user>>>NAME>>>traffic>>>uplink`), with per-caller
    /// resets that never change the history.
    Stats(crate::cmd::stats::Args),
    /// What is attached where, map fill, overflow, last flush, the store.
    Status(crate::cmd::status::Args),
    /// Live per-user, per-IP and per-interface rates, every second.
    Top(crate::cmd::top::Args),
    /// Every quota: usage, percent of the limit, projection, state.
    Quota(crate::cmd::quota::Args),
    /// Check the configuration and what the agent would meet with it (the
    /// store, bpffs and pinned maps, the cgroup, the metrics address, the
    /// interfaces), without starting it or changing anything.
    Check,
    /// Shell completions or man pages (reads no configuration).
    Generate(crate::cmd::generate::Args),
}

impl Cli {
    /// The configuration path and whether the user named it.
    pub fn config_path(&self) -> (PathBuf, bool) {
        match &self.config {
            Some(p) => (p.clone(), true),
            None => (DEFAULT_CONFIG.into(), false),
        }
    }
}
