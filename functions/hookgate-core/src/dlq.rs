//! Dead-letter queue tools: look at what failed, send it back, or drop it.
//!
//! `list` receives every DLQ message with a short visibility timeout and makes each visible
//! again at once, so looking loses nothing. `redrive` moves messages back to the main queue one
//! by one — send, then delete — so a crash in between leaves at worst a second copy on the
//! queue, which the processor's ledger guard runs once. Each redriven message carries a
//! `redriven_at` attribute, so the attempt it leads to says so in the event's history. A redrive
//! of named ids says which of them it did not find ([`RedriveReport::not_found`]).
//!
//! `purge` receives and deletes message by message rather than asking SQS to `PurgeQueue`:
//! `PurgeQueue` answers before it has finished (SQS takes up to 60 s, during which messages may
//! still be received), says nothing of how many messages it removed, and may run once per 60 s;
//! `ApproximateNumberOfMessages` read before it is, as its name says, approximate, and leaves
//! out messages in flight. Receiving and deleting gives the exact number deleted and the event
//! ids they carried ([`PurgeReport`]), on SQS and in memory alike. A message held invisible by
//! another reader at that moment (a `list` or `redrive` running at the same time) is not
//! received, so it is not purged: it stays in the DLQ.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::envelope::EventId;
use crate::ledger::{HistoryEntry, Ledger};
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
    /// The listed ids `m` answers to (its message id, its event id), or `None` if it is not
    /// selected; `Some` and empty for [`Selection::All`].
    fn matching<'a>(&'a self, m: &ReceivedMessage) -> Option<Vec<&'a String>> {
        match self {
            Selection::All => Some(Vec::new()),
            Selection::Ids(ids) => {
                let event_id = m.attributes.get(attr::EVENT_ID);
                let named: Vec<&String> = ids
                    .iter()
                    .filter(|id| **id == m.message_id || Some(*id) == event_id)
                    .collect();
                (!named.is_empty()).then_some(named)
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
    /// The ids asked for ([`Selection::Ids`]) that named no message in the DLQ (neither an
    /// event id nor a message id), sorted. Always empty for [`Selection::All`].
    pub not_found: Vec<String>,
}

impl RedriveReport {
    /// Whether ids were asked for and none of them was in the DLQ: nothing was redriven, and the
    /// caller most likely named the wrong events (the CLI exits non-zero, the route answers
    /// `404 not_in_dlq`).
    pub fn found_none(&self) -> bool {
        self.moved == 0 && !self.not_found.is_empty()
    }
}

/// What `purge` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Messages deleted from the DLQ.
    pub purged: usize,
    /// The event ids those messages carried (their `event_id` attribute), sorted, without
    /// repeats; a message without one is counted in `purged` only.
    pub event_ids: Vec<String>,
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
        let mut found = BTreeSet::new();
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
                let named = selection.matching(&m);
                if let Some(named) = &named {
                    found.extend(named.iter().map(|id| id.as_str()));
                }
                if named.is_none() || !moved.insert(key) {
                    // Hold it until the end, so the loop does not meet it again.
                    let _ = self.dlq.change_visibility(&m.receipt_handle, HOLD).await;
                    left.push(m);
                    continue;
                }
                let mut attributes = m.attributes.clone();
                attributes.insert(attr::REDRIVEN_AT.to_owned(), self.clock.now().to_rfc3339());
                let back = OutgoingMessage {
                    delay: None,
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
        if let Selection::Ids(ids) = selection {
            report.not_found = ids
                .iter()
                .filter(|id| !found.contains(id.as_str()))
                .cloned()
                .collect();
        }
        self.release(&left).await;
        Ok(report)
    }

    /// Deletes every message in the DLQ, receiving each one first, and says how many it deleted
    /// and which events they carried (see the module's documentation for why not `PurgeQueue`).
    /// On an error part-way, what was deleted so far stays deleted.
    pub async fn purge(&self) -> Result<PurgeReport, QueueError> {
        let mut purged = 0;
        let mut event_ids = BTreeSet::new();
        loop {
            let batch = self.dlq.receive(10, WAIT).await?;
            if batch.is_empty() {
                break;
            }
            for m in batch {
                self.dlq.delete(&m.receipt_handle).await?;
                purged += 1;
                if let Some(id) = m.attributes.get(attr::EVENT_ID) {
                    event_ids.insert(id.clone());
                }
            }
        }
        let report = PurgeReport {
            purged,
            event_ids: event_ids.into_iter().collect(),
        };
        self.record_purge(&report).await;
        Ok(report)
    }

    /// Notes the purge in each purged event's history: the ledger still says `dead_lettered`
    /// (and a provider's retry is still a duplicate), so the history says where the message
    /// went — and the archived payload is still there to replay.
    async fn record_purge(&self, report: &PurgeReport) {
        let now = self.clock.now();
        let token = crate::token::uuid().to_string();
        let entry = HistoryEntry {
            at: now,
            kind: "dlq_purged".to_owned(),
            note: format!(
                "its message was purged from the DLQ at {}; replay it from the archive (hookgate replay ID)",
                now.to_rfc3339()
            ),
        };
        for id in &report.event_ids {
            let Ok(event_id) = EventId::parse(id) else {
                continue;
            };
            if let Err(e) = self.ledger.add_history(&event_id, &entry, &token).await {
                tracing::warn!(event_id = %event_id, error = %e, "could not note the purge in the event's history");
            }
        }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::memory::{MemoryLedger, MemoryQueue};

    /// A DLQ holding one message per event id, its main queue, and the tools over both.
    async fn dlq_holding(event_ids: &[&str]) -> (Arc<MemoryQueue>, Arc<MemoryQueue>, DeadLetters) {
        let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
        let dlq = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
        for id in event_ids {
            let message = OutgoingMessage {
                delay: None,
                body: format!("{{\"event\":\"{id}\"}}"),
                attributes: BTreeMap::from([(attr::EVENT_ID.to_owned(), (*id).to_owned())]),
                trace_header: None,
            };
            dlq.send(message).await.unwrap();
        }
        let tools = DeadLetters::new(queue.clone(), dlq.clone(), Arc::new(MemoryLedger::new()));
        (queue, dlq, tools)
    }

    fn ids(ids: &[&str]) -> Selection {
        Selection::Ids(ids.iter().map(|s| (*s).to_owned()).collect())
    }

    #[tokio::test(start_paused = true)]
    async fn a_redrive_of_named_ids_says_which_were_not_in_the_dlq() {
        let (queue, dlq, tools) = dlq_holding(&["demo:a", "demo:b"]).await;
        let report = tools
            .redrive(&ids(&["demo:a", "demo:nope", "demo:gone"]), None)
            .await
            .unwrap();
        assert_eq!(
            report,
            RedriveReport {
                moved: 1,
                left: 1,
                not_found: vec!["demo:gone".into(), "demo:nope".into()],
            }
        );
        assert!(!report.found_none(), "one of them was redriven");
        assert_eq!((queue.len(), dlq.len()), (1, 1));

        // None of them there: nothing moves, and the report says so.
        let report = tools
            .redrive(&ids(&["demo:x", "demo:y"]), None)
            .await
            .unwrap();
        assert_eq!(report.moved, 0);
        assert_eq!(report.not_found, ["demo:x", "demo:y"]);
        assert!(report.found_none());
        assert_eq!((queue.len(), dlq.len()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_id_counts_as_found_as_an_event_id_does() {
        let (_queue, _dlq, tools) = dlq_holding(&["demo:a", "demo:b"]).await;
        let listed = tools.list(10).await.unwrap();
        let message_id = listed
            .iter()
            .find(|m| m.event_id.as_deref() == Some("demo:b"))
            .map(|m| m.message_id.clone())
            .unwrap();
        let report = tools
            .redrive(&ids(&[message_id.as_str(), "demo:a"]), None)
            .await
            .unwrap();
        assert_eq!((report.moved, report.left), (2, 0));
        assert!(report.not_found.is_empty(), "{report:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn redriving_everything_reports_nothing_missing() {
        let (queue, _dlq, tools) = dlq_holding(&["demo:a"]).await;
        let report = tools.redrive(&Selection::All, None).await.unwrap();
        assert_eq!(
            report,
            RedriveReport {
                moved: 1,
                left: 0,
                not_found: Vec::new()
            }
        );
        assert!(!report.found_none());
        assert_eq!(queue.len(), 1);
        // An empty DLQ: nothing moved, which is not "not found".
        let report = tools.redrive(&Selection::All, None).await.unwrap();
        assert_eq!(report, RedriveReport::default());
        assert!(!report.found_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_purge_counts_what_it_deleted_and_names_the_events() {
        let (queue, dlq, tools) = dlq_holding(&["demo:c", "demo:a", "demo:b"]).await;
        // One message without an event id (not written by the receiver): counted, not named.
        dlq.send(OutgoingMessage {
            body: "stray".into(),
            ..OutgoingMessage::default()
        })
        .await
        .unwrap();
        let report = tools.purge().await.unwrap();
        assert_eq!(
            report,
            PurgeReport {
                purged: 4,
                event_ids: vec!["demo:a".into(), "demo:b".into(), "demo:c".into()],
            }
        );
        assert!(dlq.is_empty() && queue.is_empty());
        assert_eq!(tools.purge().await.unwrap(), PurgeReport::default());
    }
}
