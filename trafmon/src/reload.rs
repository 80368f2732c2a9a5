//! Reading the configuration again on SIGHUP (`systemctl reload`), as
//! vnstatd does. A new configuration is checked in full before the agent
//! lets go of anything; the agent then flushes and serves anew on it in
//! the same process, the way a restart would (programs handed to the
//! pinned links in one step, new map sizes, quotas, metrics), while its
//! pid file, its locks and its store stay open. What a running agent
//! cannot take over is refused with one line, and the agent goes on with
//! the configuration it had: a bad file never stops it and never falls
//! back to the defaults.

use std::path::{Path, PathBuf};

use crate::{
    config::{Config, ConfigError},
    loader::{self, LoaderError},
};

/// Where the configuration is read from, at start and on every reload.
#[derive(Clone, Debug)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// Named on the command line: it must exist. Otherwise a missing file
    /// means the embedded default.
    pub explicit: bool,
}

impl Source {
    /// Reads and checks the file.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.path, self.explicit)
    }
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is unreadable or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A setting that only a start can change.
    #[error(
        "{}: {key}: changed from {old} to {new}, which only a restart of the agent applies",
        path.display()
    )]
    NeedsRestart {
        /// The file.
        path: PathBuf,
        /// The setting.
        key: &'static str,
        /// What the agent runs with.
        old: String,
        /// What the file says now.
        new: String,
    },
    /// The pinned cgroup links count another cgroup than the file says.
    #[error("{}: {source}", path.display())]
    Cgroup {
        /// The file.
        path: PathBuf,
        /// The start's own refusal.
        source: Box<LoaderError>,
    },
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// The configuration to serve on from now, or why `running` stays.
pub fn next(source: &Source, running: &Config) -> Result<Config, ReloadError> {
    let new = source.load()?;
    // The pid file, the locks and the open store belong to these places.
    let fixed = [
        ("pin_dir", shown(&running.pin_dir), shown(&new.pin_dir)),
        (
            "state_dir",
            shown(&running.state_dir),
            shown(&new.state_dir),
        ),
        (
            "store",
            shown(&running.store_path()),
            shown(&new.store_path()),
        ),
    ];
    for (key, old, now) in fixed {
        if old != now {
            return Err(ReloadError::NeedsRestart {
                path: source.path.clone(),
                key,
                old,
                new: now,
            });
        }
    }
    // The same rule as at start, checked while the agent still serves.
    loader::check_cgroup(&new).map_err(|e| ReloadError::Cgroup {
        path: source.path.clone(),
        source: Box::new(e),
    })?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn source(dir: &Path, text: &str) -> Source {
        let path = dir.join("trafmon.toml");
        fs::write(&path, text).expect("write");
        Source {
            path,
            explicit: true,
        }
    }

    #[test]
    fn a_bad_file_or_a_moved_directory_is_refused_with_its_place() {
        let dir = std::env::temp_dir().join(format!("trafmon-reload-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("tmp");
        let running = Config::default();
        let bad = source(&dir, "interval = \"10s\"\nintervall = 3\n");
        let e = next(&bad, &running).expect_err("unknown key");
        assert!(e.to_string().contains("trafmon.toml:2: intervall"), "{e}");
        let moved = source(&dir, "state_dir = \"/var/lib/elsewhere\"\n");
        let e = next(&moved, &running).expect_err("state_dir moved");
        assert!(
            e.to_string().ends_with(
                "state_dir: changed from /var/lib/trafmon to /var/lib/elsewhere, which only a restart of the agent applies"
            ),
            "{e}"
        );
        let store = source(&dir, "store = \"/tmp/other.db\"\n");
        let e = next(&store, &running).expect_err("store moved");
        assert!(e.to_string().contains("store: changed"), "{e}");
        fs::remove_dir_all(&dir).expect("rm tmp");
    }
}
