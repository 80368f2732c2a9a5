//! `[[quota]]` entries of the configuration. Each value type checks itself
//! while deserializing, so an error names the file, line and key; checks
//! that need several keys (exactly one target, a rate for `throttle`) name
//! the entry.

use std::{fmt, net::IpAddr};

use jiff::{Span, SpanRelativeTo};
use serde::{Deserialize, Deserializer, de};

use crate::{
    config::{MonthStartDay, named, ranged, text},
    store::{Entity, Kind},
};

/// One quota, validated.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawQuota")]
pub struct Quota {
    /// Its name (default: the target, as `user:1000`).
    pub name: String,
    /// Whose traffic counts.
    pub target: Target,
    /// The limit in bytes per period.
    pub limit: u64,
    /// Which direction counts.
    pub direction: Direction,
    /// The period the limit applies to.
    pub period: Period,
    /// Warn once usage reaches this percent of the limit (None: never).
    pub warn_percent: Option<u8>,
    /// What happens once usage reaches the limit.
    pub action: Action,
    /// The action stays in force at least this many seconds, even across
    /// the start of a new period.
    pub hold_seconds: i64,
    /// Run with `/bin/sh -c` on a warning, an action and its lifting, with
    /// the details in `TRAFMON_*` environment variables.
    pub command: Option<String>,
}

/// Whose traffic a quota counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A socket UID (configured by name or number).
    Uid(u32),
    /// A named group of networks of the configuration.
    Group(String),
    /// One address.
    Address(IpAddr),
}

impl Target {
    /// The store entity whose traffic counts.
    pub fn entity(&self) -> Entity {
        match self {
            Self::Uid(uid) => Entity {
                kind: Kind::Uid,
                key: uid.to_string(),
            },
            Self::Group(name) => Entity {
                kind: Kind::Group,
                key: name.clone(),
            },
            Self::Address(ip) => Entity {
                kind: Kind::Ip,
                key: ip.to_string(),
            },
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uid(uid) => write!(f, "user:{uid}"),
            Self::Group(name) => write!(f, "group:{name}"),
            Self::Address(ip) => write!(f, "address:{ip}"),
        }
    }
}

/// Which direction of traffic counts against the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received only.
    Rx,
    /// Sent only.
    Tx,
    /// Both.
    Total,
}

impl Direction {
    /// Its name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rx => "rx",
            Self::Tx => "tx",
            Self::Total => "total",
        }
    }
}

/// The period a limit applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    /// A month starting on this day (1 to 31; in a shorter month its last day).
    Month(i8),
    /// A week, starting on the configured `week_start`.
    Week,
    /// A local day.
    Day,
}

impl Period {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Month(_) => "month",
            Self::Week => "week",
            Self::Day => "day",
        }
    }
}

/// What happens once usage reaches the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Log it and run the command.
    Alert,
    /// Hold each direction to this many bytes per second, in the kernel.
    Throttle(u64),
    /// Drop every packet, in the kernel.
    Block,
}

impl Action {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Throttle(_) => "throttle",
            Self::Block => "block",
        }
    }

    /// True when the kernel enforces it.
    pub fn enforces(self) -> bool {
        !matches!(self, Self::Alert)
    }
}

/// A user by name or UID.
#[derive(Clone, Debug)]
struct User(u32);

