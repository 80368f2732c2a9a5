//! `/metrics` for Prometheus (prometheus-client, OpenMetrics text), served
//! by the agent with axum.
//!
//! Byte and packet counters are lifetime totals: the store plus what the
//! kernel holds and the store does not ([`live::read`]), so they never go
//! backwards across flushes or restarts. `max_series` caps the series per
//! entity kind; the rest are summed as `other`. Which entities have their
//! own series is sticky for the agent's lifetime, so `other` never goes
//! backwards either while the agent runs.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use jiff::Timestamp;
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use trafmon_common::Counters;

use crate::{
    config::Config,
    counters::Maps,
    live::{self, LiveError},
    paths::PinDir,
    quota::run::usage,
    store::{Kind, Store, StoreError},
};

type Labels = Vec<(String, String)>;

/// What a scrape reads.
pub struct Source {
    store: Store,
    maps: Maps,
    config: Config,
    exported: BTreeMap<Kind, BTreeSet<String>>,
}

/// Errors of a scrape.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The counters could not be read.
    #[error(transparent)]
    Live(#[from] LiveError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The maps failed.
    #[error(transparent)]
    Counters(#[from] crate::counters::CountersError),
    /// A quota period failed.
    #[error(transparent)]
    Quota(#[from] crate::quota::run::QuotaError),
    /// Encoding failed.
    #[error("cannot encode the metrics")]
    Encode(#[from] std::fmt::Error),
}

/// One counter family per entity kind and measure.
struct Entities {
    bytes: Family<Labels, Counter>,
    packets: Family<Labels, Counter>,
}

impl Entities {
    fn new(registry: &mut Registry, name: &str, what: &str) -> Self {
        let e = Self {
            bytes: Family::default(),
            packets: Family::default(),
        };
        registry.register(
            format!("{name}_bytes"),
            format!("Bytes per {what} since counting began, by direction (rx: received, tx: sent)"),
            e.bytes.clone(),
        );
        registry.register(
            format!("{name}_packets"),
            format!("Packets per {what} since counting began, by direction"),
            e.packets.clone(),
        );
        e
    }

    fn add(&self, labels: &Labels, c: &Counters) {
        for (dir, bytes, packets) in [
            ("rx", c.rx_bytes, c.rx_packets),
            ("tx", c.tx_bytes, c.tx_packets),
        ] {
            let mut l = labels.clone();
            l.push(("direction".into(), dir.into()));
            self.bytes.get_or_create(&l).inc_by(bytes);
            self.packets.get_or_create(&l).inc_by(packets);
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Source {
    /// Opens the store read-only and the pinned maps.
    pub fn open(config: &Config) -> Result<Self, MetricsError> {
        Ok(Self {
            store: Store::open_read_only(&config.store_path())?,
            maps: Maps::open(&PinDir::new(&config.pin_dir))?,
            config: config.clone(),
            exported: BTreeMap::new(),
        })
    }

    /// The metrics text.
    pub fn render(&mut self) -> Result<String, MetricsError> {
        let lifetime = live::read(&self.store, &self.maps, &self.config.groups)?;
        let mut registry = Registry::with_prefix("trafmon");
        let users = Entities::new(&mut registry, "user", "user (socket UID)");
        let ips = Entities::new(&mut registry, "ip", "IP address");
        let ifaces = Entities::new(&mut registry, "interface", "network interface");
        let groups = Entities::new(&mut registry, "group", "group of addresses");
        let overflow = Entities::new(
            &mut registry,
            "overflow",
            "full map (counted, not attributed)",
        );

        let mut by_kind: BTreeMap<Kind, Vec<(&str, &str, &Counters)>> = BTreeMap::new();
        for (entity, (label, c)) in &lifetime {
            by_kind
                .entry(entity.kind)
                .or_default()
                .push((&entity.key, label, c));
        }
        // Overflow always has its three series, so that "none" reads as 0.
        let spilled = by_kind.remove(&Kind::Overflow).unwrap_or_default();
        for map in ["uid", "ip", "iface"] {
            let c = spilled
                .iter()
                .find(|(key, _, _)| *key == map)
                .map_or(Counters::ZERO, |(_, _, c)| **c);
            overflow.add(&labels(&[("map", map)]), &c);
        }
        let max = self.config.metrics.max_series as usize;
        for (kind, rows) in by_kind {
            let (family, key_label) = match kind {
                Kind::Uid => (&users, "uid"),
                Kind::Ip => (&ips, "address"),
                Kind::Iface => (&ifaces, "interface"),
                _ => (&groups, "group"),
            };
            let exported = self.exported.entry(kind).or_default();
            let (kept, other) = cap_series(rows, exported, max);
            for (key, label, c) in kept {
                let mut l = labels(&[(key_label, key)]);
                if kind == Kind::Uid {
                    l.push(("user".into(), label.to_owned()));
                }
                family.add(&l, c);
            }
            if let Some(other) = other {
                let mut l = labels(&[(key_label, "other")]);
                if kind == Kind::Uid {
                    l.push(("user".into(), "other".into()));
                }
                family.add(&l, &other);
            }
        }

        self.quotas(&mut registry)?;
        self.maps_and_flushes(&mut registry)?;
        let mut out = String::new();
        encode(&mut out, &registry)?;
        Ok(out)
    }

    fn quotas(&self, registry: &mut Registry) -> Result<(), MetricsError> {
        let used = Family::<Labels, Gauge>::default();
        let limit = Family::<Labels, Gauge>::default();
        let enforced = Family::<Labels, Gauge>::default();
        registry.register(
            "quota_used_bytes",
            "Bytes counted against a quota in its running period",
            used.clone(),
        );
        registry.register(
            "quota_limit_bytes",
            "The limit of a quota per period",
            limit.clone(),
        );
        registry.register(
            "quota_enforced",
            "1 while a quota's action is in force (throttle, block, or over for alert)",
            enforced.clone(),
        );
        let states = self.store.quota_states()?;
        let cal = self.config.calendar();
        for q in &self.config.quotas {
            let (bytes, _) = usage(&self.store, &cal, q, Timestamp::now())?;
            let l = labels(&[
                ("quota", &q.name),
                ("target", &q.target.to_string()),
                ("action", q.action.as_str()),
            ]);
            used.get_or_create(&l)
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            limit
                .get_or_create(&l)
                .set(i64::try_from(q.limit).unwrap_or(i64::MAX));
            let on = states.get(&q.name).is_some_and(|s| s.enforced);
            enforced.get_or_create(&l).set(i64::from(on));
        }
        Ok(())
    }

    fn maps_and_flushes(&self, registry: &mut Registry) -> Result<(), MetricsError> {
        let entries = Family::<Labels, Gauge>::default();
        let max_entries = Family::<Labels, Gauge>::default();
        registry.register(
            "map_entries",
            "Keys in a stats map (both sides)",
            entries.clone(),
        );
        registry.register(
            "map_max_entries",
            "Capacity of a stats map (each side)",
            max_entries.clone(),
        );
        for (name, keys, max) in self.maps.fill()? {
            let l = labels(&[("map", name)]);
            entries
                .get_or_create(&l)
                .set(i64::try_from(keys).unwrap_or(i64::MAX));
            max_entries.get_or_create(&l).set(i64::from(max));
        }
        if let Some(f) = self.store.last_flush()? {
            let at = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
            at.set(f.at_ms as f64 / 1000.0);
            registry.register(
                "last_flush_timestamp_seconds",
                "When the last flush ended its counting period",
                at,
            );
            let seq = Gauge::<i64>::default();
            seq.set(f.seq);
            registry.register(
                "last_flush_sequence",
                "Sequence number of the last flush",
                seq,
            );
            if let Some(us) = f.duration_us {
                let d = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
                d.set(us as f64 / 1e6);
                registry.register(
                    "last_flush_duration_seconds",
                    "Duration of the last flush, from flip to recorded clear",
                    d,
                );
            }
        }
        Ok(())
    }
}

/// Entities of one kind, (key, label, counters): those with their own
/// series, and the sum of the rest (None when there is no rest). Entities
/// in `exported` keep their series; new ones get one, biggest first, while
/// fewer than `max` have one. `exported` grows accordingly.
fn cap_series<'a>(
    mut rows: Vec<(&'a str, &'a str, &'a Counters)>,
    exported: &mut BTreeSet<String>,
    max: usize,
) -> (Vec<(&'a str, &'a str, &'a Counters)>, Option<Counters>) {
    rows.sort_by_key(|(_, _, c)| std::cmp::Reverse(c.rx_bytes.saturating_add(c.tx_bytes)));
    let mut kept = Vec::new();
    let mut other: Option<Counters> = None;
    for row in rows {
        if exported.contains(row.0) || exported.len() < max {
            exported.insert(row.0.to_owned());
            kept.push(row);
        } else {
            other.get_or_insert(Counters::ZERO).add(row.2);
        }
    }
    (kept, other)
}

/// The Prometheus text format (0.0.4) of OpenMetrics text.
///
/// prometheus-client encodes OpenMetrics only, where a counter family
/// `x` has samples `x_total`; the older text format, which `promtool check
/// metrics` and scrapers that do not ask for OpenMetrics read, names the
/// family `x_total` too and has no `# UNIT` or `# EOF` lines. No crate does
/// this conversion, hence these lines.
pub fn text_format(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

async fn scrape(
    State(source): State<Arc<Mutex<Source>>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let rendered = match source.lock() {
        Ok(mut s) => s.render(),
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "poisoned").into_response(),
    };
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    match rendered {
        Ok(text) if openmetrics => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text_format(&text),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "scrape failed");
            (StatusCode::SERVICE_UNAVAILABLE, crate::error_chain(&e)).into_response()
        }
    }
}

/// Binds the metrics address (so that a taken port stops the agent at
/// start with one line) and returns the server to spawn.
pub async fn bind(
    config: &Config,
) -> Result<impl Future<Output = std::io::Result<()>> + use<>, BindError> {
    let source = Source::open(config).map_err(|e| BindError::Source(Box::new(e)))?;
    let listener = tokio::net::TcpListener::bind(config.metrics.listen)
        .await
        .map_err(|source| BindError::Listen {
            addr: config.metrics.listen,
            source,
        })?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(Mutex::new(source)));
    Ok(async move { axum::serve(listener, app).await })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(bytes: u64) -> Counters {
        Counters {
            rx_bytes: bytes,
            ..Counters::ZERO
        }
    }

    #[test]
    fn the_biggest_get_series_and_keep_them_and_the_rest_is_other() {
        let (a, b, x) = (c(10), c(500), c(300));
        let mut exported = BTreeSet::new();
        let (kept, other) = cap_series(
            vec![("a", "a", &a), ("b", "b", &b), ("x", "x", &x)],
            &mut exported,
            2,
        );
        let keys: Vec<&str> = kept.iter().map(|r| r.0).collect();
        assert_eq!(keys, ["b", "x"]);
        assert_eq!(other, Some(c(10)));
        // "a" grows past "x", but "x" keeps its series: "other" never
        // goes backwards while the agent runs.
        let (a, b, x) = (c(1000), c(500), c(300));
        let (kept, other) = cap_series(
            vec![("a", "a", &a), ("b", "b", &b), ("x", "x", &x)],
            &mut exported,
            2,
        );
        let keys: Vec<&str> = kept.iter().map(|r| r.0).collect();
        assert_eq!(keys, ["b", "x"]);
        assert_eq!(other, Some(c(1000)));
        let (_, other) = cap_series(vec![("b", "b", &b)], &mut exported, 2);
        assert_eq!(other, None);
    }

    #[test]
    fn counters_get_their_total_name_in_the_text_format() {
        let om = "# HELP trafmon_user_bytes Bytes.\n# TYPE trafmon_user_bytes counter\ntrafmon_user_bytes_total{uid=\"1\"} 5\n# HELP trafmon_quota_limit_bytes Limit.\n# TYPE trafmon_quota_limit_bytes gauge\ntrafmon_quota_limit_bytes 7\n# EOF\n";
        assert_eq!(
            text_format(om),
            "# HELP trafmon_user_bytes_total Bytes.\n# TYPE trafmon_user_bytes_total counter\ntrafmon_user_bytes_total{uid=\"1\"} 5\n# HELP trafmon_quota_limit_bytes Limit.\n# TYPE trafmon_quota_limit_bytes gauge\ntrafmon_quota_limit_bytes 7\n"
        );
    }
}

/// Errors of starting the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The address is taken or not ours.
    #[error("cannot listen for metrics on {addr} (metrics.listen)")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store or the maps cannot be opened.
    #[error(transparent)]
    Source(Box<MetricsError>),
}
