//! Faults below the ports, on moto: the SDK interceptor of `hookgate_aws::faults` answers
//! chosen DynamoDB and SQS calls with throttling or `503` before the SDK reads the answer, so
//! the SDK's own retry policy — hookgate's budget, `hookgate_aws::budget` — runs for real; the
//! calls left alone reach moto. A stalled endpoint on 127.0.0.1 shows the attempt timeout.
//!
//! Every assertion is on what happened (attempts made, answers given, messages queued), never
//! on how long it took.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookgate_aws::budget::MAX_ATTEMPTS;
use hookgate_aws::faults::{SdkFault, SdkFaults};
use hookgate_aws::{AwsBackend, DynamoDbLedger};
use hookgate_core::event_source::EventSource;
use hookgate_core::ledger::{Claim, LedgerError};
use hookgate_core::processor::BatchOutcome;
use hookgate_core::{
    Config, Envelope, EventId, EventStatus, Handlers, IncomingRequest, Ledger, Processor, Queue,
    Receiver, RecordOutcome, SourceName, Timestamp,
};
use hookgate_testkit::{budgeted_sdk_config, fresh_resources, moto_endpoint, MotoResources};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

fn config() -> Config {
    config_with_visibility(1)
}

/// The test configuration with a visibility timeout (the local event source's lease) of
/// `secs`.
fn config_with_visibility(secs: u64) -> Config {
    Config::from_toml(&format!(
        r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["local-demo-s3cr3t"]

[processor]
max_receive_count = 5
visibility_timeout_secs = {secs}
backoff_base_ms = 200
backoff_cap_secs = 1
wait_time_ms = 500
"#,
    ))
    .unwrap()
}

struct Rig {
    faults: Arc<SdkFaults>,
    backend: AwsBackend,
    receiver: Receiver,
    resources: MotoResources,
}

/// Fresh moto resources, and the backend on them through clients with hookgate's budget and
/// the fault interceptor; `None` without moto.
async fn rig() -> Option<Rig> {
    rig_with_visibility(1).await
}

/// [`rig`] with a visibility timeout of `secs` on the queue and in the configuration.
async fn rig_with_visibility(secs: u64) -> Option<Rig> {
    let endpoint = moto_endpoint()?;
    let resources = fresh_resources(&endpoint, 5, secs).await;
    let sdk = budgeted_sdk_config(&endpoint).await;
    let faults = SdkFaults::new();
    let backend = resources.backend_through(&faults, &sdk, true);
    let receiver = Receiver::new(
        &config_with_visibility(secs),
        backend.ledger.clone(),
        backend.queue.clone(),
    );
    Some(Rig {
        faults,
        backend,
        receiver,
        resources,
    })
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
    format!(
        r#"{{"type":"order.created","n":"{}"}}"#,
        uuid::Uuid::new_v4().simple()
    )
    .into_bytes()
}

/// Event ids of the messages on the queue (read with a plain client, and deleted).
async fn queued_event_ids(r: &MotoResources) -> Vec<String> {
    let queue = hookgate_aws::SqsQueue::new(r.sqs(), &r.queue_url, None);
    let mut ids = Vec::new();
    loop {
        let batch = queue.receive(10, Duration::ZERO).await.unwrap();
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
            queue.delete(&m.receipt_handle).await.unwrap();
        }
    }
    ids.sort();
    ids
}

#[tokio::test]
async fn a_claim_throttled_twice_is_retried_by_the_sdk_and_accepted() {
    let Some(rig) = rig().await else {
        eprintln!("skipped: no moto");
        return;
    };
    for fault in [
        SdkFault::ProvisionedThroughputExceeded,
        SdkFault::Throttling,
    ] {
        rig.faults.reset_counts();
        rig.faults.fail_next("PutItem", 2, fault);
        let reply = rig.receiver.handle(signed(&rig.receiver, &body())).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{fault:?}: {reply:?}");
        assert_eq!(
            rig.faults.attempts("PutItem"),
            3,
            "{fault:?}: 2 throttled + 1"
        );
        assert_eq!(rig.faults.injected("PutItem"), 2);
        assert_eq!(rig.faults.attempts("SendMessage"), 1);
        let id = reply.body["event_id"].as_str().unwrap().to_owned();
        assert_eq!(queued_event_ids(&rig.resources).await, [id]);
    }
}

#[tokio::test]
async fn an_attempt_left_unanswered_times_out_and_is_retried() {
    let Some(rig) = rig().await else {
        eprintln!("skipped: no moto");
        return;
    };
    rig.faults.fail_next("SendMessage", 1, SdkFault::Stall);
    let reply = rig.receiver.handle(signed(&rig.receiver, &body())).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    assert_eq!(
        rig.faults.attempts("SendMessage"),
        2,
        "timed out once, then sent"
    );
    let id = reply.body["event_id"].as_str().unwrap().to_owned();
    assert_eq!(queued_event_ids(&rig.resources).await, [id]);
}

