//! Per-entity totals over a span of time (`report --since/--until` without
//! a time view). The span is cut into the coarsest stored buckets that lie
//! inside it: 5-minute rows up to the first whole hour, hours up to the
//! first whole day, days up to the first billing month, months while they
//! fit, then days, hours and 5-minute rows again up to its end. Whole
//! buckets only, so the sum is exact and no bucket is read twice; coarse
//! ones where they fit, so it reaches as far back as retention allows.

use jiff::Timestamp;

use crate::{
    calendar::{Calendar, CalendarError, Resolution},
    config::Retention,
    store::Source,
};

/// Why a span cannot be summed exactly.
#[derive(Debug, thiserror::Error)]
pub enum SpanError {
    /// A bound that no stored bucket starts at.
    #[error("{0} is not on a 5-minute boundary, the finest the store keeps")]
    Unaligned(String),
    /// A bound that needs rows retention has pruned.
    #[error(
        "the span needs {table} rows from {from}, but retention.{table} = \"{keep}\" keeps them only from {kept}; give bounds on coarser boundaries (whole days or billing months)"
    )]
    Pruned {
        /// The resolution's table (and retention key).
        table: &'static str,
        /// The first bucket the span needs, local time.
        from: String,
        /// The retention setting.
        keep: String,
        /// The first bucket retention keeps, local time.
        kept: String,
    },
    /// A date could not be computed.
    #[error(transparent)]
    Calendar(#[from] CalendarError),
}

/// What to sum for `from <= t < to` (`None`: from the first byte stored, or
/// up to now and on).
pub fn sources(
    cal: &Calendar,
    retention: &Retention,
    now: Timestamp,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Vec<Source>, SpanError> {
    for bound in [from, to].into_iter().flatten() {
        if !cal.starts(Resolution::FiveMin, bound)? {
            return Err(SpanError::Unaligned(local(cal, bound)?));
        }
    }
    let end = to.unwrap_or(i64::MAX);
    let mut out = Vec::new();
    let mut cur = match from {
        Some(from) => from,
        None => {
            // Every month before the one `to` falls in, with what
            // retention pruned of them.
            let first = match to {
                Some(to) => cal.bucket(
                    Resolution::Month,
                    Timestamp::from_second(to).map_err(CalendarError::from)?,
                )?,
                None => i64::MAX,
            };
            out.extend([
                Source::Pruned,
                Source::Rows(Resolution::Month, i64::MIN, first),
            ]);
            first
        }
    };
    'next: while cur < end {
        for res in [
            Resolution::Month,
            Resolution::Day,
            Resolution::Hour,
            Resolution::FiveMin,
        ] {
            if !cal.starts(res, cur)? {
                continue;
            }
            let next = if to.is_none() && res == Resolution::Month {
                i64::MAX
            } else {
                cal.next(res, cur)?
            };
            if next > end {
                continue;
            }
            match out.last_mut() {
                Some(Source::Rows(r, _, last)) if *r == res && *last == cur => *last = next,
                _ => out.push(Source::Rows(res, cur, next)),
            }
            cur = next;
            continue 'next;
        }
        // Both bounds start 5-minute buckets, so one always fits.
        return Err(SpanError::Unaligned(local(cal, cur)?));
    }
    // A range's first bucket is its oldest: retention keeps the range
    // whole when it keeps that. (The months before all else come with
    // what was pruned of them.)
    for source in &out {
        if let Source::Rows(res, start, _) = *source
            && start != i64::MIN
        {
            kept(cal, retention, now, res, start)?;
        }
    }
    Ok(out)
}

/// Fails when retention no longer keeps the bucket of `res` at `start`.
fn kept(
    cal: &Calendar,
    retention: &Retention,
    now: Timestamp,
    res: Resolution,
    start: i64,
) -> Result<(), SpanError> {
    match retention.kept_from(res, cal, now)? {
        Some(first) if start < first => Err(SpanError::Pruned {
            table: res.table(),
            from: local(cal, start)?,
            keep: retention.of(res).text.clone(),
            kept: local(cal, first)?,
        }),
        _ => Ok(()),
    }
}

