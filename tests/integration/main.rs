//! Integration tests against the real kernel. They need root; run them with
//! `cargo xtask test` (one at a time: `--test-threads=1`).

mod harness;

mod check;
mod cli;
mod clsact;
mod container;
mod failures;
mod flush;
mod generate;
mod iface;
mod ip;
mod lifecycle;
mod load;
mod local;
mod loopback;
mod metrics;
mod overflow;
mod quota;
mod reload;
mod report;
mod resize;
mod stats;
mod systemd;
mod tun;
mod uid;
mod uninstall;
