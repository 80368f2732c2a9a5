//! `cargo xtask run`.

use std::{os::unix::process::CommandExt as _, path::PathBuf, process::Command};

use anyhow::bail;

use crate::{build, util::is_root};

/// Run options.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Build in release mode.
    #[arg(long)]
    pub release: bool,
    /// Configuration file (default: the embedded default configuration).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Builds and replaces this process with the agent.
pub fn run(o: &Options) -> anyhow::Result<()> {
    let binary = build::build(&build::Options { release: o.release })?;
    if !is_root() {
        bail!("the agent loads eBPF programs and needs root: run `sudo -E cargo xtask run`");
    }
    let mut cmd = Command::new(binary);
    if let Some(config) = &o.config {
        cmd.arg("--config").arg(config);
    }
    cmd.args(["agent", "--print"]);
    Err(cmd.exec().into())
}
