//! One file per subcommand: arguments (clap) and the run function.

pub mod check;
pub mod generate;
pub mod quota;
pub mod report;
pub mod stats;
pub mod status;
pub mod top;

use std::path::Path;

use crate::store::{Store, StoreError};

/// Errors of reading commands, one line each.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The store does not exist yet.
    #[error("{path}: no store yet; the agent creates it when it starts (`trafmon agent`)")]
    NoStore {
        /// The file.
        path: std::path::PathBuf,
    },
    /// The store exists but may not be read.
    #[error(
        "{path}: permission denied: reading the store needs read permission on it and on its -wal and -shm files (run as root, or as a member of a group they are readable by)"
    )]
    Permission {
        /// The file.
        path: std::path::PathBuf,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An argument is wrong.
    #[error("{0}")]
    Usage(String),
}

/// Opens the store for reading, saying clearly what is wrong when it cannot.
pub fn open_store(path: &Path) -> Result<Store, CmdError> {
    match std::fs::File::open(path) {
        Ok(_) => Ok(Store::open_read_only(path)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(CmdError::NoStore { path: path.into() })
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(CmdError::Permission { path: path.into() })
        }
        Err(_) => Ok(Store::open_read_only(path)?),
    }
}

/// A count of 1 or more (rows, refreshes): clap's own message for a 0
/// speaks of a "non-zero type".
pub fn one_or_more(s: &str) -> Result<std::num::NonZeroUsize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    std::num::NonZeroUsize::new(n).ok_or_else(|| "must be 1 or more".into())
}
