//! The kernel's batch map operations on per-CPU counter maps
//! (`BPF_MAP_LOOKUP_BATCH`, `BPF_MAP_LOOKUP_AND_DELETE_BATCH`,
//! `BPF_MAP_UPDATE_BATCH`, `BPF_MAP_DELETE_BATCH`).
//!
//! Written by hand because aya 0.14 has no API for them and no maintained
//! crate offers them over an aya map fd: aya reads a hash map with two
//! syscalls per key (get-next-key, lookup) and deletes with one per key,
//! where one batch syscall moves thousands of entries. The attribute layout
//! and command numbers come from aya-obj's generated kernel bindings.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya::Pod;
use aya_obj::generated::{bpf_attr, bpf_cmd};
use trafmon_common::Counters;

/// Entries asked for per syscall; doubled when one hash bucket holds more.
const CHUNK: usize = 8192;

// Per-CPU values are laid out per key as one 8-byte aligned value per
// possible CPU; Counters already is a multiple of 8 bytes.
const _: () = assert!(size_of::<Counters>().is_multiple_of(8));

/// The raw bpf(2) call; returns what it returns (an fd for some commands).
///
/// # Safety
/// `attr` must start zeroed (see [`zeroed_attr`]) with the fields of `cmd`
/// set, and every pointer in it must be valid for the call.
pub unsafe fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<i64> {
    // SAFETY: the caller upholds the contract above.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut(attr),
            size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// An all-zero attribute, as the kernel wants every field a command does
/// not use.
pub fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a C union of integers; all zeroes is valid and is
    // what the kernel expects in every field we do not set.
    unsafe { std::mem::zeroed() }
}

fn raw_fd(fd: BorrowedFd<'_>) -> u32 {
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}

/// Walks every entry of a per-CPU hash map with `cpus` possible CPUs, in
/// batches, calling `each` with the key and its per-CPU values. With
/// `delete`, every entry walked is also deleted (in the same syscall).
/// Returns how many entries were walked.
fn walk<K: Pod>(
    fd: BorrowedFd<'_>,
    cpus: usize,
    delete: bool,
    mut each: impl FnMut(K, &[Counters]),
) -> io::Result<usize> {
    let cmd = if delete {
        bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_BATCH
    } else {
        bpf_cmd::BPF_MAP_LOOKUP_BATCH
    };
    let mut chunk = CHUNK;
    let mut keys = vec![0u8; chunk * size_of::<K>()];
    let mut values = vec![Counters::ZERO; chunk * cpus];
    // Hash maps use a bucket index (u32) as the batch position.
    let (mut pos_in, mut pos_out) = (0u32, 0u32);
    let mut first = true;
    let mut total = 0;
    loop {
        let mut attr = zeroed_attr();
        attr.batch.in_batch = if first {
            0
        } else {
            std::ptr::from_ref(&pos_in) as u64
        };
        attr.batch.out_batch = std::ptr::from_mut(&mut pos_out) as u64;
        attr.batch.keys = keys.as_mut_ptr() as u64;
        attr.batch.values = values.as_mut_ptr() as u64;
        attr.batch.count = u32::try_from(chunk).unwrap_or(u32::MAX);
        attr.batch.map_fd = raw_fd(fd);
        // SAFETY: the batch fields point to `keys`, `values` and the
        // positions, which outlive the call and hold `count` entries.
        let result = unsafe { bpf(cmd, &mut attr) }.map(drop);
        // SAFETY: the kernel wrote back the count of the batch union member.
        let n = unsafe { attr.batch.count } as usize;
        let done = match result {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            // One bucket holds more entries than fit: ask for more.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && n == 0 => {
                chunk *= 2;
                keys.resize(chunk * size_of::<K>(), 0);
                values.resize(chunk * cpus, Counters::ZERO);
                continue;
            }
            Err(e) => return Err(e),
        };
        for i in 0..n.min(chunk) {
            // SAFETY: the kernel wrote `n` packed keys of size_of::<K>()
            // bytes; K is Pod, so any bytes are a valid K.
            let key = unsafe {
                std::ptr::read_unaligned(keys.as_ptr().add(i * size_of::<K>()).cast::<K>())
            };
            each(key, &values[i * cpus..(i + 1) * cpus]);
        }
        total += n;
        if done {
            return Ok(total);
        }
        pos_in = pos_out;
        first = false;
    }
}

