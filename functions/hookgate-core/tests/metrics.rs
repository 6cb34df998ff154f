//! Metrics of both cores on in-memory ports: every request outcome and every record outcome
//! is counted once, under its source, type and (for refusals) reason; and no secret, signature
//! or payload reaches a metric line.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use bytes::Bytes;
use hookgate_core::event_source::to_sqs_event;
use hookgate_core::faults::{Faults, FaultyLedger, FaultyQueue};
use hookgate_core::memory::{MemoryLedger, MemoryQueue};
use hookgate_core::metrics::{
    Counter, Emf, Latency, Metrics, MetricsRegistry, Observation, UNKNOWN_SOURCE, UNKNOWN_TYPE,
    UNVERIFIED_TYPE,
};
use hookgate_core::queue::{attr, OutgoingMessage};
use hookgate_core::{
    Config, Envelope, EventId, HandlerError, Handlers, IncomingRequest, ManualClock, Processor,
    Queue, Receiver, RecordOutcome, SourceName, Timestamp,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

const SECRET: &str = "s3cr3t-do-not-leak";

fn config() -> Config {
    Config::from_toml(&format!(
        r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["{SECRET}"]

[receiver]
max_body_bytes = 64

[processor]
max_receive_count = 3
handler_timeout_secs = 5

[metrics]
namespace = "Test/Hooks"
"#
    ))
    .unwrap()
}

/// Observations go to both the registry and an EMF writer whose lines the test reads.
struct Both {
    registry: MetricsRegistry,
    emf: Emf,
}

impl Metrics for Both {
    fn observe(&self, o: &Observation<'_>) {
        self.registry.observe(o);
        self.emf.observe(o);
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn metrics() -> (Arc<Both>, Captured) {
    let out = Captured::default();
    let both = Arc::new(Both {
        registry: MetricsRegistry::new(),
        emf: Emf::new(&config().metrics, out.clone()),
    });
    (both, out)
}

struct Fixture {
    receiver: Receiver,
    faults: Arc<Faults>,
    clock: Arc<ManualClock>,
    metrics: Arc<Both>,
    emf_out: Captured,
}

fn receiver() -> Fixture {
    let faults = Faults::new();
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_800_000_000)));
    let (metrics, emf_out) = metrics();
    let receiver = Receiver::new(
        &config(),
        Arc::new(FaultyLedger::new(
            Arc::new(MemoryLedger::new()),
            faults.clone(),
        )),
        Arc::new(FaultyQueue::new(
            Arc::new(MemoryQueue::new(Duration::from_secs(30))),
            faults.clone(),
        )),
    )
    .unwrap()
    .with_clock(clock.clone())
    .with_metrics(metrics.clone());
    Fixture {
        receiver,
        faults,
        clock,
        metrics,
        emf_out,
    }
}

fn signed(f: &Fixture, body: &str, event_type: &str) -> IncomingRequest {
    let mut headers = HeaderMap::new();
    for (k, v) in f.receiver.sign("demo", body.as_bytes()).unwrap() {
        headers.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(&v).unwrap(),
        );
    }
    headers.insert("x-event-type", HeaderValue::from_str(event_type).unwrap());
    IncomingRequest {
        method: Method::POST,
        source: "demo".into(),
        headers,
        body: Bytes::copy_from_slice(body.as_bytes()),
        trace_header: None,
    }
}

