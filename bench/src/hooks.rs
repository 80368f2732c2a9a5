//! Empty programs on every hook trafmon uses: cgroup_skb ingress and egress
//! on a cgroup, tcx ingress and egress on an interface. A throughput
//! variant with them shows what the hooks themselves cost, whatever a
//! program does; trafmon can only be as fast as that.
//!
//! tcx links are made with the raw `BPF_LINK_CREATE` syscall: the programs
//! are built from two instructions (see [`floor::load_returning`]), not
//! from an ELF object that aya could load.

use std::{
    ffi::CString,
    fs::File,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

use anyhow::Context as _;
use aya_obj::generated::{bpf_attach_type, bpf_cmd, bpf_prog_type};
use trafmon::batch::{bpf, zeroed_attr};

use crate::floor::{self, Noop};

/// The name of every empty hook program, as `bpftool prog` shows it.
const NAME: &str = "trafbench_hook";

/// `TC_ACT_UNSPEC`: a tcx program's "next", as trafmon's programs return.
const TC_ACT_UNSPEC: i32 = -1;

/// A tcx link of a program; the program is detached when both fds close.
struct TcxLink {
    _link: OwnedFd,
    _prog: OwnedFd,
}

impl TcxLink {
    /// Attaches an empty program to `hook` of interface `dev` inside the
    /// network namespace `netns` (a path under /run/netns).
    fn attach(netns: &Path, dev: &str, hook: bpf_attach_type) -> anyhow::Result<Self> {
        let prog = floor::load_returning(
            bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS,
            hook,
            TC_ACT_UNSPEC,
            NAME,
        )?;
        let ns = File::open(netns).with_context(|| format!("cannot open {}", netns.display()))?;
        let name = CString::new(dev)?;
        let prog_fd = prog.as_raw_fd() as u32;
        // The interface index is only known inside its namespace: a thread
        // of its own enters it (setns changes the calling thread only).
        let link = std::thread::spawn(move || -> std::io::Result<OwnedFd> {
            // SAFETY: setns with an open namespace fd; it affects this
            // short-lived thread only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if ifindex == 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut attr = zeroed_attr();
            // SAFETY: writing plain integer fields of the union.
            unsafe {
                let l = &mut attr.link_create;
                l.__bindgen_anon_1.prog_fd = prog_fd;
                l.__bindgen_anon_2.target_ifindex = ifindex;
                l.attach_type = hook as u32;
            }
            // SAFETY: the attribute holds an open program fd.
            let fd = unsafe { bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr) }?;
            // SAFETY: BPF_LINK_CREATE returned a new fd that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the tcx attach thread panicked"))?
        .with_context(|| format!("cannot attach an empty tcx program to {dev}"))?;
        Ok(Self {
            _link: link,
            _prog: prog,
        })
    }
}

/// Empty programs on the four hooks; all detached on drop.
pub struct EmptyHooks {
    _cgroup: [Noop; 2],
    _tc: [TcxLink; 2],
}

impl EmptyHooks {
    /// On `cgroup` and on `dev` in the namespace `netns` (a /run/netns path).
    pub fn attach(cgroup: &Path, netns: &Path, dev: &str) -> anyhow::Result<Self> {
        Ok(Self {
            _cgroup: [
                Noop::attach_to(cgroup, bpf_attach_type::BPF_CGROUP_INET_INGRESS, NAME)?,
                Noop::attach_to(cgroup, bpf_attach_type::BPF_CGROUP_INET_EGRESS, NAME)?,
            ],
            _tc: [
                TcxLink::attach(netns, dev, bpf_attach_type::BPF_TCX_INGRESS)?,
                TcxLink::attach(netns, dev, bpf_attach_type::BPF_TCX_EGRESS)?,
            ],
        })
    }
}
