//! `trafmon report`.

use std::{
    io::{self, Write as _},
    num::NonZeroUsize,
};

use clap::ValueEnum as _;
use jiff::{Timestamp, civil};

use super::{CmdError, one_or_more, open_store};
use crate::{
    config::Config,
    report::{Keys, Query, ReportError, Sort, View, render},
    store::Kind,
    units::Units,
};

/// Which entities (default: users).
#[derive(Debug, Default, clap::Args)]
#[group(multiple = false)]
pub struct Entities {
    /// Per user (socket UID); the default.
    #[arg(long)]
    pub users: bool,
    /// Per IP address.
    #[arg(long)]
    pub ips: bool,
    /// Per network interface.
    #[arg(long)]
    pub interfaces: bool,
    /// Per named group of addresses.
    #[arg(long)]
    pub groups: bool,
}

/// Which view (default: per-entity totals of the running billing month).
#[derive(Debug, Default, clap::Args)]
#[group(multiple = false)]
pub struct Views {
    /// 5-minute rows.
    #[arg(long = "5min")]
    pub five_min: bool,
    /// 15-minute rows.
    #[arg(long = "15min")]
    pub fifteen_min: bool,
    /// Hourly rows.
    #[arg(long)]
    pub hourly: bool,
    /// Daily rows (local calendar days).
    #[arg(long)]
    pub daily: bool,
    /// Weekly rows (weeks start on `week_start`).
    #[arg(long)]
    pub weekly: bool,
    /// Monthly rows (billing months from `month_start_day`).
    #[arg(long)]
    pub monthly: bool,
    /// Yearly rows.
    #[arg(long)]
    pub yearly: bool,
    /// Per-entity totals over all stored months.
    #[arg(long)]
    pub total: bool,
}

/// `trafmon report` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    entities: Entities,
    #[command(flatten)]
    views: Views,
    /// Only the last N rows of a time view.
    #[arg(long, value_name = "N", value_parser = one_or_more)]
    last: Option<NonZeroUsize>,
    /// Only from this local date or time on (YYYY-MM-DD, "YYYY-MM-DD HH:MM",
    /// today or yesterday):
    /// the buckets of a time view that start then or later, or the traffic
    /// of each entity from then on.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only before this local date or time.
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// Only this user (name or UID); repeatable.
    #[arg(long, value_name = "NAME|UID")]
    user: Vec<String>,
    /// Only this address, or the addresses inside this network
    /// (192.0.2.0/28, 2001:db8::/48); repeatable.
    #[arg(long, value_name = "ADDR|NET")]
    ip: Vec<String>,
    /// Only this interface; repeatable.
    #[arg(long, value_name = "NAME")]
    interface: Vec<String>,
    /// Only this group; repeatable.
    #[arg(long, value_name = "NAME")]
    group: Vec<String>,
    /// Order of per-entity rows (default: total, largest first).
    #[arg(long, value_enum)]
    sort: Option<Sort>,
    /// Only the first N per-entity rows.
    #[arg(long, value_name = "N", value_parser = one_or_more)]
    top: Option<NonZeroUsize>,
    /// JSON output (with a format version).
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// CSV output.
    #[arg(long)]
    csv: bool,
    /// Units of the table.
    #[arg(long, value_enum, default_value_t)]
    units: Units,
}

impl Views {
    fn view(&self) -> View {
        [
            (self.five_min, View::FiveMin),
            (self.fifteen_min, View::FifteenMin),
            (self.hourly, View::Hourly),
            (self.daily, View::Daily),
            (self.weekly, View::Weekly),
            (self.monthly, View::Monthly),
            (self.yearly, View::Yearly),
            (self.total, View::Total),
        ]
        .into_iter()
        .find_map(|(on, v)| on.then_some(v))
        .unwrap_or(View::Summary)
    }
}

/// The UID key of a user given by name or number.
pub fn uid_key(user: &str) -> Result<String, CmdError> {
    if let Ok(uid) = user.parse::<u32>() {
        return Ok(uid.to_string());
    }
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok(u.uid.as_raw().to_string()),
        _ => Err(CmdError::Usage(format!(
            "--user {user}: no such user in the password database (give the UID instead)"
        ))),
    }
}