#[tokio::test]
async fn the_receiver_counts_every_outcome_under_its_source_type_and_reason() {
    let f = receiver();
    let r = &f.metrics.registry;

    f.receiver
        .accept(signed(&f, "{\"n\":1}", "push"))
        .await
        .unwrap();
    f.receiver
        .accept(signed(&f, "{\"n\":1}", "push"))
        .await
        .unwrap();
    assert_eq!(r.count(Counter::Enqueued, "demo", "push"), 1);
    assert_eq!(r.count(Counter::Duplicates, "demo", "push"), 1);

    // Refused before the signature is verified: the type is not known.
    let mut tampered = signed(&f, "{\"n\":2}", "push");
    tampered.body = Bytes::from_static(b"{\"n\":3}");
    let mut unsigned = signed(&f, "{\"n\":4}", "push");
    unsigned.headers.remove("x-signature");
    let mut get = signed(&f, "{\"n\":5}", "push");
    get.method = Method::GET;
    let mut elsewhere = signed(&f, "{\"n\":6}", "push");
    elsewhere.source = "nope".into();
    let mut empty = signed(&f, "", "push");
    empty.body = Bytes::new();
    let large = signed(&f, &"x".repeat(65), "push");
    for request in [tampered, unsigned, get, elsewhere, empty, large] {
        assert!(f.receiver.accept(request).await.is_err());
    }
    let unverified = |reason| r.rejected("demo", UNVERIFIED_TYPE, reason);
    assert_eq!(unverified("signature_mismatch"), 1);
    assert_eq!(unverified("signature_missing"), 1);
    assert_eq!(unverified("malformed_body"), 1);
    assert_eq!(unverified("body_too_large"), 1);
    let nowhere = |reason| r.rejected(UNKNOWN_SOURCE, UNVERIFIED_TYPE, reason);
    assert_eq!(nowhere("method_not_allowed"), 1);
    assert_eq!(nowhere("unknown_source"), 1);

    // Refused after it: the type is known.
    f.faults.fail_next("claim", 1);
    assert!(f
        .receiver
        .accept(signed(&f, "{\"n\":7}", "push"))
        .await
        .is_err());
    f.faults.fail_next("send", 1);
    f.faults.fail_next("release", 1);
    assert!(f
        .receiver
        .accept(signed(&f, "{\"n\":8}", "push"))
        .await
        .is_err());
    assert!(f
        .receiver
        .accept(signed(&f, "{\"n\":8}", "push"))
        .await
        .is_err());
    assert_eq!(r.rejected("demo", "push", "ledger_unavailable"), 1);
    assert_eq!(r.rejected("demo", "push", "queue_unavailable"), 1);
    assert_eq!(r.rejected("demo", "push", "event_in_progress"), 1);
    f.clock.advance(Duration::from_secs(61));
    f.receiver
        .accept(signed(&f, "{\"n\":8}", "push"))
        .await
        .unwrap();
    assert_eq!(r.count(Counter::Enqueued, "demo", "push"), 2);

    assert_eq!(
        r.total(Counter::Received),
        12,
        "every request is received once"
    );
    assert_eq!(r.total(Counter::Rejected), 9);
    assert_eq!(
        r.total(Counter::Received),
        r.total(Counter::Rejected) + r.total(Counter::Enqueued) + r.total(Counter::Duplicates)
    );

    // The same, one EMF line per request.
    let lines: Vec<serde_json::Value> = f
        .emf_out
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12);
    assert!(lines
        .iter()
        .all(|l| l["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Test/Hooks"));
    let mismatch = lines
        .iter()
        .find(|l| l["reason"] == "signature_mismatch")
        .unwrap();
    assert_eq!(mismatch["source"], "demo");
    assert_eq!(mismatch["type"], UNVERIFIED_TYPE);
    assert_eq!(
        (&mismatch["Received"], &mismatch["Rejected"]),
        (&1.into(), &1.into())
    );
}

