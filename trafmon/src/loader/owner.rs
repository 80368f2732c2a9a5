//! How the cgroup programs read a socket's owner in the running kernel
//! (see trafmon-ebpf's `owner.rs`): the globals the loader sets, and the
//! kernel function their calls resolve to.

use std::path::Path;

use aya::EbpfLoader;

use crate::{fault::OwnerPath, kernel_btf};

/// The programs' globals, and the BTF id of `bpf_rdonly_cast` if they use it.
pub struct Owner {
    /// `SK_UID_OFFSET`: 0 makes the programs use `bpf_get_socket_uid()`.
    uid_offset: u32,
    /// `SOCK_BTF_ID`: 0 makes them not call `bpf_rdonly_cast`.
    sock: u32,
    /// `SCRATCH_ADDRESS`.
    scratch: u32,
    /// What the marked calls resolve to.
    pub func: Option<u32>,
}

impl Owner {
    /// From the running kernel's BTF, restricted to `path` (tests); logs
    /// what the programs will do where it is not the best.
    pub fn of_kernel(path: OwnerPath) -> Self {
        let found = kernel_btf::socket_owner(Path::new(kernel_btf::VMLINUX));
        let (uid_offset, cast) = match found {
            Ok(o) => (o.uid_offset, o.cast),
            Err(e) => {
                tracing::warn!(
                    error = %crate::error_chain(&e),
                    "sockets in user namespaces are counted under their UID as the namespace sees it"
                );
                (0, None)
            }
        };
        let cast = cast.filter(|_| path == OwnerPath::Best);
        if uid_offset != 0 && cast.is_none() {
            tracing::info!(
                ?path,
                "socket owners are read with bpf_probe_read_kernel (the kernel has no bpf_rdonly_cast, or it is not to be used)"
            );
        }
        Self {
            uid_offset,
            sock: cast.map_or(0, |c| c.sock),
            scratch: u32::from(path != OwnerPath::Reader),
            func: cast.map(|c| c.func),
        }
    }

    /// Sets the programs' globals.
    pub fn set<'a>(&'a self, loader: &mut EbpfLoader<'a>) {
        loader.override_global("SK_UID_OFFSET", &self.uid_offset, true);
        loader.override_global("SOCK_BTF_ID", &self.sock, true);
        loader.override_global("SCRATCH_ADDRESS", &self.scratch, true);
    }
}
