//! The processor core: one SQS batch in, a [`BatchOutcome`] (→ `batchItemFailures`) out.
//!
//! For each record, concurrently up to `concurrency`:
//! 1. If the invocation's deadline is closer than `deadline_margin_ms`, the record is handed
//!    back (visibility reset to 0) rather than started and cut off mid-way.
//! 2. The ledger grants a lease (until the deadline): a processed event is acknowledged without
//!    running its handler again; one leased by another consumer backs off until that lease ends.
//!    A success this processor could not record earlier is recorded first instead, and the
//!    message acknowledged without a new attempt (see [`crate::pending`]).
//! 3. The handler chosen by `(source, type)` runs under a per-message timeout; a panic in it is
//!    caught and fails only its record, and one that overruns is cancelled.
//! 4. The attempt is recorded, then the message is settled: success → acknowledged; a
//!    permanent failure → moved to the DLQ at once; the last allowed receive → visibility 0 so
//!    the queue's redrive policy moves it to the DLQ now (or moved there at once, when SQS's own
//!    count of this copy is short of the maximum); any other failure → retried after the
//!    retry schedule's delay, or the backoff's (exponential, capped, full jitter); a handler's
//!    `retry_after` wins.
//!
//! ## Retries out of flight
//!
//! A message waiting on its visibility timeout counts against SQS's in-flight limit (about
//! 120,000 per queue, beyond which long polls return nothing — for every source). So only a
//! retry due within `retry_hold_max_secs` waits that way. A later one is **re-sent**: a copy of
//! the message goes on the queue with `DelaySeconds` (at most 15 min) and attributes saying when
//! it is due ([`attr::DUE_AT`]), how many receives the earlier copies had
//! ([`attr::RECEIVES_BEFORE`]) and its retry ticket ([`attr::RETRY_TICKET`]); the ledger hands
//! the event's retry to that ticket ([`crate::ledger::HandOff`], which also records
//! `next_attempt_at`); and the original is acknowledged (the event source deletes it). A copy
//! received before it is due is passed on the same way to another, until it is due.
//!
//! The ledger's ticket tells the copies apart: an attempt starts only from the copy holding it
//! ([`StartOutcome::Stale`](crate::ledger::StartOutcome::Stale) otherwise). The copy is sent
//! before the hand-off is recorded, and the original deleted after: a crash before the hand-off
//! leaves the original the live copy (the new one is stale when it comes), a crash after it
//! leaves the new copy live (the original, redelivered, is stale). Nothing is lost, and no
//! attempt runs twice.
//!
//! Receives are counted across copies (`receives_before` + SQS's `ApproximateReceiveCount`,
//! which restarts with each copy): that count decides the backoff, the schedule's entry and the
//! last allowed receive, and a copy out of receives is moved to the DLQ by the processor itself
//! when SQS's own count has not reached the redrive policy's maximum. A copy passed on before it
//! is due ran no attempt: its successor carries the same count of earlier receives (a 10 h
//! delay is forty 15-minute legs, not forty receives).
//!
//! Every line logged about a record is inside an `event` span: `event_id`, `source`, `type`,
//! `message_id`, `receive_count`, `xray_trace_id` (the receiver's trace), and `attempt` once the
//! ledger has started one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
use tracing::{debug, error, info, warn, Instrument};

use crate::archive::Archive;
use crate::backoff::RetryPolicy;
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::config::ArchiveConfig;
use crate::config::{Config, ProcessorConfig};
use crate::envelope::EventId;
use crate::envelope::QueuedEvent;
use crate::handler::Handlers;
use crate::ledger::{AttemptEnd, HandOff, Ledger, LedgerError};
use crate::metrics::{self, Metrics};
use crate::pending::{PendingCompletion, PendingCompletions};
use crate::queue::{
    attr, OutgoingMessage, Queue, ReceivedMessage, MAX_SEND_DELAY, MAX_VISIBILITY_TIMEOUT,
};
use crate::settled::RecentlySettled;
use crate::xray::AWS_TRACE_HEADER;

