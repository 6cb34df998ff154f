//! Fault injection for the ports: wrappers that make a `Ledger`, a `Queue` or an `Archive`
//! fail, or slow down, on demand.
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
//! - `faults.add_latency("send", d)`: every `send` waits `d` first (and still succeeds);
//! - `faults.lose_answer_next("claim", 1)`: the next claim **takes effect**, then its answer is
//!   lost (a timeout, a dropped connection) and the call is sent again, as the AWS SDK does;
//!   the caller sees the answer to that retry — the harder, common case;
//! - `faults.lose_answer_and_fail_next("finish_attempt", 1, AwsError::Timeout)`: the call takes
//!   effect, then every retry is lost too and the caller sees the error.
//!
//! A failure is what the AWS adapters turn such an answer into: `LedgerError::Unavailable` or
//! `QueueError::Unavailable`, its message naming the AWS error code. Faults at the SDK level,
//! where the SDK's own retry policy runs, are `hookgate_aws::faults`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::archive::{Archive, ArchiveError, PayloadRef};
use crate::envelope::{Envelope, EventId};
use crate::ledger::{
    AttemptEnd, AttemptStart, Claim, ClaimOutcome, EventRecord, EventSummary, Ledger, LedgerError,
    ListQuery, Page, PageQuery, ReplayOutcome, ReplayStart, ReplayUndo, StartOutcome,
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

/// What a rule does to a call it matches.
#[derive(Clone, Copy, Debug)]
enum Effect {
    /// Fails before reaching the service: nothing applied.
    Refuse(AwsError),
    /// Applied, answer lost, sent again: the caller sees the retry's answer.
    ApplyThenRetry,
    /// Applied, answer lost on every try: the caller sees this error.
    ApplyThenFail(AwsError),
}

#[derive(Clone, Copy, Debug)]
struct FailRule {
    when: When,
    effect: Effect,
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
    /// The call reaches the service and takes effect first, whatever the caller then sees:
    /// with no `error`, the call is sent again and the caller gets that second answer.
    pub applied: bool,
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

    fn add(&self, operation: &'static str, when: When, effect: Effect) {
        lock(&self.rules)
            .entry(operation)
            .or_default()
            .failures
            .push(FailRule { when, effect });
    }

    /// Makes the next `times` calls of `operation` (a port method name, e.g. `"send"`,
    /// `"claim"`) fail with `ServiceUnavailable`.
    pub fn fail_next(&self, operation: &'static str, times: u32) {
        self.fail_next_with(operation, times, AwsError::ServiceUnavailable);
    }

    /// Makes the next `times` calls of `operation` fail with `error`.
    pub fn fail_next_with(&self, operation: &'static str, times: u32, error: AwsError) {
        if times > 0 {
            self.add(operation, When::Next(times), Effect::Refuse(error));
        }
    }

    /// Makes call number `n` of `operation` (counting from 1, every call since the plan was
    /// made, as [`Faults::calls`] does) fail with `error`. A number already passed never comes.
    pub fn fail_nth(&self, operation: &'static str, n: u32, error: AwsError) {
        self.add(operation, When::Nth(n), Effect::Refuse(error));
    }

    /// Makes every call of `operation` fail with `error` until [`Faults::clear`].
    pub fn fail_always(&self, operation: &'static str, error: AwsError) {
        self.add(operation, When::Always, Effect::Refuse(error));
    }

    /// The next `times` calls of `operation` take effect, then their answer is lost and the
    /// call is sent again, as the SDK retries a timeout or a dropped connection: the caller
    /// sees the answer to the second, identical call (made against what the first one did).
    pub fn lose_answer_next(&self, operation: &'static str, times: u32) {
        if times > 0 {
            self.add(operation, When::Next(times), Effect::ApplyThenRetry);
        }
    }

    /// Call number `n` of `operation` (as [`Faults::fail_nth`] counts) takes effect, then its
    /// answer is lost and it is sent again; the caller sees the second answer.
    pub fn lose_answer_nth(&self, operation: &'static str, n: u32) {
        self.add(operation, When::Nth(n), Effect::ApplyThenRetry);
    }

    /// The next `times` calls of `operation` take effect, then every answer is lost and the
    /// caller sees `error` (a timeout, typically): a write that happened though its caller was
    /// told it failed.
    pub fn lose_answer_and_fail_next(&self, operation: &'static str, times: u32, error: AwsError) {
        if times > 0 {
            self.add(operation, When::Next(times), Effect::ApplyThenFail(error));
        }
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
                applied: false,
                error: None,
            };
        };
        let matched = rules.failures.iter().position(|r| match r.when {
            When::Next(n) => n > 0,
            When::Nth(n) => n == call,
            When::Always => true,
        });
        let effect = matched.map(|i| {
            let rule = &mut rules.failures[i];
            let effect = rule.effect;
            match &mut rule.when {
                When::Next(n) if *n > 1 => *n -= 1,
                When::Always => {}
                _ => {
                    rules.failures.remove(i);
                }
            }
            effect
        });
        // A rule for a call number already passed can never match: drop it.
        rules
            .failures
            .retain(|r| !matches!(r.when, When::Nth(n) if n <= call));
        if effect.is_some() {
            *lock(&self.injected).entry(operation).or_default() += 1;
        }
        let (applied, error) = match effect {
            None => (false, None),
            Some(Effect::Refuse(e)) => (false, Some(e)),
            Some(Effect::ApplyThenRetry) => (true, None),
            Some(Effect::ApplyThenFail(e)) => (true, Some(e)),
        };
        Verdict {
            latency: rules.latency,
            applied,
            error,
        }
    }

    /// Runs `call` under the plan: waits, then fails it, or runs it — once, or (when its answer
    /// is lost) twice, the second run being the retry whose answer the caller sees.
    async fn run<T, E, Fut>(
        &self,
        operation: &'static str,
        call: impl Fn() -> Fut,
        error: impl FnOnce(String) -> E,
    ) -> Result<T, E>
    where
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let verdict = self.verdict(operation);
        if let Some(latency) = verdict.latency {
            tokio::time::sleep(latency).await;
        }
        if verdict.applied {
            // Applied; whatever it answered is lost on the way back.
            let _lost = call().await;
        }
        match verdict.error {
            Some(e) => Err(error(injected(operation, e))),
            None => call().await,
        }
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
}

