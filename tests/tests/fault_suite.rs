//! Faults in the ports, on the in-memory backends and on SQS/DynamoDB served by moto: the
//! receiver and the processor with `FaultyLedger`/`FaultyQueue` wrapped around the real
//! backend, failing with AWS-like errors (throttling, `ServiceUnavailable`, timeouts) or
//! slowed down. Nothing may be lost, and no handler may run twice.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookgate_core::event_source::{to_sqs_event, EventSource};
use hookgate_core::faults::{AwsError, Faults, FaultyLedger, FaultyQueue};
use hookgate_core::processor::BatchOutcome;
use hookgate_core::queue::{attr, ReceivedMessage};
use hookgate_core::{
    Clock, Config, Envelope, EventId, EventStatus, HandlerError, Handlers, IncomingRequest,
    ManualClock, Processor, Queue, Receiver, RecordOutcome, SourceName, SystemClock, Timestamp,
};
use hookgate_testkit::pipeline::Pipeline;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

const MAX_RECEIVE_COUNT: u32 = 5;

fn memory() -> Pipeline {
    Pipeline::memory(MAX_RECEIVE_COUNT, Duration::from_secs(1))
}

async fn moto() -> Option<Pipeline> {
    Pipeline::moto(MAX_RECEIVE_COUNT, 1).await
}

