//! `trafmon status`: what is attached where, map fill, overflow, the last
//! flush, the store, and whether an agent runs. [`gather`] reads it all
//! into a [`Status`]; [`render`] prints it as text or JSON.

mod render;

use std::{collections::BTreeMap, fs, io, path::PathBuf};

use aya::programs::links::PinnedLink;
use serde::Serialize;

use super::open_store;
use crate::{
    config::Config,
    counters::Maps,
    paths::{Attachment, PinDir},
    pidfile,
};

/// `trafmon status` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON instead of text (with a format version).
    #[arg(long)]
    pub json: bool,
}

/// The version of the JSON form; raised when a field changes meaning or
/// goes away.
pub const JSON_VERSION: u32 = 1;

/// Everything `trafmon status` shows.
#[derive(Debug, Serialize)]
pub struct Status {
    /// [`JSON_VERSION`].
    pub jsonversion: u32,
    /// Whether an agent runs.
    pub agent: Agent,
    /// The pinned links.
    pub links: Links,
    /// The tc programs' filters, where the kernel has no TCX links.
    pub clsact: Option<Clsact>,
    /// The pinned maps.
    pub maps: MapsState,
    /// The store.
    pub store: StoreState,
}

/// Whether an agent runs.
#[derive(Debug, Serialize)]
pub struct Agent {
    /// Whether it does.
    pub running: bool,
    /// Its process id.
    pub pid: Option<u32>,
    /// Its executable was replaced (or removed) since it started, as an
    /// upgrade does: it runs the old version until it is restarted.
    pub binary_replaced: bool,
}

/// The pinned links.
#[derive(Debug, Serialize)]
pub struct Links {
    /// Where they are pinned.
    pub dir: PathBuf,
    /// Why the directory could not be read (then `attached` is empty).
    pub error: Option<String>,
    /// Each link, by pin name.
    pub attached: Vec<Link>,
}

/// One pinned link.
#[derive(Debug, Serialize)]
pub struct Link {
    /// Its pin's name.
    pub pin: String,
    /// Where it is attached ("cgroup_skb ingress", "tc egress on eth0").
    pub attachment: String,
    /// What the kernel says of it.
    #[serde(flatten)]
    pub info: LinkInfo,
}

/// What the kernel says of a pinned link.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum LinkInfo {
    /// It was read.
    Read {
        /// The program it runs.
        program_id: u32,
        /// That program's name, when the kernel still lists it.
        program: Option<String>,
        /// The link's id.
        link_id: u32,
    },
    /// It could not be read.
    Unreadable {
        /// Why.
        error: String,
    },
}

/// The tc filters of the agent.
#[derive(Debug, Serialize)]
pub struct Clsact {
    /// Their priority.
    pub priority: u16,
    /// Their handle.
    pub handle: u32,
}

/// The pinned maps.
#[derive(Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MapsState {
    /// None is pinned: nothing is installed.
    NonePinned {
        /// Where they would be.
        dir: PathBuf,
    },
    /// They are pinned.
    Pinned {
        /// The side the programs write ("A" or "B"; none when unreadable).
        active_side: Option<&'static str>,
        /// The fill of each hash map.
        maps: Vec<MapFill>,
        /// Traffic counted as overflow since the last flush, per kind.
        overflow: Vec<Overflow>,
    },
    /// They could not be opened.
    Error {
        /// Why.
        error: String,
    },
}

/// The fill of one map.
#[derive(Debug, Serialize)]
pub struct MapFill {
    /// Its name.
    pub name: &'static str,
    /// Keys in it now.
    pub keys: usize,
    /// Its size.
    pub max_entries: u32,
    /// The configured size, when it differs (the agent resizes the map at
    /// its next start).
    pub configured: Option<u32>,
}

/// Overflow traffic of one map kind.
#[derive(Debug, Serialize)]
pub struct Overflow {
    /// "uid", "ip" or "iface".
    pub map: String,
    /// Packets, both directions.
    pub packets: u64,
    /// Bytes, both directions.
    pub bytes: u64,
}

