//! The status index's partition key: each status spread over [`STATUS_SHARDS`] write shards.
//!
//! It exists because an index keyed by the status alone has six partition key values, and every
//! status change writes two of them (a delete under the old status, a put under the new one).
//! DynamoDB takes about 1,000 writes/s per partition key value, and an index that cannot keep
//! up throttles writes to the table itself: somewhere between 500 and 1,000 events/s the
//! receiver's claim would start failing. Keyed by `status#shard`, with the shard a stable hash
//! of the event id, a status's writes spread evenly over [`STATUS_SHARDS`] key values.
//!
//! **Why 32 shards.** The busiest statuses are `received` and `processing`: every event enters
//! and leaves each once, two index writes per event. At the target of 10,000 events/s that is
//! 20,000 writes/s per status, 625/s per shard with 32 shards: 62 % of the per-key limit, so
//! retries (one more pass through `processing` and `failed` each), uneven arrival and a burst
//! of 1.6× fit, and the design reaches its wall near 16,000 events/s (64 shards would double
//! that). More shards cost the listings: a listing queries every shard of a status
//! concurrently and merges them newest first (32 `Query` calls per status, 192 for a listing
//! of every status), so the count is no larger than the target needs.
//!
//! Changing [`STATUS_SHARDS`] moves events to other keys: `hookgate setup` rewrites every
//! item whose stored key differs from [`status_partition`]'s (the same backfill that migrates
//! a table from the unsharded index).

use crate::envelope::EventId;
use crate::ledger::EventStatus;

/// How many index partitions each status is spread over.
pub const STATUS_SHARDS: u32 = 32;

/// The index partition key of an event with `status`: `"{status}#{shard}"`, the shard from a
/// stable hash of the event id (the same on every platform and release).
pub fn status_partition(status: EventStatus, event_id: &EventId) -> String {
    format!("{}#{}", status.as_str(), shard_of(event_id))
}

/// The shard of `event_id`: FNV-1a (32 bit) of its text, modulo [`STATUS_SHARDS`].
pub fn shard_of(event_id: &EventId) -> u32 {
    let hash = event_id
        .as_str()
        .bytes()
        .fold(0x811c_9dc5_u32, |hash, byte| {
            (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
        });
    hash % STATUS_SHARDS
}

/// Every index partition key of `status`, shard 0 first.
pub fn status_partitions(status: EventStatus) -> impl Iterator<Item = String> {
    (0..STATUS_SHARDS).map(move |shard| format!("{}#{shard}", status.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> EventId {
        EventId::parse(text).unwrap()
    }

    #[test]
    fn the_key_is_the_status_and_a_stable_shard() {
        // Pinned: a stored key must read the same in every later release.
        assert_eq!(
            status_partition(EventStatus::Failed, &id("stripe:evt_1")),
            format!("failed#{}", shard_of(&id("stripe:evt_1")))
        );
        assert_eq!(shard_of(&id("stripe:evt_1")), 0xb818_f44b % STATUS_SHARDS);
        assert_eq!(shard_of(&id("stripe:evt_1")), 11);
        assert_eq!(
            status_partition(EventStatus::DeadLettered, &id("a:b")),
            status_partition(EventStatus::DeadLettered, &id("a:b"))
        );
        let keys: Vec<String> = status_partitions(EventStatus::Queued).collect();
        assert_eq!(keys.len(), STATUS_SHARDS as usize);
        assert_eq!(keys[0], "queued#0");
        assert!(keys.contains(&status_partition(EventStatus::Queued, &id("x:y"))));
    }

    #[test]
    fn events_spread_evenly_over_the_shards() {
        let mut counts = vec![0u32; STATUS_SHARDS as usize];
        for n in 0..32_000 {
            counts[shard_of(&id(&format!("stripe:evt_{n:08}"))) as usize] += 1;
        }
        // 1,000 each on average: none more than 15 % off.
        assert!(
            counts.iter().all(|c| (850..=1150).contains(c)),
            "{counts:?}"
        );
    }
}
