//! What the programs need from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`) for the one field they read that no helper
//! gives as it is, a socket's owner (`struct sock`, `sk_uid`): its offset,
//! and the BTF ids of `struct sock` and of the kernel function
//! `bpf_rdonly_cast`, through which they load it.
//!
//! Written by hand because aya-obj parses BTF but keeps its types' members
//! to itself, and btf-rs is LGPL, which a static MIT/Apache binary cannot
//! take; a lookup is a short walk over the type section.

use std::{fs, io, path::Path};

/// Where the kernel publishes its BTF.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The file cannot be read.
    #[error("cannot read the kernel's BTF at {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The data is not BTF this walk understands.
    #[error("the kernel's BTF is malformed or of an unknown kind ({0})")]
    Malformed(&'static str),
    /// The struct or its member is not there.
    #[error("the kernel's BTF has no member `{member}` in `struct {name}`")]
    Missing {
        /// The struct.
        name: &'static str,
        /// The member.
        member: &'static str,
    },
}

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_FUNC: u32 = 12;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The NUL-terminated name at `off` of the string section `strings`.
fn name(strings: &[u8], off: u32) -> Option<&[u8]> {
    let s = strings.get(off as usize..)?;
    Some(&s[..s.iter().position(|&c| c == 0)?])
}

/// Bytes that follow the common 12-byte header of a type of `kind` with
/// `vlen` entries (the BTF format's per-kind layout); `None` for a kind
/// this walk does not know.
fn trailer(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        2 | 7..=12 | 16 | 18 => 0,
        // INT, VAR, DECL_TAG
        1 | 14 | 17 => 4,
        // ARRAY
        3 => 12,
        // STRUCT, UNION, DATASEC, ENUM64: 12 bytes per entry
        4 | 5 | 15 | 19 => 12 * vlen,
        // ENUM, FUNC_PROTO: 8 bytes per entry
        6 | 13 => 8 * vlen,
        _ => return None,
    })
}

/// The type and string sections of a BTF blob.
struct Sections<'a> {
    types: &'a [u8],
    strings: &'a [u8],
}

/// One type of the type section.
struct Type<'a> {
    /// Its id (the first type is 1).
    id: u32,
    kind: u32,
    /// The kind-specific flag (STRUCT: members have bitfield offsets).
    flag: bool,
    name: Option<&'a [u8]>,
    /// The size (STRUCT) or the type it refers to (FUNC).
    size: u32,
    /// Its entries (STRUCT: 12 bytes per member).
    entries: &'a [u8],
}

impl<'a> Sections<'a> {
    fn of(btf: &'a [u8]) -> Result<Self, BtfError> {
        let bad = BtfError::Malformed;
        if u16_at(btf, 0) != Some(MAGIC) {
            return Err(bad("magic"));
        }
        let field = |at| u32_at(btf, at).ok_or(bad("header"));
        let (hdr_len, type_off, type_len) =
            (field(4)? as usize, field(8)? as usize, field(12)? as usize);
        let (str_off, str_len) = (field(16)? as usize, field(20)? as usize);
        Ok(Self {
            types: btf
                .get(hdr_len + type_off..hdr_len + type_off + type_len)
                .ok_or(bad("type section"))?,
            strings: btf
                .get(hdr_len + str_off..hdr_len + str_off + str_len)
                .ok_or(bad("string section"))?,
        })
    }

    /// The first type for which `pick` gives something, and that.
    fn find<R>(
        &self,
        mut pick: impl FnMut(&Type<'a>) -> Result<Option<R>, BtfError>,
    ) -> Result<Option<R>, BtfError> {
        let bad = BtfError::Malformed;
        let (types, mut at, mut id) = (self.types, 0, 1);
        while at < types.len() {
            let (name_off, info, size) = (
                u32_at(types, at).ok_or(bad("type"))?,
                u32_at(types, at + 4).ok_or(bad("type"))?,
                u32_at(types, at + 8).ok_or(bad("type"))?,
            );
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let len = trailer(kind, vlen).ok_or(bad("type kind"))?;
            let ty = Type {
                id,
                kind,
                flag: info >> 31 == 1,
                name: name(self.strings, name_off),
                size,
                entries: types.get(at + 12..at + 12 + len).ok_or(bad("type"))?,
            };
            if let Some(found) = pick(&ty)? {
                return Ok(Some(found));
            }
            at += 12 + len;
            id += 1;
        }
        Ok(None)
    }

    /// The id of the type of `kind` named `wanted`.
    fn id_of(&self, kind: u32, wanted: &str) -> Result<Option<u32>, BtfError> {
        self.find(|t| Ok((t.kind == kind && t.name == Some(wanted.as_bytes())).then_some(t.id)))
    }
}

/// Where a member lies in a struct: found with the struct's id and size
/// in one walk of the types.
struct Member {
    /// The struct's BTF id.
    struct_id: u32,
    /// The member's byte offset.
    offset: u32,
    /// The struct's size.
    struct_size: u32,
}

impl Sections<'_> {
    /// `member` of the first `struct name` that has one.
    fn member(&self, name_: &'static str, member: &'static str) -> Result<Member, BtfError> {
        let bad = BtfError::Malformed;
        let found = self.find(|t| {
            if t.kind != KIND_STRUCT || t.name != Some(name_.as_bytes()) {
                return Ok(None);
            }
            for m in t.entries.chunks(12) {
                let m_name = u32_at(m, 0).ok_or(bad("member"))?;
                if name(self.strings, m_name) != Some(member.as_bytes()) {
                    continue;
                }
                let raw = u32_at(m, 8).ok_or(bad("member"))?;
                let bits = if t.flag { raw & 0x00ff_ffff } else { raw };
                if !bits.is_multiple_of(8) {
                    return Err(bad("member not byte-aligned"));
                }
                return Ok(Some(Member {
                    struct_id: t.id,
                    offset: bits / 8,
                    struct_size: t.size,
                }));
            }
            Ok(None)
        })?;
        found.ok_or(BtfError::Missing {
            name: name_,
            member,
        })
    }
}

