//! The processor core with in-memory ports: per-record overhead, and the concurrency claim
//! (a batch of 10 whose handlers each wait on I/O finishes in about one wait, not ten).
//!
//! `cargo bench -p hookgate-core --bench processor`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use hookgate_core::event_source::to_sqs_event;
use hookgate_core::memory::{MemoryLedger, MemoryQueue};
use hookgate_core::queue::ReceivedMessage;
use hookgate_core::{Config, Envelope, EventId, Handlers, Processor, SourceName, Timestamp};

fn batch(n: usize) -> SqsEvent {
    let messages: Vec<ReceivedMessage> = (0..n)
        .map(|i| {
            let envelope = Envelope {
                event_id: EventId::parse(&format!("bench:{i}")).expect("id"),
                source: SourceName::parse("bench").expect("source"),
                event_type: "tick".into(),
                received_at: Timestamp::from_secs(1_800_000_000),
                headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
                body: Bytes::from(vec![b'x'; 1024]),
            };
            ReceivedMessage {
                message_id: format!("m-{i}"),
                receipt_handle: format!("r-{i}"),
                body: envelope.to_message(),
                receive_count: 1,
                attributes: BTreeMap::new(),
                trace_header: None,
            }
        })
        .collect();
    to_sqs_event(&messages)
}

fn processor(concurrency: usize, handlers: Handlers) -> Processor {
    let mut config = Config::from_toml("").expect("defaults");
    config.processor.concurrency = concurrency;
    Processor::new(
        &config,
        Arc::new(MemoryLedger::new()),
        Arc::new(MemoryQueue::new(Duration::from_secs(30))),
        handlers,
    )
}

fn noop() -> Handlers {
    Handlers::new().on("*", "*", |_e: Envelope| async { Ok(()) })
}

fn sleeping(d: Duration) -> Handlers {
    Handlers::new().on("*", "*", move |_e: Envelope| async move {
        tokio::time::sleep(d).await;
        Ok(())
    })
}

fn per_record(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let batch = batch(10);
    let mut group = c.benchmark_group("processor");
    group.throughput(Throughput::Elements(10));
    // A fresh ledger per iteration, so every record really runs (none is "already processed").
    group.bench_function("batch_of_10_noop_handlers", |b| {
        b.iter_batched(
            || processor(10, noop()),
            |p| rt.block_on(p.process_batch(&batch, None)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn io_bound(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let batch = batch(10);
    let mut group = c.benchmark_group("io_bound_batch_of_10");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(12));
    group.bench_function(BenchmarkId::new("1s_each", "concurrency_10"), |b| {
        b.iter_batched(
            || processor(10, sleeping(Duration::from_secs(1))),
            |p| rt.block_on(p.process_batch(&batch, None)),
            BatchSize::PerIteration,
        )
    });
    for concurrency in [1, 10] {
        group.bench_function(
            BenchmarkId::new("100ms_each", format!("concurrency_{concurrency}")),
            |b| {
                b.iter_batched(
                    || processor(concurrency, sleeping(Duration::from_millis(100))),
                    |p| rt.block_on(p.process_batch(&batch, None)),
                    BatchSize::PerIteration,
                )
            },
        );
    }
    group.finish();
}

criterion_group!(benches, per_record, io_bound);
criterion_main!(benches);
