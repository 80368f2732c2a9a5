//! Network interfaces of the agent's network namespace, from netlink
//! (getifaddrs), never from /sys/class/net, which shows the namespace that
//! sysfs was mounted in.

use std::collections::BTreeMap;

use nix::{ifaddrs::getifaddrs, net::if_::InterfaceFlags};

/// `ARPHRD_ETHER`: Ethernet-like devices (veth, bridges, bonds, macvlan).
const ARPHRD_ETHER: u16 = 1;

/// What trafmon needs to know about one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Administratively up.
    pub up: bool,
    /// A loopback device.
    pub loopback: bool,
    /// Frames carry an Ethernet header in front of the IP header.
    pub ethernet: bool,
}

/// Every interface of this network namespace, by name.
pub fn list() -> nix::Result<BTreeMap<String, Interface>> {
    let mut out: BTreeMap<String, Interface> = BTreeMap::new();
    for ifa in getifaddrs()? {
        let entry = out
            .entry(ifa.interface_name.clone())
            .or_insert_with(|| Interface {
                name: ifa.interface_name.clone(),
                up: false,
                loopback: false,
                ethernet: false,
            });
        entry.up |= ifa.flags.contains(InterfaceFlags::IFF_UP);
        entry.loopback |= ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK);
        if let Some(link) = ifa.address.as_ref().and_then(|a| a.as_link_addr()) {
            entry.ethernet = link.hatype() == ARPHRD_ETHER;
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
