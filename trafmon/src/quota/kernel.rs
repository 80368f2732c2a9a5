//! The enforcement maps: which slot applies to a UID or network, and what
//! each slot does. Only the agent writes them, and only here; they are
//! pinned, so an agent that crashes leaves enforcement as it was, and
//! `trafmon uninstall` removes it with the other pins.

use std::collections::{BTreeMap, BTreeSet};

use aya::maps::{
    Array, HashMap, MapData, MapError,
    lpm_trie::{Key, LpmTrie},
};
use ipnet::IpNet;
use trafmon_common::{self as common, ACTION_BLOCK, ACTION_NONE, ACTION_THROTTLE, Enforcement};

use crate::{
    config::Config,
    counters::{CountersError, open_as},
    paths::PinDir,
    quota::{
        engine::State,
        spec::{Action, Target},
    },
};

/// The smallest burst: a TCP segmentation offload packet is up to 64 KiB
/// and must fit, with room for a second one.
const MIN_BURST_BYTES: u64 = 256 * 1024;

/// What the maps should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Slot → what it does (`tat` and drop counters zero).
    pub slots: BTreeMap<u32, Enforcement>,
    /// UID → slot.
    pub uids: BTreeMap<u32, u32>,
    /// (prefix length, IPv4 network) → slot.
    pub net4: BTreeMap<(u32, [u8; 4]), u32>,
    /// (prefix length, IPv6 network) → slot.
    pub net6: BTreeMap<(u32, [u8; 16]), u32>,
}

/// The slot of each quota that can enforce: its rank among those quotas.
pub fn slots(config: &Config) -> BTreeMap<String, u32> {
    config
        .quotas
        .iter()
        .filter(|q| q.action.enforces())
        .zip(0u32..)
        .map(|(q, slot)| (q.name.clone(), slot))
        .collect()
}

/// How strongly an action holds traffic back: where two quotas in force
/// cover the same key, the stronger one applies.
fn strength(e: &Enforcement) -> u64 {
    match e.action {
        ACTION_BLOCK => u64::MAX,
        _ => u64::MAX - 1 - e.rate.min(u64::MAX - 2),
    }
}

/// The enforcement of an action, or None for `alert`.
pub fn enforcement(action: Action) -> Option<Enforcement> {
    match action {
        Action::Alert => None,
        Action::Block => Some(Enforcement {
            action: ACTION_BLOCK,
            ..Enforcement::default()
        }),
        Action::Throttle(rate) => {
            // A tenth of a second at the rate, but never less than two
            // offload packets: enough for TCP to keep the pipe full after
            // a loss, little enough that 10 s average within 3 %.
            let burst = (rate / 10).max(MIN_BURST_BYTES);
            Some(Enforcement {
                action: ACTION_THROTTLE,
                rate,
                burst_ns: u64::try_from(u128::from(burst) * 1_000_000_000 / u128::from(rate))
                    .unwrap_or(u64::MAX),
                ..Enforcement::default()
            })
        }
    }
}

