//! The processor's stages for one record, in order: [`start`](Processor::start) (hand back
//! near the deadline, record a kept success first, keep the payload, take the lease),
//! [`invoke`](Processor::invoke) (read a claim-checked body, run the handler), the pure
//! [`decide`](super::decide), [`record`](Processor::record) (the attempt's end in the ledger)
//! and [`conclude`](Processor::conclude) (settle the message). Each stage either hands the
//! record on or settles it itself; `Processor::run` strings them together.

use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::decide::Decision;
use super::destinations::Work;
use super::{receives, BodyError, Processor, RecordOutcome, Settle, RECORDED_LATE};
use crate::archive::{ArchiveError, PayloadRef};
use crate::clock::Timestamp;
use crate::destination_policy::DestinationName;
use crate::envelope::{Envelope, EventId, QueuedEvent};
use crate::handler::{Context, Handled, HandlerError};
use crate::ledger::{
    truncate_error, Attempt, AttemptEnd, AttemptStart, EventStatus, PayloadStore, PayloadWrite,
    StartOutcome,
};
use crate::payload::{self, Placement};
use crate::pending::Take;
use crate::queue::{attr, ReceivedMessage};

/// The log target of these stages: the processor's own, as before they had a module of their
/// own (log filters and queries name `hookgate_core::processor`).
const TARGET: &str = "hookgate_core::processor";

/// The time a record has: now, the invocation's deadline, the margin kept before it, and when
/// the batch was received (SQS counts the 12 h visibility limit from there).
pub(super) struct Window {
    pub(super) now: Timestamp,
    pub(super) deadline: Timestamp,
    pub(super) margin: Duration,
    pub(super) received: Instant,
}

/// A record whose attempt has started: the lease is this processor's.
pub(super) struct Started {
    envelope: Envelope,
    generation: u64,
    pointer: Option<PayloadRef>,
    attempt: u32,
    work: Work,
}

/// A record whose handler has run.
pub(super) struct Invoked {
    event_id: EventId,
    generation: u64,
    attempt: u32,
    pub(super) result: Result<Handled, HandlerError>,
    pub(super) duration_ms: u64,
    /// The deliveries a fan-out made.
    deliveries: Vec<DestinationName>,
}

/// Whether the record stage got the attempt's end into the ledger.
pub(super) enum Recorded {
    /// It did (or a later attempt owns the event).
    Yes,
    /// It could not: a success is kept to be recorded before any rerun.
    No,
}

