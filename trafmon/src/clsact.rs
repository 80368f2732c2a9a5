//! The tc programs on kernels without TCX links (before Linux 6.6):
//! classic `cls_bpf` filters on a `clsact` qdisc.
//!
//! A filter cannot be pinned, but it needs no process either: it stays on
//! its device, counting into the pinned maps, while no agent runs, until
//! the device goes or the filter is deleted. Each pin directory's filters
//! have one priority and a handle of their own ([`Filter::of`]), so that
//! the next agent finds them: it asks the kernel to change the filter
//! with that priority and handle, which swaps the program in one step
//! (`cls_bpf` replaces it under RCU, as a TCX link update does), and
//! makes a new filter only where there is none. `trafmon uninstall`
//! deletes them from every interface ([`sweep`]).
//!
//! `TRAFMON_TC=clsact` makes the agent use filters on a kernel that has
//! TCX too (the tests run this path here); `trafmon uninstall` deletes
//! filters either way. A pin directory's programs must not be attached
//! both ways at once, which would count each packet twice: the variable
//! keeps one value for every run on a pin directory, or an uninstall
//! comes in between (a kernel's mode changes only with a reboot, which
//! removes both).

use std::io;

use aya::programs::{
    ProgramError, SchedClassifier, TcAttachType,
    tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcError, TcHandle},
};

/// How the tc programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// TCX links, pinned (Linux 6.6 and later).
    Tcx,
    /// `cls_bpf` filters on a `clsact` qdisc, found again by [`Filter`].
    Clsact,
}

/// The variable that chooses [`Mode::Clsact`] where TCX exists too.
pub const VARIABLE: &str = "TRAFMON_TC";

/// A bad [`VARIABLE`].
#[derive(Debug, thiserror::Error)]
#[error("{VARIABLE}={0:?}: must be \"tcx\" or \"clsact\" (or unset: TCX where the kernel has it)")]
pub struct ModeError(String);

/// How to attach the tc programs: as [`VARIABLE`] says, or else with TCX
/// links where the kernel has them (Linux 6.6) and as filters otherwise.
/// Probed with a query of `lo`'s TCX programs, which an older kernel
/// refuses with `EINVAL` (its attach type is unknown there), rather than
/// judged by the version number, which distribution kernels backport
/// features around. Anything else the query meets is left to the attach
/// to report.
pub fn mode() -> Result<Mode, ModeError> {
    match std::env::var(VARIABLE).ok().as_deref() {
        None | Some("") => Ok(
            match SchedClassifier::query_tcx("lo", TcAttachType::Ingress) {
                Err(ProgramError::SyscallError(e)) if tcx_missing(&e.io_error) => Mode::Clsact,
                _ => Mode::Tcx,
            },
        ),
        Some("tcx") => Ok(Mode::Tcx),
        Some("clsact") => Ok(Mode::Clsact),
        Some(other) => Err(ModeError(other.into())),
    }
}

/// Whether a TCX query failed because the kernel does not know TCX.
fn tcx_missing(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// The priority of every trafmon filter: after the filters of lower
/// numbers, as a TCX link is attached after the links already there.
pub const PRIORITY: u16 = 0xc0de;

/// Which filter on a device's hook is this pin directory's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    /// Its priority ([`PRIORITY`]).
    pub priority: u16,
    /// Its handle, from the pin directory.
    pub handle: TcHandle,
}

impl Filter {
    /// The filter of the agent that pins under `pin_dir`: a handle
    /// hashed from the directory's path (FNV-1a, written out here because
    /// it must never change between versions, which a library's hasher
    /// does not promise), never 0, which asks the kernel to choose one.
    /// The path is taken in its plain form (no trailing or doubled `/`),
    /// so that spelling it another way keeps its filters.
    pub fn of(pin_dir: &std::path::Path) -> Self {
        let plain: std::path::PathBuf = pin_dir.components().collect();
        let mut h: u32 = 0x811c_9dc5;
        for b in plain.as_os_str().as_encoded_bytes() {
            h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
        }
        let h = h.max(1);
        Self {
            priority: PRIORITY,
            handle: TcHandle::new((h >> 16) as u16, h as u16),
        }
    }
}

/// Deleting this pin directory's filters failed.
#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    /// The interfaces to look at could not be listed.
    #[error("cannot list network interfaces")]
    Interfaces(#[source] nix::Error),
    /// Deleting a filter failed.
    #[error("cannot delete the tc filters of {interface}")]
    Filter {
        /// The interface.
        interface: String,
        /// Why.
        #[source]
        source: ProgramError,
    },
}

