//! Reading the pinned counter maps: per-CPU values summed per key.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use aya::maps::{Array, Map, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues};
use trafmon_common::{self as common, Counters, IpKey, KINDS, SIDES, overflow_slot};

use crate::{batch, paths::PinDir};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum CountersError {
    /// A pinned map is missing or of the wrong type.
    #[error("cannot open pinned map {path} (is the agent installed?)")]
    Open {
        /// The pin.
        path: PathBuf,
        /// Why.
        #[source]
        source: MapError,
    },
    /// Writing a map failed.
    #[error("cannot write map {name}")]
    Write {
        /// The map.
        name: &'static str,
        /// Why.
        #[source]
        source: MapError,
    },
    /// Reading a map failed.
    #[error("cannot read map {name}")]
    Read {
        /// The map.
        name: &'static str,
        /// Why.
        #[source]
        source: MapError,
    },
}

/// The address of an [`IpKey`].
pub fn ip_of(key: &IpKey) -> IpAddr {
    if key.family == common::FAMILY_IPV4 {
        IpAddr::V4(Ipv4Addr::new(
            key.addr[0],
            key.addr[1],
            key.addr[2],
            key.addr[3],
        ))
    } else {
        IpAddr::V6(Ipv6Addr::from(key.addr))
    }
}

/// The [`IpKey`] of an address.
pub fn key_of(ip: IpAddr) -> IpKey {
    let mut key = IpKey {
        addr: [0; 16],
        family: common::FAMILY_IPV6,
    };
    match ip {
        IpAddr::V4(v4) => {
            key.family = common::FAMILY_IPV4;
            key.addr[..4].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => key.addr = v6.octets(),
    }
    key
}

/// Totals per key, summed over CPUs (and over sides, where read so).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Per socket UID.
    pub uids: BTreeMap<u32, Counters>,
    /// Per IP address on our side.
    pub ips: BTreeMap<IpKey, Counters>,
    /// Per interface index.
    pub ifaces: BTreeMap<u32, Counters>,
    /// Packets whose key did not fit, per map kind
    /// ([`common::KIND_UID`], [`common::KIND_IP`], [`common::KIND_IFACE`]).
    pub overflow: [Counters; KINDS as usize],
}

impl Totals {
    /// Adds one drained key.
    pub fn push(&mut self, d: Drained) {
        match d {
            Drained::Uid(k, c) => self.uids.entry(k).or_default().add(&c),
            Drained::Ip(k, c) => self.ips.entry(k).or_default().add(&c),
            Drained::Iface(k, c) => self.ifaces.entry(k).or_default().add(&c),
            Drained::Overflow(kind, c) => self.overflow[kind as usize].add(&c),
        }
    }

    /// Every counter as drained keys.
    pub fn drained(&self) -> impl Iterator<Item = Drained> + '_ {
        let uids = self.uids.iter().map(|(k, c)| Drained::Uid(*k, *c));
        let ips = self.ips.iter().map(|(k, c)| Drained::Ip(*k, *c));
        let ifaces = self.ifaces.iter().map(|(k, c)| Drained::Iface(*k, *c));
        let overflow = (0..KINDS).map(|k| Drained::Overflow(k, self.overflow[k as usize]));
        uids.chain(ips).chain(ifaces).chain(overflow)
    }

    /// Adds every counter of `other`.
    pub fn add(&mut self, other: &Self) {
        merge(&mut self.uids, &other.uids);
        merge(&mut self.ips, &other.ips);
        merge(&mut self.ifaces, &other.ifaces);
        for (a, b) in self.overflow.iter_mut().zip(&other.overflow) {
            a.add(b);
        }
    }
}

fn merge<K: Ord + Copy>(into: &mut BTreeMap<K, Counters>, from: &BTreeMap<K, Counters>) {
    for (k, v) in from {
        into.entry(*k).or_default().add(v);
    }
}

type Stats<K> = PerCpuHashMap<MapData, K, Counters>;

/// A fast array ([`common::UID_FAST`], [`common::IFACE_FAST`]): per-CPU
/// counters indexed by side and key, with its name and slots per side.
struct Slots {
    map: PerCpuArray<MapData, Counters>,
    name: &'static str,
    per_side: u32,
}

impl Slots {
    fn open(pins: &PinDir, name: &'static str, per_side: u32) -> Result<Self, CountersError> {
        Ok(Self {
            map: open_as(pins, name)?,
            name,
            per_side,
        })
    }

