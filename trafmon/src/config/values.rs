//! The configuration's values that check themselves while deserializing:
//! intervals, map sizes, the cgroup, interfaces, time zone, week and month
//! start, and retention.

use std::{fmt, path::PathBuf, time::Duration};

use jiff::{Span, Timestamp, civil::Weekday, tz::TimeZone};
use serde::{Deserialize, Deserializer, de};

use super::{ranged, text};
use crate::calendar::{Calendar, CalendarError, Resolution};

/// Which cgroup the cgroup_skb programs attach to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupSetting {
    /// The root of the cgroup v2 hierarchy, found from mountinfo.
    Root,
    /// This cgroup directory.
    Path(PathBuf),
}

/// Which interfaces the tc programs attach to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interfaces {
    /// Every non-loopback interface, up or not, following those that appear and go.
    Auto,
    /// Exactly these, whether up or not.
    List(Vec<String>),
}

/// The interfaces on which addresses are counted: every interface the tc
/// programs watch, or only these (the others count the device only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AddressInterfaces {
    /// Every watched interface.
    #[default]
    All,
    /// Only these.
    List(Vec<String>),
}

impl AddressInterfaces {
    /// Whether addresses are counted on interface `name`.
    pub fn counts(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::List(names) => names.iter().any(|n| n == name),
        }
    }
}

/// An address and port (`metrics.listen`), named in the error when it is
/// not one.
pub fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<std::net::SocketAddr, D::Error> {
    let text = text(d, "an address and port like \"127.0.0.1:9977\"")?;
    text.parse().map_err(|_| {
        de::Error::custom(format!(
            "`{text}` is not an address and port like \"127.0.0.1:9977\" or \"[::1]:9977\""
        ))
    })
}

/// Checks one interface name of a list.
fn interface_name<E: de::Error>(name: String) -> Result<String, E> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '@']) {
        return Err(E::custom(format!("`{name}` is not a valid interface name")));
    }
    Ok(name)
}

/// The flush interval: positive, at least 10 ms, and dividing five minutes
/// evenly so that 5-minute buckets start on a flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval(pub Duration);

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = text(d, "a duration like \"10s\"")?;
        let parsed: jiff::SignedDuration = text.parse().map_err(|e| {
            de::Error::custom(format!("`{text}` is not a duration like \"10s\" ({e})"))
        })?;
        if parsed.is_negative() || parsed.is_zero() {
            return Err(de::Error::custom(format!("`{text}` must be positive")));
        }
        let d = parsed.unsigned_abs();
        let five_min = Duration::from_secs(300).as_nanos();
        if d < Duration::from_millis(10) || !five_min.is_multiple_of(d.as_nanos()) {
            return Err(de::Error::custom(format!(
                "`{text}` must be at least 10ms and divide 5m evenly (10s, 1m, 100ms, ...)"
            )));
        }
        Ok(Self(d))
    }
}

/// A map size: 1 ..= 16 777 216 entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entries(pub u32);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ranged(d, "a number of entries", 1..=16_777_216, |n| {
            format!("{n} entries is out of range (1 to 16777216)")
        })
        .map(Self)
    }
}

impl<'de> Deserialize<'de> for CgroupSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = text(d, "\"root\" or an absolute path")?;
        if text == "root" {
            Ok(Self::Root)
        } else if text.starts_with('/') {
            Ok(Self::Path(text.into()))
        } else {
            Err(de::Error::custom(format!(
                "`{text}` is neither \"root\" nor an absolute path"
            )))
        }
    }
}

/// `keyword` or a list of interface names: `None` for the keyword.
fn keyword_or_names<'de, D: Deserializer<'de>>(
    d: D,
    keyword: &'static str,
) -> Result<Option<Vec<String>>, D::Error> {
    struct V(&'static str);
    impl<'de> de::Visitor<'de> for V {
        type Value = Option<Vec<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "\"{}\" or a list of interface names", self.0)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            if s == self.0 {
                Ok(None)
            } else {
                Err(E::custom(format!(
                    "`{s}`: expected \"{}\" or a list of interface names",
                    self.0
                )))
            }
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut names = Vec::new();
            while let Some(name) = seq.next_element::<String>()? {
                names.push(interface_name(name)?);
            }
            Ok(Some(names))
        }
    }
    d.deserialize_any(V(keyword))
}

impl<'de> Deserialize<'de> for Interfaces {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(keyword_or_names(d, "auto")?.map_or(Self::Auto, Self::List))
    }
}