#[async_trait]
impl Ledger for FaultyLedger {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, LedgerError> {
        let call = || self.inner.claim(claim);
        self.faults
            .run("claim", call, LedgerError::Unavailable)
            .await
    }
    async fn release(&self, id: &EventId, token: &str) -> Result<(), LedgerError> {
        let call = || self.inner.release(id, token);
        self.faults
            .run("release", call, LedgerError::Unavailable)
            .await
    }
    async fn start_attempt(&self, start: &AttemptStart) -> Result<StartOutcome, LedgerError> {
        let call = || self.inner.start_attempt(start);
        self.faults
            .run("start_attempt", call, LedgerError::Unavailable)
            .await
    }
    async fn finish_attempt(&self, end: &AttemptEnd) -> Result<(), LedgerError> {
        let call = || self.inner.finish_attempt(end);
        self.faults
            .run("finish_attempt", call, LedgerError::Unavailable)
            .await
    }
    async fn hand_off(&self, hand_off: &crate::ledger::HandOff) -> Result<(), LedgerError> {
        let call = || self.inner.hand_off(hand_off);
        self.faults
            .run("hand_off", call, LedgerError::Unavailable)
            .await
    }
    async fn get(&self, id: &EventId) -> Result<Option<EventRecord>, LedgerError> {
        let call = || self.inner.get(id);
        self.faults.run("get", call, LedgerError::Unavailable).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Vec<EventSummary>, LedgerError> {
        let call = || self.inner.list(query);
        self.faults
            .run("list", call, LedgerError::Unavailable)
            .await
    }
    async fn list_page(&self, query: &PageQuery) -> Result<Page, LedgerError> {
        let call = || self.inner.list_page(query);
        self.faults
            .run("list_page", call, LedgerError::Unavailable)
            .await
    }
    async fn inline_payload(&self, id: &EventId) -> Result<Option<bytes::Bytes>, LedgerError> {
        let call = || self.inner.inline_payload(id);
        self.faults
            .run("inline_payload", call, LedgerError::Unavailable)
            .await
    }
    async fn begin_replay(&self, replay: &ReplayStart) -> Result<ReplayOutcome, LedgerError> {
        let call = || self.inner.begin_replay(replay);
        self.faults
            .run("begin_replay", call, LedgerError::Unavailable)
            .await
    }
    async fn undo_replay(&self, undo: &ReplayUndo) -> Result<(), LedgerError> {
        let call = || self.inner.undo_replay(undo);
        self.faults
            .run("undo_replay", call, LedgerError::Unavailable)
            .await
    }
    async fn add_history(
        &self,
        id: &EventId,
        entry: &crate::ledger::HistoryEntry,
        token: &str,
    ) -> Result<bool, LedgerError> {
        let call = || self.inner.add_history(id, entry, token);
        self.faults
            .run("add_history", call, LedgerError::Unavailable)
            .await
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
}

#[async_trait]
impl Queue for FaultyQueue {
    async fn send(&self, message: OutgoingMessage) -> Result<String, QueueError> {
        // A retried send sends the same message again (a second copy, as on SQS).
        let call = || self.inner.send(message.clone());
        self.faults.run("send", call, QueueError::Unavailable).await
    }
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let call = || self.inner.receive(max, wait);
        self.faults
            .run("receive", call, QueueError::Unavailable)
            .await
    }
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        let call = || self.inner.change_visibility(receipt, timeout);
        self.faults
            .run("change_visibility", call, QueueError::Unavailable)
            .await
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let call = || self.inner.delete(receipt);
        self.faults
            .run("delete", call, QueueError::Unavailable)
            .await
    }
    async fn move_to_dlq(&self, message: &ReceivedMessage) -> Result<(), QueueError> {
        let call = || self.inner.move_to_dlq(message);
        self.faults
            .run("move_to_dlq", call, QueueError::Unavailable)
            .await
    }
    async fn purge(&self) -> Result<(), QueueError> {
        let call = || self.inner.purge();
        self.faults
            .run("purge", call, QueueError::Unavailable)
            .await
    }
    fn max_message_bytes(&self) -> usize {
        self.inner.max_message_bytes()
    }
}