/// The error number behind a tc error, if any.
fn errno(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::TcError(TcError::NetlinkError(e)) | ProgramError::NetlinkError(e) => {
            e.raw_os_error()
        }
        ProgramError::TcError(TcError::IoError(e)) => e.raw_os_error(),
        _ => None,
    }
}

/// Puts `prog` into this pin directory's filter on `ifname`'s hook: the
/// filter's program is swapped in one step where it exists, and a filter
/// (and, if needed, the `clsact` qdisc) is made where it does not. The
/// filter stays when the agent exits.
pub fn attach(
    prog: &mut SchedClassifier,
    ifname: &str,
    kind: TcAttachType,
    filter: Filter,
) -> Result<(), ProgramError> {
    match tc::qdisc_add_clsact(ifname) {
        Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
        other => other?,
    }
    let ours = SchedClassifierLink::attached(ifname, kind, filter.priority, filter.handle, None)
        .map_err(TcError::IoError)?;
    let id = match prog.attach_to_link(ours) {
        Ok(id) => id,
        // No such filter (the kernel makes one only when asked to).
        Err(e) if errno(&e) == Some(libc::ENOENT) => prog.attach_with_options(
            ifname,
            kind,
            TcAttachOptions::Netlink(NlOptions {
                priority: filter.priority,
                handle: filter.handle,
                classid: None,
            }),
        )?,
        Err(e) => return Err(e),
    };
    // aya deletes a filter when its link is dropped: this one is to stay
    // (the link holds only the device, hook, priority and handle).
    std::mem::forget(prog.take_link(id)?);
    Ok(())
}

/// Deletes this pin directory's filter from `ifname`'s hook; `Ok(false)`
/// when there was none.
fn detach(ifname: &str, kind: TcAttachType, filter: Filter) -> Result<bool, ProgramError> {
    use aya::programs::links::Link as _;
    let ours = SchedClassifierLink::attached(ifname, kind, filter.priority, filter.handle, None)
        .map_err(TcError::IoError)?;
    match ours.detach() {
        Ok(()) => Ok(true),
        Err(e) if matches!(errno(&e), Some(libc::ENOENT | libc::EINVAL | libc::ENODEV)) => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Deletes this pin directory's filters from both hooks of `ifname`;
/// `Ok(false)` when there were none.
pub fn detach_both(ifname: &str, filter: Filter) -> Result<bool, DetachError> {
    let mut any = false;
    for kind in [TcAttachType::Ingress, TcAttachType::Egress] {
        any |= detach(ifname, kind, filter).map_err(|source| DetachError::Filter {
            interface: ifname.into(),
            source,
        })?;
    }
    Ok(any)
}

/// Deletes this pin directory's filters from every interface of this
/// network namespace.
pub fn sweep(pin_dir: &std::path::Path) -> Result<(), DetachError> {
    let filter = Filter::of(pin_dir);
    for name in crate::ifaces::list()
        .map_err(DetachError::Interfaces)?
        .keys()
    {
        detach_both(name, filter)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unknown_attach_type_means_no_tcx() {
        // What a kernel before 6.6 answers a TCX query with.
        assert!(tcx_missing(&io::Error::from_raw_os_error(libc::EINVAL)));
        // Not root, or no such device: left to the attach to report.
        assert!(!tcx_missing(&io::Error::from_raw_os_error(libc::EPERM)));
        assert!(!tcx_missing(&io::Error::from_raw_os_error(libc::ENODEV)));
        // This kernel (6.18) has TCX.
        if std::env::var_os(VARIABLE).is_none() {
            assert_eq!(mode().unwrap(), Mode::Tcx);
        }
    }

    #[test]
    fn each_pin_directory_has_its_own_stable_filter() {
        let a = Filter::of("/sys/fs/bpf/trafmon".as_ref());
        let b = Filter::of("/sys/fs/bpf/trafmon-2".as_ref());
        assert_ne!(a.handle, b.handle);
        assert_eq!(a, Filter::of("/sys/fs/bpf/trafmon".as_ref()));
        assert_eq!(a, Filter::of("/sys/fs/bpf//trafmon/".as_ref()));
        assert_eq!(a.priority, PRIORITY);
        // FNV-1a of the path (as computed elsewhere); part of the on-host
        // state, so it must not change.
        assert_eq!(u32::from(a.handle), 0x41c1_70fe);
    }
}
