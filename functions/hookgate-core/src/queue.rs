//! The `Queue` port: the durable hand-off between the receiver and the processor.
//!
//! Shaped after SQS, which it stands for on AWS: at-least-once delivery, a visibility timeout
//! per received message, an approximate receive count, and a dead-letter queue that takes a
//! message after `max_receive_count` receives. `MemoryQueue` here and the SQS queue in
//! `hookgate-aws` pass the same contract suite.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

/// Largest message body SQS accepts (1 MiB).
pub const SQS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Whether SQS accepts `text` in a message: it refuses control characters other than tab, line
/// feed and carriage return, and the noncharacters U+FFFE and U+FFFF (its allowed set is
/// `#x9 | #xA | #xD | #x20–#xD7FF | #xE000–#xFFFD | #x10000–#x10FFFF`; surrogates cannot occur in
/// a `str`).
///
/// It runs at memory speed, because the receiver asks it of every body: one branch-free pass
/// over fixed 64-byte chunks (which the compiler vectorises) looks for refused control bytes and
/// for 0xEF, the lead byte of U+FFFE/U+FFFF; only text holding an 0xEF is searched for them.
pub fn sqs_accepts(text: &str) -> bool {
    let bytes = text.as_bytes();
    let refused_control = |b: u8| (b < 0x20) & (b.wrapping_sub(b'\t') >= 2) & (b != b'\r');
    let mut chunks = bytes.chunks_exact(64);
    let mut lead_ef = 0u8;
    for chunk in chunks.by_ref() {
        let (mut control, mut ef) = (0u8, 0u8);
        for &b in chunk {
            control |= u8::from(refused_control(b));
            ef |= u8::from(b == 0xEF);
        }
        if control != 0 {
            return false;
        }
        lead_ef |= ef;
    }
    let rest = chunks.remainder();
    if rest.iter().any(|&b| refused_control(b)) {
        return false;
    }
    if lead_ef == 0 && !rest.contains(&0xEF) {
        return true;
    }
    // U+FFFE and U+FFFF are EF BF BE and EF BF BF in UTF-8.
    memchr::memmem::find_iter(bytes, b"\xEF\xBF")
        .all(|i| !matches!(bytes.get(i + 2), Some(0xBE | 0xBF)))
}

/// Longest visibility timeout SQS allows (12 h).
pub const MAX_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

/// How long the event queue keeps a message: 4 days, SQS's default and `template.yaml`'s
/// `MessageRetentionPeriod`. A retry schedule must end within it.
pub const QUEUE_RETENTION: Duration = Duration::from_secs(4 * 24 * 3600);

/// Longest delay SQS allows on a sent message (`DelaySeconds`, 15 min).
pub const MAX_SEND_DELAY: Duration = Duration::from_secs(15 * 60);

/// Message attribute names the receiver sets (also seen on the DLQ without parsing bodies).
pub mod attr {
    /// The event id.
    pub const EVENT_ID: &str = "event_id";
    /// The source name.
    pub const SOURCE: &str = "source";
    /// The event type.
    pub const EVENT_TYPE: &str = "event_type";
    /// Set by a DLQ redrive: when the message was sent back (RFC 3339).
    pub const REDRIVEN_AT: &str = "redriven_at";
    /// The event's generation the message was sent for, when not 0 (a replay's).
    pub const GENERATION: &str = "generation";
    /// Set by the processor on a copy it re-sent to wait for a retry out of the in-flight set:
    /// the copy's ticket, which the ledger must hold for the copy to run (see
    /// [`crate::processor`]'s "Retries out of flight").
    pub const RETRY_TICKET: &str = "retry_ticket";
    /// On a re-sent copy: when its next attempt is due (epoch milliseconds). A copy received
    /// before is passed on to another delayed copy.
    pub const DUE_AT: &str = "due_at";
    /// On a re-sent copy: how many times the earlier copies of the message were received, so
    /// the processor counts receives across copies (SQS's own count restarts with each copy).
    pub const RECEIVES_BEFORE: &str = "receives_before";
}

/// A message to send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The body (an envelope, see `Envelope::to_message`).
    pub body: String,
    /// String message attributes (at most 10, as SQS allows).
    pub attributes: BTreeMap<String, String>,
    /// The X-Ray trace header to carry to the consumer (on SQS the `AWSTraceHeader` message
    /// system attribute, see [`crate::xray`]); it must be well-formed.
    pub trace_header: Option<String>,
    /// How long the message stays invisible after it is sent (SQS's `DelaySeconds`, whole
    /// seconds, at most [`MAX_SEND_DELAY`]); `None` for at once.
    pub delay: Option<std::time::Duration>,
}

impl OutgoingMessage {
    /// The message's size as SQS counts it against its limit: the body and every attribute.
    pub fn size(&self) -> usize {
        self.body.len() + attributes_size(&self.attributes)
    }
}

/// The size of string message attributes as SQS counts it: each name, data type (`String`) and
/// value. (The `AWSTraceHeader` system attribute does not count.)
pub fn attributes_size(attributes: &BTreeMap<String, String>) -> usize {
    attributes
        .iter()
        .map(|(name, value)| name.len() + "String".len() + value.len())
        .sum()
}

