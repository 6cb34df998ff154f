//! The processor core on in-memory ports: routing, partial failures, the ledger guard, panics,
//! dead-lettering, and the local event-source loop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use bytes::Bytes;
use hookgate_core::event_source::{to_sqs_event, EventSource};
use hookgate_core::faults::{Faults, FaultyLedger};
use hookgate_core::memory::{MemoryLedger, MemoryQueue};
use hookgate_core::queue::OutgoingMessage;
use hookgate_core::{
    Config, Envelope, EventId, EventStatus, HandlerError, Handlers, Ledger, Processor, Queue,
    RecordOutcome, SourceName, Timestamp,
};

const CONFIG: &str = r#"
[processor]
max_receive_count = 3
visibility_timeout_secs = 1
concurrency = 4
pollers = 1
wait_time_ms = 100
"#;

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

async fn batch_of(queue: &MemoryQueue, envelopes: &[Envelope]) -> SqsEvent {
    for e in envelopes {
        queue
            .send(&OutgoingMessage {
                body: e.to_message(),
                attributes: BTreeMap::new(),
            })
            .await
            .unwrap();
    }
    to_sqs_event(&queue.receive(10, Duration::ZERO).await.unwrap())
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

#[tokio::test]
async fn batch_item_failures_name_exactly_the_failed_records() {
    let config = Config::from_toml(CONFIG).unwrap();
    let ledger = Arc::new(MemoryLedger::new());
    let handlers = Handlers::new()
        .on("demo", "bad", |_e: Envelope| async {
            Err(HandlerError::retry("boom"))
        })
        .on("demo", "panic", |_e: Envelope| async {
            panic!("handler bug")
        });
    let processor = Processor::new(&config, ledger.clone(), handlers);
    let queue = MemoryQueue::new(Duration::from_secs(30));
    let batch = batch_of(
        &queue,
        &[
            envelope(1, "ok"),
            envelope(2, "bad"),
            envelope(3, "ok"),
            envelope(4, "panic"),
        ],
    )
    .await;
    let outcome = processor.process_batch(&batch, None).await.unwrap();
    let response = outcome.to_response();
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
    assert!(failed.iter().all(|id| !id.is_empty()));

    let bad = ledger
        .get(&envelope(2, "").event_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bad.status, EventStatus::Failed);
    assert_eq!(bad.attempts[0].error.as_deref(), Some("boom"));
    let panicked = ledger
        .get(&envelope(4, "").event_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(panicked.last_error.as_deref(), Some("handler panicked"));
    let ok = ledger
        .get(&envelope(1, "").event_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ok.status, EventStatus::Processed);
    assert!(ok.attempts[0].success);
}

#[tokio::test]
async fn a_processed_event_delivered_again_does_not_run_twice() {
    let config = Config::from_toml(CONFIG).unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let processor = Processor::new(
        &config,
        Arc::new(MemoryLedger::new()),
        Handlers::new().on("*", "*", counting(runs.clone(), 0)),
    );
    let queue = MemoryQueue::new(Duration::from_secs(30));
    let batch = batch_of(&queue, &[envelope(1, "x"), envelope(1, "x")]).await;
    let outcome = processor.process_batch(&batch, None).await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let kinds: Vec<_> = outcome.records.iter().map(|(_, o)| o.clone()).collect();
    // Both copies ran concurrently: one ran, the other found the lease (and backs off) or the
    // processed record (and is acknowledged). Either way the handler ran once.
    assert!(kinds.contains(&RecordOutcome::Processed), "{kinds:?}");
    let again = batch_of(&queue, &[envelope(1, "x")]).await;
    let outcome = processor.process_batch(&again, None).await.unwrap();
    assert_eq!(outcome.records[0].1, RecordOutcome::AlreadyProcessed);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_last_receive_marks_the_event_dead_lettered() {
    let config = Config::from_toml(CONFIG).unwrap();
    let ledger = Arc::new(MemoryLedger::new());
    let processor = Processor::new(
        &config,
        ledger.clone(),
        Handlers::new().on("*", "*", |_e: Envelope| async {
            Err(HandlerError::retry("down"))
        }),
    );
    let queue = MemoryQueue::new(Duration::from_secs(30));
    let mut batch = batch_of(&queue, &[envelope(7, "x")]).await;
    for receive in 1..=3u32 {
        batch.records[0]
            .attributes
            .insert("ApproximateReceiveCount".into(), receive.to_string());
        let outcome = processor.process_batch(&batch, None).await.unwrap();
        let RecordOutcome::Failed { dead_lettered, .. } = &outcome.records[0].1 else {
            panic!()
        };
        assert_eq!(*dead_lettered, receive == 3);
    }
    let record = ledger
        .get(&envelope(7, "").event_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, EventStatus::DeadLettered);
    assert_eq!(record.attempts.len(), 3);
    assert_eq!(
        record
            .attempts
            .iter()
            .map(|a| a.attempt)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

#[tokio::test]
async fn malformed_records_fail_alone_and_unnamed_records_fail_the_batch() {
    let config = Config::from_toml(CONFIG).unwrap();
    let processor = Processor::new(&config, Arc::new(MemoryLedger::new()), Handlers::new());
    let queue = MemoryQueue::new(Duration::from_secs(30));
    let mut batch = batch_of(&queue, &[envelope(1, "x"), envelope(2, "x")]).await;
    batch.records[0].body = Some("not an envelope".into());
    let outcome = processor.process_batch(&batch, None).await.unwrap();
    assert_eq!(
        outcome.failed_ids().collect::<Vec<_>>(),
        vec![batch.records[0].message_id.as_deref().unwrap()]
    );
    assert_eq!(outcome.records[1].1, RecordOutcome::Processed);

    batch.records[1].message_id = None;
    assert!(processor.process_batch(&batch, None).await.is_err());
}

#[tokio::test]
async fn a_ledger_that_cannot_record_success_does_not_ack_it() {
    let config = Config::from_toml(CONFIG).unwrap();
    let faults = Faults::new();
    let ledger: Arc<dyn Ledger> = Arc::new(FaultyLedger::new(
        Arc::new(MemoryLedger::new()),
        faults.clone(),
    ));
    let processor = Processor::new(&config, ledger, Handlers::new());
    let queue = MemoryQueue::new(Duration::from_secs(30));
    let batch = batch_of(&queue, &[envelope(1, "x")]).await;
    faults.fail_next("finish_attempt", 3);
    let outcome = processor.process_batch(&batch, None).await.unwrap();
    assert!(!outcome.records[0].1.is_success());
    faults.fail_next("start_attempt", 1);
    let outcome = processor.process_batch(&batch, None).await.unwrap();
    assert!(!outcome.records[0].1.is_success());
}

#[tokio::test]
async fn event_source_retries_until_processed_and_deletes_successes() {
    let config = Config::from_toml(CONFIG).unwrap();
    let ledger = Arc::new(MemoryLedger::new());
    let runs = Arc::new(AtomicU32::new(0));
    let processor = Arc::new(Processor::new(
        &config,
        ledger.clone(),
        Handlers::new().on("demo", "*", counting(runs.clone(), 2)),
    ));
    let (queue, dlq) = MemoryQueue::with_dlq(Duration::from_millis(200), 3);
    queue
        .send(&OutgoingMessage {
            body: envelope(9, "x").to_message(),
            attributes: BTreeMap::new(),
        })
        .await
        .unwrap();
    let source = EventSource::new(queue.clone(), processor);
    let id = envelope(9, "").event_id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        source.poll_once().await.unwrap();
        let record = ledger.get(&id).await.unwrap().unwrap();
        if record.status == EventStatus::Processed {
            assert_eq!(record.attempts.len(), 3);
            assert_eq!(record.attempts.iter().filter(|a| a.success).count(), 1);
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
async fn event_source_lets_the_redrive_take_a_poison_message() {
    let config = Config::from_toml(CONFIG).unwrap();
    let ledger = Arc::new(MemoryLedger::new());
    let processor = Arc::new(Processor::new(
        &config,
        ledger.clone(),
        Handlers::new().on("*", "*", |_e: Envelope| async {
            Err(HandlerError::retry("poison"))
        }),
    ));
    let (queue, dlq) = MemoryQueue::with_dlq(Duration::from_millis(100), 3);
    queue
        .send(&OutgoingMessage {
            body: envelope(5, "x").to_message(),
            attributes: BTreeMap::new(),
        })
        .await
        .unwrap();
    let source = EventSource::new(queue.clone(), processor);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while dlq.is_empty() {
        source.poll_once().await.unwrap();
        assert!(
            tokio::time::Instant::now() < deadline,
            "never dead-lettered"
        );
    }
    let record = ledger
        .get(&envelope(5, "").event_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, EventStatus::DeadLettered);
    assert_eq!(record.attempts.len(), 3);
    assert!(queue.is_empty());

    // Permanent failures skip the retries.
    let processor = Arc::new(Processor::new(
        &config,
        ledger.clone(),
        Handlers::new().on("*", "*", |_e: Envelope| async {
            Err(HandlerError::permanent("bad payload"))
        }),
    ));
    queue
        .send(&OutgoingMessage {
            body: envelope(6, "x").to_message(),
            attributes: BTreeMap::new(),
        })
        .await
        .unwrap();
    EventSource::new(queue.clone(), processor)
        .poll_once()
        .await
        .unwrap();
    assert_eq!(dlq.len(), 2);
    let record = ledger
        .get(&envelope(6, "").event_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (record.status, record.attempts.len()),
        (EventStatus::DeadLettered, 1)
    );
}

#[tokio::test]
async fn records_run_concurrently() {
    let config = Config::from_toml(CONFIG).unwrap();
    let in_flight = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let (i, p) = (in_flight.clone(), peak.clone());
    let processor = Processor::new(
        &config,
        Arc::new(MemoryLedger::new()),
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
    let queue = MemoryQueue::new(Duration::from_secs(30));
    let envelopes: Vec<_> = (1..=8).map(|n| envelope(n, "x")).collect();
    let batch = batch_of(&queue, &envelopes).await;
    processor.process_batch(&batch, None).await.unwrap();
    assert_eq!(peak.load(Ordering::SeqCst), 4, "bounded by concurrency = 4");
}