/// How the programs read a socket's owner in the running kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketOwner {
    /// `offsetof(struct sock, sk_uid)`: the owner as the init user
    /// namespace sees it (`kuid_t`, 4 bytes).
    pub uid_offset: u32,
    /// The kernel function that types a pointer with the kernel's BTF, if
    /// the kernel has it (Linux 6.2 and later).
    pub cast: Option<Cast>,
}

/// The BTF ids that a call of `bpf_rdonly_cast` on a socket needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cast {
    /// `struct sock`.
    pub sock: u32,
    /// The function `bpf_rdonly_cast`.
    pub func: u32,
}

/// [`SocketOwner`] from the BTF `btf`.
fn socket_owner_in(btf: &[u8]) -> Result<SocketOwner, BtfError> {
    let sections = Sections::of(btf)?;
    let uid = sections.member("sock", "sk_uid")?;
    if uid.offset == 0 || uid.offset + 4 > uid.struct_size {
        return Err(BtfError::Malformed("sk_uid outside struct sock"));
    }
    let cast = sections
        .id_of(KIND_FUNC, "bpf_rdonly_cast")?
        .map(|func| Cast {
            sock: uid.struct_id,
            func,
        });
    Ok(SocketOwner {
        uid_offset: uid.offset,
        cast,
    })
}

/// [`SocketOwner`] in the running kernel, whose BTF is at `vmlinux`.
pub fn socket_owner(vmlinux: &Path) -> Result<SocketOwner, BtfError> {
    let btf = fs::read(vmlinux).map_err(|source| BtfError::Read {
        path: vmlinux.display().to_string(),
        source,
    })?;
    socket_owner_in(&btf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte offset of `member` in `struct name`, and the struct's
    /// size, in the BTF `btf`.
    fn member_offset(
        btf: &[u8],
        name_: &'static str,
        member: &'static str,
    ) -> Result<(u32, u32), BtfError> {
        let m = Sections::of(btf)?.member(name_, member)?;
        Ok((m.offset, m.struct_size))
    }

    /// A BTF blob with one INT and one STRUCT `sock` { int a; int sk_uid@+8 }
    /// and, `with_cast`, a FUNC `bpf_rdonly_cast`.
    fn blob(bitfields: bool, with_cast: bool) -> Vec<u8> {
        let strings = b"\0int\0sock\0a\0sk_uid\0bpf_rdonly_cast\0";
        let mut types = Vec::new();
        // [1] INT "int" size 4, encoding word.
        for v in [1u32, 1 << 24, 4, 32] {
            types.extend_from_slice(&v.to_le_bytes());
        }
        // [2] STRUCT "sock" size 16, two members.
        let flag = if bitfields { 1 << 31 } else { 0 };
        for v in [5u32, flag | (4 << 24) | 2, 16, 10, 1, 0, 12, 1, 64] {
            types.extend_from_slice(&v.to_le_bytes());
        }
        // [3] FUNC "bpf_rdonly_cast" of type 0.
        if with_cast {
            for v in [19u32, 12 << 24, 0] {
                types.extend_from_slice(&v.to_le_bytes());
            }
        }
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        let type_len = types.len() as u32;
        for v in [24u32, 0, type_len, type_len, strings.len() as u32] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&types);
        b.extend_from_slice(strings);
        b
    }

    #[test]
    fn finds_a_member_by_struct_and_name() {
        for bitfields in [false, true] {
            assert_eq!(
                member_offset(&blob(bitfields, false), "sock", "sk_uid").unwrap(),
                (8, 16)
            );
        }
        assert!(matches!(
            member_offset(&blob(false, false), "sock", "sk_gid"),
            Err(BtfError::Missing { .. })
        ));
        assert!(matches!(
            member_offset(&blob(false, false)[..30], "sock", "sk_uid"),
            Err(BtfError::Malformed(_))
        ));
    }

    #[test]
    fn finds_the_cast_function_and_the_socket_type_by_id() {
        assert_eq!(
            socket_owner_in(&blob(false, true)).unwrap(),
            SocketOwner {
                uid_offset: 8,
                cast: Some(Cast { sock: 2, func: 3 })
            }
        );
        assert_eq!(
            socket_owner_in(&blob(false, false)).unwrap(),
            SocketOwner {
                uid_offset: 8,
                cast: None
            }
        );
    }

    #[test]
    fn finds_sk_uid_and_the_cast_function_in_the_running_kernel() {
        let owner = socket_owner(Path::new(VMLINUX)).unwrap();
        assert!(
            owner.uid_offset > 0 && owner.uid_offset.is_multiple_of(4),
            "{owner:?}"
        );
        // This kernel (6.18) has bpf_rdonly_cast; its ids differ per build.
        let cast = owner.cast.expect("bpf_rdonly_cast in the kernel's BTF");
        assert!(cast.sock > 0 && cast.func > 0 && cast.sock != cast.func);
    }
}
