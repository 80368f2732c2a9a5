//! `/metrics` for Prometheus (prometheus-client, OpenMetrics text), served
//! by the agent with axum.
//!
//! Byte and packet counters are lifetime totals: the store plus what the
//! kernel holds and the store does not ([`live::read`]), so they never go
//! backwards across flushes or restarts. `max_series` caps the series per
//! entity kind; the rest are summed as `other`. Which entities have their
//! own series is sticky, and kept across restarts and reloads
//! (`series.rs`), so `other` never goes backwards either.

use std::{
    collections::BTreeSet,
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
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};
use trafmon_common::Counters;

mod cap;
mod entities;
mod series;

use cap::Caps;
use entities::Entities;

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
    exported: series::Exported,
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
            exported: series::load(&config.state_dir, config.metrics.max_series),
        })
    }

    /// The metrics text.
    pub fn render(&mut self) -> Result<String, MetricsError> {
        let max = self.config.metrics.max_series as usize;
        let exported = &self.exported;
        let caps = live::read_with(
            &self.store,
            &self.maps,
            &self.config.groups,
            || Caps::new(exported, max),
            |caps, entity, label, c| caps.offer(entity, label, c),
        )?;
        let mut registry = Registry::with_prefix("trafmon");
        let mut users = Entities::new("user", "user (socket UID)", "uid");
        let mut ips = Entities::new("ip", "IP address", "address");
        let mut ifaces = Entities::new("interface", "network interface", "interface");
        let mut groups = Entities::new("group", "group of addresses", "group");
        let mut overflow = Entities::new("overflow", "full map (counted, not attributed)", "map");
        let chosen = caps.finish();
        if cap::remember(&mut self.exported, &chosen)
            && let Err(e) = series::save(
                &self.config.state_dir,
                self.config.metrics.max_series,
                &self.exported,
            )
        {
            tracing::warn!(
                file = %series::path(&self.config.state_dir).display(),
                error = %e,
                "cannot save which entities have series; a restart may choose anew"
            );
        }
        let (per_kind, spilled) = chosen;
        // Overflow always has its three series, so that "none" reads as 0.
        for map in ["uid", "ip", "iface"] {
            let c = spilled.get(map).copied().unwrap_or(Counters::ZERO);
            overflow.add(map, "", &c);
        }
        for (kind, (kept, other)) in per_kind {
            let family = match kind {
                Kind::Uid => &mut users,
                Kind::Ip => &mut ips,
                Kind::Iface => &mut ifaces,
                _ => &mut groups,
            };
            for (key, label, c) in kept {
                family.add(&key, &label, &c);
            }
            if let Some(other) = other {
                family.add("other", "other", &other);
            }
        }
        for family in [users, ips, ifaces, groups, overflow] {
            registry.register_collector(Box::new(family));
        }

        self.quotas(&mut registry)?;
        self.maps_and_flushes(&mut registry)?;
        build_info(&mut registry);
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
            "Keys a stats map holds now (each side has maps of its own)",
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

/// `trafmon_build_info{version="..."} 1`, the exporters' convention, so a
/// fleet sees which hosts run which version (during an upgrade, say).
fn build_info(registry: &mut Registry) {
    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&labels(&[("version", env!("CARGO_PKG_VERSION"))]))
        .set(1);
    registry.register("build_info", "The agent's version; always 1", info);
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
        Ok(mut s) => {
            let text = s.render();
            crate::memory::release_freed();
            text
        }
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