fn config() -> Config {
    Config::from_toml(&format!(
        r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["local-demo-s3cr3t"]

[processor]
max_receive_count = {MAX_RECEIVE_COUNT}
visibility_timeout_secs = 1
backoff_base_ms = 200
backoff_cap_secs = 1
wait_time_ms = 500
batch_window_ms = 0
"#
    ))
    .unwrap()
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

// ---------------------------------------------------------------- receiver

/// A receiver over the pipeline's ledger and queue, both wrapped in `faults`.
fn receiver(b: &Pipeline, faults: &Arc<Faults>) -> Receiver {
    Receiver::new(
        &config(),
        Arc::new(FaultyLedger::new(b.ledger.clone(), faults.clone())),
        Arc::new(FaultyQueue::new(b.queue.clone(), faults.clone())),
    )
}

fn signed(receiver: &Receiver, body: &[u8]) -> IncomingRequest {
    let mut headers = HeaderMap::new();
    for (k, v) in receiver.sign("demo", body).unwrap() {
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

fn body() -> Vec<u8> {
    format!(r#"{{"type":"order.created","n":"{}"}}"#, unique()).into_bytes()
}

/// Every event id on the queue now (received and handed straight back).
async fn queued_event_ids(b: &Pipeline) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let batch = b.queue.receive(10, Duration::ZERO).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for m in batch {
            ids.push(
                Envelope::from_message(&m.body)
                    .unwrap()
                    .event_id
                    .to_string(),
            );
            b.queue.delete(&m.receipt_handle).await.unwrap();
        }
    }
    ids.sort();
    ids
}

async fn ledger_down_is_503_and_nothing_is_enqueued(b: Pipeline) {
    for error in [
        AwsError::ProvisionedThroughputExceeded,
        AwsError::Throttling,
        AwsError::ServiceUnavailable,
        AwsError::Timeout,
    ] {
        let faults = Faults::new();
        let receiver = receiver(&b, &faults);
        let body = body();
        faults.fail_next_with("claim", 1, error);
        let reply = receiver.handle(signed(&receiver, &body)).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
        assert_eq!(reply.error_code(), Some("ledger_unavailable"), "{error}");
        assert_eq!(faults.calls("send"), 0, "{error}: nothing sent");
        assert!(queued_event_ids(&b).await.is_empty(), "{error}");

        // Nothing was kept either: the provider's retry is a new event, not a duplicate.
        let retry = receiver.handle(signed(&receiver, &body)).await;
        assert_eq!(retry.status, StatusCode::ACCEPTED, "{error}: {retry:?}");
        let id = retry.body["event_id"].as_str().unwrap().to_owned();
        assert_eq!(queued_event_ids(&b).await, [id], "{error}");
    }
}

async fn queue_down_after_the_claim_is_503_and_the_retry_is_enqueued_once(b: Pipeline) {
    let faults = Faults::new();
    // Another Lambda container on the same table and queue.
    let elsewhere = receiver(&b, &faults);
    let receiver = receiver(&b, &faults);
    let body = body();
    // SQS refuses every send for a while: every provider retry gets 503, none is taken for a
    // duplicate, and no claim is left behind.
    faults.fail_always("send", AwsError::ServiceUnavailable);
    for _ in 0..3 {
        let reply = receiver.handle(signed(&receiver, &body)).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
        assert_eq!(reply.error_code(), Some("queue_unavailable"));
    }
    assert_eq!(faults.calls("claim"), 3, "every retry claimed anew");
    assert_eq!(faults.calls("release"), 3, "and released its claim");
    assert!(queued_event_ids(&b).await.is_empty());

    faults.clear("send");
    let accepted = receiver.handle(signed(&receiver, &body)).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{accepted:?}");
    assert_eq!(accepted.body["status"], "queued");
    let id = accepted.body["event_id"].as_str().unwrap().to_owned();
    // A retry while the event waits in the queue. The container that enqueued it knows it is
    // on the queue: a duplicate. Another container cannot tell it from a claim whose enqueue
    // never happened: in progress (retry later), never taken for a duplicate of something that
    // might not be on the queue. Neither enqueues it again.
    let known = receiver.handle(signed(&receiver, &body)).await;
    assert_eq!(known.status, StatusCode::OK, "{known:?}");
    assert_eq!(known.body["status"], "duplicate");
    let again = elsewhere.handle(signed(&elsewhere, &body)).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
    assert_eq!(again.error_code(), Some("event_in_progress"));
    assert_eq!(
        queued_event_ids(&b).await,
        std::slice::from_ref(&id),
        "enqueued exactly once"
    );
    let record = b
        .ledger
        .get(&EventId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, EventStatus::Received);
    assert_eq!(faults.injected_total(), 3);
}

async fn the_nth_send_failing_loses_nothing(b: Pipeline) {
    let faults = Faults::new();
    let receiver = receiver(&b, &faults);
    faults.fail_nth("send", 2, AwsError::Throttling);
    faults.fail_nth("send", 4, AwsError::Timeout);
    let bodies: Vec<Vec<u8>> = (0..4).map(|_| body()).collect();
    let mut accepted = Vec::new();
    for body in &bodies {
        // A provider retries until it is answered 2xx.
        loop {
            let reply = receiver.handle(signed(&receiver, body)).await;
            if reply.status == StatusCode::ACCEPTED {
                accepted.push(reply.body["event_id"].as_str().unwrap().to_owned());
                break;
            }
            assert_eq!(reply.error_code(), Some("queue_unavailable"), "{reply:?}");
        }
    }
    assert_eq!((faults.calls("send"), faults.injected("send")), (6, 2));
    accepted.sort();
    assert_eq!(queued_event_ids(&b).await, accepted, "each event once");
}

async fn injected_latency_is_still_a_success(b: Pipeline) {
    let faults = Faults::new();
    let receiver = receiver(&b, &faults);
    for op in ["claim", "send"] {
        faults.add_latency(op, Duration::from_millis(150));
    }
    let reply = receiver.handle(signed(&receiver, &body())).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    let id = reply.body["event_id"].as_str().unwrap().to_owned();
    assert_eq!(queued_event_ids(&b).await, [id]);
    assert_eq!(faults.injected_total(), 0);
}

// ---------------------------------------------------------------- processor

fn envelope(tag: &str) -> Envelope {
    Envelope {
        event_id: EventId::parse(&format!("demo:{tag}-{}", unique())).unwrap(),
        source: SourceName::parse("demo").unwrap(),
        event_type: tag.into(),
        received_at: Timestamp::from_secs(1_800_000_000),
        headers: BTreeMap::new(),
        body: Bytes::from_static(b"{}"),
    }
}

/// A handler counting its runs per event id; it fails (retry) while `fail` says so.
#[derive(Clone, Default)]
struct Counting {
    runs: Arc<std::sync::Mutex<BTreeMap<String, u32>>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Counting {
    fn handlers(&self) -> Handlers {
        let this = self.clone();
        Handlers::new().on("*", "*", move |e: Envelope| {
            let this = this.clone();
            async move {
                *this
                    .runs
                    .lock()
                    .unwrap()
                    .entry(e.event_id.to_string())
                    .or_default() += 1;
                if this.failing.load(Ordering::SeqCst) {
                    Err(HandlerError::retry("downstream 503"))
                } else {
                    Ok(())
                }
            }
        })
    }
    fn runs(&self, id: &EventId) -> u32 {
        self.runs
            .lock()
            .unwrap()
            .get(id.as_str())
            .copied()
            .unwrap_or(0)
    }
}

struct Rig {
    faults: Arc<Faults>,
    clock: Arc<ManualClock>,
    handler: Counting,
    source: EventSource,
    processor: Arc<Processor>,
}

/// A processor over the pipeline, its ledger and queue wrapped in faults, on a manual clock
/// (leases expire when the test says so), driven by the local event source (which deletes
/// what succeeded, as Lambda's event source mapping does).
fn rig(b: &Pipeline) -> Rig {
    let faults = Faults::new();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let handler = Counting::default();
    let queue: Arc<dyn Queue> = Arc::new(FaultyQueue::new(b.queue.clone(), faults.clone()));
    let processor = Arc::new(
        Processor::new(
            &config(),
            Arc::new(FaultyLedger::new(b.ledger.clone(), faults.clone())),
            queue.clone(),
            handler.handlers(),
        )
        .with_clock(clock.clone()),
    );
    Rig {
        faults,
        clock,
        handler,
        source: EventSource::new(b.queue.clone(), processor.clone()),
        processor,
    }
}

/// The next batch that has any message in it, processed (or a panic after 30 s).
async fn next_batch(source: &EventSource) -> BatchOutcome {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let outcome = source.poll().await.unwrap();
        if !outcome.records.is_empty() {
            return outcome;
        }
        assert!(Instant::now() < deadline, "no message came back");
    }
}

fn only(outcome: &BatchOutcome) -> &RecordOutcome {
    assert_eq!(outcome.records.len(), 1, "{outcome:?}");
    &outcome.records[0].1
}

/// Names in `batchItemFailures`.
fn failures(outcome: &BatchOutcome) -> Vec<String> {
    outcome
        .to_response()
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

async fn an_unrecorded_success_is_not_acked_and_never_rerun(b: Pipeline, lease_expires: bool) {
    let rig = rig(&b);
    let e = envelope("unrecorded");
    b.enqueue(&e).await;
    rig.faults
        .fail_next_with("finish_attempt", 3, AwsError::ProvisionedThroughputExceeded);

    let first = next_batch(&rig.source).await;
    let RecordOutcome::Failed { error, .. } = only(&first) else {
        panic!("a success the ledger did not record must not be acknowledged: {first:?}");
    };
    assert!(error.contains("ledger could not record it"), "{error}");
    assert_eq!(failures(&first), [first.records[0].0.clone()]);
    assert_eq!(rig.handler.runs(&e.event_id), 1);
    assert_eq!(rig.faults.injected("finish_attempt"), 3);
    assert_eq!(rig.processor.pending_completions(), 1);
    let record = b.ledger.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Processing, "{record:?}");

    // The ledger is back. The message comes back after its backoff; meanwhile the lease has
    // (or has not) expired, so the ledger alone would (or would not) grant a new attempt.
    if lease_expires {
        rig.clock.advance(Duration::from_secs(3600));
    }
    let second = next_batch(&rig.source).await;
    assert_eq!(
        only(&second),
        &RecordOutcome::AlreadyProcessed,
        "{second:?}"
    );
    assert!(failures(&second).is_empty());
    assert_eq!(rig.handler.runs(&e.event_id), 1, "the handler ran once");
    assert_eq!(rig.processor.pending_completions(), 0);
    let record = b.ledger.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Processed);
    assert_eq!(record.attempts.len(), 1, "{record:?}");
    assert!(record.attempts[0].success);
    assert!(
        record.attempts[0]
            .note
            .as_deref()
            .unwrap()
            .starts_with("recorded late"),
        "{record:?}"
    );
    assert!(b
        .queue
        .receive(10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
}

async fn unrecorded_success_redelivered_after_the_lease_expired(b: Pipeline) {
    an_unrecorded_success_is_not_acked_and_never_rerun(b, true).await;
}

async fn unrecorded_success_redelivered_within_the_lease(b: Pipeline) {
    an_unrecorded_success_is_not_acked_and_never_rerun(b, false).await;
}

async fn a_ledger_still_down_on_redelivery_fails_again_without_running_the_handler(b: Pipeline) {
    let rig = rig(&b);
    let e = envelope("still-down");
    b.enqueue(&e).await;
    rig.faults
        .fail_next_with("finish_attempt", 6, AwsError::ServiceUnavailable);
    let first = next_batch(&rig.source).await;
    assert!(!only(&first).is_success());
    rig.clock.advance(Duration::from_secs(3600));

    let second = next_batch(&rig.source).await;
    let RecordOutcome::Failed { error, .. } = only(&second) else {
        panic!("{second:?}");
    };
    assert!(error.contains("still cannot record it"), "{error}");
    assert_eq!(failures(&second).len(), 1);
    assert_eq!(rig.faults.calls("start_attempt"), 1, "no new attempt");
    assert_eq!(rig.handler.runs(&e.event_id), 1);

    let third = next_batch(&rig.source).await;
    assert_eq!(only(&third), &RecordOutcome::AlreadyProcessed);
    assert_eq!(rig.handler.runs(&e.event_id), 1);
    let record = b.ledger.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Processed);
}

async fn kept_successes_are_recorded_by_the_next_batch(b: Pipeline) {
    let rig = rig(&b);
    let first = envelope("kept");
    b.enqueue(&first).await;
    rig.faults
        .fail_next_with("finish_attempt", 3, AwsError::Throttling);
    assert!(!only(&next_batch(&rig.source).await).is_success());

    // The next batch is another event's: the kept success is recorded alongside, before the
    // first event's message is back.
    let other = envelope("other");
    let batch = to_sqs_event(&[ReceivedMessage {
        message_id: format!("m-{}", unique()),
        receipt_handle: "not-on-the-queue".into(),
        body: other.to_message(),
        receive_count: 1,
        attributes: BTreeMap::from([(attr::EVENT_ID.to_owned(), other.event_id.to_string())]),
        trace_header: None,
    }]);
    let outcome = rig.processor.process_batch(&batch, None).await.unwrap();
    assert_eq!(only(&outcome), &RecordOutcome::Processed);
    assert_eq!(rig.processor.pending_completions(), 0);
    let record = b.ledger.get(&first.event_id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Processed, "{record:?}");

    // The redelivery, after the lease expired, meets a processed event in the ledger.
    rig.clock.advance(Duration::from_secs(3600));
    let redelivery = next_batch(&rig.source).await;
    assert_eq!(only(&redelivery), &RecordOutcome::AlreadyProcessed);
    assert_eq!(rig.handler.runs(&first.event_id), 1);
    assert_eq!(rig.handler.runs(&other.event_id), 1);
}

/// The guarantee's limit, shown: a kept success lives in one processor. Another container (a
/// second `Processor`) meeting the redelivery after the lease expired runs the handler again —
/// which is why handlers with external effects must be idempotent on `event_id`.
async fn another_container_does_not_know_the_kept_success(b: Pipeline) {
    let rig = rig(&b);
    let e = envelope("limit");
    b.enqueue(&e).await;
    rig.faults
        .fail_next_with("finish_attempt", 3, AwsError::Throttling);
    assert!(!only(&next_batch(&rig.source).await).is_success());

    let clock = Arc::new(ManualClock::new(
        rig.clock.now().plus(Duration::from_secs(3600)),
    ));
    let elsewhere = Arc::new(
        Processor::new(
            &config(),
            b.ledger.clone(),
            b.queue.clone(),
            rig.handler.handlers(),
        )
        .with_clock(clock),
    );
    let source = EventSource::new(b.queue.clone(), elsewhere);
    assert_eq!(only(&next_batch(&source).await), &RecordOutcome::Processed);
    assert_eq!(rig.handler.runs(&e.event_id), 2);
    // The first container's kept success is superseded, not recorded over the later attempt.
    let other = envelope("after");
    b.enqueue(&other).await;
    next_batch(&rig.source).await;
    assert_eq!(rig.processor.pending_completions(), 0);
    let record = b.ledger.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(record.attempts.len(), 1, "{record:?}");
    assert_eq!(record.attempts[0].attempt, 2);
}

async fn a_failed_visibility_change_still_fails_the_message(b: Pipeline) {
    let rig = rig(&b);
    rig.handler.failing.store(true, Ordering::SeqCst);
    let e = envelope("visibility");
    b.enqueue(&e).await;
    rig.faults
        .fail_next_with("change_visibility", 1, AwsError::Throttling);
    let first = next_batch(&rig.source).await;
    let RecordOutcome::Failed { retry_in, .. } = only(&first) else {
        panic!("{first:?}");
    };
    assert_eq!(*retry_in, None, "the backoff could not be set");
    assert_eq!(failures(&first), [first.records[0].0.clone()]);
    assert_eq!(rig.faults.injected("change_visibility"), 1);

    // It comes back after the queue's own visibility timeout, and is processed.
    rig.handler.failing.store(false, Ordering::SeqCst);
    let second = next_batch(&rig.source).await;
    assert_eq!(only(&second), &RecordOutcome::Processed);
    assert_eq!(rig.handler.runs(&e.event_id), 2);
}

async fn a_success_neither_recorded_nor_backed_off_is_still_failed(b: Pipeline) {
    let rig = rig(&b);
    let e = envelope("both");
    b.enqueue(&e).await;
    rig.faults
        .fail_next_with("finish_attempt", 3, AwsError::Timeout);
    rig.faults
        .fail_next_with("change_visibility", 1, AwsError::ServiceUnavailable);
    let first = next_batch(&rig.source).await;
    assert!(
        matches!(only(&first), RecordOutcome::Failed { retry_in: None, .. }),
        "{first:?}"
    );
    assert_eq!(failures(&first).len(), 1);
    let second = next_batch(&rig.source).await;
    assert_eq!(only(&second), &RecordOutcome::AlreadyProcessed);
    assert_eq!(rig.handler.runs(&e.event_id), 1);
}

async fn a_throttled_start_fails_the_record_without_running_the_handler(b: Pipeline) {
    let rig = rig(&b);
    let e = envelope("start");
    b.enqueue(&e).await;
    rig.faults
        .fail_next_with("start_attempt", 1, AwsError::ProvisionedThroughputExceeded);
    let first = next_batch(&rig.source).await;
    let RecordOutcome::Failed {
        error, retry_in, ..
    } = only(&first)
    else {
        panic!("{first:?}");
    };
    assert!(
        error.contains("ProvisionedThroughputExceededException"),
        "{error}"
    );
    assert!(retry_in.is_some(), "backed off");
    assert_eq!(failures(&first).len(), 1);
    assert_eq!(rig.handler.runs(&e.event_id), 0, "handler not run");

    let second = next_batch(&rig.source).await;
    assert_eq!(only(&second), &RecordOutcome::Processed);
    assert_eq!(rig.handler.runs(&e.event_id), 1);
    let record = b.ledger.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.attempt_count),
        (EventStatus::Processed, 1)
    );
}

macro_rules! fault_suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::memory()).await;
                }
            )*
        }
        mod moto {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(backend) = super::moto().await else {
                        eprintln!("skipped: no moto");
                        return;
                    };
                    super::$name(backend).await;
                }
            )*
        }
    };
}

fault_suite!(
    ledger_down_is_503_and_nothing_is_enqueued,
    queue_down_after_the_claim_is_503_and_the_retry_is_enqueued_once,
    the_nth_send_failing_loses_nothing,
    injected_latency_is_still_a_success,
    unrecorded_success_redelivered_after_the_lease_expired,
    unrecorded_success_redelivered_within_the_lease,
    a_ledger_still_down_on_redelivery_fails_again_without_running_the_handler,
    kept_successes_are_recorded_by_the_next_batch,
    another_container_does_not_know_the_kept_success,
    a_failed_visibility_change_still_fails_the_message,
    a_success_neither_recorded_nor_backed_off_is_still_failed,
    a_throttled_start_fails_the_record_without_running_the_handler,
);
