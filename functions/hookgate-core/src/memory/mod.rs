//! In-memory backends for the ports: the local stack's default, and the fast test double.
//!
//! They are not mocks: they keep the same semantics as DynamoDB and SQS (conditional claims,
//! leases, visibility, receive counts, redrive) and pass the same contract suites. They also
//! enforce, or count against, the AWS limits that decide whether a design holds at scale
//! (SQS's in-flight limit, DynamoDB's writes per partition), so a test or the simulation sees a
//! design hit a wall.

mod archive;
mod gate;
mod ledger;
mod queue;
mod target;

pub use archive::MemoryArchive;
pub use gate::MemoryGate;
pub use target::RecordingTarget;

pub use ledger::{LedgerCounters, LedgerLimits, MemoryLedger, DYNAMODB_PARTITION_WRITES_PER_SEC};
pub use queue::{
    MemoryQueue, QueueCounters, QueueLimits, Redrive, SQS_MAX_DELAY, SQS_MAX_IN_FLIGHT,
};
