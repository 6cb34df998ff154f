//! `MemoryQueue`: an in-process queue with SQS's delivery semantics and SQS's limits.
//!
//! A received message stays invisible for the visibility timeout, then comes back with its
//! receive count raised; a message already received `max_receive_count` times moves to the
//! dead-letter queue the next time it would be delivered (as SQS's redrive policy does);
//! receives long-poll; a message's trace header travels with it, as SQS's `AWSTraceHeader`
//! does.
//!
//! It enforces the limits of a standard queue that decide whether a design holds at scale
//! ([`QueueLimits`], SQS's values by default): at most ~120,000 messages in flight (received,
//! neither deleted nor visible again) — at the limit a receive returns nothing, without an
//! error, as SQS's long polling does; a visibility timeout of at most 12 h from the receive; a
//! delay of at most 15 min; a message of at most 1 MiB. [`MemoryQueue::counters`] shows how
//! close a run came to them.
//!
//! Time is a [`Clock`]'s: by default a [`TokioClock`] (wall-clock time that a test pausing
//! tokio's clock moves), or a virtual clock the simulation drives.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::clock::{Clock, Timestamp, TokioClock};
use crate::queue::{
    sqs_accepts, OutgoingMessage, Queue, QueueError, ReceivedMessage, MAX_VISIBILITY_TIMEOUT,
    SQS_MAX_MESSAGE_BYTES,
};

/// Most messages in flight on a standard SQS queue (about 120,000).
pub const SQS_MAX_IN_FLIGHT: usize = 120_000;

/// Longest delay SQS allows on a message (15 min).
pub const SQS_MAX_DELAY: Duration = Duration::from_secs(15 * 60);

/// The limits a [`MemoryQueue`] enforces. The defaults are SQS's; tests may use small ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Messages in flight at most: at the limit a receive returns nothing.
    pub max_in_flight: usize,
    /// Longest visibility timeout, counted from the receive.
    pub max_visibility: Duration,
    /// Longest delay before a sent message becomes visible.
    pub max_delay: Duration,
    /// Largest message (body and attributes).
    pub max_message_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_in_flight: SQS_MAX_IN_FLIGHT,
            max_visibility: MAX_VISIBILITY_TIMEOUT,
            max_delay: SQS_MAX_DELAY,
            max_message_bytes: SQS_MAX_MESSAGE_BYTES,
        }
    }
}

/// What a queue holds and has refused, as CloudWatch would show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Messages held: visible, in flight and delayed.
    pub held: usize,
    /// Messages in flight now (`ApproximateNumberOfMessagesNotVisible`).
    pub in_flight: usize,
    /// The most messages in flight at once since the last [`MemoryQueue::reset_peaks`].
    pub peak_in_flight: usize,
    /// Age of the oldest message held (`ApproximateAgeOfOldestMessage`).
    pub oldest_age: Duration,
    /// Receives that found the in-flight limit reached (and so returned nothing, or fewer
    /// messages than were visible).
    pub receives_at_in_flight_limit: u64,
    /// Messages sent.
    pub sent: u64,
    /// Messages deleted.
    pub deleted: u64,
}

#[derive(Debug)]
struct Entry {
    message_id: String,
    body: String,
    attributes: BTreeMap<String, String>,
    trace_header: Option<String>,
    receive_count: u32,
    sent_at: Timestamp,
    visible_at: Timestamp,
    /// When it was last received (the 12 h visibility limit counts from there).
    received_at: Option<Timestamp>,
    receipt_handle: Option<String>,
}

/// Ordering keys are `(time, sequence)`: the sequence is the send order, unique per message.
type Key = (Timestamp, u64);

#[derive(Debug, Default)]
struct State {
    /// Every message, by send order.
    entries: BTreeMap<u64, Entry>,
    /// Every message, by the time it is visible from.
    by_visible: BTreeSet<Key>,
    /// Received messages by the time their visibility ends; those whose time has passed are
    /// pruned when counted.
    in_flight: BTreeSet<Key>,
    /// The current receipt handle of each received message.
    handles: HashMap<String, u64>,
    next_seq: u64,
    peak_in_flight: usize,
    receives_at_limit: u64,
    sent: u64,
    deleted: u64,
}

