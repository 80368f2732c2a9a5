//! The entity ids of a flush's deltas: those of the last flush from
//! memory, the others from the store, many keys per statement, inserting
//! new entities and updating changed labels.

use std::{collections::HashMap, fmt::Write as _, net::IpAddr, ops::Range};

use rusqlite::{Transaction, params};

use super::{Delta, Entity, StoreError, Subject};

/// The entities of the last committed flush and their ids. A steady set of
/// live keys then costs no lookups (they were over a third of a flush's
/// commit at 100 000 addresses); holding only the last flush's keys, this
/// grows with the live keys, not with the history. Entities are never
/// deleted, so an id stays right once committed.
#[derive(Debug, Default)]
pub(crate) struct Known {
    /// By address.
    ips: Vec<(IpAddr, i64)>,
    /// Id and label.
    named: HashMap<Entity, (i64, String)>,
}

impl Known {
    /// The id of a delta's entity, if it was in the last flush under the
    /// same label. `at` is where the last address was looked for: a
    /// flush's deltas come in address order ([`crate::deltas`]), so the
    /// next one lies a few entries on ([`lower_bound`]).
    fn id(&self, d: &Delta, at: &mut usize) -> Option<i64> {
        match &d.subject {
            Subject::Ip(ip) => {
                *at = lower_bound(&self.ips, *at, ip);
                self.ips
                    .get(*at)
                    .filter(|(a, _)| a == ip)
                    .map(|(_, id)| *id)
            }
            Subject::Named(named) => self
                .named
                .get(&named.0)
                .filter(|(_, l)| *l == named.1)
                .map(|(id, _)| *id),
        }
    }

    /// Remembers the entities of a committed flush (and forgets the
    /// others).
    pub(super) fn remember(&mut self, deltas: &[Delta], ids: &[i64]) {
        self.ips.clear();
        self.named.clear();
        for (d, id) in deltas.iter().zip(ids) {
            match &d.subject {
                Subject::Ip(ip) => self.ips.push((*ip, *id)),
                Subject::Named(named) => {
                    let (e, label) = &**named;
                    self.named.insert(e.clone(), (*id, label.clone()));
                }
            }
        }
        self.ips.sort_unstable_by_key(|(ip, _)| *ip);
        if self.ips.capacity() > 2 * self.ips.len() {
            self.ips.shrink_to_fit();
        }
    }
}

/// The first index of sorted `ips` whose address is not below `ip`,
/// searched from `from` on by galloping (1, 2, 4 ... entries on, then a
/// binary search of the last step), or in `..from` when `ip` lies before
/// it. Looking up a sorted run of addresses so reads a few neighbouring
/// entries each, where a binary search over the whole reads about
/// seventeen far apart at 100 000 (about 5 ms of a 100 000-key commit).
fn lower_bound(ips: &[(IpAddr, i64)], from: usize, ip: &IpAddr) -> usize {
    let from = from.min(ips.len());
    if from > 0 && ips[from - 1].0 >= *ip {
        return ips[..from].partition_point(|(a, _)| a < ip);
    }
    // Every entry before `lo` is below `ip`.
    let (mut lo, mut hi, mut step) = (from, from, 1);
    while hi < ips.len() && ips[hi].0 < *ip {
        lo = hi + 1;
        hi += step;
        step *= 2;
    }
    let hi = hi.min(ips.len());
    lo + ips[lo..hi].partition_point(|(a, _)| a < ip)
}

/// Keys per lookup statement: SQLite's per-statement work is paid once
/// per `CHUNK` keys instead of once per key.
const CHUNK: usize = 64;

fn lookup_sql(keys: usize) -> String {
    let mut sql = String::from("SELECT key, id, label FROM entity WHERE kind = ?1 AND key IN (");
    for i in 0..keys {
        if i > 0 {
            sql.push(',');
        }
        write!(sql, "?{}", i + 2).expect("writing to a String");
    }
    sql.push(')');
    sql
}

/// Where in `buf` the key and the label of a delta are, after writing them
/// there (addresses get their text only here: a flush may carry a million
/// of them); an address is its own label.
fn texts(d: &Delta, buf: &mut String) -> (Range<usize>, Option<Range<usize>>) {
    let start = buf.len();
    match &d.subject {
        Subject::Ip(ip) => {
            write!(buf, "{ip}").expect("writing to a String");
            (start..buf.len(), None)
        }
        Subject::Named(named) => {
            let (e, label) = &**named;
            buf.push_str(&e.key);
            let key = start..buf.len();
            buf.push_str(label);
            (key.clone(), Some(key.end..buf.len()))
        }
    }
}

