//! The local stack's stand-in for Lambda's SQS event source mapping.
//!
//! Pollers (`pollers` of them, each with a batch in flight) receive batches from any [`Queue`],
//! gathering for up to `batch_window_ms`, hand them to the [`Processor`] as the same `SqsEvent`
//! Lambda would, and delete the records that succeeded. Failed records are left to the
//! processor's settlement: they come back when their (backed-off) visibility timeout ends, with
//! their receive count raised, until the redrive policy takes them. Each batch ends with one
//! [`BatchSummary`] line in the log.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use tracing::{error, info, warn};

use crate::processor::{BatchOutcome, Processor, RecordOutcome};
use crate::queue::{Queue, QueueError, ReceivedMessage};

/// Runs the processor over a queue.
pub struct EventSource {
    queue: Arc<dyn Queue>,
    processor: Arc<Processor>,
}

impl EventSource {
    /// An event source feeding `queue`'s messages to `processor`.
    pub fn new(queue: Arc<dyn Queue>, processor: Arc<Processor>) -> Self {
        Self { queue, processor }
    }

    /// Polls until `shutdown` completes, with `pollers` batches in flight at once.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let this = Arc::new(self);
        let pollers = this.processor.settings().pollers;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..pollers {
            let this = this.clone();
            tasks.spawn(async move {
                loop {
                    if let Err(e) = this.poll_once().await {
                        warn!(error = %e, "receive failed; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            });
        }
        shutdown.await;
        tasks.shutdown().await;
    }

    /// Receives one batch (long-polling) and processes it. Returns the number of messages.
    pub async fn poll_once(&self) -> Result<usize, QueueError> {
        self.poll().await.map(|outcome| outcome.records.len())
    }

    /// Receives one batch (long-polling), processes it and deletes what succeeded. Returns
    /// what happened to each message (nothing if none arrived).
    pub async fn poll(&self) -> Result<BatchOutcome, QueueError> {
        let settings = self.processor.settings();
        let mut messages = self
            .queue
            .receive(
                settings.batch_size,
                Duration::from_millis(settings.wait_time_ms),
            )
            .await?;
        if messages.is_empty() {
            return Ok(BatchOutcome::default());
        }
        // The batching window: keep gathering until the batch is full or the window closes.
        let window = tokio::time::Instant::now() + Duration::from_millis(settings.batch_window_ms);
        while messages.len() < settings.batch_size {
            let left = window.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            // Long-poll for the rest of the window. Never cancelled mid-way: a receive dropped
            // after SQS answered would hide its messages for a visibility timeout. (SQS waits in
            // whole seconds, so there the window rounds up to one.)
            match self
                .queue
                .receive(settings.batch_size - messages.len(), left)
                .await
            {
                Ok(more) => messages.extend(more),
                Err(e) => {
                    warn!(error = %e, "receive within the batching window failed");
                    break;
                }
            }
        }
        let batch = to_sqs_event(&messages);
        let started = Instant::now();
        let outcome = match self.processor.process_batch(&batch, None).await {
            Ok(outcome) => outcome,
            Err(e) => {
                // Leave every message for redelivery, as Lambda does with a failed invocation.
                error!(error = %e, "batch failed as a whole");
                let records = messages
                    .iter()
                    .map(|m| {
                        let failed = RecordOutcome::Failed {
                            error: e.to_string(),
                            retry_in: None,
                            dead_lettered: false,
                        };
                        (m.message_id.clone(), failed)
                    })
                    .collect();
                return Ok(BatchOutcome { records });
            }
        };
        let by_id: HashMap<&str, &ReceivedMessage> = messages
            .iter()
            .map(|m| (m.message_id.as_str(), m))
            .collect();
        for (id, result) in &outcome.records {
            let Some(message) = by_id.get(id.as_str()) else {
                continue;
            };
            // As Lambda's event source mapping does: delete what succeeded, leave the rest (the
            // processor has already set their visibility or moved them to the DLQ).
            if !matches!(
                result,
                RecordOutcome::Processed
                    | RecordOutcome::AlreadyProcessed
                    | RecordOutcome::Superseded { .. }
                    | RecordOutcome::Rescheduled { .. }
                    | RecordOutcome::Stale
                    | RecordOutcome::Held { .. }
            ) {
                continue;
            }
            if let Err(e) = self.queue.delete(&message.receipt_handle).await {
                warn!(message_id = %id, error = %e, "could not delete a processed message; it will be redelivered and acknowledged");
            }
        }
        info!("{}", BatchSummary::of(&outcome, started.elapsed()));
        Ok(outcome)
    }
}

/// What one batch came to, as the local stack logs it:
/// `batch: 10 records, 9 processed, 1 retried, 0 dead-lettered in 12 ms` (permanent failures
/// and records already processed are named when there are any).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchSummary {
    /// Records in the batch.
    pub records: usize,
    /// Handled and recorded.
    pub processed: usize,
    /// Acknowledged without running their handler again.
    pub already_processed: usize,
    /// Failed; back after their visibility timeout.
    pub retried: usize,
    /// Failed for good; moved to the DLQ at once.
    pub permanently_failed: usize,
    /// Failed on their last receive; the redrive policy moves them to the DLQ.
    pub dead_lettered: usize,
    /// Deliveries held without an attempt (destination open, disabled, rate-limited).
    pub held: usize,
    /// From the batch's start to its outcome.
    pub elapsed: Duration,
}

impl BatchSummary {
    /// The summary of `outcome`, which took `elapsed`.
    pub fn of(outcome: &BatchOutcome, elapsed: Duration) -> Self {
        let mut summary = Self {
            records: outcome.records.len(),
            elapsed,
            ..Self::default()
        };
        for (_, record) in &outcome.records {
            let count = match record {
                RecordOutcome::Processed => &mut summary.processed,
                RecordOutcome::AlreadyProcessed
                | RecordOutcome::Superseded { .. }
                | RecordOutcome::Stale
                | RecordOutcome::Rescheduled { error: None, .. } => &mut summary.already_processed,
                RecordOutcome::Held { .. } => &mut summary.held,
                RecordOutcome::Rescheduled { error: Some(_), .. } => &mut summary.retried,
                RecordOutcome::MovedToDlq { .. } => &mut summary.permanently_failed,
                RecordOutcome::Failed {
                    dead_lettered: true,
                    ..
                } => &mut summary.dead_lettered,
                RecordOutcome::Failed { .. } => &mut summary.retried,
            };
            *count += 1;
        }
        summary
    }
}

impl fmt::Display for BatchSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batch: {} records, {} processed, {} retried, {} dead-lettered",
            self.records, self.processed, self.retried, self.dead_lettered
        )?;
        if self.permanently_failed > 0 {
            write!(f, ", {} permanently failed", self.permanently_failed)?;
        }
        if self.already_processed > 0 {
            write!(f, ", {} already processed", self.already_processed)?;
        }
        if self.held > 0 {
            write!(f, ", {} held", self.held)?;
        }
        write!(f, " in {} ms", self.elapsed.as_millis())
    }
}

