//! Writes that took effect but whose answer was lost, on the in-memory backends and on moto.
//!
//! A timeout or a dropped connection after a request reached DynamoDB or SQS leaves the write
//! applied while its caller never hears so; the SDK sends it again. `Faults::lose_answer_next`
//! does exactly that to one port call (it runs the call, drops the answer, and runs the
//! identical call again, whose answer the caller gets), and `lose_answer_and_fail_next` lets
//! every retry be lost too. For each write on the way of an event — claim,
//! release, enqueue, lease, attempt end, move to the DLQ, redrive — the provider must get the
//! answer it would have got without the fault, the handler must run once per real attempt,
//! and the event's history must hold exactly one entry per attempt that ran.
//!
//! The same faults below the SDK, where the SDK's own retry runs, are in `sdk_faults.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookgate_core::dlq::{DeadLetters, Selection};
use hookgate_core::event_source::EventSource;
use hookgate_core::faults::{AwsError, Faults, FaultyLedger, FaultyQueue};
use hookgate_core::queue::ReceivedMessage;
use hookgate_core::{
    Config, Envelope, EventId, EventRecord, EventStatus, HandlerError, Handlers, IncomingRequest,
    Ledger, Processor, Queue, Receiver, RecordOutcome,
};
use hookgate_testkit::pipeline::Pipeline;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

const MAX_RECEIVE_COUNT: u32 = 5;

/// Long enough that a lease (the visibility timeout, on the local event source) outlasts an
/// attempt on moto even on a loaded machine: a lease that expired mid-attempt would let the
/// second copy of a message run too, which is the documented limit, not what is tested here.
const VISIBILITY_SECS: u64 = 4;

fn config() -> Config {
    Config::from_toml(&format!(
        r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["lost-answers-s3cr3t"]

[processor]
max_receive_count = {MAX_RECEIVE_COUNT}
visibility_timeout_secs = {VISIBILITY_SECS}
backoff_base_ms = 200
backoff_cap_secs = 1
wait_time_ms = 500
batch_window_ms = 0
"#
    ))
    .unwrap()
}

/// What the handler does on its next run of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    Succeed,
    Retry,
    Permanent,
}

/// A handler that records every run of every event, and fails while told to.
#[derive(Clone)]
struct Recorder {
    runs: Arc<Mutex<BTreeMap<String, Vec<Next>>>>,
    next: Arc<Mutex<Next>>,
}

impl Recorder {
    fn new() -> Self {
        Self {
            runs: Arc::default(),
            next: Arc::new(Mutex::new(Next::Succeed)),
        }
    }

    fn will(&self, next: Next) {
        *self.next.lock().unwrap() = next;
    }

    fn handlers(&self) -> Handlers {
        let this = self.clone();
        Handlers::new().on("*", "*", move |e: Envelope| {
            let this = this.clone();
            async move {
                let next = *this.next.lock().unwrap();
                this.runs
                    .lock()
                    .unwrap()
                    .entry(e.event_id.to_string())
                    .or_default()
                    .push(next);
                match next {
                    Next::Succeed => Ok(()),
                    Next::Retry => Err(HandlerError::retry("downstream 503")),
                    Next::Permanent => Err(HandlerError::permanent("downstream 422")),
                }
            }
        })
    }

    /// Every run of `id`, oldest first, as what it was told to do.
    fn runs(&self, id: &EventId) -> Vec<Next> {
        self.runs
            .lock()
            .unwrap()
            .get(id.as_str())
            .cloned()
            .unwrap_or_default()
    }
}

/// The receiver and the processor over one pipeline, every ledger and queue call of both going
/// through one fault plan; the local event source feeds the processor from the real queue.
struct Rig {
    b: Pipeline,
    faults: Arc<Faults>,
    receiver: Receiver,
    handler: Recorder,
    source: EventSource,
}

fn rig(b: Pipeline) -> Rig {
    let faults = Faults::new();
    let ledger: Arc<dyn Ledger> = Arc::new(FaultyLedger::new(b.ledger.clone(), faults.clone()));
    let queue: Arc<dyn Queue> = Arc::new(FaultyQueue::new(b.queue.clone(), faults.clone()));
    let receiver = Receiver::new(&config(), ledger.clone(), queue.clone());
    let handler = Recorder::new();
    let processor = Arc::new(Processor::new(&config(), ledger, queue, handler.handlers()));
    let source = EventSource::new(b.queue.clone(), processor);
    Rig {
        b,
        faults,
        receiver,
        handler,
        source,
    }
}

