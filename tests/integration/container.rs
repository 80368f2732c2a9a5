//! The agent in its container image, run by a real engine (podman with
//! runc), privileged, in the test's network namespace, with bpffs, the
//! cgroup fs and the state directory mounted: it counts a UID's traffic
//! exactly, and a restart of the container loses nothing.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use trafmon::store::Kind;

use crate::harness::{As, Env, add_owner_rules, assert_uid_tx, count_of, sh};

const UID: u32 = 61401;

/// A running container, removed on drop.
struct Container {
    name: String,
}

impl Container {
    fn run(env: &Env, image: &str) -> Self {
        let name = format!("trafmon-test-{}", std::process::id());
        let _ = Command::new("podman").args(["rm", "-f", &name]).output();
        let dir = env
            .config
            .parent()
            .expect("config dir")
            .display()
            .to_string();
        let netns = format!("ns:/run/netns/{}", env.a.name);
        let config = env.config.display().to_string();
        sh(&[
            "podman",
            "run",
            "--detach",
            "--name",
            &name,
            "--runtime",
            "runc",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=32768:32768",
            "--privileged",
            "--network",
            &netns,
            "--pid",
            "host",
            "--cgroupns",
            "host",
            "--volume",
            "/sys/fs/bpf:/sys/fs/bpf:rbind",
            "--volume",
            "/sys/fs/cgroup:/sys/fs/cgroup:rbind",
            "--volume",
            &format!("{dir}:{dir}"),
            "--env",
            "RUST_LOG=info",
            image,
            "--config",
            &config,
            "agent",
        ]);
        let c = Self { name };
        c.wait_counting(1);
        c
    }

    fn logs(&self) -> String {
        let out = Command::new("podman")
            .args(["logs", &self.name])
            .output()
            .expect("podman logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Waits until the agent said "counting" `times` times.
    fn wait_counting(&self, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let logs = self.logs();
            if logs.matches(" counting ").count() >= times {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the containerised agent did not start counting:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "5", &self.name])
            .output();
    }
}

#[test]
fn the_containerised_agent_counts_exactly_and_a_restart_loses_nothing() {
    let image = std::env::var("TRAFMON_IMAGE")
        .expect("TRAFMON_IMAGE: run through `cargo xtask test`, which builds the image");
    let env = Env::new("");
    let container = Container::run(&env, &image);
    env.up(&[]);
    add_owner_rules(&env.a, UID, false);
    let root_b = As::root(&env.b);
    let who = As::user(&env.a, UID);

    assert_eq!(env.send(who, "192.0.2.100", "7700", 500_000), 500_000);
    std::thread::sleep(Duration::from_millis(1500));
    let (_, before) = crate::harness::owner_counters(&env.a, UID, false);
    let stored = count_of(&env.stored(), Kind::Uid, &UID.to_string());
    assert_eq!(
        stored.tx_bytes, before,
        "the container's store after a flush"
    );

    // Traffic goes on while the container restarts.
    let rx = env.traffic(root_b, &["tcp-recv", "192.0.2.100", "7701", "1"]);
    rx.wait_listening();
    let tx = env.traffic(who, &["tcp-send", "192.0.2.100", "7701", "2000000", "4"]);
    std::thread::sleep(Duration::from_secs(1));
    sh(&["podman", "restart", "--time", "30", &container.name]);
    container.wait_counting(2);
    tx.finish();
    assert_eq!(rx.finish(), 2_000_000);
    sh(&["podman", "stop", "--time", "30", &container.name]);

    // Stopped cleanly: the store holds everything, exactly.
    let counts = env.counts("");
    let ours = assert_uid_tx(&counts, &env.a, UID, false);
    assert_eq!(count_of(&env.stored(), Kind::Uid, &UID.to_string()), ours);
    assert!(ours.tx_bytes > 2_500_000);
}