/// The `SqsEvent` Lambda would deliver for these messages.
pub fn to_sqs_event(messages: &[ReceivedMessage]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages.iter().map(to_sqs_message).collect();
    event
}

fn to_sqs_message(m: &ReceivedMessage) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = Some(m.message_id.clone());
    record.receipt_handle = Some(m.receipt_handle.clone());
    record.body = Some(m.body.clone());
    record.event_source = Some("aws:sqs".into());
    record.attributes.insert(
        "ApproximateReceiveCount".into(),
        m.receive_count.to_string(),
    );
    if let Some(header) = &m.trace_header {
        record
            .attributes
            .insert(crate::xray::AWS_TRACE_HEADER.into(), header.clone());
    }
    for (name, value) in &m.attributes {
        let mut a = SqsMessageAttribute::default();
        a.string_value = Some(value.clone());
        a.data_type = Some("String".into());
        record.message_attributes.insert(name.clone(), a);
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(dead_lettered: bool) -> RecordOutcome {
        RecordOutcome::Failed {
            error: "boom".into(),
            retry_in: None,
            dead_lettered,
        }
    }

    #[test]
    fn a_batch_summary_counts_every_outcome() {
        let mut records = vec![RecordOutcome::Processed; 9];
        records.push(failed(false));
        let outcome = BatchOutcome {
            records: records
                .into_iter()
                .enumerate()
                .map(|(i, o)| (i.to_string(), o))
                .collect(),
        };
        let summary = BatchSummary::of(&outcome, Duration::from_millis(12));
        assert_eq!(
            summary.to_string(),
            "batch: 10 records, 9 processed, 1 retried, 0 dead-lettered in 12 ms"
        );

        let mixed = BatchOutcome {
            records: vec![
                ("a".into(), failed(true)),
                ("b".into(), RecordOutcome::MovedToDlq { error: "x".into() }),
                ("c".into(), RecordOutcome::AlreadyProcessed),
                ("d".into(), failed(false)),
            ],
        };
        assert_eq!(
            BatchSummary::of(&mixed, Duration::from_millis(3)).to_string(),
            "batch: 4 records, 0 processed, 1 retried, 1 dead-lettered, 1 permanently failed, \
             1 already processed in 3 ms"
        );
    }
}