mod decide;
mod destinations;
mod malformed;
mod observation;
mod stages;

use decide::{decide, Decision, Verdict};
pub use destinations::Destinations;
use observation::{Counted, Ran};
use stages::Window;

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The handler ran and succeeded.
    Processed,
    /// The event was processed before; acknowledged without running the handler.
    AlreadyProcessed,
    /// A replay superseded this message (it is of an older generation than the event):
    /// acknowledged without running the handler.
    Superseded {
        /// The event's generation.
        current: u64,
    },
    /// Failed permanently and moved to the DLQ (no longer on the queue).
    MovedToDlq {
        /// Why.
        error: String,
    },
    /// Failed (`error`), or not due yet (`error` is `None`): the event's next attempt was
    /// handed to a delayed copy of the message, due at `due`, and this one is acknowledged.
    Rescheduled {
        /// Why, when an attempt failed.
        error: Option<String>,
        /// When the next attempt is due.
        due: Timestamp,
    },
    /// A copy of the message that no longer holds the event's retry (see "Retries out of
    /// flight" above): acknowledged without running the handler.
    Stale,
    /// A delivery held without an attempt — its destination is open, disabled or over its
    /// rate limit — and handed to a delayed copy of the message, due at `until`.
    Held {
        /// Why, in words.
        why: String,
        /// When it is tried again.
        until: Timestamp,
    },
    /// Failed; the message stays on the queue and comes back after `retry_in`.
    Failed {
        /// Why.
        error: String,
        /// The visibility set for the next delivery, if it could be set.
        retry_in: Option<Duration>,
        /// This was its last allowed receive: the redrive policy moves it to the DLQ next.
        dead_lettered: bool,
    },
}

impl RecordOutcome {
    /// Whether the record is settled (not to be named in `batchItemFailures`).
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            RecordOutcome::Processed
                | RecordOutcome::AlreadyProcessed
                | RecordOutcome::Superseded { .. }
                | RecordOutcome::MovedToDlq { .. }
                | RecordOutcome::Rescheduled { .. }
                | RecordOutcome::Stale
                | RecordOutcome::Held { .. }
        )
    }
}

/// The outcome of a batch, record by record, in the batch's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// `(message id, outcome)` per record.
    pub records: Vec<(String, RecordOutcome)>,
}

impl BatchOutcome {
    /// Message ids of the failed records.
    pub fn failed_ids(&self) -> impl Iterator<Item = &str> {
        self.records
            .iter()
            .filter(|(_, o)| !o.is_success())
            .map(|(id, _)| id.as_str())
    }

    /// The Lambda answer: `batchItemFailures` naming exactly the failed records.
    pub fn to_response(&self) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for id in self.failed_ids() {
            response.add_failure(id);
        }
        response
    }
}

/// A batch that cannot be processed record by record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// A record without a message id cannot be named in `batchItemFailures`; failing the
    /// whole invocation is the only way not to lose it.
    #[error("a record has no messageId; the whole batch is returned to the queue")]
    UnidentifiableRecord,
}

/// The processor: runs batches of queued events through their handlers.
pub struct Processor {
    ledger: Arc<dyn Ledger>,
    queue: Arc<dyn Queue>,
    handlers: Handlers,
    settings: ProcessorConfig,
    retry: RetryPolicy,
    hold_max: Duration,
    dedup_window: Duration,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn Metrics>,
    /// Successes the ledger could not record yet, recorded before any rerun (see [`crate::pending`]).
    pending: PendingCompletions,
    /// Events this container recorded processed a moment ago (see [`crate::settled`]).
    recent: RecentlySettled,
    /// Where payloads are archived (and pointer messages' bodies read), if anywhere.
    archive: Option<Arc<dyn Archive>>,
    archive_config: ArchiveConfig,
    /// The configuration's routes and destinations, when the processor delivers to them.
    destinations: Option<Arc<Destinations>>,
}

