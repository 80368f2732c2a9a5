//! The history store: SQLite in WAL mode, one writer (the agent), any number
//! of readers. One table per resolution with a unique key on (entity,
//! bucket start); every flush upserts all resolutions and its flush record
//! in one transaction. The schema version is checked on open, and a file
//! that is not a trafmon database of a known version is never written.

use std::{
    collections::BTreeMap,
    fmt::{self, Write as _},
    fs, io,
    net::IpAddr,
    path::{Path, PathBuf},
};

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};
use trafmon_common::Counters;

use crate::calendar::{Calendar, CalendarError, Resolution};

/// The schema this trafmon writes and reads. Version 2 added the quota
/// state; a version 1 file is upgraded when the agent opens it.
pub const SCHEMA_VERSION: i64 = 2;
/// `PRAGMA application_id` of a trafmon database ("tmdb").
pub const APPLICATION_ID: i64 = 0x746d_6462;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory of the database cannot be created.
    #[error("{path}: cannot create the state directory")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// SQLite cannot open or read the file.
    #[error("{path}: cannot open the database; it was left untouched")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is damaged or not a database.
    #[error(
        "{path}: the database is corrupt ({detail}); it was left untouched: move it away to start a new one"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// Another program's SQLite database.
    #[error("{path}: not a trafmon database (application id {found:#x}); it was left untouched")]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Its application id.
        found: i64,
    },
    /// A schema this trafmon does not know.
    #[error(
        "{path}: schema version {found}, but this trafmon knows version {SCHEMA_VERSION}; it was left untouched (upgrade trafmon)"
    )]
    Schema {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// A query or a write failed.
    #[error("{path}: cannot {what}")]
    Sql {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// A bucket could not be computed.
    #[error(transparent)]
    Calendar(#[from] CalendarError),
}

/// What an entity is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A socket UID.
    Uid,
    /// An IP address.
    Ip,
    /// A network interface (by name).
    Iface,
    /// A named group of addresses.
    Group,
    /// Packets of a full map (key: `uid`, `ip` or `iface`).
    Overflow,
}

impl Kind {
    /// Its name in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uid => "uid",
            Self::Ip => "ip",
            Self::Iface => "iface",
            Self::Group => "group",
            Self::Overflow => "overflow",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Uid,
            Self::Ip,
            Self::Iface,
            Self::Group,
            Self::Overflow,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entity: its kind and its key within the kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entity {
    /// What it is.
    pub kind: Kind,
    /// The UID as a number, the address, the interface or group name.
    pub key: String,
}

/// Whose traffic a [`Delta`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// An address: its key and its label are its text, written only when
    /// committed (a flush may carry a million of them).
    Ip(IpAddr),
    /// Any other entity, with its label now (a user name).
    Named(Entity, String),
}

/// Traffic of one entity in one flush.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    /// Whose.
    pub subject: Subject,
    /// How much.
    pub counters: Counters,
}

impl Delta {
    /// The delta of an entity given by kind, key and label.
    pub fn named(kind: Kind, key: String, label: String, counters: Counters) -> Self {
        Self {
            subject: Subject::Named(Entity { kind, key }, label),
            counters,
        }
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        match &self.subject {
            Subject::Ip(_) => Kind::Ip,
            Subject::Named(e, _) => e.kind,
        }
    }

    /// Entity, label and counters, owned.
    pub fn into_parts(self) -> (Entity, String, Counters) {
        match self.subject {
            Subject::Ip(ip) => {
                let key = ip.to_string();
                (
                    Entity {
                        kind: Kind::Ip,
                        key: key.clone(),
                    },
                    key,
                    self.counters,
                )
            }
            Subject::Named(entity, label) => (entity, label, self.counters),
        }
    }
}

/// One flush's deltas, committed together with its flush record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlushCommit {
    /// Sequence number.
    pub seq: i64,
    /// The side that was drained.
    pub side: u32,
    /// When the drained traffic ended (the flush's tick).
    pub at: Timestamp,
    /// Per-entity traffic.
    pub deltas: Vec<Delta>,
}

