//! `trafgen userns-loop BASE INNER SIZE COUNT` (as root): in a new user
//! namespace that maps its UIDs and GIDs 0..65536 to the host's BASE.. (as
//! an unprivileged container's does), with a network namespace of its own,
//! becomes UID INNER there and sends COUNT datagrams of SIZE payload bytes
//! to itself over that namespace's loopback, receiving each. Prints `sent
//! N` (payload bytes) once all of them went and came back whole.
//!
//! A forked child unshares the namespaces; the parent, root on the host,
//! writes the child's UID and GID maps, which only a process privileged in
//! the parent namespace may.

use std::{
    fs,
    io::{self, Error},
    net::UdpSocket,
    os::fd::RawFd,
    process::Command,
    time::Duration,
};

/// The UIDs and GIDs the namespace maps, as a container's.
const RANGE: u32 = 65536;

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(Error::last_os_error())
    } else {
        Ok(())
    }
}

fn pipe() -> io::Result<[RawFd; 2]> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    check(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
    Ok(fds)
}

/// One byte through `fd`: a step of the handshake.
fn signal(fd: RawFd) -> io::Result<()> {
    // SAFETY: writes one byte from a live buffer.
    match unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) } {
        1 => Ok(()),
        _ => Err(Error::last_os_error()),
    }
}

/// Waits for one byte on `fd`; fails when the other side went away.
fn wait(fd: RawFd) -> io::Result<()> {
    let mut b = [0u8; 1];
    // SAFETY: reads at most one byte into a live buffer.
    match unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) } {
        1 => Ok(()),
        0 => Err(Error::other("the other side of the handshake went away")),
        _ => Err(Error::last_os_error()),
    }
}

pub fn run(base: u32, inner: u32, size: usize, count: u32) -> io::Result<String> {
    if inner >= RANGE || count > 100_000 {
        return Err(Error::other(
            "INNER must be below 65536 and COUNT at most 100000",
        ));
    }
    let [unshared_r, unshared_w] = pipe()?;
    let [mapped_r, mapped_w] = pipe()?;
    // SAFETY: trafgen has one thread here; the child only runs this
    // function's code and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: closing this process's copies of the parent's ends.
        unsafe {
            libc::close(unshared_r);
            libc::close(mapped_w);
        }
        let code = match child(unshared_w, mapped_r, inner, size, count) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("trafgen userns-loop (in the namespace): {e}");
                1
            }
        };
        // SAFETY: ends the child without running the parent's exit code.
        unsafe { libc::_exit(code) };
    }
    check(pid)?;
    // SAFETY: closing the parent's copies of the child's ends.
    unsafe {
        libc::close(unshared_w);
        libc::close(mapped_r);
    }
    wait(unshared_r)?;
    let map = format!("0 {base} {RANGE}\n");
    fs::write(format!("/proc/{pid}/uid_map"), &map)?;
    fs::write(format!("/proc/{pid}/gid_map"), &map)?;
    signal(mapped_w)?;
    let mut status = 0;
    // SAFETY: waits for our own child.
    check(unsafe { libc::waitpid(pid, &mut status, 0) })?;
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(Error::other(format!("the child failed (status {status})")));
    }
    Ok(format!("sent {}", size as u64 * u64::from(count)))
}

/// Takes UID and GID `id` of the namespace, without supplementary groups.
fn take_ids(id: u32) -> io::Result<()> {
    // SAFETY: plain syscalls on this process.
    unsafe {
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setresgid(id, id, id))?;
        check(libc::setresuid(id, id, id))
    }
}

fn child(unshared: RawFd, mapped: RawFd, inner: u32, size: usize, count: u32) -> io::Result<()> {
    // SAFETY: plain syscalls on this process.
    check(unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) })?;
    signal(unshared)?;
    wait(mapped)?;
    // The namespace's root (the host's BASE), which keeps its capabilities
    // there across the exec of `ip` that brings the loopback up.
    take_ids(0)?;
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()?;
    if !up.success() {
        return Err(Error::other(format!("ip link set lo up: {up}")));
    }
    take_ids(inner)?;
    let receiver = UdpSocket::bind("127.0.0.1:0")?;
    receiver.set_read_timeout(Some(Duration::from_secs(5)))?;
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let to = receiver.local_addr()?;
    let payload = vec![0x5au8; size];
    let mut buf = vec![0u8; size + 1];
    for _ in 0..count {
        sender.send_to(&payload, to)?;
        let n = receiver.recv(&mut buf)?;
        if n != size {
            return Err(Error::other(format!("received {n} bytes, sent {size}")));
        }
    }
    Ok(())
}