/// The store.
#[derive(Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StoreState {
    /// It could be read.
    Open {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// Its write-ahead log's size.
        wal_bytes: u64,
        /// The last flush.
        last_flush: Option<LastFlush>,
        /// Overflow traffic stored so far, per map kind.
        overflow: Vec<Overflow>,
        /// The newest events (at most [`EVENTS`]), newest first.
        events: Vec<Event>,
    },
    /// It could not be read.
    Error {
        /// Why.
        error: String,
    },
}

/// How many events `status` shows.
pub const EVENTS: usize = 5;

/// The last flush.
#[derive(Debug, Serialize)]
pub struct LastFlush {
    /// Its sequence number.
    pub seq: i64,
    /// When it ran (in JSON: `at`, RFC 3339 UTC text).
    #[serde(rename = "at", serialize_with = "utc")]
    pub at_ms: i64,
    /// How long it took, flip to recorded clear.
    pub duration_us: Option<i64>,
    /// Whether its side was cleared.
    pub cleared: bool,
}

/// An event of the store.
#[derive(Debug, Serialize)]
pub struct Event {
    /// When (in JSON: `at`, RFC 3339 UTC text).
    #[serde(rename = "at", serialize_with = "utc")]
    pub at_ms: i64,
    /// What kind.
    pub kind: String,
    /// What happened.
    pub detail: String,
}

/// Unix milliseconds as RFC 3339 UTC text, as `quota --json` writes times.
fn utc<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    match jiff::Timestamp::from_millisecond(*ms) {
        Ok(t) => s.collect_str(&t),
        Err(_) => s.serialize_i64(*ms),
    }
}

fn size_of(path: &std::path::Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The pinned links, with the programs they run.
fn links(pins: &PinDir) -> Links {
    let dir = pins.links();
    // A directory this user may not read is said so, not shown as empty.
    let mut names: Vec<String> = match fs::read_dir(&dir) {
        Ok(d) => d
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Links {
                dir,
                error: Some(e.to_string()),
                attached: Vec::new(),
            };
        }
    };
    names.sort();
    // Program names by id, so that each link shows which program it runs
    // (`tcd_*`: the device only, see `address_interfaces`).
    let programs: BTreeMap<u32, String> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| Some((p.id(), p.name_as_str()?.to_owned())))
        .collect();
    let attached = names
        .into_iter()
        .map(|pin| {
            let attachment = match Attachment::from_pin_name(&pin) {
                Some(Attachment::CgroupIngress) => "cgroup_skb ingress".to_owned(),
                Some(Attachment::CgroupEgress) => "cgroup_skb egress".to_owned(),
                Some(Attachment::TcIngress(i)) => format!("tc ingress on {i}"),
                Some(Attachment::TcEgress(i)) => format!("tc egress on {i}"),
                None => format!("unknown link {pin}"),
            };
            let info = PinnedLink::from_pin(dir.join(&pin))
                .map_err(|e| e.to_string())
                .and_then(|link| {
                    aya::programs::links::FdLink::from(link)
                        .info()
                        .map_err(|e| e.to_string())
                });
            let info = match info {
                Ok(info) => LinkInfo::Read {
                    program_id: info.program_id(),
                    program: programs.get(&info.program_id()).cloned(),
                    link_id: info.id(),
                },
                Err(error) => LinkInfo::Unreadable { error },
            };
            Link {
                pin,
                attachment,
                info,
            }
        })
        .collect();
    Links {
        dir,
        error: None,
        attached,
    }
}

