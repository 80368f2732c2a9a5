//! `trafmon quota`: every quota with its usage in the running period, the
//! percentage of the limit, the projection to the period's end and its
//! state (ok, warned, throttled, blocked, over, held until ...).

use std::io::{self, Write as _};

use jiff::Timestamp;
use serde::Serialize;

use super::open_store;
use crate::{
    config::Config,
    quota::{
        engine::{self, State},
        run::usage,
        spec::Action,
    },
    units::Units,
};

/// `trafmon quota` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// How sizes are shown in the table.
    #[arg(long, value_enum, default_value_t)]
    pub units: Units,
}

/// One quota, as shown.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    target: String,
    direction: &'static str,
    period: &'static str,
    period_start: String,
    period_end: String,
    used: u64,
    limit: u64,
    percent: f64,
    projected: u64,
    warn_percent: Option<u8>,
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<u64>,
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_until: Option<String>,
}

#[derive(Serialize)]
struct Output {
    jsonversion: u32,
    quotas: Vec<Row>,
}

fn time(second: i64) -> String {
    Timestamp::from_second(second).map_or_else(|_| second.to_string(), |t| t.to_string())
}

/// Runs `trafmon quota`.
pub fn run(args: &Args, config: &Config) -> anyhow::Result<()> {
    let store = open_store(&config.store_path())?;
    let states = store.quota_states()?;
    let cal = config.calendar();
    let now = Timestamp::now();
    let mut rows = Vec::new();
    for q in &config.quotas {
        let (used, (start, end)) = usage(&store, &cal, q, now)?;
        let state = states
            .get(&q.name)
            .copied()
            .filter(|s| s.period_start == start || s.enforced)
            .unwrap_or(State {
                period_start: start,
                ..State::default()
            });
        let mut shown = engine::describe(q, &state, used);
        let held = state.enforced && state.hold_until > now.as_second();
        if held && !state.acted {
            shown = format!("{shown} until {}", time(state.hold_until));
        }
        rows.push(Row {
            name: q.name.clone(),
            target: q.target.to_string(),
            direction: q.direction.as_str(),
            period: q.period.as_str(),
            period_start: time(start),
            period_end: time(end),
            used,
            limit: q.limit,
            percent: (used as f64 * 10_000.0 / q.limit as f64).round() / 100.0,
            projected: engine::projection(used, now.as_second(), start, end),
            warn_percent: q.warn_percent,
            action: q.action.as_str(),
            rate: match q.action {
                Action::Throttle(r) => Some(r),
                _ => None,
            },
            state: shown,
            hold_until: held.then(|| time(state.hold_until)),
        });
    }
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(
            &mut out,
            &Output {
                jsonversion: 1,
                quotas: rows,
            },
        )?;
        writeln!(out)?;
        return Ok(());
    }
    if rows.is_empty() {
        writeln!(out, "no quotas configured ([[quota]] in the configuration)")?;
        return Ok(());
    }
    let u = args.units;
    let table: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.target.clone(),
                format!("{} {}", r.period, r.direction),
                u.bytes(r.used),
                u.bytes(r.limit),
                format!("{:.1}%", r.percent),
                u.bytes(r.projected),
                r.state.clone(),
            ]
        })
        .collect();
    let head = [
        "quota",
        "target",
        "period",
        "used",
        "limit",
        "percent",
        "projected",
        "state",
    ];
    let mut widths = head.map(str::len);
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // Text columns left, numbers right.
            if (3..7).contains(&i) {
                s.push_str(&format!("{cell:>w$}  "));
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(head.to_vec()))?;
    for row in &table {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}
