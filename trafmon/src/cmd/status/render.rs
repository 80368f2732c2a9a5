//! `trafmon status` as text (one `label: value` line per fact, times in
//! the configured zone) or as JSON.

use std::io::{self, Write};

use jiff::tz::TimeZone;

use super::{LastFlush, LinkInfo, MapsState, Status, StoreState};

/// `ms` as a local time, as `report` shows times.
fn local(ms: i64, tz: &TimeZone) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(
        |_| format!("{ms} ms"),
        |t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        },
    )
}

fn flush_line(f: &LastFlush, tz: &TimeZone) -> String {
    let took = f
        .duration_us
        .map_or("--".into(), |us| format!("{:.1} ms", us as f64 / 1000.0));
    let cleared = if f.cleared {
        ""
    } else {
        " (side not yet cleared)"
    };
    format!(
        "last flush: #{} at {}, took {took}{cleared}",
        f.seq,
        local(f.at_ms, tz)
    )
}

/// Writes `s` as text.
pub fn text(w: &mut impl Write, s: &Status, tz: &TimeZone) -> io::Result<()> {
    let links = &s.links;
    match s.agent.pid {
        Some(pid) if s.agent.binary_replaced => writeln!(
            w,
            "agent:      running (pid {pid}) an older binary, replaced since it started: restart it to run the installed one"
        )?,
        Some(pid) => writeln!(w, "agent:      running (pid {pid})")?,
        None if !links.attached.is_empty() => writeln!(
            w,
            "agent:      not running; the programs below count on, and the next agent (or `trafmon uninstall`) stores it"
        )?,
        None => writeln!(w, "agent:      not running")?,
    }
    match &links.error {
        Some(e) => writeln!(w, "attached:   cannot read {}: {e}", links.dir.display())?,
        None if links.attached.is_empty() => {
            writeln!(w, "attached:   nothing under {}", links.dir.display())?;
        }
        None => {}
    }
    if let Some(c) = &s.clsact {
        writeln!(
            w,
            "attached:   tc programs as clsact filters, priority {} handle {:#x}, on the watched interfaces (not pinned, so not listed here: `tc filter show dev IF ingress` lists them)",
            c.priority, c.handle
        )?;
    }
    for link in &links.attached {
        let state = match &link.info {
            LinkInfo::Read {
                program_id,
                program: Some(prog),
                link_id,
            } => format!("program {program_id} ({prog}), link {link_id}"),
            LinkInfo::Read {
                program_id,
                program: None,
                link_id,
            } => format!("program {program_id}, link {link_id}"),
            LinkInfo::Unreadable { error } => format!("unreadable ({error})"),
        };
        writeln!(w, "attached:   {:<28} {state}", link.attachment)?;
    }
    match &s.maps {
        MapsState::NonePinned { dir } => writeln!(
            w,
            "maps:       none pinned under {} (the agent pins them when it starts)",
            dir.display()
        )?,
        MapsState::Pinned {
            active_side,
            maps,
            overflow,
        } => {
            writeln!(w, "active:     side {}", active_side.unwrap_or("?"))?;
            for m in maps {
                let pct = if m.max_entries == 0 {
                    0.0
                } else {
                    m.keys as f64 * 100.0 / f64::from(m.max_entries)
                };
                let pending = m.configured.map_or(String::new(), |size| {
                    format!(", {size} configured: the agent resizes it at its next start")
                });
                writeln!(
                    w,
                    "map:        {:<8} {:>8} / {:<8} keys ({pct:.1} % full{pending})",
                    m.name, m.keys, m.max_entries
                )?;
            }
            for o in overflow {
                writeln!(
                    w,
                    "overflow:   {kind} map full: {} packets, {} bytes not yet flushed (raise [maps] {kind}_entries and restart the agent)",
                    o.packets,
                    o.bytes,
                    kind = o.map
                )?;
            }
        }
        MapsState::Error { error } => writeln!(w, "maps:       {error}")?,
    }
    match &s.store {
        StoreState::Open {
            path,
            bytes,
            wal_bytes,
            last_flush,
            overflow,
            events,
        } => {
            writeln!(
                w,
                "store:      {} ({bytes} bytes, WAL {wal_bytes} bytes)",
                path.display()
            )?;
            match last_flush {
                Some(f) => writeln!(w, "{}", flush_line(f, tz))?,
                None => writeln!(w, "last flush: none yet")?,
            }
            for o in overflow {
                writeln!(
                    w,
                    "overflow:   stored for the {} map: {} bytes in {} packets",
                    o.map, o.bytes, o.packets
                )?;
            }
            for e in events {
                writeln!(
                    w,
                    "event:      {} {}: {}",
                    local(e.at_ms, tz),
                    e.kind,
                    e.detail
                )?;
            }
        }
        StoreState::Error { error } => writeln!(w, "store:      {error}")?,
    }
    w.flush()
}

