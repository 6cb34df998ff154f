//! What a handler knows about the event it runs for, besides the event itself.
//!
//! The processor builds one [`Context`] per attempt; handlers read it to log, to make their
//! effects idempotent (`event_id` is stable across retries, replays and redeliveries), and to
//! stop before the Lambda's deadline (`time_left`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::clock::Timestamp;
use crate::envelope::{Envelope, EventId, SourceName};

/// The event an attempt runs for, and the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The event's id: the same on every retry, replay and redelivery (dedupe on it).
    pub event_id: EventId,
    /// The source it arrived on.
    pub source: SourceName,
    /// The provider's event type.
    pub event_type: String,
    /// When the receiver accepted it.
    pub received_at: Timestamp,
    /// The request headers kept with it (`content-type`, the provider's event headers; never
    /// a signature).
    pub headers: BTreeMap<String, String>,
    /// This attempt's number, from 1 (every start counts, replays included).
    pub attempt: u32,
    /// How many times the queue has delivered this message, this time included (counted across
    /// the delayed copies a long retry re-sends, see `docs/reliability.md`).
    pub receive_count: u32,
    /// The event's generation: 0 as received, one more for each replay.
    pub generation: u64,
    /// When the handler must have finished: its timeout, or the invocation's deadline.
    pub deadline: Instant,
}

impl Context {
    /// The context of a first attempt at `event`, due in `budget` (tests, the local stack).
    pub fn first_attempt(event: &Envelope, budget: Duration) -> Self {
        Self {
            event_id: event.event_id.clone(),
            source: event.source.clone(),
            event_type: event.event_type.clone(),
            received_at: event.received_at,
            headers: event.headers.clone(),
            attempt: 1,
            receive_count: 1,
            generation: 0,
            deadline: Instant::now() + budget,
        }
    }

    /// How long the handler has left before it is cancelled.
    pub fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Whether this is a replay (an operator ran the event again).
    pub fn is_replay(&self) -> bool {
        self.generation > 0
    }

    /// The kept header `name` (lower case), if the request had it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}
