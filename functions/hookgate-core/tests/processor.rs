//! The processor core on in-memory ports: routing, partial failures, the ledger guard, panics,
//! backoff through the visibility timeout, permanent failures, dead-lettering, the deadline,
//! concurrency, and the local event-source loop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsEvent;
use bytes::Bytes;
use hookgate_core::event_source::{to_sqs_event, EventSource};
use hookgate_core::faults::{Faults, FaultyLedger};
use hookgate_core::memory::{MemoryLedger, MemoryQueue};
use hookgate_core::queue::{attr, OutgoingMessage, QueueError, ReceivedMessage};
use hookgate_core::{
    Clock, Config, Envelope, EventId, EventStatus, HandlerError, Handlers, Ledger, Processor,
    Queue, RecordOutcome, SourceName, SystemClock, Timestamp,
};

const CONFIG: &str = r#"
[processor]
max_receive_count = 3
visibility_timeout_secs = 30
concurrency = 4
pollers = 1
wait_time_ms = 100
backoff_base_ms = 1000
backoff_cap_secs = 60
handler_timeout_secs = 5
deadline_margin_ms = 1000
"#;

fn config() -> Config {
    Config::from_toml(CONFIG).unwrap()
}

fn envelope(n: u32, event_type: &str) -> Envelope {
    Envelope {
        event_id: EventId::parse(&format!("demo:{n}")).unwrap(),
        source: SourceName::parse("demo").unwrap(),
        event_type: event_type.into(),
        received_at: Timestamp::from_secs(1_800_000_000),
        headers: BTreeMap::new(),
        body: Bytes::from(format!("{{\"n\":{n}}}")),
    }
}

fn id(n: u32) -> EventId {
    envelope(n, "").event_id
}

fn outgoing(e: &Envelope) -> OutgoingMessage {
    OutgoingMessage {
        delay: None,
        body: e.to_message(),
        attributes: BTreeMap::from([(attr::EVENT_ID.to_owned(), e.event_id.to_string())]),
        trace_header: None,
    }
}

/// A queue that records every visibility change and DLQ move, over a `MemoryQueue` with a DLQ.
struct SpyQueue {
    inner: Arc<MemoryQueue>,
    dlq: Arc<MemoryQueue>,
    visibility: Mutex<Vec<Duration>>,
}

impl SpyQueue {
    fn new() -> Arc<Self> {
        let (inner, dlq) = MemoryQueue::with_dlq(Duration::from_secs(30), 3);
        Arc::new(Self {
            inner,
            dlq,
            visibility: Mutex::default(),
        })
    }
    fn visibility(&self) -> Vec<Duration> {
        self.visibility.lock().unwrap().clone()
    }
}

#[async_trait]
impl Queue for SpyQueue {
    async fn send(&self, m: OutgoingMessage) -> Result<String, QueueError> {
        self.inner.send(m).await
    }
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(max, wait).await
    }
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        self.visibility.lock().unwrap().push(timeout);
        self.inner.change_visibility(receipt, timeout).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt).await
    }
    async fn move_to_dlq(&self, m: &ReceivedMessage) -> Result<(), QueueError> {
        self.inner.move_to_dlq(m).await
    }
    async fn purge(&self) -> Result<(), QueueError> {
        self.inner.purge().await
    }
}

async fn batch_of(queue: &dyn Queue, envelopes: &[Envelope]) -> SqsEvent {
    for e in envelopes {
        queue.send(outgoing(e)).await.unwrap();
    }
    to_sqs_event(&queue.receive(10, Duration::ZERO).await.unwrap())
}

fn with_receive_count(mut batch: SqsEvent, n: u32) -> SqsEvent {
    for r in &mut batch.records {
        r.attributes
            .insert("ApproximateReceiveCount".into(), n.to_string());
    }
    batch
}

fn counting(counter: Arc<AtomicU32>, fail_first: u32) -> impl hookgate_core::Handler {
    move |_e: Envelope| {
        let counter = counter.clone();
        async move {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            if n < fail_first {
                Err(HandlerError::retry(format!("failure #{}", n + 1)))
            } else {
                Ok(())
            }
        }
    }
}

