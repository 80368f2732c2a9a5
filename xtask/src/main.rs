//! `cargo xtask`: everything a newcomer would otherwise do by hand.

mod bench;
mod build;
mod container;
mod run;
mod setup;
mod test;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// trafmon's developer tasks.
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what the eBPF build needs: rust-src for the nightly toolchain
    /// and bpf-linker built against that toolchain's own LLVM (into .tools/).
    Setup,
    /// Set up, then build the agent with its embedded eBPF object.
    Build(build::Options),
    /// Build, then start the agent (as root) on the embedded default
    /// configuration, or on --config PATH.
    Run(run::Options),
    /// Build, install the tools the tests compare against, then run the unit
    /// and integration tests (needs root).
    Test(test::Options),
    /// Build in release mode, then run every benchmark (needs root) and
    /// write BENCHMARKS.md and benchmarks.json.
    Bench(bench::Options),
    /// Build the agent's container image (static musl binary, FROM scratch)
    /// with podman, as localhost/trafmon:dev.
    Container,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::setup().map(drop),
        Command::Build(o) => build::build(&o).map(drop),
        Command::Run(o) => run::run(&o),
        Command::Test(o) => test::test(&o),
        Command::Bench(o) => bench::bench(&o),
        Command::Container => container::container().map(drop),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
