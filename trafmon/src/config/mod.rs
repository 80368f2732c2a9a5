//! The configuration: TOML, every key optional, an embedded default when no
//! file exists. Every check happens while deserializing, so that an error
//! names the file, the line and the key; a bad file never falls back to the
//! defaults.

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use jiff::{ToSpan as _, civil::Weekday};
use serde::Deserialize;

mod networks;
mod readers;
mod values;

pub use networks::*;
pub use readers::*;
pub use values::*;

use crate::{
    calendar::Calendar,
    paths,
    quota::spec::{INHERIT_START_DAY, Period, Quota, Target},
};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("{path}: cannot read the configuration")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A key or value is wrong.
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// Dotted key path (`maps.uid_entries`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The file is not valid TOML.
    #[error("{path}:{line}: {message}{}", at.as_ref().map_or(String::new(), |t| format!(" at `{t}`")))]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// What is wrong, as the TOML parser says it.
        message: String,
        /// The text the parser points at (a duplicate key, a bare value).
        at: Option<String>,
    },
}

/// Max entries of each stats map (each side).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MapSizes {
    /// Per-UID maps.
    pub uid_entries: Entries,
    /// Per-IP maps.
    pub ip_entries: Entries,
    /// Per-interface maps.
    pub iface_entries: Entries,
}

impl Default for MapSizes {
    fn default() -> Self {
        Self {
            uid_entries: Entries(trafmon_common::DEFAULT_UID_ENTRIES),
            ip_entries: Entries(trafmon_common::DEFAULT_IP_ENTRIES),
            iface_entries: Entries(trafmon_common::DEFAULT_IFACE_ENTRIES),
        }
    }
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Flush (and print) interval; divides five minutes evenly.
    pub interval: Interval,
    /// Root of the pins on bpffs.
    #[serde(deserialize_with = "absolute")]
    pub pin_dir: PathBuf,
    /// State directory (the store).
    #[serde(deserialize_with = "absolute")]
    pub state_dir: PathBuf,
    /// The cgroup of the cgroup_skb programs.
    pub cgroup: CgroupSetting,
    /// The interfaces of the tc programs.
    pub interfaces: Interfaces,
    /// Those of them on which addresses are counted.
    pub address_interfaces: AddressInterfaces,
    /// Map sizes.
    pub maps: MapSizes,
    /// The database file (default: `<state_dir>/trafmon.db`).
    #[serde(deserialize_with = "absolute_or_none")]
    pub store: Option<PathBuf>,
    /// Time zone of local days and months: an IANA name, or "system".
    pub timezone: Zone,
    /// First day of a week.
    pub week_start: WeekStart,
    /// Day of the month a billing month starts on (1 to 31).
    pub month_start_day: MonthStartDay,
    /// How long each resolution is kept.
    pub retention: Retention,
    /// Named groups of addresses and networks, counted as one entity each.
    #[serde(deserialize_with = "groups")]
    pub groups: BTreeMap<String, Vec<Cidr>>,
    /// Networks whose addresses are "ours" on interfaces that face guests.
    #[serde(deserialize_with = "networks")]
    pub local_networks: Vec<Cidr>,
    /// Caps, in `[[quota]]` tables.
    #[serde(rename = "quota")]
    pub quotas: Vec<Quota>,
    /// The `/metrics` endpoint.
    pub metrics: Metrics,
}

/// The Prometheus endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Serve `/metrics` at all.
    pub enabled: bool,
    /// Address and port; loopback unless `expose` is set.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: std::net::SocketAddr,
    /// Allow a `listen` address other hosts can reach.
    pub expose: bool,
    /// At most this many series per entity kind (users, addresses,
    /// interfaces, groups); the rest are summed as `other`.
    #[serde(deserialize_with = "series")]
    pub max_series: u32,
}

/// The default metrics port.
pub const DEFAULT_METRICS_PORT: u16 = 9977;

