//! The floor of a bpf_stats figure: a cgroup_skb egress program that does
//! nothing (`r0 = 1; exit`), attached next to trafmon's on the same cgroup
//! and timed the same way. What it costs per run is the kernel's dispatch
//! and the timing itself, which every program's figure includes.
//!
//! Loaded with the raw syscall (see [`asm`]).

use std::{
    fs::File,
    io,
    os::fd::{AsRawFd as _, OwnedFd},
    path::Path,
};

use anyhow::Context as _;
use aya::programs::loaded_programs;
use aya_obj::generated::{bpf_attach_type, bpf_cmd, bpf_prog_type};
use trafmon::batch::{bpf, zeroed_attr};

use crate::asm;

/// Its name, as `bpftool prog` shows it.
pub const NAME: &str = "trafbench_noop";

/// Loads a program of `prog_type` that only returns `r0`, named `name`.
pub fn load_returning(
    prog_type: bpf_prog_type,
    expected_attach_type: bpf_attach_type,
    r0: i32,
    name: &str,
) -> anyhow::Result<OwnedFd> {
    asm::load(
        prog_type,
        expected_attach_type,
        &[asm::mov_imm(asm::R0, r0), asm::exit()],
        name,
    )
    .with_context(|| format!("cannot load the empty program {name}"))
}

/// A do-nothing cgroup_skb program (`r0 = 1`: pass), attached to a hook of
/// a cgroup; detached on drop.
pub struct Noop {
    prog: OwnedFd,
    cgroup: File,
    hook: bpf_attach_type,
}

impl Noop {
    /// The floor program, [`NAME`], on the egress hook of `cgroup`.
    pub fn attach(cgroup: &Path) -> anyhow::Result<Self> {
        Self::attach_to(cgroup, bpf_attach_type::BPF_CGROUP_INET_EGRESS, NAME)
    }

    /// One named `name` on `hook` (ingress or egress) of `cgroup`.
    pub fn attach_to(cgroup: &Path, hook: bpf_attach_type, name: &str) -> anyhow::Result<Self> {
        let prog = load_returning(bpf_prog_type::BPF_PROG_TYPE_CGROUP_SKB, hook, 1, name)?;
        let cgroup = File::open(cgroup).context("cannot open the cgroup")?;
        let noop = Self { prog, cgroup, hook };
        noop.call(
            bpf_cmd::BPF_PROG_ATTACH,
            aya_obj::generated::BPF_F_ALLOW_MULTI,
        )
        .context("cannot attach the noop program")?;
        Ok(noop)
    }

    fn call(&self, cmd: bpf_cmd, flags: u32) -> io::Result<i64> {
        let mut attr = zeroed_attr();
        // SAFETY: writing plain integer fields of the union.
        unsafe {
            let a = &mut attr.__bindgen_anon_5;
            a.__bindgen_anon_1.target_fd = self.cgroup.as_raw_fd() as u32;
            a.attach_bpf_fd = self.prog.as_raw_fd() as u32;
            a.attach_type = self.hook as u32;
            a.attach_flags = flags;
        }
        // SAFETY: the attach fields hold two fds that are open.
        unsafe { bpf(cmd, &mut attr) }
    }

    /// Its program id.
    pub fn id(&self) -> anyhow::Result<u32> {
        for info in loaded_programs() {
            let info = info?;
            if info.name_as_str() == Some(NAME) {
                return Ok(info.id());
            }
        }
        anyhow::bail!("the noop program is not loaded")
    }
}

impl Drop for Noop {
    fn drop(&mut self) {
        let _ = self.call(bpf_cmd::BPF_PROG_DETACH, 0);
    }
}