fn failing(error: HandlerError) -> impl hookgate_core::Handler {
    move |_e: Envelope| {
        let error = error.clone();
        async move { Err(error) }
    }
}

#[tokio::test]
async fn batch_item_failures_name_exactly_the_failed_records() {
    let ledger = Arc::new(MemoryLedger::new());
    let queue = SpyQueue::new();
    let handlers = Handlers::new()
        .on("demo", "bad", failing(HandlerError::retry("boom")))
        .on("demo", "panic", |_e: Envelope| async {
            panic!("handler bug")
        });
    let processor = Processor::new(&config(), ledger.clone(), queue.clone(), handlers);
    let batch = batch_of(
        queue.as_ref(),
        &[
            envelope(1, "ok"),
            envelope(2, "bad"),
            envelope(3, "ok"),
            envelope(4, "panic"),
        ],
    )
    .await;
    let response = processor
        .process_batch(&batch, None)
        .await
        .unwrap()
        .to_response();
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    let ids: Vec<_> = batch
        .records
        .iter()
        .map(|r| r.message_id.clone().unwrap())
        .collect();
    assert_eq!(failed, vec![ids[1].clone(), ids[3].clone()]);

    let bad = ledger.get(&id(2)).await.unwrap().unwrap();
    assert_eq!(bad.status, EventStatus::Failed);
    assert_eq!(bad.attempts[0].error.as_deref(), Some("boom"));
    let panicked = ledger.get(&id(4)).await.unwrap().unwrap();
    assert_eq!(panicked.last_error.as_deref(), Some("handler panicked"));
    let ok = ledger.get(&id(1)).await.unwrap().unwrap();
    assert_eq!(ok.status, EventStatus::Processed);
    assert!(ok.attempts[0].success);
}

#[tokio::test]
async fn failures_back_off_through_the_visibility_timeout() {
    let queue = SpyQueue::new();
    let handlers = Handlers::new()
        .on(
            "demo",
            "transient",
            failing(HandlerError::retry("503 from downstream")),
        )
        .on(
            "demo",
            "slow-down",
            failing(HandlerError::retry_after("429", Duration::from_secs(7))),
        );
    let processor = Processor::new(
        &config(),
        Arc::new(MemoryLedger::new()),
        queue.clone(),
        handlers,
    );
    for receive in 1..=2u32 {
        let batch = with_receive_count(
            batch_of(queue.as_ref(), &[envelope(10 + receive, "transient")]).await,
            receive,
        );
        let outcome = processor.process_batch(&batch, None).await.unwrap();
        let RecordOutcome::Failed {
            retry_in: Some(delay),
            dead_lettered: false,
            ..
        } = outcome.records[0].1
        else {
            panic!("{outcome:?}")
        };
        // Full jitter under min(cap, base * 2^(n-1)).
        assert!(
            delay <= Duration::from_secs(1 << (receive - 1)),
            "{delay:?}"
        );
    }
    let batch = batch_of(queue.as_ref(), &[envelope(20, "slow-down")]).await;
    processor.process_batch(&batch, None).await.unwrap();
    assert_eq!(
        queue.visibility().last(),
        Some(&Duration::from_secs(7)),
        "retry_after wins"
    );
}

#[tokio::test]
async fn jitter_spreads_retries_below_the_growing_ceiling() {
    let queue = SpyQueue::new();
    let processor = Processor::new(
        &config(),
        Arc::new(MemoryLedger::new()),
        queue.clone(),
        Handlers::new().on("*", "*", failing(HandlerError::retry("down"))),
    );
    let envelopes: Vec<_> = (100..110).map(|n| envelope(n, "x")).collect();
    let batch = with_receive_count(batch_of(queue.as_ref(), &envelopes).await, 2);
    processor.process_batch(&batch, None).await.unwrap();
    let delays = queue.visibility();
    assert_eq!(delays.len(), 10);
    assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
    let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
    assert!(distinct.len() > 5, "jittered: {delays:?}");
}

