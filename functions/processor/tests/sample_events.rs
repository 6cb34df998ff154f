//! The processor adapter on the sample SQS batches in `events/`, over an in-memory ledger.

use std::path::PathBuf;
use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use hookgate_core::memory::{MemoryLedger, MemoryQueue};
use hookgate_core::{Config, EventId, EventStatus, Ledger};
use lambda_runtime::{Context, LambdaEvent};

fn load(file: &str) -> SqsEvent {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn context() -> Context {
    let mut context = Context::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    context.deadline = u64::try_from(now.as_millis()).unwrap() + 30_000;
    context
}

#[tokio::test]
async fn a_good_batch_has_no_failures_and_is_recorded() {
    let ledger = Arc::new(MemoryLedger::new());
    let app = processor::App::new(
        &Config::from_toml("").unwrap(),
        ledger.clone(),
        Arc::new(MemoryQueue::new(std::time::Duration::from_secs(30))),
        handlers::handlers(),
    );
    let response = app
        .handle(LambdaEvent::new(load("sqs-batch.json"), context()))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    // Samples 1 and 2 are in the current message format, sample 4 in version 1.
    for n in [1, 2, 4] {
        let id = EventId::parse(&format!("demo:sample{n:026}")).unwrap();
        assert_eq!(
            ledger.get(&id).await.unwrap().unwrap().status,
            EventStatus::Processed,
            "{id}"
        );
    }
    let batch = load("sqs-batch.json");
    let versions: Vec<&str> = batch
        .records
        .iter()
        .map(|r| &r.body.as_deref().unwrap()[..6])
        .collect();
    assert_eq!(versions, [r#"{"v":2"#, r#"{"v":2"#, r#"{"v":1"#]);
}

#[tokio::test]
async fn a_bad_record_is_the_one_batch_item_failure() {
    let app = processor::App::new(
        &Config::from_toml("").unwrap(),
        Arc::new(MemoryLedger::new()),
        Arc::new(MemoryQueue::new(std::time::Duration::from_secs(30))),
        handlers::handlers(),
    );
    let response = app
        .handle(LambdaEvent::new(
            load("sqs-batch-one-fails.json"),
            context(),
        ))
        .await
        .unwrap();
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["44444444-4444-4444-8444-444444444444"]);
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(
        json["batchItemFailures"][0]["itemIdentifier"],
        "44444444-4444-4444-8444-444444444444"
    );
}

#[tokio::test]
async fn the_sample_batch_is_counted_record_by_record() {
    use hookgate_core::metrics::{Counter, Latency, MetricsRegistry, UNKNOWN_SOURCE, UNKNOWN_TYPE};
    let metrics = Arc::new(MetricsRegistry::new());
    let app = processor::App::new(
        &Config::from_toml("").unwrap(),
        Arc::new(MemoryLedger::new()),
        Arc::new(MemoryQueue::new(std::time::Duration::from_secs(30))),
        handlers::handlers(),
    )
    .with_metrics(metrics.clone());
    app.handle(LambdaEvent::new(
        load("sqs-batch-one-fails.json"),
        context(),
    ))
    .await
    .unwrap();
    assert_eq!(
        metrics.count(Counter::Processed, "demo", "order.created"),
        1
    );
    assert_eq!(
        metrics
            .latency(Latency::ReceiveToProcessed, "demo", "order.created")
            .0,
        1
    );
    // Not an envelope, and this queue has no DLQ to move it to: retried.
    assert_eq!(
        metrics.count(Counter::Retried, UNKNOWN_SOURCE, UNKNOWN_TYPE),
        1
    );
    assert_eq!(metrics.total(Counter::Retried), 1);
}
