//! Throughput over a veth pair between two namespaces: nothing attached,
//! trafmon attached, iptables with one accounting rule per IP for 1 000
//! IPs (the classic recipe), and nftables with one set of 1 000 addresses
//! with a counter per element. Each variant has its own pair; the
//! variants take turns within every round.

use std::{collections::BTreeMap, net::Ipv4Addr, path::Path, time::Duration};

use anyhow::{Context as _, bail};

use crate::{
    hooks::EmptyHooks,
    profile::{Profile, Recorder, Scope},
    results::{Throughput, median},
    traffic::{self, Outlast},
    world::{ADDR_A, Cgroup, Pair, sh},
};

/// The variant with empty programs where trafmon's are: what the hooks
/// cost by themselves.
pub const EMPTY_HOOKS: &str = "empty programs on the same 4 hooks (no counting)";

/// Accounting entries per variant: one is the sender's own address.
pub const RULES: u32 = 1000;

/// The `i`-th address of the accounting rules other than the sender's:
/// 100.64.0.0/10 (shared address space; never sent to, only matched).
fn other(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i)
}

fn addresses() -> Vec<String> {
    let mut v: Vec<String> = (1..RULES).map(|i| other(i).to_string()).collect();
    // Last, as a customer added after the others; accounting rules have no
    // target, so every packet walks the whole chain anyway.
    v.push(ADDR_A.to_owned());
    v
}

/// Loads per-IP accounting rules (OUTPUT `-s ip`, INPUT `-d ip`) into
/// `ns` with `restore` (`iptables-restore` or `iptables-legacy-restore`).
fn iptables(pair: &Pair, restore: &str) -> anyhow::Result<()> {
    let mut rules = String::from("*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for ip in addresses() {
        rules.push_str(&format!("-A OUTPUT -s {ip}\n-A INPUT -d {ip}\n"));
    }
    rules.push_str("COMMIT\n");
    let path = std::env::temp_dir().join(format!("trafbench-{}.rules", pair.a.name));
    std::fs::write(&path, rules)?;
    let result = pair.a.exec(&[restore, &path.to_string_lossy()]);
    let _ = std::fs::remove_file(&path);
    result.map(drop)
}

/// Loads an nftables table whose set of addresses counts per element.
fn nftables(pair: &Pair) -> anyhow::Result<()> {
    let elements = addresses().join(", ");
    let ruleset = format!(
        "table ip trafbench {{\n  set hosts {{\n    type ipv4_addr\n    counter\n    elements = {{ {elements} }}\n  }}\n  \
         chain out {{\n    type filter hook output priority 0; policy accept;\n    ip saddr @hosts\n  }}\n  \
         chain in {{\n    type filter hook input priority 0; policy accept;\n    ip daddr @hosts\n  }}\n}}\n"
    );
    let path = std::env::temp_dir().join(format!("trafbench-{}.nft", pair.a.name));
    std::fs::write(&path, ruleset)?;
    let result = pair.a.exec(&["nft", "-f", &path.to_string_lossy()]);
    let _ = std::fs::remove_file(&path);
    result.map(drop)
}

/// One way of (not) counting, with its own pair.
#[derive(Clone)]
pub struct Variant<'a> {
    pub name: String,
    pub pair: &'a Pair,
    pub cgroup: Option<&'a Cgroup>,
}

/// A pair and a cgroup with empty programs on trafmon's four hooks.
pub struct Hooked {
    // Detached first: the cgroup and pair are removed after.
    _hooks: EmptyHooks,
    pub cgroup: Cgroup,
    pub pair: Pair,
}

impl Hooked {
    fn new() -> anyhow::Result<Self> {
        let pair = Pair::new("e")?;
        let cgroup = Cgroup::new(&format!("trafbench-{}", pair.va))?;
        let netns = Path::new("/run/netns").join(&pair.a.name);
        let hooks = EmptyHooks::attach(&cgroup.path, &netns, &pair.va)?;
        Ok(Self {
            _hooks: hooks,
            cgroup,
            pair,
        })
    }
}

