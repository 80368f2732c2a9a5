//! `max_series`: which entities of a kind get series of their own, chosen
//! while the entities stream past, so that a scrape over a million of
//! them holds only the ones it keeps.

use std::{
    cmp::{Ordering, Reverse},
    collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap},
};

use trafmon_common::Counters;

use crate::{
    live,
    store::{Entity, Kind},
};

/// (key, label, counters) of one entity.
pub type Row = (String, String, Counters);

/// Bytes both ways, the size a series is ranked by.
fn bytes(c: &Counters) -> u64 {
    c.rx_bytes.saturating_add(c.tx_bytes)
}

/// How a row ranks: smaller is stronger (more bytes, then the earlier key).
fn rank(row: &Row) -> (Reverse<u64>, &str) {
    (Reverse(bytes(&row.2)), &row.0)
}

/// A candidate for a new series. Ordered by [`rank`], so that the heap's
/// top is the weakest.
struct Candidate(Row);

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        rank(&self.0).cmp(&rank(&other.0))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

/// One kind's entities so far.
#[derive(Default)]
struct Cap {
    /// Entities that had a series already: they keep it.
    kept: Vec<Row>,
    /// The biggest newcomers, at most `room`.
    best: BinaryHeap<Candidate>,
    /// The sum of everything else.
    other: Option<Counters>,
}

/// Every kind's series choice during one scrape. Entities that had a
/// series keep it (so `other` never goes backwards while the agent runs);
/// newcomers get one, biggest first, while fewer than `max` exist.
pub struct Caps<'a> {
    exported: &'a BTreeMap<Kind, BTreeSet<String>>,
    max: usize,
    kinds: BTreeMap<Kind, Cap>,
    /// Overflow is never capped: per map, its counters.
    spilled: HashMap<String, Counters>,
}

/// Per kind (kept rows biggest first, the sum of the rest if any), and
/// overflow per map.
pub type Chosen = (
    BTreeMap<Kind, (Vec<Row>, Option<Counters>)>,
    HashMap<String, Counters>,
);

impl<'a> Caps<'a> {
    /// No entity seen yet; `exported` holds who had a series before.
    pub fn new(exported: &'a BTreeMap<Kind, BTreeSet<String>>, max: usize) -> Self {
        Self {
            exported,
            max,
            kinds: BTreeMap::new(),
            spilled: HashMap::new(),
        }
    }

    /// One entity with its label (as [`live::read_with`] gives it).
    pub fn offer(&mut self, entity: Entity, label: String, c: Counters) {
        if entity.kind == Kind::Overflow {
            self.spilled.entry(entity.key).or_default().add(&c);
            return;
        }
        let label = live::label(&entity, &label).to_owned();
        let had = self.exported.get(&entity.kind);
        let room = self.max.saturating_sub(had.map_or(0, BTreeSet::len));
        let cap = self.kinds.entry(entity.kind).or_default();
        let row = (entity.key, label, c);
        if had.is_some_and(|h| h.contains(&row.0)) {
            cap.kept.push(row);
            return;
        }
        let loser = if cap.best.len() < room {
            cap.best.push(Candidate(row));
            None
        } else if cap
            .best
            .peek()
            .is_some_and(|weakest| rank(&row) < rank(&weakest.0))
        {
            let out = cap.best.pop().map(|w| w.0);
            cap.best.push(Candidate(row));
            out
        } else {
            Some(row)
        };
        if let Some((_, _, c)) = loser {
            cap.other.get_or_insert(Counters::ZERO).add(&c);
        }
    }

    /// The choice; [`remember`] it before the next scrape.
    pub fn finish(self) -> Chosen {
        let mut out = BTreeMap::new();
        for (kind, cap) in self.kinds {
            let mut kept = cap.kept;
            kept.extend(cap.best.into_iter().map(|Candidate(row)| row));
            kept.sort_by(|a, b| rank(a).cmp(&rank(b)));
            out.insert(kind, (kept, cap.other));
        }
        (out, self.spilled)
    }
}

/// Adds the entities that got a series now to `exported`; true when there
/// were any.
pub fn remember(exported: &mut BTreeMap<Kind, BTreeSet<String>>, chosen: &Chosen) -> bool {
    let mut added = false;
    for (kind, (kept, _)) in &chosen.0 {
        let had = exported.entry(*kind).or_default();
        for (key, _, _) in kept {
            if !had.contains(key) {
                had.insert(key.clone());
                added = true;
            }
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(bytes: u64) -> Counters {
        Counters {
            rx_bytes: bytes,
            ..Counters::ZERO
        }
    }

    fn choose(
        rows: &[(&str, u64)],
        exported: &mut BTreeMap<Kind, BTreeSet<String>>,
        max: usize,
    ) -> (Vec<String>, Option<Counters>) {
        let mut caps = Caps::new(exported, max);
        for (key, b) in rows {
            let entity = Entity {
                kind: Kind::Ip,
                key: (*key).into(),
            };
            caps.offer(entity, String::new(), c(*b));
        }
        let chosen = caps.finish();
        remember(exported, &chosen);
        let (mut per_kind, _) = chosen;
        let (kept, other) = per_kind.remove(&Kind::Ip).unwrap();
        (kept.into_iter().map(|r| r.0).collect(), other)
    }

    #[test]
    fn the_biggest_get_series_and_keep_them_and_the_rest_is_other() {
        let mut exported = BTreeMap::new();
        let (kept, other) = choose(&[("a", 10), ("b", 500), ("x", 300)], &mut exported, 2);
        assert_eq!(kept, ["b", "x"]);
        assert_eq!(other, Some(c(10)));
        // "a" grows past "x", but "x" keeps its series: "other" never
        // goes backwards while the agent runs.
        let (kept, other) = choose(&[("a", 1000), ("b", 500), ("x", 300)], &mut exported, 2);
        assert_eq!(kept, ["b", "x"]);
        assert_eq!(other, Some(c(1000)));
        let (_, other) = choose(&[("b", 500)], &mut exported, 2);
        assert_eq!(other, None);
    }

    #[test]
    fn newcomers_are_chosen_by_size_then_key_whatever_the_order_they_come_in() {
        let rows = [("d", 5), ("a", 7), ("c", 5), ("b", 5), ("e", 1), ("f", 9)];
        let mut exported = BTreeMap::new();
        let (kept, other) = choose(&rows, &mut exported, 3);
        assert_eq!(kept, ["f", "a", "b"]);
        assert_eq!(other, Some(c(5 + 5 + 1)));
        let mut reversed = rows;
        reversed.reverse();
        let (kept, _) = choose(&reversed, &mut BTreeMap::new(), 3);
        assert_eq!(kept, ["f", "a", "b"]);
    }
}
