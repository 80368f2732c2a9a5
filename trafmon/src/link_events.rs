//! Word from the kernel that an interface appeared, went or changed
//! (rtnetlink's link group), so that the agent attaches to a new device
//! within milliseconds instead of at its next flush.
//!
//! Only the arrival of a message matters, not its content: the agent then
//! lists the interfaces again ([`crate::loader::Installed::sync_interfaces`]),
//! so no message is parsed. A crate for rtnetlink would bring a netlink
//! message model and its own runtime glue for what is one socket and one
//! `recv` loop here.

use std::{io, os::fd::OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, socket,
};
use tokio::io::unix::AsyncFd;

/// A netlink socket subscribed to link events.
pub struct LinkEvents(AsyncFd<OwnedFd>);

impl LinkEvents {
    /// Subscribes to the link events of this network namespace.
    pub fn subscribe() -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        let groups = u32::try_from(libc::RTMGRP_LINK).unwrap_or(1);
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &NetlinkAddr::new(0, groups),
        )?;
        // SAFETY: an OwnedFd is a valid open descriptor that stays the same
        // until the AsyncFd, which owns it, is dropped.
        Ok(Self(unsafe {
            AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }?))
    }

    /// Waits for one or more events and takes every message queued. A
    /// receive buffer that overflowed (`ENOBUFS`) also counts as an event:
    /// something changed.
    pub async fn changed(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let mut ready = self.0.readable().await?;
            let mut got = false;
            loop {
                match recv(
                    std::os::fd::AsRawFd::as_raw_fd(ready.get_inner()),
                    &mut buf,
                    MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(_) | Err(nix::errno::Errno::ENOBUFS) => got = true,
                    Err(nix::errno::Errno::EAGAIN) => break,
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            ready.clear_ready();
            if got {
                return Ok(());
            }
        }
    }
}