#[tokio::test]
async fn a_processed_event_delivered_again_does_not_run_twice() {
    let runs = Arc::new(AtomicU32::new(0));
    let queue = SpyQueue::new();
    let processor = Processor::new(
        &config(),
        Arc::new(MemoryLedger::new()),
        queue.clone(),
        Handlers::new().on("*", "*", counting(runs.clone(), 0)),
    );
    // The same event twice in one batch: the copies run concurrently.
    let batch = batch_of(queue.as_ref(), &[envelope(1, "x"), envelope(1, "x")]).await;
    let outcome = processor.process_batch(&batch, None).await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let kinds: Vec<_> = outcome.records.iter().map(|(_, o)| o.clone()).collect();
    assert!(kinds.contains(&RecordOutcome::Processed), "{kinds:?}");
    // The copy that met the lease backs off until the lease ends (about the visibility timeout).
    if let Some(RecordOutcome::Failed {
        retry_in: Some(d), ..
    }) = kinds.iter().find(|k| !k.is_success())
    {
        assert!(
            *d >= Duration::from_secs(29) && *d <= Duration::from_secs(32),
            "{d:?}"
        );
    }
    // Delivered again after success: acknowledged, not run.
    let again = batch_of(queue.as_ref(), &[envelope(1, "x")]).await;
    let outcome = processor.process_batch(&again, None).await.unwrap();
    assert_eq!(outcome.records[0].1, RecordOutcome::AlreadyProcessed);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// A copy of an event this container recorded processed a moment ago costs no ledger write
/// (the lease the ledger would refuse is a billed write unit); a replay's copy, of a later
/// generation, still goes to the ledger and runs.
#[tokio::test]
async fn a_duplicate_delivery_of_a_processed_event_makes_no_ledger_call() {
    let faults = Faults::new();
    let ledger: Arc<dyn Ledger> = Arc::new(FaultyLedger::new(
        Arc::new(MemoryLedger::new()),
        faults.clone(),
    ));
    let runs = Arc::new(AtomicU32::new(0));
    let queue = SpyQueue::new();
    let processor = Processor::new(
        &config(),
        ledger.clone(),
        queue.clone(),
        Handlers::new().on("*", "*", counting(runs.clone(), 0)),
    );
    let first = batch_of(queue.as_ref(), &[envelope(1, "x")]).await;
    let outcome = processor.process_batch(&first, None).await.unwrap();
    assert_eq!(outcome.records[0].1, RecordOutcome::Processed);
    let calls = |op| faults.calls(op);
    assert_eq!((calls("start_attempt"), calls("finish_attempt")), (1, 1));

    // The same event again, as another message (SQS at least once, or a second enqueue).
    let copy = batch_of(queue.as_ref(), &[envelope(1, "x")]).await;
    let outcome = processor.process_batch(&copy, None).await.unwrap();
    assert_eq!(outcome.records[0].1, RecordOutcome::AlreadyProcessed);
    assert_eq!(
        (calls("start_attempt"), calls("finish_attempt")),
        (1, 1),
        "no ledger call for the copy"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // A message of a later generation (a replay's) is not covered: the ledger decides.
    let mut replayed = outgoing(&envelope(1, "x"));
    replayed.body = envelope(1, "x").encode_as(1).into_message();
    queue.send(replayed).await.unwrap();
    let batch = to_sqs_event(&queue.receive(10, Duration::ZERO).await.unwrap());
    processor.process_batch(&batch, None).await.unwrap();
    assert_eq!(
        calls("start_attempt"),
        2,
        "the later generation asked the ledger"
    );
}

#[tokio::test]
async fn the_last_receive_is_marked_dead_lettered_and_released_to_the_redrive() {
    let ledger = Arc::new(MemoryLedger::new());
    let queue = SpyQueue::new();
    let processor = Processor::new(
        &config(),
        ledger.clone(),
        queue.clone(),
        Handlers::new().on("*", "*", failing(HandlerError::retry("down"))),
    );
    let batch = with_receive_count(batch_of(queue.as_ref(), &[envelope(7, "x")]).await, 3);
    let outcome = processor.process_batch(&batch, None).await.unwrap();
    assert!(matches!(
        outcome.records[0].1,
        RecordOutcome::Failed {
            dead_lettered: true,
            retry_in: Some(Duration::ZERO),
            ..
        }
    ));
    let record = ledger.get(&id(7)).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::DeadLettered);
    assert!(record.attempts[0]
        .note
        .as_deref()
        .unwrap()
        .contains("redrive policy"));
}

#[tokio::test]
async fn permanent_failures_go_to_the_dlq_at_once() {
    let ledger = Arc::new(MemoryLedger::new());
    let queue = SpyQueue::new();
    let processor = Processor::new(
        &config(),
        ledger.clone(),
        queue.clone(),
        Handlers::new().on(
            "*",
            "*",
            failing(HandlerError::permanent("400 bad payload")),
        ),
    );
    let batch = batch_of(queue.as_ref(), &[envelope(8, "x")]).await;
    let outcome = processor.process_batch(&batch, None).await.unwrap();
    assert_eq!(
        outcome.records[0].1,
        RecordOutcome::MovedToDlq {
            error: "400 bad payload".into()
        }
    );
    assert!(outcome.to_response().batch_item_failures.is_empty());
    assert_eq!(queue.dlq.len(), 1);
    assert!(queue.inner.is_empty());
    let record = ledger.get(&id(8)).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.attempts.len()),
        (EventStatus::DeadLettered, 1)
    );
    assert_eq!(record.last_error.as_deref(), Some("400 bad payload"));
    assert!(record.attempts[0]
        .note
        .as_deref()
        .unwrap()
        .contains("permanent"));
}

