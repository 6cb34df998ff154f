//! The partition key of the `by-status` index: which index partition an event's status is
//! written under.
//!
//! DynamoDB takes about 1,000 writes per second per partition key value of an index, and every
//! status change of an event writes its index twice (out of the old partition, into the new).
//! One key per status is six partitions for the whole table; this module is the one place that
//! decides the key, so the DynamoDB ledger's item mapping and the in-memory ledger's write
//! accounting (see [`crate::memory::MemoryLedger::counters`]) agree on it.

use crate::envelope::EventId;
use crate::ledger::EventStatus;

/// Index partitions per status.
pub const STATUS_SHARDS: u32 = 1;

/// The `by-status` index partition key of an event with `status`: today the status itself
/// (`queued`, …), the same for every event.
pub fn status_partition(status: EventStatus, event_id: &EventId) -> String {
    let _ = event_id;
    status.as_str().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_of_a_status_shares_one_partition() {
        let a = EventId::parse("demo:a").unwrap();
        let b = EventId::parse("demo:b").unwrap();
        assert_eq!(STATUS_SHARDS, 1);
        for status in EventStatus::ALL {
            assert_eq!(status_partition(status, &a), status.as_str());
            assert_eq!(status_partition(status, &a), status_partition(status, &b));
        }
    }
}
