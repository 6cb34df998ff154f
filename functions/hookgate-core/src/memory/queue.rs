//! `MemoryQueue`: an in-process queue with SQS's delivery semantics.
//!
//! A received message stays invisible for the visibility timeout, then comes back with its
//! receive count raised; a message already received `max_receive_count` times moves to the
//! dead-letter queue the next time it would be delivered (as SQS's redrive policy does);
//! receives long-poll; a message's trace header travels with it, as SQS's `AWSTraceHeader`
//! does. Time is tokio's, so tests may pause it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::queue::{
    sqs_accepts, OutgoingMessage, Queue, QueueError, ReceivedMessage, MAX_SEND_DELAY,
    MAX_VISIBILITY_TIMEOUT, SQS_MAX_MESSAGE_BYTES,
};

#[derive(Debug)]
struct Entry {
    message_id: String,
    body: String,
    attributes: BTreeMap<String, String>,
    trace_header: Option<String>,
    receive_count: u32,
    visible_at: Instant,
    receipt_handle: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    entries: Vec<Entry>,
}

/// Where a queue's exhausted messages go.
#[derive(Debug, Clone)]
pub struct Redrive {
    /// The dead-letter queue.
    pub dlq: Arc<MemoryQueue>,
    /// Receives after which a message moves there.
    pub max_receive_count: u32,
}

/// An in-process SQS-like queue.
#[derive(Debug)]
pub struct MemoryQueue {
    state: Mutex<State>,
    arrived: Notify,
    visibility_timeout: Duration,
    redrive: Option<Redrive>,
    max_message_bytes: usize,
}

impl MemoryQueue {
    /// A queue with the given default visibility timeout and no DLQ.
    pub fn new(visibility_timeout: Duration) -> Self {
        Self {
            state: Mutex::default(),
            arrived: Notify::new(),
            visibility_timeout,
            redrive: None,
            max_message_bytes: SQS_MAX_MESSAGE_BYTES,
        }
    }

    /// A queue and its DLQ, with SQS's redrive after `max_receive_count` receives.
    pub fn with_dlq(
        visibility_timeout: Duration,
        max_receive_count: u32,
    ) -> (Arc<Self>, Arc<Self>) {
        let dlq = Arc::new(Self::new(visibility_timeout));
        let mut queue = Self::new(visibility_timeout);
        queue.redrive = Some(Redrive {
            dlq: dlq.clone(),
            max_receive_count,
        });
        (Arc::new(queue), dlq)
    }

    /// Messages held, visible or not (SQS's ApproximateNumberOfMessages + NotVisible).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the queue holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation under the lock is completed before it is released, so a poisoned lock
        // still guards consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(
        &self,
        message_id: String,
        body: String,
        attributes: BTreeMap<String, String>,
        trace_header: Option<String>,
    ) {
        self.push_delayed(message_id, body, attributes, trace_header, Duration::ZERO);
    }

    /// Adds a message that becomes visible after `delay` (SQS's `DelaySeconds`).
    fn push_delayed(
        &self,
        message_id: String,
        body: String,
        attributes: BTreeMap<String, String>,
        trace_header: Option<String>,
        delay: Duration,
    ) {
        self.lock().entries.push(Entry {
            message_id,
            body,
            attributes,
            trace_header,
            receive_count: 0,
            visible_at: Instant::now() + delay,
            receipt_handle: None,
        });
        self.arrived.notify_waiters();
    }

    /// Takes what is visible now; moves exhausted messages to the DLQ on the way.
    fn take_visible(&self, max: usize) -> (Vec<ReceivedMessage>, Option<Instant>) {
        let now = Instant::now();
        let mut state = self.lock();
        let mut out = Vec::new();
        let mut next_visible: Option<Instant> = None;
        let mut i = 0;
        while i < state.entries.len() && out.len() < max {
            let entry = &mut state.entries[i];
            if entry.visible_at > now {
                next_visible =
                    Some(next_visible.map_or(entry.visible_at, |t| t.min(entry.visible_at)));
                i += 1;
                continue;
            }
            if let Some(redrive) = &self.redrive {
                if entry.receive_count >= redrive.max_receive_count {
                    let e = state.entries.remove(i);
                    redrive
                        .dlq
                        .push(e.message_id, e.body, e.attributes, e.trace_header);
                    continue;
                }
            }
            entry.receive_count += 1;
            entry.visible_at = now + self.visibility_timeout;
            let handle = uuid::Uuid::new_v4().to_string();
            entry.receipt_handle = Some(handle.clone());
            out.push(ReceivedMessage {
                message_id: entry.message_id.clone(),
                receipt_handle: handle,
                body: entry.body.clone(),
                receive_count: entry.receive_count,
                attributes: entry.attributes.clone(),
                trace_header: entry.trace_header.clone(),
            });
            i += 1;
        }
        (out, next_visible)
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, message: OutgoingMessage) -> Result<String, QueueError> {
        if message.size() > self.max_message_bytes {
            return Err(QueueError::TooLarge(message.size()));
        }
        // As SQS does (`InvalidMessageContents`): the receiver's messages never trip this.
        let mut texts = std::iter::once(&message.body).chain(message.attributes.values());
        if !texts.all(|text| sqs_accepts(text)) {
            return Err(QueueError::Invalid(
                "the message holds characters SQS refuses".into(),
            ));
        }
        let delay = message.delay.unwrap_or_default();
        if delay > MAX_SEND_DELAY {
            return Err(QueueError::Invalid(
                "a message's delay is at most 15 minutes".into(),
            ));
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.push_delayed(
            id.clone(),
            message.body,
            message.attributes,
            message.trace_header,
            delay,
        );
        Ok(id)
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        if !(1..=10).contains(&max) || wait > Duration::from_secs(20) {
            return Err(QueueError::Invalid(
                "receive takes 1-10 messages and waits at most 20 s".into(),
            ));
        }
        let deadline = Instant::now() + wait;
        loop {
            // Register for wake-ups before looking, so a send between the look and the wait
            // is not missed.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let (messages, next_visible) = self.take_visible(max);
            if !messages.is_empty() || Instant::now() >= deadline {
                return Ok(messages);
            }
            let wake = next_visible.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        if timeout > MAX_VISIBILITY_TIMEOUT {
            return Err(QueueError::Invalid(
                "visibility timeout is at most 12 h".into(),
            ));
        }
        let now = Instant::now();
        {
            let mut state = self.lock();
            let entry = state
                .entries
                .iter_mut()
                .find(|e| e.receipt_handle.as_deref() == Some(receipt_handle) && e.visible_at > now)
                .ok_or_else(|| QueueError::InvalidReceipt(receipt_handle.to_owned()))?;
            entry.visible_at = now + timeout;
        }
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        let mut state = self.lock();
        state
            .entries
            .retain(|e| e.receipt_handle.as_deref() != Some(receipt_handle));
        Ok(())
    }

    async fn move_to_dlq(&self, message: &ReceivedMessage) -> Result<(), QueueError> {
        let redrive = self.redrive.as_ref().ok_or(QueueError::NoDeadLetterQueue)?;
        redrive.dlq.push(
            message.message_id.clone(),
            message.body.clone(),
            message.attributes.clone(),
            message.trace_header.clone(),
        );
        self.delete(&message.receipt_handle).await
    }

    async fn purge(&self) -> Result<(), QueueError> {
        self.lock().entries.clear();
        Ok(())
    }

    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }
}
