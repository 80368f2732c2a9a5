//! One agent at a time per pin directory and per state directory: two
//! agents flushing the same maps would drain sides the other has just
//! flipped (losing or doubling counts), and two agents writing one store
//! would interleave their flush records. An flock(2) on each, which the
//! kernel drops when the holder dies (even by `kill -9`), so a crash never
//! leaves a stale lock behind.

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error("{} is in use by a running trafmon agent{}: stop it first", path.display(), pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Busy {
        /// The locked file or directory.
        path: PathBuf,
        /// The holder, where known.
        pid: Option<u32>,
    },
    /// The file or directory cannot be opened or locked.
    #[error("cannot lock {}", path.display())]
    Io {
        /// What.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Takes the exclusive lock of `file` (opened from `path`) without
/// waiting; `holder` names who holds it when it is taken.
pub fn lock(path: &Path, file: File, holder: Option<u32>) -> Result<Flock<File>, LockError> {
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == Errno::EWOULDBLOCK {
            LockError::Busy {
                path: path.into(),
                pid: holder,
            }
        } else {
            LockError::Io {
                path: path.into(),
                source: errno.into(),
            }
        }
    })
}

/// Locks the directory `dir` (which must exist).
pub fn lock_dir(dir: &Path) -> Result<Flock<File>, LockError> {
    let file = File::open(dir).map_err(|source| LockError::Io {
        path: dir.into(),
        source,
    })?;
    lock(dir, file, None)
}
