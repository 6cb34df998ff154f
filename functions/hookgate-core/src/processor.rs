//! The processor core: one SQS batch in, a [`BatchOutcome`] (→ `batchItemFailures`) out.
//!
//! For each record: read the envelope, take a lease in the ledger (a processed event is
//! acknowledged without running its handler again; one leased elsewhere backs off), run the
//! handler chosen by `(source, type)` — isolated, so a panic fails only its record — and record
//! the attempt. Records run concurrently up to `concurrency`. A failed record stays on the queue
//! for redelivery; on its last allowed receive it is marked `dead_lettered`, since the queue's
//! redrive policy moves it to the DLQ next.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
use tracing::{error, info, warn, Instrument};

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::config::{Config, ProcessorConfig};
use crate::envelope::Envelope;
use crate::handler::{HandlerError, Handlers};
use crate::ledger::{
    truncate_error, Attempt, AttemptEnd, AttemptStart, EventStatus, Ledger, StartOutcome,
};

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The handler ran and succeeded.
    Processed,
    /// The event was processed before; acknowledged without running the handler.
    AlreadyProcessed,
    /// The record failed and stays on the queue (or moves to the DLQ, if `dead_lettered`).
    Failed {
        /// Why.
        error: String,
        /// The handler asked for a delay before the next try.
        retry_after: Option<Duration>,
        /// The failure is permanent.
        permanent: bool,
        /// This was its last allowed receive.
        dead_lettered: bool,
    },
}

