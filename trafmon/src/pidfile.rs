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

/// Whether the executable of process `pid` was replaced or removed since it
/// started: the kernel then names it `PATH (deleted)` (an install replaces
/// the file; a running one cannot be overwritten in place).
pub fn binary_replaced(pid: u32) -> bool {
    fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|exe| exe.as_os_str().as_encoded_bytes().ends_with(b" (deleted)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_whose_executable_was_removed_is_told_apart() {
        let dir = std::env::temp_dir().join(format!("trafmon-exe-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("sleep");
        fs::copy("/bin/sleep", &exe).unwrap();
        // Another test thread's fork may hold the copy open for writing a
        // moment (ETXTBSY), as long as that child takes to exec.
        let mut child = (0..50)
            .find_map(
                |_| match std::process::Command::new(&exe).arg("10").spawn() {
                    Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        None
                    }
                    spawned => Some(spawned.unwrap()),
                },
            )
            .expect("spawned");
        let replaced_before = binary_replaced(child.id());
        // As `install` does: the old file goes, a new one takes its name.
        fs::remove_file(&exe).unwrap();
        fs::copy("/bin/sleep", &exe).unwrap();
        let replaced_after = binary_replaced(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert!(!replaced_before);
        assert!(replaced_after);
        assert!(!binary_replaced(std::process::id()));
    }
}