#[tokio::test]
async fn malformed_records_go_to_the_dlq_and_unnamed_records_fail_the_batch() {
    let queue = SpyQueue::new();
    let processor = Processor::new(
        &config(),
        Arc::new(MemoryLedger::new()),
        queue.clone(),
        Handlers::new(),
    );
    let mut batch = batch_of(queue.as_ref(), &[envelope(1, "x"), envelope(2, "x")]).await;
    batch.records[0].body = Some("not an envelope".into());
    let outcome = processor.process_batch(&batch, None).await.unwrap();
    assert!(
        matches!(&outcome.records[0].1, RecordOutcome::MovedToDlq { error } if error.starts_with("malformed record"))
    );
    assert_eq!(outcome.records[1].1, RecordOutcome::Processed);
    assert_eq!(queue.dlq.len(), 1);

    batch.records[1].message_id = None;
    assert!(processor.process_batch(&batch, None).await.is_err());
}

#[tokio::test]
async fn records_near_the_deadline_are_handed_back_unstarted() {
    let runs = Arc::new(AtomicU32::new(0));
    let queue = SpyQueue::new();
    let processor = Processor::new(
        &config(),
        Arc::new(MemoryLedger::new()),
        queue.clone(),
        Handlers::new().on("*", "*", counting(runs.clone(), 0)),
    );
    let batch = batch_of(queue.as_ref(), &[envelope(1, "x")]).await;
    let deadline = SystemClock.now().plus(Duration::from_millis(500));
    let outcome = processor
        .process_batch(&batch, Some(deadline))
        .await
        .unwrap();
    assert!(matches!(
        &outcome.records[0].1,
        RecordOutcome::Failed {
            retry_in: Some(Duration::ZERO),
            ..
        }
    ));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn slow_handlers_time_out_alone() {
    let queue = SpyQueue::new();
    let processor = Processor::new(
        &config(),
        Arc::new(MemoryLedger::new()),
        queue.clone(),
        Handlers::new().on("demo", "slow", |_e: Envelope| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }),
    );
    let batch = batch_of(queue.as_ref(), &[envelope(1, "slow"), envelope(2, "fast")]).await;
    let outcome = processor.process_batch(&batch, None).await.unwrap();
    assert!(
        matches!(&outcome.records[0].1, RecordOutcome::Failed { error, .. } if error.contains("timed out after 5000 ms"))
    );
    assert_eq!(outcome.records[1].1, RecordOutcome::Processed);
}

