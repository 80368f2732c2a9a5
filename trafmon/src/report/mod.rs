//! `trafmon report`: what the store says, as rows of a view. Building the
//! rows (here) is separate from printing them (`render`).

pub mod render;
pub mod span;

use std::{cmp::Reverse, collections::BTreeMap, net::IpAddr};

use jiff::{Timestamp, ToSpan as _, civil::Date};
use trafmon_common::Counters;

use crate::{
    calendar::{Calendar, CalendarError, Resolution},
    config::{Cidr, Retention},
    store::{Kind, Source, Store, StoreError},
};

/// Errors of a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A date could not be computed.
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    /// `--since`/`--until` of a per-entity view cannot be summed exactly.
    #[error(transparent)]
    Span(#[from] span::SpanError),
}

/// What the rows are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// One row per entity for the running billing period.
    Summary,
    /// One row per entity over all stored months.
    Total,
    /// 5-minute buckets.
    #[serde(rename = "5min")]
    FiveMin,
    /// 15-minute buckets (from 5-minute rows).
    #[serde(rename = "15min")]
    FifteenMin,
    /// Local hours.
    Hourly,
    /// Local days.
    Daily,
    /// Weeks (from daily rows).
    Weekly,
    /// Billing months.
    Monthly,
    /// Calendar years (from monthly rows).
    Yearly,
}

impl View {
    /// Rows shown when neither `--last` nor `--since` is given (vnStat's).
    pub fn default_last(self) -> Option<usize> {
        match self {
            Self::FiveMin => Some(48),
            Self::FifteenMin => Some(32),
            Self::Hourly => Some(24),
            Self::Daily => Some(30),
            Self::Weekly => Some(8),
            Self::Monthly => Some(12),
            Self::Summary | Self::Total | Self::Yearly => None,
        }
    }

    /// True for the views of one row per entity (not per bucket).
    pub fn per_entity(self) -> bool {
        matches!(self, Self::Summary | Self::Total)
    }
}

/// How entity rows are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Sort {
    /// Largest total first.
    #[default]
    Total,
    /// Most received first.
    Rx,
    /// Most sent first.
    Tx,
    /// By name.
    Name,
}

/// Which entities of its kind a report keeps.
#[derive(Clone, Debug, Default)]
pub enum Keys {
    /// Every one.
    #[default]
    All,
    /// Those with these keys (UIDs, interface or group names).
    Named(Vec<String>),
    /// The addresses inside these networks (an address alone is a /32 or a
    /// /128).
    Inside(Vec<Cidr>),
}

/// What to report.
#[derive(Clone, Debug)]
pub struct Query {
    /// Which entities.
    pub kind: Kind,
    /// Which view.
    pub view: View,
    /// Which entities of the kind.
    pub keys: Keys,
    /// Only the last N rows of a time view.
    pub last: Option<usize>,
    /// Only buckets starting at or after this second (a per-entity view:
    /// only traffic from this second on).
    pub since: Option<i64>,
    /// Only buckets starting before this second (a per-entity view: only
    /// traffic before this second).
    pub until: Option<i64>,
    /// What the store keeps, to tell a span it cannot sum exactly.
    pub retention: Retention,
    /// Order of entity rows.
    pub sort: Sort,
    /// Only the first N entity rows.
    pub top: Option<usize>,
}

/// One row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Entity label, or the bucket's name.
    pub label: String,
    /// Entity key (per-entity views).
    pub key: Option<String>,
    /// Bucket start (Unix seconds).
    pub start: i64,
    /// Bucket end (Unix seconds).
    pub end: i64,
    /// Seconds the average rate is over (0: unknown).
    pub seconds: i64,
    /// The traffic.
    pub counters: Counters,
}

/// A period in progress: (start, end) in Unix seconds.
type Period = (i64, i64);

/// The estimate for the period in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// Projected bytes received.
    pub rx_bytes: u64,
    /// Projected bytes sent.
    pub tx_bytes: u64,
}