    /// The slots that belong to `side`.
    fn side(&self, side: u32) -> (u32, u32) {
        let first = side * self.per_side;
        (first, first + self.per_side)
    }
}

fn fd_of<K: aya::Pod, V>(map: &impl aya::maps::IterableMap<K, V>) -> std::os::fd::BorrowedFd<'_> {
    use std::os::fd::AsFd as _;
    map.map().fd().as_fd()
}

/// One key's per-CPU values, summed.
pub fn sum_cpus<'a>(per_cpu: impl IntoIterator<Item = &'a Counters>) -> Counters {
    let mut total = Counters::ZERO;
    for c in per_cpu {
        total.add(c);
    }
    total
}

/// Calls `each` with the key (UID, ifindex) and the values summed over
/// CPUs of every slot of `side` that counted something.
fn sum_slots(
    slots: &Slots,
    side: u32,
    cpus: usize,
    mut each: impl FnMut(u32, Counters),
) -> Result<(), CountersError> {
    let (first, end) = slots.side(side);
    batch::lookup_range(fd_of(&slots.map), cpus, first, end, |slot, per_cpu| {
        let total = sum_cpus(per_cpu);
        if !total.is_zero() {
            each(slot - first, total);
        }
    })
    .map_err(|e| CountersError::Read {
        name: slots.name,
        source: MapError::IoError(e),
    })
}

/// Zeroes every slot of `side` that holds a count (array entries cannot be
/// deleted).
fn clear_slots(slots: &Slots, side: u32, cpus: usize) -> Result<(), CountersError> {
    let write = |e| CountersError::Write {
        name: slots.name,
        source: MapError::IoError(e),
    };
    let (first, end) = slots.side(side);
    let mut used = Vec::new();
    batch::lookup_range(fd_of(&slots.map), cpus, first, end, |slot, per_cpu| {
        if per_cpu.iter().any(|c| !c.is_zero()) {
            used.push(slot);
        }
    })
    .map_err(write)?;
    if used.is_empty() {
        return Ok(());
    }
    let zeros = vec![Counters::ZERO; used.len() * cpus];
    batch::update(fd_of(&slots.map), cpus, &used, &zeros).map_err(write)
}

/// Deletes every key, thousands per syscall ([`batch`]).
fn clear_map<K: aya::Pod>(
    map: &mut Stats<K>,
    cpus: usize,
    name: &'static str,
) -> Result<(), CountersError> {
    batch::delete_all::<K>(fd_of(map), cpus)
        .map(drop)
        .map_err(|e| CountersError::Write {
            name,
            source: MapError::IoError(e),
        })
}

/// The pinned maps, opened.
pub struct Maps {
    uid: [Stats<u32>; 2],
    uid_fast: Slots,
    ip: [Stats<IpKey>; 2],
    iface: [Stats<u32>; 2],
    iface_fast: Slots,
    /// The side selector.
    pub selector: Array<MapData, u32>,
    overflow: PerCpuArray<MapData, Counters>,
    /// Possible CPUs: the number of values per key.
    cpus: usize,
    /// The entries of each hash map, by kind and side, read once: a map's
    /// size never changes (a resize makes new maps, opened anew).
    max: [[u32; 2]; KINDS as usize],
}

fn open(pins: &PinDir, name: &'static str) -> Result<Map, CountersError> {
    let path = pins.map(name);
    let data = MapData::from_pin(&path).map_err(|source| CountersError::Open {
        path: path.clone(),
        source,
    })?;
    Map::from_map_data(data).map_err(|source| CountersError::Open { path, source })
}

pub(crate) fn open_as<T>(pins: &PinDir, name: &'static str) -> Result<T, CountersError>
where
    T: TryFrom<Map, Error = MapError>,
{
    T::try_from(open(pins, name)?).map_err(|source| CountersError::Open {
        path: pins.map(name),
        source,
    })
}

/// Calls `each` with every key and its values summed over CPUs, thousands
/// of keys per syscall ([`batch`]).
fn sum_map<K: aya::Pod>(
    map: &Stats<K>,
    cpus: usize,
    name: &'static str,
    mut each: impl FnMut(K, Counters),
) -> Result<usize, CountersError> {
    batch::lookup_all(fd_of(map), cpus, |key: K, per_cpu| {
        each(key, sum_cpus(per_cpu))
    })
    .map_err(|e| CountersError::Read {
        name,
        source: MapError::IoError(e),
    })
}

/// The entries a stats map has room for.
fn max_entries<K: aya::Pod>(map: &Stats<K>, name: &'static str) -> Result<u32, CountersError> {
    use aya::maps::IterableMap as _;
    Ok(map
        .map()
        .info()
        .map_err(|source| CountersError::Read { name, source })?
        .max_entries())
}

/// How full a side's hash map of one kind was when it was drained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fill {
    /// The keys it held.
    pub keys: usize,
    /// The entries it has room for.
    pub max: u32,
}

