//! Fault injection for the ports: wrappers that make a `Ledger` or a `Queue` fail, or slow
//! down, on demand.
//!
//! Used by tests of both cores (and the local stack's own tests) to show what happens when
//! DynamoDB or SQS fails at a given step. A [`Faults`] plan holds rules per operation (a port
//! method name: `"claim"`, `"send"`, `"finish_attempt"`, …):
//!
//! - `faults.fail_next("send", 1)`: the next `send` fails (`ServiceUnavailable`), then calls
//!   pass through again;
//! - `faults.fail_next_with("claim", 2, AwsError::Throttling)`: the next two claims are
//!   throttled;
//! - `faults.fail_nth("finish_attempt", 3, AwsError::Timeout)`: the third `finish_attempt`
//!   since the plan was made fails, whatever came before;
//! - `faults.fail_always("start_attempt", AwsError::ProvisionedThroughputExceeded)` until
//!   [`Faults::clear`];
//! - `faults.add_latency("send", d)`: every `send` waits `d` first (and still succeeds).
//!
//! A failure is what the AWS adapters turn such an answer into: `LedgerError::Unavailable` or
//! `QueueError::Unavailable`, its message naming the AWS error code. Faults at the SDK level,
//! where the SDK's own retry policy runs, are `hookgate_aws::faults`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::envelope::EventId;
use crate::ledger::{
    AttemptEnd, AttemptStart, Claim, ClaimOutcome, EventRecord, EventSummary, Ledger, LedgerError,
    ListQuery, StartOutcome,
};
use crate::queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage};

/// The AWS-like error an injected failure stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AwsError {
    /// `ThrottlingException` (SQS, and DynamoDB's control plane): request rate too high.
    Throttling,
    /// DynamoDB's `ProvisionedThroughputExceededException`: a partition is over its throughput.
    ProvisionedThroughputExceeded,
    /// HTTP 503 `ServiceUnavailable`.
    ServiceUnavailable,
    /// The SDK's own timeout: no answer within the attempt or operation budget.
    Timeout,
}

impl AwsError {
    /// The error code the service (or the SDK, for a timeout) gives.
    pub fn code(self) -> &'static str {
        match self {
            AwsError::Throttling => "ThrottlingException",
            AwsError::ProvisionedThroughputExceeded => "ProvisionedThroughputExceededException",
            AwsError::ServiceUnavailable => "ServiceUnavailable",
            AwsError::Timeout => "TimeoutError",
        }
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// When a failure rule applies.
#[derive(Clone, Copy, Debug)]
enum When {
    /// The next `n` calls.
    Next(u32),
    /// The call with this number (1 for the first call the plan saw).
    Nth(u32),
    /// Every call, until cleared.
    Always,
}

#[derive(Clone, Copy, Debug)]
struct FailRule {
    when: When,
    error: AwsError,
}

/// The rules for one operation.
#[derive(Debug, Default)]
struct Rules {
    failures: Vec<FailRule>,
    latency: Option<Duration>,
}

/// The fault plan: which operations fail (with which AWS error, on which calls) or slow down;
/// and how many calls each operation saw and how many faults were injected.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<HashMap<&'static str, Rules>>,
    calls: Mutex<HashMap<&'static str, u32>>,
    injected: Mutex<HashMap<&'static str, u32>>,
}

