//! The store's tables and views, and the upgrades from older versions.

use super::{APPLICATION_ID, SCHEMA_VERSION, Store, StoreError};
use crate::calendar::Resolution;

const SCHEMA: &str = "
CREATE TABLE entity (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    label TEXT NOT NULL,
    UNIQUE (kind, key)
);
CREATE TABLE flush (
    seq INTEGER PRIMARY KEY,
    side INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    cleared INTEGER NOT NULL DEFAULT 0,
    duration_us INTEGER
);
CREATE TABLE event (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
";

/// Added in version 2.
const QUOTA_SCHEMA: &str = "
CREATE TABLE quota_state (
    name TEXT PRIMARY KEY,
    period_start INTEGER NOT NULL,
    warned INTEGER NOT NULL,
    acted INTEGER NOT NULL,
    enforced INTEGER NOT NULL,
    hold_until INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
";

/// Added in version 5 (version 3 had the same rows in one table keyed by
/// bucket and entity): flushed traffic not yet folded into the bucket
/// tables. `recent_bucket` holds each unfolded 5-minute bucket with its
/// bucket in every coarser resolution (so a fold needs no calendar; all
/// rows of a 5-minute bucket share them, [`Store::commit`] keeps it so),
/// and `recent` a row per bucket and entity; per resolution, a view of
/// table plus unfolded rows.
///
/// `recent`'s key is one integer, `bucket × 2³² + entity` ([`recent_id`]),
/// not the pair: SQLite overwrites a row of a rowid table in place, but
/// replaces a row of a table keyed by two columns. Measured here with
/// 100 000 rows, a flush's upserts took 21 ms into this table against
/// 63 ms into version 3's.
fn recent_schema() -> String {
    let mut ddl = String::from(
        "CREATE TABLE recent_bucket (
            id INTEGER PRIMARY KEY,
            fivemin INTEGER NOT NULL UNIQUE,
            hour INTEGER NOT NULL,
            day INTEGER NOT NULL,
            month INTEGER NOT NULL
        );
        CREATE TABLE recent (
            id INTEGER PRIMARY KEY,
            bucket INTEGER NOT NULL REFERENCES recent_bucket (id),
            entity INTEGER NOT NULL REFERENCES entity (id),
            rx_bytes INTEGER NOT NULL,
            rx_packets INTEGER NOT NULL,
            tx_bytes INTEGER NOT NULL,
            tx_packets INTEGER NOT NULL,
            CHECK (id = bucket * BUCKET_SPAN + entity)
        );",
    )
    .replace("BUCKET_SPAN", &BUCKET_SPAN.to_string());
    for res in Resolution::ALL {
        ddl.push_str(&format!(
            "CREATE VIEW {view} AS
                SELECT entity, start, rx_bytes, rx_packets, tx_bytes, tx_packets FROM {table}
                UNION ALL
                SELECT entity, start, rx_bytes, rx_packets, tx_bytes, tx_packets FROM {recent};",
            view = res.view(),
            table = res.table(),
            recent = recent_rows(res),
        ));
    }
    ddl
}

/// The unfolded rows as rows of `res`, a subquery: entity, start (the
/// bucket of `res`) and counters.
pub(super) fn recent_rows(res: Resolution) -> String {
    format!(
        "(SELECT r.entity AS entity, b.{} AS start, r.rx_bytes AS rx_bytes,
                 r.rx_packets AS rx_packets, r.tx_bytes AS tx_bytes, r.tx_packets AS tx_packets
          FROM recent r JOIN recent_bucket b ON b.id = r.bucket)",
        recent_column(res)
    )
}

/// How many keys of `recent` each unfolded bucket has: a bucket's rows
/// are the keys from `bucket × BUCKET_SPAN` on ([`recent_id`]).
pub(super) const BUCKET_SPAN: i64 = 1 << 32;

/// The key of `entity`'s row in unfolded bucket `bucket`; `None` when
/// either is out of the range the key holds (a bucket id below 2³¹, an
/// entity id below 2³²).
pub(super) fn recent_id(bucket: i64, entity: i64) -> Option<i64> {
    let bucket = u32::try_from(bucket).ok().filter(|b| *b < 1 << 31)?;
    let entity = u32::try_from(entity).ok()?;
    Some(i64::from(bucket) * BUCKET_SPAN + i64::from(entity))
}

/// Adds the per-entity, per-start sums that `select` yields (entity,
/// start and the four counters; it must have a WHERE clause, which SQLite
/// needs before an upsert's ON CONFLICT) into bucket table `table`: the
/// fold of unfolded rows, today's and version 3's.
pub(super) fn add_into(table: &str, select: &str) -> String {
    format!(
        "INSERT INTO {table} (entity, start, rx_bytes, rx_packets, tx_bytes, tx_packets)
         {select}
         ON CONFLICT (entity, start) DO UPDATE SET
           rx_bytes = rx_bytes + excluded.rx_bytes,
           rx_packets = rx_packets + excluded.rx_packets,
           tx_bytes = tx_bytes + excluded.tx_bytes,
           tx_packets = tx_packets + excluded.tx_packets"
    )
}