/// One key of a side, its values summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drained {
    /// A socket UID.
    Uid(u32, Counters),
    /// An address on our side.
    Ip(IpKey, Counters),
    /// An interface index.
    Iface(u32, Counters),
    /// What did not fit into the map of a kind ([`common::KIND_UID`], ...).
    Overflow(u32, Counters),
}

fn possible_cpus() -> Result<usize, CountersError> {
    aya::util::nr_cpus().map_err(|(_, e)| CountersError::Read {
        name: "possible CPUs",
        source: MapError::IoError(e),
    })
}

impl Maps {
    /// Opens every map pinned under `pins`.
    pub fn open(pins: &PinDir) -> Result<Self, CountersError> {
        let uid: [Stats<u32>; 2] = [open_as(pins, common::UID_A)?, open_as(pins, common::UID_B)?];
        let ip: [Stats<IpKey>; 2] = [open_as(pins, common::IP_A)?, open_as(pins, common::IP_B)?];
        let iface: [Stats<u32>; 2] = [
            open_as(pins, common::IFACE_A)?,
            open_as(pins, common::IFACE_B)?,
        ];
        let max = [
            [
                max_entries(&uid[0], common::UID_A)?,
                max_entries(&uid[1], common::UID_B)?,
            ],
            [
                max_entries(&ip[0], common::IP_A)?,
                max_entries(&ip[1], common::IP_B)?,
            ],
            [
                max_entries(&iface[0], common::IFACE_A)?,
                max_entries(&iface[1], common::IFACE_B)?,
            ],
        ];
        Ok(Self {
            uid,
            uid_fast: Slots::open(pins, common::UID_FAST, common::UID_FAST_SLOTS)?,
            ip,
            iface,
            iface_fast: Slots::open(pins, common::IFACE_FAST, common::IFACE_FAST_SLOTS)?,
            selector: open_as(pins, common::SELECTOR)?,
            overflow: open_as(pins, common::OVERFLOW)?,
            cpus: possible_cpus()?,
            max,
        })
    }

    /// Everything that `side` holds now, key by key, without collecting
    /// it (a flush of many keys turns them into deltas as they come).
    /// Returns how full its hash maps were, by kind ([`common::KIND_UID`],
    /// ...; the arrays of small UIDs and interfaces cannot fill).
    pub fn drain_side(
        &self,
        side: u32,
        mut each: impl FnMut(Drained),
    ) -> Result<[Fill; KINDS as usize], CountersError> {
        let s = side as usize;
        let cpus = self.cpus;
        let [uid, ip, iface] = [
            [common::UID_A, common::UID_B],
            [common::IP_A, common::IP_B],
            [common::IFACE_A, common::IFACE_B],
        ]
        .map(|names| names[s]);
        sum_slots(&self.uid_fast, side, cpus, |k, c| each(Drained::Uid(k, c)))?;
        let uids = sum_map(&self.uid[s], cpus, uid, |k, c| each(Drained::Uid(k, c)))?;
        let ips = sum_map(&self.ip[s], cpus, ip, |k, c| each(Drained::Ip(k, c)))?;
        sum_slots(&self.iface_fast, side, cpus, |k, c| {
            each(Drained::Iface(k, c))
        })?;
        let ifaces = sum_map(&self.iface[s], cpus, iface, |k, c| {
            each(Drained::Iface(k, c))
        })?;
        for kind in 0..KINDS {
            let per_cpu = self
                .overflow
                .get(&overflow_slot(side, kind), 0)
                .map_err(|source| CountersError::Read {
                    name: common::OVERFLOW,
                    source,
                })?;
            each(Drained::Overflow(kind, sum_cpus(per_cpu.iter())));
        }
        let fill = |kind: u32, keys| Fill {
            keys,
            max: self.max[kind as usize][s],
        };
        Ok([
            fill(common::KIND_UID, uids),
            fill(common::KIND_IP, ips),
            fill(common::KIND_IFACE, ifaces),
        ])
    }

