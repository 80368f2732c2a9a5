//! Calls of the kernel function `bpf_rdonly_cast` in the eBPF object.
//!
//! Written by hand because aya 0.14 cannot relocate calls of kernel
//! functions (kfuncs): the programs call the made-up helper number
//! [`KFUNC_MARKER`] instead, and this turns every such call into what the
//! kernel takes (a call with `src_reg` = `BPF_PSEUDO_KFUNC_CALL` and the
//! function's BTF id in the running kernel), before aya reads the object.
//! Where the kernel has no such function, the call becomes `r0 = 0`, on a
//! path that the programs then never take.

use object::{Object as _, ObjectSection as _, SectionKind};
use trafmon_common::KFUNC_MARKER;

/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;
/// `BPF_PSEUDO_KFUNC_CALL` in the source register (high nibble).
const KFUNC_CALL_REGS: u8 = 2 << 4;
/// `BPF_ALU64 | BPF_MOV | BPF_K` into r0.
const MOV64_IMM: u8 = 0xb7;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum KfuncError {
    /// The object cannot be read as ELF.
    #[error("cannot read the eBPF object")]
    Elf(#[source] object::Error),
    /// The object has no marked call: it does not match this loader.
    #[error(
        "the eBPF object has no call of bpf_rdonly_cast to resolve (it was built from other sources than the agent)"
    )]
    NoMarker,
}

/// The object with its calls resolved, 8-byte aligned as aya's ELF reader
/// wants it.
pub struct Patched {
    words: Vec<u64>,
    len: usize,
}

impl Patched {
    /// The object's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds at least `len` initialised bytes, and u8 has
        // no alignment or validity requirements.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, through the unique borrow of `words`.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// `object` with every marked call made a call of the kernel function whose
/// BTF id is `func`, or, with `None`, `r0 = 0`; and how many there were.
pub fn resolve(object: &[u8], func: Option<u32>) -> Result<(Patched, usize), KfuncError> {
    let mut patched = Patched {
        words: vec![0; object.len().div_ceil(8)],
        len: object.len(),
    };
    patched.bytes_mut().copy_from_slice(object);
    let code: Vec<(usize, usize)> = {
        let elf = object::File::parse(object).map_err(KfuncError::Elf)?;
        elf.sections()
            .filter(|s| s.kind() == SectionKind::Text)
            .filter_map(|s| s.file_range())
            .map(|(start, len)| (start as usize, len as usize))
            .collect()
    };
    let mut found = 0;
    for (start, len) in code {
        let Some(section) = patched.bytes_mut().get_mut(start..start + len) else {
            continue;
        };
        for insn in section.chunks_exact_mut(8) {
            let imm = u32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]);
            if insn[0] != CALL || insn[1] != 0 || insn[2..4] != [0, 0] || imm != KFUNC_MARKER {
                continue;
            }
            match func {
                Some(id) => {
                    insn[1] = KFUNC_CALL_REGS;
                    insn[4..].copy_from_slice(&id.to_le_bytes());
                }
                None => {
                    insn[0] = MOV64_IMM;
                    insn[4..].copy_from_slice(&0u32.to_le_bytes());
                }
            }
            found += 1;
        }
    }
    if found == 0 {
        return Err(KfuncError::NoMarker);
    }
    Ok((patched, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent's own object has the marked call once per cgroup program,
    /// and every one is resolved.
    #[test]
    fn every_marked_call_of_the_agents_object_is_resolved() {
        let object = super::super::OBJECT;
        let marker = {
            let mut m = [CALL, 0, 0, 0, 0, 0, 0, 0];
            m[4..].copy_from_slice(&KFUNC_MARKER.to_le_bytes());
            m
        };
        let count = |b: &[u8], insn: &[u8; 8]| b.chunks_exact(8).filter(|c| c == insn).count();
        let (patched, found) = resolve(object, Some(0x1234)).unwrap();
        assert_eq!(found, 2, "cgroup_ingress and cgroup_egress");
        assert_eq!(patched.bytes().len(), object.len());
        assert_eq!(count(patched.bytes(), &marker), 0);
        let call = [CALL, KFUNC_CALL_REGS, 0, 0, 0x34, 0x12, 0, 0];
        assert_eq!(count(patched.bytes(), &call), 2);
        let (patched, found) = resolve(object, None).unwrap();
        assert_eq!(found, 2);
        assert_eq!(count(patched.bytes(), &marker), 0);
        assert!(matches!(
            resolve(patched.bytes(), None),
            Err(KfuncError::NoMarker)
        ));
    }
}
