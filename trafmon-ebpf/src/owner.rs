//! A full socket's owner as the host (the init user namespace) sees it:
//! `sk_uid`, read from the socket at the offset the loader found in the
//! kernel's BTF. `bpf_get_socket_uid()` gives the UID as the socket's own
//! user namespace sees it (a container's root as 0).
//!
//! The verifier lets a program load a member of a socket only through a
//! pointer typed with the kernel's BTF. The best way there is the kernel
//! function `bpf_rdonly_cast` (Linux 6.2 and later), which the verifier
//! replaces with a register move: the read is then one load. Without it,
//! the socket's address has to become a plain number (the verifier forbids
//! arithmetic on socket pointers) and the kernel's reader,
//! `bpf_probe_read_kernel`, reads the owner, one helper call.

use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::map, maps::PerCpuArray};
use trafmon_common::KFUNC_MARKER;

/// `offsetof(struct sock, sk_uid)` in the running kernel, from its BTF;
/// set by the loader (0: unknown, use the helper).
#[unsafe(no_mangle)]
static SK_UID_OFFSET: u32 = 0;

/// The BTF id of `struct sock` in the running kernel, for
/// `bpf_rdonly_cast`; set by the loader (0: that function is not used).
#[unsafe(no_mangle)]
static SOCK_BTF_ID: u32 = 0;

/// 1: [`address`] may take a socket's address through [`SCRATCH`]; 0: by
/// the kernel's reader only (set by the loader for the test of that path).
#[unsafe(no_mangle)]
static SCRATCH_ADDRESS: u32 = 1;

/// One 8-byte scratch value per CPU, where [`address`] turns a socket
/// pointer into a number. Not pinned: it holds nothing between runs.
#[map]
static SCRATCH: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// A read-only global that the loader sets.
#[inline(always)]
fn global(g: &u32) -> u32 {
    // SAFETY: a plain u32 in the object's read-only data; volatile, so
    // that the compiler reads what the loader wrote, not the default.
    unsafe { core::ptr::read_volatile(g) }
}

/// `bpf_rdonly_cast(p, btf_id)`: `p` as a read-only pointer to the kernel
/// type `btf_id`, whose members a program may load directly (a fault
/// reads as 0). The call is made with the helper number [`KFUNC_MARKER`],
/// which the loader turns into a call of the kernel function, or, where
/// the kernel has none, into `r0 = 0` on a path the verifier then never
/// takes ([`SOCK_BTF_ID`] is 0).
#[inline(always)]
fn rdonly_cast<T>(p: *const T, btf_id: u32) -> u64 {
    let out: u64;
    // SAFETY: the kernel function only returns `p` (the verifier makes it
    // a register move); r1 to r5 are clobbered as by any call.
    unsafe {
        core::arch::asm!(
            "call {marker}",
            marker = const KFUNC_MARKER,
            inlateout("r1") p => _,
            inlateout("r2") u64::from(btf_id) => _,
            lateout("r0") out,
            lateout("r3") _,
            lateout("r4") _,
            lateout("r5") _,
            options(nostack),
        );
    }
    out
}

/// The address in `p` as a plain number. The verifier forbids arithmetic
/// on socket pointers and reading a spilled pointer as a number, but lets
/// a program with CAP_PERFMON store a pointer into a map value and compare
/// it with a number, and a load from a map value is a number: so the
/// pointer goes into this CPU's scratch value and comes back as a number,
/// which costs two memory accesses. Another program on this CPU (a softirq
/// in between, or a task that preempted this one) may have written the
/// slot in between: then the number differs from the pointer, and the
/// kernel's reader copies the pointer out of this frame's stack instead, a
/// helper call.
#[inline(always)]
fn address<T>(p: *const T) -> Option<u64> {
    if global(&SCRATCH_ADDRESS) != 0
        && let Some(slot) = SCRATCH.get_ptr_mut(0)
    {
        // SAFETY: `slot` is this CPU's value of a one-entry per-CPU array,
        // valid for the whole run; volatile keeps both accesses, so that
        // the compiler cannot turn them into a pointer cast.
        let at = unsafe {
            core::ptr::write_volatile(slot.cast::<*const T>(), p);
            core::ptr::read_volatile(slot)
        };
        if at == p as u64 {
            return Some(at);
        }
    }
    let slot = p;
    // SAFETY: reads this frame's own stack slot.
    unsafe { bpf_probe_read_kernel((&raw const slot).cast::<u64>()) }.ok()
}

/// The owner of the full socket `sk` as the host sees it; `None` where the
/// loader found no offset (no kernel BTF) or the reader failed.
#[inline(always)]
pub fn host_uid<T>(sk: *const T) -> Option<u32> {
    let offset = u64::from(global(&SK_UID_OFFSET));
    if offset == 0 {
        return None;
    }
    let sock = global(&SOCK_BTF_ID);
    if sock != 0 {
        let at = rdonly_cast(sk, sock) + offset;
        // SAFETY: the verifier checks this load against `struct sock` in
        // the kernel's BTF and makes it a probed load; `sk_uid` is a
        // `kuid_t`, one u32.
        return Some(unsafe { core::ptr::read_volatile(at as *const u32) });
    }
    let at = address(sk)? + offset;
    // SAFETY: the kernel's reader checks the address.
    unsafe { bpf_probe_read_kernel(at as *const u32) }.ok()
}
