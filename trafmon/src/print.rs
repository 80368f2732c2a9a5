//! The agent's periodic printout of live totals. Renderers write to
//! `impl Write` and take labels already resolved, so they are pure.

use std::io::{self, Write};

use trafmon_common::Counters;

use crate::store::Total;

/// One printed row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// `uid`, `ip`, `iface`, `group` or `overflow`.
    pub kind: &'static str,
    /// User name, address, interface name.
    pub label: String,
    /// Its counters.
    pub counters: Counters,
}

/// Rows for stored totals, in the store's order.
pub fn rows(totals: &[Total]) -> Vec<Row> {
    totals
        .iter()
        .map(|t| Row {
            kind: t.entity.kind.as_str(),
            label: t.label.clone(),
            counters: t.counters,
        })
        .collect()
}

/// Writes `rows` as a fixed-width table.
pub fn write_rows(w: &mut impl Write, rows: &[Row]) -> io::Result<()> {
    let width = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    writeln!(
        w,
        "{:<8} {:<width$} {:>15} {:>12} {:>15} {:>12}",
        "kind", "label", "rx bytes", "rx packets", "tx bytes", "tx packets"
    )?;
    for r in rows {
        let pad = width.saturating_sub(r.label.chars().count());
        writeln!(
            w,
            "{:<8} {}{} {:>15} {:>12} {:>15} {:>12}",
            r.kind,
            r.label,
            " ".repeat(pad),
            r.counters.rx_bytes,
            r.counters.rx_packets,
            r.counters.tx_bytes,
            r.counters.tx_packets
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_aligned() {
        let c = Counters {
            rx_bytes: 1500,
            rx_packets: 1,
            tx_bytes: 40,
            tx_packets: 1,
        };
        let rows = [
            Row {
                kind: "uid",
                label: "jürgen".into(),
                counters: c,
            },
            Row {
                kind: "ip",
                label: "2001:db8::1".into(),
                counters: Counters::ZERO,
            },
        ];
        let mut out = Vec::new();
        write_rows(&mut out, &rows).unwrap();
        let expected = "\
kind     label              rx bytes   rx packets        tx bytes   tx packets
uid      jürgen                 1500            1              40            1
ip       2001:db8::1               0            0               0            0
";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