/// An archive that fails as its [`Faults`] say. Operations: `archive_put`, `archive_get`,
/// `archive_exists`, `archive_delete`.
pub struct FaultyArchive {
    inner: Arc<dyn Archive>,
    faults: Arc<Faults>,
}

impl FaultyArchive {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Archive>, faults: Arc<Faults>) -> Self {
        Self { inner, faults }
    }
}

#[async_trait]
impl Archive for FaultyArchive {
    async fn put(&self, envelope: &Envelope) -> Result<PayloadRef, ArchiveError> {
        let call = || self.inner.put(envelope);
        self.faults
            .run("archive_put", call, ArchiveError::Unavailable)
            .await
    }
    async fn get(&self, event_id: &EventId) -> Result<Option<Envelope>, ArchiveError> {
        let call = || self.inner.get(event_id);
        self.faults
            .run("archive_get", call, ArchiveError::Unavailable)
            .await
    }
    async fn exists(&self, event_id: &EventId) -> Result<bool, ArchiveError> {
        let call = || self.inner.exists(event_id);
        self.faults
            .run("archive_exists", call, ArchiveError::Unavailable)
            .await
    }
    async fn delete(&self, event_id: &EventId) -> Result<(), ArchiveError> {
        let call = || self.inner.delete(event_id);
        self.faults
            .run("archive_delete", call, ArchiveError::Unavailable)
            .await
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
                applied: false,
                error: Some(AwsError::ServiceUnavailable)
            }
        );
        assert_eq!(
            f.verdict("send"),
            Verdict {
                latency: Some(d),
                applied: false,
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

    #[tokio::test]
    async fn a_lost_answer_applies_the_call_then_answers_its_retry() {
        let f = Faults::new();
        let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
        let faulty = FaultyQueue::new(queue.clone(), f.clone());
        f.lose_answer_next("send", 1);
        let message = OutgoingMessage {
            body: "{}".into(),
            ..OutgoingMessage::default()
        };
        assert!(faulty.send(message.clone()).await.is_ok());
        // Applied, then sent again: two copies, as a retried SendMessage leaves on SQS.
        assert_eq!(queue.receive(10, Duration::ZERO).await.unwrap().len(), 2);
        assert_eq!((f.calls("send"), f.injected("send")), (1, 1));

        // Applied, and every retry lost: the caller is told it failed, though it happened.
        f.lose_answer_and_fail_next("send", 1, AwsError::Timeout);
        match faulty.send(message.clone()).await {
            Err(QueueError::Unavailable(m)) => assert!(m.starts_with("TimeoutError"), "{m}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_eq!(queue.receive(10, Duration::ZERO).await.unwrap().len(), 1);
        assert_eq!(
            f.verdict("send"),
            Verdict {
                latency: None,
                applied: false,
                error: None
            }
        );
        // Calls 1-3 are done: the fifth is lost, the fourth is not.
        f.lose_answer_nth("send", 5);
        assert!(!f.verdict("send").applied);
        assert!(f.verdict("send").applied);
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