/// Writes `s` as JSON, one document and a newline.
pub fn json(w: &mut impl Write, s: &Status) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, s)?;
    writeln!(w)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::status::{Agent, Clsact, Event, JSON_VERSION, Link, Links, MapFill, Overflow};

    /// 2026-11-23 20:00:00 UTC.
    const AT_MS: i64 = 1_795_464_000_000;

    fn running() -> Status {
        Status {
            jsonversion: JSON_VERSION,
            agent: Agent {
                running: true,
                pid: Some(42),
                binary_replaced: false,
            },
            links: Links {
                dir: "/sys/fs/bpf/trafmon/links".into(),
                error: None,
                attached: vec![
                    Link {
                        pin: "cgroup_ingress".into(),
                        attachment: "cgroup_skb ingress".into(),
                        info: LinkInfo::Read {
                            program_id: 7,
                            program: Some("cgroup_ingress".into()),
                            link_id: 9,
                        },
                    },
                    Link {
                        pin: "tc_egress@eth0".into(),
                        attachment: "tc egress on eth0".into(),
                        info: LinkInfo::Unreadable {
                            error: "Permission denied (os error 13)".into(),
                        },
                    },
                ],
            },
            clsact: Some(Clsact {
                priority: 7,
                handle: 0x1234,
            }),
            maps: MapsState::Pinned {
                active_side: Some("B"),
                maps: vec![MapFill {
                    name: "IP_A",
                    keys: 3,
                    max_entries: 65536,
                    configured: Some(131_072),
                }],
                overflow: vec![Overflow {
                    map: "ip".into(),
                    packets: 2,
                    bytes: 120,
                }],
            },
            store: StoreState::Open {
                path: "/var/lib/trafmon/trafmon.db".into(),
                bytes: 4096,
                wal_bytes: 0,
                last_flush: Some(LastFlush {
                    seq: 12,
                    at_ms: AT_MS,
                    duration_us: Some(7250),
                    cleared: false,
                }),
                overflow: vec![Overflow {
                    map: "uid".into(),
                    packets: 1,
                    bytes: 60,
                }],
                events: vec![Event {
                    at_ms: AT_MS,
                    kind: "recovered".into(),
                    detail: "flush 11 committed, side 0 cleared on start".into(),
                }],
            },
        }
    }

    #[test]
    fn text_has_a_line_per_fact_in_the_configured_zone() {
        let mut out = Vec::new();
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        text(&mut out, &running(), &tz).unwrap();
        let expected = "\
agent:      running (pid 42)
attached:   tc programs as clsact filters, priority 7 handle 0x1234, on the watched interfaces (not pinned, so not listed here: `tc filter show dev IF ingress` lists them)
attached:   cgroup_skb ingress           program 7 (cgroup_ingress), link 9
attached:   tc egress on eth0            unreadable (Permission denied (os error 13))
active:     side B
map:        IP_A            3 / 65536    keys (0.0 % full, 131072 configured: the agent resizes it at its next start)
overflow:   ip map full: 2 packets, 120 bytes not yet flushed (raise [maps] ip_entries and restart the agent)
store:      /var/lib/trafmon/trafmon.db (4096 bytes, WAL 0 bytes)
last flush: #12 at 2026-11-23 21:00:00 CET, took 7.2 ms (side not yet cleared)
overflow:   stored for the uid map: 60 bytes in 1 packets
event:      2026-11-23 21:00:00 CET recovered: flush 11 committed, side 0 cleared on start
";
        assert_eq!(String::from_utf8(out).unwrap(), expected);

        let mut replaced = running();
        replaced.agent.binary_replaced = true;
        let mut out = Vec::new();
        text(&mut out, &replaced, &tz).unwrap();
        assert!(String::from_utf8(out).unwrap().starts_with(
            "agent:      running (pid 42) an older binary, replaced since it started: restart it to run the installed one\n"
        ));
    }

    #[test]
    fn text_of_nothing_installed() {
        let status = Status {
            agent: Agent {
                running: false,
                pid: None,
                binary_replaced: false,
            },
            links: Links {
                dir: "/sys/fs/bpf/trafmon/links".into(),
                error: None,
                attached: Vec::new(),
            },
            clsact: None,
            maps: MapsState::NonePinned {
                dir: "/sys/fs/bpf/trafmon/maps".into(),
            },
            store: StoreState::Error {
                error: "/var/lib/trafmon/trafmon.db: no store yet".into(),
            },
            ..running()
        };
        let mut out = Vec::new();
        text(&mut out, &status, &TimeZone::UTC).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\
agent:      not running
attached:   nothing under /sys/fs/bpf/trafmon/links
maps:       none pinned under /sys/fs/bpf/trafmon/maps (the agent pins them when it starts)
store:      /var/lib/trafmon/trafmon.db: no store yet
"
        );
    }

    #[test]
    fn json_carries_the_version_states_and_utc_times() {
        let mut out = Vec::new();
        json(&mut out, &running()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["jsonversion"], JSON_VERSION);
        assert_eq!(v["agent"]["running"], true);
        assert_eq!(v["agent"]["pid"], 42);
        assert_eq!(v["agent"]["binary_replaced"], false);
        assert_eq!(v["links"]["attached"][0]["program"], "cgroup_ingress");
        assert_eq!(
            v["links"]["attached"][1]["error"],
            "Permission denied (os error 13)"
        );
        assert_eq!(v["clsact"]["handle"], 0x1234);
        assert_eq!(v["maps"]["state"], "pinned");
        assert_eq!(v["maps"]["active_side"], "B");
        assert_eq!(v["maps"]["maps"][0]["configured"], 131_072);
        assert_eq!(v["maps"]["overflow"][0]["bytes"], 120);
        assert_eq!(v["store"]["state"], "open");
        assert_eq!(v["store"]["last_flush"]["seq"], 12);
        assert_eq!(v["store"]["last_flush"]["at"], "2026-11-23T20:00:00Z");
        assert_eq!(v["store"]["last_flush"]["cleared"], false);
        assert_eq!(v["store"]["events"][0]["kind"], "recovered");
        assert_eq!(v["store"]["events"][0]["at"], "2026-11-23T20:00:00Z");
    }
}
