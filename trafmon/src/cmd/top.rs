//! `trafmon top`: live rates per user, address and interface, refreshed
//! every second from the kernel's counters (the agent's flushes are taken
//! into account, not disturbed). A screen that fits the terminal, or plain
//! tab-separated lines when the output is not a terminal.

use std::{
    io::{self, IsTerminal as _, Write as _},
    time::{Duration, Instant},
};

use jiff::Timestamp;

use super::open_store;
use crate::{
    config::Config,
    counters::Maps,
    live::{self, Lifetime},
    paths::PinDir,
    units::Units,
};

/// `trafmon top` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds between refreshes.
    #[arg(long, default_value = "1", value_name = "SECONDS", value_parser = seconds)]
    interval: Duration,
    /// Stop after N refreshes (default: until interrupted).
    #[arg(long, value_name = "N", value_parser = super::one_or_more)]
    count: Option<std::num::NonZeroUsize>,
    /// Units on the screen (lines are always bytes per second).
    #[arg(long, value_enum, default_value_t)]
    units: Units,
}

/// A positive, finite number of seconds (`0.5`, `2`).
fn seconds(s: &str) -> Result<Duration, String> {
    let n: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if n.is_nan() || n <= 0.0 {
        return Err("must be a positive number of seconds".into());
    }
    Duration::try_from_secs_f64(n).map_err(|_| "too long to wait".into())
}

/// One entity's rates in bytes per second.
#[derive(Clone, Debug, PartialEq)]
pub struct Rate {
    /// `uid`, `ip`, ...
    pub kind: &'static str,
    /// Its label.
    pub label: String,
    /// Received bytes per second.
    pub rx: f64,
    /// Sent bytes per second.
    pub tx: f64,
}

/// Rates between two lifetime reads `seconds` apart, busiest first.
pub fn rates(before: &Lifetime, after: &Lifetime, seconds: f64) -> Vec<Rate> {
    let mut out: Vec<Rate> = after
        .iter()
        .filter_map(|(entity, (label, now))| {
            let then = before.get(entity).map(|(_, c)| *c).unwrap_or_default();
            let rx = now.rx_bytes.saturating_sub(then.rx_bytes) as f64 / seconds;
            let tx = now.tx_bytes.saturating_sub(then.tx_bytes) as f64 / seconds;
            (rx > 0.0 || tx > 0.0).then(|| Rate {
                kind: entity.kind.as_str(),
                label: live::label(entity, label).to_owned(),
                rx,
                tx,
            })
        })
        .collect();
    out.sort_by(|a, b| (b.rx + b.tx).total_cmp(&(a.rx + a.tx)));
    out
}

/// Plain lines: `unix-seconds TAB kind TAB label TAB rx-B/s TAB tx-B/s`.
pub fn write_lines(w: &mut impl io::Write, at: i64, rates: &[Rate]) -> io::Result<()> {
    for r in rates {
        writeln!(w, "{at}\t{}\t{}\t{:.0}\t{:.0}", r.kind, r.label, r.rx, r.tx)?;
    }
    Ok(())
}

/// A screen of at most `height` lines.
pub fn write_screen(
    w: &mut impl io::Write,
    rates: &[Rate],
    units: Units,
    height: usize,
) -> io::Result<()> {
    let rate = |b: f64| units.rate(b.round() as u64, 1.0);
    writeln!(w, "{:<6} {:<30} {:>14} {:>14}", "kind", "label", "rx", "tx")?;
    for r in rates.iter().take(height.saturating_sub(1)) {
        let label: String = r.label.chars().take(30).collect();
        writeln!(
            w,
            "{:<6} {label:<30} {:>14} {:>14}",
            r.kind,
            rate(r.rx),
            rate(r.tx)
        )?;
    }
    Ok(())
}

fn terminal_height() -> usize {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize we own.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_row > 2 {
        usize::from(size.ws_row) - 1
    } else {
        24
    }
}

/// Runs `trafmon top`.
pub fn run(args: &Args, config: &Config) -> anyhow::Result<()> {
    let store = open_store(&config.store_path())?;
    let maps = Maps::open(&PinDir::new(&config.pin_dir))?;
    let interval = args.interval;
    let tty = io::stdout().is_terminal();
    let mut before = live::read(&store, &maps, &config.groups)?;
    let mut last = Instant::now();
    let mut n = 0;
    while args.count.is_none_or(|c| n < c.get()) {
        std::thread::sleep(interval.saturating_sub(last.elapsed()));
        let after = live::read(&store, &maps, &config.groups)?;
        let now = Instant::now();
        let list = rates(&before, &after, now.duration_since(last).as_secs_f64());
        let mut out = io::stdout().lock();
        if tty {
            write!(out, "\x1b[H\x1b[2J")?;
            write_screen(&mut out, &list, args.units, terminal_height())?;
        } else {
            write_lines(&mut out, Timestamp::now().as_second(), &list)?;
        }
        out.flush()?;
        (before, last) = (after, now);
        n += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use trafmon_common::Counters;

    use super::*;
    use crate::store::{Entity, Kind};

    #[test]
    fn a_count_of_zero_is_refused_as_report_refuses_zero_rows() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Line {
            #[command(flatten)]
            args: Args,
        }
        let e = Line::try_parse_from(["top", "--count", "0"]).err().unwrap();
        assert!(
            e.to_string()
                .contains("'0' for '--count <N>': must be 1 or more"),
            "{e}"
        );
        let line = Line::try_parse_from(["top", "--count", "2"]).unwrap();
        assert_eq!(line.args.count.map(std::num::NonZeroUsize::get), Some(2));
    }

    #[test]
    fn the_interval_is_a_positive_finite_number_of_seconds() {
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(seconds("2"), Ok(Duration::from_secs(2)));
        for bad in ["0", "-1", "NaN", "inf", "1e30", "soon"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }

    fn life(entries: &[(&str, u64, u64)]) -> Lifetime {
        entries
            .iter()
            .map(|(k, rx, tx)| {
                (
                    Entity {
                        kind: Kind::Uid,
                        key: (*k).into(),
                    },
                    (
                        (*k).into(),
                        Counters {
                            rx_bytes: *rx,
                            rx_packets: 0,
                            tx_bytes: *tx,
                            tx_packets: 0,
                        },
                    ),
                )
            })
            .collect()
    }

    #[test]
    fn rates_are_sorted_and_idle_entities_hidden() {
        let before = life(&[("a", 0, 0), ("b", 100, 100), ("c", 5, 5)]);
        let after = life(&[("a", 1000, 0), ("b", 100, 4100), ("c", 5, 5), ("d", 0, 10)]);
        let r = rates(&before, &after, 2.0);
        let got: Vec<(&str, f64, f64)> = r.iter().map(|r| (r.label.as_str(), r.rx, r.tx)).collect();
        assert_eq!(
            got,
            vec![("b", 0.0, 2000.0), ("a", 500.0, 0.0), ("d", 0.0, 5.0)]
        );
        let mut out = Vec::new();
        write_lines(&mut out, 7, &r).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "7\tuid\tb\t0\t2000\n7\tuid\ta\t500\t0\n7\tuid\td\t0\t5\n"
        );
        let mut out = Vec::new();
        write_screen(&mut out, &r, Units::Iec, 3).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 3, "fits the height: {text}");
        assert!(
            text.lines().nth(1).unwrap().contains("16.00 kbit/s"),
            "{text}"
        );
    }
}