/// What the plan says about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Wait this long before answering.
    pub latency: Option<Duration>,
    /// Fail with this error (after the latency), or pass the call through.
    pub error: Option<AwsError>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Faults {
    /// A plan with no faults.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn add(&self, operation: &'static str, when: When, error: AwsError) {
        lock(&self.rules)
            .entry(operation)
            .or_default()
            .failures
            .push(FailRule { when, error });
    }

    /// Makes the next `times` calls of `operation` (a port method name, e.g. `"send"`,
    /// `"claim"`) fail with `ServiceUnavailable`.
    pub fn fail_next(&self, operation: &'static str, times: u32) {
        self.fail_next_with(operation, times, AwsError::ServiceUnavailable);
    }

    /// Makes the next `times` calls of `operation` fail with `error`.
    pub fn fail_next_with(&self, operation: &'static str, times: u32, error: AwsError) {
        if times > 0 {
            self.add(operation, When::Next(times), error);
        }
    }

    /// Makes call number `n` of `operation` (counting from 1, every call since the plan was
    /// made, as [`Faults::calls`] does) fail with `error`. A number already passed never comes.
    pub fn fail_nth(&self, operation: &'static str, n: u32, error: AwsError) {
        self.add(operation, When::Nth(n), error);
    }

    /// Makes every call of `operation` fail with `error` until [`Faults::clear`].
    pub fn fail_always(&self, operation: &'static str, error: AwsError) {
        self.add(operation, When::Always, error);
    }

    /// Makes every call of `operation` wait `latency` before it goes on (to succeed or fail),
    /// until [`Faults::clear`]. A zero latency removes it.
    pub fn add_latency(&self, operation: &'static str, latency: Duration) {
        lock(&self.rules).entry(operation).or_default().latency =
            (!latency.is_zero()).then_some(latency);
    }

    /// Removes every rule for `operation`: its calls pass through again, at once.
    pub fn clear(&self, operation: &str) {
        lock(&self.rules).remove(operation);
    }

    /// Removes every rule.
    pub fn clear_all(&self) {
        lock(&self.rules).clear();
    }

    /// How many calls `operation` has seen (failed ones included).
    pub fn calls(&self, operation: &str) -> u32 {
        lock(&self.calls).get(operation).copied().unwrap_or(0)
    }

    /// How many failures were injected into `operation`.
    pub fn injected(&self, operation: &str) -> u32 {
        lock(&self.injected).get(operation).copied().unwrap_or(0)
    }

    /// How many failures were injected, over every operation.
    pub fn injected_total(&self) -> u32 {
        lock(&self.injected).values().sum()
    }

    /// Counts a call of `operation` and says what happens to it. A call that several failure
    /// rules match uses (and consumes) the first one made.
    pub fn verdict(&self, operation: &'static str) -> Verdict {
        let call = {
            let mut calls = lock(&self.calls);
            let n = calls.entry(operation).or_default();
            *n += 1;
            *n
        };
        let mut rules = lock(&self.rules);
        let Some(rules) = rules.get_mut(operation) else {
            return Verdict {
                latency: None,
                error: None,
            };
        };
        let matched = rules.failures.iter().position(|r| match r.when {
            When::Next(n) => n > 0,
            When::Nth(n) => n == call,
            When::Always => true,
        });
        let error = matched.map(|i| {
            let rule = &mut rules.failures[i];
            let error = rule.error;
            match &mut rule.when {
                When::Next(n) if *n > 1 => *n -= 1,
                When::Always => {}
                _ => {
                    rules.failures.remove(i);
                }
            }
            error
        });
        // A rule for a call number already passed can never match: drop it.
        rules
            .failures
            .retain(|r| !matches!(r.when, When::Nth(n) if n <= call));
        if error.is_some() {
            *lock(&self.injected).entry(operation).or_default() += 1;
        }
        Verdict {
            latency: rules.latency,
            error,
        }
    }

    /// Applies the plan to a call: waits, then says whether (and how) it fails.
    async fn apply(&self, operation: &'static str) -> Option<String> {
        let verdict = self.verdict(operation);
        if let Some(latency) = verdict.latency {
            tokio::time::sleep(latency).await;
        }
        verdict.error.map(|e| injected(operation, e))
    }
}