impl Rig {
    /// The provider's request for `body`, signed.
    fn request(&self, body: &[u8]) -> IncomingRequest {
        let mut headers = HeaderMap::new();
        for (k, v) in self.receiver.sign("demo", body).unwrap() {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(&v).unwrap(),
            );
        }
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        IncomingRequest {
            method: Method::POST,
            source: "demo".into(),
            headers,
            body: Bytes::copy_from_slice(body),
            trace_header: None,
        }
    }

    /// Sends a new event; asserts the provider is answered `202` and returns its id.
    async fn accepted(&self, body: &[u8]) -> EventId {
        let reply = self.receiver.handle(self.request(body)).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
        EventId::parse(reply.body["event_id"].as_str().unwrap()).unwrap()
    }

    /// Processes until event `id` is `status` and the queue holds nothing more (every copy of
    /// a message consumed); returns the event's record.
    async fn settle(&self, id: &EventId, status: EventStatus) -> EventRecord {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let outcome = self.source.poll().await.expect("poll");
            let record = self.b.ledger.get(id).await.expect("ledger read");
            if outcome.records.is_empty() && record.as_ref().is_some_and(|r| r.status == status) {
                return record.unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "{id} never settled as {status}: {record:?}"
            );
        }
    }

    /// The ids of the messages on the DLQ (received and made visible again).
    async fn dlq_event_ids(&self) -> Vec<String> {
        let mut held: Vec<ReceivedMessage> = Vec::new();
        loop {
            let batch = self
                .b
                .dlq
                .receive(10, Duration::from_millis(200))
                .await
                .unwrap();
            if batch.is_empty() {
                break;
            }
            held.extend(batch);
        }
        for m in &held {
            self.b
                .dlq
                .change_visibility(&m.receipt_handle, Duration::ZERO)
                .await
                .unwrap();
        }
        let mut ids: Vec<String> = held
            .iter()
            .map(|m| {
                Envelope::from_message(&m.body)
                    .unwrap()
                    .event_id
                    .to_string()
            })
            .collect();
        ids.sort();
        ids
    }
}

fn body() -> Vec<u8> {
    format!(
        r#"{{"type":"order.created","n":"{}"}}"#,
        uuid::Uuid::new_v4().simple()
    )
    .into_bytes()
}

/// The attempts of `record` as `(attempt, success)`, oldest first.
fn history(record: &EventRecord) -> Vec<(u32, bool)> {
    record
        .attempts
        .iter()
        .map(|a| (a.attempt, a.success))
        .collect()
}

// ---------------------------------------------------------------- receiver's writes

async fn a_claim_whose_answer_was_lost_is_still_ours(b: Pipeline) {
    let rig = rig(b);
    rig.faults.lose_answer_next("claim", 1);
    // Before: the retried put found the first one's item and answered 409 event_in_progress.
    let id = rig.accepted(&body()).await;
    assert_eq!(rig.faults.injected("claim"), 1);
    assert_eq!(rig.faults.calls("release"), 0, "nothing to take back");
    let record = rig.settle(&id, EventStatus::Processed).await;
    assert_eq!(rig.handler.runs(&id), [Next::Succeed]);
    assert_eq!(history(&record), [(1, true)]);
}

