//! Events this container settled a moment ago, so that a repeat of one is answered without
//! asking the ledger.
//!
//! Why: providers deliver at least once, and so does SQS. A repeat usually reaches a warm
//! container soon after the first copy; without this store each repeat is one more DynamoDB
//! request, billed, whose answer is already known (docs/cost.md). Two containers keep one:
//!
//! - the processor remembers the events it recorded `processed` (at a generation): a later
//!   copy of one, at that generation or an older one, is acknowledged without the lease the
//!   ledger would refuse;
//! - the receiver remembers the events it queued itself (claimed, and the enqueue answered):
//!   the provider's repeat of one is answered `200 duplicate` without the claim the ledger
//!   would refuse.
//!
//! It is only ever a shortcut to the answer the ledger would give: `processed` is final for a
//! generation (a replay opens a new, higher one, which is not covered), an event queued is
//! durably on its way, and an entry lives far shorter than the dedup window (at most half of
//! it), after which the receiver may accept the same id as a new event. Only this container's
//! own outcomes are remembered, never a ledger's answer about an older claim, whose window
//! may be about to end. Bounded; lost with the container, which only costs the ledger request
//! again.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::clock::Timestamp;
use crate::envelope::EventId;

/// Events remembered at most.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// How long an event is remembered at most (less if the dedup window is shorter).
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

/// Events settled lately, with the generation and until when each is remembered.
pub struct RecentlySettled {
    entries: Mutex<HashMap<EventId, (u64, Timestamp)>>,
    capacity: usize,
    ttl: Duration,
}

impl RecentlySettled {
    /// A store of at most `capacity` events, each remembered for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
            ttl,
        }
    }

    /// The store for a dedup window of `dedup_window`: entries live at most half of it.
    pub fn for_dedup_window(dedup_window: Duration) -> Self {
        Self::new(DEFAULT_CAPACITY, DEFAULT_TTL.min(dedup_window / 2))
    }

    /// `id` is settled at `generation` (processed, or queued at generation 0), as of `now`.
    pub fn remember(&self, id: &EventId, generation: u64, now: Timestamp) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        let until = now.plus(self.ttl);
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(id) {
            entries.retain(|_, (_, entry_until)| *entry_until > now);
            if entries.len() >= self.capacity {
                // Full of live entries: start again (a miss only costs a ledger write).
                entries.clear();
            }
        }
        let entry = entries.entry(id.clone()).or_insert((generation, until));
        if generation >= entry.0 {
            *entry = (generation, until);
        }
    }

    /// Whether a copy of `id` at `generation` is one of an event settled at that generation
    /// or a later one, remembered until after `now`.
    pub fn covers(&self, id: &EventId, generation: u64, now: Timestamp) -> bool {
        self.lock()
            .get(id)
            .is_some_and(|(processed, until)| *processed >= generation && *until > now)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<EventId, (u64, Timestamp)>> {
        // Every change under the lock completes before it is released.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> EventId {
        EventId::parse(&format!("demo:e{n}")).unwrap()
    }

    #[test]
    fn a_copy_of_a_processed_generation_or_an_older_one_is_covered() {
        let store = RecentlySettled::new(10, Duration::from_secs(60));
        let t = Timestamp::from_secs(1_000);
        assert!(!store.covers(&id(1), 0, t));
        store.remember(&id(1), 1, t);
        assert!(store.covers(&id(1), 0, t), "the original, superseded");
        assert!(store.covers(&id(1), 1, t));
        assert!(!store.covers(&id(1), 2, t), "a later replay is not");
        assert!(!store.covers(&id(2), 0, t));
        // An older generation recorded late does not lower what is remembered.
        store.remember(&id(1), 0, t);
        assert!(store.covers(&id(1), 1, t));
    }

    #[test]
    fn entries_expire_and_the_store_stays_bounded() {
        let store = RecentlySettled::new(2, Duration::from_secs(60));
        let t = Timestamp::from_secs(1_000);
        store.remember(&id(1), 0, t);
        assert!(store.covers(&id(1), 0, t.plus(Duration::from_secs(59))));
        assert!(!store.covers(&id(1), 0, t.plus(Duration::from_secs(60))));
        store.remember(&id(2), 0, t);
        store.remember(&id(3), 0, t.plus(Duration::from_secs(61)));
        assert!(store.covers(&id(3), 0, t.plus(Duration::from_secs(61))));
        assert!(store.lock().len() <= 2);
    }

    #[test]
    fn a_short_dedup_window_shortens_the_memory() {
        let store = RecentlySettled::for_dedup_window(Duration::from_secs(60));
        let t = Timestamp::from_secs(1_000);
        store.remember(&id(1), 0, t);
        assert!(store.covers(&id(1), 0, t.plus(Duration::from_secs(29))));
        assert!(!store.covers(&id(1), 0, t.plus(Duration::from_secs(30))));
    }
}