/// A stored flush record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlushRecord {
    /// Sequence number.
    pub seq: i64,
    /// The drained side.
    pub side: u32,
    /// Tick time, Unix milliseconds.
    pub at_ms: i64,
    /// The side was cleared after the commit.
    pub cleared: bool,
    /// Flip to clear, microseconds (once cleared).
    pub duration_us: Option<i64>,
}

/// A row of totals: entity, label, counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Total {
    /// Whose.
    pub entity: Entity,
    /// Its latest label.
    pub label: String,
    /// How much.
    pub counters: Counters,
}

/// Rows by (entity key, bucket start): (label, counters).
pub type Rows = BTreeMap<(String, i64), (String, Counters)>;

/// An open store.
pub struct Store {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
}

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

/// An upsert of `rows` rows into the bucket table `table`: `?1` is the
/// bucket's start, then per row entity, rx bytes, rx packets, tx bytes and
/// tx packets.
fn bucket_upsert(table: &str, rows: usize) -> String {
    let mut sql = format!(
        "INSERT INTO {table} (entity, start, rx_bytes, rx_packets, tx_bytes, tx_packets) VALUES "
    );
    for i in 0..rows {
        let p = 2 + i * 5;
        if i > 0 {
            sql.push(',');
        }
        write!(
            sql,
            "(?{p}, ?1, ?{}, ?{}, ?{}, ?{})",
            p + 1,
            p + 2,
            p + 3,
            p + 4
        )
        .expect("writing to a String");
    }
    sql.push_str(
        " ON CONFLICT (entity, start) DO UPDATE SET
           rx_bytes = rx_bytes + excluded.rx_bytes,
           rx_packets = rx_packets + excluded.rx_packets,
           tx_bytes = tx_bytes + excluded.tx_bytes,
           tx_packets = tx_packets + excluded.tx_packets",
    );
    sql
}

/// SQLite stores signed 64-bit integers; counters above 2^63 wrap there and
/// back, losslessly.
fn to_sql(v: u64) -> i64 {
    v as i64
}

fn from_sql(v: i64) -> u64 {
    v as u64
}