async fn a_claim_applied_but_failed_is_taken_back_so_the_retry_is_accepted(b: Pipeline) {
    let rig = rig(b);
    let body = body();
    rig.faults
        .lose_answer_and_fail_next("claim", 1, AwsError::Timeout);
    let reply = rig.receiver.handle(rig.request(&body)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert_eq!(reply.error_code(), Some("ledger_unavailable"));
    assert_eq!(rig.faults.calls("send"), 0, "nothing enqueued");
    assert_eq!(rig.faults.calls("release"), 1, "the claim was taken back");
    // Before: the claim stayed, and this retry was 409 until the claim timed out.
    let id = rig.accepted(&body).await;
    let record = rig.settle(&id, EventStatus::Processed).await;
    assert_eq!(rig.handler.runs(&id), [Next::Succeed]);
    assert_eq!(history(&record), [(1, true)]);
}

async fn a_lost_enqueue_leaves_two_copies_and_the_handler_runs_once(b: Pipeline) {
    let rig = rig(b);
    rig.faults.lose_answer_next("send", 1);
    let id = rig.accepted(&body()).await;
    let record = rig.settle(&id, EventStatus::Processed).await;
    assert_eq!(
        rig.handler.runs(&id),
        [Next::Succeed],
        "two copies, one run"
    );
    assert_eq!(history(&record), [(1, true)]);
    assert_eq!(
        record.attempt_count, 1,
        "the second copy started no attempt"
    );
}

async fn a_lost_release_is_success_and_the_retry_is_accepted(b: Pipeline) {
    let rig = rig(b);
    let body = body();
    rig.faults.fail_next("send", 1);
    rig.faults.lose_answer_next("release", 1);
    let reply = rig.receiver.handle(rig.request(&body)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert_eq!(reply.error_code(), Some("queue_unavailable"));
    let id = rig.accepted(&body).await;
    let record = rig.settle(&id, EventStatus::Processed).await;
    assert_eq!(rig.handler.runs(&id), [Next::Succeed]);
    assert_eq!(history(&record), [(1, true)]);
}

// ---------------------------------------------------------------- processor's writes

async fn a_lost_lease_is_recognised_and_the_attempt_runs_at_once(b: Pipeline) {
    let rig = rig(b);
    let id = rig.accepted(&body()).await;
    rig.faults.lose_answer_next("start_attempt", 1);
    // Before: the retried start met its own live lease, backed off, and counted a second attempt.
    let first = rig.source.poll().await.unwrap();
    assert_eq!(first.records.len(), 1, "{first:?}");
    assert_eq!(first.records[0].1, RecordOutcome::Processed);
    let record = rig.settle(&id, EventStatus::Processed).await;
    assert_eq!(rig.handler.runs(&id), [Next::Succeed]);
    assert_eq!(history(&record), [(1, true)]);
    assert_eq!(record.attempt_count, 1);
}

async fn a_lost_attempt_end_is_recorded_once(b: Pipeline) {
    let rig = rig(b);
    let id = rig.accepted(&body()).await;
    rig.faults.lose_answer_next("finish_attempt", 1);
    // Before: the retried end appended the attempt a second time.
    let record = rig.settle(&id, EventStatus::Processed).await;
    assert_eq!(rig.handler.runs(&id), [Next::Succeed]);
    assert_eq!(history(&record), [(1, true)]);
}

async fn a_lost_failed_attempt_end_is_recorded_once_and_retried(b: Pipeline) {
    let rig = rig(b);
    let id = rig.accepted(&body()).await;
    rig.handler.will(Next::Retry);
    rig.faults.lose_answer_next("finish_attempt", 1);
    let first = rig.source.poll().await.unwrap();
    assert!(
        matches!(first.records[0].1, RecordOutcome::Failed { .. }),
        "{first:?}"
    );
    rig.handler.will(Next::Succeed);
    rig.faults.lose_answer_next("finish_attempt", 1);
    let record = rig.settle(&id, EventStatus::Processed).await;
    assert_eq!(rig.handler.runs(&id), [Next::Retry, Next::Succeed]);
    assert_eq!(history(&record), [(1, false), (2, true)]);
}

async fn an_attempt_end_applied_but_failed_is_not_appended_again(b: Pipeline) {
    let rig = rig(b);
    let id = rig.accepted(&body()).await;
    rig.faults
        .lose_answer_and_fail_next("finish_attempt", 1, AwsError::Timeout);
    // The processor tries the write again itself (it was told it failed): once is recorded.
    let record = rig.settle(&id, EventStatus::Processed).await;
    assert!(rig.faults.calls("finish_attempt") >= 2);
    assert_eq!(rig.handler.runs(&id), [Next::Succeed]);
    assert_eq!(history(&record), [(1, true)]);
}

async fn a_lost_move_to_the_dlq_and_a_lost_redrive_still_run_the_handler_once(b: Pipeline) {
    let rig = rig(b);
    let id = rig.accepted(&body()).await;
    rig.handler.will(Next::Permanent);
    rig.faults.lose_answer_next("move_to_dlq", 1);
    let record = rig.settle(&id, EventStatus::DeadLettered).await;
    assert_eq!(history(&record), [(1, false)]);
    // The move was sent twice: two copies of one event in the DLQ, as SQS would hold.
    assert_eq!(rig.dlq_event_ids().await, [id.to_string(), id.to_string()]);

    // The operator fixes the handler and redrives everything; the send back is lost once too.
    rig.handler.will(Next::Succeed);
    rig.faults.lose_answer_next("send", 1);
    let faulty_queue: Arc<dyn Queue> =
        Arc::new(FaultyQueue::new(rig.b.queue.clone(), rig.faults.clone()));
    let tools = DeadLetters::new(faulty_queue, rig.b.dlq.clone(), rig.b.ledger.clone());
    let report = tools.redrive(&Selection::All, None).await.unwrap();
    assert_eq!(report.moved, 1, "{report:?}");
    let record = rig.settle(&id, EventStatus::Processed).await;
    // The leftover copy, redriven later, is acknowledged without a run.
    tools.redrive(&Selection::All, None).await.unwrap();
    let record_after = rig.settle(&id, EventStatus::Processed).await;
    assert_eq!(record_after.attempts, record.attempts);
    assert_eq!(rig.handler.runs(&id), [Next::Permanent, Next::Succeed]);
    assert_eq!(history(&record), [(1, false), (2, true)]);
    assert!(rig.dlq_event_ids().await.is_empty());
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Pipeline::memory(
                        super::MAX_RECEIVE_COUNT,
                        std::time::Duration::from_secs(super::VISIBILITY_SECS),
                    ))
                    .await;
                }
            )*
        }
        mod moto {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(b) = super::Pipeline::moto(super::MAX_RECEIVE_COUNT, super::VISIBILITY_SECS).await else {
                        eprintln!("skipped: no moto");
                        return;
                    };
                    super::$name(b).await;
                }
            )*
        }
    };
}

both_backends!(
    a_claim_whose_answer_was_lost_is_still_ours,
    a_claim_applied_but_failed_is_taken_back_so_the_retry_is_accepted,
    a_lost_enqueue_leaves_two_copies_and_the_handler_runs_once,
    a_lost_release_is_success_and_the_retry_is_accepted,
    a_lost_lease_is_recognised_and_the_attempt_runs_at_once,
    a_lost_attempt_end_is_recorded_once,
    a_lost_failed_attempt_end_is_recorded_once_and_retried,
    an_attempt_end_applied_but_failed_is_not_appended_again,
    a_lost_move_to_the_dlq_and_a_lost_redrive_still_run_the_handler_once,
);