/// Calls `each` with every key of a per-CPU counter map and its per-CPU
/// values, reading thousands of entries per syscall.
pub fn lookup_all<K: Pod>(
    fd: BorrowedFd<'_>,
    cpus: usize,
    each: impl FnMut(K, &[Counters]),
) -> io::Result<usize> {
    walk(fd, cpus, false, each)
}

/// Calls `each` with the index and per-CPU values of entries `first..end`
/// of a per-CPU array of counters, many entries per syscall.
pub fn lookup_range(
    fd: BorrowedFd<'_>,
    cpus: usize,
    first: u32,
    end: u32,
    mut each: impl FnMut(u32, &[Counters]),
) -> io::Result<()> {
    // Arrays use the last index read as the batch position.
    let chunk = (CHUNK / cpus.max(1)).max(1);
    let mut keys = vec![0u32; chunk];
    let mut values = vec![Counters::ZERO; chunk * cpus];
    let mut next = first;
    while next < end {
        let want = chunk.min((end - next) as usize);
        let before = next.checked_sub(1);
        let mut pos_out = 0u32;
        let mut attr = zeroed_attr();
        attr.batch.in_batch = before.as_ref().map_or(0, |p| std::ptr::from_ref(p) as u64);
        attr.batch.out_batch = std::ptr::from_mut(&mut pos_out) as u64;
        attr.batch.keys = keys.as_mut_ptr() as u64;
        attr.batch.values = values.as_mut_ptr() as u64;
        attr.batch.count = u32::try_from(want).unwrap_or(u32::MAX);
        attr.batch.map_fd = raw_fd(fd);
        // SAFETY: the batch fields point to `keys`, `values` and the
        // positions, which outlive the call and hold `count` entries.
        let result = unsafe { bpf(bpf_cmd::BPF_MAP_LOOKUP_BATCH, &mut attr) }.map(drop);
        // SAFETY: the kernel wrote back the count of the batch union member.
        let n = (unsafe { attr.batch.count } as usize).min(want);
        match result {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the array ends before index {next}"),
            ));
        }
        for (i, key) in keys[..n].iter().enumerate() {
            each(*key, &values[i * cpus..(i + 1) * cpus]);
        }
        next += n as u32;
    }
    Ok(())
}

/// Deletes every entry of a per-CPU counter map, thousands per syscall.
/// Returns how many there were.
pub fn delete_all<K: Pod>(fd: BorrowedFd<'_>, cpus: usize) -> io::Result<usize> {
    walk::<K>(fd, cpus, true, |_, _| {})
}

/// One `BPF_MAP_DELETE_BATCH` of `keys` (at most `u32::MAX`): how many
/// the kernel deleted, and how the call ended (it stops at the first
/// missing key, with `ENOENT`).
fn delete_batch<K: Pod>(fd: BorrowedFd<'_>, keys: &[K]) -> (usize, io::Result<i64>) {
    let mut attr = zeroed_attr();
    attr.batch.keys = keys.as_ptr() as u64;
    attr.batch.count = u32::try_from(keys.len()).unwrap_or(u32::MAX);
    attr.batch.map_fd = raw_fd(fd);
    // SAFETY: the batch fields point to `keys`, which holds `count` keys
    // and outlives the call.
    let result = unsafe { bpf(bpf_cmd::BPF_MAP_DELETE_BATCH, &mut attr) };
    // SAFETY: the kernel wrote back how many keys it deleted.
    let n = (unsafe { attr.batch.count } as usize).min(keys.len());
    (n, result)
}

/// Deletes `keys`, thousands per syscall (`BPF_MAP_DELETE_BATCH`); the
/// benchmarks compare it with [`delete_all`]. Fails with `ENOENT` if a key
/// is missing.
pub fn delete<K: Pod>(fd: BorrowedFd<'_>, keys: &[K]) -> io::Result<()> {
    for k in keys.chunks(CHUNK) {
        delete_batch(fd, k).1?;
    }
    Ok(())
}