#[tokio::test]
async fn no_secret_signature_or_payload_reaches_a_metric() {
    let f = receiver();
    let body = "{\"card\":\"4111-1111-1111-1111\"}";
    let good = signed(&f, body, "charge");
    let signature = good.headers["x-signature"].to_str().unwrap().to_owned();
    f.receiver.accept(good.clone()).await.unwrap();
    f.receiver.accept(good.clone()).await.unwrap();
    let mut tampered = good;
    tampered.body = Bytes::from_static(b"{\"card\":\"5500-0000-0000-0004\"}");
    f.receiver.accept(tampered).await.unwrap_err();

    let exposed = [f.emf_out.text(), f.metrics.registry.render()];
    for text in &exposed {
        assert!(text.contains("charge") || text.contains(UNVERIFIED_TYPE));
        for needle in [SECRET, &signature, "4111", "5500", "card", "demo:"] {
            assert!(!text.contains(needle), "{needle:?} in {text}");
        }
    }
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

/// A batch of exactly `envelopes` (anything left on the queue is purged first), received as
/// if for the `receive_count`th time.
async fn batch(queue: &dyn Queue, envelopes: &[Envelope], receive_count: u32) -> SqsEvent {
    queue.purge().await.unwrap();
    for e in envelopes {
        let message = OutgoingMessage {
            body: e.to_message(),
            attributes: BTreeMap::from([(attr::EVENT_ID.to_owned(), e.event_id.to_string())]),
            ..Default::default()
        };
        queue.send(message).await.unwrap();
    }
    let mut batch = to_sqs_event(&queue.receive(10, Duration::ZERO).await.unwrap());
    for r in &mut batch.records {
        r.attributes
            .insert("ApproximateReceiveCount".into(), receive_count.to_string());
    }
    batch
}

#[tokio::test]
async fn the_processor_counts_every_record_outcome_and_times_handlers() {
    let (queue, _dlq) = MemoryQueue::with_dlq(Duration::from_secs(30), 3);
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_800_000_042)));
    let (metrics, emf_out) = metrics();
    let handlers = Handlers::new()
        .on("demo", "ok", |_e: Envelope| async { Ok(()) })
        .on("demo", "flaky", |_e: Envelope| async {
            Err(HandlerError::retry("503 from downstream"))
        })
        .on("demo", "bad", |_e: Envelope| async {
            Err(HandlerError::permanent("400 from downstream"))
        });
    let processor = Processor::new(
        &config(),
        Arc::new(MemoryLedger::new()),
        queue.clone(),
        handlers,
    )
    .with_clock(clock)
    .with_metrics(metrics.clone());
    let r = &metrics.registry;

    let first = batch(
        queue.as_ref(),
        &[envelope(1, "ok"), envelope(2, "flaky"), envelope(3, "bad")],
        1,
    )
    .await;
    let outcome = processor.process_batch(&first, None).await.unwrap();
    assert_eq!(outcome.records.len(), 3);
    assert_eq!(r.count(Counter::Processed, "demo", "ok"), 1);
    assert_eq!(r.count(Counter::Retried, "demo", "flaky"), 1);
    assert_eq!(r.count(Counter::PermanentlyFailed, "demo", "bad"), 1);
    assert_eq!(r.total(Counter::DeadLettered), 0);

    // Receive-to-processed: from the envelope's received_at to the clock's now (42 s).
    assert_eq!(
        r.latency(Latency::ReceiveToProcessed, "demo", "ok"),
        (1, 42_000)
    );
    assert_eq!(r.latency(Latency::ReceiveToProcessed, "demo", "flaky").0, 0);
    // Every handler that ran is timed, success or not.
    for event_type in ["ok", "flaky", "bad"] {
        assert_eq!(r.latency(Latency::Delivery, "demo", event_type).0, 1);
    }

    // The last allowed receive: dead-lettered, not retried.
    let last = batch(queue.as_ref(), &[envelope(4, "flaky")], 3).await;
    let outcome = processor.process_batch(&last, None).await.unwrap();
    assert!(matches!(
        outcome.records[0].1,
        RecordOutcome::Failed {
            dead_lettered: true,
            ..
        }
    ));
    assert_eq!(r.count(Counter::DeadLettered, "demo", "flaky"), 1);
    assert_eq!(r.count(Counter::Retried, "demo", "flaky"), 1);

    // A redelivery of a processed event runs nothing and counts nothing.
    let again = batch(queue.as_ref(), &[envelope(1, "ok")], 2).await;
    let outcome = processor.process_batch(&again, None).await.unwrap();
    assert_eq!(outcome.records[0].1, RecordOutcome::AlreadyProcessed);
    assert_eq!(r.count(Counter::Processed, "demo", "ok"), 1);

    // A record that is no envelope is a permanent failure of an unknown source and type.
    queue.purge().await.unwrap();
    queue
        .send(OutgoingMessage {
            body: "not json".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let junk = to_sqs_event(&queue.receive(10, Duration::ZERO).await.unwrap());
    processor.process_batch(&junk, None).await.unwrap();
    assert_eq!(
        r.count(Counter::PermanentlyFailed, UNKNOWN_SOURCE, UNKNOWN_TYPE),
        1
    );

    // One EMF line per counted record (none for the redelivery).
    let lines: Vec<serde_json::Value> = emf_out
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    let processed = lines.iter().find(|l| l["type"] == "ok").unwrap();
    assert_eq!(processed["Processed"], 1);
    assert_eq!(processed["ReceiveToProcessedLatency"], 42_000);
    assert!(processed["DeliveryLatency"].is_u64());
}
