//! Warnings in the agent's log when a stats map fills, as DESIGN.md asks
//! ("a full map ... with a warning"): `status`, `/metrics` and the
//! `(overflow)` entity show it too, but the journal is where an operator
//! looks first. Each flush reports how full the drained side's hash maps
//! were and what overflowed; per kind of map this warns
//! - once when a side held 90 % of its entries, and again only after it
//!   fell below 80 % (a side's keys are those of one interval, which come
//!   and go), so that the entries can be raised before anything overflows;
//! - when packets were counted as overflow, at the first such flush and
//!   then at most once an hour while it goes on.

use std::time::{Duration, Instant};

use trafmon_common::{Counters, KINDS};

use crate::counters::Fill;

/// How often an ongoing overflow is warned of again.
const OVERFLOW_REPEAT: Duration = Duration::from_secs(3600);

/// The map kinds by their `[maps]` key prefix, in kind order.
const NAMES: [&str; KINDS as usize] = ["uid", "ip", "iface"];

/// One warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// A side held 90 % or more of its entries.
    NearlyFull {
        /// `uid`, `ip` or `iface`.
        kind: &'static str,
        /// How full.
        fill: Fill,
    },
    /// Packets whose key did not fit were counted as overflow.
    Overflow {
        /// `uid`, `ip` or `iface`.
        kind: &'static str,
        /// The side's entries.
        max: u32,
        /// What was counted so.
        counted: Counters,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NearlyFull { kind, fill } => write!(
                f,
                "{kind} map {}% full ({} of {} keys in one interval): raise [maps] {kind}_entries and reload the agent before packets are counted as ({kind} overflow)",
                fill.keys * 100 / (fill.max.max(1) as usize),
                fill.keys,
                fill.max
            ),
            Self::Overflow { kind, max, counted } => write!(
                f,
                "{kind} map full ({max} keys): {} packets, {} bytes of one interval counted as ({kind} overflow), not per key; raise [maps] {kind}_entries and reload the agent",
                counted.rx_packets + counted.tx_packets,
                counted.rx_bytes + counted.tx_bytes
            ),
        }
    }
}

/// What has been warned of, per kind.
#[derive(Debug, Default)]
pub struct Watch {
    nearly_full: [bool; KINDS as usize],
    overflow_warned: [Option<Instant>; KINDS as usize],
}

impl Watch {
    /// The warnings that one flush's drained side gives, at `now`.
    pub fn observe(
        &mut self,
        now: Instant,
        fill: &[Fill; KINDS as usize],
        overflow: &[Counters; KINDS as usize],
    ) -> Vec<Warning> {
        let mut out = Vec::new();
        for (k, kind) in NAMES.into_iter().enumerate() {
            let (keys, max) = (fill[k].keys as u64, u64::from(fill[k].max));
            if keys * 10 >= max * 9 && max > 0 {
                if !self.nearly_full[k] {
                    self.nearly_full[k] = true;
                    out.push(Warning::NearlyFull {
                        kind,
                        fill: fill[k],
                    });
                }
            } else if keys * 10 < max * 8 {
                self.nearly_full[k] = false;
            }
            let counted = overflow[k];
            let due = self.overflow_warned[k]
                .is_none_or(|t| now.saturating_duration_since(t) >= OVERFLOW_REPEAT);
            if counted.rx_packets + counted.tx_packets > 0 && due {
                self.overflow_warned[k] = Some(now);
                out.push(Warning::Overflow {
                    kind,
                    max: fill[k].max,
                    counted,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(keys: usize) -> [Fill; 3] {
        let f = |keys| Fill { keys, max: 100 };
        [f(0), f(keys), f(0)]
    }

    fn none() -> [Counters; 3] {
        [Counters::ZERO; 3]
    }

    #[test]
    fn nearly_full_warns_once_per_crossing_with_hysteresis() {
        let mut w = Watch::default();
        let t = Instant::now();
        assert!(w.observe(t, &fill(89), &none()).is_empty());
        let warned = w.observe(t, &fill(90), &none());
        assert_eq!(
            warned,
            [Warning::NearlyFull {
                kind: "ip",
                fill: Fill { keys: 90, max: 100 }
            }]
        );
        assert_eq!(
            warned[0].to_string(),
            "ip map 90% full (90 of 100 keys in one interval): raise [maps] ip_entries and reload the agent before packets are counted as (ip overflow)"
        );
        assert!(w.observe(t, &fill(100), &none()).is_empty());
        // Below 90 but not below 80: still the same crossing.
        assert!(w.observe(t, &fill(85), &none()).is_empty());
        assert!(w.observe(t, &fill(95), &none()).is_empty());
        assert!(w.observe(t, &fill(79), &none()).is_empty());
        assert_eq!(w.observe(t, &fill(92), &none()).len(), 1);
    }

    #[test]
    fn overflow_warns_at_once_then_hourly_while_it_lasts() {
        let mut w = Watch::default();
        let t = Instant::now();
        let mut over = none();
        over[0] = Counters {
            rx_bytes: 0,
            rx_packets: 0,
            tx_bytes: 1200,
            tx_packets: 3,
        };
        let uid_full = [Fill { keys: 4, max: 4 }, Fill::default(), Fill::default()];
        let warned = w.observe(t, &uid_full, &over);
        assert_eq!(warned.len(), 2, "{warned:?}");
        assert_eq!(
            warned[1].to_string(),
            "uid map full (4 keys): 3 packets, 1200 bytes of one interval counted as (uid overflow), not per key; raise [maps] uid_entries and reload the agent"
        );
        let later = |s| t + Duration::from_secs(s);
        assert!(w.observe(later(10), &uid_full, &over).is_empty());
        assert!(w.observe(later(3599), &uid_full, &over).is_empty());
        assert_eq!(
            w.observe(later(3600), &uid_full, &over),
            [Warning::Overflow {
                kind: "uid",
                max: 4,
                counted: over[0]
            }]
        );
        // An interval without overflow warns of nothing.
        assert!(w.observe(later(7300), &uid_full, &none()).is_empty());
    }
}
