//! The ground truths (iptables rules, interface statistics) and the
//! assertions that compare trafmon's counts with them.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::TcpStream,
    os::fd::AsRawFd as _,
    time::Duration,
};

use trafmon::store::{Kind, Store};
use trafmon_common::Counters;

use super::*;

/// Counters of the iptables (or ip6tables) rules in `ns` whose comment is
/// `comment`: (packets, bytes).
pub fn rule_counters(ns: &Netns, v6: bool, comment: &str) -> (u64, u64) {
    let save = ns.exec(&[
        if v6 {
            "ip6tables-save"
        } else {
            "iptables-save"
        },
        "-c",
    ]);
    let mut found = None;
    for line in save.lines() {
        if line.contains(&format!("--comment {comment} "))
            || line.ends_with(&format!("--comment {comment}"))
        {
            let counters = line
                .strip_prefix('[')
                .and_then(|l| l.split(']').next())
                .unwrap_or_else(|| panic!("no counters in {line:?}"));
            let (p, b) = counters.split_once(':').expect("pkts:bytes");
            found = Some((p.parse().expect("packets"), b.parse().expect("bytes")));
        }
    }
    found.unwrap_or_else(|| panic!("no rule with comment {comment} in {ns}", ns = ns.name))
}

/// Adds an accounting rule (no target) with a comment to find it by.
pub fn add_rule(ns: &Netns, v6: bool, chain: &str, spec: &[&str], comment: &str) {
    let mut args = vec![if v6 { "ip6tables" } else { "iptables" }, "-w", "-A", chain];
    args.extend_from_slice(spec);
    args.extend_from_slice(&["-m", "comment", "--comment", comment]);
    ns.exec(&args);
}

/// Waits for every sender, then for every receiver.
pub fn finish_all(
    senders: impl IntoIterator<Item = Traffic>,
    receivers: impl IntoIterator<Item = Traffic>,
) {
    for s in senders {
        s.finish();
    }
    for r in receivers {
        r.finish();
    }
}

/// The counts of one entity (zero when absent).
pub fn count_of(counts: &Counts, kind: Kind, key: &str) -> Counters {
    counts
        .get(&(kind, key.to_owned()))
        .copied()
        .unwrap_or_default()
}

/// Asserts that the counts of address `addr` equal, exactly, the INPUT
/// `-d` rule `rule_in` (rx) and the OUTPUT `-s` rule `rule_out` (tx) in
/// `ns`; returns the counts.
pub fn assert_address(
    counts: &Counts,
    ns: &Netns,
    addr: &str,
    v6: bool,
    (rule_in, rule_out): (&str, &str),
) -> Counters {
    let ours = count_of(counts, Kind::Ip, addr);
    let (pi, bi) = rule_counters(ns, v6, rule_in);
    let (po, bo) = rule_counters(ns, v6, rule_out);
    assert_eq!(
        [
            ours.rx_packets,
            ours.rx_bytes,
            ours.tx_packets,
            ours.tx_bytes
        ],
        [pi, bi, po, bo],
        "{addr}: trafmon [rx p, rx B, tx p, tx B] vs INPUT -d / OUTPUT -s rules in {}",
        ns.name
    );
    ours
}

/// The addresses counted, in order.
pub fn addresses(counts: &Counts) -> Vec<&str> {
    counts
        .keys()
        .filter(|(kind, _)| *kind == Kind::Ip)
        .map(|(_, key)| key.as_str())
        .collect()
}

