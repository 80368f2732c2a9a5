//! The agent's pid file, `<state_dir>/agent.pid`, so that `trafmon status`
//! can tell whether an agent runs.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

/// The pid file under `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("agent.pid")
}

/// Writes this process's pid; removed again by [`PidFile`]'s drop.
pub struct PidFile(PathBuf);

impl PidFile {
    /// Creates the pid file.
    pub fn create(state_dir: &Path) -> io::Result<Self> {
        let p = path(state_dir);
        fs::create_dir_all(state_dir)?;
        fs::write(&p, format!("{}\n", std::process::id()))?;
        Ok(Self(p))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
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
