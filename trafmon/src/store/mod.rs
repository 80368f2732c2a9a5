//! The history store: SQLite in WAL mode, one writer (the agent), any number
//! of readers. One table per resolution with a unique key on (entity,
//! bucket start). A flush upserts its deltas into `recent` (one row per
//! entity and 5-minute bucket; `recent_bucket` names the bucket in every
//! resolution), together with its flush record in one transaction; when a
//! 5-minute bucket has closed, a fold moves its rows into the four tables
//! in one transaction ([`Store::fold`]). Readers read
//! views of table plus `recent`, so they never see a byte twice or miss
//! one. The schema version is checked on open, and a file that is not a
//! trafmon database of a known version is never written.

mod commit;
mod entities;
mod read;
mod schema;

use std::{
    collections::BTreeMap,
    fmt, fs, io,
    net::IpAddr,
    path::{Path, PathBuf},
};

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags};
use trafmon_common::Counters;

use crate::calendar::{CalendarError, Resolution};

/// The schema this trafmon writes and reads. Version 2 added the quota
/// state, version 3 the unfolded rows, version 4 the sums of pruned
/// months, version 5 the unfolded rows keyed by one integer; older files are upgraded when the
/// agent opens them.
pub const SCHEMA_VERSION: i64 = 5;
/// `PRAGMA application_id` of a trafmon database ("tmdb").
pub const APPLICATION_ID: i64 = 0x746d_6462;
/// Rows per upsert statement of a flush's commit: SQLite's per-statement
/// work is paid once per this many rows instead of once per row.
pub const ROWS_PER_STATEMENT: usize = 64;

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
    /// The path names a directory (a `store` setting that forgot the
    /// file name).
    #[error("{path}: a directory, not a database file; name the file (`store = \"{}\"`)", path.join("trafmon.db").display())]
    Directory {
        /// The path.
        path: PathBuf,
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
    /// An older schema, which only the agent upgrades.
    #[error(
        "{path}: schema version {found} is older than this trafmon's {SCHEMA_VERSION}; restart the agent (it upgrades the store) and try again"
    )]
    Outdated {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// A key of the unfolded rows would not hold a bucket or entity id
    /// (more than 2³¹ unfolded buckets or 2³² entities, which no store
    /// reaches in practice); the flush stays uncommitted.
    #[error(
        "{path}: entity id {entity} in unfolded bucket {bucket} is beyond the unfolded rows' key; the flush was not committed"
    )]
    KeyRange {
        /// The file.
        path: PathBuf,
        /// The bucket's id.
        bucket: i64,
        /// The entity's id.
        entity: i64,
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
    /// Any other entity, with its label now (a user name). Boxed, so that
    /// a delta is 56 bytes instead of 88: a large flush's deltas are nearly
    /// all addresses, and the agent sorts them and holds them through the
    /// commit.
    Named(Box<(Entity, String)>),
}

/// Traffic of one entity in one flush.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    /// Whose.
    pub subject: Subject,
    /// How much.
    pub counters: Counters,
}

// See `Subject::Named`: what a large flush holds per address.
const _: () = assert!(size_of::<Delta>() == 56);

impl Delta {
    /// The delta of an entity given by kind, key and label.
    pub fn named(kind: Kind, key: String, label: String, counters: Counters) -> Self {
        Self {
            subject: Subject::Named(Box::new((Entity { kind, key }, label))),
            counters,
        }
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        match &self.subject {
            Subject::Ip(_) => Kind::Ip,
            Subject::Named(named) => named.0.kind,
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
            Subject::Named(named) => {
                let (entity, label) = *named;
                (entity, label, self.counters)
            }
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

/// What a per-entity sum reads ([`Store::sum`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The rows of a resolution, folded or not, with `from <= start < to`.
    Rows(Resolution, i64, i64),
    /// What retention pruned from the monthly rows (one sum per entity).
    Pruned,
    /// Every month plus what was pruned: lifetime totals.
    Lifetime,
}

/// Rows by (entity key, bucket start): (label, counters).
pub type Rows = BTreeMap<(String, i64), (String, Counters)>;

/// An open store.
pub struct Store {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
    /// The entities of the last flush ([`entities::Known`]).
    known: entities::Known,
}

impl Drop for Store {
    /// The last connection to close checkpoints the `-wal` file, which
    /// [`Store::persist_wal`] keeps: with this limit it is also emptied, so
    /// that no frames stay in it for a copy restored in the database's place
    /// (README, History). Only at the close: while the agent runs, an
    /// emptied file would grow again with every reset of the log.
    fn drop(&mut self) {
        // Only the writer's close checkpoints; a reader has nothing to set.
        if self.conn.is_readonly(rusqlite::MAIN_DB) == Ok(false) {
            let _ = self.conn.execute_batch("PRAGMA journal_size_limit = 0");
        }
    }
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
            if version < SCHEMA_VERSION {
                store.upgrade(version)?;
            }
        }
        store.tune()?;
        Ok(store)
    }