impl Processor {
    /// Stage 1: everything before the handler may run. `Err` is the record's outcome, settled.
    pub(super) async fn start(
        &self,
        queued: QueuedEvent,
        message: &ReceivedMessage,
        window: &Window,
    ) -> Result<Started, RecordOutcome> {
        let Window {
            now,
            deadline,
            margin,
            received,
        } = *window;
        if deadline.since(now) < margin {
            info!(
                target: TARGET,
                remaining_ms = deadline.since(now).as_millis(),
                "too close to the deadline; handed back"
            );
            let error = "handed back before the invocation's deadline".to_owned();
            return Err(self
                .settle(message, error, Settle::Retry(Duration::ZERO), received)
                .await);
        }
        // A re-sent copy received before it is due goes on waiting, out of flight.
        if let Some(outcome) = self.not_due_yet(message, now, received).await {
            return Err(outcome);
        }
        match self.pending.take(&queued.envelope.event_id) {
            Take::None => {}
            Take::InFlight => {
                let error = "its handler succeeded before; that completion is being recorded now"
                    .to_owned();
                return Err(self.back_off(message, error, received).await);
            }
            Take::Ready(kept) => {
                if let Some(outcome) = self.record_kept_first(kept, message, received).await {
                    return Err(outcome);
                }
            }
        }
        // A copy of an event this container recorded processed a moment ago: settled in
        // memory, without the lease the ledger would refuse (see `crate::settled`).
        if self
            .recent
            .covers(&queued.envelope.event_id, queued.generation, now)
        {
            info!(target: TARGET, "processed a moment ago; acknowledged without running the handler");
            return Err(RecordOutcome::AlreadyProcessed);
        }
        // What the record asks for; a delivery asks its destination's gate first (a held
        // delivery takes no lease and makes no attempt).
        let work = self.work_for(&queued);
        let destination = match &work {
            Work::Deliver { destination, .. } => {
                self.admit(destination, message, queued.envelope.received_at, now)
                    .await?;
                Some(destination.clone())
            }
            _ => None,
        };
        let payload = match self.keep_payload(&queued, receives(message)).await {
            Ok(payload) => payload,
            Err(e) => {
                warn!(target: TARGET, error = %e, "cannot archive the payload; the handler waits for it");
                return Err(self.back_off(message, e.to_string(), received).await);
            }
        };
        let QueuedEvent {
            envelope,
            generation,
            pointer,
        } = queued;
        let start = AttemptStart {
            destination,
            event_id: envelope.event_id.clone(),
            source: envelope.source.clone(),
            event_type: envelope.event_type.clone(),
            received_at: envelope.received_at,
            expires_at: now.plus(self.dedup_window).ceil_secs(),
            now,
            lease_until: deadline,
            lease_token: crate::token::uuid().to_string(),
            generation,
            payload,
            ticket: message.attributes.get(attr::RETRY_TICKET).cloned(),
        };
        match self.ledger.start_attempt(&start).await {
            Ok(StartOutcome::Started { attempt }) => {
                tracing::Span::current().record("attempt", attempt);
                Ok(Started {
                    envelope,
                    generation,
                    pointer,
                    attempt,
                    work,
                })
            }
            Ok(StartOutcome::AlreadyProcessed) => {
                self.recent.remember(&start.event_id, start.generation, now);
                info!(target: TARGET, "already processed; acknowledged without running the handler");
                Err(RecordOutcome::AlreadyProcessed)
            }
            Ok(StartOutcome::Superseded { current }) => {
                info!(
                    target: TARGET,
                    current,
                    "superseded by a replay; acknowledged without running the handler"
                );
                Err(RecordOutcome::Superseded { current })
            }
            Ok(StartOutcome::Stale) => {
                info!(
                    target: TARGET,
                    "the retry was handed to another copy of this message; acknowledged without running the handler"
                );
                Err(RecordOutcome::Stale)
            }
            Ok(StartOutcome::Leased { until }) => {
                info!(target: TARGET, lease_until = %until, "leased by another consumer; backing off");
                let error = format!("leased by another consumer until {until}");
                let wait = until.since(now) + Duration::from_secs(1);
                Err(self
                    .settle(message, error, Settle::Retry(wait), received)
                    .await)
            }
            Err(e) => {
                warn!(target: TARGET, error = %e, "cannot start the attempt");
                Err(self.back_off(message, e.to_string(), received).await)
            }
        }
    }

    /// Stage 2: the handler's call, under the route's timeout (at most `handler_timeout_secs`
    /// and the time left before the deadline), with the body read from the archive first when
    /// the message carried a pointer. `Err` is the record's outcome, settled (the body could
    /// not be read).
    pub(super) async fn invoke(
        &self,
        started: Started,
        message: &ReceivedMessage,
        window: &Window,
    ) -> Result<Invoked, RecordOutcome> {
        let Started {
            envelope,
            generation,
            pointer,
            attempt,
            work,
        } = started;
        let envelope = match pointer {
            None => envelope,
            Some(pointer) => {
                let event_id = envelope.event_id.clone();
                match self.load_body(envelope, &pointer).await {
                    Ok(envelope) => envelope,
                    Err(BodyError::Unavailable(e)) => {
                        warn!(target: TARGET, error = %e, "cannot read the payload from the archive");
                        return Err(self
                            .end_without_running(&event_id, attempt, e, false, message, window)
                            .await);
                    }
                    Err(BodyError::Lost(e)) => {
                        error!(target: TARGET, error = %e, "payload lost; to the DLQ");
                        return Err(self
                            .end_without_running(&event_id, attempt, e, true, message, window)
                            .await);
                    }
                }
            }
        };
        let chosen = self
            .handlers
            .choose(envelope.source.as_str(), &envelope.event_type);
        let ceiling = Duration::from_secs(self.settings.handler_timeout_secs);
        let budget = chosen.timeout.unwrap_or(ceiling).min(ceiling).min(
            window
                .deadline
                .since(window.now)
                .saturating_sub(window.margin / 2),
        );
        let started = Instant::now();
        let cx = Context {
            event_id: envelope.event_id.clone(),
            source: envelope.source.clone(),
            event_type: envelope.event_type.clone(),
            received_at: envelope.received_at,
            headers: envelope.headers.clone(),
            attempt,
            receive_count: receives(message),
            generation,
            deadline: started + budget,
        };
        let event_id = envelope.event_id.clone();
        let mut deliveries = Vec::new();
        let result = match work {
            Work::Handler => crate::handler::invoke(&*chosen.handler, envelope, &cx, budget).await,
            Work::Deliver { destination, body } => {
                let result = self
                    .deliver(&destination, body, envelope, &cx, budget)
                    .await;
                self.feedback(&destination, result, self.clock.now()).await
            }
            Work::FanOut { plan } => {
                let plan = match (plan, &self.destinations) {
                    (Some(plan), _) => plan,
                    (None, Some(d)) => d.routing().plan(&envelope),
                    (None, None) => Vec::new(),
                };
                let (result, names) = self
                    .fan_out(&envelope, generation, plan, message.trace_header.clone())
                    .await;
                deliveries = names;
                result
            }
        };
        Ok(Invoked {
            event_id,
            generation,
            attempt,
            result,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            deliveries,
        })
    }

