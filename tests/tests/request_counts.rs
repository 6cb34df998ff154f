//! AWS requests per event, counted on moto through the SDK's own interceptor (a count, not a
//! timing), for every fate an event can have: new, duplicate, rejected, processed, retried and
//! dead-lettered. The counts are what docs/cost.md turns into dollars; asserting them here keeps
//! a change from adding a request to a path without anyone seeing it.
//!
//! Run with `--nocapture` for the table.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookgate_aws::faults::SdkFaults;
use hookgate_core::event_source::EventSource;
use hookgate_core::processor::BatchOutcome;
use hookgate_core::{
    Clock, Config, Envelope, EventId, EventStatus, HandlerError, Handlers, IncomingRequest, Ledger,
    ManualClock, Processor, Receiver, RecordOutcome, SystemClock,
};
use hookgate_testkit::{budgeted_sdk_config, fresh_resources, moto_endpoint};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

const OPERATIONS: [&str; 12] = [
    "PutItem",
    "UpdateItem",
    "GetItem",
    "DeleteItem",
    "SendMessage",
    "SendMessageBatch",
    "DeleteMessage",
    "ChangeMessageVisibility",
    "ReceiveMessage",
    "PutObject",
    "GetObject",
    "Query",
];

/// The requests made since the last call, by operation (those made at least once).
fn take(faults: &SdkFaults) -> BTreeMap<&'static str, u32> {
    let counts = OPERATIONS
        .iter()
        .map(|op| (*op, faults.attempts(op)))
        .filter(|(_, n)| *n > 0)
        .collect();
    faults.reset_counts();
    counts
}

fn expect(pairs: &[(&'static str, u32)]) -> BTreeMap<&'static str, u32> {
    pairs.iter().copied().collect()
}

struct Stack {
    faults: Arc<SdkFaults>,
    receiver: Receiver,
    /// A second receiver on the same table and queue: another Lambda container, which has not
    /// seen the events the first one queued.
    elsewhere: Receiver,
    source: EventSource,
    ledger: Arc<dyn Ledger>,
}

/// Receiver and processor over moto, every SDK client counting through `faults`. The handler
/// of type `flaky` fails once then succeeds; the one of type `broken` fails permanently.
async fn stack(endpoint: &str) -> Stack {
    let resources = fresh_resources(endpoint, 5, 10).await;
    let sdk = budgeted_sdk_config(endpoint).await;
    let faults = SdkFaults::new();
    let backend = resources.backend_through(&faults, &sdk, false);
    let config = Config::from_toml(
        "[sources.demo]\nscheme = 'hmac-sha256'\nsecrets = ['request-counts-s3cr3t']\n\
         [processor]\nvisibility_timeout_secs = 10\nwait_time_ms = 200\nbatch_window_ms = 0\n\
         backoff_base_ms = 100\nbackoff_cap_secs = 1\nmax_receive_count = 5\n",
    )
    .unwrap();
    let flaky_calls = Arc::new(AtomicU32::new(0));
    let handlers = Handlers::new()
        .on("demo", "ok", |_e: Envelope| async {
            Ok::<(), HandlerError>(())
        })
        .on("demo", "flaky", move |_e: Envelope| {
            let calls = flaky_calls.clone();
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(HandlerError::retry("the first call fails"))
                } else {
                    Ok(())
                }
            }
        })
        .on("demo", "broken", |_e: Envelope| async {
            Err::<(), HandlerError>(HandlerError::permanent("never works"))
        });
    let receiver = Receiver::new(&config, backend.ledger.clone(), backend.queue.clone());
    let elsewhere = Receiver::new(&config, backend.ledger.clone(), backend.queue.clone());
    let processor = Processor::new(
        &config,
        backend.ledger.clone(),
        backend.queue.clone(),
        handlers,
    );
    let source = EventSource::new(backend.queue.clone(), Arc::new(processor));
    Stack {
        faults,
        receiver,
        elsewhere,
        source,
        ledger: backend.ledger.clone(),
    }
}

fn request(receiver: &Receiver, body: &[u8], tamper: bool) -> IncomingRequest {
    request_to(receiver, "demo", body, tamper)
}

/// A request to `source`, signed for it (then its body changed, with `tamper`).
fn request_to(receiver: &Receiver, source: &str, body: &[u8], tamper: bool) -> IncomingRequest {
    let mut headers = HeaderMap::new();
    for (k, v) in receiver.sign(source, body).unwrap() {
        headers.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(&v).unwrap(),
        );
    }
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let mut body = body.to_vec();
    if tamper {
        body.push(b' ');
    }
    IncomingRequest {
        method: Method::POST,
        source: source.into(),
        headers,
        body: Bytes::from(body),
        trace_header: None,
    }
}

