//! Printing a [`Report`]: a vnStat-like table, JSON with a format version,
//! or CSV. Renderers write to `impl Write`.

use std::io::{self, Write};

use serde::Serialize;

use super::{Report, Row, View};
use crate::{store::Kind, units::Units};

/// Version of the JSON layout; bumped on any incompatible change.
pub const JSON_VERSION: u32 = 1;

fn first_column(report: &Report) -> &'static str {
    match report.view {
        View::Summary | View::Total => match report.kind {
            Kind::Uid => "user",
            Kind::Ip => "ip",
            Kind::Iface => "interface",
            Kind::Group => "group",
            Kind::Overflow => "overflow",
        },
        View::FiveMin => "5 min",
        View::FifteenMin => "15 min",
        View::Hourly => "hour",
        View::Daily => "day",
        View::Weekly => "week",
        View::Monthly => "month",
        View::Yearly => "year",
    }
}

fn total(rx: u64, tx: u64) -> u64 {
    rx.saturating_add(tx)
}

/// Writes the table: right-aligned columns `rx | tx | total | avg. rate`, a
/// rule under the header, a SUM row and, for a period in progress, an
/// `estimated` row (`--` while it cannot be estimated yet).
pub fn table(w: &mut impl Write, report: &Report, units: Units) -> io::Result<()> {
    let header = [first_column(report), "rx", "tx", "total", "avg. rate"];
    let cells = |label: &str, rx: u64, tx: u64, rate: String| {
        [
            label.to_owned(),
            units.bytes(rx),
            units.bytes(tx),
            units.bytes(total(rx, tx)),
            rate,
        ]
    };
    let rate = |r: &Row| {
        units.rate(
            total(r.counters.rx_bytes, r.counters.tx_bytes),
            r.seconds as f64,
        )
    };
    let mut lines: Vec<[String; 5]> = report
        .rows
        .iter()
        .map(|r| cells(&r.label, r.counters.rx_bytes, r.counters.tx_bytes, rate(r)))
        .collect();
    let sum = cells(
        "SUM",
        report.sum.rx_bytes,
        report.sum.tx_bytes,
        String::new(),
    );
    let estimated = report.estimated.map(|e| match e {
        Some(e) => cells("estimated", e.rx_bytes, e.tx_bytes, String::new()),
        None => [
            "estimated".into(),
            "--".into(),
            "--".into(),
            "--".into(),
            String::new(),
        ],
    });
    let mut widths = header.map(|h| h.chars().count());
    for line in lines.iter().chain([&sum]).chain(estimated.as_ref()) {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let write_line = |w: &mut dyn Write, cells: &[String; 5]| -> io::Result<()> {
        let pad = widths[0] - cells[0].chars().count();
        let mut line = format!(" {}{}", cells[0], " ".repeat(pad));
        for (i, cell) in cells.iter().enumerate().skip(1) {
            line.push_str(&format!(" | {cell:>width$}", width = widths[i]));
        }
        writeln!(w, "{}", line.trim_end())
    };
    let rule = "-".repeat(widths.iter().sum::<usize>() + 3 * 4 + 2);
    write_line(w, &header.map(String::from))?;
    writeln!(w, "{rule}")?;
    if lines.is_empty() {
        writeln!(w, " no traffic in this period")?;
        return Ok(());
    }
    for line in lines.drain(..) {
        write_line(w, &line)?;
    }
    writeln!(w, "{rule}")?;
    write_line(w, &sum)?;
    if let Some(e) = &estimated {
        write_line(w, e)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct JsonRow<'a> {
    label: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    start: Option<i64>,
    end: Option<i64>,
    rx_bytes: u64,
    rx_packets: u64,
    tx_bytes: u64,
    tx_packets: u64,
    total_bytes: u64,
}

#[derive(Serialize)]
struct JsonEstimate {
    rx_bytes: u64,
    tx_bytes: u64,
    total_bytes: u64,
}

#[derive(Serialize)]
struct Json<'a> {
    jsonversion: u32,
    kind: &'a str,
    view: View,
    rows: Vec<JsonRow<'a>>,
    sum: JsonRow<'a>,
    estimated: Option<JsonEstimate>,
}

fn json_row<'a>(
    label: &'a str,
    key: Option<&'a str>,
    r: Option<&Row>,
    c: &trafmon_common::Counters,
) -> JsonRow<'a> {
    let bound = |v: i64| (v != i64::MIN && v != i64::MAX).then_some(v);
    JsonRow {
        label,
        key,
        start: r.and_then(|r| bound(r.start)),
        end: r.and_then(|r| bound(r.end)),
        rx_bytes: c.rx_bytes,
        rx_packets: c.rx_packets,
        tx_bytes: c.tx_bytes,
        tx_packets: c.tx_packets,
        total_bytes: total(c.rx_bytes, c.tx_bytes),
    }
}