    /// Stage 4: the attempt's end, as `decision` has it, in the ledger. A success the ledger
    /// cannot take is kept, to be recorded before any rerun (see [`crate::pending`]).
    pub(super) async fn record(
        &self,
        invoked: &Invoked,
        decision: Decision,
        retry_in: Option<Duration>,
        message: &ReceivedMessage,
        at: Timestamp,
    ) -> Recorded {
        let redriven = message
            .attributes
            .get(attr::REDRIVEN_AT)
            .map(|at| format!("redriven from the DLQ at {at}"));
        let note = match (redriven, decision.note()) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        let delivery = match &invoked.result {
            Ok(handled) => handled.delivery.as_ref(),
            Err(e) => e.delivery.as_ref(),
        };
        let end = AttemptEnd {
            deliveries: invoked.deliveries.clone(),
            event_id: invoked.event_id.clone(),
            attempt: Attempt {
                attempt: invoked.attempt,
                at,
                duration_ms: invoked.duration_ms,
                success: invoked.result.is_ok(),
                error: invoked
                    .result
                    .as_ref()
                    .err()
                    .map(|e| truncate_error(&e.message)),
                note,
                url: delivery.map(|d| d.url.clone()),
                status_code: delivery.and_then(|d| d.status_code),
            },
            status: decision.status(),
            now: self.clock.now(),
            next_attempt_at: retry_in.map(|d| self.clock.now().plus(d)),
        };
        if self.record_end(&end).await {
            if end.status == EventStatus::Processed {
                self.recent
                    .remember(&invoked.event_id, invoked.generation, end.now);
            }
            return Recorded::Yes;
        }
        if invoked.result.is_ok() {
            // Not acknowledged: the ledger would claim the event still runs. The lease keeps a
            // concurrent copy away; the kept completion keeps this container from running the
            // handler again on the redelivery.
            let attempt = invoked.attempt;
            let mut kept = end;
            kept.attempt.note = Some(match kept.attempt.note.take() {
                Some(note) => format!("{note}; {RECORDED_LATE}"),
                None => RECORDED_LATE.to_owned(),
            });
            if self.pending.keep(kept) {
                warn!(target: TARGET, attempt, "success kept to be recorded before any rerun");
            } else {
                error!(
                    target: TARGET,
                    attempt,
                    "too many unrecorded successes kept; a redelivery may run the handler again"
                );
            }
        }
        Recorded::No
    }

    /// Stage 5: the message settled as `decision` says — acknowledged, backed off, redriven or
    /// moved to the DLQ. A success not recorded is not acknowledged: it comes back, and the
    /// kept completion answers it.
    pub(super) async fn conclude(
        &self,
        invoked: Invoked,
        decision: Decision,
        retry_in: Option<Duration>,
        recorded: Recorded,
        message: &ReceivedMessage,
        received: Instant,
    ) -> RecordOutcome {
        let attempt = invoked.attempt;
        let duration_ms = invoked.duration_ms;
        match (invoked.result, recorded) {
            (Ok(_), Recorded::Yes) => {
                info!(target: TARGET, attempt, duration_ms, "event processed");
                RecordOutcome::Processed
            }
            (Ok(_), Recorded::No) => {
                let error = "handler succeeded but the ledger could not record it".to_owned();
                self.back_off(message, error, received).await
            }
            (Err(e), _) => {
                warn!(target: TARGET, attempt, duration_ms, status = %decision.status(), error = %truncate_error(&e.message), "attempt failed");
                let how = match decision {
                    Decision::MoveToDlq => Settle::MoveToDlq,
                    Decision::Redrive { by_queue: true, .. } => Settle::Redrive,
                    Decision::Redrive {
                        by_queue: false, ..
                    } => Settle::DeadLetter,
                    Decision::Retry { .. } => Settle::Retry(retry_in.unwrap_or_default()),
                    // A failed result never decides `Done`; settle it as a retry if it did.
                    Decision::Done => Settle::Retry(Duration::ZERO),
                };
                self.settle(message, e.message, how, received).await
            }
        }
    }

