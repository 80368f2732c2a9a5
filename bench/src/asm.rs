//! The few eBPF instructions that the benchmarks' own programs use, encoded
//! by hand, and loading such programs with the raw syscall.
//!
//! Written by hand because aya loads programs only from ELF objects, and
//! these programs exist only to be timed beside trafmon's (an empty one,
//! and the counting of a design not built): a second eBPF crate and its
//! build for some twenty instructions would be more code than this. The
//! encoding is the kernel's (Documentation/bpf/standardization/
//! instruction-set.rst): opcode, destination and source registers, a
//! 16-bit offset and a 32-bit immediate in one little-endian word.

use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};

use anyhow::Context as _;
use aya_obj::generated::{bpf_attach_type, bpf_cmd, bpf_prog_type};
use trafmon::batch::{bpf, zeroed_attr};

pub const R0: u8 = 0;
pub const R1: u8 = 1;
pub const R2: u8 = 2;
pub const R6: u8 = 6;
/// The read-only frame pointer.
pub const R10: u8 = 10;

/// Helper ids (`enum bpf_func_id`).
pub const MAP_LOOKUP_ELEM: i32 = 1;
pub const GET_SMP_PROCESSOR_ID: i32 = 8;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from((src << 4) | dst) << 8)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

/// `dst = imm` (64-bit).
pub fn mov_imm(dst: u8, imm: i32) -> u64 {
    insn(0xb7, dst, 0, 0, imm)
}

/// `wdst = imm`: the 32-bit move, which zero-extends into the register.
pub fn mov32_imm(dst: u8, imm: i32) -> u64 {
    insn(0xb4, dst, 0, 0, imm)
}

/// `wdst -= imm`: 32-bit, wrapping, zero-extended.
pub fn sub32_imm(dst: u8, imm: i32) -> u64 {
    insn(0x14, dst, 0, 0, imm)
}

/// `dst = be32(dst)`: the low 32 bits in big-endian (network) order, as a
/// number; on this little-endian machine a byte swap.
pub fn to_be32(dst: u8) -> u64 {
    insn(0xdc, dst, 0, 0, 32)
}

/// `dst = src` (64-bit).
pub fn mov(dst: u8, src: u8) -> u64 {
    insn(0xbf, dst, src, 0, 0)
}

/// `dst += imm` (64-bit).
pub fn add_imm(dst: u8, imm: i32) -> u64 {
    insn(0x07, dst, 0, 0, imm)
}

/// `dst += src` (64-bit).
pub fn add(dst: u8, src: u8) -> u64 {
    insn(0x0f, dst, src, 0, 0)
}

/// `dst *= imm` (64-bit).
pub fn mul_imm(dst: u8, imm: i32) -> u64 {
    insn(0x27, dst, 0, 0, imm)
}

/// `*(u32 *)(dst + off) = imm`.
pub fn store_imm32(dst: u8, off: i16, imm: i32) -> u64 {
    insn(0x62, dst, 0, off, imm)
}

/// `*(u32 *)(dst + off) = src`.
pub fn store32(dst: u8, src: u8, off: i16) -> u64 {
    insn(0x63, dst, src, off, 0)
}

/// `dst = *(u32 *)(src + off)`.
pub fn load32(dst: u8, src: u8, off: i16) -> u64 {
    insn(0x61, dst, src, off, 0)
}

/// `lock *(u64 *)(dst + off) += src`.
pub fn atomic_add64(dst: u8, src: u8, off: i16) -> u64 {
    insn(0xdb, dst, src, off, 0)
}

/// `dst = map` (a 16-byte load of the map's fd, which the verifier turns
/// into the map's address).
pub fn load_map(dst: u8, map: BorrowedFd<'_>) -> [u64; 2] {
    const PSEUDO_MAP_FD: u8 = 1;
    [insn(0x18, dst, PSEUDO_MAP_FD, 0, map.as_raw_fd()), 0]
}

/// Calls helper `id`.
pub fn call(id: i32) -> u64 {
    insn(0x85, 0, 0, 0, id)
}

/// `if dst == imm goto +off`.
pub fn jump_if_eq(dst: u8, imm: i32, off: i16) -> u64 {
    insn(0x15, dst, 0, off, imm)
}

/// `if dst >= imm goto +off`, unsigned.
pub fn jump_if_ge(dst: u8, imm: i32, off: i16) -> u64 {
    insn(0x35, dst, 0, off, imm)
}

pub fn exit() -> u64 {
    insn(0x95, 0, 0, 0, 0)
}

/// Loads `insns` as a program of `prog_type` named `name` (as `bpftool
/// prog` shows it). A refusal carries the end of the verifier's log.
pub fn load(
    prog_type: bpf_prog_type,
    expected_attach_type: bpf_attach_type,
    insns: &[u64],
    name: &str,
) -> anyhow::Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integer fields of the union.
    unsafe {
        let load = &mut attr.__bindgen_anon_3;
        load.prog_type = prog_type as u32;
        load.insn_cnt = u32::try_from(insns.len())?;
        load.insns = insns.as_ptr() as u64;
        load.license = license.as_ptr() as u64;
        load.expected_attach_type = expected_attach_type as u32;
        load.log_level = 1;
        load.log_buf = log.as_mut_ptr() as u64;
        load.log_size = u32::try_from(log.len())?;
        for (d, s) in load.prog_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
    }
    // SAFETY: insns, license and log outlive the call.
    let fd = unsafe { bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr) }.with_context(|| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let log = String::from_utf8_lossy(&log[..end]);
        let tail: Vec<&str> = log.lines().rev().take(6).collect();
        format!(
            "cannot load the program {name}; the verifier's log ends: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        )
    })?;
    // SAFETY: BPF_PROG_LOAD returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd)?) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_as_the_kernel_documents_them() {
        // `r0 = 1; exit`, as floor.rs wrote them before this module.
        assert_eq!(mov_imm(R0, 1), 0xb7 | (1 << 32));
        assert_eq!(exit(), 0x95);
        // What `llvm-mc -triple bpfel -show-encoding` gives for
        // `*(u32 *)(r10 - 28) = r0`, `r2 += -24`, `if r0 == 0 goto +4` and
        // `lock *(u64 *)(r0 + 8) += r1`.
        assert_eq!(
            store32(R10, R0, -28).to_le_bytes(),
            [0x63, 0x0a, 0xe4, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(
            add_imm(R2, -24).to_le_bytes(),
            [0x07, 0x02, 0, 0, 0xe8, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            jump_if_eq(R0, 0, 4).to_le_bytes(),
            [0x15, 0x00, 0x04, 0x00, 0, 0, 0, 0]
        );
        assert_eq!(
            atomic_add64(R0, R1, 8).to_le_bytes(),
            [0xdb, 0x10, 0x08, 0x00, 0, 0, 0, 0]
        );
        // And, from the instruction-set document's opcode tables,
        // `w6 = 7`, `w6 -= 1`, `r6 = be32 r6` and `if r6 >= 16 goto +2`.
        assert_eq!(
            mov32_imm(R6, 7).to_le_bytes(),
            [0xb4, 0x06, 0, 0, 7, 0, 0, 0]
        );
        assert_eq!(
            sub32_imm(R6, 1).to_le_bytes(),
            [0x14, 0x06, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(to_be32(R6).to_le_bytes(), [0xdc, 0x06, 0, 0, 32, 0, 0, 0]);
        assert_eq!(
            jump_if_ge(R6, 16, 2).to_le_bytes(),
            [0x35, 0x06, 0x02, 0x00, 16, 0, 0, 0]
        );
    }
}