#[tokio::test(start_paused = true)]
async fn a_handler_that_overruns_is_cancelled_not_left_running() {
    let finished = Arc::new(AtomicU32::new(0));
    let queue = SpyQueue::new();
    let seen = finished.clone();
    let processor = Processor::new(
        &config(),
        Arc::new(MemoryLedger::new()),
        queue.clone(),
        Handlers::new().on("demo", "slow", move |_e: Envelope| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                seen.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }),
    );
    let batch = batch_of(queue.as_ref(), &[envelope(1, "slow")]).await;
    let outcome = processor.process_batch(&batch, None).await.unwrap();
    assert!(!outcome.records[0].1.is_success());
    // Long after the handler would have finished, it has not: the timeout dropped it.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(finished.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_panic_after_an_await_fails_only_its_record_while_others_are_in_flight() {
    let ledger = Arc::new(MemoryLedger::new());
    let queue = SpyQueue::new();
    let handlers = Handlers::new()
        .on("demo", "panic", |_e: Envelope| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            panic!("handler bug after an await")
        })
        .on("demo", "wait", |_e: Envelope| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(())
        });
    let processor = Processor::new(&config(), ledger.clone(), queue.clone(), handlers);
    let batch = batch_of(
        queue.as_ref(),
        &[
            envelope(1, "wait"),
            envelope(2, "panic"),
            envelope(3, "wait"),
        ],
    )
    .await;
    let outcome = processor.process_batch(&batch, None).await.unwrap();
    let failed: Vec<_> = outcome.failed_ids().collect();
    assert_eq!(
        failed,
        vec![batch.records[1].message_id.as_deref().unwrap()]
    );
    assert_eq!(outcome.records[0].1, RecordOutcome::Processed);
    assert_eq!(outcome.records[2].1, RecordOutcome::Processed);
    let panicked = ledger.get(&id(2)).await.unwrap().unwrap();
    assert_eq!(panicked.status, EventStatus::Failed);
    assert_eq!(panicked.last_error.as_deref(), Some("handler panicked"));
}

#[tokio::test(start_paused = true)]
async fn a_batch_of_ten_waiting_on_io_takes_as_long_as_one() {
    let mut config = config();
    config.processor.concurrency = 10;
    let queue = SpyQueue::new();
    let processor = Processor::new(
        &config,
        Arc::new(MemoryLedger::new()),
        queue.clone(),
        Handlers::new().on("*", "*", |_e: Envelope| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(())
        }),
    );
    let envelopes: Vec<_> = (1..=10).map(|n| envelope(n, "x")).collect();
    let batch = batch_of(queue.as_ref(), &envelopes).await;
    // Tokio's paused clock: virtual time, advanced only by the sleeps.
    let started = tokio::time::Instant::now();
    let outcome = processor.process_batch(&batch, None).await.unwrap();
    assert!(outcome
        .records
        .iter()
        .all(|(_, o)| *o == RecordOutcome::Processed));
    assert_eq!(
        started.elapsed().as_secs(),
        1,
        "concurrent, not 10 s in a row"
    );
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let in_flight = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let (i, p) = (in_flight.clone(), peak.clone());
    let queue = SpyQueue::new();
    let processor = Processor::new(
        &config(),
        Arc::new(MemoryLedger::new()),
        queue.clone(),
        Handlers::new().on("*", "*", move |_e: Envelope| {
            let (i, p) = (i.clone(), p.clone());
            async move {
                let now = i.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                i.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        }),
    );
    let envelopes: Vec<_> = (1..=8).map(|n| envelope(n, "x")).collect();
    let batch = batch_of(queue.as_ref(), &envelopes).await;
    processor.process_batch(&batch, None).await.unwrap();
    assert_eq!(peak.load(Ordering::SeqCst), 4, "bounded by concurrency = 4");
}

