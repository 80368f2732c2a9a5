use std::{io::IsTerminal as _, process::ExitCode};

use anyhow::Context as _;
use clap::Parser as _;
use trafmon::{
    cli::{Cli, Command},
    config::Config,
};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if closed_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("trafmon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// True when `e` comes from writing to a closed pipe (`| head`), also
/// through the JSON writer, which wraps the I/O error in its own.
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let kind = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| {
                cause
                    .downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            });
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

fn run() -> anyhow::Result<()> {
    trafmon::memory::map_large_allocations();
    let cli = Cli::parse();
    // Colours only on a terminal: the journal, a log file or a pipe would
    // store the escape codes as text (`journalctl` shows them as `[2m`).
    let stderr = std::io::stderr();
    let colours = stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(colours)
        .with_writer(std::io::stderr)
        .init();
    let (path, explicit) = cli.config_path();
    let config = || Config::load(&path, explicit);
    match cli.command {
        Command::Agent { print } => {
            let config = config()?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the runtime")?;
            let source = trafmon::reload::Source { path, explicit };
            rt.block_on(trafmon::agent::run(
                source,
                config,
                trafmon::agent::Options { print },
            ))?;
        }
        Command::Report(args) => trafmon::cmd::report::run(&args, &config()?)?,
        Command::Stats(args) => trafmon::cmd::stats::run(&args, &config()?)?,
        Command::Status(args) => trafmon::cmd::status::run(&args, &config()?)?,
        Command::Top(args) => trafmon::cmd::top::run(&args, &config()?)?,
        Command::Quota(args) => trafmon::cmd::quota::run(&args, &config()?)?,
        Command::Check => trafmon::cmd::check::run(&path, explicit, &mut std::io::stdout().lock())?,
        // Packaging runs it where no configuration may exist yet.
        Command::Generate(args) => {
            trafmon::cmd::generate::run(&args, &mut std::io::stdout().lock())?;
        }
        Command::Uninstall { discard } => {
            let config = config()?;
            let done = trafmon::uninstall::run(&config, discard)?;
            let dir = config.pin_dir.display();
            match (done.pins, done.stored) {
                (0, _) => println!("nothing was installed under {dir}"),
                (n, Some(seq)) => println!(
                    "detached everything, stored the last counts (flush {seq}) in {}, and removed {n} pins under {dir}",
                    config.store_path().display()
                ),
                (n, None) => println!("detached everything and removed {n} pins under {dir}"),
            }
        }
    }
    Ok(())
}
