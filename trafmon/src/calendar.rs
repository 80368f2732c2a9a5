//! Bucket boundaries: 5-minute, local hour, local calendar day, billing
//! month (starting on a configurable day), and weeks starting on any day.
//! A bucket is identified by the Unix second at which it starts. Local time
//! comes from jiff's time-zone database, so a day can have 23 or 25 hours.

use jiff::{
    Timestamp, ToSpan as _, Zoned,
    civil::{Date, Weekday},
    tz::TimeZone,
};

/// Errors of this module (a date outside jiff's range).
#[derive(Debug, thiserror::Error)]
#[error("date arithmetic out of range")]
pub struct CalendarError(#[from] jiff::Error);

/// The resolutions the store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    /// Five minutes.
    FiveMin,
    /// A local hour.
    Hour,
    /// A local calendar day.
    Day,
    /// A billing month.
    Month,
}

impl Resolution {
    /// Every stored resolution, finest first.
    pub const ALL: [Self; 4] = [Self::FiveMin, Self::Hour, Self::Day, Self::Month];

    /// Its table in the store.
    pub fn table(self) -> &'static str {
        match self {
            Self::FiveMin => "fivemin",
            Self::Hour => "hourly",
            Self::Day => "daily",
            Self::Month => "monthly",
        }
    }

    /// Its rows in the store, folded or not: what readers read.
    pub fn view(self) -> &'static str {
        match self {
            Self::FiveMin => "fivemin_all",
            Self::Hour => "hourly_all",
            Self::Day => "daily_all",
            Self::Month => "monthly_all",
        }
    }
}

/// Time zone, week start and billing day.
#[derive(Clone, Debug)]
pub struct Calendar {
    /// The zone of local days and months.
    pub tz: TimeZone,
    /// First day of a week.
    pub week_start: Weekday,
    /// Day of the month on which a billing month starts (1 to 31; in a
    /// shorter month, its last day).
    pub month_start_day: i8,
}

impl Calendar {
    /// The bucket of `res` that holds the instant `ts`.
    pub fn bucket(&self, res: Resolution, ts: Timestamp) -> Result<i64, CalendarError> {
        let z = ts.to_zoned(self.tz.clone());
        Ok(match res {
            Resolution::FiveMin => floor_local(&z, 300),
            Resolution::Hour => floor_local(&z, 3600),
            Resolution::Day => z.start_of_day()?.timestamp().as_second(),
            Resolution::Month => self.period_start(z.date())?,
        })
    }

    /// The bucket of `res` that holds the traffic of a flush at `at`: the
    /// traffic came before `at`, so a flush at 10:05:00 closes 10:00-10:05.
    pub fn flush_bucket(&self, res: Resolution, at: Timestamp) -> Result<i64, CalendarError> {
        self.bucket(res, at - 1.nanosecond())
    }

    /// Start of the billing period that holds local date `d`.
    fn period_start(&self, d: Date) -> Result<i64, CalendarError> {
        let this = self.start_day_in(d.year(), d.month())?;
        let start = if d >= this {
            this
        } else {
            let prev = d.first_of_month() - 1.day();
            self.start_day_in(prev.year(), prev.month())?
        };
        self.start_of(start)
    }

    /// The billing start date in year `y`, month `m`.
    fn start_day_in(&self, y: i16, m: i8) -> Result<Date, CalendarError> {
        let first = Date::new(y, m, 1)?;
        let day = self.month_start_day.min(first.days_in_month());
        Ok(Date::new(y, m, day)?)
    }

    /// The instant local date `d` starts.
    pub fn start_of(&self, d: Date) -> Result<i64, CalendarError> {
        Ok(d.to_zoned(self.tz.clone())?
            .start_of_day()?
            .timestamp()
            .as_second())
    }

    /// The local date at instant `second`.
    pub fn date_of(&self, second: i64) -> Result<Date, CalendarError> {
        Ok(Timestamp::from_second(second)?
            .to_zoned(self.tz.clone())
            .date())
    }