/// Why a pointer message's body could not be read.
enum BodyError {
    /// The archive could not be reached: try again later.
    Unavailable(String),
    /// The body is gone or damaged: no retry can bring it back (`payload_missing`,
    /// `payload_corrupt`).
    Lost(String),
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("handlers", &self.handlers)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Tries of a ledger write that records a finished attempt.
const FINISH_TRIES: u32 = 3;

/// Kept completions (of events not in the batch) a batch tries to record on the side.
const PENDING_PER_BATCH: usize = 10;

/// What became of a ledger write ending an attempt.
enum Finish {
    /// Recorded.
    Recorded,
    /// Refused: a later attempt has started (another consumer took the event over).
    Superseded,
    /// The ledger could not be written.
    Failed(LedgerError),
}

/// The note on an attempt whose success was recorded after its message was handed back.
const RECORDED_LATE: &str =
    "recorded late: the ledger could not record this success when the handler finished";

/// How a failed record is settled on the queue.
enum Settle {
    /// Back after this long: held in flight, or re-sent when longer than `retry_hold_max_secs`.
    Retry(Duration),
    /// Visible at once, for the queue's redrive policy to move it to the DLQ.
    Redrive,
    /// Out of receives counted across copies: moved to the DLQ now.
    DeadLetter,
    /// Failed for good: moved to the DLQ now.
    MoveToDlq,
}

/// What became of passing an event's next attempt on to a delayed copy.
enum PassOn {
    /// Settled: rescheduled, or this copy is stale.
    Settled(RecordOutcome),
    /// The copy could not be sent or the hand-off recorded: this message holds the retry.
    Held,
}

/// How close to its due time a re-sent copy may run (SQS rounds delays up to whole seconds).
const DUE_TOLERANCE: Duration = Duration::from_secs(1);

/// How many receives the message has had, counted across re-sent copies.
pub(crate) fn receives(message: &ReceivedMessage) -> u32 {
    receives_before(message).saturating_add(message.receive_count)
}

/// How many receives the copies before this one had ([`attr::RECEIVES_BEFORE`]; 0 for an
/// original message).
fn receives_before(message: &ReceivedMessage) -> u32 {
    message
        .attributes
        .get(attr::RECEIVES_BEFORE)
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0)
}

/// When a re-sent copy's attempt is due, if it is one.
fn due_at(message: &ReceivedMessage) -> Option<Timestamp> {
    let ms = message.attributes.get(attr::DUE_AT)?.parse::<i64>().ok()?;
    Some(Timestamp::from_millis(ms))
}

impl Processor {
    /// A processor with `config`'s settings, recording to `ledger`, settling messages on
    /// `queue` (visibility, DLQ), running `handlers`.
    pub fn new(
        config: &Config,
        ledger: Arc<dyn Ledger>,
        queue: Arc<dyn Queue>,
        handlers: Handlers,
    ) -> Self {
        let p = &config.processor;
        Self {
            ledger,
            queue,
            handlers,
            settings: p.clone(),
            retry: p.retry_policy(),
            hold_max: p.retry_hold_max(),
            dedup_window: Duration::from_secs(config.receiver.dedup_window_secs),
            clock: Arc::new(SystemClock),
            metrics: metrics::noop(),
            pending: PendingCompletions::default(),
            recent: RecentlySettled::for_dedup_window(Duration::from_secs(
                config.receiver.dedup_window_secs,
            )),
            archive: None,
            archive_config: config.archive.clone(),
            destinations: None,
        }
    }

    /// The same processor delivering to `destinations` the events their routes match (see
    /// "How delivery works" in `processor/destinations.rs`).
    pub fn with_destinations(mut self, destinations: Arc<Destinations>) -> Self {
        self.destinations = Some(destinations);
        self
    }

    /// The same processor archiving payloads in (and reading claim-checked bodies from)
    /// `archive`. Without one, small payloads are still kept inline in the ledger, larger ones
    /// are not kept, and a pointer message fails as `payload_missing`.
    pub fn with_archive(mut self, archive: Arc<dyn Archive>) -> Self {
        self.archive = Some(archive);
        self
    }

