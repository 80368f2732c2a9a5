//! Network interfaces of the agent's network namespace, from netlink
//! (getifaddrs), never from /sys/class/net, which shows the namespace that
//! sysfs was mounted in.

use std::collections::BTreeMap;

use nix::{ifaddrs::getifaddrs, net::if_::InterfaceFlags};

/// `ARPHRD_ETHER`: Ethernet-like devices (veth, bridges, bonds, macvlan).
const ARPHRD_ETHER: u16 = 1;
/// `ARPHRD_LOOPBACK`: the loopback device.
const ARPHRD_LOOPBACK: u16 = 772;

/// What comes in front of the IP header at the tc hooks of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// An Ethernet header, which the interface's own statistics count.
    Ethernet,
    /// An Ethernet header (of zeroes) that the interface's own statistics
    /// do not count: the loopback device.
    Loopback,
    /// Nothing: the IP header comes first (tun, WireGuard, PPP).
    Ip,
}

impl Framing {
    /// The framing of a device of link type `hatype` (`ARPHRD_*`).
    pub fn of(hatype: u16) -> Self {
        match hatype {
            ARPHRD_ETHER => Self::Ethernet,
            ARPHRD_LOOPBACK => Self::Loopback,
            _ => Self::Ip,
        }
    }
}

/// What trafmon needs to know about one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// A loopback device.
    pub loopback: bool,
    /// What comes in front of the IP header.
    pub framing: Framing,
}

/// Every interface of this network namespace, by name.
pub fn list() -> nix::Result<BTreeMap<String, Interface>> {
    let mut out: BTreeMap<String, Interface> = BTreeMap::new();
    for ifa in getifaddrs()? {
        let entry = out
            .entry(ifa.interface_name.clone())
            .or_insert_with(|| Interface {
                name: ifa.interface_name.clone(),
                loopback: false,
                // Devices without a link-layer address (tun, WireGuard)
                // have no AF_PACKET entry to tell their type by.
                framing: Framing::Ip,
            });
        entry.loopback |= ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK);
        if let Some(link) = ifa.address.as_ref().and_then(|a| a.as_link_addr()) {
            entry.framing = Framing::of(link.hatype());
        }
    }
    Ok(out)
}

/// The name of interface `ifindex` in this namespace, if it exists.
pub fn name_of(ifindex: u32) -> Option<String> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_follows_the_link_type() {
        assert_eq!(Framing::of(1), Framing::Ethernet);
        assert_eq!(Framing::of(772), Framing::Loopback);
        // ARPHRD_NONE (tun, WireGuard) and ARPHRD_PPP.
        assert_eq!(Framing::of(0xfffe), Framing::Ip);
        assert_eq!(Framing::of(512), Framing::Ip);
    }

    #[test]
    fn this_namespace_has_a_loopback_device() {
        let lo = list().expect("getifaddrs");
        let lo = lo.values().find(|i| i.loopback).expect("a loopback device");
        assert_eq!(lo.framing, Framing::Loopback, "{lo:?}");
    }
}