    /// Everything that `side` holds now.
    pub fn read_side(&self, side: u32) -> Result<Totals, CountersError> {
        let mut totals = Totals::default();
        self.drain_side(side, |d| totals.push(d))?;
        Ok(totals)
    }

    /// The side the programs write now.
    pub fn active_side(&self) -> Result<u32, CountersError> {
        self.selector
            .get(&0, 0)
            .map(|side| side & 1)
            .map_err(|source| CountersError::Read {
                name: common::SELECTOR,
                source,
            })
    }

    /// Makes the programs write `side` from now on (for new program runs).
    pub fn set_active_side(&mut self, side: u32) -> Result<(), CountersError> {
        self.selector
            .set(0, side, 0)
            .map_err(|source| CountersError::Write {
                name: common::SELECTOR,
                source,
            })
    }

    /// Empties `side`: removes every key of its maps and zeroes its
    /// overflow slots. Only for the idle side, after a grace period.
    ///
    /// `drained` are addresses the side is known to hold (those the flush
    /// drained from it; none on recovery): they are deleted by key first,
    /// which in a large map that has seen many keys come and go costs less
    /// than finding them in a walk, whose cost grows with the map's size
    /// and how scattered its live elements are. A walk then deletes
    /// whatever else the side holds, so the side ends empty whatever
    /// `drained` says.
    pub fn clear_side(
        &mut self,
        side: u32,
        drained: impl IntoIterator<Item = IpKey>,
    ) -> Result<(), CountersError> {
        let s = side as usize;
        let cpus = self.cpus;
        clear_map(&mut self.uid[s], cpus, [common::UID_A, common::UID_B][s])?;
        clear_slots(&self.uid_fast, side, cpus)?;
        let ip_name = [common::IP_A, common::IP_B][s];
        batch::delete_present(fd_of(&self.ip[s]), drained).map_err(|e| CountersError::Write {
            name: ip_name,
            source: MapError::IoError(e),
        })?;
        clear_map(&mut self.ip[s], cpus, ip_name)?;
        clear_map(
            &mut self.iface[s],
            cpus,
            [common::IFACE_A, common::IFACE_B][s],
        )?;
        clear_slots(&self.iface_fast, side, cpus)?;
        for kind in 0..KINDS {
            let zero = PerCpuValues::try_from(vec![Counters::ZERO; cpus]).map_err(|e| {
                CountersError::Write {
                    name: common::OVERFLOW,
                    source: MapError::IoError(e),
                }
            })?;
            self.overflow
                .set(overflow_slot(side, kind), zero, 0)
                .map_err(|source| CountersError::Write {
                    name: common::OVERFLOW,
                    source,
                })?;
        }
        Ok(())
    }

    /// Fill of every stats map: (name, keys now, max entries).
    pub fn fill(&self) -> Result<Vec<(&'static str, usize, u32)>, CountersError> {
        /// Keys counted with the same batch walk as a drain, not one
        /// syscall pair per key.
        fn one<K: aya::Pod>(
            map: &Stats<K>,
            cpus: usize,
            name: &'static str,
            max: u32,
        ) -> Result<(&'static str, usize, u32), CountersError> {
            let keys = batch::lookup_all::<K>(fd_of(map), cpus, |_, _| {}).map_err(|e| {
                CountersError::Read {
                    name,
                    source: MapError::IoError(e),
                }
            })?;
            Ok((name, keys, max))
        }
        let (cpus, [uid, ip, iface]) = (self.cpus, self.max);
        Ok(vec![
            one(&self.uid[0], cpus, common::UID_A, uid[0])?,
            one(&self.uid[1], cpus, common::UID_B, uid[1])?,
            one(&self.ip[0], cpus, common::IP_A, ip[0])?,
            one(&self.ip[1], cpus, common::IP_B, ip[1])?,
            one(&self.iface[0], cpus, common::IFACE_A, iface[0])?,
            one(&self.iface[1], cpus, common::IFACE_B, iface[1])?,
        ])
    }

    /// Everything both sides hold now: all counts not yet drained.
    pub fn read_all(&self) -> Result<Totals, CountersError> {
        let mut totals = Totals::default();
        for side in 0..SIDES {
            totals.add(&self.read_side(side)?);
        }
        Ok(totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_keys_round_trip() {
        for ip in ["192.0.2.7", "2001:db8::5", "0.0.0.0", "::"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_of(&key_of(ip)), ip);
        }
        assert_eq!(key_of("192.0.2.7".parse().unwrap()).addr[4..], [0; 12]);
    }
}