#[tokio::test]
async fn a_claim_throttled_on_every_attempt_is_503_after_the_budgeted_attempts() {
    let Some(rig) = rig().await else {
        eprintln!("skipped: no moto");
        return;
    };
    let body = body();
    rig.faults
        .fail_always("PutItem", SdkFault::ProvisionedThroughputExceeded);
    let reply = rig.receiver.handle(signed(&rig.receiver, &body)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert_eq!(reply.error_code(), Some("ledger_unavailable"));
    assert_eq!(rig.faults.attempts("PutItem"), MAX_ATTEMPTS);
    assert_eq!(rig.faults.attempts("SendMessage"), 0, "nothing enqueued");
    assert!(queued_event_ids(&rig.resources).await.is_empty());

    // Nothing was kept: the provider's retry is accepted, not called a duplicate.
    rig.faults.clear_all();
    let retry = rig.receiver.handle(signed(&rig.receiver, &body)).await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{retry:?}");
    assert_eq!(queued_event_ids(&rig.resources).await.len(), 1);
}

#[tokio::test]
async fn sqs_down_after_the_claim_is_503_and_the_retry_is_enqueued_exactly_once() {
    let Some(rig) = rig().await else {
        eprintln!("skipped: no moto");
        return;
    };
    let body = body();
    rig.faults
        .fail_always("SendMessage", SdkFault::ServiceUnavailable);
    let reply = rig.receiver.handle(signed(&rig.receiver, &body)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert_eq!(reply.error_code(), Some("queue_unavailable"));
    assert_eq!(rig.faults.attempts("PutItem"), 1, "claimed");
    assert_eq!(rig.faults.attempts("SendMessage"), MAX_ATTEMPTS);
    assert_eq!(rig.faults.attempts("DeleteItem"), 1, "claim released");
    assert!(queued_event_ids(&rig.resources).await.is_empty());

    rig.faults.clear_all();
    let retry = rig.receiver.handle(signed(&rig.receiver, &body)).await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{retry:?}");
    assert_eq!(retry.body["status"], "queued");
    // Another retry while the event waits in the queue, not enqueued again: a duplicate in the
    // container that enqueued it (it knows), in progress in another one.
    let known = rig.receiver.handle(signed(&rig.receiver, &body)).await;
    assert_eq!(known.body["status"], "duplicate", "{known:?}");
    let elsewhere = Receiver::new(
        &config_with_visibility(1),
        rig.backend.ledger.clone(),
        rig.backend.queue.clone(),
    );
    let again = elsewhere.handle(signed(&elsewhere, &body)).await;
    assert_eq!(again.error_code(), Some("event_in_progress"), "{again:?}");
    let id = retry.body["event_id"].as_str().unwrap().to_owned();
    assert_eq!(
        queued_event_ids(&rig.resources).await,
        std::slice::from_ref(&id)
    );
    let record = rig
        .backend
        .ledger
        .get(&EventId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, EventStatus::Received);
}

fn envelope() -> Envelope {
    Envelope {
        event_id: EventId::parse(&format!("demo:sdk-{}", uuid::Uuid::new_v4().simple())).unwrap(),
        source: SourceName::parse("demo").unwrap(),
        event_type: "t".into(),
        received_at: Timestamp::from_secs(1_800_000_000),
        headers: BTreeMap::new(),
        body: Bytes::from_static(b"{}"),
    }
}

async fn enqueue(r: &MotoResources, e: &Envelope) {
    let queue = hookgate_aws::SqsQueue::new(r.sqs(), &r.queue_url, None);
    queue
        .send(hookgate_core::queue::OutgoingMessage {
            delay: None,
            body: e.to_message(),
            attributes: BTreeMap::from([(
                hookgate_core::queue::attr::EVENT_ID.to_owned(),
                e.event_id.to_string(),
            )]),
            trace_header: None,
        })
        .await
        .unwrap();
}

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

#[tokio::test]
async fn a_throttled_attempt_start_is_retried_by_the_sdk() {
    let Some(rig) = rig().await else {
        eprintln!("skipped: no moto");
        return;
    };
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let handlers = Handlers::new().on("*", "*", move |_e: Envelope| {
        r.fetch_add(1, Ordering::SeqCst);
        async { Ok(()) }
    });
    let processor = Processor::new(
        &config(),
        rig.backend.ledger.clone(),
        rig.backend.queue.clone(),
        handlers,
    );
    let source = EventSource::new(rig.backend.queue.clone(), Arc::new(processor));
    let e = envelope();
    enqueue(&rig.resources, &e).await;
    rig.faults
        .fail_next("UpdateItem", 2, SdkFault::ProvisionedThroughputExceeded);
    let outcome = next_batch(&source).await;
    assert_eq!(
        outcome.records[0].1,
        RecordOutcome::Processed,
        "{outcome:?}"
    );
    // start_attempt: 2 throttled + 1; finish_attempt: 1.
    assert_eq!(rig.faults.attempts("UpdateItem"), 4);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_success_the_throttled_ledger_cannot_record_runs_once() {
    let Some(rig) = rig().await else {
        eprintln!("skipped: no moto");
        return;
    };
    let runs = Arc::new(AtomicU32::new(0));
    let (r, faults) = (runs.clone(), rig.faults.clone());
    // The handler succeeds; from then on DynamoDB throttles every UpdateItem, so the attempt's
    // end cannot be written whatever the SDK and the processor retry.
    let handlers = Handlers::new().on("*", "*", move |_e: Envelope| {
        r.fetch_add(1, Ordering::SeqCst);
        faults.fail_always("UpdateItem", SdkFault::Throttling);
        async { Ok(()) }
    });
    let processor = Arc::new(Processor::new(
        &config(),
        rig.backend.ledger.clone(),
        rig.backend.queue.clone(),
        handlers,
    ));
    let source = EventSource::new(rig.backend.queue.clone(), processor.clone());
    let e = envelope();
    enqueue(&rig.resources, &e).await;

    let first = next_batch(&source).await;
    assert!(!first.records[0].1.is_success(), "{first:?}");
    assert_eq!(first.to_response().batch_item_failures.len(), 1);
    // 1 start + 3 tries of the end, each the SDK's 3 attempts.
    assert_eq!(rig.faults.attempts("UpdateItem"), 1 + 3 * MAX_ATTEMPTS);
    assert_eq!(processor.pending_completions(), 1);

    rig.faults.clear_all();
    let second = next_batch(&source).await;
    assert_eq!(
        second.records[0].1,
        RecordOutcome::AlreadyProcessed,
        "{second:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler ran once");
    let record = rig.backend.ledger.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Processed);
    assert_eq!(record.attempts.len(), 1);
}

/// A TCP listener on 127.0.0.1 that accepts connections and never answers.
async fn stalled_endpoint() -> (String, Arc<AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU32::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (format!("http://{address}"), accepted)
}

#[tokio::test]
async fn a_stalled_endpoint_fails_each_attempt_at_its_timeout() {
    let (endpoint, accepted) = stalled_endpoint().await;
    let sdk = budgeted_sdk_config(&endpoint).await;
    let faults = SdkFaults::new();
    let ledger = DynamoDbLedger::new(faults.dynamodb_client(&sdk), "stalled");
    let now = Timestamp::from_secs(1_800_000_000);
    let claim = Claim {
        event_id: EventId::parse("demo:stalled").unwrap(),
        source: SourceName::parse("demo").unwrap(),
        event_type: "t".into(),
        now,
        expires_at: now.plus(Duration::from_secs(3600)),
        timeout: Duration::from_secs(60),
        token: "t".into(),
    };
    let result = ledger.claim(&claim).await;
    assert!(
        matches!(&result, Err(LedgerError::Unavailable(m)) if m.contains("timeout") || m.contains("Timeout")),
        "{result:?}"
    );
    assert_eq!(
        faults.attempts("PutItem"),
        MAX_ATTEMPTS,
        "every attempt timed out"
    );
    assert!(accepted.load(Ordering::SeqCst) >= 1);
}

// ------------------------------------------------------------ applied, then the answer lost

/// Long enough that a lease outlasts an attempt on moto even on a loaded machine: a lease that
/// expired mid-attempt would let a second copy run too (the documented limit, not the subject).
const LEASE_SECS: u64 = 4;

/// A processor over the rig's backend whose handler counts its runs (and fails permanently
/// while `permanent` is set), fed by the local event source; its lease (the visibility
/// timeout) is [`LEASE_SECS`].
fn counting_source(rig: &Rig, permanent: bool) -> (EventSource, Arc<AtomicU32>) {
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let handlers = Handlers::new().on("*", "*", move |_e: Envelope| {
        r.fetch_add(1, Ordering::SeqCst);
        async move {
            if permanent {
                Err(hookgate_core::HandlerError::permanent("downstream 422"))
            } else {
                Ok(())
            }
        }
    });
    let processor = Processor::new(
        &config_with_visibility(LEASE_SECS),
        rig.backend.ledger.clone(),
        rig.backend.queue.clone(),
        handlers,
    );
    (
        EventSource::new(rig.backend.queue.clone(), Arc::new(processor)),
        runs,
    )
}

/// Polls until event `id` is `status` and the queue is empty (every copy consumed).
async fn settle(
    rig: &Rig,
    source: &EventSource,
    id: &EventId,
    status: EventStatus,
) -> hookgate_core::EventRecord {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let outcome = source.poll().await.unwrap();
        let record = rig.backend.ledger.get(id).await.unwrap();
        if outcome.records.is_empty() && record.as_ref().is_some_and(|r| r.status == status) {
            return record.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{id} never settled as {status}: {record:?}"
        );
    }
}

/// Each write on an event's way, applied by moto while its answer is lost, so the SDK sends
/// it again: the provider is answered `202`, the handler runs once, and the history holds one
/// attempt. `UpdateItem` is the processor's lease (0 let through first), then the attempt's
/// end (1); the receiver makes none.
#[tokio::test]
async fn every_write_applied_with_its_answer_lost_runs_the_handler_once() {
    if moto_endpoint().is_none() {
        eprintln!("skipped: no moto");
        return;
    }
    for (operation, skip, sent) in [
        ("PutItem", 0, 2),     // the claim: before, answered 409 event_in_progress
        ("SendMessage", 0, 2), // the enqueue: two copies on the queue
        ("UpdateItem", 0, 3),  // the lease: before, it met its own lease and backed off
        ("UpdateItem", 1, 3),  // the attempt's end: before, appended twice
    ] {
        // Fresh resources each time: a second copy of an earlier event cannot come back here.
        let rig = rig_with_visibility(LEASE_SECS).await.expect("moto");
        let (source, runs) = counting_source(&rig, false);
        rig.faults
            .fail_after(operation, skip, SdkFault::AppliedThenLost);
        let reply = rig.receiver.handle(signed(&rig.receiver, &body())).await;
        assert_eq!(
            reply.status,
            StatusCode::ACCEPTED,
            "{operation}#{skip}: {reply:?}"
        );
        let id = EventId::parse(reply.body["event_id"].as_str().unwrap()).unwrap();
        let record = settle(&rig, &source, &id, EventStatus::Processed).await;
        assert_eq!(rig.faults.injected(operation), 1, "{operation}#{skip}");
        assert_eq!(
            rig.faults.attempts(operation),
            sent,
            "{operation}#{skip}: the lost attempt was sent again by the SDK"
        );
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "{operation}#{skip}: one run"
        );
        assert_eq!(record.attempt_count, 1, "{operation}#{skip}");
        let history: Vec<(u32, bool)> = record
            .attempts
            .iter()
            .map(|a| (a.attempt, a.success))
            .collect();
        assert_eq!(history, [(1, true)], "{operation}#{skip}");
    }
}