    /// Opens an existing store for reading only (the CLI).
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let (store, found) = Self::connect_read_only(path)?;
        if found < SCHEMA_VERSION {
            return Err(StoreError::Outdated {
                path: path.into(),
                found,
            });
        }
        Ok(store)
    }

    /// A read-only connection to an existing trafmon store, and its schema
    /// version.
    fn connect_read_only(path: &Path) -> Result<(Self, i64), StoreError> {
        let store = Self::connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let version = store.check_version()?;
        store
            .conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| store.sql("set the busy timeout", e))?;
        Ok((store, version))
    }

    /// Commits a write that changes nothing (the schema version, set to
    /// itself), so that a store that cannot take one now (a full disk, a
    /// read-only file system) is found before a caller lets go of anything.
    pub fn probe_write(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(|e| self.sql("write to the store", e))
    }

    /// Checks an existing store as [`Self::open`] does before the agent
    /// writes to it (application id, schema version, and with `whole` the
    /// `PRAGMA quick_check` that reads every page), without writing:
    /// `trafmon check`. Returns its schema version, which may be older than
    /// [`SCHEMA_VERSION`] (the agent upgrades it).
    pub fn inspect(path: &Path, whole: bool) -> Result<i64, StoreError> {
        let (store, version) = Self::connect_read_only(path)?;
        if whole {
            store.quick_check()?;
        }
        Ok(version)
    }

    fn connect(path: &Path, flags: OpenFlags) -> Result<Self, StoreError> {
        if path.is_dir() {
            return Err(StoreError::Directory { path: path.into() });
        }
        let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
            path: path.into(),
            source,
        })?;
        Ok(Self {
            conn,
            path: path.into(),
            known: entities::Known::default(),
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

    /// Checks the application id and returns the schema version (1 to
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
        if !(1..=SCHEMA_VERSION).contains(&version) {
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
        self.persist_wal();
        self.conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(|e| self.sql("set pragmas", e))
    }

    /// Keeps the `-wal` and `-shm` files when the writer closes the store
    /// (`SQLITE_FCNTL_PERSIST_WAL`). SQLite opens a WAL database for a
    /// reader who may not write in its directory (a member of a group the
    /// store is readable by) only where both files exist; without this, such
    /// a reader fails with `SQLITE_READONLY_DIRECTORY` whenever no agent
    /// runs. rusqlite has no call for a file control, hence the FFI.
    fn persist_wal(&self) {
        let mut on: std::ffi::c_int = 1;
        // SAFETY: the handle is this open connection's, "main" is a
        // NUL-terminated name, and PERSIST_WAL reads and writes one int.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_file_control(
                self.conn.handle(),
                rusqlite::MAIN_DB.as_ptr(),
                rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
                (&raw mut on).cast(),
            )
        };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::warn!(
                path = %self.path.display(),
                rc,
                "cannot keep the -wal and -shm files; readers without write permission on the directory need a running agent"
            );
        }
    }
}

/// What the store's tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::{fs, path::PathBuf};

    use jiff::{Timestamp, civil::Weekday, tz::TimeZone};
    use trafmon_common::Counters;

    use super::{Delta, FlushCommit, Kind, Store, Subject};
    use crate::calendar::Calendar;

    /// UTC, weeks from Monday, months from the 1st.
    pub fn cal() -> Calendar {
        Calendar {
            tz: TimeZone::UTC,
            week_start: Weekday::Monday,
            month_start_day: 1,
        }
    }

    /// One packet each way with `rx` and `tx` bytes.
    pub fn delta(kind: Kind, key: &str, rx: u64, tx: u64) -> Delta {
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

    /// A flush of side 0 with traffic up to `at`.
    pub fn flush(seq: i64, at: Timestamp, deltas: Vec<Delta>) -> FlushCommit {
        FlushCommit {
            seq,
            side: 0,
            at,
            deltas,
        }
    }

    /// Commits [`flush`] under [`cal`].
    pub fn commit(store: &mut Store, seq: i64, at: Timestamp, deltas: Vec<Delta>) {
        store.commit(&flush(seq, at, deltas), &cal()).unwrap();
    }

    /// How many entities the store holds.
    pub fn entity_rows(store: &Store) -> i64 {
        store
            .conn
            .query_row("SELECT COUNT(*) FROM entity", [], |r| r.get(0))
            .unwrap()
    }

    /// A database path in a fresh directory of its own.
    pub fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("trafmon-store-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir.join("trafmon.db")
    }
}