/// A built report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Which entities.
    pub kind: Kind,
    /// Which view.
    pub view: View,
    /// The rows.
    pub rows: Vec<Row>,
    /// Sum of the rows.
    pub sum: Counters,
    /// The period in progress, when the report shows one: `Some(None)` when
    /// it cannot be estimated yet (`--`).
    pub estimated: Option<Option<Estimate>>,
}

fn estimate(c: &Counters, start: i64, end: i64, now: i64) -> Option<Estimate> {
    let elapsed = now - start;
    if elapsed < 60 || c.is_zero() {
        return None;
    }
    let scale = (end - start) as f64 / elapsed as f64;
    Some(Estimate {
        rx_bytes: (c.rx_bytes as f64 * scale).round() as u64,
        tx_bytes: (c.tx_bytes as f64 * scale).round() as u64,
    })
}

fn total(c: &Counters) -> u64 {
    c.rx_bytes.saturating_add(c.tx_bytes)
}

impl Query {
    /// Builds the report from `store` as of `now`.
    pub fn run(
        &self,
        store: &Store,
        cal: &Calendar,
        now: Timestamp,
    ) -> Result<Report, ReportError> {
        let now_s = now.as_second();
        let (rows, running) = if self.view.per_entity() {
            self.entity_rows(store, cal, now)?
        } else {
            self.time_rows(store, cal, now_s)?
        };
        let mut sum = Counters::ZERO;
        for r in &rows {
            sum.add(&r.counters);
        }
        // The running period is all of a per-entity report, or the last
        // row of a time view.
        let basis = match rows.last() {
            Some(last) if !self.view.per_entity() => last.counters,
            _ => sum,
        };
        let estimated = running.map(|(start, end)| estimate(&basis, start, end, now_s));
        Ok(Report {
            kind: self.kind,
            view: self.view,
            rows,
            sum,
            estimated,
        })
    }

    fn wanted(&self, key: &str) -> bool {
        match &self.keys {
            Keys::All => true,
            Keys::Named(keys) => keys.iter().any(|k| k == key),
            Keys::Inside(nets) => key
                .parse::<IpAddr>()
                .is_ok_and(|ip| nets.iter().any(|n| n.contains(&ip))),
        }
    }

    /// Per-entity rows; the running period for the estimate.
    fn entity_rows(
        &self,
        store: &Store,
        cal: &Calendar,
        now: Timestamp,
    ) -> Result<(Vec<Row>, Option<Period>), ReportError> {
        let now_s = now.as_second();
        let spanned = self.since.is_some() || self.until.is_some();
        let (from, to, running, sources) = if spanned {
            let sources = span::sources(cal, &self.retention, now, self.since, self.until)?;
            let (from, to) = (
                self.since.unwrap_or(i64::MIN),
                self.until.unwrap_or(i64::MAX),
            );
            (from, to, None, sources)
        } else if self.view == View::Summary {
            let start = cal.bucket(Resolution::Month, now)?;
            let end = cal.next_period(start)?;
            let month = Source::Rows(Resolution::Month, start, end);
            (start, end, Some((start, end)), vec![month])
        } else {
            // All time is the lifetime totals, with the months that
            // retention pruned.
            (i64::MIN, i64::MAX, None, vec![Source::Lifetime])
        };
        // The average rate is over the time the rows cover so far.
        let seconds = if from == i64::MIN {
            0
        } else {
            (to.min(now_s) - from).max(0)
        };
        let totals = store.sum(&sources)?;
        let mut rows: Vec<Row> = totals
            .into_iter()
            .filter(|t| t.entity.kind == self.kind && self.wanted(&t.entity.key))
            .map(|t| Row {
                label: t.label,
                key: Some(t.entity.key),
                start: from,
                end: to,
                seconds,
                counters: t.counters,
            })
            .collect();
        match self.sort {
            Sort::Total => rows.sort_by_key(|r| Reverse(total(&r.counters))),
            Sort::Rx => rows.sort_by_key(|r| Reverse(r.counters.rx_bytes)),
            Sort::Tx => rows.sort_by_key(|r| Reverse(r.counters.tx_bytes)),
            Sort::Name => rows.sort_by(|a, b| a.label.cmp(&b.label)),
        }
        if let Some(n) = self.top {
            rows.truncate(n);
        }
        Ok((rows, running))
    }

