//! Finding the cgroup v2 root and making sure bpffs is mounted, from
//! `/proc/self/mountinfo`.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use nix::mount::{MsFlags, mount};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// mountinfo could not be read.
    #[error("cannot read /proc/self/mountinfo")]
    MountInfo(#[source] io::Error),
    /// No cgroup2 mount exists.
    #[error("no cgroup v2 file system is mounted; mount one or set `cgroup` in the configuration")]
    NoCgroup2,
    /// Mounting bpffs failed.
    #[error("cannot mount bpffs at {path}")]
    MountBpffs {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// The pin directory is on another file system than bpffs.
    #[error(
        "pin_dir {}: not on a bpffs, where alone pins can live; use a directory under {} or mount bpffs there",
        path.display(),
        crate::paths::BPFFS_MOUNT
    )]
    NotBpffs {
        /// The pin directory.
        path: PathBuf,
    },
    /// Creating a directory failed.
    #[error("cannot create {path}")]
    CreateDir {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// One line of mountinfo: (mount point, file system type).
fn mounts() -> Result<Vec<(PathBuf, String)>, MountError> {
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(MountError::MountInfo)?;
    Ok(parse_mountinfo(&text))
}

/// Parses mountinfo text into (mount point, fs type) pairs.
pub fn parse_mountinfo(text: &str) -> Vec<(PathBuf, String)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = fields.get(4)?;
            let sep = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(sep + 1)?;
            Some((PathBuf::from(unescape(point)), (*fstype).to_owned()))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(Ok(v)) = s.get(i + 1..i + 4).map(|o| u8::from_str_radix(o, 8))
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount point of the cgroup v2 hierarchy (the unified root; on a hybrid
/// system such as this one, `/sys/fs/cgroup/unified`).
pub fn cgroup2_root() -> Result<PathBuf, MountError> {
    find_cgroup2(&mounts()?).ok_or(MountError::NoCgroup2)
}

/// The cgroup2 mount point: the systemd locations first (unified, then
/// hybrid), else the first cgroup2 mount.
pub fn find_cgroup2(mounts: &[(PathBuf, String)]) -> Option<PathBuf> {
    let cgroup2: Vec<&PathBuf> = mounts
        .iter()
        .filter(|(_, fstype)| fstype == "cgroup2")
        .map(|(point, _)| point)
        .collect();
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .find_map(|known| cgroup2.iter().find(|p| p.as_path() == Path::new(known)))
        .or(cgroup2.first())
        .map(|p| (*p).clone())
}

/// What [`ensure_bpffs`] does for a pin directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bpffs {
    /// It lies on a bpffs already.
    Ready,
    /// It lies under [`crate::paths::BPFFS_MOUNT`], where nothing is
    /// mounted: mount bpffs there.
    Mount,
    /// It lies on another file system.
    Elsewhere,
}

/// What [`ensure_bpffs`] would do for `pin_root` on this system, without
/// doing it.
pub fn bpffs_state(pin_root: &Path) -> Result<Bpffs, MountError> {
    Ok(bpffs_plan(&mounts()?, pin_root))
}

/// What to do for `pin_root` given `mounts` (in mountinfo order): the
/// file system that holds it is the innermost mount above it, the last
/// listed where mounts are stacked.
pub fn bpffs_plan(mounts: &[(PathBuf, String)], pin_root: &Path) -> Bpffs {
    let holder = mounts
        .iter()
        .filter(|(point, _)| pin_root.starts_with(point))
        .max_by_key(|(point, _)| point.components().count());
    let default = Path::new(crate::paths::BPFFS_MOUNT);
    // Mounting over an existing mount at the default place would hide
    // what is pinned there (another agent's maps), or whatever that file
    // system is: only where nothing is mounted.
    let mounted_there = holder.is_some_and(|(point, _)| point.starts_with(default));
    match holder {
        Some((_, fstype)) if fstype == "bpf" => Bpffs::Ready,
        _ if pin_root.starts_with(default) && !mounted_there => Bpffs::Mount,
        _ => Bpffs::Elsewhere,
    }
}

/// Makes sure `pin_root` lies on a bpffs, mounting bpffs at
/// [`crate::paths::BPFFS_MOUNT`] when it lies there and nothing is mounted
/// there, and creates it. A pin directory on any other file system is an
/// error: pins cannot live there, and mounting bpffs again over a
/// mounted one would hide the pins below.
pub fn ensure_bpffs(pin_root: &Path) -> Result<(), MountError> {
    match bpffs_state(pin_root)? {
        Bpffs::Ready => {}
        Bpffs::Elsewhere => {
            return Err(MountError::NotBpffs {
                path: pin_root.into(),
            });
        }
        Bpffs::Mount => {
            let target = Path::new(crate::paths::BPFFS_MOUNT);
            fs::create_dir_all(target).map_err(|source| MountError::CreateDir {
                path: target.into(),
                source,
            })?;
            mount(
                Some("bpf"),
                target,
                Some("bpf"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            )
            .map_err(|source| MountError::MountBpffs {
                path: target.into(),
                source,
            })?;
            tracing::info!(path = %target.display(), "mounted bpffs");
        }
    }
    fs::create_dir_all(pin_root).map_err(|source| MountError::CreateDir {
        path: pin_root.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:40 / /mnt/with\\040space rw - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_the_hybrid_cgroup2_mount() {
        let mounts = parse_mountinfo(HYBRID);
        assert_eq!(
            find_cgroup2(&mounts),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert!(
            mounts
                .iter()
                .any(|(p, _)| p == Path::new("/mnt/with space"))
        );
    }

    #[test]
    fn bpffs_is_mounted_only_where_nothing_is() {
        let m = |lines: &[(&str, &str)]| -> Vec<(PathBuf, String)> {
            lines
                .iter()
                .map(|(p, t)| (PathBuf::from(p), (*t).to_owned()))
                .collect()
        };
        let pins = Path::new("/sys/fs/bpf/trafmon");
        let sys = [("/", "ext4"), ("/sys", "sysfs")];
        assert_eq!(bpffs_plan(&m(&sys), pins), Bpffs::Mount);
        let mounted = [("/", "ext4"), ("/sys", "sysfs"), ("/sys/fs/bpf", "bpf")];
        assert_eq!(bpffs_plan(&m(&mounted), pins), Bpffs::Ready);
        // Not on bpffs and not under the default place: an error, and
        // never a second bpffs stacked on /sys/fs/bpf.
        assert_eq!(
            bpffs_plan(&m(&mounted), Path::new("/tmp/pins")),
            Bpffs::Elsewhere
        );
        assert_eq!(
            bpffs_plan(&m(&sys), Path::new("/var/lib/trafmon/pins")),
            Bpffs::Elsewhere
        );
        // Something else mounted at the default place is left alone.
        let tmpfs = [("/", "ext4"), ("/sys/fs/bpf", "tmpfs")];
        assert_eq!(bpffs_plan(&m(&tmpfs), pins), Bpffs::Elsewhere);
        // A bpffs of its own elsewhere is fine; stacked mounts count by
        // the top one.
        let own = [("/", "ext4"), ("/run/pins", "bpf")];
        assert_eq!(bpffs_plan(&m(&own), Path::new("/run/pins/t")), Bpffs::Ready);
        let stacked = [
            ("/", "ext4"),
            ("/sys/fs/bpf", "bpf"),
            ("/sys/fs/bpf", "tmpfs"),
        ];
        assert_eq!(bpffs_plan(&m(&stacked), pins), Bpffs::Elsewhere);
    }

    #[test]
    fn no_cgroup2_is_none() {
        let mounts = parse_mountinfo("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n");
        assert_eq!(find_cgroup2(&mounts), None);
    }
}
