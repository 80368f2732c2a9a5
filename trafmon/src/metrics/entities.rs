//! The per-entity counter families of `/metrics`.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter},
};
use trafmon_common::Counters;

/// The byte and packet counters of one entity kind, encoded straight from
/// the rows at scrape time. A metric object per series (prometheus-client's
/// `Family`) would hold tens of thousands of label sets besides the rows;
/// a [`Collector`] writes each sample as it goes.
#[derive(Debug)]
pub(super) struct Entities {
    name: &'static str,
    what: &'static str,
    /// The label naming the entity (`address`, `uid`...).
    key_label: &'static str,
    /// Whether a `user` label follows it (UIDs).
    with_user: bool,
    /// (key, user name, counters).
    rows: Vec<(String, String, Counters)>,
}

impl Entities {
    pub(super) fn new(name: &'static str, what: &'static str, key_label: &'static str) -> Self {
        Self {
            name,
            what,
            key_label,
            with_user: key_label == "uid",
            rows: Vec::new(),
        }
    }

    pub(super) fn add(&mut self, key: &str, user: &str, c: &Counters) {
        self.rows.push((key.to_owned(), user.to_owned(), *c));
    }
}

impl Collector for Entities {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        /// rx and tx of one measure.
        type Pick = fn(&Counters) -> [u64; 2];
        let measures: [(&str, String, Pick); 2] = [
            (
                "bytes",
                format!(
                    "Bytes per {} since counting began, by direction (rx: received, tx: sent)",
                    self.what
                ),
                |c| [c.rx_bytes, c.tx_bytes],
            ),
            (
                "packets",
                format!(
                    "Packets per {} since counting began, by direction",
                    self.what
                ),
                |c| [c.rx_packets, c.tx_packets],
            ),
        ];
        for (measure, help, values) in measures {
            let name = format!("{}_{measure}", self.name);
            let mut family = encoder.encode_descriptor(&name, &help, None, MetricType::Counter)?;
            for (key, user, c) in &self.rows {
                for (dir, v) in ["rx", "tx"].into_iter().zip(values(c)) {
                    if self.with_user {
                        let labels = [
                            (self.key_label, key.as_str()),
                            ("user", user.as_str()),
                            ("direction", dir),
                        ];
                        ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
                    } else {
                        let labels = [(self.key_label, key.as_str()), ("direction", dir)];
                        ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
        }
        Ok(())
    }
}
