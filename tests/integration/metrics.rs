//! `/metrics`: it passes `promtool check metrics`, and a real Prometheus
//! server scraping the agent reports a test UID's bytes exactly as the
//! iptables owner rule counted them.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::harness::{As, Env, Netns, add_owner_rules, get_in, owner_counters, trafmon_bin};

/// A Prometheus server in a namespace, killed on drop.
struct Prometheus {
    child: Child,
    dir: PathBuf,
}

impl Prometheus {
    fn start(ns: &Netns, dir: &Path, target: &str, listen: &str) -> Self {
        fs::create_dir_all(dir).expect("prometheus dir");
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: trafmon\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("prometheus config");
        let mut cmd = ns.command("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .expect("start prometheus (Debian package `prometheus`; cargo xtask test installs it)");
        Self {
            child,
            dir: dir.into(),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

const UID: u32 = 61201;

#[test]
fn a_real_prometheus_scrapes_exact_per_user_bytes_and_promtool_accepts_them() {
    let env = Env::new(&format!(
        "[metrics]\nlisten = \"127.0.0.1:9977\"\nmax_series = 100\n[[quota]]\nname = \"cap\"\nuser = {UID}\nlimit = \"1GiB\"\n"
    ));
    let agent = env.agent();
    env.up(&[]);
    add_owner_rules(&env.a, UID, false);
    let prometheus = Prometheus::start(
        &env.a,
        &std::env::temp_dir().join(format!("trafmon-prometheus-{}", std::process::id())),
        "127.0.0.1:9977",
        "127.0.0.1:9090",
    );

    let who = As::user(&env.a, UID);
    assert_eq!(env.send(who, "192.0.2.100", "7500", 3_000_000), 3_000_000);
    let (_, truth) = owner_counters(&env.a, UID, false);
    // At least one flush since: the flush metrics exist.
    std::thread::sleep(Duration::from_millis(1500));

    // The endpoint itself, linted by promtool.
    let (status, body) = get_in(&env.a, "127.0.0.1:9977", "/metrics").expect("GET /metrics");
    assert!(status.contains(" 200 "), "{status}");
    let series =
        format!("trafmon_user_bytes_total{{uid=\"{UID}\",user=\"{UID}\",direction=\"tx\"}}");
    assert!(body.contains(&series), "no {series} in\n{body}");
    assert!(
        body.contains(&format!(
            "trafmon_quota_limit_bytes{{quota=\"cap\",target=\"user:{UID}\",action=\"alert\"}} 1073741824"
        )),
        "{body}"
    );
    // The version, as the binary itself gives it.
    let version = Command::new(trafmon_bin())
        .arg("--version")
        .output()
        .expect("trafmon --version");
    let version = String::from_utf8_lossy(&version.stdout);
    let version = version
        .trim()
        .strip_prefix("trafmon ")
        .expect("trafmon X.Y.Z");
    assert!(
        body.contains(&format!(
            "\ntrafmon_build_info{{version=\"{version}\"}} 1\n"
        )),
        "{body}"
    );
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    lint.stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = lint.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Prometheus scraped it: its value equals the owner rule.
    let query = format!(
        "/api/v1/query?query=trafmon_user_bytes_total%7Buid%3D%22{UID}%22%2Cdirection%3D%22tx%22%7D"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        if let Ok((status, body)) = get_in(&env.a, "127.0.0.1:9090", &query)
            && status.contains(" 200 ")
        {
            let v: Value = serde_json::from_str(&body).expect("prometheus JSON");
            let value = v["data"]["result"][0]["value"][1]
                .as_str()
                .map(str::to_owned);
            if value.as_deref() == Some(truth.to_string().as_str()) {
                break;
            }
            last = body;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never reported {truth} bytes for uid {UID}: {last}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    fleet_files_work_against(&env.a, &body);
    drop(prometheus);
    agent.stop();
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The example scrape configuration and rules pass promtool; every metric
/// they and the Grafana dashboard name is one the agent serves, and every
/// dashboard query runs on the real Prometheus (the per-user panel with a
/// result).
fn fleet_files_work_against(ns: &Netns, scraped: &str) {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let config = deploy.join("prometheus.yml");
    promtool(&["check", "config", config.to_str().expect("utf-8")]);
    let rules = deploy.join("trafmon-rules.yml");
    promtool(&["check", "rules", rules.to_str().expect("utf-8")]);
    // The alerts fire on synthetic series where they should, and only there.
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/trafmon-rules.test.yml");
    promtool(&["test", "rules", cases.to_str().expect("utf-8")]);

    let dashboard: Value = serde_json::from_str(
        &fs::read_to_string(deploy.join("grafana-dashboard.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    let rules_text = fs::read_to_string(&rules).expect("rules");
    for text in exprs
        .iter()
        .map(String::as_str)
        .chain([rules_text.as_str()])
    {
        for (i, _) in text.match_indices("trafmon_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                scraped.contains(&format!("# TYPE {name} ")),
                "{name} is used in deploy/ but not served"
            );
        }
    }
    for (i, expr) in exprs.iter().enumerate() {
        let q = expr
            .replace("$__range", "1h")
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*");
        // The per-user panel must show the test's user once Prometheus has
        // two samples of it (increase() needs two).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = get_in(
                ns,
                "127.0.0.1:9090",
                &format!("/api/v1/query?query={}", encode(&q)),
            )
            .expect("query prometheus");
            assert!(status.contains(" 200 "), "{q}: {status} {body}");
            let v: Value = serde_json::from_str(&body).expect("JSON");
            assert_eq!(v["status"], "success", "{q}: {body}");
            let shows_user = v["data"]["result"]
                .as_array()
                .expect("result")
                .iter()
                .any(|r| r["metric"]["user"] == UID.to_string().as_str());
            if i != 0 || shows_user {
                break;
            }
            assert!(Instant::now() < deadline, "{q}: {body}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// The value of the `trafmon_user_bytes_total` series of `uid` (a number
/// or `other`) sending, if there is one.
fn user_tx(body: &str, uid: &str) -> Option<u64> {
    let series =
        format!("trafmon_user_bytes_total{{uid=\"{uid}\",user=\"{uid}\",direction=\"tx\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map(|v| v.trim().parse().expect("a number"))
}

/// With more users than `max_series`, which one has a series of its own
/// survives a restart of the agent: `other` never goes backwards, even
/// though another user has grown bigger meanwhile (a new choice, biggest
/// first, would swap them and make `other` shrink, which Prometheus reads
/// as a counter reset).
#[test]
fn the_series_choice_survives_a_restart_so_other_never_goes_backwards() {
    let env = Env::new("[metrics]\nmax_series = 1\n");
    let agent = env.agent();
    env.up(&[]);
    let (first, second) = (61411, 61412);
    let scrape = || {
        std::thread::sleep(Duration::from_millis(1500));
        let (status, body) = get_in(&env.a, "127.0.0.1:9977", "/metrics").expect("GET /metrics");
        assert!(status.contains(" 200 "), "{status}");
        body
    };
    let send = |uid, port, bytes| {
        assert_eq!(
            env.send(As::user(&env.a, uid), "192.0.2.100", port, bytes),
            bytes
        );
    };
    send(first, "7510", 300_000);
    send(second, "7511", 100_000);
    let body = scrape();
    assert!(
        user_tx(&body, "61411").is_some(),
        "the bigger one has a series:\n{body}"
    );
    assert!(user_tx(&body, "61412").is_none(), "{body}");
    send(second, "7512", 500_000);
    let before = user_tx(&scrape(), "other").expect("other");
    assert!(before >= 600_000, "other holds the second user: {before}");
    agent.stop();

    let agent = env.agent();
    let body = scrape();
    assert!(
        user_tx(&body, "61411").is_some(),
        "the first keeps its series:\n{body}"
    );
    let after = user_tx(&body, "other").expect("other");
    assert!(after >= before, "other went backwards: {before} -> {after}");
    agent.stop();
}
