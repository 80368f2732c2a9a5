//! `cargo xtask test`: unit tests, then the integration tests against the
//! real kernel (root), after installing the tools they compare against.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{
    build,
    util::{is_root, on_path, run},
};

/// Test options.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Only tests whose name contains this.
    pub filter: Option<String>,
}

/// Debian packages that provide the tools the integration tests need.
const TOOLS: [(&str, &str); 15] = [
    ("iptables", "iptables"),
    ("ip6tables", "iptables"),
    ("bpftool", "bpftool"),
    ("ip", "iproute2"),
    ("tc", "iproute2"),
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    ("systemd-analyze", "systemd"),
    // The unit's ExecReload.
    ("kill", "procps"),
    ("podman", "podman"),
    ("runc", "runc"),
    ("musl-gcc", "musl-tools"),
    // The store's backup recipe.
    ("sqlite3", "sqlite3"),
    // GRO on, TSO and GSO off on the test's veth pair.
    ("ethtool", "ethtool"),
    // Renders the man pages `trafmon generate man` writes.
    ("groff", "groff-base"),
];

/// Installs the missing `(tool, Debian package)` pairs with apt-get.
pub fn install(tools: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|(tool, _)| {
            !on_path(tool) && !std::path::Path::new("/usr/sbin").join(tool).exists()
        })
        .map(|(_, package)| *package)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    if !on_path("apt-get") {
        bail!(
            "missing tools ({}) and no apt-get to install them",
            missing.join(", ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("cannot install the missing tools")
}

/// Runs every test; fails (never skips) without root or a tool.
pub fn test(o: &Options) -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "the integration tests load eBPF programs and need root: run `sudo -E cargo xtask test`"
        );
    }
    install(&TOOLS)?;
    let binary = build::build(&build::Options { release: false })?;
    let linker = crate::setup::setup()?;
    let image = crate::container::container()?;

    let mut unit = build::cargo(&linker)?;
    unit.args([
        "test",
        "--package",
        "trafmon",
        "--package",
        "trafmon-common",
    ])
    .args(["--package", "xtask", "--package", "trafmon-bench"]);
    if let Some(f) = &o.filter {
        unit.arg("--").arg(f);
    }
    run(&mut unit)?;

    let mut integration = build::cargo(&linker)?;
    integration
        .args(["test", "--package", "integration-tests", "--"])
        .arg("--test-threads=1")
        .env("TRAFMON_BIN", &binary)
        .env("TRAFMON_IMAGE", image);
    if let Some(f) = &o.filter {
        integration.arg(f);
    }
    run(&mut integration)
}
