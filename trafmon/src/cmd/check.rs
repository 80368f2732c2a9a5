//! `trafmon check`: whether the agent would take a configuration, found
//! without starting it, as `nginx -t` or `promtool check config` do for
//! theirs. Each check is the one the agent makes when it starts, in its
//! order: the file, the store, bpffs and the maps pinned under `pin_dir`,
//! the cgroup and the links pinned to it, the metrics address; then the
//! interfaces and quotas, which the agent takes as they are. Nothing is
//! loaded, attached, mounted, created or written. Each check prints one
//! line; the first problem ends the command with the agent's own one-line
//! error (exit code 1). An interface that does not exist is not one: the
//! agent attaches it when it appears.

use std::{
    collections::BTreeMap,
    io::{self, Write},
    net::TcpListener,
    path::Path,
};

use anyhow::Context as _;

use crate::{
    config::{Config, Interfaces},
    ifaces, loader,
    mounts::{self, Bpffs, MountError},
    paths::{BPFFS_MOUNT, PinDir},
    pidfile,
    quota::spec::{Quota, Target},
    resize,
    store::{SCHEMA_VERSION, Store},
    units::Units,
    users,
};

/// Checks the configuration at `path` (`explicit`: named on the command
/// line, so it must exist) and what the agent would meet with it; prints a
/// line per check to `out`.
pub fn run(path: &Path, explicit: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let config = Config::load(path, explicit)?;
    let file = if explicit || path.exists() {
        format!("{}: valid", path.display())
    } else {
        format!("no {}: the embedded defaults", path.display())
    };
    line(out, "config", &file)?;
    let agent = pidfile::running(&config.state_dir);
    line(
        out,
        "agent",
        &match agent {
            Some(pid) => format!(
                "running (pid {pid}): a reload (SIGHUP) applies this file, a restart if it moves pin_dir, state_dir or store"
            ),
            None => "not running".to_owned(),
        },
    )?;
    line(out, "store", &store(&config.store_path(), agent.is_none())?)?;
    line(out, "pins", &pins(&config)?)?;
    let cgroup = loader::check_cgroup(&config)?;
    line(out, "cgroup", &format!("{} (cgroup v2)", cgroup.display()))?;
    line(out, "metrics", &metrics(&config, agent.is_some())?)?;
    line(out, "interfaces", &interfaces(&config.interfaces)?)?;
    for q in &config.quotas {
        line(out, "quota", &quota(q))?;
    }
    out.flush().context("cannot write to standard output")?;
    Ok(())
}

fn line(out: &mut impl Write, label: &str, text: &str) -> anyhow::Result<()> {
    writeln!(out, "{:<12}{text}", format!("{label}:")).context("cannot write to standard output")
}

/// A quota as the agent will enforce it, its user's UID resolved.
fn quota(q: &Quota) -> String {
    let mut target = q.target.to_string();
    if let Target::Uid(uid) = q.target {
        target = format!("{target} ({})", users::label(uid));
    }
    // The default name is the target.
    let name = if q.name == q.target.to_string() {
        String::new()
    } else {
        format!("{}: ", q.name)
    };
    format!(
        "{name}{target}, {} {} per {}, {}",
        Units::default().bytes(q.limit),
        q.direction.as_str(),
        q.period.as_str(),
        q.action.as_str()
    )
}

/// The store: what the agent will find or make there. A running agent
/// checked it whole when it opened it, and a reload keeps it open: then
/// only its kind and version are read, so that a check before every
/// `systemctl reload` does not read the whole file.
fn store(path: &Path, whole: bool) -> anyhow::Result<String> {
    let empty = match std::fs::metadata(path) {
        Ok(m) => m.len() == 0,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(format!(
                "{}: none yet; the agent creates it",
                path.display()
            ));
        }
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    if empty {
        return Ok(format!(
            "{}: empty; the agent makes it a store",
            path.display()
        ));
    }
    let version = Store::inspect(path, whole)?;
    if !whole {
        return Ok(format!(
            "{}: schema version {version}, open in the running agent",
            path.display()
        ));
    }
    Ok(if version < SCHEMA_VERSION {
        format!(
            "{}: schema version {version}, intact; the agent upgrades it to {SCHEMA_VERSION} when it starts",
            path.display()
        )
    } else {
        format!("{}: schema version {version}, intact", path.display())
    })
}

/// bpffs under the pin directory, and the maps pinned there.
fn pins(config: &Config) -> anyhow::Result<String> {
    let root = &config.pin_dir;
    let pins = PinDir::new(root);
    match mounts::bpffs_state(root)? {
        Bpffs::Ready => {}
        Bpffs::Mount => {
            return Ok(format!(
                "{}: nothing pinned yet; the agent mounts bpffs at {BPFFS_MOUNT}",
                root.display()
            ));
        }
        Bpffs::Elsewhere => {
            return Err(MountError::NotBpffs { path: root.clone() }.into());
        }
    }
    loader::check_layout(&pins)?;
    let pinned = std::fs::read_dir(pins.maps()).map_or(0, Iterator::count);
    if pinned == 0 {
        return Ok(format!("{}: nothing pinned yet", root.display()));
    }
    let mut text = format!(
        "{}: {pinned} maps pinned, of this version's layout",
        root.display()
    );
    if pins.map(trafmon_common::SELECTOR).exists() && resize::missing(&pins).is_empty() {
        // The sides' maps are resized alike: one phrase per size change.
        let mut changes: BTreeMap<(u32, u32), Vec<&str>> = BTreeMap::new();
        for m in resize::misfits(&pins, &config.maps)? {
            changes
                .entry((m.pinned, m.wanted))
                .or_default()
                .push(m.name);
        }
        for ((pinned, wanted), names) in changes {
            text.push_str(&format!(
                "; {} resized from {pinned} to {wanted} entries when the agent starts or reloads",
                names.join(" and ")
            ));
        }
    }
    Ok(text)
}