/// Writes the report as JSON (bytes and packets, always exact; times as
/// Unix seconds).
pub fn json(w: &mut impl Write, report: &Report) -> io::Result<()> {
    let doc = Json {
        jsonversion: JSON_VERSION,
        kind: report.kind.as_str(),
        view: report.view,
        rows: report
            .rows
            .iter()
            .map(|r| json_row(&r.label, r.key.as_deref(), Some(r), &r.counters))
            .collect(),
        sum: json_row("SUM", None, None, &report.sum),
        estimated: report.estimated.flatten().map(|e| JsonEstimate {
            rx_bytes: e.rx_bytes,
            tx_bytes: e.tx_bytes,
            total_bytes: total(e.rx_bytes, e.tx_bytes),
        }),
    };
    serde_json::to_writer_pretty(&mut *w, &doc)?;
    writeln!(w)
}

/// Quotes a CSV field when it needs it (RFC 4180). Written by hand: one
/// function does not justify a dependency.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Writes the report as CSV with exact numbers and a SUM row.
pub fn csv(w: &mut impl Write, report: &Report) -> io::Result<()> {
    writeln!(
        w,
        "label,key,start,end,rx_bytes,rx_packets,tx_bytes,tx_packets,total_bytes"
    )?;
    let bound = |v: i64| {
        if v == i64::MIN || v == i64::MAX {
            String::new()
        } else {
            v.to_string()
        }
    };
    for r in &report.rows {
        let c = &r.counters;
        writeln!(
            w,
            "{},{},{},{},{},{},{},{},{}",
            csv_field(&r.label),
            csv_field(r.key.as_deref().unwrap_or("")),
            bound(r.start),
            bound(r.end),
            c.rx_bytes,
            c.rx_packets,
            c.tx_bytes,
            c.tx_packets,
            total(c.rx_bytes, c.tx_bytes)
        )?;
    }
    let c = &report.sum;
    writeln!(
        w,
        "SUM,,,,{},{},{},{},{}",
        c.rx_bytes,
        c.rx_packets,
        c.tx_bytes,
        c.tx_packets,
        total(c.rx_bytes, c.tx_bytes)
    )
}

#[cfg(test)]
mod tests {
    use trafmon_common::Counters;

    use super::*;
    use crate::report::Estimate;

    fn c(rx: u64, tx: u64) -> Counters {
        Counters {
            rx_bytes: rx,
            rx_packets: rx / 1000,
            tx_bytes: tx,
            tx_packets: tx / 1000,
        }
    }

    fn row(label: &str, key: &str, counters: Counters, seconds: i64) -> Row {
        Row {
            label: label.into(),
            key: Some(key.into()),
            start: 1_762_000_000,
            end: 1_764_600_000,
            seconds,
            counters,
        }
    }

    fn summary(estimated: Option<Option<Estimate>>) -> Report {
        let rows = vec![
            row(
                "alice",
                "1000",
                c(3 * 1024 * 1024 * 1024, 512 * 1024 * 1024),
                86_400 * 10,
            ),
            row(
                "jürgen-the-long-named-operator",
                "1001",
                c(1536, 100),
                86_400 * 10,
            ),
            row("61002", "61002", c(0, 0), 86_400 * 10),
        ];
        let mut sum = Counters::ZERO;
        for r in &rows {
            sum.add(&r.counters);
        }
        Report {
            kind: Kind::Uid,
            view: View::Summary,
            rows,
            sum,
            estimated,
        }
    }