/// The message of an injected failure, as an adapter would word the AWS error.
fn injected(operation: &str, error: AwsError) -> String {
    let what = match error {
        AwsError::Throttling => "Rate exceeded",
        AwsError::ProvisionedThroughputExceeded => {
            "The level of configured provisioned throughput for the table was exceeded"
        }
        AwsError::ServiceUnavailable => "Service is unavailable, try again later",
        AwsError::Timeout => "operation timeout (all attempts including retries) elapsed",
    };
    format!("{error}: {what} (injected fault in {operation})")
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

    async fn check(&self, op: &'static str) -> Result<(), LedgerError> {
        match self.faults.apply(op).await {
            Some(message) => Err(LedgerError::Unavailable(message)),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Ledger for FaultyLedger {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, LedgerError> {
        self.check("claim").await?;
        self.inner.claim(claim).await
    }
    async fn mark_queued(
        &self,
        id: &EventId,
        token: &str,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        self.check("mark_queued").await?;
        self.inner.mark_queued(id, token, now).await
    }
    async fn release(&self, id: &EventId, token: &str) -> Result<(), LedgerError> {
        self.check("release").await?;
        self.inner.release(id, token).await
    }
    async fn start_attempt(&self, start: &AttemptStart) -> Result<StartOutcome, LedgerError> {
        self.check("start_attempt").await?;
        self.inner.start_attempt(start).await
    }
    async fn finish_attempt(&self, end: &AttemptEnd) -> Result<(), LedgerError> {
        self.check("finish_attempt").await?;
        self.inner.finish_attempt(end).await
    }
    async fn get(&self, id: &EventId) -> Result<Option<EventRecord>, LedgerError> {
        self.check("get").await?;
        self.inner.get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Vec<EventSummary>, LedgerError> {
        self.check("list").await?;
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

    async fn check(&self, op: &'static str) -> Result<(), QueueError> {
        match self.faults.apply(op).await {
            Some(message) => Err(QueueError::Unavailable(message)),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Queue for FaultyQueue {
    async fn send(&self, message: OutgoingMessage) -> Result<String, QueueError> {
        self.check("send").await?;
        self.inner.send(message).await
    }
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.check("receive").await?;
        self.inner.receive(max, wait).await
    }
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        self.check("change_visibility").await?;
        self.inner.change_visibility(receipt, timeout).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.check("delete").await?;
        self.inner.delete(receipt).await
    }
    async fn move_to_dlq(&self, message: &ReceivedMessage) -> Result<(), QueueError> {
        self.check("move_to_dlq").await?;
        self.inner.move_to_dlq(message).await
    }
    async fn purge(&self) -> Result<(), QueueError> {
        self.check("purge").await?;
        self.inner.purge().await
    }
    fn max_message_bytes(&self) -> usize {
        self.inner.max_message_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryLedger, MemoryQueue};

    fn errors(faults: &Faults, op: &'static str, calls: u32) -> Vec<Option<AwsError>> {
        (0..calls).map(|_| faults.verdict(op).error).collect()
    }

    #[test]
    fn fail_next_fails_that_many_calls_then_passes_through() {
        let f = Faults::new();
        f.fail_next("send", 2);
        let se = Some(AwsError::ServiceUnavailable);
        assert_eq!(errors(&f, "send", 4), [se, se, None, None]);
        assert_eq!(errors(&f, "claim", 1), [None], "other operations untouched");
        assert_eq!((f.calls("send"), f.injected("send")), (4, 2));
        assert_eq!(f.injected_total(), 2);
    }

    #[test]
    fn fail_nth_fails_only_that_call() {
        let f = Faults::new();
        f.fail_nth("claim", 3, AwsError::Throttling);
        f.fail_nth("claim", 5, AwsError::Timeout);
        assert_eq!(
            errors(&f, "claim", 6),
            [
                None,
                None,
                Some(AwsError::Throttling),
                None,
                Some(AwsError::Timeout),
                None
            ]
        );
        // A call number already passed never comes back.
        f.fail_nth("claim", 2, AwsError::Throttling);
        assert_eq!(errors(&f, "claim", 3), [None, None, None]);
        assert_eq!(f.injected("claim"), 2);
    }

    #[test]
    fn fail_always_lasts_until_cleared_and_rules_apply_in_order() {
        let f = Faults::new();
        f.fail_next_with("start_attempt", 1, AwsError::Timeout);
        f.fail_always("start_attempt", AwsError::ProvisionedThroughputExceeded);
        let pte = Some(AwsError::ProvisionedThroughputExceeded);
        assert_eq!(
            errors(&f, "start_attempt", 3),
            [Some(AwsError::Timeout), pte, pte]
        );
        f.clear("start_attempt");
        assert_eq!(errors(&f, "start_attempt", 2), [None, None]);
        f.fail_always("get", AwsError::Throttling);
        f.fail_always("list", AwsError::Throttling);
        f.clear_all();
        assert_eq!(errors(&f, "get", 1), [None]);
        assert_eq!(errors(&f, "list", 1), [None]);
    }

    #[test]
    fn latency_is_reported_with_or_without_a_failure() {
        let f = Faults::new();
        let d = Duration::from_millis(30);
        f.add_latency("send", d);
        f.fail_next("send", 1);
        assert_eq!(
            f.verdict("send"),
            Verdict {
                latency: Some(d),
                error: Some(AwsError::ServiceUnavailable)
            }
        );
        assert_eq!(
            f.verdict("send"),
            Verdict {
                latency: Some(d),
                error: None
            }
        );
        f.add_latency("send", Duration::ZERO);
        assert_eq!(f.verdict("send").latency, None);
    }

    #[tokio::test]
    async fn wrappers_fail_with_the_aws_code_and_otherwise_pass_through() {
        let f = Faults::new();
        let ledger = FaultyLedger::new(Arc::new(MemoryLedger::new()), f.clone());
        let queue = FaultyQueue::new(
            Arc::new(MemoryQueue::new(Duration::from_secs(30))),
            f.clone(),
        );
        f.fail_next_with("get", 1, AwsError::ProvisionedThroughputExceeded);
        f.fail_next_with("send", 1, AwsError::Throttling);
        let id = EventId::parse("demo:x").unwrap();
        match ledger.get(&id).await {
            Err(LedgerError::Unavailable(m)) => {
                assert!(
                    m.starts_with("ProvisionedThroughputExceededException: "),
                    "{m}"
                );
                assert!(m.ends_with("(injected fault in get)"), "{m}");
            }
            other => panic!("expected an injected failure, got {other:?}"),
        }
        assert_eq!(ledger.get(&id).await, Ok(None));
        let message = OutgoingMessage {
            body: "{}".into(),
            ..OutgoingMessage::default()
        };
        match queue.send(message.clone()).await {
            Err(QueueError::Unavailable(m)) => {
                assert!(m.starts_with("ThrottlingException: "), "{m}")
            }
            other => panic!("expected an injected failure, got {other:?}"),
        }
        assert!(queue.send(message).await.is_ok());
        assert_eq!(queue.receive(10, Duration::ZERO).await.unwrap().len(), 1);
        assert_eq!(f.injected_total(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn latency_delays_the_call_and_it_still_succeeds() {
        let f = Faults::new();
        let ledger = FaultyLedger::new(Arc::new(MemoryLedger::new()), f.clone());
        f.add_latency("get", Duration::from_secs(2));
        let id = EventId::parse("demo:x").unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(ledger.get(&id).await, Ok(None));
        // Paused time: the clock moved by exactly the latency, no real waiting.
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }
}