/// A message as received: invisible to others until its visibility timeout passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The queue's id for the message (stable across receives).
    pub message_id: String,
    /// The handle of this receive; needed to delete it or change its visibility.
    pub receipt_handle: String,
    /// The body as sent.
    pub body: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
    /// String message attributes as sent.
    pub attributes: BTreeMap<String, String>,
    /// The X-Ray trace header it was sent with.
    pub trace_header: Option<String>,
}

/// A queue operation that did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue could not be reached or refused for now: try again.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The receipt handle names no message currently received.
    #[error("receipt handle is not valid: {0}")]
    InvalidReceipt(String),
    /// The message is larger than the queue accepts.
    #[error("message of {0} bytes exceeds the queue's limit")]
    TooLarge(usize),
    /// The operation needs a dead-letter queue and none is configured.
    #[error("no dead-letter queue is configured")]
    NoDeadLetterQueue,
    /// A request the queue refuses (bad argument).
    #[error("queue refused the request: {0}")]
    Invalid(String),
}

/// The hand-off between the receiver and the processor.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends a message; returns its message id. Takes the message by value, so a large body
    /// is moved into the queue (or the SQS request), not copied.
    async fn send(&self, message: OutgoingMessage) -> Result<String, QueueError>;

    /// Sends several messages, fewer requests than one each where the queue can (SQS:
    /// `SendMessageBatch`, ten at a time): one result per message, in their order.
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Vec<Result<String, QueueError>> {
        let mut sent = Vec::with_capacity(messages.len());
        for message in messages {
            sent.push(self.send(message).await);
        }
        sent
    }

    /// Receives up to `max` (1–10) visible messages, waiting up to `wait` (≤ 20 s) for one.
    /// A message received more than `max_receive_count` times moves to the DLQ instead.
    async fn receive(&self, max: usize, wait: Duration)
        -> Result<Vec<ReceivedMessage>, QueueError>;

    /// Makes a received message visible again after `timeout` from now (0: at once).
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), QueueError>;

    /// Deletes a received message. Deleting one already deleted is not an error.
    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError>;

    /// Moves a received message to the dead-letter queue at once (send there, then delete).
    async fn move_to_dlq(&self, message: &ReceivedMessage) -> Result<(), QueueError>;

    /// Deletes every message the queue holds.
    async fn purge(&self) -> Result<(), QueueError>;

    /// Largest message the queue accepts, in bytes: body and attributes (see
    /// [`OutgoingMessage::size`]).
    fn max_message_bytes(&self) -> usize {
        SQS_MAX_MESSAGE_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryQueue;

    #[test]
    fn sqs_accepts_its_documented_character_set() {
        let fine = "tab\t lf\n cr\r ascii ~\u{7f} é \u{d7ff} \u{e000} \u{fffd} \u{ff00} \u{10000} \u{10ffff}";
        assert!(sqs_accepts(fine));
        assert!(sqs_accepts(""));
        for c in (0u32..0x20).filter(|c| ![9, 10, 13].contains(c)) {
            let c = char::from_u32(c).unwrap();
            // At every offset within a 64-byte chunk and across the chunk boundary.
            for at in [0, 1, 63, 64, 100] {
                let text: String = "x".repeat(at) + &c.to_string() + "y";
                assert!(!sqs_accepts(&text), "{c:?} at {at}");
            }
        }
        for c in ['\u{fffe}', '\u{ffff}'] {
            assert!(!sqs_accepts(&format!("{}{c}", "é".repeat(40))), "{c:?}");
        }
    }

    #[tokio::test]
    async fn the_memory_queue_refuses_what_sqs_refuses() {
        let queue = MemoryQueue::new(Duration::from_secs(30));
        let send = |body: &str, attribute: &str| {
            let message = OutgoingMessage {
                body: body.to_owned(),
                attributes: BTreeMap::from([(attr::EVENT_TYPE.to_owned(), attribute.to_owned())]),
                trace_header: None,
                delay: None,
            };
            let queue = &queue;
            async move { queue.send(message).await }
        };
        assert!(matches!(
            send("a\u{1}b", "t").await,
            Err(QueueError::Invalid(_))
        ));
        assert!(matches!(
            send("ab", "t\u{ffff}").await,
            Err(QueueError::Invalid(_))
        ));
        // SQS counts attributes against its limit: a body of exactly the limit fits alone only.
        let full = "x".repeat(SQS_MAX_MESSAGE_BYTES);
        assert!(matches!(
            send(&full, "t").await,
            Err(QueueError::TooLarge(n)) if n == SQS_MAX_MESSAGE_BYTES + "event_type".len() + "String".len() + 1
        ));
        let alone = OutgoingMessage {
            body: full,
            ..OutgoingMessage::default()
        };
        assert!(queue.send(alone).await.is_ok());
        assert_eq!(queue.receive(10, Duration::ZERO).await.unwrap().len(), 1);
        assert!(send("a\nb", "t").await.is_ok());
        let received = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].body, "a\nb");
    }
}