/// What the maps should hold for the quotas of `config` in `states`.
pub fn wanted(config: &Config, states: &BTreeMap<String, State>) -> Wanted {
    let slots = slots(config);
    let mut w = Wanted::default();
    // True when `e` should replace the slot `current` of a key, if any.
    let claims = |slots: &BTreeMap<u32, Enforcement>, e: &Enforcement, current: Option<&u32>| {
        current.is_none_or(|c| strength(e) > strength(&slots[c]))
    };
    for q in &config.quotas {
        let (Some(&slot), Some(e)) = (slots.get(&q.name), enforcement(q.action)) else {
            continue;
        };
        if !states.get(&q.name).is_some_and(|s| s.enforced) {
            continue;
        }
        w.slots.insert(slot, e);
        let nets: Vec<IpNet> = match &q.target {
            Target::Uid(uid) => {
                if claims(&w.slots, &e, w.uids.get(uid)) {
                    w.uids.insert(*uid, slot);
                }
                continue;
            }
            Target::Address(ip) => vec![IpNet::from(*ip)],
            Target::Group(g) => config
                .groups
                .get(g)
                .map(|nets| nets.iter().map(|c| c.0).collect())
                .unwrap_or_default(),
        };
        for net in nets {
            let prefix = u32::from(net.prefix_len());
            match net {
                IpNet::V4(n) => {
                    let k = (prefix, n.network().octets());
                    if claims(&w.slots, &e, w.net4.get(&k)) {
                        w.net4.insert(k, slot);
                    }
                }
                IpNet::V6(n) => {
                    let k = (prefix, n.network().octets());
                    if claims(&w.slots, &e, w.net6.get(&k)) {
                        w.net6.insert(k, slot);
                    }
                }
            }
        }
    }
    // Slots that lost every key to a stronger quota need no entry.
    let used: BTreeSet<u32> = w
        .uids
        .values()
        .chain(w.net4.values())
        .chain(w.net6.values())
        .copied()
        .collect();
    w.slots.retain(|slot, _| used.contains(slot));
    w
}

/// The opened enforcement maps.
pub struct Enforcer {
    slots: Array<MapData, Enforcement>,
    uids: HashMap<MapData, u32, u32>,
    net4: LpmTrie<MapData, [u8; 4], u32>,
    net6: LpmTrie<MapData, [u8; 16], u32>,
    settings: Array<MapData, u32>,
    /// What the maps hold since the last successful sync (None: not known,
    /// after opening or a failed sync).
    synced: Option<Wanted>,
}

fn write(name: &'static str) -> impl Fn(MapError) -> CountersError {
    move |source| CountersError::Write { name, source }
}

fn read(name: &'static str) -> impl Fn(MapError) -> CountersError {
    move |source| CountersError::Read { name, source }
}

impl Enforcer {
    /// Opens the pinned maps.
    pub fn open(pins: &PinDir) -> Result<Self, CountersError> {
        Ok(Self {
            slots: open_as(pins, common::ENFORCE)?,
            uids: open_as(pins, common::ENFORCE_UID)?,
            net4: open_as(pins, common::ENFORCE4)?,
            net6: open_as(pins, common::ENFORCE6)?,
            settings: open_as(pins, common::SETTINGS)?,
            synced: None,
        })
    }

    /// Makes the maps hold `w`. Slots are written before the keys that
    /// point to them, and emptied only after no key points to them. A slot
    /// whose action and rate are unchanged is left alone, so its bucket
    /// keeps running. Nothing is read or written when the maps already
    /// hold `w`: the agent is their only writer.
    pub fn sync(&mut self, w: &Wanted) -> Result<(), CountersError> {
        let previous = self.synced.take();
        if previous.as_ref() == Some(w) {
            self.synced = previous;
            return Ok(());
        }
        for (&slot, e) in &w.slots {
            let now = self.slots.get(&slot, 0).map_err(read(common::ENFORCE))?;
            if (now.action, now.rate, now.burst_ns) != (e.action, e.rate, e.burst_ns) {
                self.slots
                    .set(slot, *e, 0)
                    .map_err(write(common::ENFORCE))?;
            }
        }
        let old: Vec<(u32, u32)> = self
            .uids
            .iter()
            .collect::<Result<_, _>>()
            .map_err(read(common::ENFORCE_UID))?;
        for (uid, slot) in old {
            if w.uids.get(&uid) != Some(&slot) {
                self.uids.remove(&uid).map_err(write(common::ENFORCE_UID))?;
            }
        }
        for (&uid, &slot) in &w.uids {
            self.uids
                .insert(uid, slot, 0)
                .map_err(write(common::ENFORCE_UID))?;
        }
        sync_trie(&mut self.net4, &w.net4, common::ENFORCE4)?;
        sync_trie(&mut self.net6, &w.net6, common::ENFORCE6)?;

        let mut flags = self.settings.get(&0, 0).map_err(read(common::SETTINGS))?
            & !(common::SETTING_ENFORCE_UID | common::SETTING_ENFORCE_IP);
        if !w.uids.is_empty() {
            flags |= common::SETTING_ENFORCE_UID;
        }
        if !w.net4.is_empty() || !w.net6.is_empty() {
            flags |= common::SETTING_ENFORCE_IP;
        }
        self.settings
            .set(0, flags, 0)
            .map_err(write(common::SETTINGS))?;

        // Only the slots the last sync wrote can need emptying; without a
        // last sync, any slot can.
        let stale: Vec<u32> = match &previous {
            Some(p) => p.slots.keys().copied().collect(),
            None => (0..common::ENFORCE_SLOTS).collect(),
        };
        for slot in stale {
            if w.slots.contains_key(&slot) {
                continue;
            }
            let now = self.slots.get(&slot, 0).map_err(read(common::ENFORCE))?;
            if now.action != ACTION_NONE {
                self.slots
                    .set(slot, Enforcement::default(), 0)
                    .map_err(write(common::ENFORCE))?;
            }
        }
        self.synced = Some(w.clone());
        Ok(())
    }

