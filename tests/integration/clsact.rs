//! On a kernel without TCX links (before Linux 6.6) the tc programs are
//! `clsact` filters; `TRAFMON_TC=clsact` chooses them on this one. They
//! count exactly on each framing, keep counting while no agent runs, take
//! the next agent's programs in place without losing or doubling a
//! packet (new map sizes and the unit's capabilities too), follow a device
//! made anew or renamed, leave devices no longer watched, and `trafmon
//! uninstall` deletes them.

use std::{thread::sleep, time::Duration};

use crate::harness::{Env, Paced, assert_paced, trafmon_bin};

const CLSACT: [(&str, &str); 1] = [("TRAFMON_TC", "clsact")];

/// The program ids of the trafmon filters on the veth's `hook`.
fn filter_programs(env: &Env, hook: &str) -> Vec<u32> {
    let shown = env.a.exec(&["tc", "filter", "show", "dev", &env.va, hook]);
    shown
        .lines()
        .filter(|l| l.contains(" tc_eth_"))
        .map(|l| {
            let id = l.split(" id ").nth(1).and_then(|r| r.split(' ').next());
            id.and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a program id in {l:?}"))
        })
        .collect()
}

/// Both hooks' filters: one each, with their program ids.
fn one_filter_per_hook(env: &Env) -> [u32; 2] {
    ["ingress", "egress"].map(|hook| match filter_programs(env, hook)[..] {
        [id] => id,
        ref other => panic!("one trafmon filter on {hook} of {}: {other:?}", env.va),
    })
}

/// Two restarts in the middle of paced traffic both ways, with counting
/// by the filters alone in between: the UID and the address equal their
/// iptables rules and the veth its statistics exactly; each start put its
/// own programs into the same two filters; the uninstall deleted them.
#[test]
fn clsact_filters_count_exactly_across_restarts_and_uninstall_deletes_them() {
    let env = Env::new("");
    let agent = env.agent_with(&CLSACT);
    let paced = Paced::start(&env, 61080, 9730);
    let first = one_filter_per_hook(&env);
    assert!(
        !env.pin_dir
            .join("links")
            .join(format!("tc_ingress@{}", env.va))
            .exists(),
        "filters, not TCX links"
    );
    sleep(Duration::from_millis(700));
    agent.stop();
    sleep(Duration::from_millis(500));
    let agent = env.agent_with(&CLSACT);
    let second = one_filter_per_hook(&env);
    sleep(Duration::from_millis(700));
    agent.stop();
    let agent = env.agent_with(&CLSACT);
    let third = one_filter_per_hook(&env);
    for (a, b) in [(first, second), (second, third)] {
        assert!(
            a[0] != b[0] && a[1] != b[1],
            "each start hands the filters its programs: {a:?} then {b:?}"
        );
    }
    let status = env
        .a
        .command(trafmon_bin())
        .envs(CLSACT)
        .arg("--config")
        .arg(&env.config)
        .arg("status")
        .output()
        .expect("status");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("attached:   tc programs as clsact filters, priority 49374 handle"),
        "{status}"
    );
    let uid = paced.finish();
    sleep(Duration::from_millis(300));
    agent.stop();
    assert_paced(&env, uid);
    // In the agent's namespace, where its filters are.
    let out = env
        .a
        .command(trafmon_bin())
        .arg("--config")
        .arg(&env.config)
        .arg("uninstall")
        .output()
        .expect("uninstall");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for hook in ["ingress", "egress"] {
        assert_eq!(filter_programs(&env, hook), Vec::<u32>::new(), "{hook}");
    }
}

/// A device removed and made again under the same name gets filters again
/// at once, as it gets TCX links.
#[test]
fn a_device_made_anew_gets_its_filters_again() {
    crate::iface::made_anew_is_attached_at_once_and_counted(&CLSACT);
}

/// A device renamed while it carries traffic keeps its filters, which the
/// agent finds again under the new name: nothing goes uncounted.
#[test]
fn a_device_renamed_while_up_keeps_its_filters() {
    crate::iface::renamed_while_up_keeps_being_counted(&CLSACT, |renamed| {
        (format!("link=tc_egress@{renamed}"), 1)
    });
}

/// An interface taken out of `interfaces` while no agent runs loses its
/// filters at the next start, as it loses its TCX links: filters are not
/// pinned, so the start looks for them on every interface it does not
/// watch.
#[test]
fn filters_of_an_interface_no_longer_watched_are_deleted_at_the_next_start() {
    let env = Env::new("");
    env.agent_with(&CLSACT).stop();
    one_filter_per_hook(&env);
    let config = std::fs::read_to_string(&env.config).expect("config");
    let watched = format!("interfaces = [\"{}\"]", env.va);
    assert!(config.contains(&watched), "{config}");
    std::fs::write(
        &env.config,
        config.replace(&watched, "interfaces = [\"lo\"]"),
    )
    .expect("config");
    let agent = env.agent_with(&CLSACT);
    for hook in ["ingress", "egress"] {
        assert_eq!(filter_programs(&env, hook), Vec::<u32>::new(), "{hook}");
    }
    assert!(agent.logged("interface no longer watched"));
    agent.stop();
}

/// New map sizes at a restart in the middle of traffic: the programs
/// loaded with the new maps go into the filters, so nothing is counted
/// into maps that nobody reads any more.
#[test]
fn new_map_sizes_reach_the_filters_and_lose_nothing() {
    crate::resize::grown_at_restart_loses_nothing(&CLSACT);
}

/// Filters on the loopback device (a clsact qdisc there too).
#[test]
fn filters_on_lo_count_exactly() {
    crate::loopback::loopback_counts_exactly(&CLSACT);
}

/// Filters on a tun device (no link-layer header).
#[test]
fn filters_on_a_tun_device_count_exactly() {
    crate::tun::tun_counts_exactly(&CLSACT);
}

/// A listed interface renamed to a name that is not listed loses its
/// filters while the agent runs: the device is no longer watched.
#[test]
fn a_device_renamed_out_of_the_list_loses_its_filters() {
    let env = Env::new("");
    let agent = env.agent_with(&CLSACT);
    one_filter_per_hook(&env);
    let renamed = format!("{}x", env.va);
    env.a
        .exec(&["ip", "link", "set", &env.va, "name", &renamed]);
    let filtered = |hook: &str| {
        let shown = env.a.exec(&["tc", "filter", "show", "dev", &renamed, hook]);
        shown.contains(" tc_eth_")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while filtered("ingress") || filtered("egress") {
        assert!(
            std::time::Instant::now() < deadline,
            "{renamed} kept its filters for 15 s"
        );
        sleep(Duration::from_millis(100));
    }
    assert!(agent.logged(&format!("interface={renamed}")), "and said so");
    agent.stop();
}

/// Filters need no more than the systemd unit's capabilities (`tc` is
/// `CAP_NET_ADMIN`), at a start, a restart and a reload.
#[test]
fn filters_work_with_only_the_units_capabilities() {
    crate::systemd::counts_with_only_the_units_capabilities(&CLSACT);
}