    /// The start of the week (by `week_start`) that holds the day starting
    /// at `day_start`.
    pub fn week_of(&self, day_start: i64) -> Result<i64, CalendarError> {
        let d = self.date_of(day_start)?;
        let back = (d.weekday().to_monday_zero_offset() - self.week_start.to_monday_zero_offset())
            .rem_euclid(7);
        self.start_of(d - i64::from(back).days())
    }

    /// The start of the billing period after the one starting at `start`.
    pub fn next_period(&self, start: i64) -> Result<i64, CalendarError> {
        let d = self.date_of(start)?;
        let next = d.first_of_month() + 1.month();
        self.start_of(self.start_day_in(next.year(), next.month())?)
    }

    /// The start of the local day after the one starting at `start`.
    pub fn next_day(&self, start: i64) -> Result<i64, CalendarError> {
        self.start_of(self.date_of(start)? + 1.day())
    }

    /// The start of the bucket of `res` after the one starting at `start`.
    pub fn next(&self, res: Resolution, start: i64) -> Result<i64, CalendarError> {
        match res {
            Resolution::FiveMin => Ok(start + 300),
            Resolution::Hour => Ok(start + 3600),
            Resolution::Day => self.next_day(start),
            Resolution::Month => self.next_period(start),
        }
    }

    /// True when a bucket of `res` starts at the instant `second`.
    pub fn starts(&self, res: Resolution, second: i64) -> Result<bool, CalendarError> {
        Ok(self.bucket(res, Timestamp::from_second(second)?)? == second)
    }
}

#[cfg(test)]
impl Calendar {
    /// Europe/Berlin, weeks from Monday, billing months from
    /// `month_start_day`: the tests' calendar.
    pub fn berlin(month_start_day: i8) -> Self {
        Self {
            tz: TimeZone::get("Europe/Berlin").expect("Europe/Berlin"),
            week_start: Weekday::Monday,
            month_start_day,
        }
    }
}

