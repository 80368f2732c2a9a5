//! Small state files written so that a crash or a power loss leaves the
//! old content or the new one, never an empty or half-written file.
//! Written by hand: a temporary file, synced, then renamed over the old
//! one is three calls, and no dependency of ours offers it.

use std::{
    fs,
    io::{self, Write as _},
    path::Path,
};

/// Replaces `path` with `bytes`, atomically and durably (through
/// `<path>.tmp`).
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}
