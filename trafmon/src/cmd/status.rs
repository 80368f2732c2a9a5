//! `trafmon status`: what is attached where, map fill, overflow, the last
//! flush, the store, and whether an agent runs.

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Write as _},
};

use aya::programs::links::PinnedLink;

use super::open_store;
use crate::{
    config::Config,
    counters::Maps,
    paths::{Attachment, PinDir},
    pidfile,
};

/// `trafmon status` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {}

fn size_of(path: &std::path::Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Runs `trafmon status`.
pub fn run(_args: &Args, config: &Config) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    let pins = PinDir::new(&config.pin_dir);
    // A directory this user may not read is said so, not shown as empty.
    let (mut links, unreadable) = match fs::read_dir(pins.links()) {
        Ok(d) => (
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            None,
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), None),
        Err(e) => (Vec::new(), Some(e)),
    };
    links.sort();
    match pidfile::running(&config.state_dir) {
        Some(pid) => writeln!(out, "agent:      running (pid {pid})")?,
        None if !links.is_empty() => writeln!(
            out,
            "agent:      not running; the programs below count on, and the next agent (or `trafmon uninstall`) stores it"
        )?,
        None => writeln!(out, "agent:      not running")?,
    }
    match unreadable {
        Some(e) => writeln!(
            out,
            "attached:   cannot read {}: {e}",
            pins.links().display()
        )?,
        None if links.is_empty() => {
            writeln!(out, "attached:   nothing under {}", pins.links().display())?;
        }
        None => {}
    }
    // Filters cannot be pinned, so they are not among the links.
    let installed = pins.map(trafmon_common::SELECTOR).exists();
    if installed && let Ok(crate::clsact::Mode::Clsact) = crate::clsact::mode() {
        let filter = crate::clsact::Filter::of(&config.pin_dir);
        writeln!(
            out,
            "attached:   tc programs as clsact filters, priority {} handle {:#x}, on the watched interfaces (not pinned, so not listed here: `tc filter show dev IF ingress` lists them)",
            filter.priority,
            u32::from(filter.handle)
        )?;
    }
    // Program names by id, so that each link shows which program it runs
    // (`tcd_*`: the device only, see `address_interfaces`).
    let programs: BTreeMap<u32, String> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| Some((p.id(), p.name_as_str()?.to_owned())))
        .collect();
    for name in links {
        let what = match Attachment::from_pin_name(&name) {
            Some(Attachment::CgroupIngress) => "cgroup_skb ingress".to_owned(),
            Some(Attachment::CgroupEgress) => "cgroup_skb egress".to_owned(),
            Some(Attachment::TcIngress(i)) => format!("tc ingress on {i}"),
            Some(Attachment::TcEgress(i)) => format!("tc egress on {i}"),
            None => format!("unknown link {name}"),
        };
        let state = match PinnedLink::from_pin(pins.links().join(&name)) {
            Ok(link) => match aya::programs::links::FdLink::from(link).info() {
                Ok(info) => {
                    let id = info.program_id();
                    match programs.get(&id) {
                        Some(prog) => format!("program {id} ({prog}), link {}", info.id()),
                        None => format!("program {id}, link {}", info.id()),
                    }
                }
                Err(e) => format!("unreadable ({e})"),
            },
            Err(e) => format!("unreadable ({e})"),
        };
        writeln!(out, "attached:   {what:<28} {state}")?;
    }
    // Not installed (never, or uninstalled): no map to open is no error.
    // (A directory this user may not read is not taken for an empty one.)
    let none_pinned = match fs::read_dir(pins.maps()) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    };
    match Maps::open(&pins) {
        Err(_) if none_pinned => writeln!(
            out,
            "maps:       none pinned under {} (the agent pins them when it starts)",
            pins.maps().display()
        )?,
        Ok(maps) => {
            let side = maps
                .active_side()
                .map(|s| if s == 0 { "A" } else { "B" })
                .unwrap_or("?");
            writeln!(out, "active:     side {side}")?;
            for (name, keys, max) in maps.fill()? {
                let pct = if max == 0 {
                    0.0
                } else {
                    keys as f64 * 100.0 / f64::from(max)
                };
                let pending = match crate::resize::configured(&config.maps, name) {
                    Some(size) if size != max => {
                        format!(", {size} configured: the agent resizes it at its next start")
                    }
                    _ => String::new(),
                };
                writeln!(
                    out,
                    "map:        {name:<8} {keys:>8} / {max:<8} keys ({pct:.1} % full{pending})"
                )?;
            }
            let live = maps.read_all()?;
            for (kind, c) in ["uid", "ip", "iface"].iter().zip(live.overflow) {
                if !c.is_zero() {
                    writeln!(
                        out,
                        "overflow:   {kind} map full: {} packets, {} bytes not yet flushed (raise [maps] {kind}_entries and restart the agent)",
                        c.rx_packets + c.tx_packets,
                        c.rx_bytes + c.tx_bytes
                    )?;
                }
            }
        }
        Err(e) => writeln!(out, "maps:       {}", crate::error_chain(&e))?,
    }
    // Times in the configured zone, as `report` shows them.
    let local = |ms: i64| -> Result<String, jiff::Error> {
        Ok(jiff::Timestamp::from_millisecond(ms)?
            .to_zoned(config.timezone.tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string())
    };
    let db = config.store_path();
    match open_store(&db) {
        Ok(store) => {
            let wal = db.with_extension("db-wal");
            writeln!(
                out,
                "store:      {} ({} bytes, WAL {} bytes)",
                db.display(),
                size_of(&db),
                size_of(&wal)
            )?;
            match store.last_flush()? {
                Some(f) => {
                    let at = local(f.at_ms)?;
                    let took = f
                        .duration_us
                        .map_or("--".into(), |us| format!("{:.1} ms", us as f64 / 1000.0));
                    let cleared = if f.cleared {
                        ""
                    } else {
                        " (side not yet cleared)"
                    };
                    writeln!(out, "last flush: #{} at {at}, took {took}{cleared}", f.seq)?;
                }
                None => writeln!(out, "last flush: none yet")?,
            }
            for t in store
                .totals()?
                .iter()
                .filter(|t| t.entity.kind == crate::store::Kind::Overflow)
            {
                writeln!(
                    out,
                    "overflow:   stored for the {} map: {} bytes in {} packets",
                    t.entity.key,
                    t.counters.rx_bytes + t.counters.tx_bytes,
                    t.counters.rx_packets + t.counters.tx_packets
                )?;
            }
            for (at_ms, kind, detail) in store.events()?.iter().rev().take(5) {
                let at = local(*at_ms)?;
                writeln!(out, "event:      {at} {kind}: {detail}")?;
            }
        }
        Err(e) => writeln!(out, "store:      {}", crate::error_chain(&e))?,
    }
    out.flush()?;
    Ok(())
}
