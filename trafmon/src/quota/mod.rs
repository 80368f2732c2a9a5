//! Quotas: caps per user, IP group or address, with warnings, projections,
//! alerts and enforcement in the kernel.
//!
//! - [`spec`]: the `[[quota]]` configuration;
//! - [`period`]: the period that holds an instant;
//! - [`engine`]: the state machine (pure, tested with a fake clock);
//! - [`persist`]: its state and the usage, in the store;
//! - [`kernel`]: the enforcement maps;
//! - [`alert`]: the configured command;
//! - [`run`]: the agent's side of it, after every flush.

pub mod alert;
pub mod engine;
pub mod kernel;
pub mod period;
pub mod persist;
pub mod run;
pub mod spec;