    /// Per-bucket rows summed over the wanted entities; the last bucket as
    /// the running period when it holds `now`.
    fn time_rows(
        &self,
        store: &Store,
        cal: &Calendar,
        now: i64,
    ) -> Result<(Vec<Row>, Option<Period>), ReportError> {
        let res = match self.view {
            View::FiveMin | View::FifteenMin => Resolution::FiveMin,
            View::Hourly => Resolution::Hour,
            View::Daily | View::Weekly => Resolution::Day,
            _ => Resolution::Month,
        };
        let mut buckets: BTreeMap<i64, Counters> = BTreeMap::new();
        for ((key, start), (_, c)) in store.rows(res, self.kind, i64::MIN, i64::MAX)? {
            if self.wanted(&key) {
                buckets
                    .entry(self.regroup(cal, start)?)
                    .or_default()
                    .add(&c);
            }
        }
        let mut rows = Vec::new();
        for (start, counters) in buckets {
            if self.since.is_some_and(|s| start < s) || self.until.is_some_and(|u| start >= u) {
                continue;
            }
            let end = self.end_of(cal, start)?;
            let running = start <= now && now < end;
            rows.push(Row {
                label: self.label(cal, start)?,
                key: None,
                start,
                end,
                seconds: if running { now - start } else { end - start },
                counters,
            });
        }
        let last = self
            .last
            .or(if self.since.is_none() && self.until.is_none() {
                self.view.default_last()
            } else {
                None
            });
        if let Some(n) = last
            && rows.len() > n
        {
            rows.drain(..rows.len() - n);
        }
        let running = rows
            .last()
            .filter(|r| r.start <= now && now < r.end)
            .map(|r| (r.start, r.end));
        Ok((rows, running))
    }

    /// The view's bucket of a stored row's start.
    fn regroup(&self, cal: &Calendar, start: i64) -> Result<i64, ReportError> {
        Ok(match self.view {
            View::FifteenMin => {
                let offset = i64::from(
                    Timestamp::from_second(start)
                        .map_err(CalendarError::from)?
                        .to_zoned(cal.tz.clone())
                        .offset()
                        .seconds(),
                );
                start - (start + offset).rem_euclid(900)
            }
            View::Weekly => cal.week_of(start)?,
            View::Yearly => {
                let d = cal.date_of(start)?;
                cal.start_of(Date::new(d.year(), 1, 1).map_err(CalendarError::from)?)?
            }
            _ => start,
        })
    }

    fn end_of(&self, cal: &Calendar, start: i64) -> Result<i64, ReportError> {
        Ok(match self.view {
            View::FiveMin => start + 300,
            View::FifteenMin => start + 900,
            View::Hourly => start + 3600,
            View::Daily => cal.next_day(start)?,
            View::Weekly => cal.start_of(cal.date_of(start)? + 7.days())?,
            View::Monthly => cal.next_period(start)?,
            View::Yearly => {
                let d = cal.date_of(start)?;
                cal.start_of(Date::new(d.year() + 1, 1, 1).map_err(CalendarError::from)?)?
            }
            View::Summary | View::Total => i64::MAX,
        })
    }

