//! `trafmon generate`: shell completions and man pages, made from the same
//! clap definitions as the parser (clap_complete, clap_mangen), so that
//! they cannot drift from the options the binary takes.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use clap::{CommandFactory as _, Subcommand};
use clap_complete::Shell;

use crate::cli::Cli;

/// Arguments of `trafmon generate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to make.
    #[command(subcommand)]
    pub what: What,
}

/// What `trafmon generate` makes.
#[derive(Debug, Subcommand)]
pub enum What {
    /// A completion script for SHELL, on standard output (for example
    /// `trafmon generate completions bash >
    /// /usr/share/bash-completion/completions/trafmon`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Man pages (`trafmon.1`, `trafmon-report.1`, ...) written into DIR
    /// (for example `/usr/local/share/man/man1`).
    Man {
        /// An existing directory.
        dir: PathBuf,
    },
}

/// Errors of `trafmon generate`.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A page could not be written.
    #[error("cannot write {path}")]
    Page {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The script or the list of pages could not be written.
    #[error("cannot write to standard output")]
    Output(#[source] std::io::Error),
}

/// Runs `trafmon generate`: prints the script, or writes the pages and
/// prints their paths.
pub fn run(args: &Args, out: &mut impl Write) -> Result<(), GenerateError> {
    match &args.what {
        What::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "trafmon", &mut script);
            out.write_all(&script)
                .and_then(|()| out.flush())
                .map_err(GenerateError::Output)
        }
        What::Man { dir } => {
            for path in man_pages(dir)? {
                writeln!(out, "{}", path.display()).map_err(GenerateError::Output)?;
            }
            out.flush().map_err(GenerateError::Output)
        }
    }
}

/// Writes a page for `trafmon` and for each of its visible subcommands,
/// at every depth, into `dir`; the files written. The same walk as
/// `clap_mangen::generate_to`, written out because that returns a bare
/// I/O error that does not name the page it failed on, and no list.
fn man_pages(dir: &Path) -> Result<Vec<PathBuf>, GenerateError> {
    // `help` is clap's, and its page would only say what `--help` says.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pending = vec![cmd];
    let mut written = Vec::new();
    while let Some(cmd) = pending.pop() {
        pending.extend(cmd.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
        let man = clap_mangen::Man::new(cmd);
        let path = dir.join(man.get_filename());
        let mut page = Vec::new();
        man.render(&mut page)
            .and_then(|()| std::fs::write(&path, page))
            .map_err(|source| GenerateError::Page {
                path: path.clone(),
                source,
            })?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(what: What) -> String {
        let mut out = Vec::new();
        run(&Args { what }, &mut out).expect("generate");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn bash_completions_offer_the_subcommands_and_their_options() {
        let script = generate(What::Completions { shell: Shell::Bash });
        assert!(script.contains("complete -F _trafmon"), "{script}");
        for word in [
            "report",
            "quota",
            "uninstall",
            "--monthly",
            "--since",
            "--pattern",
        ] {
            assert!(script.contains(word), "{word} missing from the script");
        }
    }

    #[test]
    fn man_pages_cover_every_subcommand_with_its_options() {
        let dir = std::env::temp_dir().join(format!("trafmon-man-{}", std::process::id()));
        std::fs::create_dir(&dir).expect("mkdir");
        let listed = generate(What::Man { dir: dir.clone() });
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let report = std::fs::read_to_string(dir.join("trafmon-report.1")).expect("report page");
        std::fs::remove_dir_all(&dir).expect("rm");
        for page in [
            "trafmon.1",
            "trafmon-agent.1",
            "trafmon-report.1",
            "trafmon-quota.1",
            "trafmon-generate-man.1",
        ] {
            assert!(files.iter().any(|f| f == page), "{page} not in {files:?}");
        }
        assert!(!files.iter().any(|f| f.contains("help")), "{files:?}");
        assert_eq!(listed.lines().count(), files.len(), "{listed}");
        assert!(
            report.starts_with(".ie \\n(.g .ds Aq"),
            "not roff: {report}"
        );
        assert!(report.contains("\\-\\-monthly"), "{report}");
    }

    /// A writer that is always full.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::StorageFull.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_output_is_named() {
        let what = What::Completions { shell: Shell::Zsh };
        let e = run(&Args { what }, &mut Full).unwrap_err();
        assert_eq!(
            crate::error_chain(&e),
            "cannot write to standard output: no storage space"
        );
    }

    #[test]
    fn a_missing_directory_is_named() {
        let dir = PathBuf::from("/nonexistent/trafmon-man");
        let e = run(
            &Args {
                what: What::Man { dir },
            },
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(
            crate::error_chain(&e),
            "cannot write /nonexistent/trafmon-man/trafmon.1: No such file or directory (os error 2)"
        );
    }
}
