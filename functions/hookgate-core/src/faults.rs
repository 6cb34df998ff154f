//! Fault injection for the ports: wrappers that make a `Ledger` or a `Queue` fail on demand.
//!
//! Used by tests of both cores (and the local stack's own tests) to show what happens when
//! DynamoDB or SQS fails at a given step: `faults.fail_next("send", 1)` makes the next
//! `send` answer `Unavailable`, then the wrapper passes calls through again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::envelope::EventId;
use crate::ledger::{
    AttemptEnd, AttemptStart, Claim, ClaimOutcome, EventRecord, EventSummary, Ledger, LedgerError,
    ListQuery, StartOutcome,
};
use crate::queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage};

/// Which operations fail next, and how many times; and how many calls each operation saw.
#[derive(Debug, Default)]
pub struct Faults {
    pending: Mutex<HashMap<&'static str, u32>>,
    calls: Mutex<HashMap<&'static str, u32>>,
}

impl Faults {
    /// A plan with no faults.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Makes the next `times` calls of `operation` (a port method name, e.g. `"send"`,
    /// `"claim"`) fail.
    pub fn fail_next(&self, operation: &'static str, times: u32) {
        *self.lock_pending().entry(operation).or_default() += times;
    }

    /// How many calls `operation` has seen (failed ones included).
    pub fn calls(&self, operation: &str) -> u32 {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, u32>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a call and says whether it should fail.
    fn trip(&self, operation: &'static str) -> bool {
        *self
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(operation)
            .or_default() += 1;
        let mut pending = self.lock_pending();
        match pending.get_mut(operation) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

fn injected(operation: &str) -> String {
    format!("injected fault in {operation}")
}

/// A ledger that fails as its [`Faults`] say.
pub struct FaultyLedger {
    inner: Arc<dyn Ledger>,
    faults: Arc<Faults>,
}

impl FaultyLedger {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Ledger>, faults: Arc<Faults>) -> Self {
        Self { inner, faults }
    }

    fn check(&self, op: &'static str) -> Result<(), LedgerError> {
        if self.faults.trip(op) {
            Err(LedgerError::Unavailable(injected(op)))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Ledger for FaultyLedger {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, LedgerError> {
        self.check("claim")?;
        self.inner.claim(claim).await
    }
    async fn mark_queued(
        &self,
        id: &EventId,
        token: &str,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        self.check("mark_queued")?;
        self.inner.mark_queued(id, token, now).await
    }
    async fn release(&self, id: &EventId, token: &str) -> Result<(), LedgerError> {
        self.check("release")?;
        self.inner.release(id, token).await
    }
    async fn start_attempt(&self, start: &AttemptStart) -> Result<StartOutcome, LedgerError> {
        self.check("start_attempt")?;
        self.inner.start_attempt(start).await
    }
    async fn finish_attempt(&self, end: &AttemptEnd) -> Result<(), LedgerError> {
        self.check("finish_attempt")?;
        self.inner.finish_attempt(end).await
    }
    async fn get(&self, id: &EventId) -> Result<Option<EventRecord>, LedgerError> {
        self.check("get")?;
        self.inner.get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Vec<EventSummary>, LedgerError> {
        self.check("list")?;
        self.inner.list(query).await
    }
}

/// A queue that fails as its [`Faults`] say.
pub struct FaultyQueue {
    inner: Arc<dyn Queue>,
    faults: Arc<Faults>,
}

impl FaultyQueue {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Queue>, faults: Arc<Faults>) -> Self {
        Self { inner, faults }
    }

    fn check(&self, op: &'static str) -> Result<(), QueueError> {
        if self.faults.trip(op) {
            Err(QueueError::Unavailable(injected(op)))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Queue for FaultyQueue {
    async fn send(&self, message: &OutgoingMessage) -> Result<String, QueueError> {
        self.check("send")?;
        self.inner.send(message).await
    }
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.check("receive")?;
        self.inner.receive(max, wait).await
    }
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        self.check("change_visibility")?;
        self.inner.change_visibility(receipt, timeout).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.check("delete")?;
        self.inner.delete(receipt).await
    }
    async fn move_to_dlq(&self, message: &ReceivedMessage) -> Result<(), QueueError> {
        self.check("move_to_dlq")?;
        self.inner.move_to_dlq(message).await
    }
    async fn purge(&self) -> Result<(), QueueError> {
        self.check("purge")?;
        self.inner.purge().await
    }
    fn max_message_bytes(&self) -> usize {
        self.inner.max_message_bytes()
    }
}