    /// How many successful attempts this processor has kept because the ledger could not
    /// record them yet (see [`crate::pending`]).
    pub fn pending_completions(&self) -> usize {
        self.pending.len()
    }

    /// The same processor reading time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same processor reporting each record's outcome to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The processor's settings.
    pub fn settings(&self) -> &ProcessorConfig {
        &self.settings
    }

    /// Processes a batch. `deadline` is when the invocation must have answered (Lambda's
    /// deadline); without one, the visibility timeout from now.
    pub async fn process_batch(
        &self,
        batch: &SqsEvent,
        deadline: Option<Timestamp>,
    ) -> Result<BatchOutcome, BatchError> {
        if batch
            .records
            .iter()
            .any(|r| r.message_id.as_deref().is_none_or(str::is_empty))
        {
            error!("batch has a record without messageId");
            return Err(BatchError::UnidentifiableRecord);
        }
        let now = self.clock.now();
        let configured = Duration::from_millis(self.settings.deadline_margin_ms);
        let (deadline, margin) = match deadline {
            Some(deadline) if deadline > now => (deadline, configured),
            Some(deadline) => {
                // Lambda's deadline is always ahead; one already past (a local emulator without
                // a timeout) would hand every record back. Use the visibility timeout instead.
                warn!(deadline = %deadline, "invocation deadline already past; using the visibility timeout");
                let budget = self.settings.visibility_timeout();
                (now.plus(budget), configured.min(budget / 4))
            }
            // No invocation deadline (the local event source): the batch has the visibility
            // timeout, and the margin takes at most a quarter of it.
            None => {
                let budget = self.settings.visibility_timeout();
                (now.plus(budget), configured.min(budget / 4))
            }
        };
        let received = Instant::now();
        // The futures are built up front (not by a closure inside the stream) so the batch
        // future stays `Send` for any executor.
        let work: Vec<_> = batch
            .records
            .iter()
            .map(|record| self.process_named(record, deadline, margin, received))
            .collect();
        let records = stream::iter(work)
            .buffered(self.settings.concurrency)
            .collect();
        // Kept completions of other events are recorded alongside, within the batch's time.
        let in_batch: std::collections::HashSet<&str> = batch
            .records
            .iter()
            .filter_map(|r| {
                r.message_attributes
                    .get(attr::EVENT_ID)?
                    .string_value
                    .as_deref()
            })
            .collect();
        let side = tokio::time::timeout(
            deadline.since(now).saturating_sub(margin),
            self.record_kept(&in_batch),
        );
        let (records, _) = futures::join!(records, side);
        self.metrics.flush();
        Ok(BatchOutcome { records })
    }

    async fn process_named(
        &self,
        record: &SqsMessage,
        deadline: Timestamp,
        margin: Duration,
        received: Instant,
    ) -> (String, RecordOutcome) {
        let id = record.message_id.clone().unwrap_or_default();
        (
            id,
            self.process_record(record, deadline, margin, received)
                .await,
        )
    }

    /// Processes one record of a batch received at `received`, due by `deadline`; it is handed
    /// back unstarted when less than `margin` remains.
    pub async fn process_record(
        &self,
        record: &SqsMessage,
        deadline: Timestamp,
        margin: Duration,
        received: Instant,
    ) -> RecordOutcome {
        let message = received_message(record);
        let queued = match QueuedEvent::from_message(&message.body) {
            Ok(q) => q,
            Err(e) => {
                error!(message_id = %message.message_id, error = %e, "record is not a hookgate envelope");
                let error = format!("malformed record: {e}");
                let ran = Ran::from(self.settle_malformed(&message, error, received).await);
                self.observe(None, &ran);
                return ran.outcome;
            }
        };
        let envelope = &queued.envelope;
        let span = tracing::info_span!(
            "event",
            event_id = %envelope.event_id,
            source = %envelope.source,
            r#type = %envelope.event_type,
            message_id = %message.message_id,
            receive_count = message.receive_count,
            generation = queued.generation,
            attempt = tracing::field::Empty,
            xray_trace_id = message.trace_header.as_deref(),
        );
        let counted = Counted::of(envelope);
        let ran = self
            .run(queued, &message, deadline, margin, received)
            .instrument(span)
            .await;
        self.observe(Some(&counted), &ran);
        ran.outcome
    }

