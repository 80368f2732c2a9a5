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

/// Added in version 3: flushed traffic not yet folded into the bucket
/// tables, with the bucket of every resolution it belongs to (so a fold
/// needs no calendar), and per resolution a view of table plus `recent`.
/// All rows of one 5-minute bucket have the same coarser buckets
/// ([`Store::commit`] keeps it so), which keeps the key narrow.
fn recent_schema() -> String {
    let mut ddl = String::from(
        "CREATE TABLE recent (
            fivemin INTEGER NOT NULL,
            hour INTEGER NOT NULL,
            day INTEGER NOT NULL,
            month INTEGER NOT NULL,
            entity INTEGER NOT NULL REFERENCES entity (id),
            rx_bytes INTEGER NOT NULL,
            rx_packets INTEGER NOT NULL,
            tx_bytes INTEGER NOT NULL,
            tx_packets INTEGER NOT NULL,
            PRIMARY KEY (fivemin, entity)
        ) WITHOUT ROWID;",
    );
    for res in Resolution::ALL {
        ddl.push_str(&format!(
            "CREATE VIEW {view} AS
                SELECT entity, start, rx_bytes, rx_packets, tx_bytes, tx_packets FROM {table}
                UNION ALL
                SELECT entity, {column}, rx_bytes, rx_packets, tx_bytes, tx_packets FROM recent;",
            view = res.view(),
            table = res.table(),
            column = recent_column(res),
        ));
    }
    ddl
}

/// The column of `recent` that holds the bucket of `res`.
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
        ddl.push_str(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
        ));
        self.conn
            .execute_batch(&format!("BEGIN; {ddl} COMMIT;"))
            .map_err(|e| self.sql("create the schema", e))
    }

    /// From `version` (1 to 3) to [`SCHEMA_VERSION`], in one transaction:
    /// version 2 added the quota state, version 3 the unfolded rows,
    /// version 4 the sums of pruned months.
    pub(super) fn upgrade(&self, version: i64) -> Result<(), StoreError> {
        let mut ddl = String::new();
        if version < 2 {
            ddl.push_str(QUOTA_SCHEMA);
        }
        if version < 3 {
            ddl.push_str(&recent_schema());
        }
        if version < 4 {
            ddl.push_str(PRUNED_SCHEMA);
        }
        self.conn
            .execute_batch(&format!(
                "BEGIN; {ddl} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(|e| self.sql("upgrade the schema", e))
    }
}
