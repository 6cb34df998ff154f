//! Load with duplicates and failures: thousands of signed events over loopback HTTP through an
//! embedded local stack — 10,000 on the in-memory backends, 2,000 on SQS/DynamoDB served by
//! moto — with 10% of them sent twice and 5% failing their first attempt. Nothing may be lost,
//! no handler may succeed twice, every duplicate must be answered as one.
//!
//! The figures (throughput, accept latency percentiles) are printed, not asserted: run with
//! `--nocapture` to see them. `HOOKGATE_LOAD_EVENTS` changes the in-memory event count;
//! `HOOKGATE_LOAD_MOTO_EVENTS` the moto one, which the test command keeps at 300 because moto
//! answers a few dozen events a second — the full run is
//! `HOOKGATE_LOAD_MOTO_EVENTS=2000 cargo test -p hookgate-cli --test load -- --nocapture`.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{client, post_signed};
use futures::stream::{self, StreamExt};
use hookgate_cli::local::LocalStack;
use hookgate_core::{Config, Envelope, EventId, EventStatus, HandlerError, Handlers, Ledger};
use hookgate_testkit::pipeline::Pipeline;

const CONCURRENCY: usize = 32;

fn config() -> Config {
    Config::from_toml(
        r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["load-test-s3cr3t"]

[processor]
max_receive_count = 5
visibility_timeout_secs = 20
batch_size = 10
concurrency = 10
pollers = 4
wait_time_ms = 100
backoff_base_ms = 50
backoff_cap_secs = 1
"#,
    )
    .unwrap()
}

/// Handler runs per event: `(failures, successes)`.
type Runs = Arc<Mutex<HashMap<EventId, (u32, u32)>>>;

