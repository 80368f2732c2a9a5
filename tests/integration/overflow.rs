//! A full map counts into the overflow counters; nothing is lost.

use trafmon::store::Kind;
use trafmon_common::Counters;

use crate::harness::{As, Env, add_owner_rules, owner_counters};

#[test]
fn a_full_map_counts_overflow_and_loses_nothing() {
    let env = Env::new("[maps]\nuid_entries = 4\n");
    let agent = env.agent();
    env.up(&[]);
    let uids: Vec<u32> = (61011..61021).collect();
    for uid in &uids {
        add_owner_rules(&env.a, *uid, false);
    }
    let receiver = env.traffic(
        As::root(&env.b),
        &["udp-recv", "192.0.2.100", "9000", "200"],
    );
    receiver.wait_listening();
    let senders: Vec<_> = uids
        .iter()
        .map(|uid| {
            env.traffic(
                As::user(&env.a, *uid),
                &["udp-send", "192.0.2.100", "9000", "400", "20"],
            )
        })
        .collect();
    for s in senders {
        s.finish();
    }
    receiver.finish();
    // The journal says so, with the setting to raise.
    let wait = std::time::Duration::from_secs(10);
    for said in [
        "uid map 100% full (4 of 4 keys in one interval): raise [maps] uid_entries",
        "uid map full (4 keys): ",
    ] {
        assert!(agent.wait_logged(said, 1, wait), "no warning `{said}`");
    }
    assert_eq!(
        agent.logged_times("uid map full (4 keys): "),
        1,
        "warned once"
    );
    agent.stop();
    let counts = env.counts("");
    let uid_counts: Vec<Counters> = counts
        .iter()
        .filter(|((kind, _), _)| *kind == Kind::Uid)
        .map(|(_, c)| *c)
        .collect();
    let (mut packets, mut bytes) = (0, 0);
    for uid in &uids {
        let (p, b) = owner_counters(&env.a, *uid, false);
        packets += p;
        bytes += b;
    }
    // One flush drains at most 4 UIDs, but successive flushes may store
    // different ones: the store can hold more than 4, the kernel never.
    assert!(uid_counts.len() >= 4, "per-UID entries: {uid_counts:?}");
    let overflow = counts
        .get(&(Kind::Overflow, "uid".into()))
        .copied()
        .unwrap_or_default();
    assert!(overflow.tx_packets > 0, "overflow is counted");
    let counted_packets: u64 =
        uid_counts.iter().map(|c| c.tx_packets).sum::<u64>() + overflow.tx_packets;
    let counted_bytes: u64 = uid_counts.iter().map(|c| c.tx_bytes).sum::<u64>() + overflow.tx_bytes;
    assert_eq!(
        (counted_packets, counted_bytes),
        (packets, bytes),
        "per-UID + overflow vs iptables"
    );
    assert_eq!(
        (packets, bytes),
        (200, 200 * 428),
        "the generator's 200 datagrams of 400 B (+28 B headers)"
    );
}