    /// Packets and bytes that slot `slot` dropped since it was last written.
    pub fn dropped(&self, slot: u32) -> Result<(u64, u64), CountersError> {
        let e = self.slots.get(&slot, 0).map_err(read(common::ENFORCE))?;
        Ok((e.dropped_packets, e.dropped_bytes))
    }
}

fn sync_trie<const N: usize>(
    trie: &mut LpmTrie<MapData, [u8; N], u32>,
    wanted: &BTreeMap<(u32, [u8; N]), u32>,
    name: &'static str,
) -> Result<(), CountersError> {
    let old: Vec<Key<[u8; N]>> = trie.keys().collect::<Result<_, _>>().map_err(read(name))?;
    for key in old {
        let slot = trie.get(&key, 0).ok();
        if wanted.get(&(key.prefix_len(), key.data())) != slot.as_ref() {
            trie.remove(&key).map_err(write(name))?;
        }
    }
    for (&(prefix, data), &slot) in wanted {
        trie.insert(&Key::new(prefix, data), slot, 0)
            .map_err(write(name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn only_quotas_in_force_get_keys_and_the_stronger_wins() {
        let config = Config::parse(
            r#"
[groups]
cust = ["192.0.2.0/25", "2001:db8::/64"]
[[quota]]
name = "slow"
user = 1000
limit = "1GiB"
action = "throttle"
rate = "1MiB/s"
[[quota]]
name = "cut"
user = 1000
limit = "2GiB"
action = "block"
[[quota]]
name = "cust"
group = "cust"
limit = "1GiB"
action = "throttle"
rate = "10MiB/s"
[[quota]]
name = "mail"
user = 1001
limit = "1GiB"
"#,
            Path::new("t.toml"),
        )
        .unwrap();
        let on = State {
            enforced: true,
            ..State::default()
        };
        let mut states: BTreeMap<String, State> =
            [("slow".to_string(), on), ("mail".to_string(), on)].into();
        let w = wanted(&config, &states);
        assert_eq!(w.uids, [(1000, 0)].into());
        assert_eq!(w.slots[&0].action, ACTION_THROTTLE);
        assert_eq!(w.slots[&0].rate, 1 << 20);
        assert_eq!(w.slots[&0].burst_ns, 250_000_000);
        assert!(w.net4.is_empty() && w.net6.is_empty());

        states.insert("cut".into(), on);
        states.insert("cust".into(), on);
        let w = wanted(&config, &states);
        assert_eq!(w.uids, [(1000, 1)].into(), "block is stronger");
        assert_eq!(w.slots.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(w.net4, [((25, [192, 0, 2, 0]), 2)].into());
        assert_eq!(w.net6.len(), 1);
    }
}
