//! Loading the eBPF object, attaching its programs and pinning maps and
//! links, so that counting goes on while no agent runs; and removing all of
//! it again.
//!
//! Maps are pinned by name under `<pin_dir>/maps` and reused on every load,
//! so a restarted or upgraded agent writes the same counters. Links are
//! pinned under `<pin_dir>/links`: a pinned tc link gets the newly loaded
//! program atomically (a link update, for TCX and cgroup links alike: no
//! packet is counted twice or missed).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs, io,
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, LpmTrie, lpm_trie::Key},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, ProgramError, SchedClassifier,
        links::{FdLink, LinkError},
    },
};
use ipnet::IpNet;
use nix::fcntl::Flock;
use trafmon_common as common;

use crate::{
    clsact,
    config::{AddressInterfaces, CgroupSetting, Cidr, Config, Interfaces},
    exclusive::{self, LockError},
    ifaces::Framing,
    layout::{self, LayoutError},
    mounts::{self, MountError},
    paths::{Attachment, PinDir},
    relink, resize,
};

mod interfaces;
mod kfunc;
mod owner;

/// The eBPF object built by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/trafmon"));

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// bpffs or cgroup fs trouble.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The object could not be loaded (verifier, permissions, map mismatch).
    #[error("cannot load the eBPF programs (are you root?)")]
    Load(#[source] aya::EbpfError),
    /// A program is missing from the object or failed to load.
    #[error("program {name}")]
    Program {
        /// Its name.
        name: &'static str,
        /// Why.
        #[source]
        source: ProgramError,
    },
    /// The cgroup directory cannot be opened.
    #[error("cannot open cgroup {path}")]
    Cgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Attaching failed.
    #[error("cannot attach {what}")]
    Attach {
        /// Which attachment.
        what: String,
        /// Why.
        #[source]
        source: ProgramError,
    },
    /// The pinned cgroup links count another cgroup than the configured
    /// one. Moving them is not atomic (a packet would be counted twice or
    /// not at all), so it takes an uninstall.
    #[error(
        "cgroup: the pinned programs count another cgroup (id {counted}) than {}; stop the agent and run `trafmon uninstall` before changing `cgroup`",
        path.display()
    )]
    CgroupChanged {
        /// The configured cgroup.
        path: PathBuf,
        /// The id of the cgroup the pinned links count.
        counted: u64,
    },
    /// The configured cgroup is not a directory of the cgroup v2
    /// hierarchy (a cgroup v1 controller, any other directory).
    #[error(
        "cgroup: {} is not a cgroup v2 directory; cgroup_skb programs attach only there (the v2 hierarchy: {})",
        path.display(),
        mounts::cgroup2_root().map_or_else(|_| "not mounted".into(), |p| p.display().to_string())
    )]
    NotCgroup2 {
        /// The configured cgroup.
        path: PathBuf,
    },
    /// A pinned link could not be opened or given the new program.
    #[error("cannot give the pinned link of {what} the new program")]
    Update {
        /// Which attachment.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// This pin directory's tc filters (clsact) could not be deleted.
    #[error(transparent)]
    Filters(#[from] clsact::DetachError),
    /// A bad `TRAFMON_FAULT_SOCKET_OWNER`.
    #[error("{0}")]
    Fault(String),
    /// The object's kernel-function calls could not be resolved.
    #[error(transparent)]
    Kfunc(#[from] kfunc::KfuncError),
    /// A bad `TRAFMON_TC`.
    #[error(transparent)]
    TcMode(#[from] clsact::ModeError),
    /// A pinned map has another layout than this build's.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Another agent uses the pin directory.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Converting or pinning a link failed.
    #[error("cannot pin the link of {what} at {path}")]
    Pin {
        /// Which attachment.
        what: String,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The object lacks a map.
    #[error("the eBPF object has no map {name}")]
    MissingMap {
        /// Its name.
        name: &'static str,
    },
    /// Writing the local networks failed.
    #[error("cannot write the local networks")]
    LocalNetworks {
        /// Why.
        #[source]
        source: aya::maps::MapError,
    },
    /// Listing interfaces failed.
    #[error("cannot list network interfaces")]
    Interfaces(#[source] nix::Error),
    /// Renaming a pinned link after its interface failed.
    #[error("cannot rename {from} to {}", to.display())]
    Rename {
        /// The pin.
        from: PathBuf,
        /// Its new name.
        to: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Removing a pin failed.
    #[error("cannot remove {path}")]
    Remove {
        /// What.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The loaded programs and what they are attached to. Dropping it leaves the
/// pinned links (and so the counting) in place.
pub struct Installed {
    ebpf: Ebpf,
    pins: PinDir,
    cgroup: PathBuf,
    interfaces: Interfaces,
    addresses: AddressInterfaces,
    attached: BTreeSet<Attachment>,
    /// Configured interfaces already reported missing (warned once each).
    missing: BTreeSet<String>,
    /// How the tc programs are attached.
    mode: clsact::Mode,
    /// This pin directory's filters, in [`clsact::Mode::Clsact`].
    filter: clsact::Filter,
    /// In [`clsact::Mode::Clsact`]: the device (ifindex) each interface's
    /// filters were put on, by the interface's name then.
    devices: BTreeMap<String, u32>,
    /// In [`clsact::Mode::Clsact`]: whether the filters of interfaces no
    /// longer watched have been looked for (once, at the start).
    swept: bool,
}

const CGROUP_INGRESS: &str = "cgroup_ingress";
const CGROUP_EGRESS: &str = "cgroup_egress";

/// The tc programs (ingress, egress) for interfaces of `framing`, counting
/// their addresses too or the device only.
fn tc_programs(framing: Framing, addresses: bool) -> [&'static str; 2] {
    match (framing, addresses) {
        (Framing::Ethernet, true) => ["tc_eth_ingress", "tc_eth_egress"],
        (Framing::Ip, true) => ["tc_ip_ingress", "tc_ip_egress"],
        (Framing::Loopback, true) => ["tc_lo_ingress", "tc_lo_egress"],
        (Framing::Ethernet, false) => ["tcd_eth_ingress", "tcd_eth_egress"],
        (Framing::Ip, false) => ["tcd_ip_ingress", "tcd_ip_egress"],
        (Framing::Loopback, false) => ["tcd_lo_ingress", "tcd_lo_egress"],
    }
}

/// The cgroup directory that `setting` names.
pub fn cgroup_path(setting: &CgroupSetting) -> Result<PathBuf, MountError> {
    match setting {
        CgroupSetting::Root => mounts::cgroup2_root(),
        CgroupSetting::Path(p) => Ok(p.clone()),
    }
}

impl Installed {
    /// Loads the programs (reusing pinned maps), attaches them to the cgroup
    /// and the interfaces of `config`, and pins everything.
    pub fn install(config: &Config) -> Result<Self, LoaderError> {
        let mode = clsact::mode()?;
        let pins = PinDir::new(&config.pin_dir);
        mounts::ensure_bpffs(pins.root())?;
        for dir in [pins.maps(), pins.links()] {
            fs::create_dir_all(&dir)
                .map_err(|source| MountError::CreateDir { path: dir, source })?;
        }
        // Both checks come before anything is loaded or written, so that a
        // refused start leaves the running programs as they are.
        layout::check(OBJECT, &pins, &resize::RESIZABLE)?;
        let cgroup = cgroup_path(&config.cgroup)?;
        check_cgroup_links(&pins, &cgroup)?;
        let mut loader = EbpfLoader::new();
        loader.default_map_pin_directory(pins.maps());
        for name in resize::RESIZABLE {
            if let Some(entries) = resize::configured(&config.maps, name) {
                loader.map_max_entries(name, entries);
            }
        }
        // How the cgroup programs read a socket's owner, so that they count
        // the UID as the host sees it, also for sockets in user namespaces
        // (containers).
        let owner_path = crate::fault::OwnerPath::from_env().map_err(LoaderError::Fault)?;
        let owner = owner::Owner::of_kernel(owner_path);
        owner.set(&mut loader);
        let (object, _) = kfunc::resolve(OBJECT, owner.func)?;
        let ebpf = loader.load(object.bytes()).map_err(LoaderError::Load)?;
        let mut this = Self {
            ebpf,
            pins,
            cgroup,
            interfaces: config.interfaces.clone(),
            addresses: config.address_interfaces.clone(),
            attached: BTreeSet::new(),
            missing: BTreeSet::new(),
            mode,
            filter: clsact::Filter::of(&config.pin_dir),
            devices: BTreeMap::new(),
            swept: false,
        };
        this.load_programs()?;
        this.set_local_networks(&config.local_networks)?;
        this.attach_cgroup()?;
        this.sync_interfaces()?;
        Ok(this)
    }

    /// The cgroup the cgroup_skb programs are attached to.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// How the tc programs are attached.
    pub fn tc_mode(&self) -> clsact::Mode {
        self.mode
    }

    /// What is attached now.
    pub fn attached(&self) -> &BTreeSet<Attachment> {
        &self.attached
    }

    /// Writes the local networks into the pinned tries and tells the
    /// programs whether to consult them.
    fn set_local_networks(&mut self, nets: &[Cidr]) -> Result<(), LoaderError> {
        let v4 = nets.iter().filter_map(|n| match n.0 {
            IpNet::V4(n) => Some(Key::new(u32::from(n.prefix_len()), n.network().octets())),
            IpNet::V6(_) => None,
        });
        replace_trie(self.map_mut(common::LOCAL4)?, v4)?;
        let v6 = nets.iter().filter_map(|n| match n.0 {
            IpNet::V6(n) => Some(Key::new(u32::from(n.prefix_len()), n.network().octets())),
            IpNet::V4(_) => None,
        });
        replace_trie(self.map_mut(common::LOCAL6)?, v6)?;
        let map_err = |source| LoaderError::LocalNetworks { source };
        let mut settings =
            Array::<_, u32>::try_from(self.map_mut(common::SETTINGS)?).map_err(map_err)?;
        // The other flags belong to the quota engine: keep them, so that a
        // restart does not lift enforcement even for a moment.
        let mut flags = settings.get(&0, 0).map_err(map_err)? & !common::SETTING_LOCAL_NETWORKS;
        if !nets.is_empty() {
            flags |= common::SETTING_LOCAL_NETWORKS;
        }
        settings.set(0, flags, 0).map_err(map_err)
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, LoaderError> {
        self.ebpf
            .map_mut(name)
            .ok_or(LoaderError::MissingMap { name })
    }

    fn load_programs(&mut self) -> Result<(), LoaderError> {
        for name in [CGROUP_INGRESS, CGROUP_EGRESS] {
            let prog: &mut CgroupSkb = self.program(name)?;
            prog.load()
                .map_err(|source| LoaderError::Program { name, source })?;
        }
        for name in [Framing::Ethernet, Framing::Ip, Framing::Loopback]
            .into_iter()
            .flat_map(|f| [true, false].map(|addresses| tc_programs(f, addresses)))
            .flatten()
        {
            let prog: &mut SchedClassifier = self.program(name)?;
            prog.load()
                .map_err(|source| LoaderError::Program { name, source })?;
        }
        Ok(())
    }

    fn program<'a, P>(&'a mut self, name: &'static str) -> Result<&'a mut P, LoaderError>
    where
        &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        let prog = self.ebpf.program_mut(name).ok_or(LoaderError::Program {
            name,
            source: ProgramError::NotLoaded,
        })?;
        prog.try_into()
            .map_err(|source| LoaderError::Program { name, source })
    }

    fn attach_cgroup(&mut self) -> Result<(), LoaderError> {
        let dir = fs::File::open(&self.cgroup).map_err(|source| LoaderError::Cgroup {
            path: self.cgroup.clone(),
            source,
        })?;
        for (attachment, name, kind) in [
            (
                Attachment::CgroupIngress,
                CGROUP_INGRESS,
                CgroupSkbAttachType::Ingress,
            ),
            (
                Attachment::CgroupEgress,
                CGROUP_EGRESS,
                CgroupSkbAttachType::Egress,
            ),
        ] {
            let path = self.pins.link(&attachment);
            let what = format!("{name} to {}", self.cgroup.display());
            let prog: &mut CgroupSkb = self.program(name)?;
            // Still attached from an earlier run: swap in the new program
            // atomically, so that an upgrade takes effect (and programs
            // loaded with recreated maps write them).
            match relink::open_pinned(&path) {
                Ok(link) => {
                    let program = prog
                        .fd()
                        .map_err(|source| LoaderError::Program { name, source })?;
                    match relink::update(link.as_fd(), program.as_fd()) {
                        Ok(()) => {
                            self.attached.insert(attachment);
                            continue;
                        }
                        // Defunct (the cgroup was recreated): start over.
                        Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => remove_pin(&path)?,
                        Err(source) => return Err(LoaderError::Update { what, source }),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(LoaderError::Update { what, source }),
            }
            // A cgroup bpf_link takes no flags (EINVAL otherwise): links always
            // coexist with other programs on the cgroup.
            let id = prog
                .attach(&dir, kind, CgroupAttachMode::Single)
                .map_err(|source| LoaderError::Attach {
                    what: what.clone(),
                    source,
                })?;
            pin(prog.take_link(id), &path, &what)?;
            self.attached.insert(attachment);
        }
        Ok(())
    }
}

/// The configured cgroup; fails when the pinned cgroup links under
/// `config`'s pin directory count another one: the check a start makes
/// before loading anything, for a reload to make before it stops serving.
pub fn check_cgroup(config: &Config) -> Result<PathBuf, LoaderError> {
    let cgroup = cgroup_path(&config.cgroup)?;
    check_cgroup_links(&PinDir::new(&config.pin_dir), &cgroup)?;
    Ok(cgroup)
}

/// Fails when the pinned cgroup links count another cgroup than `cgroup`
/// (links of a removed cgroup, id 0, are replaced on attach).
fn check_cgroup_links(pins: &PinDir, cgroup: &Path) -> Result<(), LoaderError> {
    let cgroup_err = |source| LoaderError::Cgroup {
        path: cgroup.into(),
        source,
    };
    // A cgroup's id is its directory's inode number.
    let wanted = fs::metadata(cgroup).map_err(cgroup_err)?.ino();
    let fs_type = nix::sys::statfs::statfs(cgroup)
        .map_err(|e| cgroup_err(e.into()))?
        .filesystem_type();
    if fs_type != nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        return Err(LoaderError::NotCgroup2 {
            path: cgroup.into(),
        });
    }
    for attachment in [Attachment::CgroupIngress, Attachment::CgroupEgress] {
        let path = pins.link(&attachment);
        let what = || format!("{} to {}", attachment.pin_name(), cgroup.display());
        let link = match relink::open_pinned(&path) {
            Ok(link) => link,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(LoaderError::Update {
                    what: what(),
                    source,
                });
            }
        };
        let counted = relink::cgroup_id(link.as_fd()).map_err(|source| LoaderError::Update {
            what: what(),
            source,
        })?;
        if counted != 0 && counted != wanted {
            return Err(LoaderError::CgroupChanged {
                path: cgroup.into(),
                counted,
            });
        }
    }
    Ok(())
}

/// Makes the local-network trie `map` hold exactly `keys`.
fn replace_trie<const N: usize>(
    map: &mut aya::maps::Map,
    keys: impl Iterator<Item = Key<[u8; N]>>,
) -> Result<(), LoaderError> {
    let map_err = |source| LoaderError::LocalNetworks { source };
    let mut trie = LpmTrie::<_, [u8; N], u8>::try_from(map).map_err(map_err)?;
    let old: Vec<_> = trie.keys().collect::<Result<_, _>>().map_err(map_err)?;
    for key in old {
        trie.remove(&key).map_err(map_err)?;
    }
    for key in keys {
        trie.insert(&key, 1, 0).map_err(map_err)?;
    }
    Ok(())
}

/// Pins at `path` the link that `taken` (a program's `take_link`) gave up.
fn pin<L>(taken: Result<L, ProgramError>, path: &Path, what: &str) -> Result<(), LoaderError>
where
    FdLink: TryFrom<L, Error = LinkError>,
{
    let pin_error = |e: Box<dyn std::error::Error + Send + Sync>| LoaderError::Pin {
        what: what.into(),
        path: path.into(),
        source: e,
    };
    let link = taken.map_err(|source| LoaderError::Attach {
        what: what.into(),
        source,
    })?;
    let fd = FdLink::try_from(link).map_err(|e| pin_error(Box::new(e)))?;
    fd.pin(path).map(drop).map_err(|e| pin_error(Box::new(e)))
}

/// The `result` of removing `path`, where a `path` already gone is fine.
fn removed(path: &Path, result: io::Result<()>) -> Result<(), LoaderError> {
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(LoaderError::Remove {
            path: path.into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Removes the pin `path` if it is there (a link pin: detaches it).
pub fn remove_pin(path: &Path) -> Result<(), LoaderError> {
    removed(path, fs::remove_file(path))
}

/// The attachments that have a pinned link.
fn pinned_links(pins: &PinDir) -> Result<Vec<Attachment>, LoaderError> {
    let dir = pins.links();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(LoaderError::Remove { path: dir, source }),
    };
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|e| Attachment::from_pin_name(&e.file_name().to_string_lossy()))
        .collect())
}

/// Mounts bpffs if needed, creates the pin directory and locks it for
/// this agent ([`exclusive`]), for as long as the lock lives.
pub fn lock_pins(pins: &PinDir) -> Result<Flock<fs::File>, LoaderError> {
    mounts::ensure_bpffs(pins.root())?;
    fs::create_dir_all(pins.root()).map_err(|source| MountError::CreateDir {
        path: pins.root().into(),
        source,
    })?;
    Ok(exclusive::lock_dir(pins.root())?)
}

/// Checks the maps pinned under `pins` against this build's object
/// ([`layout`]).
pub fn check_layout(pins: &PinDir) -> Result<(), LayoutError> {
    layout::check(OBJECT, pins, &resize::RESIZABLE)
}

/// Detaches every program and removes every pin under `pin_dir`, then the
/// directory itself, dropping what the maps hold; refuses while an agent
/// runs on it. Returns how many pins there were. `trafmon uninstall`
/// stores the maps' counts first ([`crate::uninstall`]).
pub fn uninstall(pin_dir: &Path) -> Result<usize, LoaderError> {
    let pins = PinDir::new(pin_dir);
    let _lock = match exclusive::lock_dir(pin_dir) {
        Err(LockError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => None,
        other => Some(other?),
    };
    let removed = remove_pins(&pins.links())?;
    detach_filters(pin_dir)?;
    let removed = removed + remove_pins(&pins.maps())?;
    remove_dir(pins.root())?;
    Ok(removed)
}

/// Deletes the tc filters (clsact, [`clsact::Mode::Clsact`]) of the agent
/// that pins under `pin_dir` from every interface. Where the tc programs
/// have TCX links there are none, and this only looks.
pub fn detach_filters(pin_dir: &Path) -> Result<(), LoaderError> {
    Ok(clsact::sweep(pin_dir)?)
}

/// Removes every pin in `dir` (a removed link pin detaches its program),
/// then `dir`; returns how many there were.
pub fn remove_pins(dir: &Path) -> Result<usize, LoaderError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(LoaderError::Remove {
                path: dir.into(),
                source,
            });
        }
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|source| LoaderError::Remove {
            path: dir.into(),
            source,
        })?;
        remove_pin(&entry.path())?;
        removed += 1;
    }
    remove_dir(dir)?;
    Ok(removed)
}

/// Removes the directory `path` if it is there.
pub fn remove_dir(path: &Path) -> Result<(), LoaderError> {
    removed(path, fs::remove_dir(path))
}