    fn label(&self, cal: &Calendar, start: i64) -> Result<String, ReportError> {
        let z = Timestamp::from_second(start)
            .map_err(CalendarError::from)?
            .to_zoned(cal.tz.clone());
        Ok(match self.view {
            View::FiveMin | View::FifteenMin | View::Hourly => {
                z.strftime("%Y-%m-%d %H:%M").to_string()
            }
            View::Daily | View::Weekly => z.strftime("%Y-%m-%d").to_string(),
            View::Monthly if cal.month_start_day == 1 => z.strftime("%Y-%m").to_string(),
            View::Monthly => z.strftime("%Y-%m-%d").to_string(),
            View::Yearly => z.strftime("%Y").to_string(),
            View::Summary | View::Total => String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, civil::Weekday, tz::TimeZone};

    use super::*;
    use crate::store::{Delta, FlushCommit};

    /// Europe/Berlin, weeks from Sunday, months from the 15th; uid 1000
    /// sends 1000 B every hour from 2026-10-20 to 2026-10-28 (across the
    /// fall-back on 2026-10-25) and 5000 B once on 2026-10-14.
    fn synthetic(name: &str) -> (Store, Calendar, std::path::PathBuf) {
        let cal = Calendar {
            tz: TimeZone::get("Europe/Berlin").unwrap(),
            week_start: Weekday::Sunday,
            month_start_day: 15,
        };
        let dir =
            std::env::temp_dir().join(format!("trafmon-report-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = Store::open(&dir.join("t.db")).unwrap();
        let delta = |bytes| {
            Delta::named(
                Kind::Uid,
                "1000".into(),
                "alice".into(),
                Counters {
                    rx_bytes: bytes,
                    rx_packets: 1,
                    tx_bytes: 0,
                    tx_packets: 0,
                },
            )
        };
        let mut seq = 1;
        let mut commit = |at: Timestamp, bytes| {
            store
                .commit(
                    &FlushCommit {
                        seq,
                        side: 0,
                        at,
                        deltas: vec![delta(bytes)],
                    },
                    &cal,
                )
                .unwrap();
            seq += 1;
        };
        commit(
            "2026-10-14T10:00:00+02:00[Europe/Berlin]"
                .parse::<jiff::Zoned>()
                .unwrap()
                .timestamp(),
            5000,
        );
        let start = "2026-10-20T00:00:00+02:00[Europe/Berlin]"
            .parse::<jiff::Zoned>()
            .unwrap()
            .timestamp();
        let end = "2026-10-28T00:00:00+01:00[Europe/Berlin]"
            .parse::<jiff::Zoned>()
            .unwrap()
            .timestamp();
        let mut t = start;
        while t < end {
            t += SignedDuration::from_hours(1);
            commit(t, 1000);
        }
        (store, cal, dir)
    }

    fn query(view: View) -> Query {
        Query {
            kind: Kind::Uid,
            view,
            keys: Keys::All,
            last: None,
            since: None,
            until: None,
            retention: Retention::default(),
            sort: Sort::Total,
            top: None,
        }
    }

    fn rows(r: &Report) -> Vec<(String, u64)> {
        r.rows
            .iter()
            .map(|r| (r.label.clone(), r.counters.rx_bytes))
            .collect()
    }

    #[test]
    fn an_address_filter_keeps_the_addresses_inside_its_networks() {
        use crate::store::testing::{cal, commit, delta, tmp};
        let path = tmp("report-inside");
        let mut store = Store::open(&path).unwrap();
        let at: Timestamp = "2026-10-28T10:05:00Z".parse().unwrap();
        let sent = [
            ("192.0.2.1", 100),
            ("192.0.2.15", 200),
            ("192.0.2.16", 400),
            ("2001:db8::1", 800),
            ("2001:db8:1::1", 1600),
        ];
        let deltas = sent.iter().map(|(ip, b)| delta(Kind::Ip, ip, *b, 0));
        commit(&mut store, 1, at, deltas.collect());
        let now: Timestamp = "2026-10-28T12:00:00Z".parse().unwrap();
        let inside = |nets: &[&str], view| {
            Query {
                kind: Kind::Ip,
                keys: Keys::Inside(nets.iter().map(|n| n.parse().unwrap()).collect()),
                ..query(view)
            }
            .run(&store, &cal(), now)
            .unwrap()
        };
        let s = |v: &[(&str, u64)]| {
            v.iter()
                .map(|(l, b)| ((*l).to_owned(), *b))
                .collect::<Vec<_>>()
        };
        let nets = inside(&["192.0.2.0/28", "2001:db8::/48"], View::Total);
        assert_eq!(
            rows(&nets),
            s(&[
                ("2001:db8::1", 800),
                ("192.0.2.15", 200),
                ("192.0.2.1", 100)
            ])
        );
        assert_eq!(nets.sum.rx_bytes, 1100);
        let one = inside(&["192.0.2.16"], View::Total);
        assert_eq!(rows(&one), s(&[("192.0.2.16", 400)]));
        let daily = inside(&["192.0.2.0/28"], View::Daily);
        assert_eq!(rows(&daily), s(&[("2026-10-28", 300)]));
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn daily_weekly_and_monthly_across_a_daylight_saving_change() {
        let (store, cal, dir) = synthetic("dst");
        let now: Timestamp = "2026-10-28T12:00:00Z".parse().unwrap();

        let daily = Query {
            last: Some(3),
            ..query(View::Daily)
        }
        .run(&store, &cal, now)
        .unwrap();
        let s = |v: &[(&str, u64)]| {
            v.iter()
                .map(|(l, b)| ((*l).to_owned(), *b))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            rows(&daily),
            s(&[
                ("2026-10-25", 25_000),
                ("2026-10-26", 24_000),
                ("2026-10-27", 24_000)
            ])
        );
        assert_eq!(daily.rows[0].end - daily.rows[0].start, 25 * 3600);
        assert_eq!(daily.sum.rx_bytes, 73_000);
        assert_eq!(daily.estimated, None, "no day of the report is in progress");

        let weekly = query(View::Weekly).run(&store, &cal, now).unwrap();
        assert_eq!(
            rows(&weekly),
            s(&[
                ("2026-10-11", 5_000),
                ("2026-10-18", 120_000),
                ("2026-10-25", 73_000)
            ])
        );
        // The running week is 169 hours long (fall-back); 86 of them passed.
        let projected = (73_000.0_f64 * 169.0 / 86.0).round() as u64;
        assert_eq!(
            weekly.estimated,
            Some(Some(Estimate {
                rx_bytes: projected,
                tx_bytes: 0
            }))
        );

        let monthly = query(View::Monthly).run(&store, &cal, now).unwrap();
        assert_eq!(
            rows(&monthly),
            s(&[("2026-09-15", 5_000), ("2026-10-15", 193_000)])
        );

        let hourly = Query {
            since: Some(cal.start_of(Date::new(2026, 10, 25).unwrap()).unwrap()),
            until: Some(
                cal.next_day(cal.start_of(Date::new(2026, 10, 25).unwrap()).unwrap())
                    .unwrap(),
            ),
            ..query(View::Hourly)
        }
        .run(&store, &cal, now)
        .unwrap();
        assert_eq!(hourly.rows.len(), 25, "the fall-back day has 25 hours");
        assert_eq!(hourly.rows[2].label, "2026-10-25 02:00");
        assert_eq!(
            hourly.rows[3].label, "2026-10-25 02:00",
            "02:00 happens twice"
        );

        let summary = query(View::Summary).run(&store, &cal, now).unwrap();
        assert_eq!(rows(&summary), s(&[("alice", 193_000)]));
        assert!(matches!(summary.estimated, Some(Some(_))));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn per_entity_totals_over_a_span_equal_the_5_minute_rows_inside_it() {
        let (store, cal, dir) = synthetic("span");
        let now: Timestamp = "2026-10-28T12:00:00Z".parse().unwrap();
        let local = |s: &str| {
            format!("{s}[Europe/Berlin]")
                .parse::<jiff::Zoned>()
                .unwrap()
                .timestamp()
                .as_second()
        };
        for (since, until, bytes) in [
            // A day, six whole days and five hours.
            (
                Some("2026-10-14T00:00:00"),
                Some("2026-10-21T05:00:00"),
                34_000,
            ),
            // 5-minute rows up to the hour, then an hour.
            (Some("2026-10-27T22:35:00"), None, 2_000),
            // Everything before.
            (None, Some("2026-10-20T00:00:00"), 5_000),
            (None, Some("2026-10-20T03:00:00"), 8_000),
        ] {
            let (since, until) = (since.map(local), until.map(local));
            let run = |view| {
                Query {
                    since,
                    until,
                    ..query(view)
                }
                .run(&store, &cal, now)
                .unwrap()
            };
            let spanned = run(View::Summary);
            assert_eq!(
                rows(&spanned),
                [("alice".to_string(), bytes)],
                "{since:?}..{until:?}"
            );
            assert_eq!(spanned.estimated, None, "a span has no estimate");
            // The 5-minute rows inside the span, a sum read another way.
            assert_eq!(run(View::FiveMin).sum.rx_bytes, bytes);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
