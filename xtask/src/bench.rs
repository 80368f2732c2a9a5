//! `cargo xtask bench`: release builds, the tools the benchmarks compare
//! against, then `trafbench` (as root), which writes BENCHMARKS.md and
//! benchmarks.json.

use std::process::Command;

use anyhow::bail;

use crate::{
    build,
    util::{is_root, root, run},
};

/// Benchmark options.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Small sizes and short runs (CI): checks that every benchmark still
    /// runs, without judging speed; writes into target/bench-quick/.
    #[arg(long)]
    pub quick: bool,
    /// Only these benchmarks (comma-separated: packet, throughput, flush,
    /// commit, memory, report); writes into target/bench-only/, so that
    /// BENCHMARKS.md stays a whole run.
    #[arg(long, value_name = "NAMES")]
    pub only: Option<String>,
}

/// Debian packages that provide the tools the benchmarks compare against
/// or measure with.
const TOOLS: [(&str, &str); 5] = [
    // Profiles where the time of a missed target goes.
    ("perf", "linux-perf"),
    ("iptables", "iptables"),
    ("iptables-legacy", "iptables"),
    ("nft", "nftables"),
    ("ip", "iproute2"),
];

/// Builds everything in release mode and runs every benchmark.
pub fn bench(o: &Options) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the benchmarks load eBPF programs and need root: run `sudo -E cargo xtask bench`");
    }
    crate::test::install(&TOOLS)?;
    let trafmon = build::build(&build::Options { release: true })?;
    let linker = crate::setup::setup()?;
    run(build::cargo(&linker)?.args([
        "build",
        "--release",
        "--package",
        "integration-tests",
        "--bin",
        "trafgen",
        "--package",
        "trafmon-bench",
        "--bin",
        "trafbench",
    ]))?;
    let target = root().join("target").join("release");
    let out = if o.quick {
        root().join("target").join("bench-quick")
    } else if o.only.is_some() {
        root().join("target").join("bench-only")
    } else {
        root()
    };
    run(Command::new(target.join("trafbench"))
        .arg("--trafmon")
        .arg(trafmon)
        .arg("--trafgen")
        .arg(target.join("trafgen"))
        .arg("--out")
        .arg(out)
        .args(o.quick.then_some("--quick"))
        .args(o.only.iter().flat_map(|names| ["--only", names])))
}