#[tokio::test]
async fn a_release_applied_with_its_answer_lost_lets_the_retry_in() {
    let Some(rig) = rig_with_visibility(LEASE_SECS).await else {
        eprintln!("skipped: no moto");
        return;
    };
    let (source, runs) = counting_source(&rig, false);
    let body = body();
    rig.faults
        .fail_always("SendMessage", SdkFault::ServiceUnavailable);
    rig.faults
        .fail_next("DeleteItem", 1, SdkFault::AppliedThenLost);
    let reply = rig.receiver.handle(signed(&rig.receiver, &body)).await;
    assert_eq!(reply.error_code(), Some("queue_unavailable"), "{reply:?}");
    assert_eq!(
        rig.faults.attempts("DeleteItem"),
        2,
        "released, then sent again"
    );
    rig.faults.clear_all();
    let retry = rig.receiver.handle(signed(&rig.receiver, &body)).await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{retry:?}");
    let id = EventId::parse(retry.body["event_id"].as_str().unwrap()).unwrap();
    let record = settle(&rig, &source, &id, EventStatus::Processed).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(record.attempts.len(), 1);
}

#[tokio::test]
async fn a_move_to_the_dlq_applied_with_its_answer_lost_keeps_one_attempt() {
    let Some(rig) = rig_with_visibility(LEASE_SECS).await else {
        eprintln!("skipped: no moto");
        return;
    };
    let (source, runs) = counting_source(&rig, true);
    let reply = rig.receiver.handle(signed(&rig.receiver, &body())).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    let id = EventId::parse(reply.body["event_id"].as_str().unwrap()).unwrap();
    rig.faults.reset_counts();
    // The processor's next SendMessage is the copy to the DLQ.
    rig.faults
        .fail_next("SendMessage", 1, SdkFault::AppliedThenLost);
    let record = settle(&rig, &source, &id, EventStatus::DeadLettered).await;
    assert_eq!(rig.faults.attempts("SendMessage"), 2);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(record.attempts.len(), 1);
    // Two copies of the one event in the DLQ; the ledger runs it once whichever is redriven.
    let dlq = rig.resources.dlq();
    let mut copies = 0;
    loop {
        let batch = dlq.receive(10, Duration::from_millis(500)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for m in batch {
            assert_eq!(Envelope::from_message(&m.body).unwrap().event_id, id);
            copies += 1;
        }
    }
    assert_eq!(copies, 2);
}