#[tokio::test]
async fn a_ledger_that_cannot_record_success_does_not_ack_it() {
    let faults = Faults::new();
    let ledger: Arc<dyn Ledger> = Arc::new(FaultyLedger::new(
        Arc::new(MemoryLedger::new()),
        faults.clone(),
    ));
    let queue = SpyQueue::new();
    let processor = Processor::new(&config(), ledger, queue.clone(), Handlers::new());
    let batch = batch_of(queue.as_ref(), &[envelope(1, "x")]).await;
    faults.fail_next("finish_attempt", 3);
    let outcome = processor.process_batch(&batch, None).await.unwrap();
    assert!(!outcome.records[0].1.is_success());
    // Redelivered once the ledger is back: the kept success is recorded first, and the message
    // acknowledged without a new attempt (no start_attempt call at all).
    faults.fail_next("start_attempt", 1);
    let outcome = processor.process_batch(&batch, None).await.unwrap();
    assert_eq!(outcome.records[0].1, RecordOutcome::AlreadyProcessed);
    assert_eq!(
        faults.calls("start_attempt"),
        1,
        "only the first delivery started"
    );
}

fn fast_config() -> Config {
    let mut c = config();
    c.processor.backoff_base_ms = 50;
    c.processor.visibility_timeout_secs = 1;
    c
}

#[tokio::test]
async fn event_source_retries_until_processed_and_deletes_successes() {
    let ledger = Arc::new(MemoryLedger::new());
    let runs = Arc::new(AtomicU32::new(0));
    let (queue, dlq) = MemoryQueue::with_dlq(Duration::from_secs(1), 3);
    let processor = Arc::new(Processor::new(
        &fast_config(),
        ledger.clone(),
        queue.clone(),
        Handlers::new().on("demo", "*", counting(runs.clone(), 2)),
    ));
    queue.send(outgoing(&envelope(9, "x"))).await.unwrap();
    let source = EventSource::new(queue.clone(), processor);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        source.poll_once().await.unwrap();
        let record = ledger.get(&id(9)).await.unwrap().unwrap();
        if record.status == EventStatus::Processed {
            assert_eq!(
                record
                    .attempts
                    .iter()
                    .map(|a| a.success)
                    .collect::<Vec<_>>(),
                vec![false, false, true]
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never processed: {record:?}"
        );
    }
    assert!(queue.is_empty() && dlq.is_empty());
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn event_source_lets_the_redrive_take_a_poison_message_and_redrive_brings_it_back() {
    let ledger = Arc::new(MemoryLedger::new());
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = healthy.clone();
    let (queue, dlq) = MemoryQueue::with_dlq(Duration::from_secs(1), 3);
    let processor = Arc::new(Processor::new(
        &fast_config(),
        ledger.clone(),
        queue.clone(),
        Handlers::new().on("*", "*", move |_e: Envelope| {
            let ok = h.load(Ordering::SeqCst);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(HandlerError::retry("poison"))
                }
            }
        }),
    ));
    queue.send(outgoing(&envelope(5, "x"))).await.unwrap();
    let source = EventSource::new(queue.clone(), processor);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while dlq.is_empty() {
        source.poll_once().await.unwrap();
        assert!(
            tokio::time::Instant::now() < deadline,
            "never dead-lettered"
        );
    }
    let record = ledger.get(&id(5)).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.attempts.len()),
        (EventStatus::DeadLettered, 3)
    );
    assert!(queue.is_empty());

    // The downstream recovers; an operator redrives the DLQ.
    healthy.store(true, Ordering::SeqCst);
    let tools = hookgate_core::dlq::DeadLetters::new(queue.clone(), dlq.clone(), ledger.clone());
    let listed = tools.list(100).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].event_id.as_deref(), Some("demo:5"));
    assert_eq!(
        (listed[0].attempts, listed[0].last_error.as_deref()),
        (Some(3), Some("poison"))
    );
    assert_eq!(dlq.len(), 1, "listing loses nothing");
    let report = tools
        .redrive(&hookgate_core::dlq::Selection::All, None)
        .await
        .unwrap();
    assert_eq!((report.moved, report.left), (1, 0));
    while ledger.get(&id(5)).await.unwrap().unwrap().status != EventStatus::Processed {
        source.poll_once().await.unwrap();
        assert!(
            tokio::time::Instant::now() < deadline + Duration::from_secs(10),
            "redriven event never processed"
        );
    }
    let record = ledger.get(&id(5)).await.unwrap().unwrap();
    assert_eq!(record.attempts.len(), 4);
    assert!(record.attempts[3]
        .note
        .as_deref()
        .unwrap()
        .starts_with("redriven from the DLQ at "));
    assert!(dlq.is_empty() && queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_redrive_keeps_the_trace_header() {
    let (queue, dlq) = MemoryQueue::with_dlq(Duration::from_secs(30), 3);
    let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let traced = OutgoingMessage {
        trace_header: Some(header.to_owned()),
        ..outgoing(&envelope(6, "x"))
    };
    dlq.send(traced).await.unwrap();
    let tools = hookgate_core::dlq::DeadLetters::new(
        queue.clone(),
        dlq.clone(),
        Arc::new(MemoryLedger::new()),
    );
    let report = tools
        .redrive(&hookgate_core::dlq::Selection::All, None)
        .await
        .unwrap();
    assert_eq!(report.moved, 1);
    let back = queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].trace_header.as_deref(), Some(header));
}