fn local(cal: &Calendar, second: i64) -> Result<String, CalendarError> {
    Ok(Timestamp::from_second(second)?
        .to_zoned(cal.tz.clone())
        .strftime("%Y-%m-%d %H:%M")
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal() -> Calendar {
        Calendar::berlin(15)
    }

    fn at(local: &str) -> i64 {
        format!("{local}[Europe/Berlin]")
            .parse::<jiff::Zoned>()
            .unwrap()
            .timestamp()
            .as_second()
    }

    fn now() -> Timestamp {
        Timestamp::from_second(at("2026-11-22T12:00:00")).unwrap()
    }

    #[test]
    fn a_span_is_cut_into_the_coarsest_whole_buckets() {
        let forever = Retention {
            fivemin: Retention::default().monthly,
            hourly: Retention::default().monthly,
            daily: Retention::default().monthly,
            monthly: Retention::default().monthly,
        };
        let got = sources(
            &cal(),
            &forever,
            now(),
            Some(at("2026-08-13T22:55:00")),
            Some(at("2026-10-17T01:10:00")),
        )
        .unwrap();
        use Resolution::*;
        assert_eq!(
            got,
            vec![
                Source::Rows(
                    FiveMin,
                    at("2026-08-13T22:55:00"),
                    at("2026-08-13T23:00:00")
                ),
                Source::Rows(Hour, at("2026-08-13T23:00:00"), at("2026-08-14T00:00:00")),
                Source::Rows(Day, at("2026-08-14T00:00:00"), at("2026-08-15T00:00:00")),
                // Billing months from the 15th, across the end of summer time.
                Source::Rows(Month, at("2026-08-15T00:00:00"), at("2026-10-15T00:00:00")),
                Source::Rows(Day, at("2026-10-15T00:00:00"), at("2026-10-17T00:00:00")),
                Source::Rows(Hour, at("2026-10-17T00:00:00"), at("2026-10-17T01:00:00")),
                Source::Rows(
                    FiveMin,
                    at("2026-10-17T01:00:00"),
                    at("2026-10-17T01:10:00")
                ),
            ]
        );
    }

    #[test]
    fn open_bounds_read_every_month_and_what_was_pruned() {
        let r = Retention::default();
        let until = sources(&cal(), &r, now(), None, Some(at("2026-11-16T00:00:00"))).unwrap();
        assert_eq!(
            until,
            vec![
                Source::Pruned,
                Source::Rows(Resolution::Month, i64::MIN, at("2026-11-15T00:00:00")),
                Source::Rows(
                    Resolution::Day,
                    at("2026-11-15T00:00:00"),
                    at("2026-11-16T00:00:00")
                ),
            ]
        );
        let since = sources(&cal(), &r, now(), Some(at("2026-11-14T00:00:00")), None).unwrap();
        assert_eq!(
            since,
            vec![
                Source::Rows(
                    Resolution::Day,
                    at("2026-11-14T00:00:00"),
                    at("2026-11-15T00:00:00")
                ),
                Source::Rows(Resolution::Month, at("2026-11-15T00:00:00"), i64::MAX),
            ]
        );
    }

    #[test]
    fn bounds_off_a_bucket_or_in_pruned_rows_are_refused() {
        let r = Retention::default();
        let e = sources(&cal(), &r, now(), Some(at("2026-11-20T10:03:00")), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "2026-11-20 10:03 is not on a 5-minute boundary, the finest the store keeps"
        );
        // Hourly rows are kept 60 days: from 2026-09-23 12:00 on.
        let e = sources(&cal(), &r, now(), Some(at("2026-09-01T10:00:00")), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the span needs hourly rows from 2026-09-01 10:00, but retention.hourly = \"60d\" keeps them only from 2026-09-23 12:00; give bounds on coarser boundaries (whole days or billing months)"
        );
        // The same start as a date reads daily rows, kept 5 years.
        assert!(sources(&cal(), &r, now(), Some(at("2026-09-01T00:00:00")), None).is_ok());
    }
}