impl<'de> Deserialize<'de> for User {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = User;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a user name or a UID")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<User, E> {
                u32::try_from(n)
                    .ok()
                    .filter(|uid| *uid != u32::MAX)
                    .map(User)
                    .ok_or_else(|| E::custom(format!("{n} is not a UID")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<User, E> {
                if let Ok(uid) = s.parse::<u32>() {
                    return self.visit_i64(i64::from(uid));
                }
                match nix::unistd::User::from_name(s) {
                    Ok(Some(u)) => Ok(User(u.uid.as_raw())),
                    _ => Err(E::custom(format!("no user named `{s}`"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

const UNITS: [(&str, u64); 9] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

/// Parses `500GiB`, `1.5TB`, `100 MiB` or a bare number of bytes.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (t[..split].trim(), t[split..].trim());
    let scale = if unit.is_empty() {
        1
    } else {
        UNITS.iter().find(|(u, _)| *u == unit)?.1
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(scale);
    }
    let f: f64 = num.parse().ok()?;
    let v = f * scale as f64;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v.round() as u64)
}

/// Parses a rate: bytes per second (`1MiB/s`, `500KB/s`) or bits per second
/// (`8Mbit/s`, `100kbit/s`).
pub fn parse_rate(text: &str) -> Option<u64> {
    let t = text.trim().strip_suffix("/s")?;
    for (suffix, scale) in [
        ("kbit", 1_000u64),
        ("Mbit", 1_000_000),
        ("Gbit", 1_000_000_000),
        ("bit", 1),
    ] {
        if let Some(n) = t.strip_suffix(suffix) {
            return parse_bytes(n)?.checked_mul(scale).map(|bits| bits / 8);
        }
    }
    parse_bytes(t)
}

/// A size in bytes: a whole number, or text with a unit.
#[derive(Clone, Copy, Debug)]
struct Limit(u64);

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Limit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a size like "500GiB", "1.5TB" or 1000000"#)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Limit, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("{n} is not a positive size"))),
                }
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Limit, E> {
                if n == 0 {
                    return Err(E::custom("0 is not a positive size"));
                }
                Ok(Limit(n))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Limit, E> {
                match parse_bytes(text) {
                    Some(n) if n > 0 => Ok(Limit(n)),
                    _ => Err(E::custom(format!(
                        r#"`{text}` is not a positive size like "500GiB", "1.5TB" or 1000000"#
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Clone, Copy, Debug)]
struct Rate(u64);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = text(d, "a rate like \"1MiB/s\" or \"8Mbit/s\"")?;
        match parse_rate(&text) {
            Some(n) if n > 0 => Ok(Self(n)),
            _ => Err(de::Error::custom(format!(
                "`{text}` is not a positive rate like \"1MiB/s\" or \"8Mbit/s\""
            ))),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Hold(i64);

impl<'de> Deserialize<'de> for Hold {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = text(d, "a span like \"3d\" or \"12h\"")?;
        let bad = |why: String| {
            de::Error::custom(format!(
                "`{text}` is not a span like \"3d\" or \"12h\" ({why})"
            ))
        };
        let span: Span = text.parse().map_err(|e: jiff::Error| bad(e.to_string()))?;
        let secs = span
            .to_duration(SpanRelativeTo::days_are_24_hours())
            .map_err(|e| bad(e.to_string()))?
            .as_secs();
        if secs < 0 {
            return Err(bad("negative".into()));
        }
        Ok(Self(secs))
    }
}

#[derive(Clone, Copy, Debug)]
struct Percent(u8);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ranged(d, "a percentage (0 to 100)", 0..=100, |n| {
            format!("{n} is not a percentage (0 to 100; 0 turns the warning off)")
        })
        .map(Self)
    }
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum PeriodName {
    Month,
    Week,
    Day,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ActionName {
    Alert,
    Throttle,
    Block,
}

/// A `[[quota]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    name: Option<String>,
    user: Option<User>,
    group: Option<String>,
    #[serde(default, deserialize_with = "address")]
    address: Option<IpAddr>,
    limit: Limit,
    #[serde(default = "total", deserialize_with = "direction")]
    direction: Direction,
    #[serde(default = "month", deserialize_with = "period")]
    period: PeriodName,
    start_day: Option<MonthStartDay>,
    warn: Option<Percent>,
    #[serde(default = "alert", deserialize_with = "action")]
    action: ActionName,
    rate: Option<Rate>,
    hold: Option<Hold>,
    command: Option<String>,
}

/// One address, named in the error when it is not one.
fn address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    let text = text(d, "an IP address like \"192.0.2.7\"")?;
    text.parse().map(Some).map_err(|_| {
        de::Error::custom(format!(
            "`{text}` is not an IP address (192.0.2.7, 2001:db8::7)"
        ))
    })
}

fn direction<'de, D: Deserializer<'de>>(d: D) -> Result<Direction, D::Error> {
    named(d, "`rx`, `tx` or `total`")
}
fn period<'de, D: Deserializer<'de>>(d: D) -> Result<PeriodName, D::Error> {
    named(d, "`month`, `week` or `day`")
}
fn action<'de, D: Deserializer<'de>>(d: D) -> Result<ActionName, D::Error> {
    named(d, "`alert`, `throttle` or `block`")
}

fn total() -> Direction {
    Direction::Total
}
fn month() -> PeriodName {
    PeriodName::Month
}
fn alert() -> ActionName {
    ActionName::Alert
}

/// The default warning threshold.
pub const DEFAULT_WARN_PERCENT: u8 = 90;

/// The month start day of a quota without `start_day`: filled in from the
/// configuration's `month_start_day` once the whole file is read.
pub const INHERIT_START_DAY: i8 = 0;

impl TryFrom<RawQuota> for Quota {
    type Error = String;

    fn try_from(r: RawQuota) -> Result<Self, String> {
        let target = match (r.user, r.group, r.address) {
            (Some(u), None, None) => Target::Uid(u.0),
            (None, Some(g), None) => Target::Group(g),
            (None, None, Some(a)) => Target::Address(a),
            _ => return Err("needs exactly one of `user`, `group` or `address`".into()),
        };
        let action = match (r.action, r.rate) {
            (ActionName::Throttle, Some(rate)) => Action::Throttle(rate.0),
            (ActionName::Throttle, None) => {
                return Err("`action = \"throttle\"` needs a `rate` such as \"1MiB/s\"".into());
            }
            (_, Some(_)) => return Err("`rate` only applies to `action = \"throttle\"`".into()),
            (ActionName::Alert, None) => Action::Alert,
            (ActionName::Block, None) => Action::Block,
        };
        let period = match (r.period, r.start_day) {
            (PeriodName::Month, day) => Period::Month(day.map_or(INHERIT_START_DAY, |d| d.0)),
            (_, Some(_)) => return Err("`start_day` only applies to `period = \"month\"`".into()),
            (PeriodName::Week, None) => Period::Week,
            (PeriodName::Day, None) => Period::Day,
        };
        let name = r.name.unwrap_or_else(|| target.to_string());
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(format!("`name` {name:?} must be non-empty printable text"));
        }
        Ok(Self {
            name,
            target,
            limit: r.limit.0,
            direction: r.direction,
            period,
            warn_percent: match r.warn {
                None => Some(DEFAULT_WARN_PERCENT),
                Some(Percent(0)) => None,
                Some(Percent(p)) => Some(p),
            },
            action,
            hold_seconds: r.hold.map_or(0, |h| h.0),
            command: r.command,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates() {
        assert_eq!(parse_bytes("500GiB"), Some(500 << 30));
        assert_eq!(parse_bytes("1.5TB"), Some(1_500_000_000_000));
        assert_eq!(parse_bytes("100 MiB"), Some(100 << 20));
        assert_eq!(parse_bytes("42"), Some(42));
        assert_eq!(parse_bytes("5 parsecs"), None);
        assert_eq!(parse_bytes("99999999999TiB"), None);
        assert_eq!(parse_rate("1MiB/s"), Some(1 << 20));
        assert_eq!(parse_rate("8Mbit/s"), Some(1_000_000));
        assert_eq!(parse_rate("100kbit/s"), Some(12_500));
        assert_eq!(parse_rate("1MiB"), None);
    }
}