#[tokio::test]
async fn a_deadline_already_past_is_not_trusted() {
    // Lambda never sends one; a local emulator may. Every record would otherwise be handed back.
    let queue = SpyQueue::new();
    let processor = Processor::new(
        &config(),
        Arc::new(MemoryLedger::new()),
        queue.clone(),
        Handlers::new(),
    );
    let batch = batch_of(queue.as_ref(), &[envelope(1, "x")]).await;
    let outcome = processor
        .process_batch(&batch, Some(Timestamp::from_secs(0)))
        .await
        .unwrap();
    assert_eq!(outcome.records[0].1, RecordOutcome::Processed);
}

/// Sends `count` events numbered from `first`, 5 ms apart, in the background.
fn post_one_after_another(
    queue: Arc<MemoryQueue>,
    first: u32,
    count: u32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for n in first..first + count {
            queue.send(outgoing(&envelope(n, "x"))).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// An event source over `queue` with `config`'s batching window.
fn event_source(config: &Config, queue: &Arc<MemoryQueue>) -> EventSource {
    let processor = Processor::new(
        config,
        Arc::new(MemoryLedger::new()),
        queue.clone(),
        Handlers::new(),
    );
    EventSource::new(queue.clone(), Arc::new(processor))
}

#[tokio::test(start_paused = true)]
async fn the_batching_window_gathers_events_posted_one_after_another() {
    // Virtual time: ten events arrive 5 ms apart; a 100 ms window gathers them into one batch.
    let mut config = config();
    config.processor.batch_window_ms = 100;
    config.processor.wait_time_ms = 1000;
    let (queue, _dlq) = MemoryQueue::with_dlq(Duration::from_secs(30), 3);
    let sender = post_one_after_another(queue.clone(), 200, 10);
    let batch = event_source(&config, &queue).poll_once().await.unwrap();
    assert_eq!(batch, 10, "one batch, not one event at a time");
    sender.await.unwrap();
    assert!(queue.is_empty());

    // Without a window, the first receive takes what is there: the first event alone.
    config.processor.batch_window_ms = 0;
    let sender = post_one_after_another(queue.clone(), 300, 3);
    assert_eq!(event_source(&config, &queue).poll_once().await.unwrap(), 1);
    sender.await.unwrap();
}