/// Deletes those of `keys` that the map holds, thousands per syscall
/// (`BPF_MAP_DELETE_BATCH`): unlike [`delete`], a missing key is skipped.
/// Returns how many were deleted.
pub fn delete_present<K: Pod>(
    fd: BorrowedFd<'_>,
    keys: impl IntoIterator<Item = K>,
) -> io::Result<usize> {
    let mut keys = keys.into_iter().peekable();
    let mut chunk: Vec<K> = Vec::with_capacity(CHUNK);
    let mut deleted = 0;
    while keys.peek().is_some() {
        chunk.clear();
        chunk.extend(keys.by_ref().take(CHUNK));
        let mut rest = chunk.as_slice();
        while !rest.is_empty() {
            let (n, result) = delete_batch(fd, rest);
            deleted += n;
            match result {
                Ok(_) => break,
                // The kernel stops at the first missing key: skip it.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    rest = rest.get(n + 1..).unwrap_or_default();
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(deleted)
}

/// Writes `keys[i]` with the values `values[i * cpus..][..cpus]` (one per
/// CPU in a per-CPU map; `cpus` is 1 for any other map), thousands per
/// syscall (benchmarks fill maps with it).
pub fn update<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    cpus: usize,
    keys: &[K],
    values: &[V],
) -> io::Result<()> {
    assert_eq!(values.len(), keys.len() * cpus, "one value per key and CPU");
    for (k, v) in keys.chunks(CHUNK).zip(values.chunks(CHUNK * cpus)) {
        let mut attr = zeroed_attr();
        attr.batch.keys = k.as_ptr() as u64;
        attr.batch.values = v.as_ptr() as u64;
        attr.batch.count = u32::try_from(k.len()).unwrap_or(u32::MAX);
        attr.batch.map_fd = raw_fd(fd);
        // SAFETY: the batch fields point to `k` and `v`, which hold
        // `count` entries and outlive the call.
        unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_BATCH, &mut attr) }?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd as _, FromRawFd as _, OwnedFd};

    use aya_obj::generated::bpf_map_type;
    use trafmon_common::IpKey;

    use super::*;

    /// A per-CPU hash shaped like the address maps (needs root).
    fn ip_map(max_entries: u32) -> OwnedFd {
        let mut attr = zeroed_attr();
        // SAFETY: the map-create member of the union, on a zeroed attr.
        unsafe {
            let create = &mut attr.__bindgen_anon_1;
            create.map_type = bpf_map_type::BPF_MAP_TYPE_PERCPU_HASH as u32;
            create.key_size = size_of::<IpKey>() as u32;
            create.value_size = size_of::<Counters>() as u32;
            create.max_entries = max_entries;
        }
        // SAFETY: attr is zeroed with the map-create fields set.
        let fd = unsafe { bpf(bpf_cmd::BPF_MAP_CREATE, &mut attr) }
            .expect("cannot create a BPF map: the unit tests of batch.rs need root");
        // SAFETY: BPF_MAP_CREATE returned a new fd that nothing else owns.
        unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).unwrap()) }
    }

    fn key(n: u32) -> IpKey {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&n.to_be_bytes());
        IpKey { addr, family: 4 }
    }

    #[test]
    fn delete_present_deletes_what_the_map_holds_and_skips_the_rest() {
        let cpus = aya::util::nr_cpus().unwrap();
        let map = ip_map(1024);
        // Every even number, held; the odd ones and those past 600 are not.
        let held: Vec<IpKey> = (0..300).map(|n| key(n * 2)).collect();
        update(
            map.as_fd(),
            cpus,
            &held,
            &vec![Counters::ZERO; held.len() * cpus],
        )
        .unwrap();
        // 0..500 asks for 250 held keys among 250 missing ones, with a run
        // of missing keys at the end, in more than one syscall's worth.
        let asked = (0..500).map(key).chain((10_000..30_000).map(key));
        assert_eq!(delete_present(map.as_fd(), asked).unwrap(), 250);
        let mut left = Vec::new();
        lookup_all(map.as_fd(), cpus, |k: IpKey, _| left.push(k)).unwrap();
        left.sort_unstable();
        assert_eq!(left, (250..300).map(|n| key(n * 2)).collect::<Vec<_>>());
        assert_eq!(
            delete_present(map.as_fd(), std::iter::empty::<IpKey>()).unwrap(),
            0
        );
    }
}