impl RecordOutcome {
    /// Whether the message may be deleted from the queue.
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            RecordOutcome::Processed | RecordOutcome::AlreadyProcessed
        )
    }

    fn failed(error: impl Into<String>) -> Self {
        RecordOutcome::Failed {
            error: error.into(),
            retry_after: None,
            permanent: false,
            dead_lettered: false,
        }
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
    handlers: Handlers,
    settings: ProcessorConfig,
    dedup_window: Duration,
    clock: Arc<dyn Clock>,
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

impl Processor {
    /// A processor with `config`'s settings, recording to `ledger`, running `handlers`.
    pub fn new(config: &Config, ledger: Arc<dyn Ledger>, handlers: Handlers) -> Self {
        Self {
            ledger,
            handlers,
            settings: config.processor.clone(),
            dedup_window: Duration::from_secs(config.receiver.dedup_window_secs),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same processor reading time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
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
        let lease_until =
            deadline.unwrap_or_else(|| self.clock.now().plus(self.settings.visibility_timeout()));
        // The futures are built up front (not by a closure inside the stream) so the batch
        // future stays `Send` for any executor.
        let work: Vec<_> = batch
            .records
            .iter()
            .map(|record| self.process_named(record, lease_until))
            .collect();
        let records = stream::iter(work)
            .buffered(self.settings.concurrency)
            .collect()
            .await;
        Ok(BatchOutcome { records })
    }

    async fn process_named(
        &self,
        record: &SqsMessage,
        lease_until: Timestamp,
    ) -> (String, RecordOutcome) {
        let id = record.message_id.clone().unwrap_or_default();
        (id, self.process_record(record, lease_until).await)
    }

    /// Processes one record.
    pub async fn process_record(
        &self,
        record: &SqsMessage,
        lease_until: Timestamp,
    ) -> RecordOutcome {
        let message_id = record.message_id.as_deref().unwrap_or_default();
        let receive_count: u32 = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let envelope = match Envelope::from_message(record.body.as_deref().unwrap_or_default()) {
            Ok(e) => e,
            Err(e) => {
                error!(message_id, error = %e, "record is not a hookgate envelope");
                return RecordOutcome::failed(format!("malformed record: {e}"));
            }
        };
        let span = tracing::info_span!(
            "event",
            event_id = %envelope.event_id,
            source = %envelope.source,
            r#type = %envelope.event_type,
            message_id,
            receive_count,
        );
        self.run(envelope, receive_count, lease_until)
            .instrument(span)
            .await
    }

    async fn run(
        &self,
        envelope: Envelope,
        receive_count: u32,
        lease_until: Timestamp,
    ) -> RecordOutcome {
        let now = self.clock.now();
        let start = AttemptStart {
            event_id: envelope.event_id.clone(),
            source: envelope.source.clone(),
            event_type: envelope.event_type.clone(),
            received_at: envelope.received_at,
            expires_at: now.plus(self.dedup_window).ceil_secs(),
            now,
            lease_until,
        };
        let attempt = match self.ledger.start_attempt(&start).await {
            Ok(StartOutcome::Started { attempt }) => attempt,
            Ok(StartOutcome::AlreadyProcessed) => {
                info!("already processed; acknowledged without running the handler");
                return RecordOutcome::AlreadyProcessed;
            }
            Ok(StartOutcome::Leased { until }) => {
                info!(lease_until = %until, "leased by another consumer; backing off");
                return RecordOutcome::failed(format!("leased by another consumer until {until}"));
            }
            Err(e) => {
                warn!(error = %e, "cannot start the attempt");
                return RecordOutcome::failed(e.to_string());
            }
        };

        let handler = self
            .handlers
            .find(envelope.source.as_str(), &envelope.event_type);
        let budget = lease_until.since(now);
        let started = std::time::Instant::now();
        // A task of its own: a panic in the handler fails this record only.
        let task = tokio::spawn(async move { handler.handle(envelope).await }.in_current_span());
        let result = match tokio::time::timeout(budget, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) if join.is_panic() => Err(HandlerError::retry("handler panicked")),
            Ok(Err(_)) => Err(HandlerError::retry("handler was cancelled")),
            Err(_) => Err(HandlerError::retry(format!(
                "handler timed out after {} ms",
                budget.as_millis()
            ))),
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);

        let last_receive = receive_count >= self.settings.max_receive_count;
        let (status, outcome) = match &result {
            Ok(()) => (EventStatus::Processed, RecordOutcome::Processed),
            Err(e) => {
                let dead = last_receive || e.permanent;
                let status = if dead {
                    EventStatus::DeadLettered
                } else {
                    EventStatus::Failed
                };
                let outcome = RecordOutcome::Failed {
                    error: e.message.clone(),
                    retry_after: e.retry_after,
                    permanent: e.permanent,
                    dead_lettered: dead,
                };
                (status, outcome)
            }
        };
        let end = AttemptEnd {
            event_id: start.event_id,
            attempt: Attempt {
                attempt,
                at: now,
                duration_ms,
                success: result.is_ok(),
                error: result.as_ref().err().map(|e| truncate_error(&e.message)),
            },
            status,
            now: self.clock.now(),
        };
        match &outcome {
            RecordOutcome::Processed => info!(attempt, duration_ms, "event processed"),
            RecordOutcome::Failed { error, .. } => {
                warn!(attempt, duration_ms, status = %status, error = %truncate_error(error), "attempt failed")
            }
            RecordOutcome::AlreadyProcessed => {}
        }
        self.record_end(&end, outcome).await
    }

    /// Records the end of an attempt, retrying a transient ledger failure a few times. If it
    /// still cannot be recorded, a success is reported as a failure: the message comes back,
    /// rather than being deleted with the ledger claiming it is still running.
    async fn record_end(&self, end: &AttemptEnd, outcome: RecordOutcome) -> RecordOutcome {
        let mut delay = Duration::from_millis(50);
        for try_number in 1..=FINISH_TRIES {
            match self.ledger.finish_attempt(end).await {
                Ok(()) => return outcome,
                Err(crate::ledger::LedgerError::Conflict(e)) => {
                    // A later attempt owns the event now; its record wins.
                    warn!(error = %e, "attempt finished after its lease was taken over");
                    return outcome;
                }
                Err(e) if try_number < FINISH_TRIES => {
                    warn!(error = %e, try_number, "recording the attempt failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    error!(error = %e, "recording the attempt failed");
                    return match outcome {
                        RecordOutcome::Processed => RecordOutcome::failed(format!(
                            "handler succeeded but the ledger could not record it: {e}"
                        )),
                        other => other,
                    };
                }
            }
        }
        outcome
    }
}