impl<'de> Deserialize<'de> for AddressInterfaces {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(keyword_or_names(d, "all")?.map_or(Self::All, Self::List))
    }
}

/// A time zone by name, resolved at load time.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The name as configured ("system" for the system zone).
    pub name: String,
    /// The zone.
    pub tz: TimeZone,
}

impl Default for Zone {
    fn default() -> Self {
        Self {
            name: "system".into(),
            tz: TimeZone::system(),
        }
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Zone {}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = text(d, "a time zone like \"Europe/Berlin\", or \"system\"")?;
        if name == "system" {
            return Ok(Self::default());
        }
        let tz = TimeZone::get(&name)
            .map_err(|e| de::Error::custom(format!("`{name}` is not a known time zone ({e})")))?;
        Ok(Self { name, tz })
    }
}

/// The first day of a week.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeekStart(pub Weekday);

impl<'de> Deserialize<'de> for WeekStart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = text(d, "a day of the week (monday .. sunday)")?;
        let day = match name.to_ascii_lowercase().as_str() {
            "monday" => Weekday::Monday,
            "tuesday" => Weekday::Tuesday,
            "wednesday" => Weekday::Wednesday,
            "thursday" => Weekday::Thursday,
            "friday" => Weekday::Friday,
            "saturday" => Weekday::Saturday,
            "sunday" => Weekday::Sunday,
            _ => {
                return Err(de::Error::custom(format!(
                    "`{name}` is not a day of the week (monday .. sunday)"
                )));
            }
        };
        Ok(Self(day))
    }
}

/// The day a billing month starts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MonthStartDay(pub i8);

impl<'de> Deserialize<'de> for MonthStartDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ranged(d, "a day of the month (1 to 31)", 1..=31, |n| {
            format!("{n} is not a day of the month (1 to 31)")
        })
        .map(Self)
    }
}

/// How long rows of one resolution are kept: a span such as "48h", "60d",
/// "5y", or "forever".
#[derive(Clone, Debug)]
pub struct Keep {
    /// As configured.
    pub text: String,
    /// None: forever.
    pub span: Option<Span>,
}

impl Keep {
    fn span(text: &str) -> Self {
        Self {
            text: text.into(),
            span: Some(text.parse().expect("a valid default span")),
        }
    }
}

impl PartialEq for Keep {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for Keep {}

impl<'de> Deserialize<'de> for Keep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = text(d, "a span like \"48h\", \"60d\", \"5y\" or \"forever\"")?;
        if text == "forever" {
            return Ok(Self { text, span: None });
        }
        let span: Span = text.parse().map_err(|e| {
            de::Error::custom(format!(
                "`{text}` is not a span like \"48h\", \"60d\", \"5y\" or \"forever\" ({e})"
            ))
        })?;
        if span.is_negative() || span.is_zero() {
            return Err(de::Error::custom(format!("`{text}` must be positive")));
        }
        Ok(Self {
            text,
            span: Some(span),
        })
    }
}

/// Retention per resolution.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// 5-minute rows (default 48h).
    pub fivemin: Keep,
    /// Hourly rows (default 60d).
    pub hourly: Keep,
    /// Daily rows (default 5y).
    pub daily: Keep,
    /// Monthly rows (default forever).
    pub monthly: Keep,
}

impl Retention {
    /// How long rows of `res` are kept.
    pub fn of(&self, res: Resolution) -> &Keep {
        match res {
            Resolution::FiveMin => &self.fivemin,
            Resolution::Hour => &self.hourly,
            Resolution::Day => &self.daily,
            Resolution::Month => &self.monthly,
        }
    }

    /// The first bucket of `res` that retention keeps at `now` (rows that
    /// start before it are pruned), or `None` when all are kept.
    pub fn kept_from(
        &self,
        res: Resolution,
        cal: &Calendar,
        now: Timestamp,
    ) -> Result<Option<i64>, CalendarError> {
        let Some(span) = self.of(res).span else {
            return Ok(None);
        };
        let then = now
            .to_zoned(cal.tz.clone())
            .checked_sub(span)
            .map_err(CalendarError::from)?;
        cal.bucket(res, then.timestamp()).map(Some)
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            fivemin: Keep::span("48h"),
            hourly: Keep::span("60d"),
            daily: Keep::span("5y"),
            monthly: Keep {
                text: "forever".into(),
                span: None,
            },
        }
    }
}
