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

/// Longest visibility timeout SQS allows (12 h).
pub const MAX_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

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
    /// Sends a message; returns its message id.
    async fn send(&self, message: &OutgoingMessage) -> Result<String, QueueError>;

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

    /// Largest body the queue accepts, in bytes.
    fn max_message_bytes(&self) -> usize {
        SQS_MAX_MESSAGE_BYTES
    }
}