/// The pinned maps: fill and overflow.
fn maps(pins: &PinDir, config: &Config) -> anyhow::Result<MapsState> {
    // Not installed (never, or uninstalled): no map to open is no error.
    // (A directory this user may not read is not taken for an empty one.)
    let none_pinned = match fs::read_dir(pins.maps()) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    };
    let maps = match Maps::open(pins) {
        Ok(maps) => maps,
        Err(_) if none_pinned => return Ok(MapsState::NonePinned { dir: pins.maps() }),
        Err(e) => {
            return Ok(MapsState::Error {
                error: crate::error_chain(&e),
            });
        }
    };
    let active_side = maps
        .active_side()
        .ok()
        .map(|s| if s == 0 { "A" } else { "B" });
    let fill = maps
        .fill()?
        .into_iter()
        .map(|(name, keys, max_entries)| MapFill {
            name,
            keys,
            max_entries,
            configured: crate::resize::configured(&config.maps, name)
                .filter(|size| *size != max_entries),
        })
        .collect();
    let live = maps.read_all()?;
    let overflow = ["uid", "ip", "iface"]
        .iter()
        .zip(live.overflow)
        .filter(|(_, c)| !c.is_zero())
        .map(|(kind, c)| Overflow {
            map: (*kind).to_owned(),
            packets: c.rx_packets + c.tx_packets,
            bytes: c.rx_bytes + c.tx_bytes,
        })
        .collect();
    Ok(MapsState::Pinned {
        active_side,
        maps: fill,
        overflow,
    })
}

/// The store: sizes, last flush, stored overflow and the newest events.
fn store(config: &Config) -> anyhow::Result<StoreState> {
    let path = config.store_path();
    let store = match open_store(&path) {
        Ok(store) => store,
        Err(e) => {
            return Ok(StoreState::Error {
                error: crate::error_chain(&e),
            });
        }
    };
    let last_flush = store.last_flush()?.map(|f| LastFlush {
        seq: f.seq,
        at_ms: f.at_ms,
        duration_us: f.duration_us,
        cleared: f.cleared,
    });
    let overflow = store
        .totals()?
        .into_iter()
        .filter(|t| t.entity.kind == crate::store::Kind::Overflow)
        .map(|t| Overflow {
            map: t.entity.key,
            packets: t.counters.rx_packets + t.counters.tx_packets,
            bytes: t.counters.rx_bytes + t.counters.tx_bytes,
        })
        .collect();
    let events = store
        .events()?
        .into_iter()
        .rev()
        .take(EVENTS)
        .map(|(at_ms, kind, detail)| Event {
            at_ms,
            kind,
            detail,
        })
        .collect();
    Ok(StoreState::Open {
        bytes: size_of(&path),
        wal_bytes: size_of(&path.with_extension("db-wal")),
        path,
        last_flush,
        overflow,
        events,
    })
}

/// Reads everything `status` shows.
pub fn gather(config: &Config) -> anyhow::Result<Status> {
    let pins = PinDir::new(&config.pin_dir);
    // Filters cannot be pinned, so they are not among the links.
    let installed = pins.map(trafmon_common::SELECTOR).exists();
    // (The mode's probe is a system call: only when something is installed.)
    let clsact = (installed && matches!(crate::clsact::mode(), Ok(crate::clsact::Mode::Clsact)))
        .then(|| {
            let filter = crate::clsact::Filter::of(&config.pin_dir);
            Clsact {
                priority: filter.priority,
                handle: u32::from(filter.handle),
            }
        });
    let pid = pidfile::running(&config.state_dir);
    Ok(Status {
        jsonversion: JSON_VERSION,
        agent: Agent {
            running: pid.is_some(),
            pid,
            binary_replaced: pid.is_some_and(pidfile::binary_replaced),
        },
        links: links(&pins),
        clsact,
        maps: maps(&pins, config)?,
        store: store(config)?,
    })
}

/// Runs `trafmon status`.
pub fn run(args: &Args, config: &Config) -> anyhow::Result<()> {
    let status = gather(config)?;
    let mut out = io::stdout().lock();
    if args.json {
        render::json(&mut out, &status)?;
    } else {
        render::text(&mut out, &status, &config.timezone.tz)?;
    }
    Ok(())
}
