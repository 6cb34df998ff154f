//! A virtual-time simulation of hookgate at internet scale.
//!
//! It drives the real cores — [`hookgate_core::Receiver`] and [`hookgate_core::Processor`],
//! through the local event source — over the in-memory ledger and queue, which hold AWS's
//! limits (SQS's in-flight limit, DynamoDB's writes per partition; see
//! [`hookgate_core::memory`]), all on one simulated clock: hours of traffic run in seconds, and
//! a design that would hit a wall on AWS hits it here, in the counters of each simulated
//! minute.
//!
//! - [`profile`]: what is sent (rates, sources, copies, outages), for how long, at what scale.
//! - [`simulation`]: the run.
//! - [`report`]: what it shows, per simulated minute and in total.
//!
//! `hookgate simulate --profile <name or file>` runs a profile and prints its rows; the
//! scenario tests in `tests/scenarios.rs` assert on them. See `docs/scale.md`.

pub mod profile;
pub mod report;
pub mod simulation;

pub use profile::{builtin, Profile, ProfileError};
pub use report::{Latency, Limits, MinuteRow, Report};
pub use simulation::{limits, run, SimError};
