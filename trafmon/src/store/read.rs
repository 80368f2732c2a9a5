//! Reading the store: sums and rows per resolution, from the views that
//! add the unfolded rows to each table.

use rusqlite::params;
use trafmon_common::Counters;

use super::{Entity, Kind, Rows, Source, Store, StoreError, Total, from_sql, schema::recent_rows};
use crate::calendar::Resolution;

impl Store {
    /// The sum of all counters of each resolution, finest first, read in
    /// one transaction: equal unless retention pruned a finer table, so a
    /// reader can check that it never sees half a flush.
    pub fn resolution_sums(&mut self) -> Result<[Counters; 4], StoreError> {
        let path = self.path.clone();
        let err = move |source| StoreError::Sql {
            path: path.clone(),
            what: "sum the resolutions",
            source,
        };
        let tx = self.conn.transaction().map_err(err.clone())?;
        let mut out = [Counters::ZERO; 4];
        for (slot, res) in out.iter_mut().zip(Resolution::ALL) {
            *slot = tx
                .query_row(
                    &format!(
                        "SELECT COALESCE(SUM(rx_bytes), 0), COALESCE(SUM(rx_packets), 0),
                                COALESCE(SUM(tx_bytes), 0), COALESCE(SUM(tx_packets), 0) FROM {}",
                        res.view()
                    ),
                    [],
                    |r| {
                        Ok(Counters {
                            rx_bytes: from_sql(r.get(0)?),
                            rx_packets: from_sql(r.get(1)?),
                            tx_bytes: from_sql(r.get(2)?),
                            tx_packets: from_sql(r.get(3)?),
                        })
                    },
                )
                .map_err(err.clone())?;
        }
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// Lifetime totals per entity: every month in the store plus what
    /// retention pruned from it (kept as one sum per entity), so they
    /// never go backwards.
    pub fn totals(&self) -> Result<Vec<Total>, StoreError> {
        let mut out = Vec::new();
        self.each_total(|t| out.push(t))?;
        out.sort_unstable_by(|a, b| a.entity.cmp(&b.entity));
        Ok(out)
    }

    /// Per-entity sums of `sources` together, by kind and key, read in one
    /// statement (one snapshot of the store).
    pub fn sum(&self, sources: &[Source]) -> Result<Vec<Total>, StoreError> {
        let mut out = Vec::new();
        self.each_sum(sources, |t| out.push(t))?;
        out.sort_unstable_by(|a, b| a.entity.cmp(&b.entity));
        Ok(out)
    }

    /// Calls `each` with every lifetime total ([`Store::totals`]), one at
    /// a time: a reader of a million entities never holds them twice.
    pub fn each_total(&self, each: impl FnMut(Total)) -> Result<(), StoreError> {
        self.each_sum(&[Source::Lifetime], each)
    }

    /// Per-entity sums of `sources` in the store's order, one at a time.
    fn each_sum(&self, sources: &[Source], mut each: impl FnMut(Total)) -> Result<(), StoreError> {
        let mut bounds = Vec::new();
        let selects: Vec<String> = sources
            .iter()
            .map(|source| {
                let (from, condition) = match *source {
                    Source::Rows(res, from, to) => {
                        bounds.extend([from, to]);
                        let n = bounds.len();
                        (
                            res.view(),
                            format!("WHERE start >= ?{} AND start < ?{n}", n - 1),
                        )
                    }
                    Source::Pruned => ("pruned", String::new()),
                    Source::Lifetime => ("lifetime_all", String::new()),
                };
                format!(
                    "SELECT entity, rx_bytes, rx_packets, tx_bytes, tx_packets FROM {from} {condition}"
                )
            })
            .collect();
        let source = selects.join(" UNION ALL ");
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT e.kind, e.key, e.label, SUM(t.rx_bytes), SUM(t.rx_packets),
                        SUM(t.tx_bytes), SUM(t.tx_packets)
                 FROM ({source}) t JOIN entity e ON e.id = t.entity
                 GROUP BY t.entity"
            ))
            .map_err(|e| self.sql("read totals", e))?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(bounds))
            .map_err(|e| self.sql("read totals", e))?;
        while let Some(r) = rows.next().map_err(|e| self.sql("read totals", e))? {
            let read = || -> rusqlite::Result<Option<Total>> {
                let Some(kind) = Kind::parse(r.get_ref(0)?.as_str()?) else {
                    return Ok(None);
                };
                Ok(Some(Total {
                    entity: Entity {
                        kind,
                        key: r.get(1)?,
                    },
                    label: r.get(2)?,
                    counters: Counters {
                        rx_bytes: from_sql(r.get(3)?),
                        rx_packets: from_sql(r.get(4)?),
                        tx_bytes: from_sql(r.get(5)?),
                        tx_packets: from_sql(r.get(6)?),
                    },
                }))
            };
            if let Some(t) = read().map_err(|e| self.sql("read totals", e))? {
                each(t);
            }
        }
        Ok(())
    }

    /// Rows of `res` per entity and bucket start, for the report: the
    /// table's rows plus the unfolded ones, read apart and added here (a
    /// join over the view is twice as slow for a year of history), in one
    /// read transaction, so that a fold between the two reads can neither
    /// hide rows nor show them twice.
    pub fn rows(
        &self,
        res: Resolution,
        kind: Kind,
        from: i64,
        to: i64,
    ) -> Result<Rows, StoreError> {
        let mut out = Rows::new();
        // Unchecked: only reads, and the store's one connection has no
        // other transaction open while a report reads.
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(|e| self.sql("read rows", e))?;
        for source in [res.table(), recent_rows(res).as_str()] {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT e.key, e.label, t.start, t.rx_bytes, t.rx_packets, t.tx_bytes, t.tx_packets
                     FROM {source} t JOIN entity e ON e.id = t.entity
                     WHERE e.kind = ?1 AND t.start >= ?2 AND t.start < ?3"
                ))
                .map_err(|e| self.sql("read rows", e))?;
            let mut rows = stmt
                .query(params![kind.as_str(), from, to])
                .map_err(|e| self.sql("read rows", e))?;
            while let Some(r) = rows.next().map_err(|e| self.sql("read rows", e))? {
                let read = || -> rusqlite::Result<((String, i64), (String, Counters))> {
                    Ok((
                        (r.get(0)?, r.get(2)?),
                        (
                            r.get(1)?,
                            Counters {
                                rx_bytes: from_sql(r.get(3)?),
                                rx_packets: from_sql(r.get(4)?),
                                tx_bytes: from_sql(r.get(5)?),
                                tx_packets: from_sql(r.get(6)?),
                            },
                        ),
                    ))
                };
                let (key, (label, c)) = read().map_err(|e| self.sql("read rows", e))?;
                out.entry(key).or_insert((label, Counters::ZERO)).1.add(&c);
            }
        }
        tx.commit().map_err(|e| self.sql("read rows", e))?;
        Ok(out)
    }
}
