//! Every path trafmon uses on bpffs and on disk, in one place.
//!
//! Live kernel counters belong to bpffs (they die with a reboot); history
//! belongs to the store under the state directory. The two are kept apart.

use std::path::{Path, PathBuf};

/// Where bpffs is mounted when trafmon mounts it.
pub const BPFFS_MOUNT: &str = "/sys/fs/bpf";
/// Default root of trafmon's pins.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/trafmon";
/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/trafmon/trafmon.toml";
/// Default state directory (the store lives here).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/trafmon";

/// One attachment of a program, named stably for its pinned link.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attachment {
    /// cgroup_skb ingress on the configured cgroup.
    CgroupIngress,
    /// cgroup_skb egress on the configured cgroup.
    CgroupEgress,
    /// tc ingress on the named interface.
    TcIngress(String),
    /// tc egress on the named interface.
    TcEgress(String),
}

impl Attachment {
    /// The file name of its pinned link.
    pub fn pin_name(&self) -> String {
        match self {
            Self::CgroupIngress => "cgroup_ingress".into(),
            Self::CgroupEgress => "cgroup_egress".into(),
            Self::TcIngress(ifname) => format!("tc_ingress@{ifname}"),
            Self::TcEgress(ifname) => format!("tc_egress@{ifname}"),
        }
    }

    /// Parses a pinned link's file name back.
    pub fn from_pin_name(name: &str) -> Option<Self> {
        match name {
            "cgroup_ingress" => Some(Self::CgroupIngress),
            "cgroup_egress" => Some(Self::CgroupEgress),
            _ => {
                if let Some(ifname) = name.strip_prefix("tc_ingress@") {
                    Some(Self::TcIngress(ifname.into()))
                } else {
                    name.strip_prefix("tc_egress@")
                        .map(|ifname| Self::TcEgress(ifname.into()))
                }
            }
        }
    }

    /// The same tc attachment on interface `ifname` (`None` for the
    /// cgroup ones).
    pub fn on(&self, ifname: &str) -> Option<Self> {
        match self {
            Self::TcIngress(_) => Some(Self::TcIngress(ifname.into())),
            Self::TcEgress(_) => Some(Self::TcEgress(ifname.into())),
            Self::CgroupIngress | Self::CgroupEgress => None,
        }
    }

    /// The interface of a tc attachment.
    pub fn interface(&self) -> Option<&str> {
        match self {
            Self::TcIngress(ifname) | Self::TcEgress(ifname) => Some(ifname),
            Self::CgroupIngress | Self::CgroupEgress => None,
        }
    }
}

/// The layout of a pin directory: `maps/` holds the maps by name, `links/`
/// the links by [`Attachment::pin_name`].
#[derive(Clone, Debug)]
pub struct PinDir {
    root: PathBuf,
}

impl PinDir {
    /// A pin directory rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of the pinned maps.
    pub fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }

    /// Path of the pinned map `name`.
    pub fn map(&self, name: &str) -> PathBuf {
        self.maps().join(name)
    }

    /// Directory of the pinned links.
    pub fn links(&self) -> PathBuf {
        self.root.join("links")
    }

    /// Path of the pinned link of `attachment`.
    pub fn link(&self, attachment: &Attachment) -> PathBuf {
        self.links().join(attachment.pin_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_names_round_trip() {
        for a in [
            Attachment::CgroupIngress,
            Attachment::CgroupEgress,
            Attachment::TcIngress("eth0".into()),
            Attachment::TcEgress("veth-a.1@x".into()),
        ] {
            assert_eq!(Attachment::from_pin_name(&a.pin_name()), Some(a));
        }
        assert_eq!(Attachment::from_pin_name("something_else"), None);
    }
}