impl Store {
    /// Opens the agent's store at `path`, creating it (and its directory)
    /// when it does not exist. An existing file must be a trafmon database
    /// of this schema version that passes `PRAGMA quick_check`; otherwise it
    /// is left untouched and opening fails.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let is_new = fs::metadata(path).map(|m| m.len() == 0).unwrap_or(true);
        if is_new && let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.into(),
                source,
            })?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | if is_new {
                OpenFlags::SQLITE_OPEN_CREATE
            } else {
                OpenFlags::empty()
            };
        let store = Self::connect(path, flags)?;
        if is_new {
            store.create()?;
        } else {
            let version = store.check_version()?;
            store.quick_check()?;
            if version == 1 {
                store.upgrade_from_1()?;
            }
        }
        store.tune()?;
        Ok(store)
    }

    /// Opens an existing store for reading only (the CLI).
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let store = Self::connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        store.check_version()?;
        store
            .conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| store.sql("set the busy timeout", e))?;
        Ok(store)
    }

    fn connect(path: &Path, flags: OpenFlags) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
            path: path.into(),
            source,
        })?;
        Ok(Self {
            conn,
            path: path.into(),
        })
    }

    pub(crate) fn sql(&self, what: &'static str, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.path.clone(),
            what,
            source,
        }
    }

    fn corrupt(&self, e: &rusqlite::Error) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            detail: e.to_string(),
        }
    }

    fn create(&self) -> Result<(), StoreError> {
        let mut ddl = String::from(SCHEMA);
        ddl.push_str(QUOTA_SCHEMA);
        for res in Resolution::ALL {
            ddl.push_str(&bucket_table(res.table()));
        }
        ddl.push_str(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
        ));
        self.conn
            .execute_batch(&format!("BEGIN; {ddl} COMMIT;"))
            .map_err(|e| self.sql("create the schema", e))
    }

    /// Version 1 to 2: the quota state table.
    fn upgrade_from_1(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch(&format!(
                "BEGIN; {QUOTA_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(|e| self.sql("upgrade the schema from version 1", e))
    }

    /// Checks the application id and returns the schema version (1 or
    /// [`SCHEMA_VERSION`]).
    fn check_version(&self) -> Result<i64, StoreError> {
        let pragma = |name: &str| -> Result<i64, StoreError> {
            self.conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::NotADatabase
                            || f.code == rusqlite::ErrorCode::DatabaseCorrupt =>
                    {
                        self.corrupt(&e)
                    }
                    source => StoreError::Open {
                        path: self.path.clone(),
                        source,
                    },
                })
        };
        let app = pragma("application_id")?;
        if app != APPLICATION_ID {
            return Err(StoreError::Foreign {
                path: self.path.clone(),
                found: app,
            });
        }
        let version = pragma("user_version")?;
        if version != SCHEMA_VERSION && version != 1 {
            return Err(StoreError::Schema {
                path: self.path.clone(),
                found: version,
            });
        }
        Ok(version)
    }

    fn quick_check(&self) -> Result<(), StoreError> {
        let result: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| self.corrupt(&e))?;
        if result != "ok" {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                detail: result,
            });
        }
        Ok(())
    }

    /// WAL for concurrent readers; synchronous=FULL so that a committed
    /// flush survives a power loss (the kernel counters it replaced do not).
    fn tune(&self) -> Result<(), StoreError> {
        self.conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| self.sql("set the busy timeout", e))?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| self.sql("switch to WAL mode", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %self.path.display(), mode, "WAL mode not available");
        }
        self.conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(|e| self.sql("set pragmas", e))
    }

    /// The newest flush record.
    pub fn last_flush(&self) -> Result<Option<FlushRecord>, StoreError> {
        self.conn
            .query_row(
                "SELECT seq, side, at_ms, cleared, duration_us FROM flush ORDER BY seq DESC LIMIT 1",
                [],
                |r| {
                    Ok(FlushRecord {
                        seq: r.get(0)?,
                        side: r.get(1)?,
                        at_ms: r.get(2)?,
                        cleared: r.get::<_, i64>(3)? != 0,
                        duration_us: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sql("read the last flush record", e))
    }

    /// Commits a flush: every delta into every resolution, and the flush
    /// record, in one transaction.
    pub fn commit(&mut self, flush: &FlushCommit, cal: &Calendar) -> Result<(), StoreError> {
        let mut buckets = Vec::with_capacity(Resolution::ALL.len());
        for res in Resolution::ALL {
            buckets.push((res.table(), cal.flush_bucket(res, flush.at)?));
        }
        let path = self.path.clone();
        let sql = |what: &'static str| {
            let path = path.clone();
            move |source| StoreError::Sql { path, what, source }
        };
        let tx = self.conn.transaction().map_err(sql("begin a flush"))?;
        {
            // Looked up first: rewriting every entity's row in every flush
            // would dirty its pages although the label rarely changes.
            let mut find = tx
                .prepare_cached("SELECT id, label FROM entity WHERE kind = ?1 AND key = ?2")
                .map_err(sql("prepare the entity lookup"))?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO entity (kind, key, label) VALUES (?1, ?2, ?3) RETURNING id",
                )
                .map_err(sql("prepare the entity insert"))?;
            let mut relabel = tx
                .prepare_cached("UPDATE entity SET label = ?2 WHERE id = ?1")
                .map_err(sql("prepare the entity relabel"))?;
            let mut ids = Vec::with_capacity(flush.deltas.len());
            let mut text = String::new();
            for d in &flush.deltas {
                let (kind, key, label) = match &d.subject {
                    Subject::Ip(ip) => {
                        text.clear();
                        write!(text, "{ip}").expect("writing to a String");
                        (Kind::Ip, text.as_str(), text.as_str())
                    }
                    Subject::Named(e, label) => (e.kind, e.key.as_str(), label.as_str()),
                };
                let found = find
                    .query_row(params![kind.as_str(), key], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get_ref(1)?.as_str()? == label))
                    })
                    .optional()
                    .map_err(sql("look up an entity"))?;
                ids.push(match found {
                    Some((id, true)) => id,
                    Some((id, false)) => {
                        relabel
                            .execute(params![id, label])
                            .map_err(sql("relabel an entity"))?;
                        id
                    }
                    None => insert
                        .query_row(params![kind.as_str(), key, label], |r| r.get(0))
                        .map_err(sql("write an entity"))?,
                });
            }
            // Table by table, many rows per statement: each B-tree is
            // walked in key order once, and SQLite's per-statement work is
            // paid once per ROWS rows instead of once per row.
            const ROWS: usize = 64;
            for (table, start) in &buckets {
                let full = bucket_upsert(table, ROWS);
                for (deltas, ids) in flush.deltas.chunks(ROWS).zip(ids.chunks(ROWS)) {
                    let last;
                    let text = if deltas.len() == ROWS {
                        &full
                    } else {
                        last = bucket_upsert(table, deltas.len());
                        &last
                    };
                    let mut stmt = tx
                        .prepare_cached(text)
                        .map_err(sql("prepare a bucket upsert"))?;
                    stmt.raw_bind_parameter(1, start)
                        .map_err(sql("write a bucket"))?;
                    for (i, (d, id)) in deltas.iter().zip(ids).enumerate() {
                        let c = &d.counters;
                        let values = [
                            *id,
                            to_sql(c.rx_bytes),
                            to_sql(c.rx_packets),
                            to_sql(c.tx_bytes),
                            to_sql(c.tx_packets),
                        ];
                        for (j, v) in values.into_iter().enumerate() {
                            stmt.raw_bind_parameter(2 + i * 5 + j, v)
                                .map_err(sql("write a bucket"))?;
                        }
                    }
                    stmt.raw_execute().map_err(sql("write a bucket"))?;
                }
            }
            tx.execute(
                "INSERT INTO flush (seq, side, at_ms) VALUES (?1, ?2, ?3)",
                params![flush.seq, flush.side, flush.at.as_millisecond()],
            )
            .map_err(sql("write the flush record"))?;
        }
        tx.commit().map_err(sql("commit a flush"))
    }

    /// Records that the side of flush `seq` was cleared.
    pub fn mark_cleared(&self, seq: i64, duration_us: Option<i64>) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE flush SET cleared = 1, duration_us = ?2 WHERE seq = ?1",
                params![seq, duration_us],
            )
            .map(drop)
            .map_err(|e| self.sql("record a cleared side", e))
    }

    /// The next flush sequence number.
    pub fn next_seq(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM flush", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.sql("read the flush sequence", e))
    }

    /// Records an event (recovery, recreated maps) for `trafmon status`.
    pub fn record_event(&self, kind: &str, detail: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO event (at_ms, kind, detail) VALUES (?1, ?2, ?3)",
                params![Timestamp::now().as_millisecond(), kind, detail],
            )
            .map(drop)
            .map_err(|e| self.sql("record an event", e))
    }

    /// Every event, oldest first: (Unix ms, kind, detail).
    pub fn events(&self) -> Result<Vec<(i64, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT at_ms, kind, detail FROM event ORDER BY id")
            .map_err(|e| self.sql("read events", e))?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.sql("read events", e))
    }

    /// Deletes rows of `res` that start before `cutoff`, and flush records
    /// older than the newest 10 000.
    pub fn prune(&self, res: Resolution, cutoff: i64) -> Result<usize, StoreError> {
        let n = self
            .conn
            .execute(
                &format!("DELETE FROM {} WHERE start < ?1", res.table()),
                [cutoff],
            )
            .map_err(|e| self.sql("prune old rows", e))?;
        self.conn
            .execute(
                "DELETE FROM flush WHERE seq < (SELECT MAX(seq) FROM flush) - 10000",
                [],
            )
            .map_err(|e| self.sql("prune flush records", e))?;
        Ok(n)
    }

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
                        res.table()
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

    /// All-time totals per entity (the monthly table is kept forever by
    /// default; with a monthly retention, totals of the retained months).
    pub fn totals(&self) -> Result<Vec<Total>, StoreError> {
        self.sum_rows(Resolution::Month, i64::MIN, i64::MAX)
    }

    /// Per-entity sums of the rows of `res` with `from <= start < to`, by
    /// kind and key.
    pub fn sum_rows(&self, res: Resolution, from: i64, to: i64) -> Result<Vec<Total>, StoreError> {
        let mut out = Vec::new();
        self.each_sum(res, from, to, |t| out.push(t))?;
        out.sort_unstable_by(|a, b| a.entity.cmp(&b.entity));
        Ok(out)
    }

    /// Calls `each` with every all-time total, one at a time: a reader of
    /// a million entities never holds them twice.
    pub fn each_total(&self, each: impl FnMut(Total)) -> Result<(), StoreError> {
        self.each_sum(Resolution::Month, i64::MIN, i64::MAX, each)
    }

    /// [`Store::sum_rows`] in the store's order, one at a time.
    fn each_sum(
        &self,
        res: Resolution,
        from: i64,
        to: i64,
        mut each: impl FnMut(Total),
    ) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT e.kind, e.key, e.label, SUM(t.rx_bytes), SUM(t.rx_packets),
                        SUM(t.tx_bytes), SUM(t.tx_packets)
                 FROM {} t JOIN entity e ON e.id = t.entity
                 WHERE t.start >= ?1 AND t.start < ?2
                 GROUP BY t.entity",
                res.table()
            ))
            .map_err(|e| self.sql("read totals", e))?;
        let mut rows = stmt
            .query(params![from, to])
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

    /// Rows of `res` per entity and bucket start, for the report.
    pub fn rows(
        &self,
        res: Resolution,
        kind: Kind,
        from: i64,
        to: i64,
    ) -> Result<Rows, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT e.key, e.label, t.start, t.rx_bytes, t.rx_packets, t.tx_bytes, t.tx_packets
                 FROM {} t JOIN entity e ON e.id = t.entity
                 WHERE e.kind = ?1 AND t.start >= ?2 AND t.start < ?3",
                res.table()
            ))
            .map_err(|e| self.sql("read rows", e))?;
        let rows = stmt
            .query_map(params![kind.as_str(), from, to], |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, i64>(2)?),
                    (
                        r.get::<_, String>(1)?,
                        Counters {
                            rx_bytes: from_sql(r.get(3)?),
                            rx_packets: from_sql(r.get(4)?),
                            tx_bytes: from_sql(r.get(5)?),
                            tx_packets: from_sql(r.get(6)?),
                        },
                    ),
                ))
            })
            .and_then(Iterator::collect)
            .map_err(|e| self.sql("read rows", e))?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use jiff::{civil::Weekday, tz::TimeZone};

    use super::*;

    fn cal() -> Calendar {
        Calendar {
            tz: TimeZone::UTC,
            week_start: Weekday::Monday,
            month_start_day: 1,
        }
    }

    fn delta(kind: Kind, key: &str, rx: u64, tx: u64) -> Delta {
        let counters = Counters {
            rx_bytes: rx,
            rx_packets: 1,
            tx_bytes: tx,
            tx_packets: 1,
        };
        match (kind, key.parse()) {
            (Kind::Ip, Ok(ip)) => Delta {
                subject: Subject::Ip(ip),
                counters,
            },
            _ => Delta::named(kind, key.into(), key.into(), counters),
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("trafmon-store-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir.join("trafmon.db")
    }

    #[test]
    fn flushes_add_up_in_every_resolution() {
        let path = tmp("add");
        let mut store = Store::open(&path).unwrap();
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        for (seq, t) in [
            (1, "2026-11-22T10:04:50Z"),
            (2, "2026-11-22T10:05:00Z"),
            (3, "2026-11-22T10:05:10Z"),
        ] {
            let f = FlushCommit {
                seq,
                side: 0,
                at: at(t),
                deltas: vec![delta(Kind::Uid, "1000", 10, 20)],
            };
            store.commit(&f, &cal()).unwrap();
            store.mark_cleared(seq, Some(5)).unwrap();
        }
        let five = store
            .rows(Resolution::FiveMin, Kind::Uid, i64::MIN, i64::MAX)
            .unwrap();
        let starts: Vec<i64> = five.keys().map(|(_, s)| *s).collect();
        // 10:04:50 and 10:05:00 close 10:00-10:05; 10:05:10 opens 10:05-10:10.
        assert_eq!(
            starts,
            vec![
                at("2026-11-22T10:00:00Z").as_second(),
                at("2026-11-22T10:05:00Z").as_second()
            ]
        );
        assert_eq!(five.values().next().unwrap().1.rx_bytes, 20);
        let totals = store.totals().unwrap();
        assert_eq!(totals.len(), 1);
        assert_eq!(totals[0].counters.tx_bytes, 60);
        assert_eq!(store.last_flush().unwrap().unwrap().seq, 3);
        assert_eq!(store.next_seq().unwrap(), 4);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn many_entities_land_in_their_own_rows_in_every_resolution() {
        // More than two statements' worth of rows, and a remainder.
        let path = tmp("many");
        let mut store = Store::open(&path).unwrap();
        let n = 150u64;
        let deltas = |round: u64| -> Vec<Delta> {
            (0..n)
                .map(|i| delta(Kind::Ip, &format!("192.0.2.{i}"), i * round, i + 1))
                .collect()
        };
        for (seq, round) in [(1, 1), (2, 3)] {
            let f = FlushCommit {
                seq,
                side: 0,
                at: "2026-11-22T10:04:50Z".parse().unwrap(),
                deltas: deltas(round),
            };
            store.commit(&f, &cal()).unwrap();
        }
        for res in Resolution::ALL {
            let rows = store.rows(res, Kind::Ip, i64::MIN, i64::MAX).unwrap();
            assert_eq!(rows.len(), n as usize, "{res:?}");
            for i in 0..n {
                let (label, c) = &rows[&(format!("192.0.2.{i}"), rows.keys().next().unwrap().1)];
                assert_eq!(label, &format!("192.0.2.{i}"));
                assert_eq!(
                    (c.rx_bytes, c.tx_bytes, c.rx_packets),
                    (4 * i, 2 * (i + 1), 2)
                );
            }
        }
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_garbage_file_is_reported_and_left_untouched() {
        let path = tmp("garbage");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(&path, &garbage).unwrap();
        let e = Store::open(&path).err().expect("must fail");
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert_eq!(fs::read(&path).unwrap(), garbage);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_newer_schema_or_foreign_database_is_refused() {
        let path = tmp("newer");
        drop(Store::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let before = fs::read(&path).unwrap();
        let e = Store::open(&path).err().expect("must fail").to_string();
        assert!(
            e.contains("schema version 99, but this trafmon knows version 2"),
            "{e}"
        );
        assert_eq!(fs::read(&path).unwrap(), before);

        let other = path.with_file_name("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let e = Store::open(&other).err().expect("must fail").to_string();
        assert!(e.contains("not a trafmon database"), "{e}");
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_version_1_store_is_upgraded_with_its_history() {
        let path = tmp("v1");
        let mut store = Store::open(&path).unwrap();
        let f = FlushCommit {
            seq: 1,
            side: 0,
            at: "2026-11-20T00:05:00Z".parse().unwrap(),
            deltas: vec![delta(Kind::Uid, "1000", 3, 4)],
        };
        store.commit(&f, &cal()).unwrap();
        store
            .conn
            .execute_batch("DROP TABLE quota_state; PRAGMA user_version = 1;")
            .unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.totals().unwrap().len(), 1);
        assert!(store.quota_states().unwrap().is_empty());
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn pruning_removes_exactly_the_rows_before_the_cutoff() {
        let path = tmp("prune");
        let mut store = Store::open(&path).unwrap();
        let base = "2026-11-20T00:00:00Z".parse::<Timestamp>().unwrap();
        for i in 0..10i64 {
            let f = FlushCommit {
                seq: i + 1,
                side: 0,
                at: base + jiff::SignedDuration::from_secs(300 * (i + 1)),
                deltas: vec![delta(Kind::Ip, "192.0.2.1", 1, 1)],
            };
            store.commit(&f, &cal()).unwrap();
        }
        let cutoff = base.as_second() + 300 * 4;
        assert_eq!(store.prune(Resolution::FiveMin, cutoff).unwrap(), 4);
        let left = store
            .rows(Resolution::FiveMin, Kind::Ip, i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(left.len(), 6);
        assert_eq!(left.keys().next().unwrap().1, cutoff);
        // Coarser resolutions are untouched.
        assert_eq!(store.totals().unwrap()[0].counters.rx_bytes, 10);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
