//! Live keys for the benchmarks: synthetic UIDs and addresses written into
//! the pinned counter maps with the kernel's batch update, as if that many
//! users and addresses had traffic since the last flush.

use std::{
    cell::RefCell,
    net::Ipv6Addr,
    os::fd::{AsFd as _, BorrowedFd},
    path::Path,
};

use anyhow::Context as _;
use aya::maps::{Array, MapData};
use trafmon::{
    batch,
    counters::{key_of, sum_cpus},
    paths::PinDir,
};
use trafmon_common::{self as common, Counters, IpKey};

/// The pinned maps the benchmarks fill.
pub struct Live {
    uid: [MapData; 2],
    ip: [MapData; 2],
    uid_fast: MapData,
    selector: Array<MapData, u32>,
    cpus: usize,
    /// The order in which the keys of a fill reach the map; see
    /// [`Live::fill`].
    order: RefCell<fastrand::Rng>,
}

/// First synthetic UID: far above any real user.
const FIRST_UID: u32 = 2_000_000;

/// The `i`-th synthetic address: 2001:db8:ffff::/48 (documentation space,
/// never sent to; only a map key).
pub fn address(i: u32) -> IpKey {
    let [hi, lo] = [(i >> 16) as u16, i as u16];
    key_of(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, hi, lo).into())
}

/// The random order in which the benchmarks write keys into a map (see
/// [`Live::fill`]), from a fixed seed, so that every run fills in the
/// same orders.
pub fn order() -> fastrand::Rng {
    fastrand::Rng::with_seed(0x0074_7261_666d_6f6e)
}

fn open(pins: &PinDir, name: &str) -> anyhow::Result<MapData> {
    MapData::from_pin(pins.map(name)).with_context(|| format!("cannot open pinned map {name}"))
}

/// One counter value per CPU, as if every CPU had seen some traffic.
pub fn values(n: usize, cpus: usize) -> Vec<Counters> {
    vec![
        Counters {
            rx_bytes: 1500,
            rx_packets: 1,
            tx_bytes: 60,
            tx_packets: 1,
        };
        n * cpus
    ]
}

impl Live {
    pub fn open(pin_dir: &Path) -> anyhow::Result<Self> {
        let pins = PinDir::new(pin_dir);
        Ok(Self {
            uid: [open(&pins, common::UID_A)?, open(&pins, common::UID_B)?],
            ip: [open(&pins, common::IP_A)?, open(&pins, common::IP_B)?],
            uid_fast: open(&pins, common::UID_FAST)?,
            selector: Array::try_from(aya::maps::Map::Array(open(&pins, common::SELECTOR)?))?,
            cpus: aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?,
            order: RefCell::new(order()),
        })
    }

    /// The side the programs write now.
    pub fn active(&self) -> anyhow::Result<usize> {
        Ok((self.selector.get(&0, 0)? & 1) as usize)
    }

    fn fd(map: &MapData) -> BorrowedFd<'_> {
        map.fd().as_fd()
    }

    /// Writes `keys` into `map` in an order of their own, new at each
    /// fill: a key's first packet after a clear comes when it comes, and
    /// the kernel hands each new key the element it freed last, so the
    /// order of the fill decides where in memory each key's counters lie.
    /// Filled in address order, they would lie in the order in which the
    /// agent deletes them by key, a locality that real traffic does not
    /// give it.
    fn fill<K: aya::Pod>(&self, map: &MapData, mut keys: Vec<K>) -> anyhow::Result<()> {
        self.order.borrow_mut().shuffle(&mut keys);
        batch::update(
            Self::fd(map),
            self.cpus,
            &keys,
            &values(keys.len(), self.cpus),
        )
        .context("cannot fill a counter map")
    }

    /// Writes `n` synthetic addresses into the IP map of `side`.
    pub fn fill_ips(&self, side: usize, n: u32) -> anyhow::Result<()> {
        let keys: Vec<IpKey> = (0..n).map(address).collect();
        self.fill(&self.ip[side], keys)
    }

    /// Writes the synthetic addresses below `n` that fall into `wave` of
    /// `waves` (by a multiplicative hash of their index, so each wave is
    /// spread over the whole range) into the IP map of `side`.
    pub fn fill_ip_wave(&self, side: usize, n: u32, wave: u32, waves: u32) -> anyhow::Result<()> {
        let keys: Vec<IpKey> = (0..n)
            .filter(|i| i.wrapping_mul(2_654_435_761) % waves == wave)
            .map(address)
            .collect();
        self.fill(&self.ip[side], keys)
    }

    /// Writes `n` synthetic UIDs into the UID map of `side`.
    pub fn fill_uids(&self, side: usize, n: u32) -> anyhow::Result<()> {
        let keys: Vec<u32> = (FIRST_UID..FIRST_UID + n).collect();
        self.fill(&self.uid[side], keys)
    }

    /// What the IP map of `side` holds for `key`, summed over CPUs (zero
    /// when it holds nothing).
    pub fn ip_counts(&self, side: usize, key: IpKey) -> anyhow::Result<Counters> {
        let mut sum = Counters::ZERO;
        batch::lookup_all::<IpKey>(Self::fd(&self.ip[side]), self.cpus, |k, per_cpu| {
            if k == key {
                sum = sum_cpus(per_cpu);
            }
        })
        .context("cannot read a counter map")?;
        Ok(sum)
    }

    /// What the UID array of `side` holds for `uid` (below
    /// [`common::UID_FAST_SLOTS`]), summed over CPUs.
    pub fn uid_array_counts(&self, side: usize, uid: u32) -> anyhow::Result<Counters> {
        let slot = common::fast_slot(side as u32, uid, common::UID_FAST_SLOTS)
            .with_context(|| format!("UID {uid} has no slot in the UID array"))?;
        let mut sum = Counters::ZERO;
        batch::lookup_range(
            Self::fd(&self.uid_fast),
            self.cpus,
            slot,
            slot + 1,
            |_, per_cpu| sum = sum_cpus(per_cpu),
        )
        .context("cannot read the UID array")?;
        Ok(sum)
    }

    /// Empties the UID and IP maps of `side`.
    pub fn clear(&self, side: usize) -> anyhow::Result<()> {
        batch::delete_all::<u32>(Self::fd(&self.uid[side]), self.cpus)?;
        batch::delete_all::<IpKey>(Self::fd(&self.ip[side]), self.cpus)?;
        Ok(())
    }
}
