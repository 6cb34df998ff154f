//! Dead-letter queue tools: look at what failed, send it back, or drop it.
//!
//! `list` receives every DLQ message with a short visibility timeout and makes each visible
//! again at once, so looking loses nothing. `redrive` moves messages back to the main queue one
//! by one — send, then delete — so a crash in between leaves at worst a second copy on the
//! queue, which the processor's ledger guard runs once. Each redriven message carries a
//! `redriven_at` attribute, so the attempt it leads to says so in the event's history.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::envelope::EventId;
use crate::ledger::Ledger;
use crate::queue::{attr, OutgoingMessage, Queue, QueueError, ReceivedMessage};

/// How long `list` and `redrive` hold DLQ messages while looking at them.
const HOLD: Duration = Duration::from_secs(30);
/// Long-poll wait of each DLQ receive (long polls see every SQS server).
const WAIT: Duration = Duration::from_secs(1);

/// One dead-lettered message, as `dlq list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The DLQ's message id.
    pub message_id: String,
    /// The event id, if the message carries one.
    pub event_id: Option<String>,
    /// The source, if known.
    pub source: Option<String>,
    /// The event type, if known.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Attempts the ledger recorded.
    pub attempts: Option<u32>,
    /// The last error the ledger recorded.
    pub last_error: Option<String>,
}

/// Which messages `redrive` moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every message.
    All,
    /// Messages whose event id or message id is listed.
    Ids(BTreeSet<String>),
}

impl Selection {
    fn matches(&self, m: &ReceivedMessage) -> bool {
        match self {
            Selection::All => true,
            Selection::Ids(ids) => {
                ids.contains(&m.message_id)
                    || m.attributes
                        .get(attr::EVENT_ID)
                        .is_some_and(|id| ids.contains(id))
            }
        }
    }
}

/// What `redrive` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedriveReport {
    /// Messages moved back to the main queue.
    pub moved: usize,
    /// Messages left in the DLQ (not selected).
    pub left: usize,
}

/// The DLQ tools over a main queue, its DLQ and the ledger.
pub struct DeadLetters {
    queue: Arc<dyn Queue>,
    dlq: Arc<dyn Queue>,
    ledger: Arc<dyn Ledger>,
    clock: Arc<dyn Clock>,
}

impl DeadLetters {
    /// Tools for `dlq`, whose messages go back to `queue`.
    pub fn new(queue: Arc<dyn Queue>, dlq: Arc<dyn Queue>, ledger: Arc<dyn Ledger>) -> Self {
        Self {
            queue,
            dlq,
            ledger,
            clock: Arc::new(SystemClock),
        }
    }

    /// Every message in the DLQ (up to `limit`), with what the ledger knows of its event.
    /// Nothing is removed: each message is visible again when this returns.
    pub async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let held = self.hold_all(limit).await?;
        let mut out = Vec::with_capacity(held.len());
        for m in &held {
            let event_id = m.attributes.get(attr::EVENT_ID).cloned();
            let record = match event_id.as_deref().map(EventId::parse) {
                Some(Ok(id)) => self.ledger.get(&id).await.ok().flatten(),
                _ => None,
            };
            out.push(DeadLetter {
                message_id: m.message_id.clone(),
                source: m.attributes.get(attr::SOURCE).cloned(),
                event_type: m.attributes.get(attr::EVENT_TYPE).cloned(),
                attempts: record.as_ref().map(|r| r.attempt_count),
                last_error: record.and_then(|r| r.last_error),
                event_id,
            });
        }
        self.release(&held).await;
        Ok(out)
    }

    /// Moves the selected messages back to the main queue, at most `rate` per second.
    pub async fn redrive(
        &self,
        selection: &Selection,
        rate: Option<u32>,
    ) -> Result<RedriveReport, QueueError> {
        let pause = rate
            .filter(|r| *r > 0)
            .map(|r| Duration::from_secs_f64(1.0 / f64::from(r)));
        let mut report = RedriveReport::default();
        let mut left = Vec::new();
        let mut moved = std::collections::HashSet::new();
        loop {
            let batch = self.dlq.receive(10, WAIT).await?;
            if batch.is_empty() {
                break;
            }
            for m in batch {
                // A message that comes back while the redrive runs (its event failed again at
                // once) is not moved twice: the redrive covers what was in the DLQ.
                let key = m
                    .attributes
                    .get(attr::EVENT_ID)
                    .unwrap_or(&m.message_id)
                    .clone();
                if !selection.matches(&m) || !moved.insert(key) {
                    // Hold it until the end, so the loop does not meet it again.
                    let _ = self.dlq.change_visibility(&m.receipt_handle, HOLD).await;
                    left.push(m);
                    continue;
                }
                let mut attributes = m.attributes.clone();
                attributes.insert(attr::REDRIVEN_AT.to_owned(), self.clock.now().to_rfc3339());
                let back = OutgoingMessage {
                    body: m.body.clone(),
                    attributes,
                    trace_header: m.trace_header.clone(),
                };
                if let Err(e) = self.queue.send(back).await {
                    // Not sent: leave it in the DLQ, visible again, and stop.
                    left.push(m);
                    self.release(&left).await;
                    return Err(e);
                }
                self.dlq.delete(&m.receipt_handle).await?;
                report.moved += 1;
                if let Some(pause) = pause {
                    tokio::time::sleep(pause).await;
                }
            }
        }
        report.left = left.len();
        self.release(&left).await;
        Ok(report)
    }

    /// Deletes every message in the DLQ.
    pub async fn purge(&self) -> Result<(), QueueError> {
        self.dlq.purge().await
    }

    async fn hold_all(&self, limit: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
        let mut held = Vec::new();
        while held.len() < limit {
            let batch = match self.dlq.receive((limit - held.len()).min(10), WAIT).await {
                Ok(batch) => batch,
                Err(e) => {
                    self.release(&held).await;
                    return Err(e);
                }
            };
            if batch.is_empty() {
                break;
            }
            for m in &batch {
                // Hold long enough to finish the listing, whatever the DLQ's own timeout.
                let _ = self.dlq.change_visibility(&m.receipt_handle, HOLD).await;
            }
            held.extend(batch);
        }
        Ok(held)
    }

    async fn release(&self, held: &[ReceivedMessage]) {
        for m in held {
            let _ = self
                .dlq
                .change_visibility(&m.receipt_handle, Duration::ZERO)
                .await;
        }
    }
}