async fn send(stack: &Stack, event_type: &str) -> EventId {
    let body = format!(
        r#"{{"id":"{}","type":"{event_type}"}}"#,
        uuid::Uuid::new_v4()
    );
    let reply = stack
        .receiver
        .handle(request(&stack.receiver, body.as_bytes(), false))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    EventId::parse(reply.body["event_id"].as_str().unwrap()).unwrap()
}

/// Polls until a batch with a record arrives; returns its outcome.
async fn next_batch(stack: &Stack) -> BatchOutcome {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let outcome = stack.source.poll().await.unwrap();
        if !outcome.records.is_empty() {
            return outcome;
        }
        assert!(Instant::now() < deadline, "no message came back");
    }
}

/// The processor's requests for one record's batch, without the polls that found nothing.
fn processor_requests(faults: &SdkFaults) -> BTreeMap<&'static str, u32> {
    let mut counts = take(faults);
    counts.remove("ReceiveMessage");
    counts
}

#[tokio::test]
async fn requests_per_event_for_every_fate() {
    let Some(endpoint) = moto_endpoint() else {
        eprintln!("skipped: no moto");
        return;
    };
    let stack = stack(&endpoint).await;
    let mut table = Vec::new();

    // The provider's path. A new event: the claim and the enqueue.
    take(&stack.faults);
    let body = format!(r#"{{"id":"{}","type":"ok"}}"#, uuid::Uuid::new_v4());
    let reply = stack
        .receiver
        .handle(request(&stack.receiver, body.as_bytes(), false))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    let new = take(&stack.faults);
    table.push(("receiver: new event", new.clone()));
    // The same request again while the event waits in the queue. The container that queued it
    // knows: a duplicate, no request. Another container: one conditional write answers it (in
    // progress, retry later).
    let reply = stack
        .receiver
        .handle(request(&stack.receiver, body.as_bytes(), false))
        .await;
    assert_eq!(reply.body["status"], "duplicate", "{reply:?}");
    let remembered = take(&stack.faults);
    table.push(("receiver: repeat, same container", remembered.clone()));
    let reply = stack
        .elsewhere
        .handle(request(&stack.receiver, body.as_bytes(), false))
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{reply:?}");
    let in_progress = take(&stack.faults);
    table.push((
        "receiver: repeat, event still queued, another container",
        in_progress.clone(),
    ));
    // A wrong signature costs no request at all.
    let reply = stack
        .receiver
        .handle(request(&stack.receiver, body.as_bytes(), true))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    let rejected = take(&stack.faults);
    table.push(("receiver: rejected", rejected.clone()));

    // The processor. Processed on the first attempt: the lease, the end, the delete.
    let outcome = next_batch(&stack).await;
    assert_eq!(outcome.records[0].1, RecordOutcome::Processed);
    let processed = processor_requests(&stack.faults);
    table.push(("processor: processed", processed.clone()));
    // The provider's repeat once the event is processed, in another container: a duplicate,
    // one conditional write.
    let reply = stack
        .elsewhere
        .handle(request(&stack.receiver, body.as_bytes(), false))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["status"], "duplicate");
    let duplicate = take(&stack.faults);
    table.push(("receiver: duplicate, another container", duplicate.clone()));

    // A retryable failure: the lease, the end, the backoff; then processed as above.
    let id = send(&stack, "flaky").await;
    take(&stack.faults);
    let outcome = next_batch(&stack).await;
    assert!(
        matches!(outcome.records[0].1, RecordOutcome::Failed { .. }),
        "{outcome:?}"
    );
    let retried = processor_requests(&stack.faults);
    table.push(("processor: retried (the failed attempt)", retried.clone()));
    let outcome = next_batch(&stack).await;
    assert_eq!(outcome.records[0].1, RecordOutcome::Processed);
    take(&stack.faults);
    let record = stack.ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.attempts.len()),
        (EventStatus::Processed, 2)
    );

    // A permanent failure: the lease, the end, the move to the DLQ (send there, delete here).
    send(&stack, "broken").await;
    take(&stack.faults);
    let outcome = next_batch(&stack).await;
    assert!(
        matches!(outcome.records[0].1, RecordOutcome::MovedToDlq { .. }),
        "{outcome:?}"
    );
    let dead = processor_requests(&stack.faults);
    table.push(("processor: dead-lettered", dead.clone()));

    println!("| path | AWS requests |\n|---|---|");
    for (path, counts) in &table {
        let list: Vec<String> = counts.iter().map(|(op, n)| format!("{op} {n}")).collect();
        println!("| {path} | {} |", list.join(", "));
    }

    assert_eq!(new, expect(&[("PutItem", 1), ("SendMessage", 1)]));
    assert_eq!(remembered, expect(&[]));
    assert_eq!(in_progress, expect(&[("PutItem", 1)]));
    assert_eq!(duplicate, expect(&[("PutItem", 1)]));
    assert_eq!(rejected, expect(&[]));
    assert_eq!(
        processed,
        expect(&[("DeleteMessage", 1), ("UpdateItem", 2)])
    );
    assert_eq!(
        retried,
        expect(&[("ChangeMessageVisibility", 1), ("UpdateItem", 2)])
    );
    assert_eq!(
        dead,
        expect(&[("DeleteMessage", 1), ("SendMessage", 1), ("UpdateItem", 2)])
    );
}