    /// Reports a record that `ran` so to the metrics, in `counted`'s series (`None`: the record
    /// is not an envelope).
    fn observe(&self, counted: Option<&Counted>, ran: &Ran) {
        let observation = observation::observation(counted, ran, self.clock.now());
        self.metrics.observe(&observation);
    }

    /// Runs one record through the stages: its outcome, and how long its handler ran if it
    /// did. Each stage either hands the record to the next or settles it itself.
    async fn run(
        &self,
        queued: QueuedEvent,
        message: &ReceivedMessage,
        deadline: Timestamp,
        margin: Duration,
        received: Instant,
    ) -> Ran {
        let now = self.clock.now();
        let window = Window {
            now,
            deadline,
            margin,
            received,
        };
        // 1. Start: hand back near the deadline, record a kept success first, keep the
        //    payload, take the lease.
        let started = match self.start(queued, message, &window).await {
            Ok(started) => started,
            Err(outcome) => return outcome.into(),
        };
        // 2. Invoke: read a claim-checked body, run the handler under its timeout, its panic
        //    caught.
        let invoked = match self.invoke(started, message, &window).await {
            Ok(invoked) => invoked,
            Err(outcome) => return outcome.into(),
        };
        // 3. Decide: a pure function of the result, the receive counts and the maximum.
        let decision = decide(
            Verdict::from(&invoked.result),
            receives(message),
            message.receive_count,
            self.settings.max_receive_count,
        );
        let retry_in = match decision {
            Decision::Retry { retry_after } => Some(self.retry.delay(
                receives(message),
                retry_after,
                &mut rand::rng(),
            )),
            _ => None,
        };
        // 4. Record the attempt's end (a success the ledger cannot take is kept).
        let recorded = self
            .record(&invoked, decision, retry_in, message, now)
            .await;
        // 5. Settle the message: acknowledge, back off, or dead-letter.
        let handler_ms = Some(invoked.duration_ms);
        let outcome = self
            .conclude(invoked, decision, retry_in, recorded, message, received)
            .await;
        Ran {
            outcome,
            handler_ms,
        }
    }

    /// Records the end of an attempt, retrying a transient ledger failure a few times.
    /// Returns whether it was recorded (a conflict counts: a later attempt owns the event).
    async fn record_end(&self, end: &AttemptEnd) -> bool {
        match self.finish(end, FINISH_TRIES).await {
            Finish::Recorded => true,
            Finish::Superseded => {
                warn!("attempt finished after its lease was taken over");
                true
            }
            Finish::Failed(e) => {
                error!(error = %e, "recording the attempt failed");
                false
            }
        }
    }