/// Whether the metrics address can be listened on.
fn metrics(config: &Config, agent: bool) -> anyhow::Result<String> {
    let m = &config.metrics;
    if !m.enabled {
        return Ok("off".to_owned());
    }
    if agent {
        // The running agent may hold it; only it can tell.
        return Ok(format!("{} (not tried while the agent runs)", m.listen));
    }
    TcpListener::bind(m.listen).map_err(|source| crate::metrics::BindError::Listen {
        addr: m.listen,
        source,
    })?;
    Ok(format!("{} (free)", m.listen))
}

/// The interfaces the tc programs will watch, as they are now.
fn interfaces(setting: &Interfaces) -> anyhow::Result<String> {
    let now = ifaces::list().context("cannot list the network interfaces")?;
    Ok(match setting {
        Interfaces::Auto => {
            let names: Vec<&str> = now
                .values()
                .filter(|i| !i.loopback)
                .map(|i| i.name.as_str())
                .collect();
            if names.is_empty() {
                "auto: none but lo now; each is watched when it appears".to_owned()
            } else {
                format!("auto: {} now", names.join(", "))
            }
        }
        Interfaces::List(names) if names.is_empty() => {
            "none: users are counted, addresses and devices are not".to_owned()
        }
        Interfaces::List(names) => names
            .iter()
            .map(|n| {
                if now.contains_key(n) {
                    n.clone()
                } else {
                    format!("{n} (absent now; watched when it appears)")
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::store::testing::tmp;

    fn set_version(path: &Path, version: i64) {
        rusqlite::Connection::open(path)
            .unwrap()
            .execute_batch(&format!("PRAGMA user_version = {version}"))
            .unwrap();
    }

    #[test]
    fn the_store_line_says_what_the_agent_will_find_or_why_it_stops() {
        let path = tmp("check");
        let shown = path.display();
        assert_eq!(
            store(&path, true).unwrap(),
            format!("{shown}: none yet; the agent creates it")
        );
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "").unwrap();
        assert_eq!(
            store(&path, true).unwrap(),
            format!("{shown}: empty; the agent makes it a store")
        );
        fs::remove_file(&path).unwrap();
        drop(Store::open(&path).unwrap());
        assert_eq!(
            store(&path, true).unwrap(),
            format!("{shown}: schema version {SCHEMA_VERSION}, intact")
        );
        assert_eq!(
            store(&path, false).unwrap(),
            format!("{shown}: schema version {SCHEMA_VERSION}, open in the running agent")
        );
        set_version(&path, 4);
        assert_eq!(
            store(&path, true).unwrap(),
            format!(
                "{shown}: schema version 4, intact; the agent upgrades it to {SCHEMA_VERSION} when it starts"
            )
        );
        set_version(&path, SCHEMA_VERSION + 1);
        let e = store(&path, true).unwrap_err().to_string();
        assert!(e.contains("but this trafmon knows version"), "{e}");

        let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 253) as u8).collect();
        fs::write(&path, &garbage).unwrap();
        let e = store(&path, true).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{shown}: the database is corrupt (file is not a database); it was left untouched: move it away to start a new one"
            )
        );
        assert_eq!(fs::read(&path).unwrap(), garbage);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn listed_interfaces_are_shown_present_or_absent() {
        let listed = Interfaces::List(vec!["lo".into(), "tm-no-such-if0".into()]);
        assert_eq!(
            interfaces(&listed).unwrap(),
            "lo, tm-no-such-if0 (absent now; watched when it appears)"
        );
        assert_eq!(
            interfaces(&Interfaces::List(Vec::new())).unwrap(),
            "none: users are counted, addresses and devices are not"
        );
        let auto = interfaces(&Interfaces::Auto).unwrap();
        assert!(auto.starts_with("auto: "), "{auto}");
        assert!(!auto.split([' ', ',']).any(|w| w == "lo"), "{auto}");
    }

    #[test]
    fn a_taken_metrics_address_is_refused_as_the_agent_refuses_it() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut config = Config::default();
        config.metrics.listen = taken.local_addr().unwrap();
        let e = metrics(&config, false).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "cannot listen for metrics on {} (metrics.listen)",
                config.metrics.listen
            )),
            "{e}"
        );
        assert!(
            metrics(&config, true)
                .unwrap()
                .ends_with("(not tried while the agent runs)"),
        );
        drop(taken);
        assert!(metrics(&config, false).unwrap().ends_with("(free)"));
        config.metrics.enabled = false;
        assert_eq!(metrics(&config, false).unwrap(), "off");
    }

    #[test]
    fn a_quota_shows_its_resolved_target_limit_and_action() {
        let text = "[groups]\nc = [\"192.0.2.0/28\"]\n\
            [[quota]]\nuser = \"root\"\nlimit = \"5GiB\"\ndirection = \"tx\"\n\
            action = \"throttle\"\nrate = \"1MiB/s\"\n\
            [[quota]]\nname = \"c-daily\"\ngroup = \"c\"\nlimit = 1000\nperiod = \"day\"\n";
        let config = Config::parse(text, Path::new("t.toml")).unwrap();
        let shown: Vec<String> = config.quotas.iter().map(quota).collect();
        assert_eq!(
            shown,
            [
                "user:0 (root), 5.00 GiB tx per month, throttle",
                "c-daily: group:c, 1000 B total per day, alert",
            ]
        );
    }
}