/// The instant `text` names, in `config`'s time zone: a date (its
/// midnight), a date and time, or `today` or `yesterday` (midnight of
/// that local day, `today` being the local date at `now`).
fn when(flag: &str, text: &str, config: &Config, now: Timestamp) -> Result<i64, CmdError> {
    let tz = &config.timezone.tz;
    let today = || now.to_zoned(tz.clone()).date();
    let dt = match text {
        "today" => Ok(today().to_datetime(civil::Time::midnight())),
        "yesterday" => today()
            .yesterday()
            .map(|d| d.to_datetime(civil::Time::midnight()))
            .map_err(|e| CmdError::Usage(format!("{flag} {text}: {e}"))),
        _ => text
            .parse::<civil::DateTime>()
            .or_else(|_| {
                text.parse::<civil::Date>()
                    .map(|d| d.to_datetime(civil::Time::midnight()))
            })
            .map_err(|_| {
                CmdError::Usage(format!(
                    "{flag} {text}: not a local date or time (YYYY-MM-DD, \"YYYY-MM-DD HH:MM\", today or yesterday)"
                ))
            }),
    }?;
    dt.to_zoned(tz.clone())
        .map(|z| z.timestamp().as_second())
        .map_err(|e| CmdError::Usage(format!("{flag} {text}: {e}")))
}