    /// Writes the end of an attempt, up to `tries` times while the ledger is unavailable.
    async fn finish(&self, end: &AttemptEnd, tries: u32) -> Finish {
        let mut delay = Duration::from_millis(50);
        let mut try_number = 1;
        loop {
            match self.ledger.finish_attempt(end).await {
                Ok(()) => return Finish::Recorded,
                Err(LedgerError::Conflict(e)) => {
                    debug!(reason = %e, "a later attempt has started");
                    return Finish::Superseded;
                }
                Err(e) if try_number < tries => {
                    warn!(error = %e, try_number, "recording the attempt failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    try_number += 1;
                }
                Err(e) => return Finish::Failed(e),
            }
        }
    }

    /// Before a new attempt at an event whose success this processor kept: records that
    /// success. Returns the record's outcome, or `None` when a later attempt superseded it and
    /// the event goes the usual way.
    async fn record_kept_first(
        &self,
        kept: PendingCompletion<'_>,
        message: &ReceivedMessage,
        received: Instant,
    ) -> Option<RecordOutcome> {
        let mut end = kept.end().clone();
        end.now = self.clock.now();
        let attempt = end.attempt.attempt;
        match self.finish(&end, FINISH_TRIES).await {
            Finish::Recorded => {
                kept.resolved();
                info!(
                    attempt,
                    "earlier success recorded; acknowledged without running the handler again"
                );
                Some(RecordOutcome::AlreadyProcessed)
            }
            Finish::Superseded => {
                kept.resolved();
                warn!(
                    attempt,
                    "earlier success superseded by a later attempt elsewhere"
                );
                None
            }
            Finish::Failed(e) => {
                drop(kept);
                warn!(error = %e, attempt, "earlier success still cannot be recorded; handler not run");
                let error = format!(
                    "handler succeeded on attempt {attempt} but the ledger still cannot record it: {e}"
                );
                let delay = self.retry.delay(receives(message), None, &mut rand::rng());
                Some(
                    self.settle(message, error, Settle::Retry(delay), received)
                        .await,
                )
            }
        }
    }

    /// Records kept successes of events not in the batch (`in_batch`), one write each, until
    /// the ledger refuses one.
    async fn record_kept(&self, in_batch: &std::collections::HashSet<&str>) {
        if self.pending.is_empty() {
            return;
        }
        for kept in self
            .pending
            .take_some(PENDING_PER_BATCH, |id| in_batch.contains(id.as_str()))
        {
            let mut end = kept.end().clone();
            end.now = self.clock.now();
            match self.finish(&end, 1).await {
                Finish::Recorded => {
                    info!(event_id = %end.event_id, attempt = end.attempt.attempt, "earlier success recorded");
                    kept.resolved();
                }
                Finish::Superseded => kept.resolved(),
                // The ledger is still down: the rest waits for the next batch (the others
                // taken go back when dropped).
                Finish::Failed(_) => return,
            }
        }
    }

    /// Settles a failed record on the queue.
    async fn settle(
        &self,
        message: &ReceivedMessage,
        error: String,
        how: Settle,
        received: Instant,
    ) -> RecordOutcome {
        if message.receipt_handle.is_empty() {
            // Nothing to act on: the message comes back after its visibility timeout.
            warn!("record has no receipt handle; failed as it is");
            return RecordOutcome::Failed {
                error,
                retry_in: None,
                dead_lettered: false,
            };
        }
        // SQS counts the 12 h visibility limit from the receive.
        let room =
            MAX_VISIBILITY_TIMEOUT.saturating_sub(received.elapsed() + Duration::from_secs(1));
        let (delay, dead_lettered) = match how {
            Settle::MoveToDlq => match self.queue.move_to_dlq(message).await {
                Ok(()) => {
                    info!(message_id = %message.message_id, "moved to the DLQ");
                    return RecordOutcome::MovedToDlq { error };
                }
                Err(e) => {
                    warn!(error = %e, "could not move to the DLQ; it will be retried");
                    (Duration::ZERO, false)
                }
            },
            Settle::DeadLetter => match self.queue.move_to_dlq(message).await {
                Ok(()) => {
                    info!(message_id = %message.message_id, receives = receives(message), "out of receives: moved to the DLQ");
                    return RecordOutcome::Failed {
                        error,
                        retry_in: None,
                        dead_lettered: true,
                    };
                }
                Err(e) => {
                    warn!(error = %e, "could not move to the DLQ; it will be retried");
                    (Duration::ZERO, false)
                }
            },
            Settle::Redrive => (Duration::ZERO, true),
            Settle::Retry(delay) if delay > self.hold_max => {
                let due = self.clock.now().plus(delay);
                let counted = receives(message);
                match self
                    .pass_on(message, Some(error.clone()), due, counted)
                    .await
                {
                    PassOn::Settled(outcome) => return outcome,
                    // Not re-sent: held in flight as long as SQS allows instead.
                    PassOn::Held => (delay.min(room), false),
                }
            }
            Settle::Retry(delay) => (delay.min(room), false),
        };
        let retry_in = match self
            .queue
            .change_visibility(&message.receipt_handle, delay)
            .await
        {
            Ok(()) => Some(delay),
            Err(e) => {
                // Still a failure: the message comes back after its current visibility timeout.
                warn!(error = %e, "could not change the message's visibility");
                None
            }
        };
        RecordOutcome::Failed {
            error,
            retry_in,
            dead_lettered,
        }
    }
}

impl Processor {
    /// Passes the event's next attempt, due at `due`, on to a delayed copy of `message`: sends
    /// the copy, saying the event has had `receives_before` receives, then hands the retry to
    /// its ticket in the ledger. The original is left to be acknowledged (see "Retries out of
    /// flight" above).
    async fn pass_on(
        &self,
        message: &ReceivedMessage,
        error: Option<String>,
        due: Timestamp,
        receives_before: u32,
    ) -> PassOn {
        let Some(event_id) = message
            .attributes
            .get(attr::EVENT_ID)
            .and_then(|id| EventId::parse(id).ok())
        else {
            warn!("message names no event id; the retry is held in flight");
            return PassOn::Held;
        };
        let generation = message
            .attributes
            .get(attr::GENERATION)
            .and_then(|g| g.parse::<u64>().ok())
            .unwrap_or(0);
        let ticket = crate::token::uuid().simple().to_string();
        let mut attributes = message.attributes.clone();
        attributes.insert(attr::RETRY_TICKET.to_owned(), ticket.clone());
        attributes.insert(attr::DUE_AT.to_owned(), due.as_millis().to_string());
        attributes.insert(
            attr::RECEIVES_BEFORE.to_owned(),
            receives_before.to_string(),
        );
        let wait = due.since(self.clock.now()).min(MAX_SEND_DELAY);
        let copy = OutgoingMessage {
            body: message.body.clone(),
            attributes,
            trace_header: message.trace_header.clone(),
            delay: Some(wait),
        };
        if let Err(e) = self.queue.send(copy).await {
            warn!(error = %e, "could not re-send the message; the retry is held in flight");
            return PassOn::Held;
        }
        let hand_off = HandOff {
            event_id,
            from: message.attributes.get(attr::RETRY_TICKET).cloned(),
            to: ticket,
            due,
            generation,
        };
        let mut result = self.ledger.hand_off(&hand_off).await;
        if matches!(result, Err(LedgerError::Unavailable(_))) {
            result = self.ledger.hand_off(&hand_off).await;
        }
        match result {
            Ok(()) => {
                info!(due = %due, "next attempt handed to a delayed copy of the message");
                PassOn::Settled(RecordOutcome::Rescheduled { error, due })
            }
            Err(LedgerError::Conflict(e)) => {
                info!(reason = %e, "this copy no longer holds the retry; acknowledged");
                PassOn::Settled(RecordOutcome::Stale)
            }
            Err(e) => {
                // The copy just sent holds a ticket the ledger never took: it is stale when it
                // comes, and this message carries the retry.
                warn!(error = %e, "could not record the hand-off; the retry is held in flight");
                PassOn::Held
            }
        }
    }

