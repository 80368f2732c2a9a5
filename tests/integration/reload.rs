//! SIGHUP (`systemctl reload`): the agent reads its configuration again
//! and serves on with it in the same process without losing or doubling a
//! packet; a configuration it cannot take is refused with one line, and
//! the agent goes on as it was.

use std::{fs, thread::sleep, time::Duration};

use trafmon::store::Kind;

use crate::harness::{
    As, Cgroup, Env, Paced, assert_link, assert_paced, count_of, get_in, resized_events,
};

const SMALL: &str = "[maps]\nuid_entries = 64\nip_entries = 64\niface_entries = 64\n";
const LARGE: &str = "[groups]\nlab = [\"192.0.2.0/24\"]\n[maps]\nuid_entries = 256\nip_entries = 512\niface_entries = 128\n[metrics]\nlisten = \"127.0.0.1:9978\"\n";

/// A reload in the middle of paced traffic both ways adds a group, larger
/// maps and another metrics address: the same process serves on (it
/// installs once more, resizes every hash map and serves /metrics at the
/// new address only), the group is counted from then on, and the
/// stored counts of the UID, the address and the interface still equal
/// iptables rules and the interface's own statistics exactly.
#[test]
fn a_reload_applies_the_new_configuration_and_loses_nothing() {
    let env = Env::new(SMALL);
    let agent = env.agent();
    let paced = Paced::start(&env, 61060, 9710);
    sleep(Duration::from_millis(1200));
    let config = fs::read_to_string(&env.config).expect("config");
    fs::write(&env.config, config.replace(SMALL, LARGE)).expect("config");
    agent.signal(libc::SIGHUP);
    assert!(
        agent.wait_logged(" counting ", 2, Duration::from_secs(15)),
        "the agent serves on after the reload"
    );
    assert!(agent.logged("reloading the configuration"));
    assert!(
        agent.logged("resized"),
        "the reload resized the maps while traffic flowed"
    );
    let uid = paced.finish();
    sleep(Duration::from_millis(1300));
    // The endpoint moved to its new address, with the new group.
    assert!(get_in(&env.a, "127.0.0.1:9977", "/metrics").is_err());
    let (status, body) = get_in(&env.a, "127.0.0.1:9978", "/metrics").expect("scrape");
    assert!(status.contains("200"), "{status}");
    assert!(
        body.contains("trafmon_group_bytes_total{group=\"lab\""),
        "{body}"
    );
    agent.stop();

    assert_eq!(resized_events(&env), 6, "one event per resized map");
    let ip = assert_paced(&env, uid);
    // The group exists from the reload on: some of the traffic, not all.
    let lab = count_of(&env.stored(), Kind::Group, "lab");
    assert!(
        lab.rx_packets > 0 && lab.rx_packets < ip.rx_packets,
        "the group counts what came after the reload: {lab:?} of {ip:?}"
    );
}

/// A reload with a wrong key, a moved state directory or another cgroup is
/// refused with one line that names the file and the setting: the agent
/// neither stops nor installs again, and counts on exactly.
#[test]
fn a_reload_it_cannot_take_leaves_the_agent_as_it_was() {
    let env = Env::new("");
    let mut agent = env.agent();
    env.up(&[]);
    let config = fs::read_to_string(&env.config).expect("config");
    let other = Cgroup::new(&format!("trafmon-test-reload-{}", std::process::id()));
    let cgroup = env.cgroup.path.display().to_string();
    let state = format!("{}\"", env.store_path().parent().expect("dir").display());
    let cases = [
        (
            format!("{config}intervall = 3\n"),
            "intervall: unknown field",
        ),
        (
            config.replace(&state, "/tmp/trafmon-elsewhere\""),
            "state_dir: changed from",
        ),
        (
            config.replace(&cgroup, &other.path.display().to_string()),
            "run `trafmon uninstall` before changing `cgroup`",
        ),
    ];
    for (n, (text, why)) in cases.iter().enumerate() {
        assert_ne!(text, &config, "case {n} changes the file");
        fs::write(&env.config, text).expect("config");
        agent.signal(libc::SIGHUP);
        assert!(
            agent.wait_logged("reload refused", n + 1, Duration::from_secs(5)),
            "case {n}: the reload is refused"
        );
        assert!(agent.logged(why), "case {n}: the refusal says {why:?}");
        assert!(agent.running(), "case {n}: the agent runs on");
    }
    let path = env.config.display().to_string();
    assert_eq!(
        agent.logged_times(&format!("{path}:")),
        3,
        "each refusal names the file"
    );
    assert!(!fs::exists("/tmp/trafmon-elsewhere").expect("stat"));
    fs::write(&env.config, &config).expect("config");
    let sent = env.send(As::root(&env.a), "192.0.2.100", "9712", 300_000);
    assert_eq!(sent, 300_000);
    sleep(Duration::from_millis(300));
    assert_eq!(
        agent.logged_times(" counting "),
        1,
        "nothing was installed again"
    );
    agent.stop();
    assert_link(&env, &env.va, &[]);
}
