//! The processor over a real queue and ledger: one suite, run on the in-memory backends and on
//! SQS/DynamoDB served by moto. The local event source drives it as Lambda's event source
//! mapping would; moto keeps visibility timeouts and the redrive policy in real time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookgate_core::dlq::{DeadLetters, Selection};
use hookgate_core::event_source::{to_sqs_event, EventSource};
use hookgate_core::queue::attr;
use hookgate_core::{
    Config, Envelope, EventId, EventRecord, EventStatus, Handler, HandlerError, Handlers,
    Processor, RecordOutcome, SourceName, Timestamp,
};
use hookgate_testkit::pipeline::Pipeline;

const MAX_RECEIVE_COUNT: u32 = 3;

type Backend = Pipeline;

fn memory() -> Backend {
    Pipeline::memory(MAX_RECEIVE_COUNT, Duration::from_secs(1))
}

async fn moto() -> Option<Backend> {
    Pipeline::moto(MAX_RECEIVE_COUNT, 1).await
}

fn config() -> Config {
    Config::from_toml(&format!(
        "[processor]\nmax_receive_count = {MAX_RECEIVE_COUNT}\nvisibility_timeout_secs = 1\n\
         backoff_base_ms = 200\nbackoff_cap_secs = 2\nwait_time_ms = 1000\nbatch_window_ms = 0\n"
    ))
    .unwrap()
}

fn envelope(tag: &str) -> Envelope {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    Envelope {
        event_id: EventId::parse(&format!("demo:{tag}-{unique}")).unwrap(),
        source: SourceName::parse("demo").unwrap(),
        event_type: tag.into(),
        received_at: Timestamp::from_secs(1_800_000_000),
        headers: BTreeMap::new(),
        body: Bytes::from_static(b"{}"),
    }
}

async fn enqueue(b: &Backend, e: &Envelope) {
    b.enqueue(e).await;
}

fn source(b: &Backend, handlers: Handlers) -> EventSource {
    let processor = Processor::new(&config(), b.ledger.clone(), b.queue.clone(), handlers);
    EventSource::new(b.queue.clone(), Arc::new(processor))
}

/// Polls until the event reaches `status` (or 30 s pass).
async fn poll_until(
    b: &Backend,
    events: &EventSource,
    id: &EventId,
    status: EventStatus,
) -> EventRecord {
    b.poll_until(events, id, status).await
}

fn failing_first(n: u32, runs: Arc<AtomicU32>) -> impl Handler {
    move |_e: Envelope| {
        let runs = runs.clone();
        async move {
            if runs.fetch_add(1, Ordering::SeqCst) < n {
                Err(HandlerError::retry("downstream 503"))
            } else {
                Ok(())
            }
        }
    }
}