/// Version 3 and 4's unfolded rows (one table keyed by 5-minute bucket and
/// entity, each row naming its coarser buckets), which the upgrade to
/// version 5 folds into the bucket tables and drops with their views.
fn drop_version_3_recent() -> String {
    let mut ddl = String::new();
    for res in Resolution::ALL {
        let column = recent_column(res);
        ddl.push_str(&add_into(
            res.table(),
            &format!(
                "SELECT entity, {column}, SUM(rx_bytes), SUM(rx_packets), SUM(tx_bytes), SUM(tx_packets)
                 FROM recent WHERE true
                 GROUP BY entity, {column}"
            ),
        ));
        ddl.push(';');
    }
    ddl.push_str("DROP VIEW IF EXISTS lifetime_all;");
    for res in Resolution::ALL {
        ddl.push_str(&format!("DROP VIEW {};", res.view()));
    }
    ddl.push_str("DROP TABLE recent;");
    ddl
}

/// The column of `recent_bucket` (and of version 3's `recent`) that holds
/// the bucket of `res`.
pub(super) fn recent_column(res: Resolution) -> &'static str {
    match res {
        Resolution::FiveMin => "fivemin",
        Resolution::Hour => "hour",
        Resolution::Day => "day",
        Resolution::Month => "month",
    }
}

/// Added in version 4: per entity, the sums of the monthly rows that
/// retention removed, so that lifetime totals (`trafmon stats`,
/// `/metrics`, `report --total`) never go backwards when old months are
/// pruned; and the view of those totals' rows.
const PRUNED_SCHEMA: &str = "
CREATE TABLE pruned (
    entity INTEGER PRIMARY KEY REFERENCES entity (id),
    rx_bytes INTEGER NOT NULL,
    rx_packets INTEGER NOT NULL,
    tx_bytes INTEGER NOT NULL,
    tx_packets INTEGER NOT NULL
);
";

/// The lifetime totals' view over `monthly_all`, added with
/// [`PRUNED_SCHEMA`] (and made again when the upgrade to version 5
/// replaces `monthly_all`).
const LIFETIME_VIEW: &str = "
CREATE VIEW lifetime_all AS
    SELECT entity, rx_bytes, rx_packets, tx_bytes, tx_packets FROM monthly_all
    UNION ALL
    SELECT entity, rx_bytes, rx_packets, tx_bytes, tx_packets FROM pruned;
";

fn bucket_table(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (
            entity INTEGER NOT NULL REFERENCES entity (id),
            start INTEGER NOT NULL,
            rx_bytes INTEGER NOT NULL,
            rx_packets INTEGER NOT NULL,
            tx_bytes INTEGER NOT NULL,
            tx_packets INTEGER NOT NULL,
            PRIMARY KEY (entity, start)
        ) WITHOUT ROWID;
        CREATE INDEX {table}_start ON {table} (start);"
    )
}

impl Store {
    pub(super) fn create(&self) -> Result<(), StoreError> {
        let mut ddl = String::from(SCHEMA);
        ddl.push_str(QUOTA_SCHEMA);
        for res in Resolution::ALL {
            ddl.push_str(&bucket_table(res.table()));
        }
        ddl.push_str(&recent_schema());
        ddl.push_str(PRUNED_SCHEMA);
        ddl.push_str(LIFETIME_VIEW);
        ddl.push_str(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
        ));
        self.conn
            .execute_batch(&format!("BEGIN; {ddl} COMMIT;"))
            .map_err(|e| self.sql("create the schema", e))
    }

    /// From `version` (1 to 4) to [`SCHEMA_VERSION`], in one transaction:
    /// version 2 added the quota state, version 3 the unfolded rows,
    /// version 4 the sums of pruned months, version 5 a faster table of
    /// unfolded rows (version 3's rows are folded on the way).
    pub(super) fn upgrade(&self, version: i64) -> Result<(), StoreError> {
        let mut ddl = String::new();
        if version < 2 {
            ddl.push_str(QUOTA_SCHEMA);
        }
        if version >= 3 {
            ddl.push_str(&drop_version_3_recent());
        }
        ddl.push_str(&recent_schema());
        if version < 4 {
            ddl.push_str(PRUNED_SCHEMA);
        }
        ddl.push_str(LIFETIME_VIEW);
        self.conn
            .execute_batch(&format!(
                "BEGIN; {ddl} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(|e| self.sql("upgrade the schema", e))
    }
}

#[cfg(test)]
mod tests {
    use super::recent_id;

    #[test]
    fn a_recent_key_holds_its_bucket_and_entity_apart_or_is_refused() {
        assert_eq!(recent_id(0, 0), Some(0));
        assert_eq!(recent_id(1, 7), Some((1 << 32) + 7));
        let top = recent_id((1 << 31) - 1, u32::MAX.into()).unwrap();
        assert_eq!(
            (top >> 32, top & 0xffff_ffff),
            ((1 << 31) - 1, u32::MAX.into())
        );
        assert!(top > 0, "every key is positive");
        for (bucket, entity) in [(1 << 31, 1), (-1, 1), (1, 1 << 32), (1, -1)] {
            assert_eq!(recent_id(bucket, entity), None, "{bucket} {entity}");
        }
    }
}
