//! trafmon: the loader, counters, configuration and CLI of the agent.

pub mod agent;
pub mod batch;
pub mod calendar;
pub mod cli;
pub mod clsact;
pub mod cmd;
pub mod config;
pub mod counters;
pub mod deltas;
pub mod durable;
pub mod exclusive;
pub mod fault;
pub mod flush;
pub mod grace;
pub mod ifaces;
pub mod kernel_btf;
pub mod layout;
pub mod link_events;
pub mod live;
pub mod loader;
pub mod map_fill;
pub mod memory;
pub mod metrics;
pub mod mounts;
pub mod paths;
pub mod pidfile;
pub mod print;
pub mod quota;
pub mod relink;
pub mod reload;
pub mod report;
pub mod resize;
pub mod store;
pub mod uninstall;
pub mod units;
pub mod users;

/// `error: cause: cause` on one line, as every error of the CLI is shown.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