    /// A re-sent copy received before it is due: passed on to another delayed copy, or (if it
    /// cannot be) held in flight until then. `None` when it is due.
    async fn not_due_yet(
        &self,
        message: &ReceivedMessage,
        now: Timestamp,
        received: Instant,
    ) -> Option<RecordOutcome> {
        let due = due_at(message)?;
        if due <= now.plus(DUE_TOLERANCE) {
            return None;
        }
        // No receive of a copy before its due time runs an attempt (this check comes first),
        // so the next copy carries this one's count of earlier receives unchanged: a long delay
        // is many 15-minute legs, and counting each would run the event out of receives (and
        // skip entries of the schedule) while it merely waits.
        let counted = receives_before(message);
        if let PassOn::Settled(outcome) = self.pass_on(message, None, due, counted).await {
            return Some(outcome);
        }
        let room =
            MAX_VISIBILITY_TIMEOUT.saturating_sub(received.elapsed() + Duration::from_secs(1));
        let wait = due.since(now).min(room);
        let retry_in = match self
            .queue
            .change_visibility(&message.receipt_handle, wait)
            .await
        {
            Ok(()) => Some(wait),
            Err(e) => {
                warn!(error = %e, "could not change the message's visibility");
                None
            }
        };
        Some(RecordOutcome::Failed {
            error: format!("not due until {due}; could not be passed on"),
            retry_in,
            dead_lettered: false,
        })
    }
}

/// The queue's view of a Lambda SQS record.
fn received_message(record: &SqsMessage) -> ReceivedMessage {
    ReceivedMessage {
        message_id: record.message_id.clone().unwrap_or_default(),
        receipt_handle: record.receipt_handle.clone().unwrap_or_default(),
        body: record.body.clone().unwrap_or_default(),
        receive_count: record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1),
        trace_header: record.attributes.get(AWS_TRACE_HEADER).cloned(),
        attributes: record
            .message_attributes
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.string_value.clone()?)))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::event::sqs::SqsMessageAttribute;

    use super::*;
    use crate::memory::{MemoryLedger, MemoryQueue};

    fn record(id: Option<&str>) -> SqsMessage {
        let mut r = SqsMessage::default();
        r.message_id = id.map(str::to_owned);
        r.receipt_handle = Some("handle".into());
        r.body = Some("not an envelope".into());
        r
    }

    #[test]
    fn batch_item_failures_name_exactly_the_failed_records() {
        let failed = |dead_lettered| RecordOutcome::Failed {
            error: "x".into(),
            retry_in: None,
            dead_lettered,
        };
        let outcome = BatchOutcome {
            records: vec![
                ("a".into(), RecordOutcome::Processed),
                ("b".into(), failed(false)),
                ("c".into(), RecordOutcome::AlreadyProcessed),
                ("d".into(), RecordOutcome::Superseded { current: 2 }),
                ("e".into(), RecordOutcome::MovedToDlq { error: "x".into() }),
                ("f".into(), failed(true)),
            ],
        };
        let named: Vec<String> = outcome
            .to_response()
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        assert_eq!(named, ["b", "f"]);
        assert_eq!(outcome.failed_ids().collect::<Vec<_>>(), ["b", "f"]);
    }

    #[test]
    fn a_lambda_record_reads_as_a_received_message() {
        let mut r = record(Some("m-1"));
        r.attributes
            .insert("ApproximateReceiveCount".into(), "3".into());
        r.attributes
            .insert(AWS_TRACE_HEADER.into(), "Root=1-abc".into());
        let mut attribute = SqsMessageAttribute::default();
        attribute.string_value = Some("demo:1".into());
        r.message_attributes
            .insert(attr::EVENT_ID.into(), attribute);
        r.message_attributes
            .insert("binary".into(), SqsMessageAttribute::default());
        let m = received_message(&r);
        assert_eq!((m.message_id.as_str(), m.receive_count), ("m-1", 3));
        assert_eq!(m.trace_header.as_deref(), Some("Root=1-abc"));
        assert_eq!(
            m.attributes,
            BTreeMap::from([(attr::EVENT_ID.to_owned(), "demo:1".to_owned())]),
            "attributes without a string value are left out"
        );
        // No count (a hand-made event): the first receive.
        r.attributes.clear();
        assert_eq!(received_message(&r).receive_count, 1);
    }

    #[tokio::test]
    async fn a_batch_with_a_record_it_cannot_name_fails_whole() {
        let config = Config::from_toml("").unwrap();
        let processor = Processor::new(
            &config,
            Arc::new(MemoryLedger::new()),
            Arc::new(MemoryQueue::new(Duration::from_secs(30))),
            Handlers::new(),
        );
        for id in [None, Some("")] {
            let mut batch = SqsEvent::default();
            batch.records = vec![record(Some("fine")), record(id)];
            assert_eq!(
                processor.process_batch(&batch, None).await,
                Err(BatchError::UnidentifiableRecord),
                "{id:?}"
            );
        }
    }
}
