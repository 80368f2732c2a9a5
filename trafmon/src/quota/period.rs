//! The period of a quota that holds an instant: a billing month, a week or
//! a local day, in the configured time zone.

use jiff::{Timestamp, ToSpan as _};

use crate::{
    calendar::{Calendar, CalendarError, Resolution},
    quota::spec::Period,
};

/// Start and end (exclusive) of the period of `period` that holds `now`, in
/// Unix seconds.
pub fn bounds(cal: &Calendar, period: Period, now: Timestamp) -> Result<(i64, i64), CalendarError> {
    let day = cal.bucket(Resolution::Day, now)?;
    Ok(match period {
        Period::Month(start_day) => {
            let cal = Calendar {
                month_start_day: start_day,
                ..cal.clone()
            };
            let start = cal.bucket(Resolution::Month, now)?;
            (start, cal.next_period(start)?)
        }
        Period::Week => {
            let start = cal.week_of(day)?;
            (start, cal.start_of(cal.date_of(start)? + 7.days())?)
        }
        Period::Day => (day, cal.next_day(day)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal() -> Calendar {
        Calendar::berlin(1)
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn secs(s: &str) -> i64 {
        ts(s).as_second()
    }

    #[test]
    fn months_weeks_and_days() {
        let now = ts("2026-03-20T12:00:00Z");
        assert_eq!(
            bounds(&cal(), Period::Month(15), now).unwrap(),
            (secs("2026-03-14T23:00:00Z"), secs("2026-04-14T22:00:00Z"))
        );
        assert_eq!(
            bounds(&cal(), Period::Week, now).unwrap(),
            (secs("2026-03-15T23:00:00Z"), secs("2026-03-22T23:00:00Z"))
        );
        // The day daylight saving time starts has 23 hours.
        assert_eq!(
            bounds(&cal(), Period::Day, ts("2026-03-29T12:00:00Z")).unwrap(),
            (secs("2026-03-28T23:00:00Z"), secs("2026-03-29T22:00:00Z"))
        );
    }
}
