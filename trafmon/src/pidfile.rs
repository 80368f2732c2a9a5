//! The agent's pid file, `<state_dir>/agent.pid`, so that `trafmon status`
//! can tell whether an agent runs, locked so that only one runs per state
//! directory.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use nix::fcntl::Flock;

use crate::exclusive::{self, LockError};

/// The pid file under `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("agent.pid")
}

/// Writes this process's pid and holds an exclusive lock on the file, so
/// that a second agent on the same state directory stops at once; removed
/// again by [`PidFile`]'s drop.
pub struct PidFile {
    path: PathBuf,
    lock: Flock<fs::File>,
}

impl PidFile {
    /// Creates and locks the pid file; [`LockError::Busy`] when another
    /// agent holds it.
    pub fn create(state_dir: &Path) -> Result<Self, LockError> {
        let mut held = Self::hold(state_dir)?;
        let written = held
            .lock
            .set_len(0)
            .and_then(|()| writeln!(held.lock, "{}", std::process::id()));
        written.map_err(|source| LockError::Io {
            path: held.path.clone(),
            source,
        })?;
        Ok(held)
    }

    /// Locks the pid file as [`Self::create`] does, without writing this
    /// process's pid: for a command that must not run beside an agent
    /// (`trafmon uninstall`) and is not one. Needs no room on the disk.
    pub fn hold(state_dir: &Path) -> Result<Self, LockError> {
        let path = path(state_dir);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(state_dir).map_err(io_err)?;
        // Not truncated before the lock is ours: it names the holder.
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err)?;
        let lock = exclusive::lock(&path, file, running(state_dir))?;
        Ok(Self { path, lock })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Still locked: nobody else writes it meanwhile.
        let _ = fs::remove_file(&self.path);
    }
}

/// The pid of a running agent, if the pid file names a live trafmon agent
/// (a stale file after a `kill -9` names a dead or foreign process).
pub fn running(state_dir: &Path) -> Option<u32> {
    let pid: u32 = fs::read_to_string(path(state_dir))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_agent = args.first().is_some_and(|a| a.ends_with(b"trafmon"))
        && args.iter().any(|a| *a == b"agent");
    is_agent.then_some(pid)
}
