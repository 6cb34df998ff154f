//! Records that are not hookgate envelopes: failed alone, moved to the DLQ, and written in the
//! ledger when the message names its event.
//!
//! A body the receiver did not write (not JSON, JSON of another shape, a base64 body that is not
//! base64, a body cut off, an event id that does not parse, an unknown version) can never be run,
//! so the record goes to the DLQ at once; the other records of its batch are not affected. When
//! the message's `event_id` attribute (set by the receiver, readable without the body) is a valid
//! event id, that event's ledger record gets an attempt saying why — `dead_lettered` once the
//! message is in the DLQ, `failed` if the move did not happen — so `GET /events/{id}` explains
//! where it went. Without a usable `event_id` attribute only the DLQ keeps it
//! (`hookgate dlq list`). A processed event, or one another consumer is running, is left as it is:
//! a broken copy says nothing about the event.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{Processor, RecordOutcome, Settle};
use crate::envelope::{EventId, SourceName};
use crate::ledger::{truncate_error, Attempt, AttemptEnd, AttemptStart, EventStatus, StartOutcome};
use crate::queue::{attr, ReceivedMessage};

/// What a malformed message's attributes say about its event.
struct Identity {
    event_id: EventId,
    source: SourceName,
    event_type: String,
    /// The `generation` attribute (0 without one): a malformed copy of a message a replay has
    /// superseded leaves the ledger alone.
    generation: u64,
}

/// The event a message names in its attributes: the `event_id` attribute, the `source`
/// attribute or else the id's `<source>:` prefix, and the `event_type` attribute or `unknown`.
fn identity(message: &ReceivedMessage) -> Option<Identity> {
    let event_id = EventId::parse(message.attributes.get(attr::EVENT_ID)?).ok()?;
    let source = message
        .attributes
        .get(attr::SOURCE)
        .and_then(|s| SourceName::parse(s).ok())
        .or_else(|| {
            let (prefix, _) = event_id.as_str().split_once(':')?;
            SourceName::parse(prefix).ok()
        })?;
    let event_type = message
        .attributes
        .get(attr::EVENT_TYPE)
        .filter(|t| !t.is_empty() && t.len() <= 200 && !t.chars().any(char::is_control))
        .cloned()
        .unwrap_or_else(|| "unknown".to_owned());
    let generation = message
        .attributes
        .get(attr::GENERATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    Some(Identity {
        event_id,
        source,
        event_type,
        generation,
    })
}

impl Processor {
    /// Settles a record whose body is not an envelope (`error` says why): to the DLQ, and into
    /// the ledger when its attributes name the event.
    pub(super) async fn settle_malformed(
        &self,
        message: &ReceivedMessage,
        error: String,
        received: Instant,
    ) -> RecordOutcome {
        let outcome = self
            .settle(message, error.clone(), Settle::MoveToDlq, received)
            .await;
        match identity(message) {
            Some(identity) => self.record_malformed(identity, &outcome, &error).await,
            None => info!(
                message_id = %message.message_id,
                "malformed record names no valid event id; only the DLQ keeps it"
            ),
        }
        outcome
    }

    async fn record_malformed(&self, identity: Identity, outcome: &RecordOutcome, error: &str) {
        let now = self.clock.now();
        let start = AttemptStart {
            destination: None,
            event_id: identity.event_id.clone(),
            source: identity.source,
            event_type: identity.event_type,
            received_at: now,
            expires_at: now.plus(self.dedup_window).ceil_secs(),
            now,
            lease_until: now.plus(Duration::from_secs(1)),
            lease_token: crate::token::uuid().to_string(),
            generation: identity.generation,
            payload: None,
            ticket: None,
        };
        let attempt = match self.ledger.start_attempt(&start).await {
            Ok(StartOutcome::Started { attempt }) => attempt,
            Ok(
                StartOutcome::AlreadyProcessed
                | StartOutcome::Leased { .. }
                | StartOutcome::Superseded { .. }
                | StartOutcome::Stale,
            ) => {
                info!(event_id = %identity.event_id, "malformed copy of an event processed or running elsewhere; ledger left as is");
                return;
            }
            Err(e) => {
                warn!(event_id = %identity.event_id, error = %e, "could not record the malformed record");
                return;
            }
        };
        let (status, note) = match outcome {
            RecordOutcome::MovedToDlq { .. } => (
                EventStatus::DeadLettered,
                "malformed record: moved to the DLQ",
            ),
            _ => (
                EventStatus::Failed,
                "malformed record: the move to the DLQ failed; it comes back",
            ),
        };
        let end = AttemptEnd {
            deliveries: Vec::new(),
            next_attempt_at: None,
            event_id: identity.event_id,
            attempt: Attempt {
                attempt,
                at: now,
                duration_ms: 0,
                success: false,
                error: Some(truncate_error(error)),
                note: Some(note.to_owned()),
                url: None,
                status_code: None,
            },
            status,
            now: self.clock.now(),
        };
        if let Err(e) = self.ledger.finish_attempt(&end).await {
            warn!(event_id = %end.event_id, error = %e, "could not record the malformed record");
        }
    }
}