/// The id of every delta's entity, in the deltas' order.
pub(super) fn ids<E>(
    tx: &Transaction<'_>,
    known: &Known,
    deltas: &[Delta],
    sql: impl Fn(&'static str) -> E,
) -> Result<Vec<i64>, StoreError>
where
    E: FnOnce(rusqlite::Error) -> StoreError,
{
    let mut out = vec![0; deltas.len()];
    let mut unknown = Vec::new();
    let mut at = 0;
    for (i, d) in deltas.iter().enumerate() {
        match known.id(d, &mut at) {
            Some(id) => out[i] = id,
            None => unknown.push(i),
        }
    }
    let mut insert = tx
        .prepare_cached("INSERT INTO entity (kind, key, label) VALUES (?1, ?2, ?3) RETURNING id")
        .map_err(sql("prepare the entity insert"))?;
    let mut relabel = tx
        .prepare_cached("UPDATE entity SET label = ?2 WHERE id = ?1")
        .map_err(sql("prepare the entity relabel"))?;
    let mut buf = String::new();
    let mut spans = Vec::with_capacity(CHUNK);
    let mut rest = unknown.as_slice();
    while let Some(&first) = rest.first() {
        // A chunk holds keys of one kind.
        let kind = deltas[first].kind();
        let n = rest
            .iter()
            .take(CHUNK)
            .take_while(|&&i| deltas[i].kind() == kind)
            .count();
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        buf.clear();
        spans.clear();
        spans.extend(chunk.iter().map(|&i| texts(&deltas[i], &mut buf)));
        // The first span of each key, and what the store holds for it.
        let mut first: HashMap<&str, usize> = HashMap::with_capacity(n);
        for (i, (key, _)) in spans.iter().enumerate() {
            first.entry(&buf[key.clone()]).or_insert(i);
        }
        let mut stored: Vec<Option<(i64, String)>> = vec![None; n];
        let mut find = tx
            .prepare_cached(&lookup_sql(n))
            .map_err(sql("prepare the entity lookup"))?;
        find.raw_bind_parameter(1, kind.as_str())
            .map_err(sql("look up entities"))?;
        for (i, (key, _)) in spans.iter().enumerate() {
            find.raw_bind_parameter(i + 2, &buf[key.clone()])
                .map_err(sql("look up entities"))?;
        }
        let mut rows = find.raw_query();
        while let Some(r) = rows.next().map_err(sql("look up entities"))? {
            let read = || -> rusqlite::Result<Option<(usize, i64, String)>> {
                let i = first.get(r.get_ref(0)?.as_str()?).copied();
                Ok(match i {
                    Some(i) => Some((i, r.get(1)?, r.get(2)?)),
                    None => None,
                })
            };
            if let Some((i, id, label)) = read().map_err(sql("look up entities"))? {
                stored[i] = Some((id, label));
            }
        }
        drop(rows);
        for (&i, (key, label)) in chunk.iter().zip(&spans) {
            let key_text = &buf[key.clone()];
            let label_text = &buf[label.clone().unwrap_or_else(|| key.clone())];
            let slot = &mut stored[first[key_text]];
            let id = match slot {
                Some((id, stored_label)) => {
                    if stored_label != label_text {
                        relabel
                            .execute(params![*id, label_text])
                            .map_err(sql("relabel an entity"))?;
                        label_text.clone_into(stored_label);
                    }
                    *id
                }
                None => {
                    let id: i64 = insert
                        .query_row(params![kind.as_str(), key_text, label_text], |r| r.get(0))
                        .map_err(sql("write an entity"))?;
                    // A key twice in one flush finds the row written now.
                    *slot = Some((id, label_text.to_owned()));
                    id
                }
            };
            out[i] = id;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::lower_bound;

    #[test]
    fn lower_bound_agrees_with_a_binary_search_from_any_start() {
        let ip = |n: u32| IpAddr::V4(Ipv4Addr::from(n));
        // Every third address, so that some looked for are absent.
        let ips: Vec<(IpAddr, i64)> = (0..200).map(|n| (ip(n * 3 + 10), i64::from(n))).collect();
        for from in [0, 1, 2, 5, 63, 64, 150, 199, 200, 500] {
            for n in 0..700 {
                let want = ips.partition_point(|(a, _)| *a < ip(n));
                assert_eq!(lower_bound(&ips, from, &ip(n)), want, "from {from}, {n}");
            }
        }
        assert_eq!(lower_bound(&[], 3, &ip(1)), 0);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(lower_bound(&ips, 7, &v6), ips.len());
    }
}
