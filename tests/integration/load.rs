//! A steady traffic mix for the flush tests: three UIDs send UDP over IPv4
//! and TCP over IPv6 for a given time, paced, with iptables rules that count
//! the same packets per UID and per address.

use crate::harness::{
    As, Counts, Env, Traffic, add_owner_rules, add_rule, assert_address, assert_uid_tx,
};

const UIDS: [u32; 3] = [61101, 61102, 61103];
const ADDRS: [(&str, bool); 2] = [("192.0.2.1", false), ("2001:db8::1", true)];

/// Traffic under way.
pub struct Load {
    receivers: Vec<Traffic>,
    senders: Vec<Traffic>,
}

impl Load {
    /// Adds the ground-truth rules and starts sending for `seconds`.
    pub fn start(env: &Env, seconds: u32) -> Self {
        for uid in UIDS {
            add_owner_rules(&env.a, uid, true);
        }
        for (i, (addr, v6)) in ADDRS.iter().enumerate() {
            add_rule(&env.a, *v6, "INPUT", &["-d", addr], &format!("tm-in-{i}"));
            add_rule(&env.a, *v6, "OUTPUT", &["-s", addr], &format!("tm-out-{i}"));
        }
        let root_b = As::root(&env.b);
        let secs = seconds.to_string();
        let (mut receivers, mut senders) = (Vec::new(), Vec::new());
        for (i, uid) in UIDS.into_iter().enumerate() {
            let (udp, tcp) = ((9300 + i).to_string(), (9400 + i).to_string());
            let datagrams = (400 * seconds).to_string();
            let rx = [
                env.traffic(root_b, &["udp-recv", "192.0.2.100", &udp, &datagrams]),
                env.traffic(root_b, &["tcp-recv", "2001:db8::100", &tcp, "1"]),
            ];
            for r in &rx {
                r.wait_listening();
            }
            receivers.extend(rx);
            let who = As::user(&env.a, uid);
            let size = (300 + 200 * i).to_string();
            senders.push(env.traffic(
                who,
                &["udp-send", "192.0.2.100", &udp, &size, &datagrams, &secs],
            ));
            let bytes = (2_000_000 * u64::from(seconds)).to_string();
            senders.push(env.traffic(who, &["tcp-send", "2001:db8::100", &tcp, &bytes, &secs]));
        }
        Self { receivers, senders }
    }

    /// Waits until every sender and receiver is done.
    pub fn finish(self) {
        for s in self.senders {
            s.finish();
        }
        for r in self.receivers {
            r.finish();
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Checks `counts` against the rules exactly: per-UID tx and per-address
/// rx and tx.
pub fn check(env: &Env, counts: &Counts) {
    for uid in UIDS {
        let ours = assert_uid_tx(counts, &env.a, uid, true);
        assert!(ours.tx_bytes > 1_000_000, "uid {uid} sent traffic");
    }
    for (i, (addr, v6)) in ADDRS.iter().enumerate() {
        let rules = (&*format!("tm-in-{i}"), &*format!("tm-out-{i}"));
        assert_address(counts, &env.a, addr, *v6, rules);
    }
}