/// Succeeds, except on the first run of an event whose body asks to fail first.
fn counting(runs: Runs) -> Handlers {
    Handlers::new().on("demo", "*", move |event: Envelope| {
        let runs = runs.clone();
        async move {
            const FAIL_FIRST: &[u8] = br#""fail":"first""#;
            let fail_first = event
                .body
                .windows(FAIL_FIRST.len())
                .any(|w| w == FAIL_FIRST);
            let mut runs = runs.lock().unwrap();
            let entry = runs.entry(event.event_id.clone()).or_default();
            if fail_first && entry.0 == 0 {
                entry.0 += 1;
                return Err(HandlerError::retry("first attempt fails on purpose"));
            }
            entry.1 += 1;
            Ok(())
        }
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn load(label: &str, p: Pipeline, events: usize) {
    let config = config();
    let runs: Runs = Arc::default();
    let stack = LocalStack::new(
        &config,
        p.ledger.clone(),
        p.queue.clone(),
        counting(runs.clone()),
    )
    .unwrap()
    .with_dlq(p.dlq.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(stack.serve(listener, async move {
        let _ = stopped.await;
    }));

    // Every 20th event fails its first attempt; every 10th is sent a second time.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let bodies: Vec<String> = (0..events)
        .map(|i| {
            let fail = if i % 20 == 7 { "first" } else { "never" };
            format!(r#"{{"type":"order.created","run":"{run}","n":{i},"fail":"{fail}"}}"#)
        })
        .collect();
    let sends: Vec<(usize, bool)> = (0..events)
        .map(|i| (i, false))
        .chain((0..events).filter(|i| i % 10 == 3).map(|i| (i, true)))
        .collect();
    let client = client();
    let started = Instant::now();
    let answers: Vec<(usize, bool, u16, String, Duration)> = stream::iter(sends)
        .map(|(i, repeat)| {
            let (client, config, base, body) = (&client, &config, &base, &bodies[i]);
            async move {
                let sent = Instant::now();
                let (mut status, mut answer) =
                    post_signed(client, config, base, "demo", body).await;
                // A repeat of an event that still waits in the queue is refused as in
                // progress: the provider tries again a little later, as providers do.
                while status == 409 && answer["error"] == "event_in_progress" {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    (status, answer) = post_signed(client, config, base, "demo", body).await;
                }
                let id = answer["event_id"].as_str().unwrap_or_default().to_owned();
                let kind = answer["status"].as_str().unwrap_or_default();
                assert!(
                    matches!((status, kind), (202, "queued") | (200, "duplicate")),
                    "{status} {answer}"
                );
                (i, repeat, status, id, sent.elapsed())
            }
        })
        // Originals go first (in order), so a repeat is sent after its original's answer.
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let accepted_in = started.elapsed();

    let mut ids: HashMap<usize, EventId> = HashMap::new();
    let mut latencies = Vec::with_capacity(answers.len());
    let mut duplicates = 0;
    for (i, repeat, status, id, latency) in &answers {
        latencies.push(*latency);
        let id = EventId::parse(id).unwrap();
        if *repeat {
            assert_eq!(*status, 200, "event {i} sent again was not a duplicate");
            assert_eq!(ids.get(i), Some(&id), "a repeat got another id");
            duplicates += 1;
        } else {
            assert_eq!(*status, 202, "event {i} was not accepted");
            assert!(ids.insert(*i, id).is_none());
        }
    }
    assert_eq!(ids.len(), events);

    // Wait until every event has had its successful run.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let done = runs.lock().unwrap().values().filter(|r| r.1 > 0).count();
        if done == events {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: only {done} of {events} events processed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let processed_in = started.elapsed();

    // Nothing lost, nothing done twice: each event processed once, in the handler and in the
    // ledger; only the planned failures ran twice.
    let runs = runs.lock().unwrap().clone();
    let mut failed_first = 0;
    for (i, id) in &ids {
        let (failures, successes) = runs.get(id).copied().unwrap_or_default();
        assert_eq!(
            successes, 1,
            "{label}: event {i} succeeded {successes} times"
        );
        let planned = u32::from(i % 20 == 7);
        assert_eq!(
            failures, planned,
            "{label}: event {i} failed {failures} times"
        );
        failed_first += planned;
    }
    let mut twice = 0;
    for id in ids.values() {
        let record = wait_processed(p.ledger.as_ref(), id).await;
        let succeeded = record.attempts.iter().filter(|a| a.success).count();
        twice += usize::from(succeeded != 1);
    }
    assert_eq!(
        twice, 0,
        "{label}: events recorded as processed more than once"
    );
    assert!(p.dlq.receive(10, Duration::ZERO).await.unwrap().is_empty());

    let _ = stop.send(());
    let _ = served.await;

    latencies.sort();
    println!(
        "{label}: {events} events + {duplicates} duplicates ({failed_first} failing first): \
         lost 0, run twice 0; accepted {:.0}/s, processed end to end {:.0}/s; accept latency \
         p50 {:?} p90 {:?} p99 {:?} max {:?}",
        answers.len() as f64 / accepted_in.as_secs_f64(),
        events as f64 / processed_in.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
}

/// The ledger's record once it says `processed` (its write follows the handler's return).
async fn wait_processed(ledger: &dyn Ledger, id: &EventId) -> hookgate_core::EventRecord {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = ledger.get(id).await.unwrap() {
            if r.status == EventStatus::Processed {
                return r;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{id} never recorded as processed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A count from the environment, or `default`.
fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_on_memory_lose_nothing_and_run_nothing_twice() {
    let events = env_count("HOOKGATE_LOAD_EVENTS", 10_000);
    load(
        "memory",
        Pipeline::memory(5, Duration::from_secs(20)),
        events,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_on_moto_lose_nothing_and_run_nothing_twice() {
    let Some(p) = Pipeline::moto(5, 20).await else {
        eprintln!("skipped: no moto");
        return;
    };
    let events = env_count("HOOKGATE_LOAD_MOTO_EVENTS", 300);
    load("moto", p, events).await;
}