impl Default for Metrics {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], DEFAULT_METRICS_PORT)),
            expose: false,
            max_series: 10_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interval: Interval(Duration::from_secs(10)),
            pin_dir: paths::DEFAULT_PIN_DIR.into(),
            state_dir: paths::DEFAULT_STATE_DIR.into(),
            cgroup: CgroupSetting::Root,
            interfaces: Interfaces::Auto,
            address_interfaces: AddressInterfaces::All,
            maps: MapSizes::default(),
            store: None,
            timezone: Zone::default(),
            week_start: WeekStart(Weekday::Monday),
            month_start_day: MonthStartDay(1),
            retention: Retention::default(),
            groups: BTreeMap::new(),
            local_networks: Vec::new(),
            quotas: Vec::new(),
            metrics: Metrics::default(),
        }
    }
}

impl Config {
    /// The database file.
    pub fn store_path(&self) -> PathBuf {
        self.store
            .clone()
            .unwrap_or_else(|| self.state_dir.join("trafmon.db"))
    }

    /// The calendar of buckets.
    pub fn calendar(&self) -> Calendar {
        Calendar {
            tz: self.timezone.tz.clone(),
            week_start: self.week_start.0,
            month_start_day: self.month_start_day.0,
        }
    }

    /// Loads `path`. With `explicit` false (the default path), a missing
    /// file means the embedded default; an explicitly named file must exist.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !explicit => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.into(),
                source,
            }),
        }
    }

    /// Parses configuration text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |span: Option<std::ops::Range<usize>>, key: String, message: String| {
            ConfigError::Invalid {
                path: path.into(),
                line: span.map_or(1, |s| line_of(text, s.start)),
                key,
                message,
            }
        };
        let de = toml::Deserializer::parse(text).map_err(|e| {
            let span = e.span();
            // The parser's messages ("duplicate key") do not say which.
            let at = span
                .clone()
                .and_then(|s| text.get(s))
                .map(|t| t.lines().next().unwrap_or("").trim())
                .filter(|t| !t.is_empty())
                .map(|t| t.chars().take(60).collect());
            ConfigError::Syntax {
                path: path.into(),
                line: span.map_or(1, |s| line_of(text, s.start)),
                message: e.message().trim_end().to_owned(),
                at,
            }
        })?;
        let mut config: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            invalid(inner.span(), key, inner.message().to_owned())
        })?;
        let m = &config.metrics;
        if m.enabled && !m.expose && !m.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                path: path.into(),
                line: nth_line_starting(text, "listen", 0).unwrap_or(1),
                key: "metrics.listen".into(),
                message: format!(
                    "{} is not a loopback address; set `expose = true` in [metrics] to serve metrics to other hosts",
                    m.listen
                ),
            });
        }
        if let (Interfaces::List(watched), AddressInterfaces::List(names)) =
            (&config.interfaces, &config.address_interfaces)
            && let Some(name) = names.iter().find(|n| !watched.contains(n))
        {
            return Err(ConfigError::Invalid {
                path: path.into(),
                line: nth_line_starting(text, "address_interfaces", 0).unwrap_or(1),
                key: "address_interfaces".into(),
                message: format!("`{name}` is not one of `interfaces`"),
            });
        }
        config
            .check_quotas()
            .map_err(|(i, message)| ConfigError::Invalid {
                path: path.into(),
                line: nth_line_starting(text, "[[quota]]", i).unwrap_or(1),
                key: format!("quota[{i}]"),
                message,
            })?;
        Ok(config)
    }

    /// Checks what one `[[quota]]` table cannot check alone, and fills in
    /// the inherited month start day. Errors: (index, message).
    fn check_quotas(&mut self) -> Result<(), (usize, String)> {
        let mut names = std::collections::BTreeSet::new();
        let mut enforcing = 0;
        for (i, q) in self.quotas.iter_mut().enumerate() {
            if !names.insert(q.name.clone()) {
                return Err((i, format!("a quota named `{}` already exists", q.name)));
            }
            if q.period == Period::Month(INHERIT_START_DAY) {
                q.period = Period::Month(self.month_start_day.0);
            }
            // Usage is summed from the daily rows: they must outlive a period.
            if let Some(kept) = &self.retention.daily.span {
                let period = match q.period {
                    Period::Month(_) => 31.days(),
                    Period::Week => 7.days(),
                    Period::Day => 1.days(),
                };
                let shorter = kept
                    .compare((period, jiff::civil::date(2000, 1, 1)))
                    .is_ok_and(|o| o.is_lt());
                if shorter {
                    return Err((
                        i,
                        format!(
                            "retention.daily = \"{}\" is shorter than a {} period; usage would shrink as days are pruned",
                            self.retention.daily.text,
                            q.period.as_str()
                        ),
                    ));
                }
            }
            if let Target::Group(g) = &q.target {
                match self.groups.get(g) {
                    None => return Err((i, format!("no group `{g}` in [groups]"))),
                    Some(nets) if nets.len() > trafmon_common::ENFORCE_NET_ENTRIES as usize => {
                        return Err((i, format!("group `{g}` has too many networks to enforce")));
                    }
                    Some(_) => {}
                }
            }
            if q.action.enforces() {
                enforcing += 1;
                if enforcing > trafmon_common::ENFORCE_SLOTS {
                    return Err((
                        i,
                        format!(
                            "at most {} quotas may throttle or block",
                            trafmon_common::ENFORCE_SLOTS
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// 1-based line of the `n`-th (0-based) line that starts with `prefix`.
fn nth_line_starting(text: &str, prefix: &str, n: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with(prefix))
        .nth(n)
        .map(|(i, _)| i + 1)
}

/// 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn addresses_are_counted_on_every_interface_or_those_listed() {
        assert!(parse("").unwrap().address_interfaces.counts("tap1"));
        let c = parse("address_interfaces = [\"eth0\"]\n").unwrap();
        assert!(c.address_interfaces.counts("eth0"));
        assert!(!c.address_interfaces.counts("tap1"));
        let c =
            parse("interfaces = [\"eth0\", \"tap1\"]\naddress_interfaces = [\"eth0\"]\n").unwrap();
        assert_eq!(
            c.address_interfaces,
            AddressInterfaces::List(vec!["eth0".into()])
        );
    }

    #[test]
    fn every_key() {
        let c = parse(
            r#"
interval = "100ms"
pin_dir = "/sys/fs/bpf/x"
state_dir = "/tmp/s"
cgroup = "/sys/fs/cgroup/unified/t"
interfaces = ["veth0", "eth1"]
[maps]
uid_entries = 4
"#,
        )
        .unwrap();
        assert_eq!(c.interval, Interval(Duration::from_millis(100)));
        assert_eq!(
            c.cgroup,
            CgroupSetting::Path("/sys/fs/cgroup/unified/t".into())
        );
        assert_eq!(
            c.interfaces,
            Interfaces::List(vec!["veth0".into(), "eth1".into()])
        );
        assert_eq!(c.maps.uid_entries, Entries(4));
        assert_eq!(c.maps.ip_entries, MapSizes::default().ip_entries);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = parse("interval = \"10s\"\n[maps]\nuid_entries = 4\nbogus = 1\n").unwrap_err();
        assert!(
            e.starts_with("/etc/t.toml:4: maps.bogus: unknown field `bogus`"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = parse("\n\ninterval = \"-5s\"\n").unwrap_err();
        assert!(
            e.starts_with("/etc/t.toml:3: interval: `-5s` must be positive"),
            "{e}"
        );
        let e = parse("interval = \"7s\"\n").unwrap_err();
        assert!(
            e.contains("interval: `7s` must be at least 10ms and divide 5m"),
            "{e}"
        );
        let e = parse("[maps]\nip_entries = 0\n").unwrap_err();
        assert!(
            e.starts_with("/etc/t.toml:2: maps.ip_entries: 0 entries"),
            "{e}"
        );
        let e = parse("address_interfaces = \"auto\"\n").unwrap_err();
        assert!(
            e.starts_with("/etc/t.toml:1: address_interfaces: `auto`: expected \"all\""),
            "{e}"
        );
        let e = parse("interfaces = [\"eth0\", \"tap1\"]\naddress_interfaces = [\"eth1\"]\n")
            .unwrap_err();
        assert_eq!(
            e,
            "/etc/t.toml:2: address_interfaces: `eth1` is not one of `interfaces`"
        );
        let e = parse("interfaces = \"all\"\n").unwrap_err();
        assert!(e.starts_with("/etc/t.toml:1: interfaces: `all`"), "{e}");
        let e = parse("cgroup = \"relative\"\n").unwrap_err();
        assert!(e.starts_with("/etc/t.toml:1: cgroup:"), "{e}");
        for key in ["pin_dir", "state_dir", "store"] {
            let e = parse(&format!("\n{key} = \"var/lib/trafmon\"\n")).unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "/etc/t.toml:2: {key}: `var/lib/trafmon` is not an absolute path"
                )),
                "{e}"
            );
        }
        for name in ["a>>>b", ""] {
            let e = parse(&format!("[groups]\n\"{name}\" = [\"192.0.2.0/24\"]\n")).unwrap_err();
            assert_eq!(
                e,
                format!(
                    "/etc/t.toml:2: groups.{name}: `{name}` is not a group name \
                     (letters, digits, '.', '_' and '-')"
                )
            );
        }
        let c = parse("store = \"/srv/trafmon.db\"\n").unwrap();
        assert_eq!(c.store_path(), PathBuf::from("/srv/trafmon.db"));
    }

    #[test]
    fn a_value_of_the_wrong_type_says_what_to_write() {
        let cases = [
            (
                "interval = 10\n",
                "/etc/t.toml:1: interval: invalid type: integer `10`, \
                 expected a duration like \"10s\"",
            ),
            (
                "month_start_day = \"5\"\n",
                "/etc/t.toml:1: month_start_day: invalid type: string \"5\", \
                 expected a day of the month (1 to 31)",
            ),
            (
                "[retention]\ndaily = 30\n",
                "/etc/t.toml:2: retention.daily: invalid type: integer `30`, \
                 expected a span like \"48h\", \"60d\", \"5y\" or \"forever\"",
            ),
            (
                "[maps]\nip_entries = \"many\"\n",
                "/etc/t.toml:2: maps.ip_entries: invalid type: string \"many\", \
                 expected a number of entries",
            ),
            (
                "[metrics]\nmax_series = \"all\"\n",
                "/etc/t.toml:2: metrics.max_series: invalid type: string \"all\", \
                 expected a number of series",
            ),
            (
                "[[quota]]\nuser = 1\nlimit = 1\nperiod = 5\n",
                "/etc/t.toml:4: quota[0].period: invalid type: integer `5`, \
                 expected `month`, `week` or `day`",
            ),
            (
                "[[quota]]\nuser = 1\nlimit = 1\nperiod = \"year\"\n",
                "/etc/t.toml:4: quota[0].period: unknown variant `year`, \
                 expected one of `month`, `week`, `day`",
            ),
            (
                "[groups]\ncust = \"192.0.2.0/24\"\n",
                "/etc/t.toml:2: groups.cust: invalid type: string \"192.0.2.0/24\", \
                 expected a list of networks like [\"192.0.2.0/24\", \"2001:db8::7\"]",
            ),
            (
                "local_networks = \"192.0.2.0/24\"\n",
                "/etc/t.toml:1: local_networks: invalid type: string \"192.0.2.0/24\", \
                 expected a list of networks like [\"192.0.2.0/24\", \"2001:db8::7\"]",
            ),
            (
                "week_start = 1\n",
                "/etc/t.toml:1: week_start: invalid type: integer `1`, \
                 expected a day of the week (monday .. sunday)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap_err(), want, "{text:?}");
        }
    }

    #[test]
    fn calendar_retention_groups_and_networks() {
        let c = parse(
            r#"
timezone = "Europe/Berlin"
week_start = "sunday"
month_start_day = 15
local_networks = ["198.51.100.0/24", "2001:db8:1::/48"]
[retention]
fivemin = "72h"
monthly = "forever"
[groups]
customer-a = ["192.0.2.1", "192.0.2.64/26", "2001:db8::5"]
"#,
        )
        .unwrap();
        assert_eq!(c.timezone.name, "Europe/Berlin");
        assert_eq!(c.week_start, WeekStart(Weekday::Sunday));
        assert_eq!(c.month_start_day, MonthStartDay(15));
        assert_eq!(c.retention.fivemin.text, "72h");
        assert_eq!(c.retention.hourly, Retention::default().hourly);
        assert!(c.retention.monthly.span.is_none());
        let group = &c.groups["customer-a"];
        assert_eq!(group.len(), 3);
        assert!(group[1].contains(&"192.0.2.100".parse().unwrap()));
        assert!(!group[1].contains(&"192.0.2.1".parse().unwrap()));
        assert_eq!(c.local_networks.len(), 2);
    }

    #[test]
    fn bad_calendar_and_network_values_name_the_key() {
        let e = parse("timezone = \"Mars/Olympus\"\n").unwrap_err();
        assert!(
            e.starts_with("/etc/t.toml:1: timezone: `Mars/Olympus` is not a known time zone"),
            "{e}"
        );
        let e = parse("week_start = \"someday\"\n").unwrap_err();
        assert!(e.starts_with("/etc/t.toml:1: week_start:"), "{e}");
        let e = parse("month_start_day = 32\n").unwrap_err();
        assert!(e.starts_with("/etc/t.toml:1: month_start_day: 32"), "{e}");
        let e = parse("[groups]\na = [\"192.0.2.0/24\",\n \"192.0.2.300/24\"]\n").unwrap_err();
        assert!(
            e.starts_with("/etc/t.toml:2: groups.a[1]: `192.0.2.300/24` is not an address"),
            "{e}"
        );
        let e = parse("local_networks = [\"192.0.2.5/24\"]\n").unwrap_err();
        assert!(
            e.contains(
                "local_networks[0]: `192.0.2.5/24` has host bits set; the network is 192.0.2.0/24"
            ),
            "{e}"
        );
        let e = parse("[retention]\nhourly = \"-3d\"\n").unwrap_err();
        assert!(
            e.starts_with("/etc/t.toml:2: retention.hourly: `-3d` must be positive"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_names_the_line() {
        let e = parse("interval = \"10s\"\nmaps = [\n").unwrap_err();
        assert!(e.starts_with("/etc/t.toml:"), "{e}");
        // The parser's own message does not say which key or value.
        assert_eq!(
            parse("interval = \"10s\"\n\ninterval = \"20s\"\n").unwrap_err(),
            "/etc/t.toml:3: duplicate key at `interval`"
        );
        assert_eq!(
            parse("[maps]\nuid_entries = 4\n[maps]\n").unwrap_err(),
            "/etc/t.toml:3: duplicate key at `maps`"
        );
        let e = parse("interval = 10s\n").unwrap_err();
        assert!(
            e.starts_with("/etc/t.toml:1: ") && e.ends_with(" at `10s`"),
            "{e}"
        );
    }

    #[test]
    fn missing_default_file_is_the_default_but_a_named_one_is_an_error() {
        let p = Path::new("/nonexistent/trafmon.toml");
        assert_eq!(Config::load(p, false).unwrap(), Config::default());
        let e = Config::load(p, true).unwrap_err().to_string();
        assert_eq!(
            e,
            "/nonexistent/trafmon.toml: cannot read the configuration"
        );
    }

    #[test]
    fn metrics_stay_on_loopback_unless_exposed() {
        assert_eq!(
            parse("").unwrap().metrics.listen,
            "127.0.0.1:9977".parse().unwrap()
        );
        assert_eq!(
            parse("[metrics]\nlisten = \"localhost:9977\"\n").unwrap_err(),
            "/etc/t.toml:2: metrics.listen: `localhost:9977` is not an address and port like \"127.0.0.1:9977\" or \"[::1]:9977\""
        );
        let e = parse("[metrics]\nlisten = \"0.0.0.0:9977\"\n").unwrap_err();
        assert!(
            e.starts_with("/etc/t.toml:2: metrics.listen: 0.0.0.0:9977 is not a loopback address"),
            "{e}"
        );
        let c = parse("[metrics]\nlisten = \"[::]:9100\"\nexpose = true\n").unwrap();
        assert_eq!(c.metrics.listen, "[::]:9100".parse().unwrap());
        assert!(parse("[metrics]\nlisten = \"[::1]:9100\"\n").is_ok());
    }

    #[test]
    fn quotas_parse_with_defaults() {
        let c = parse(
            r#"
month_start_day = 15
[groups]
cust = ["192.0.2.0/24"]
[[quota]]
user = 1000
limit = "500GiB"
action = "throttle"
rate = "1MiB/s"
hold = "3d"
[[quota]]
name = "cust-daily"
group = "cust"
limit = 10000000000
period = "day"
direction = "rx"
warn = 0
action = "block"
"#,
        )
        .unwrap();
        let q = &c.quotas[0];
        assert_eq!(q.name, "user:1000");
        assert_eq!(q.limit, 500 << 30);
        assert_eq!(q.period, Period::Month(15), "inherits month_start_day");
        assert_eq!(q.action, crate::quota::spec::Action::Throttle(1 << 20));
        assert_eq!(q.hold_seconds, 3 * 86_400);
        assert_eq!(q.warn_percent, Some(90));
        let q = &c.quotas[1];
        assert_eq!(q.limit, 10_000_000_000, "a bare number of bytes");
        assert_eq!(q.period, Period::Day);
        assert_eq!(q.warn_percent, None);
        assert_eq!(q.target, Target::Group("cust".into()));
    }

    #[test]
    fn bad_quotas_name_file_line_and_key() {
        let cases = [
            (
                "[[quota]]\nuser = 1\nlimit = \"5 parsecs\"\n",
                "/etc/t.toml:3: quota[0].limit: `5 parsecs` is not a positive size",
            ),
            (
                "[[quota]]\nuser = 1\nlimit = \"1GiB\"\naction = \"throttle\"\nrate = \"fast\"\n",
                "/etc/t.toml:5: quota[0].rate: `fast` is not a positive rate",
            ),
            (
                "[[quota]]\nuser = 1\nlimit = \"1GiB\"\naction = \"throttle\"\n",
                "/etc/t.toml:1: quota[0]: `action = \"throttle\"` needs a `rate`",
            ),
            (
                "[[quota]]\nuser = 1\ngroup = \"x\"\nlimit = \"1GiB\"\n",
                "/etc/t.toml:1: quota[0]: needs exactly one of `user`, `group` or `address`",
            ),
            (
                "[[quota]]\nuser = 1\nlimit = \"1GiB\"\n\n[[quota]]\ngroup = \"nope\"\nlimit = \"1GiB\"\n",
                "/etc/t.toml:5: quota[1]: no group `nope` in [groups]",
            ),
            (
                "[[quota]]\nuser = \"no-such-user-here\"\nlimit = \"1GiB\"\n",
                "/etc/t.toml:2: quota[0].user: no user named `no-such-user-here`",
            ),
            (
                "[[quota]]\naddress = \"192.0.2.300\"\nlimit = \"1GiB\"\n",
                "/etc/t.toml:2: quota[0].address: `192.0.2.300` is not an IP address",
            ),
            (
                "[[quota]]\nuser = 1\nlimit = \"1GiB\"\nhold = \"soon\"\n",
                "/etc/t.toml:4: quota[0].hold: `soon` is not a span",
            ),
            (
                "[retention]\ndaily = \"20d\"\n[[quota]]\nuser = 1\nlimit = \"1GiB\"\n",
                "/etc/t.toml:3: quota[0]: retention.daily = \"20d\" is shorter than a month period",
            ),
            (
                "[[quota]]\nuser = 1\nlimit = \"1GiB\"\nwarn = 120\n",
                "/etc/t.toml:4: quota[0].warn: 120 is not a percentage",
            ),
            (
                "[[quota]]\nuser = 1\nlimit = 0\n",
                "/etc/t.toml:3: quota[0].limit: 0 is not a positive size",
            ),
            (
                "[[quota]]\nuser = 1\nlimit = true\n",
                "/etc/t.toml:3: quota[0].limit: invalid type: boolean `true`, \
                 expected a size like \"500GiB\", \"1.5TB\" or 1000000",
            ),
            (
                "[[quota]]\nuser = 1\nlimit = \"1GiB\"\nwarn = \"80\"\n",
                "/etc/t.toml:4: quota[0].warn: invalid type: string \"80\", \
                 expected a percentage (0 to 100)",
            ),
            (
                "[[quota]]\nuser = 1\nlimit = \"1GiB\"\nhold = 3\n",
                "/etc/t.toml:4: quota[0].hold: invalid type: integer `3`, \
                 expected a span like \"3d\" or \"12h\"",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(want), "{text:?}:\n  got  {e}\n  want {want}");
        }
    }
}