/// What delivering to destinations costs per event, one destination against three, counted the
/// same way: the event's own message delivers a single destination; three fan out, one message
/// and one ledger item per delivery. The gate's health reads are cached per container (one read
/// per destination per `max_age`, 1 s), so a steady stream pays them once: the second event of
/// each shape shows the per-event cost, and an event after the readings aged pays them again.
#[tokio::test]
async fn requests_per_event_for_one_destination_and_three() {
    use hookgate_core::processor::Destinations;
    use hookgate_testkit::sink::{Answer, Sink};

    let Some(endpoint) = moto_endpoint() else {
        eprintln!("skipped: no moto");
        return;
    };
    let resources = fresh_resources(&endpoint, 5, 10).await;
    let sdk = budgeted_sdk_config(&endpoint).await;
    let faults = SdkFaults::new();
    let backend = resources.backend_through(&faults, &sdk, false);
    let sinks = [
        Sink::start(vec![], Answer::ok()).await,
        Sink::start(vec![], Answer::ok()).await,
        Sink::start(vec![], Answer::ok()).await,
    ];
    let mut doc = String::from(
        "[sources.one]\nscheme = 'hmac-sha256'\nsecrets = ['request-counts-s3cr3t']\n\
         [sources.three]\nscheme = 'hmac-sha256'\nsecrets = ['request-counts-s3cr3t']\n\
         [processor]\nvisibility_timeout_secs = 10\nwait_time_ms = 200\nbatch_window_ms = 0\n\
         max_receive_count = 5\n\
         [[routes]]\nsource = 'one'\nto = ['d0']\n\
         [[routes]]\nsource = 'three'\nto = ['d0', 'd1', 'd2']\n",
    );
    for (n, sink) in sinks.iter().enumerate() {
        doc.push_str(&format!(
            "[destinations.d{n}]\nurl = '{}'\nsecret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'\n\
             allow_http = true\nallow_private_networks = true\n",
            sink.url("/")
        ));
    }
    let config = Config::from_toml(&doc).unwrap();
    // The cache ages by its own clock, moved by hand: how long a slow machine takes between two
    // events must not decide whether a reading is still fresh.
    let cache_clock = Arc::new(ManualClock::new(SystemClock.now()));
    let max_age = hookgate_core::destination_gate::DEFAULT_MAX_AGE;
    let gate = Arc::new(hookgate_core::destination_gate::CachedGate::new(
        Arc::new(hookgate_aws::destination_gate::DynamoDbGate::new(
            faults.dynamodb_client(&sdk),
            &resources.table,
        )),
        cache_clock.clone(),
        max_age,
    ));
    let destinations = Destinations::new(config.routing().clone(), gate).unwrap();
    let receiver = Receiver::new(&config, backend.ledger.clone(), backend.queue.clone());
    let processor = Processor::new(
        &config,
        backend.ledger.clone(),
        backend.queue.clone(),
        Handlers::new(),
    )
    .with_destinations(Arc::new(destinations));
    let events = EventSource::new(backend.queue.clone(), Arc::new(processor));
    // The test's own reads, on a client that is not counted.
    let ledger = hookgate_aws::DynamoDbLedger::new(resources.dynamodb(), &resources.table);

    // One event of `source`, received and processed to the end (every delivery processed):
    // the processor's requests.
    let run = async |source: &str| {
        let body = format!(r#"{{"id":"{}"}}"#, uuid::Uuid::new_v4());
        let request = request_to(&receiver, source, body.as_bytes(), false);
        let reply = receiver.handle(request).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
        let id = EventId::parse(reply.body["event_id"].as_str().unwrap()).unwrap();
        take(&faults);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut records = 0;
        loop {
            records += events.poll().await.unwrap().records.len();
            let record = ledger.get(&id).await.unwrap().unwrap();
            let mut done = record.status == EventStatus::Processed;
            for d in &record.deliveries {
                let delivery = ledger.get(&id.delivery(d)).await.unwrap();
                done &= delivery.is_some_and(|r| r.status == EventStatus::Processed);
            }
            if done {
                break;
            }
            assert!(Instant::now() < deadline, "{id} never finished");
        }
        (processor_requests(&faults), records)
    };
    // The first event of each shape reads the gate's health of its destinations (then cached).
    let (one_first, _) = run("one").await;
    let (one, one_records) = run("one").await;
    let (three_first, _) = run("three").await;
    let (three, three_records) = run("three").await;
    // Once the readings are older than `max_age`, the next event reads each destination's health
    // again.
    cache_clock.advance(max_age + Duration::from_millis(1));
    let (three_aged, _) = run("three").await;
    println!("| destinations | AWS requests per event (processor) | records |\n|---|---|---|");
    println!("| 1 (first event: gate read) | {one_first:?} | |");
    println!("| 1 | {one:?} | {one_records} |");
    println!("| 3 (first event: gate reads) | {three_first:?} | |");
    println!("| 3 | {three:?} | {three_records} |");
    println!("| 3 (readings older than {max_age:?}) | {three_aged:?} | |");
    assert_eq!(
        one_first,
        expect(&[("DeleteMessage", 1), ("GetItem", 1), ("UpdateItem", 2)])
    );
    // One destination: the lease, the end, the delete — as a handler.
    assert_eq!(one, expect(&[("DeleteMessage", 1), ("UpdateItem", 2)]));
    assert_eq!(one_records, 1);
    // Three: the event (lease, end, delete, three claims, one batch of three sends) and each
    // delivery (lease, end, delete).
    assert_eq!(
        three,
        expect(&[
            ("DeleteMessage", 4),
            ("PutItem", 3),
            ("SendMessageBatch", 1),
            ("UpdateItem", 8)
        ])
    );
    assert_eq!(three_records, 4);
    assert_eq!(
        three_aged,
        expect(&[
            ("DeleteMessage", 4),
            ("GetItem", 3),
            ("PutItem", 3),
            ("SendMessageBatch", 1),
            ("UpdateItem", 8)
        ])
    );
    for sink in &sinks {
        assert!(!sink.requests().is_empty());
    }
}