#[cfg(test)]
mod tests {
    use super::{testing::*, *};

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
    fn a_directory_is_named_as_one() {
        let dir = tmp("dir").with_extension("d");
        fs::create_dir_all(&dir).unwrap();
        for e in [
            Store::open(&dir).err().expect("must fail"),
            Store::open_read_only(&dir).err().expect("must fail"),
        ] {
            assert!(matches!(e, StoreError::Directory { .. }), "{e}");
        }
        assert!(dir.is_dir() && fs::read_dir(&dir).unwrap().next().is_none());
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
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
            e.contains("schema version 99, but this trafmon knows version 5"),
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

    /// Version 3 and 4's table of unfolded rows and its views, as they
    /// made them.
    fn version_3_recent() -> String {
        let mut ddl = String::from(
            "CREATE TABLE recent (
                fivemin INTEGER NOT NULL, hour INTEGER NOT NULL, day INTEGER NOT NULL,
                month INTEGER NOT NULL, entity INTEGER NOT NULL REFERENCES entity (id),
                rx_bytes INTEGER NOT NULL, rx_packets INTEGER NOT NULL,
                tx_bytes INTEGER NOT NULL, tx_packets INTEGER NOT NULL,
                PRIMARY KEY (fivemin, entity)
            ) WITHOUT ROWID;",
        );
        for (res, column) in Resolution::ALL
            .into_iter()
            .zip(["fivemin", "hour", "day", "month"])
        {
            ddl.push_str(&format!(
                "CREATE VIEW {} AS
                    SELECT entity, start, rx_bytes, rx_packets, tx_bytes, tx_packets FROM {}
                    UNION ALL
                    SELECT entity, {column}, rx_bytes, rx_packets, tx_bytes, tx_packets FROM recent;",
                res.view(),
                res.table()
            ));
        }
        ddl
    }

    #[test]
    fn version_1_to_4_stores_are_upgraded_with_their_history() {
        for old in [1, 2, 3, 4] {
            let path = tmp(&format!("v{old}"));
            let mut store = Store::open(&path).unwrap();
            let at = "2026-11-20T00:05:00Z".parse().unwrap();
            commit(&mut store, 1, at, vec![delta(Kind::Uid, "1000", 3, 4)]);
            store.fold(i64::MAX).unwrap();
            // What the older versions did not have, or had otherwise.
            let mut undo = String::from(
                "DROP VIEW lifetime_all;
                 DROP VIEW fivemin_all; DROP VIEW hourly_all; DROP VIEW daily_all; DROP VIEW monthly_all;
                 DROP TABLE recent; DROP TABLE recent_bucket;",
            );
            if old < 4 {
                undo.push_str("DROP TABLE pruned;");
            }
            if old >= 3 {
                // Unfolded rows in version 3's table: 2026-11-20 10:00 in
                // its hour, day and month (UTC, billing from the 1st).
                undo.push_str(&version_3_recent());
                undo.push_str(
                    "INSERT INTO recent SELECT 1795168800, 1795168800, 1795132800, 1793491200, id, 10, 1, 20, 2
                     FROM entity WHERE key = '1000';",
                );
            }
            if old == 4 {
                undo.push_str(
                    "CREATE VIEW lifetime_all AS
                        SELECT entity, rx_bytes, rx_packets, tx_bytes, tx_packets FROM monthly_all
                        UNION ALL
                        SELECT entity, rx_bytes, rx_packets, tx_bytes, tx_packets FROM pruned;",
                );
            }
            if old == 1 {
                undo.push_str("DROP TABLE quota_state;");
            }
            undo.push_str(&format!("PRAGMA user_version = {old};"));
            store.conn.execute_batch(&undo).unwrap();
            if old >= 3 {
                let before =
                    store
                        .conn
                        .query_row("SELECT SUM(tx_bytes) FROM monthly_all", [], |r| {
                            r.get::<_, i64>(0)
                        });
                assert_eq!(before.unwrap(), 24, "the old layout as made");
            }
            drop(store);
            let e = Store::open_read_only(&path).err().expect("must fail");
            assert!(
                e.to_string().contains(&format!(
                    "schema version {old} is older than this trafmon's 5; restart the agent"
                )),
                "{e}"
            );
            let mut store = Store::open(&path).unwrap();
            let unfolded = if old >= 3 { 20 } else { 0 };
            let totals = store.totals().unwrap();
            assert_eq!(totals.len(), 1, "from version {old}");
            assert_eq!(totals[0].counters.tx_bytes, 4 + unfolded);
            // Version 3's unfolded rows were folded into every table on the
            // way, in the buckets they named.
            let sums = store.resolution_sums().unwrap();
            assert!(sums.iter().all(|c| c.tx_bytes == 4 + unfolded), "{sums:?}");
            assert_eq!(store.oldest_unfolded().unwrap(), None);
            let hours = store
                .rows(Resolution::Hour, Kind::Uid, i64::MIN, i64::MAX)
                .unwrap();
            let hours: Vec<(i64, u64)> = hours
                .iter()
                .map(|((_, start), (_, c))| (*start, c.tx_bytes))
                .collect();
            let mut want = vec![(1_795_132_800, 4)];
            if old >= 3 {
                want.push((1_795_168_800, 20));
            }
            assert_eq!(hours, want, "from version {old}");
            assert!(store.quota_states().unwrap().is_empty());
            let version: i64 = store
                .conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(version, SCHEMA_VERSION);
            // And the upgraded store takes flushes.
            let at = "2026-11-20T00:05:10Z".parse().unwrap();
            commit(&mut store, 2, at, vec![delta(Kind::Uid, "1000", 1, 1)]);
            assert_eq!(store.totals().unwrap()[0].counters.tx_bytes, 5 + unfolded);
            fs::remove_dir_all(path.parent().unwrap()).unwrap();
        }
    }
}