/// Asserts that trafmon's counts of the device called `dev` in `a` now
/// (summed with those under its earlier names `was`) equal its own
/// statistics exactly, and returns them. Read with the agent stopped, as
/// trafmon, the device, trafmon again until nothing moved in between: the
/// kernel may send a packet of its own on the device at any moment (an
/// IPv6 multicast listener report), which trafmon counts too.
pub fn assert_link(env: &Env, dev: &str, was: &[&str]) -> [u64; 4] {
    for _ in 0..50 {
        let before = env.counts_on("", dev);
        let device = Env::link_stats(&env.a, dev);
        let after = env.counts_on("", dev);
        if before != after {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let mut ours = count_of(&after, Kind::Iface, dev);
        for name in was {
            ours.add(&count_of(&after, Kind::Iface, name));
        }
        assert_eq!(
            [
                ours.rx_bytes,
                ours.rx_packets,
                ours.tx_bytes,
                ours.tx_packets
            ],
            device,
            "trafmon [rx B, rx p, tx B, tx p] of {dev} (was {was:?}) vs its statistics in {}; trafmon's interfaces: {:?}",
            env.a.name,
            after
                .iter()
                .filter(|((kind, _), _)| *kind == Kind::Iface)
                .collect::<Vec<_>>()
        );
        return device;
    }
    panic!("{dev} never went quiet");
}

/// Adds OUTPUT `--uid-owner` rules for `uid` to iptables and, with `v6`,
/// to ip6tables.
pub fn add_owner_rules(ns: &Netns, uid: u32, v6: bool) {
    let u = uid.to_string();
    for family in [false, true].into_iter().take(if v6 { 2 } else { 1 }) {
        add_rule(
            ns,
            family,
            "OUTPUT",
            &["-m", "owner", "--uid-owner", &u],
            &format!("tm-uid-{uid}"),
        );
    }
}

/// What the owner rules of `uid` counted: (packets, bytes), over IPv4 and,
/// with `v6`, IPv6.
pub fn owner_counters(ns: &Netns, uid: u32, v6: bool) -> (u64, u64) {
    let (mut packets, mut bytes) = rule_counters(ns, false, &format!("tm-uid-{uid}"));
    if v6 {
        let (p, b) = rule_counters(ns, true, &format!("tm-uid-{uid}"));
        packets += p;
        bytes += b;
    }
    (packets, bytes)
}

/// Asserts that the tx of `uid` equals its owner rules exactly; returns
/// its counts.
pub fn assert_uid_tx(counts: &Counts, ns: &Netns, uid: u32, v6: bool) -> Counters {
    let ours = count_of(counts, Kind::Uid, &uid.to_string());
    assert_eq!(
        (ours.tx_packets, ours.tx_bytes),
        owner_counters(ns, uid, v6),
        "uid {uid}: trafmon tx (packets, bytes) vs --uid-owner rules"
    );
    ours
}

/// 4 s of paced UDP both ways over the veth: 1500 datagrams of 700 bytes
/// from UID `uid` in `a` to `b`, and 1500 of 500 bytes from `b` to
/// 192.0.2.1 in `a`, with the iptables rules that count them. For tests
/// that change the agent while packets flow.
pub struct Paced {
    uid: u32,
    senders: Vec<Traffic>,
    receivers: Vec<Traffic>,
}

impl Paced {
    /// Brings the veth up and starts the traffic, on ports `port` and
    /// `port + 1`.
    pub fn start(env: &Env, uid: u32, port: u16) -> Self {
        env.up(&[]);
        add_owner_rules(&env.a, uid, false);
        add_rule(&env.a, false, "INPUT", &["-d", "192.0.2.1"], "tm-in");
        add_rule(&env.a, false, "OUTPUT", &["-s", "192.0.2.1"], "tm-out");
        let (to_b, to_a) = (port.to_string(), (port + 1).to_string());
        let receivers = vec![
            env.traffic(
                As::root(&env.b),
                &["udp-recv", "192.0.2.100", &to_b, "1500"],
            ),
            env.traffic(As::root(&env.a), &["udp-recv", "192.0.2.1", &to_a, "1500"]),
        ];
        for r in &receivers {
            r.wait_listening();
        }
        let senders = vec![
            env.traffic(
                As::user(&env.a, uid),
                &["udp-send", "192.0.2.100", &to_b, "700", "1500", "4"],
            ),
            env.traffic(
                As::root(&env.b),
                &["udp-send", "192.0.2.1", &to_a, "500", "1500", "4"],
            ),
        ];
        Self {
            uid,
            senders,
            receivers,
        }
    }

    /// Waits for the traffic to end; returns the UID.
    pub fn finish(self) -> u32 {
        finish_all(self.senders, self.receivers);
        self.uid
    }
}

/// Asserts that the stored counts of [`Paced`] traffic of `uid` are exact
/// and complete: the UID, 192.0.2.1 and the veth against iptables rules
/// and the device's statistics (read with the agent stopped). Returns the
/// address's counts.
pub fn assert_paced(env: &Env, uid: u32) -> Counters {
    let counts = env.stored();
    let ip = assert_paced_flows(&counts, env, uid);
    assert_link(env, &env.va, &[]);
    ip
}

/// [`assert_paced`] without the interface: the UID and 192.0.2.1 in
/// `counts`. Returns the address's counts.
pub fn assert_paced_flows(counts: &Counts, env: &Env, uid: u32) -> Counters {
    let ours = assert_uid_tx(counts, &env.a, uid, false);
    assert_eq!(
        ours.tx_packets, 1500,
        "every datagram of the UID was counted"
    );
    let ip = assert_address(counts, &env.a, "192.0.2.1", false, ("tm-in", "tm-out"));
    assert_eq!(
        ip.rx_packets, 1500,
        "every datagram to the address was counted"
    );
    ip
}

/// How many `maps-resized` events the env's store holds.
pub fn resized_events(env: &Env) -> usize {
    let store = Store::open_read_only(&env.store_path()).expect("store");
    store
        .events()
        .expect("events")
        .into_iter()
        .filter(|(_, kind, _)| kind == "maps-resized")
        .count()
}

/// GET `path` from `addr` inside `ns` (a thread joins the namespace, so
/// the test itself stays where it is). Returns (status line, body).
pub fn get_in(ns: &Netns, addr: &str, path: &str) -> std::io::Result<(String, String)> {
    let netns = fs::File::open(ns.path())?;
    let (addr, path) = (addr.to_owned(), path.to_owned());
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with a valid namespace fd.
        if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut s = TcpStream::connect(&addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\n\r\n"
        )?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        Ok((
            head.lines().next().unwrap_or("").to_owned(),
            body.to_owned(),
        ))
    })
    .join()
    .expect("the request thread")
}