impl State {
    /// Messages in flight at `now` (after dropping those visible again).
    fn in_flight_at(&mut self, now: Timestamp) -> usize {
        while let Some(&first) = self.in_flight.first() {
            if first.0 > now {
                break;
            }
            self.in_flight.remove(&first);
        }
        self.in_flight.len()
    }

    fn remove(&mut self, seq: u64) -> Option<Entry> {
        let entry = self.entries.remove(&seq)?;
        self.by_visible.remove(&(entry.visible_at, seq));
        self.in_flight.remove(&(entry.visible_at, seq));
        if let Some(handle) = &entry.receipt_handle {
            self.handles.remove(handle);
        }
        Some(entry)
    }
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
    limits: QueueLimits,
    clock: Arc<dyn Clock>,
}

impl MemoryQueue {
    /// A queue with the given default visibility timeout and no DLQ, SQS's limits, on tokio's
    /// clock.
    pub fn new(visibility_timeout: Duration) -> Self {
        Self::with_limits(
            visibility_timeout,
            QueueLimits::default(),
            Arc::new(TokioClock::new()),
        )
    }

    /// A queue with no DLQ, these limits, reading time from `clock`.
    pub fn with_limits(
        visibility_timeout: Duration,
        limits: QueueLimits,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            state: Mutex::default(),
            arrived: Notify::new(),
            visibility_timeout,
            redrive: None,
            limits,
            clock,
        }
    }

    /// A queue and its DLQ, with SQS's redrive after `max_receive_count` receives.
    pub fn with_dlq(
        visibility_timeout: Duration,
        max_receive_count: u32,
    ) -> (Arc<Self>, Arc<Self>) {
        Self::with_dlq_limits(
            visibility_timeout,
            max_receive_count,
            QueueLimits::default(),
            Arc::new(TokioClock::new()),
        )
    }

    /// A queue and its DLQ, both with these limits and this clock.
    pub fn with_dlq_limits(
        visibility_timeout: Duration,
        max_receive_count: u32,
        limits: QueueLimits,
        clock: Arc<dyn Clock>,
    ) -> (Arc<Self>, Arc<Self>) {
        let dlq = Arc::new(Self::with_limits(visibility_timeout, limits, clock.clone()));
        let mut queue = Self::with_limits(visibility_timeout, limits, clock);
        queue.redrive = Some(Redrive {
            dlq: dlq.clone(),
            max_receive_count,
        });
        (Arc::new(queue), dlq)
    }

    /// The limits this queue enforces.
    pub fn limits(&self) -> QueueLimits {
        self.limits
    }

    /// Messages held, visible or not (SQS's ApproximateNumberOfMessages + NotVisible).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the queue holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the queue holds now, and what it has counted.
    pub fn counters(&self) -> QueueCounters {
        let now = self.clock.now();
        let mut state = self.lock();
        let in_flight = state.in_flight_at(now);
        QueueCounters {
            held: state.entries.len(),
            in_flight,
            peak_in_flight: state.peak_in_flight.max(in_flight),
            oldest_age: state
                .entries
                .first_key_value()
                .map_or(Duration::ZERO, |(_, e)| now.since(e.sent_at)),
            receives_at_in_flight_limit: state.receives_at_limit,
            sent: state.sent,
            deleted: state.deleted,
        }
    }

    /// Starts a new peak: [`QueueCounters::peak_in_flight`] counts from now on.
    pub fn reset_peaks(&self) {
        let now = self.clock.now();
        let mut state = self.lock();
        state.peak_in_flight = state.in_flight_at(now);
    }

    /// Sends a message that becomes visible after `delay` (SQS's `DelaySeconds`, at most
    /// [`QueueLimits::max_delay`]).
    pub fn send_delayed(
        &self,
        message: OutgoingMessage,
        delay: Duration,
    ) -> Result<String, QueueError> {
        if message.size() > self.limits.max_message_bytes {
            return Err(QueueError::TooLarge(message.size()));
        }
        if delay > self.limits.max_delay {
            return Err(QueueError::Invalid(format!(
                "a delay is at most {} s",
                self.limits.max_delay.as_secs()
            )));
        }
        // As SQS does (`InvalidMessageContents`): the receiver's messages never trip this.
        let mut texts = std::iter::once(&message.body).chain(message.attributes.values());
        if !texts.all(|text| sqs_accepts(text)) {
            return Err(QueueError::Invalid(
                "the message holds characters SQS refuses".into(),
            ));
        }
        let id = crate::token::uuid().to_string();
        self.push(
            id.clone(),
            message.body,
            message.attributes,
            message.trace_header,
            delay,
        );
        Ok(id)
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
        delay: Duration,
    ) {
        let now = self.clock.now();
        let visible_at = now.plus(delay);
        {
            let mut state = self.lock();
            let seq = state.next_seq;
            state.next_seq += 1;
            state.sent += 1;
            state.entries.insert(
                seq,
                Entry {
                    message_id,
                    body,
                    attributes,
                    trace_header,
                    receive_count: 0,
                    sent_at: now,
                    visible_at,
                    received_at: None,
                    receipt_handle: None,
                },
            );
            state.by_visible.insert((visible_at, seq));
        }
        self.arrived.notify_waiters();
    }

    /// Takes what is visible now, as far as the in-flight limit allows; moves exhausted
    /// messages to the DLQ on the way. Also returns when the next message becomes visible.
    fn take_visible(&self, max: usize) -> (Vec<ReceivedMessage>, Option<Timestamp>) {
        let now = self.clock.now();
        let mut state = self.lock();
        let room = self
            .limits
            .max_in_flight
            .saturating_sub(state.in_flight_at(now));
        let wanted = max.min(room);
        let mut out = Vec::new();
        let mut cursor: Bound<Key> = Bound::Unbounded;
        let mut taken: Vec<u64> = Vec::new();
        while out.len() < wanted {
            let Some(&key) = state
                .by_visible
                .range((cursor, Bound::Included((now, u64::MAX))))
                .next()
            else {
                break;
            };
            cursor = Bound::Excluded(key);
            let seq = key.1;
            if taken.contains(&seq) {
                // Received in this very call with a zero visibility timeout.
                continue;
            }
            let exhausted = self.redrive.as_ref().filter(|r| {
                state.entries.get(&seq).map_or(0, |e| e.receive_count) >= r.max_receive_count
            });
            if let Some(redrive) = exhausted {
                if let Some(e) = state.remove(seq) {
                    redrive.dlq.push(
                        e.message_id,
                        e.body,
                        e.attributes,
                        e.trace_header,
                        Duration::ZERO,
                    );
                }
                continue;
            }
            let visible_at = now.plus(self.visibility_timeout);
            let handle = crate::token::uuid().to_string();
            let State {
                entries,
                by_visible,
                in_flight,
                handles,
                ..
            } = &mut *state;
            let Some(entry) = entries.get_mut(&seq) else {
                break;
            };
            by_visible.remove(&key);
            in_flight.remove(&key);
            if let Some(old) = entry.receipt_handle.take() {
                handles.remove(&old);
            }
            entry.receive_count += 1;
            entry.visible_at = visible_at;
            entry.received_at = Some(now);
            entry.receipt_handle = Some(handle.clone());
            by_visible.insert((visible_at, seq));
            in_flight.insert((visible_at, seq));
            handles.insert(handle.clone(), seq);
            taken.push(seq);
            out.push(ReceivedMessage {
                message_id: entry.message_id.clone(),
                receipt_handle: handle,
                body: entry.body.clone(),
                receive_count: entry.receive_count,
                attributes: entry.attributes.clone(),
                trace_header: entry.trace_header.clone(),
            });
        }
        let in_flight = state.in_flight_at(now);
        state.peak_in_flight = state.peak_in_flight.max(in_flight);
        let at_limit = room < max && state.by_visible.range(..=(now, u64::MAX)).next().is_some();
        if at_limit {
            state.receives_at_limit += 1;
        }
        let next_visible = state
            .by_visible
            .range((Bound::Excluded((now, u64::MAX)), Bound::Unbounded))
            .next()
            .map(|k| k.0);
        (out, next_visible)
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, message: OutgoingMessage) -> Result<String, QueueError> {
        let delay = message.delay.unwrap_or_default();
        self.send_delayed(message, delay)
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
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for wake-ups before looking, so a send between the look and the wait
            // is not missed.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let (messages, next_visible) = self.take_visible(max);
            if !messages.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(messages);
            }
            let wake = next_visible.map_or(deadline, |t| {
                deadline.min(tokio::time::Instant::now() + t.since(self.clock.now()))
            });
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
        let max = self.limits.max_visibility;
        let hours = max.as_secs() / 3600;
        if timeout > max {
            return Err(QueueError::Invalid(format!(
                "visibility timeout is at most {hours} h"
            )));
        }
        let now = self.clock.now();
        {
            let mut state = self.lock();
            let invalid = || QueueError::InvalidReceipt(receipt_handle.to_owned());
            let seq = *state.handles.get(receipt_handle).ok_or_else(invalid)?;
            let State {
                entries,
                by_visible,
                in_flight,
                ..
            } = &mut *state;
            let entry = entries
                .get_mut(&seq)
                .filter(|e| e.visible_at > now)
                .ok_or_else(invalid)?;
            let until = now.plus(timeout);
            // SQS counts the limit from the receive, not from this call.
            if entry
                .received_at
                .is_some_and(|received| until.since(received) > max)
            {
                return Err(QueueError::Invalid(format!(
                    "visibility timeout ends at most {hours} h after the receive"
                )));
            }
            by_visible.remove(&(entry.visible_at, seq));
            in_flight.remove(&(entry.visible_at, seq));
            entry.visible_at = until;
            by_visible.insert((until, seq));
            if until > now {
                in_flight.insert((until, seq));
            }
        }
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        {
            let mut state = self.lock();
            if let Some(seq) = state.handles.get(receipt_handle).copied() {
                if state.remove(seq).is_some() {
                    state.deleted += 1;
                }
            }
        }
        // Room in flight for a receive waiting at the limit.
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn move_to_dlq(&self, message: &ReceivedMessage) -> Result<(), QueueError> {
        let redrive = self.redrive.as_ref().ok_or(QueueError::NoDeadLetterQueue)?;
        redrive.dlq.push(
            message.message_id.clone(),
            message.body.clone(),
            message.attributes.clone(),
            message.trace_header.clone(),
            Duration::ZERO,
        );
        self.delete(&message.receipt_handle).await
    }

    async fn purge(&self) -> Result<(), QueueError> {
        let mut state = self.lock();
        state.entries.clear();
        state.by_visible.clear();
        state.in_flight.clear();
        state.handles.clear();
        Ok(())
    }

    fn max_message_bytes(&self) -> usize {
        self.limits.max_message_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn message(body: &str) -> OutgoingMessage {
        OutgoingMessage {
            body: body.to_owned(),
            ..OutgoingMessage::default()
        }
    }

    fn small(max_in_flight: usize) -> (Arc<ManualClock>, MemoryQueue) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_000)));
        let limits = QueueLimits {
            max_in_flight,
            ..QueueLimits::default()
        };
        let queue = MemoryQueue::with_limits(Duration::from_secs(30), limits, clock.clone());
        (clock, queue)
    }

    #[tokio::test]
    async fn at_the_in_flight_limit_a_receive_returns_nothing_and_is_counted() {
        let (clock, queue) = small(3);
        for n in 0..5 {
            queue.send(message(&n.to_string())).await.unwrap();
        }
        let first = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 3, "only as many as the limit leaves room for");
        assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());
        let counters = queue.counters();
        assert_eq!((counters.in_flight, counters.held), (3, 5));
        assert_eq!(counters.receives_at_in_flight_limit, 2);
        // A delete makes room for one.
        queue.delete(&first[0].receipt_handle).await.unwrap();
        assert_eq!(queue.receive(10, Duration::ZERO).await.unwrap().len(), 1);
        // A message whose visibility ends is no longer in flight.
        clock.advance(Duration::from_secs(31));
        assert_eq!(queue.counters().in_flight, 0);
        assert_eq!(queue.counters().peak_in_flight, 3);
        queue.reset_peaks();
        assert_eq!(queue.counters().peak_in_flight, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_poll_at_the_in_flight_limit_waits_and_returns_nothing_without_an_error() {
        let (_clock, queue) = small(1);
        queue.send(message("a")).await.unwrap();
        queue.send(message("b")).await.unwrap();
        let first = queue.receive(1, Duration::ZERO).await.unwrap();
        let waited = tokio::time::Instant::now();
        let got = queue.receive(10, Duration::from_secs(20)).await;
        assert_eq!(
            got,
            Ok(Vec::new()),
            "as SQS's long polling: no error, nothing"
        );
        assert_eq!(waited.elapsed(), Duration::from_secs(20));
        // Room made while a receive waits: it gets the message at once.
        let waiting = queue.receive(10, Duration::from_secs(20));
        let delete = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            queue.delete(&first[0].receipt_handle).await.unwrap();
        };
        let started = tokio::time::Instant::now();
        let (got, ()) = tokio::join!(waiting, delete);
        assert_eq!(got.unwrap().len(), 1);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn visibility_follows_the_clock_and_is_capped_from_the_receive() {
        let (clock, queue) = small(100);
        queue.send(message("a")).await.unwrap();
        let got = queue.receive(1, Duration::ZERO).await.unwrap().remove(0);
        clock.advance(Duration::from_secs(29));
        assert!(queue.receive(1, Duration::ZERO).await.unwrap().is_empty());
        // 12 h from the receive, not from now.
        assert!(matches!(
            queue
                .change_visibility(&got.receipt_handle, MAX_VISIBILITY_TIMEOUT)
                .await,
            Err(QueueError::Invalid(_))
        ));
        let most = MAX_VISIBILITY_TIMEOUT - Duration::from_secs(29);
        queue
            .change_visibility(&got.receipt_handle, most)
            .await
            .unwrap();
        assert!(matches!(
            queue
                .change_visibility(
                    &got.receipt_handle,
                    MAX_VISIBILITY_TIMEOUT + Duration::from_secs(1)
                )
                .await,
            Err(QueueError::Invalid(_))
        ));
        clock.advance(most - Duration::from_secs(1));
        assert!(queue.receive(1, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(
            queue.counters().oldest_age,
            MAX_VISIBILITY_TIMEOUT - Duration::from_secs(1)
        );
        clock.advance(Duration::from_secs(1));
        let again = queue.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(again[0].receive_count, 2);
    }

    #[tokio::test]
    async fn a_delayed_message_is_hidden_until_due_and_the_delay_is_capped() {
        let (clock, queue) = small(100);
        assert!(matches!(
            queue.send_delayed(message("late"), SQS_MAX_DELAY + Duration::from_secs(1)),
            Err(QueueError::Invalid(_))
        ));
        queue
            .send_delayed(message("soon"), Duration::from_secs(60))
            .unwrap();
        assert!(queue.receive(1, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(queue.counters().in_flight, 0, "delayed is not in flight");
        clock.advance(Duration::from_secs(60));
        assert_eq!(
            queue.receive(1, Duration::ZERO).await.unwrap()[0].body,
            "soon"
        );
    }

    #[tokio::test]
    async fn a_message_over_the_configured_size_is_refused() {
        let limits = QueueLimits {
            max_message_bytes: 10,
            ..QueueLimits::default()
        };
        let queue = MemoryQueue::with_limits(
            Duration::from_secs(30),
            limits,
            Arc::new(ManualClock::default()),
        );
        assert!(matches!(
            queue.send(message("01234567890")).await,
            Err(QueueError::TooLarge(11))
        ));
        assert_eq!(queue.max_message_bytes(), 10);
        assert!(queue.send(message("0123456789")).await.is_ok());
    }

    #[tokio::test]
    async fn a_zero_visibility_timeout_receives_each_message_once_per_call() {
        let queue = MemoryQueue::with_limits(
            Duration::ZERO,
            QueueLimits::default(),
            Arc::new(ManualClock::default()),
        );
        queue.send(message("a")).await.unwrap();
        queue.send(message("b")).await.unwrap();
        assert_eq!(queue.receive(10, Duration::ZERO).await.unwrap().len(), 2);
        assert_eq!(queue.counters().in_flight, 0);
    }
}
