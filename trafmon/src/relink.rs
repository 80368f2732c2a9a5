//! Swapping the program behind a pinned cgroup link (`BPF_LINK_UPDATE`),
//! and what a pinned link is attached to.
//!
//! Written by hand because aya 0.14 can update only TCX and XDP links
//! (`attach_to_link`); its `bpf_link_update` is crate-private and its
//! `FdLink` does not lend its fd. The kernel has updated cgroup links since
//! 5.7: the new program replaces the old one in the cgroup's effective
//! array in one step, so no packet is counted by both or by neither.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

use aya_obj::generated::{bpf_cmd, bpf_link_info, bpf_link_type};

use crate::batch::{bpf, zeroed_attr};

/// Opens the link pinned at `path` (`BPF_OBJ_GET`); `NotFound` when there
/// is no pin.
pub fn open_pinned(path: &Path) -> io::Result<OwnedFd> {
    let name = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = zeroed_attr();
    // The path union member is the one BPF_OBJ_GET reads.
    attr.__bindgen_anon_4.pathname = name.as_ptr() as u64;
    // SAFETY: attr starts zeroed with the pathname set; `name` outlives the
    // call.
    let fd = unsafe { bpf(bpf_cmd::BPF_OBJ_GET, &mut attr) }?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("BPF_OBJ_GET: bad fd"))?;
    // SAFETY: BPF_OBJ_GET returned a new file descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes `link` run `program` from now on. Fails with `ENOLINK` when the
/// link is defunct (its cgroup was removed).
pub fn update(link: BorrowedFd<'_>, program: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = zeroed_attr();
    // The link_update member is the one BPF_LINK_UPDATE reads.
    attr.link_update.link_fd = raw(link);
    attr.link_update.__bindgen_anon_1.new_prog_fd = raw(program);
    // SAFETY: attr starts zeroed with the fields of BPF_LINK_UPDATE set.
    unsafe { bpf(bpf_cmd::BPF_LINK_UPDATE, &mut attr) }.map(drop)
}

/// The kernel's information on a link (`BPF_OBJ_GET_INFO_BY_FD`).
fn info(link: BorrowedFd<'_>) -> io::Result<bpf_link_info> {
    // SAFETY: a C struct of integers and unions of integers: all zeroes is
    // valid.
    let mut info: bpf_link_info = unsafe { std::mem::zeroed() };
    let mut attr = zeroed_attr();
    // The info member is the one BPF_OBJ_GET_INFO_BY_FD reads.
    attr.info.bpf_fd = raw(link);
    attr.info.info_len = u32::try_from(size_of_val(&info)).unwrap_or(u32::MAX);
    attr.info.info = std::ptr::from_mut(&mut info) as u64;
    // SAFETY: attr starts zeroed with the fields of BPF_OBJ_GET_INFO_BY_FD
    // set; `info` outlives the call and is as long as said.
    unsafe { bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    Ok(info)
}

/// The id of the cgroup a cgroup link is attached to; 0 when the link is
/// defunct (its cgroup was removed). A cgroup's id is its directory's
/// inode number.
pub fn cgroup_id(link: BorrowedFd<'_>) -> io::Result<u64> {
    let info = info(link)?;
    // SAFETY: the kernel fills the cgroup member of a cgroup link's info.
    Ok(unsafe { info.__bindgen_anon_1.cgroup.cgroup_id })
}

/// The index of the device a TCX link is attached to: 0 when the link is
/// defunct (its device was removed), `None` for other links.
pub fn tcx_ifindex(link: BorrowedFd<'_>) -> io::Result<Option<u32>> {
    let info = info(link)?;
    if info.type_ != bpf_link_type::BPF_LINK_TYPE_TCX as u32 {
        return Ok(None);
    }
    // SAFETY: the kernel fills the tcx member of a TCX link's info.
    Ok(Some(unsafe { info.__bindgen_anon_1.tcx.ifindex }))
}

fn raw(fd: BorrowedFd<'_>) -> u32 {
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}
