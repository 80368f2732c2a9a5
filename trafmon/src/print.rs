//! The agent's periodic printout of live totals. Renderers write to
//! `impl Write` and take labels already resolved, so they are pure.

use std::{
    io::{self, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use trafmon_common::{Counters, FAMILY_IPV4, IpKey, KIND_IFACE, KIND_IP, KIND_UID};

use crate::{counters::Totals, ifaces, users};

/// One printed row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// `uid`, `ip`, `iface` or `overflow`.
    pub kind: &'static str,
    /// User name, address, interface name.
    pub label: String,
    /// Its counters.
    pub counters: Counters,
}

/// The address of an [`IpKey`].
pub fn ip_of(key: &IpKey) -> IpAddr {
    if key.family == FAMILY_IPV4 {
        IpAddr::V4(Ipv4Addr::new(key.addr[0], key.addr[1], key.addr[2], key.addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(key.addr))
    }
}

/// Rows for `totals`, labels resolved from the password database and the
/// interfaces of this namespace.
pub fn rows(totals: &Totals) -> Vec<Row> {
    let mut rows = Vec::new();
    for (uid, c) in &totals.uids {
        rows.push(Row {
            kind: "uid",
            label: users::label(*uid),
            counters: *c,
        });
    }
    for (ip, c) in &totals.ips {
        rows.push(Row {
            kind: "ip",
            label: ip_of(ip).to_string(),
            counters: *c,
        });
    }
    for (ifindex, c) in &totals.ifaces {
        rows.push(Row {
            kind: "iface",
            label: ifaces::name_of(*ifindex).unwrap_or_else(|| format!("#{ifindex}")),
            counters: *c,
        });
    }
    for (kind, name) in [(KIND_UID, "uid"), (KIND_IP, "ip"), (KIND_IFACE, "iface")] {
        let c = totals.overflow[kind as usize];
        if !c.is_zero() {
            rows.push(Row {
                kind: "overflow",
                label: format!("({name} map full)"),
                counters: c,
            });
        }
    }
    rows
}

/// Writes `rows` as a fixed-width table.
pub fn write_rows(w: &mut impl Write, rows: &[Row]) -> io::Result<()> {
    let width = rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(0).max(5);
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

    #[test]
    fn ip_keys_render_as_addresses() {
        let mut k = IpKey {
            addr: [0; 16],
            family: FAMILY_IPV4,
        };
        k.addr[..4].copy_from_slice(&[192, 0, 2, 7]);
        assert_eq!(ip_of(&k).to_string(), "192.0.2.7");
        let v6 = IpKey {
            addr: "2001:db8::5".parse::<Ipv6Addr>().unwrap().octets(),
            family: trafmon_common::FAMILY_IPV6,
        };
        assert_eq!(ip_of(&v6).to_string(), "2001:db8::5");
    }
}