    /// Fails the record with `error`, back on the queue after the usual backoff.
    async fn back_off(
        &self,
        message: &ReceivedMessage,
        error: String,
        received: Instant,
    ) -> RecordOutcome {
        let delay = self.retry.delay(receives(message), None, &mut rand::rng());
        self.settle(message, error, Settle::Retry(delay), received)
            .await
    }

    /// Keeps the payload of an event first taken (see [`crate::payload`]): the ledger write
    /// recording it (inline, or an archive object this puts first), or `None` when there is
    /// nothing to record. The ledger records it only if it has none yet.
    async fn keep_payload(
        &self,
        queued: &QueuedEvent,
        receive_count: u32,
    ) -> Result<Option<PayloadWrite>, ArchiveError> {
        let envelope = &queued.envelope;
        if let Some(pointer) = &queued.pointer {
            // The receiver archived it; record what the pointer says.
            return Ok(Some(PayloadWrite {
                info: crate::ledger::PayloadInfo {
                    bytes: pointer.size,
                    sha256: pointer.sha256.clone(),
                    stored: PayloadStore::Archive,
                },
                inline: None,
            }));
        }
        match payload::placement(envelope, &self.archive_config) {
            Placement::Inline(compressed) => Ok(Some(payload::write_for(
                envelope,
                PayloadStore::Inline,
                Some(compressed),
            ))),
            Placement::Archive | Placement::ClaimCheck => {
                let Some(archive) = &self.archive else {
                    return Ok(None);
                };
                // A redelivery may find it archived by an earlier receive: a HEAD, not a PUT.
                if receive_count > 1 && archive.exists(&envelope.event_id).await? {
                    return Ok(Some(payload::write_for(
                        envelope,
                        PayloadStore::Archive,
                        None,
                    )));
                }
                archive.put(envelope).await?;
                Ok(Some(payload::write_for(
                    envelope,
                    PayloadStore::Archive,
                    None,
                )))
            }
            Placement::NotKept => Ok(None),
        }
    }

    /// The body a pointer message names, read from the archive and checked against the
    /// pointer's size and SHA-256.
    async fn load_body(
        &self,
        envelope: Envelope,
        pointer: &PayloadRef,
    ) -> Result<Envelope, BodyError> {
        let Some(archive) = &self.archive else {
            return Err(BodyError::Lost(format!(
                "payload_missing: the body is in the archive ({}) but no archive is configured",
                pointer.key
            )));
        };
        match archive.get(&envelope.event_id).await {
            Ok(Some(archived)) if pointer.matches(&archived.body) => Ok(Envelope {
                body: archived.body,
                ..envelope
            }),
            Ok(Some(_)) => Err(BodyError::Lost(format!(
                "payload_corrupt: the archived body does not match the message's size {} and SHA-256 {}",
                pointer.size, pointer.sha256
            ))),
            Ok(None) => Err(BodyError::Lost(format!(
                "payload_missing: no archived payload at {}",
                pointer.key
            ))),
            Err(ArchiveError::Corrupt(e)) => Err(BodyError::Lost(format!("payload_corrupt: {e}"))),
            Err(ArchiveError::Unavailable(e)) => Err(BodyError::Unavailable(format!(
                "archive unavailable: {e}"
            ))),
        }
    }

    /// Ends an attempt whose handler could not run because its body could not be read:
    /// retried later (`lost` false), or dead-lettered at once with the reason (`lost`).
    async fn end_without_running(
        &self,
        event_id: &EventId,
        attempt: u32,
        error: String,
        lost: bool,
        message: &ReceivedMessage,
        window: &Window,
    ) -> RecordOutcome {
        let (at, received) = (window.now, window.received);
        let (status, how, note) = if lost {
            (
                EventStatus::DeadLettered,
                Settle::MoveToDlq,
                Some("permanent failure: moved to the DLQ".to_owned()),
            )
        } else {
            let delay = self.retry.delay(receives(message), None, &mut rand::rng());
            (EventStatus::Failed, Settle::Retry(delay), None)
        };
        let next_attempt_at = match &how {
            Settle::Retry(delay) => Some(self.clock.now().plus(*delay)),
            _ => None,
        };
        let end = AttemptEnd {
            deliveries: Vec::new(),
            event_id: event_id.clone(),
            attempt: Attempt {
                attempt,
                at,
                duration_ms: 0,
                success: false,
                error: Some(truncate_error(&error)),
                note,
                url: None,
                status_code: None,
            },
            status,
            now: self.clock.now(),
            next_attempt_at,
        };
        self.record_end(&end).await;
        self.settle(message, error, how, received).await
    }
}
