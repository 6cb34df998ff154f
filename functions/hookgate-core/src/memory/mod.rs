//! In-memory backends for the ports: the local stack's default, and the fast test double.
//!
//! They are not mocks: they keep the same semantics as DynamoDB and SQS (conditional claims,
//! leases, visibility, receive counts, redrive) and pass the same contract suites.

mod archive;
mod ledger;
mod queue;

pub use archive::MemoryArchive;

pub use ledger::MemoryLedger;
pub use queue::{MemoryQueue, Redrive};