async fn transient_failure_then_success(b: Backend) {
    let runs = Arc::new(AtomicU32::new(0));
    let events = source(
        &b,
        Handlers::new().on("*", "*", failing_first(2, runs.clone())),
    );
    let e = envelope("flaky");
    enqueue(&b, &e).await;
    let record = poll_until(&b, &events, &e.event_id, EventStatus::Processed).await;
    assert_eq!(
        record
            .attempts
            .iter()
            .map(|a| a.success)
            .collect::<Vec<_>>(),
        vec![false, false, true]
    );
    assert_eq!(record.attempts[0].error.as_deref(), Some("downstream 503"));
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert!(b
        .queue
        .receive(10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
}

async fn poison_message_is_dead_lettered_after_max_receives(b: Backend) {
    let events = source(
        &b,
        Handlers::new().on("*", "*", |_e: Envelope| async {
            Err(HandlerError::retry("always"))
        }),
    );
    let e = envelope("poison");
    enqueue(&b, &e).await;
    let record = poll_until(&b, &events, &e.event_id, EventStatus::DeadLettered).await;
    assert_eq!(record.attempts.len(), MAX_RECEIVE_COUNT as usize);
    // The redrive policy moves it on the next receive.
    let deadline = Instant::now() + Duration::from_secs(15);
    let in_dlq = loop {
        events.poll_once().await.unwrap();
        let got = b.dlq.receive(10, Duration::from_secs(1)).await.unwrap();
        if !got.is_empty() {
            break got;
        }
        assert!(Instant::now() < deadline, "never reached the DLQ");
    };
    assert_eq!(in_dlq[0].attributes[attr::EVENT_ID], e.event_id.as_str());
    assert_eq!(
        b.ledger
            .get(&e.event_id)
            .await
            .unwrap()
            .unwrap()
            .attempts
            .len(),
        MAX_RECEIVE_COUNT as usize
    );
}

async fn permanent_failure_goes_to_the_dlq_at_once(b: Backend) {
    let events = source(
        &b,
        Handlers::new().on("*", "*", |_e: Envelope| async {
            Err(HandlerError::permanent("422 from downstream"))
        }),
    );
    let e = envelope("bad-payload");
    enqueue(&b, &e).await;
    let record = poll_until(&b, &events, &e.event_id, EventStatus::DeadLettered).await;
    assert_eq!(record.attempts.len(), 1);
    assert_eq!(record.last_error.as_deref(), Some("422 from downstream"));
    let in_dlq = b.dlq.receive(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(in_dlq.len(), 1);
    assert!(b
        .queue
        .receive(10, Duration::from_secs(2))
        .await
        .unwrap()
        .is_empty());
}

async fn the_same_message_twice_runs_its_handler_once(b: Backend) {
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let handlers = Handlers::new().on("*", "*", move |_e: Envelope| {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(())
        }
    });
    let processor = Processor::new(&config(), b.ledger.clone(), b.queue.clone(), handlers);
    let e = envelope("twice");
    enqueue(&b, &e).await;
    enqueue(&b, &e).await;
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.len() < 2 && Instant::now() < deadline {
        received.extend(b.queue.receive(10, Duration::from_secs(1)).await.unwrap());
    }
    assert_eq!(received.len(), 2);
    let (first, second) = (to_sqs_event(&received[..1]), to_sqs_event(&received[1..]));
    // Two consumers at once, as two Lambda invocations would be: the second starts while the
    // first one's handler runs. (Their ledger writes are 50 ms apart: moto, unlike DynamoDB,
    // does not make simultaneous conditional writes atomic.)
    let (a, c) = tokio::join!(processor.process_batch(&first, None), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        processor.process_batch(&second, None).await
    });
    let outcomes = [
        a.unwrap().records[0].1.clone(),
        c.unwrap().records[0].1.clone(),
    ];
    assert_eq!(runs.load(Ordering::SeqCst), 1, "{outcomes:?}");
    // And again after success: acknowledged without running.
    let again = processor
        .process_batch(&to_sqs_event(&received[..1]), None)
        .await
        .unwrap();
    assert_eq!(again.records[0].1, RecordOutcome::AlreadyProcessed);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

async fn a_panicking_handler_fails_only_its_record(b: Backend) {
    let handlers = Handlers::new().on("demo", "panics", |_e: Envelope| async { panic!("bug") });
    let processor = Processor::new(&config(), b.ledger.clone(), b.queue.clone(), handlers);
    let (p, ok) = (envelope("panics"), envelope("fine"));
    enqueue(&b, &p).await;
    enqueue(&b, &ok).await;
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.len() < 2 && Instant::now() < deadline {
        received.extend(b.queue.receive(10, Duration::from_secs(1)).await.unwrap());
    }
    let outcome = processor
        .process_batch(&to_sqs_event(&received), None)
        .await
        .unwrap();
    let failures = outcome.to_response().batch_item_failures;
    assert_eq!(failures.len(), 1);
    let panicked = received
        .iter()
        .find(|m| m.attributes[attr::EVENT_ID] == p.event_id.as_str())
        .unwrap();
    assert_eq!(failures[0].item_identifier, panicked.message_id);
    assert_eq!(
        b.ledger.get(&ok.event_id).await.unwrap().unwrap().status,
        EventStatus::Processed
    );
    assert_eq!(
        b.ledger
            .get(&p.event_id)
            .await
            .unwrap()
            .unwrap()
            .last_error
            .as_deref(),
        Some("handler panicked")
    );
}

async fn redrive_brings_dead_letters_back_to_completion(b: Backend) {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let events = source(
        &b,
        Handlers::new().on("*", "*", move |_e: Envelope| {
            let ok = h.load(Ordering::SeqCst);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(HandlerError::permanent("downstream rejects"))
                }
            }
        }),
    );
    let (x, y) = (envelope("redrive-x"), envelope("redrive-y"));
    enqueue(&b, &x).await;
    enqueue(&b, &y).await;
    poll_until(&b, &events, &x.event_id, EventStatus::DeadLettered).await;
    poll_until(&b, &events, &y.event_id, EventStatus::DeadLettered).await;

    let tools = DeadLetters::new(b.queue.clone(), b.dlq.clone(), b.ledger.clone());
    let mut listed = tools.list(100).await.unwrap();
    listed.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .all(|m| m.attempts == Some(1) && m.last_error.as_deref() == Some("downstream rejects")));
    assert_eq!(
        tools.list(100).await.unwrap().len(),
        2,
        "listing loses nothing"
    );

    healthy.store(true, Ordering::SeqCst);
    let only_x = Selection::Ids([x.event_id.to_string()].into());
    let report = tools.redrive(&only_x, Some(50)).await.unwrap();
    assert_eq!((report.moved, report.left), (1, 1));
    let record = poll_until(&b, &events, &x.event_id, EventStatus::Processed).await;
    assert!(record.attempts[1]
        .note
        .as_deref()
        .unwrap()
        .starts_with("redriven from the DLQ"));
    assert_eq!(tools.list(100).await.unwrap().len(), 1);
    tools.purge().await.unwrap();
    assert!(tools.list(100).await.unwrap().is_empty());
}

macro_rules! processor_suite {
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

processor_suite!(
    transient_failure_then_success,
    poison_message_is_dead_lettered_after_max_receives,
    permanent_failure_goes_to_the_dlq_at_once,
    the_same_message_twice_runs_its_handler_once,
    a_panicking_handler_fails_only_its_record,
    redrive_brings_dead_letters_back_to_completion,
);