/// Floors `z` to a multiple of `step` seconds of local time. Local offsets
/// are whole multiples of 5 minutes in every zone in use, so local hours
/// (UTC+05:45 included) start on a 5-minute boundary, and so on a flush.
fn floor_local(z: &Zoned, step: i64) -> i64 {
    let t = z.timestamp().as_second();
    let offset = i64::from(z.offset().seconds());
    t - (t + offset).rem_euclid(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(tz: &str, week_start: Weekday, month_start_day: i8) -> Calendar {
        Calendar {
            tz: TimeZone::get(tz).unwrap(),
            week_start,
            month_start_day,
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn day_hours(c: &Calendar, local_noon: &str) -> i64 {
        let start = c.bucket(Resolution::Day, at(local_noon)).unwrap();
        (c.next_day(start).unwrap() - start) / 3600
    }

    #[test]
    fn daylight_saving_days_have_23_and_25_hours() {
        let berlin = cal("Europe/Berlin", Weekday::Monday, 1);
        assert_eq!(day_hours(&berlin, "2026-03-29T10:00:00Z"), 23);
        assert_eq!(day_hours(&berlin, "2026-10-25T10:00:00Z"), 25);
        assert_eq!(day_hours(&berlin, "2026-07-01T10:00:00Z"), 24);
        let ny = cal("America/New_York", Weekday::Monday, 1);
        assert_eq!(day_hours(&ny, "2026-03-08T17:00:00Z"), 23);
        assert_eq!(day_hours(&ny, "2026-11-01T17:00:00Z"), 25);
    }

    #[test]
    fn hours_around_the_fall_back_are_distinct_buckets() {
        let berlin = cal("Europe/Berlin", Weekday::Monday, 1);
        // 02:30 CEST and 02:30 CET on 2026-10-25 are an hour apart.
        let first = berlin
            .bucket(Resolution::Hour, at("2026-10-25T00:30:00Z"))
            .unwrap();
        let second = berlin
            .bucket(Resolution::Hour, at("2026-10-25T01:30:00Z"))
            .unwrap();
        assert_eq!(second - first, 3600);
        assert_eq!(first, at("2026-10-25T00:00:00Z").as_second());
    }

    #[test]
    fn a_month_starting_on_the_15th() {
        let c = cal("UTC", Weekday::Monday, 15);
        let b = |s| c.bucket(Resolution::Month, at(s)).unwrap();
        assert_eq!(
            b("2026-03-14T23:59:59Z"),
            at("2026-02-15T00:00:00Z").as_second()
        );
        assert_eq!(
            b("2026-03-15T00:00:00Z"),
            at("2026-03-15T00:00:00Z").as_second()
        );
        assert_eq!(
            b("2026-01-03T00:00:00Z"),
            at("2025-12-15T00:00:00Z").as_second()
        );
        assert_eq!(
            c.next_period(at("2026-12-15T00:00:00Z").as_second())
                .unwrap(),
            at("2027-01-15T00:00:00Z").as_second()
        );
    }

    #[test]
    fn a_billing_day_past_the_end_of_a_short_month_is_its_last_day() {
        let c = cal("UTC", Weekday::Monday, 31);
        let b = |s| c.bucket(Resolution::Month, at(s)).unwrap();
        assert_eq!(
            b("2026-03-01T12:00:00Z"),
            at("2026-02-28T00:00:00Z").as_second()
        );
        assert_eq!(
            b("2028-03-01T12:00:00Z"),
            at("2028-02-29T00:00:00Z").as_second()
        );
        assert_eq!(
            b("2026-03-31T00:00:00Z"),
            at("2026-03-31T00:00:00Z").as_second()
        );
    }

    #[test]
    fn weeks_start_on_sunday_or_monday() {
        // 2026-11-18 is a Wednesday.
        let day = at("2026-11-18T00:00:00Z").as_second();
        let monday = cal("UTC", Weekday::Monday, 1);
        let sunday = cal("UTC", Weekday::Sunday, 1);
        assert_eq!(
            monday.week_of(day).unwrap(),
            at("2026-11-16T00:00:00Z").as_second()
        );
        assert_eq!(
            sunday.week_of(day).unwrap(),
            at("2026-11-15T00:00:00Z").as_second()
        );
        // A Sunday starts its own week when weeks start on Sunday.
        let sun = at("2026-11-22T00:00:00Z").as_second();
        assert_eq!(sunday.week_of(sun).unwrap(), sun);
        assert_eq!(
            monday.week_of(sun).unwrap(),
            at("2026-11-16T00:00:00Z").as_second()
        );
    }

    #[test]
    fn kathmandu_hours_start_at_quarter_past_utc() {
        let c = cal("Asia/Kathmandu", Weekday::Monday, 1);
        let h = c
            .bucket(Resolution::Hour, at("2026-06-01T10:20:00Z"))
            .unwrap();
        assert_eq!(h, at("2026-06-01T10:15:00Z").as_second());
        // Its hours fall on 5-minute (and so 15-minute) boundaries.
        assert_eq!(h % 900, 0);
        let five = c
            .bucket(Resolution::FiveMin, at("2026-06-01T10:19:59Z"))
            .unwrap();
        assert_eq!(five, at("2026-06-01T10:15:00Z").as_second());
        let day = c
            .bucket(Resolution::Day, at("2026-06-01T10:20:00Z"))
            .unwrap();
        assert_eq!(day, at("2026-05-31T18:15:00Z").as_second());
    }

    #[test]
    fn leap_days() {
        let c = cal("UTC", Weekday::Monday, 1);
        let d = c
            .bucket(Resolution::Day, at("2028-02-29T12:00:00Z"))
            .unwrap();
        assert_eq!(
            c.next_day(d).unwrap(),
            at("2028-03-01T00:00:00Z").as_second()
        );
        let m = c
            .bucket(Resolution::Month, at("2028-02-29T12:00:00Z"))
            .unwrap();
        assert_eq!((c.next_period(m).unwrap() - m) / 86400, 29);
    }

    #[test]
    fn a_flush_on_a_boundary_closes_the_bucket_before_it() {
        let c = cal("UTC", Weekday::Monday, 1);
        let t = at("2026-11-22T10:05:00Z");
        assert_eq!(
            c.flush_bucket(Resolution::FiveMin, t).unwrap(),
            at("2026-11-22T10:00:00Z").as_second()
        );
        assert_eq!(
            c.flush_bucket(Resolution::Day, at("2026-11-23T00:00:00Z"))
                .unwrap(),
            at("2026-11-22T00:00:00Z").as_second()
        );
    }
}
