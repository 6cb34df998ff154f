//! The local stack's stand-in for Lambda's SQS event source mapping.
//!
//! Pollers (`pollers` of them, each with a batch in flight) receive batches from any [`Queue`],
//! gathering for up to `batch_window_ms`, hand them to the [`Processor`] as the same `SqsEvent`
//! Lambda would, and delete the records that succeeded. Failed records are left to the
//! processor's settlement: they come back when their (backed-off) visibility timeout ends, with
//! their receive count raised, until the redrive policy takes them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use tracing::{debug, error, warn};

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
                RecordOutcome::Processed | RecordOutcome::AlreadyProcessed
            ) {
                continue;
            }
            if let Err(e) = self.queue.delete(&message.receipt_handle).await {
                warn!(message_id = %id, error = %e, "could not delete a processed message; it will be redelivered and acknowledged");
            }
        }
        debug!(
            messages = messages.len(),
            failed = outcome.failed_ids().count(),
            "batch done"
        );
        Ok(outcome)
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
