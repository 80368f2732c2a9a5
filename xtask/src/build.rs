//! `cargo xtask build`.

use std::{path::PathBuf, process::Command};

use crate::{
    setup::setup,
    util::{root, run},
};

/// Build options.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Build in release mode.
    #[arg(long)]
    pub release: bool,
}

/// A cargo command with bpf-linker on PATH.
pub fn cargo(linker_bin: &std::path::Path) -> anyhow::Result<Command> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![linker_bin.to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root())
        .env("PATH", std::env::join_paths(dirs)?);
    Ok(cmd)
}

/// Sets up and builds the agent; returns the path of the binary.
pub fn build(o: &Options) -> anyhow::Result<PathBuf> {
    let bin = setup()?;
    let mut cmd = cargo(&bin)?;
    cmd.args(["build", "--package", "trafmon", "--bin", "trafmon"]);
    if o.release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    let profile = if o.release { "release" } else { "debug" };
    Ok(root().join("target").join(profile).join("trafmon"))
}