    fn render(f: impl Fn(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn summary_table_in_iec_with_estimate() {
        let est = Estimate {
            rx_bytes: 9 * 1024 * 1024 * 1024,
            tx_bytes: 1536 * 1024 * 1024,
        };
        let out = render(|w| table(w, &summary(Some(Some(est))), Units::Iec));
        let expected = &"
 user                           |       rx |         tx |     total |    avg. rate
-----------------------------------------------------------------------------------
 alice                          | 3.00 GiB | 512.00 MiB |  3.50 GiB | 34.80 kbit/s
 jürgen-the-long-named-operator | 1.50 KiB |      100 B |  1.60 KiB |      0 bit/s
 61002                          |      0 B |        0 B |       0 B |      0 bit/s
-----------------------------------------------------------------------------------
 SUM                            | 3.00 GiB | 512.00 MiB |  3.50 GiB |
 estimated                      | 9.00 GiB |   1.50 GiB | 10.50 GiB |
"[1..];
        assert_eq!(out, expected);
    }

    #[test]
    fn si_and_bytes_units_and_an_unknown_estimate() {
        let out = render(|w| table(w, &summary(Some(None)), Units::Si));
        let expected = &"
 user                           |      rx |        tx |   total |    avg. rate
-------------------------------------------------------------------------------
 alice                          | 3.22 GB | 536.87 MB | 3.76 GB | 34.80 kbit/s
 jürgen-the-long-named-operator | 1.54 kB |     100 B | 1.64 kB |      0 bit/s
 61002                          |     0 B |       0 B |     0 B |      0 bit/s
-------------------------------------------------------------------------------
 SUM                            | 3.22 GB | 536.87 MB | 3.76 GB |
 estimated                      |      -- |        -- |      -- |
"[1..];
        assert_eq!(out, expected);
        let out = render(|w| table(w, &summary(None), Units::Bytes));
        let expected = &"
 user                           |         rx |        tx |      total | avg. rate
----------------------------------------------------------------------------------
 alice                          | 3221225472 | 536870912 | 3758096384 |  4350 B/s
 jürgen-the-long-named-operator |       1536 |       100 |       1636 |     0 B/s
 61002                          |          0 |         0 |          0 |     0 B/s
----------------------------------------------------------------------------------
 SUM                            | 3221227008 | 536871012 | 3758098020 |
"[1..];
        assert_eq!(out, expected);
    }

    #[test]
    fn empty_data() {
        let report = Report {
            kind: Kind::Ip,
            view: View::Daily,
            rows: Vec::new(),
            sum: Counters::ZERO,
            estimated: None,
        };
        let out = render(|w| table(w, &report, Units::Iec));
        assert_eq!(
            out,
            " day |  rx |  tx | total | avg. rate\n-------------------------------------\n no traffic in this period\n"
        );
        let out = render(|w| json(w, &report));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["jsonversion"], 1);
        assert_eq!(v["rows"], serde_json::json!([]));
        assert_eq!(
            render(|w| csv(w, &report)),
            "label,key,start,end,rx_bytes,rx_packets,tx_bytes,tx_packets,total_bytes\nSUM,,,,0,0,0,0,0\n"
        );
    }

    #[test]
    fn every_view_names_its_first_column() {
        let one = |view, label: &str| Report {
            kind: Kind::Iface,
            view,
            rows: vec![Row {
                label: label.into(),
                key: None,
                start: 0,
                end: 300,
                seconds: 300,
                counters: c(300_000, 0),
            }],
            sum: c(300_000, 0),
            estimated: Some(None),
        };
        for (view, label, header) in [
            (View::Summary, "eth0", " interface |"),
            (View::Total, "eth0", " interface |"),
            (View::FiveMin, "2026-11-22 10:05", " 5 min            |"),
            (View::FifteenMin, "2026-11-22 10:15", " 15 min           |"),
            (View::Hourly, "2026-11-22 10:00", " hour             |"),
            (View::Daily, "2026-11-22", " day        |"),
            (View::Weekly, "2026-11-16", " week       |"),
            (View::Monthly, "2026-11", " month     |"),
            (View::Yearly, "2026", " year      |"),
        ] {
            let out = render(|w| table(w, &one(view, label), Units::Iec));
            let lines: Vec<&str> = out.lines().collect();
            assert!(lines[0].starts_with(header), "{view:?}: {out}");
            assert_eq!(
                lines.len(),
                6,
                "{view:?}: header, rule, row, rule, SUM, estimated: {out}"
            );
            assert!(
                lines[2].starts_with(&format!(" {label}")),
                "{view:?}: {out}"
            );
            assert!(
                lines[2].ends_with("| 292.97 KiB | 0 B | 292.97 KiB | 8.00 kbit/s"),
                "{view:?}: {out}"
            );
        }
    }

    #[test]
    fn json_carries_exact_numbers_and_its_version() {
        let out = render(|w| json(w, &summary(Some(None))));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["jsonversion"], JSON_VERSION);
        assert_eq!(v["view"], "summary");
        assert_eq!(v["kind"], "uid");
        assert_eq!(v["rows"][0]["label"], "alice");
        assert_eq!(v["rows"][0]["key"], "1000");
        assert_eq!(v["rows"][0]["rx_bytes"], 3u64 * 1024 * 1024 * 1024);
        assert_eq!(v["rows"][1]["label"], "jürgen-the-long-named-operator");
        assert_eq!(
            v["sum"]["total_bytes"],
            3u64 * 1024 * 1024 * 1024 + 512 * 1024 * 1024 + 1636
        );
        assert_eq!(v["estimated"], serde_json::Value::Null);
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut report = summary(None);
        report.rows[1].label = "a, \"b\"".into();
        let out = render(|w| csv(w, &report));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[1],
            "alice,1000,1762000000,1764600000,3221225472,3221225,536870912,536870,3758096384"
        );
        assert_eq!(
            lines[2],
            "\"a, \"\"b\"\"\",1001,1762000000,1764600000,1536,1,100,0,1636"
        );
        assert_eq!(
            lines[4],
            "SUM,,,,3221227008,3221226,536871012,536870,3758098020"
        );
    }
}
