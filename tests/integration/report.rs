//! `trafmon report` end to end: three UIDs send known traffic; the JSON
//! per-user totals equal iptables, and the table shows the same numbers.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use trafmon::store::Kind;

use crate::harness::{As, Env, add_owner_rules, finish_all, owner_counters, sh, trafmon_bin};

const UIDS: [u32; 3] = [61201, 61202, 61203];

/// The row of `uid` in a `report --json` answer.
fn uid_row(json: &serde_json::Value, uid: u32) -> &serde_json::Value {
    json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["key"].as_str() == Some(uid.to_string().as_str()))
        .unwrap_or_else(|| panic!("uid {uid} in the report: {json}"))
}

#[test]
fn report_json_and_table_equal_iptables() {
    let env = Env::new("");
    let agent = env.agent();
    env.up(&[]);
    for uid in UIDS {
        add_owner_rules(&env.a, uid, false);
    }
    let root_b = As::root(&env.b);
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for (i, uid) in UIDS.into_iter().enumerate() {
        let port = (9700 + i).to_string();
        let r = env.traffic(root_b, &["tcp-recv", "192.0.2.100", &port, "1"]);
        r.wait_listening();
        receivers.push(r);
        let bytes = (100_000 * (i as u64 + 1)).to_string();
        senders.push(env.traffic(
            As::user(&env.a, uid),
            &["tcp-send", "192.0.2.100", &port, &bytes],
        ));
    }
    finish_all(senders, receivers);
    agent.stop();

    let out = env.trafmon(&["report", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["jsonversion"], 1);
    let table = env.trafmon(&["report", "--units", "bytes"]);
    assert!(table.status.success());
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    for uid in UIDS {
        let (packets, bytes) = owner_counters(&env.a, uid, false);
        let row = uid_row(&json, uid);
        assert_eq!(
            (row["tx_packets"].as_u64(), row["tx_bytes"].as_u64()),
            (Some(packets), Some(bytes)),
            "uid {uid}"
        );
        let line = table
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{uid} ")))
            .unwrap_or_else(|| panic!("uid {uid} in the table:\n{table}"));
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(
            cells[2],
            bytes.to_string(),
            "the table's tx for {uid}: {line}"
        );
        assert_eq!(
            cells[1],
            row["rx_bytes"].to_string(),
            "the table's rx for {uid}: {line}"
        );
    }
    assert!(table.contains("\n SUM "), "{table}");
}

/// The store can be backed up while the agent writes it, with `sqlite3
/// STORE ".backup COPY"` (README, History): the copy passes trafmon's own
/// checks on open and reports the same per-user totals, equal to iptables.
#[test]
fn a_backup_taken_while_the_agent_flushes_reports_the_same_totals() {
    let env = Env::with_interval("100ms", "");
    let agent = env.agent();
    env.up(&[]);
    let uid = 61210;
    add_owner_rules(&env.a, uid, false);
    let root_b = As::root(&env.b);
    let r = env.traffic(root_b, &["tcp-recv", "192.0.2.100", "9710", "1"]);
    r.wait_listening();
    let s = env.traffic(
        As::user(&env.a, uid),
        &["tcp-send", "192.0.2.100", "9710", "300000"],
    );
    finish_all(vec![s], vec![r]);
    let rules = owner_counters(&env.a, uid, false);
    let stored = || {
        env.stored()
            .get(&(Kind::Uid, uid.to_string()))
            .map(|c| (c.tx_packets, c.tx_bytes))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored() != Some(rules) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(stored(), Some(rules), "the agent stored the traffic");

    // Taken while the agent goes on flushing every 100 ms.
    let copy = env.store_path().with_file_name("backup.db");
    let copy_arg = format!(".backup {}", copy.display());
    sh(&["sqlite3", &env.store_path().to_string_lossy(), &copy_arg]);
    agent.stop();

    let original = std::fs::read_to_string(&env.config).expect("config");
    let config = env.config.with_file_name("backup.toml");
    std::fs::write(
        &config,
        format!("store = \"{}\"\n{original}", copy.display()),
    )
    .expect("write config");
    let out = Command::new(trafmon_bin())
        .arg("--config")
        .arg(&config)
        .args(["report", "--json"])
        .output()
        .expect("run trafmon");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let row = uid_row(&json, uid);
    assert_eq!(
        (row["tx_packets"].as_u64(), row["tx_bytes"].as_u64()),
        (Some(rules.0), Some(rules.1))
    );
}