impl Args {
    fn query(&self, config: &Config, now: Timestamp) -> Result<Query, CmdError> {
        let filters = [
            (Kind::Uid, &self.user),
            (Kind::Ip, &self.ip),
            (Kind::Iface, &self.interface),
            (Kind::Group, &self.group),
        ];
        let chosen = [
            (self.entities.users, Kind::Uid),
            (self.entities.ips, Kind::Ip),
            (self.entities.interfaces, Kind::Iface),
            (self.entities.groups, Kind::Group),
        ]
        .into_iter()
        .find_map(|(on, k)| on.then_some(k));
        let filtered: Vec<Kind> = filters
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| *k)
            .collect();
        if filtered.len() > 1 || chosen.zip(filtered.first()).is_some_and(|(c, f)| c != *f) {
            return Err(CmdError::Usage(
                "filters of different kinds (--user, --ip, --interface, --group) do not mix".into(),
            ));
        }
        let kind = chosen.or(filtered.first().copied()).unwrap_or(Kind::Uid);
        let keys = match kind {
            _ if filtered.is_empty() => Keys::All,
            Kind::Uid => Keys::Named(
                self.user
                    .iter()
                    .map(|u| uid_key(u))
                    .collect::<Result<_, _>>()?,
            ),
            Kind::Ip => Keys::Inside(
                self.ip
                    .iter()
                    .map(|a| {
                        a.parse()
                            .map_err(|e| CmdError::Usage(format!("--ip {a}: {e}")))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Kind::Iface => Keys::Named(self.interface.clone()),
            Kind::Group | Kind::Overflow => Keys::Named(self.group.clone()),
        };
        let view = self.views.view();
        if let Some(n) = self.last
            && view.per_entity()
        {
            return Err(CmdError::Usage(format!(
                "--last {n}: only a time view (--5min ... --yearly) has rows to count back; per-entity rows take --top"
            )));
        }
        if !view.per_entity() {
            let given = [
                self.top.map(|n| format!("--top {n}")),
                self.sort
                    .and_then(|s| s.to_possible_value())
                    .map(|v| format!("--sort {}", v.get_name())),
            ];
            if let Some(option) = given.into_iter().flatten().next() {
                return Err(CmdError::Usage(format!(
                    "{option}: a time view sums the entities in each row; per-entity rows are the default view and --total, and --last counts rows back"
                )));
            }
        }
        let since = self
            .since
            .as_deref()
            .map(|t| when("--since", t, config, now))
            .transpose()?;
        let until = self
            .until
            .as_deref()
            .map(|t| when("--until", t, config, now))
            .transpose()?;
        if let (Some(s), Some(u)) = (since, until)
            && s >= u
        {
            return Err(CmdError::Usage(format!(
                "--since {} is not before --until {}",
                self.since.as_deref().unwrap_or_default(),
                self.until.as_deref().unwrap_or_default()
            )));
        }
        Ok(Query {
            kind,
            view,
            keys,
            last: self.last.map(NonZeroUsize::get),
            since,
            until,
            retention: config.retention.clone(),
            sort: self.sort.unwrap_or_default(),
            top: self.top.map(NonZeroUsize::get),
        })
    }

    /// The bounds as given, to name them in an error.
    fn bounds(&self) -> String {
        [("--since", &self.since), ("--until", &self.until)]
            .into_iter()
            .filter_map(|(flag, v)| v.as_ref().map(|v| format!("{flag} {v}")))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Runs `trafmon report`.
pub fn run(args: &Args, config: &Config) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let query = args.query(config, now)?;
    let store = open_store(&config.store_path())?;
    let report = query
        .run(&store, &config.calendar(), now)
        .map_err(|e| match e {
            ReportError::Span(e) => anyhow::anyhow!("{}: {e}", args.bounds()),
            e => anyhow::anyhow!(crate::error_chain(&e)),
        })?;
    let mut out = io::stdout().lock();
    if args.json {
        render::json(&mut out, &report)?;
    } else if args.csv {
        render::csv(&mut out, &report)?;
    } else {
        render::table(&mut out, &report, args.units)?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Line {
        #[command(flatten)]
        args: Args,
    }

    fn parse(words: &[&str]) -> Result<Line, clap::Error> {
        Line::try_parse_from(std::iter::once("report").chain(words.iter().copied()))
    }

    fn refused(words: &[&str]) -> String {
        match parse(words)
            .unwrap()
            .args
            .query(&Config::default(), Timestamp::now())
        {
            Err(e) => e.to_string(),
            Ok(q) => panic!("{words:?} was taken: {q:?}"),
        }
    }

    #[test]
    fn an_address_filter_takes_addresses_and_networks() {
        let query = |words: &[&str]| {
            parse(words)
                .unwrap()
                .args
                .query(&Config::default(), Timestamp::now())
                .unwrap()
        };
        let q = query(&["--ip", "192.0.2.7", "--ip", "2001:db8::/48"]);
        assert_eq!(q.kind, Kind::Ip);
        match q.keys {
            Keys::Inside(nets) => assert_eq!(
                nets.iter().map(|n| n.0.to_string()).collect::<Vec<_>>(),
                ["192.0.2.7/32", "2001:db8::/48"]
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(query(&["--ips"]).keys, Keys::All));
        assert_eq!(
            refused(&["--ip", "192.0.2.1/28"]),
            "--ip 192.0.2.1/28: `192.0.2.1/28` has host bits set; the network is 192.0.2.0/28"
        );
        assert!(
            refused(&["--ip", "alice"])
                .starts_with("--ip alice: `alice` is not an address or a CIDR network")
        );
    }

    #[test]
    fn options_that_a_view_would_ignore_are_refused() {
        assert!(refused(&["--last", "3"]).starts_with("--last 3: only a time view"));
        assert!(refused(&["--total", "--last", "3"]).starts_with("--last 3: only a time view"));
        assert!(refused(&["--hourly", "--top", "3"]).starts_with("--top 3: a time view sums"));
        assert!(refused(&["--daily", "--sort", "rx"]).starts_with("--sort rx: a time view sums"));
        assert_eq!(
            refused(&["--since", "2026-11-30", "--until", "2026-11-01"]),
            "--since 2026-11-30 is not before --until 2026-11-01"
        );
        for option in ["--last", "--top"] {
            let e = parse(&[option, "0"]).err().unwrap().to_string();
            assert!(
                e.contains("'0' for '") && e.contains("must be 1 or more"),
                "{e}"
            );
        }
        let taken = |words: &[&str]| {
            parse(words)
                .unwrap()
                .args
                .query(&Config::default(), Timestamp::now())
        };
        assert!(taken(&["--hourly", "--last", "3"]).is_ok());
        assert!(taken(&["--top", "3", "--since", "2026-11-01"]).is_ok());
    }

    #[test]
    fn today_and_yesterday_are_local_midnights() {
        let mut config = Config::default();
        config.timezone.tz = jiff::tz::TimeZone::get("America/New_York").unwrap();
        // 02:30 UTC on 1 Nov 2026 is 22:30 on 31 Oct in New York (EDT).
        let now: Timestamp = "2026-11-01T02:30:00Z".parse().unwrap();
        let at = |text: &str| when("--since", text, &config, now).unwrap();
        let expect = |t: &str| t.parse::<Timestamp>().unwrap().as_second();
        assert_eq!(at("today"), expect("2026-10-31T04:00:00Z"));
        assert_eq!(at("yesterday"), expect("2026-10-30T04:00:00Z"));
        // The day DST ends there has 25 hours: its midnight is still EDT.
        let now: Timestamp = "2026-11-02T03:00:00Z".parse().unwrap();
        let at = |text: &str| when("--until", text, &config, now).unwrap();
        assert_eq!(at("today"), expect("2026-11-01T04:00:00Z"));
        assert_eq!(at("yesterday"), expect("2026-10-31T04:00:00Z"));
        assert_eq!(
            when("--since", "tomorrow", &config, now)
                .unwrap_err()
                .to_string(),
            "--since tomorrow: not a local date or time (YYYY-MM-DD, \"YYYY-MM-DD HH:MM\", today or yesterday)"
        );
        let q = parse(&["--since", "yesterday", "--until", "today"])
            .unwrap()
            .args
            .query(&config, now)
            .unwrap();
        assert_eq!(q.since, Some(expect("2026-10-31T04:00:00Z")));
        assert_eq!(q.until, Some(expect("2026-11-01T04:00:00Z")));
    }
}
