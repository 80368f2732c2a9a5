//! Turning drained kernel counters into per-entity deltas: UIDs with user
//! names, addresses, interfaces by name, overflow, and named groups summed
//! from their member addresses.

use std::collections::BTreeMap;

use trafmon_common::{Counters, KIND_IFACE, KIND_IP, KIND_UID};

use crate::{
    config::Cidr,
    counters::{Totals, ip_of},
    ifaces,
    store::{Delta, Entity, Kind},
    users,
};

/// Named groups of networks.
pub type Groups = BTreeMap<String, Vec<Cidr>>;

fn push(out: &mut Vec<Delta>, kind: Kind, key: String, label: String, counters: Counters) {
    if !counters.is_zero() {
        out.push(Delta {
            entity: Entity { kind, key },
            label,
            counters,
        });
    }
}

/// The deltas of `totals`; `iface_name` resolves an ifindex.
pub fn deltas(totals: &Totals, groups: &Groups) -> Vec<Delta> {
    deltas_with(totals, groups, users::label, ifaces::name_of)
}

/// [`deltas`] with the label lookups given (for tests).
pub fn deltas_with(
    totals: &Totals,
    groups: &Groups,
    uid_label: impl Fn(u32) -> String,
    iface_name: impl Fn(u32) -> Option<String>,
) -> Vec<Delta> {
    let mut out = Vec::new();
    for (uid, c) in &totals.uids {
        push(&mut out, Kind::Uid, uid.to_string(), uid_label(*uid), *c);
    }
    let mut group_sums: BTreeMap<&str, Counters> = BTreeMap::new();
    for (key, c) in &totals.ips {
        let ip = ip_of(key);
        push(&mut out, Kind::Ip, ip.to_string(), ip.to_string(), *c);
        for (name, nets) in groups {
            if nets.iter().any(|n| n.contains(&ip)) {
                group_sums.entry(name).or_default().add(c);
            }
        }
    }
    for (name, c) in group_sums {
        push(&mut out, Kind::Group, name.into(), name.into(), c);
    }
    for (ifindex, c) in &totals.ifaces {
        let name = iface_name(*ifindex).unwrap_or_else(|| format!("#{ifindex}"));
        push(&mut out, Kind::Iface, name.clone(), name, *c);
    }
    for (kind, name) in [(KIND_UID, "uid"), (KIND_IP, "ip"), (KIND_IFACE, "iface")] {
        push(
            &mut out,
            Kind::Overflow,
            name.into(),
            format!("({name} overflow)"),
            totals.overflow[kind as usize],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use trafmon_common::{FAMILY_IPV4, FAMILY_IPV6, IpKey};

    use super::*;

    fn c(rx: u64, tx: u64) -> Counters {
        Counters {
            rx_bytes: rx,
            rx_packets: 1,
            tx_bytes: tx,
            tx_packets: 1,
        }
    }

    fn v4(a: [u8; 4]) -> IpKey {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&a);
        IpKey {
            addr,
            family: FAMILY_IPV4,
        }
    }

    #[test]
    fn groups_sum_their_members_and_zeros_are_skipped() {
        let mut totals = Totals::default();
        totals.uids.insert(1000, c(5, 6));
        totals.uids.insert(1001, Counters::ZERO);
        totals.ips.insert(v4([192, 0, 2, 1]), c(100, 10));
        totals.ips.insert(v4([192, 0, 2, 2]), c(200, 20));
        totals.ips.insert(v4([198, 51, 100, 1]), c(1, 1));
        let v6: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
        totals.ips.insert(
            IpKey {
                addr: v6.octets(),
                family: FAMILY_IPV6,
            },
            c(300, 30),
        );
        totals.ifaces.insert(3, c(7, 7));
        totals.overflow[KIND_IP as usize] = c(9, 0);
        let toml = "[groups]\ncust = [\"192.0.2.0/30\", \"2001:db8::/64\"]\n";
        let groups = crate::config::Config::parse(toml, "t".as_ref())
            .unwrap()
            .groups;
        let d = deltas_with(
            &totals,
            &groups,
            |u| format!("user{u}"),
            |i| (i == 3).then(|| "eth0".into()),
        );
        let find = |kind, key: &str| {
            d.iter()
                .find(|x| x.entity.kind == kind && x.entity.key == key)
                .cloned()
        };
        assert_eq!(
            find(Kind::Group, "cust").unwrap().counters,
            Counters {
                rx_bytes: 600,
                rx_packets: 3,
                tx_bytes: 60,
                tx_packets: 3
            }
        );
        assert_eq!(find(Kind::Uid, "1000").unwrap().label, "user1000");
        assert!(find(Kind::Uid, "1001").is_none());
        assert_eq!(find(Kind::Iface, "eth0").unwrap().counters, c(7, 7));
        assert_eq!(find(Kind::Overflow, "ip").unwrap().counters.rx_bytes, 9);
        assert!(find(Kind::Overflow, "uid").is_none());
        assert_eq!(
            find(Kind::Ip, "2001:db8::7").unwrap().counters.rx_bytes,
            300
        );
    }
}