/// Pairs for the variants other than trafmon's; they live as long as the
/// run.
pub struct Others {
    pub bare: Pair,
    /// Empty programs on trafmon's hooks, when they could be attached.
    pub hooked: Option<Hooked>,
    pub rules: Vec<(String, Pair)>,
    pub notes: Vec<String>,
}

impl Others {
    pub fn new() -> anyhow::Result<Self> {
        let bare = Pair::new("n")?;
        let mut rules = Vec::new();
        let mut notes = Vec::new();
        let hooked = Hooked::new()
            .inspect_err(|e| notes.push(format!("empty programs were not measured: {e:#}")))
            .ok();
        let version = sh(&["iptables", "-V"]).unwrap_or_default();
        let backend = if version.contains("nf_tables") {
            "nf_tables"
        } else {
            "legacy"
        };
        let ipt = Pair::new("i")?;
        iptables(&ipt, "iptables-restore").context("cannot load the iptables rules")?;
        rules.push((
            format!("iptables, {RULES} per-IP rules ({backend} backend)"),
            ipt,
        ));
        if backend == "nf_tables" {
            let legacy = Pair::new("l")?;
            match iptables(&legacy, "iptables-legacy-restore") {
                Ok(()) => rules.push((format!("iptables-legacy, {RULES} per-IP rules"), legacy)),
                Err(e) => notes.push(format!("iptables-legacy was not measured: {e:#}")),
            }
        }
        let nft = Pair::new("f")?;
        match nftables(&nft) {
            Ok(()) => rules.push((
                format!("nftables, one set of {RULES} addresses with counters"),
                nft,
            )),
            Err(e) => notes.push(format!("nftables was not measured: {e:#}")),
        }
        Ok(Self {
            bare,
            hooked,
            rules,
            notes,
        })
    }
}

/// Measures every variant `rounds` times, taking turns, with `rate`
/// (datagrams/s or bits/s) over `window`. The first variant is the bare
/// one that the ratios refer to.
pub fn compare(
    trafgen: &Path,
    variants: &[Variant<'_>],
    traffic_name: &str,
    unit: &str,
    tcp: bool,
    rounds: usize,
    window: Duration,
) -> anyhow::Result<Vec<Throughput>> {
    let mut samples: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        for i in 0..variants.len() {
            let k = (i + round) % variants.len();
            let v = &variants[k];
            let r = if tcp {
                traffic::tcp_rate(trafgen, v.pair, v.cgroup, window)?
            } else {
                traffic::udp_rate(trafgen, v.pair, v.cgroup, window, Outlast::Senders)?
            };
            eprintln!("trafbench: {traffic_name}, {}: {r:.0} {unit}", v.name);
            samples.entry(k).or_default().push(r);
        }
    }
    let bare = median(&samples[&0]);
    Ok(samples
        .into_iter()
        .map(|(k, s)| {
            let m = median(&s);
            Throughput {
                traffic: traffic_name.to_owned(),
                variant: variants[k].name.clone(),
                unit: unit.to_owned(),
                median: m,
                ratio_to_bare: m / bare,
                samples: s,
            }
        })
        .collect())
}

/// A profile of small UDP datagrams through `variant`, as [`compare`]
/// sends them.
pub fn profile_udp(
    trafgen: &Path,
    variant: &Variant<'_>,
    window: Duration,
) -> anyhow::Result<Profile> {
    let mut perf = Recorder::start(Scope::System, 1999)?;
    let rate = perf.during(|| {
        traffic::udp_rate(
            trafgen,
            variant.pair,
            variant.cgroup,
            window,
            Outlast::Sinks,
        )
    })?;
    if rate <= 0.0 {
        bail!("no UDP datagram arrived through {}", variant.name);
    }
    perf.finish(
        &format!(
            "UDP throughput: 60-byte frames through {}, bpf_stats off",
            variant.name
        ),
        Some("trafgen"),
    )
}
