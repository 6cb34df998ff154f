//! Completions the ledger has not accepted yet: handler successes the processor could not
//! record, kept in process so a redelivery records them instead of running the handler again.
//!
//! Why: when the ledger write that ends a successful attempt fails (DynamoDB throttled or
//! down), the message must not be acknowledged — the ledger would say the event is still
//! running — so SQS delivers it again. Without this store the ledger would then grant a new
//! attempt once the lease expired, and the handler would run twice. With it, the
//! [`Processor`](crate::Processor) (built once per Lambda container, which a warm container
//! reuses) first records the kept completion and acknowledges the message without running the
//! handler.
//!
//! The store is bounded ([`PendingCompletions::new`]'s capacity) and lives only as long as the
//! process: a completion kept in another container, or lost in a crash, cannot help (see the
//! README's "Processing guarantees").
//!
//! Each entry is taken by one caller at a time: [`PendingCompletions::take`] hands out a
//! [`PendingCompletion`] and marks the entry in flight; the entry leaves the store when its
//! holder calls [`PendingCompletion::resolved`], and is released for the next try when the
//! holder is dropped (a failed write, or a cancelled future).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::envelope::EventId;
use crate::ledger::AttemptEnd;

/// Most completions kept by default.
pub const DEFAULT_CAPACITY: usize = 1000;

struct Entry {
    end: AttemptEnd,
    in_flight: bool,
}

/// Successful attempts ended but not yet recorded in the ledger, by event id.
pub struct PendingCompletions {
    entries: Mutex<HashMap<EventId, Entry>>,
    capacity: usize,
}

impl std::fmt::Debug for PendingCompletions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCompletions")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Default for PendingCompletions {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

/// What [`PendingCompletions::take`] found for an event.
#[derive(Debug)]
pub enum Take<'a> {
    /// No completion is kept for it.
    None,
    /// One is kept, and another caller is recording it right now.
    InFlight,
    /// One is kept; it is this caller's to record.
    Ready(PendingCompletion<'a>),
}

/// A kept completion taken by one caller. Call [`PendingCompletion::resolved`] once the
/// ledger has it (or no longer wants it); dropped otherwise, it goes back for a later try.
#[derive(Debug)]
pub struct PendingCompletion<'a> {
    store: &'a PendingCompletions,
    end: AttemptEnd,
    resolved: bool,
}

impl PendingCompletion<'_> {
    /// The attempt's end, to hand to `Ledger::finish_attempt`.
    pub fn end(&self) -> &AttemptEnd {
        &self.end
    }

    /// Removes the completion from the store: the ledger recorded it, or a later attempt
    /// superseded it.
    pub fn resolved(mut self) {
        self.store.lock().remove(&self.end.event_id);
        self.resolved = true;
    }
}

impl Drop for PendingCompletion<'_> {
    fn drop(&mut self) {
        if self.resolved {
            return;
        }
        if let Some(entry) = self.store.lock().get_mut(&self.end.event_id) {
            entry.in_flight = false;
        }
    }
}

impl PendingCompletions {
    /// An empty store keeping at most `capacity` completions.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<EventId, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `end`. Returns `false` (and keeps nothing) when the store is full; an entry for
    /// the same event is replaced.
    pub fn keep(&self, end: AttemptEnd) -> bool {
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&end.event_id) {
            return false;
        }
        entries.insert(
            end.event_id.clone(),
            Entry {
                end,
                in_flight: false,
            },
        );
        true
    }

    /// Takes the completion kept for `event_id`, if any and if no one else holds it.
    pub fn take(&self, event_id: &EventId) -> Take<'_> {
        let mut entries = self.lock();
        match entries.get_mut(event_id) {
            None => Take::None,
            Some(entry) if entry.in_flight => Take::InFlight,
            Some(entry) => {
                entry.in_flight = true;
                Take::Ready(PendingCompletion {
                    store: self,
                    end: entry.end.clone(),
                    resolved: false,
                })
            }
        }
    }

    /// Takes up to `max` kept completions no one holds, skipping events `skip` names.
    pub fn take_some(
        &self,
        max: usize,
        skip: impl Fn(&EventId) -> bool,
    ) -> Vec<PendingCompletion<'_>> {
        let mut entries = self.lock();
        entries
            .iter_mut()
            .filter(|(id, entry)| !entry.in_flight && !skip(id))
            .take(max)
            .map(|(_, entry)| {
                entry.in_flight = true;
                PendingCompletion {
                    store: self,
                    end: entry.end.clone(),
                    resolved: false,
                }
            })
            .collect()
    }

    /// How many completions are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::ledger::{Attempt, EventStatus};

    fn end(id: &str) -> AttemptEnd {
        AttemptEnd {
            deliveries: Vec::new(),
            next_attempt_at: None,
            event_id: EventId::parse(id).unwrap(),
            attempt: Attempt {
                attempt: 1,
                at: Timestamp::from_secs(1),
                duration_ms: 1,
                success: true,
                error: None,
                note: None,
                url: None,
                status_code: None,
            },
            status: EventStatus::Processed,
            now: Timestamp::from_secs(1),
        }
    }

    fn id(s: &str) -> EventId {
        EventId::parse(s).unwrap()
    }

    #[test]
    fn a_taken_completion_is_in_flight_until_resolved_or_dropped() {
        let store = PendingCompletions::new(10);
        assert!(matches!(store.take(&id("demo:a")), Take::None));
        assert!(store.keep(end("demo:a")));
        let Take::Ready(taken) = store.take(&id("demo:a")) else {
            panic!("expected the kept completion");
        };
        assert_eq!(taken.end().event_id.as_str(), "demo:a");
        assert!(matches!(store.take(&id("demo:a")), Take::InFlight));
        drop(taken); // the write failed: back for a later try
        let Take::Ready(taken) = store.take(&id("demo:a")) else {
            panic!("released on drop");
        };
        taken.resolved();
        assert!(store.is_empty());
        assert!(matches!(store.take(&id("demo:a")), Take::None));
    }

    #[test]
    fn the_store_is_bounded_but_replaces_an_events_entry() {
        let store = PendingCompletions::new(2);
        assert!(store.keep(end("demo:a")));
        assert!(store.keep(end("demo:b")));
        assert!(!store.keep(end("demo:c")), "full");
        assert!(store.keep(end("demo:a")), "same event: replaced");
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn take_some_skips_held_and_named_events_and_stops_at_max() {
        let store = PendingCompletions::new(10);
        for name in ["demo:a", "demo:b", "demo:c", "demo:d"] {
            store.keep(end(name));
        }
        let Take::Ready(held) = store.take(&id("demo:a")) else {
            panic!("kept");
        };
        let taken = store.take_some(10, |id| id.as_str() == "demo:b");
        let mut names: Vec<&str> = taken.iter().map(|p| p.end().event_id.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["demo:c", "demo:d"]);
        drop(taken);
        assert_eq!(store.take_some(1, |_| false).len(), 1);
        drop(held);
        assert_eq!(store.len(), 4);
    }
}
