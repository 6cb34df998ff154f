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
    Counter, Emf, Latency, Metrics, MetricsRegistry, Observation, SeriesLimits, OTHER_TYPE,
    UNKNOWN_SOURCE, UNKNOWN_TYPE, UNVERIFIED_TYPE,
};
use hookgate_core::queue::{attr, OutgoingMessage};
use hookgate_core::{
    Config, Envelope, EventId, HandlerError, Handlers, IncomingRequest, ManualClock, Processor,
    Queue, Receiver, RecordOutcome, SourceName, Timestamp,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

mod support;
use support::taken;

/// The id of an event the receiver accepted as new.
fn queued_id(accepted: hookgate_core::receiver::Accepted) -> hookgate_core::EventId {
    match accepted {
        hookgate_core::receiver::Accepted::Queued(id) => id,
        other => panic!("not a new event: {other:?}"),
    }
}

const SECRET: &str = "s3cr3t-do-not-leak";

fn config() -> Config {
    Config::from_toml(&format!(
        r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["{SECRET}"]
# The receiver's requests name their type in the unsigned x-event-type header, which counts as
# "other" unless listed; the processor's records carry the others.
metric_types = ["push", "charge", "ok", "flaky", "bad"]

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

    fn flush(&self) {
        self.emf.flush();
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
    metrics_for(&config())
}

/// Both sinks, bounded as `config` says (as the local stack and the functions build them).
fn metrics_for(config: &Config) -> (Arc<Both>, Captured) {
    let out = Captured::default();
    let both = Arc::new(Both {
        registry: MetricsRegistry::new().with_limits(SeriesLimits::from_config(config)),
        emf: Emf::from_config(&config.metrics, out.clone())
            .with_limits(SeriesLimits::from_config(config)),
    });
    (both, out)
}

struct Fixture {
    receiver: Receiver,
    ledger: Arc<MemoryLedger>,
    faults: Arc<Faults>,
    clock: Arc<ManualClock>,
    metrics: Arc<Both>,
    emf_out: Captured,
}

fn receiver() -> Fixture {
    let faults = Faults::new();
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_800_000_000)));
    let (metrics, emf_out) = metrics();
    let ledger = Arc::new(MemoryLedger::new());
    let receiver = Receiver::new(
        &config(),
        Arc::new(FaultyLedger::new(ledger.clone(), faults.clone())),
        Arc::new(FaultyQueue::new(
            Arc::new(MemoryQueue::new(Duration::from_secs(30))),
            faults.clone(),
        )),
    )
    .with_clock(clock.clone())
    .with_metrics(metrics.clone());
    Fixture {
        receiver,
        ledger,
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

    let first = f
        .receiver
        .accept(signed(&f, "{\"n\":1}", "push"))
        .await
        .unwrap();
    taken(f.ledger.as_ref(), &queued_id(first)).await;
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
    let first = f.receiver.accept(good.clone()).await.unwrap();
    taken(f.ledger.as_ref(), &queued_id(first)).await;
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

/// The processor Lambda's EMF writer is batched: each batch ends with one line per shape, every
/// record's sample in it, and nothing is kept from one batch to the next.
#[tokio::test]
async fn a_batched_emf_writer_gets_one_line_per_shape_at_the_end_of_each_batch() {
    let (queue, _dlq) = MemoryQueue::with_dlq(Duration::from_secs(30), 3);
    let out = Captured::default();
    let emf = Arc::new(Emf::from_config(&config().metrics, out.clone()).batched());
    let handlers = Handlers::new()
        .on("demo", "ok", |_e: Envelope| async { Ok(()) })
        .on("demo", "flaky", |_e: Envelope| async {
            Err(HandlerError::retry("503 from downstream"))
        });
    let processor = Processor::new(
        &config(),
        Arc::new(MemoryLedger::new()),
        queue.clone(),
        handlers,
    )
    .with_metrics(emf);
    let lines = || -> Vec<serde_json::Value> {
        out.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };

    let first = batch(
        queue.as_ref(),
        &[
            envelope(1, "ok"),
            envelope(2, "ok"),
            envelope(3, "flaky"),
            envelope(4, "ok"),
        ],
        1,
    )
    .await;
    processor.process_batch(&first, None).await.unwrap();
    let written = lines();
    assert_eq!(written.len(), 2, "{written:#?}");
    let ok = written.iter().find(|l| l["type"] == "ok").unwrap();
    assert_eq!(ok["Processed"], serde_json::json!([1, 1, 1]));
    assert_eq!(ok["DeliveryLatency"].as_array().unwrap().len(), 3);
    let flaky = written.iter().find(|l| l["type"] == "flaky").unwrap();
    assert_eq!(flaky["Retried"], 1);

    let second = batch(queue.as_ref(), &[envelope(5, "ok")], 1).await;
    processor.process_batch(&second, None).await.unwrap();
    let written = lines();
    assert_eq!(written.len(), 3);
    assert_eq!(written[2]["Processed"], 1);
}

/// A receiver for `config`, reporting to both sinks.
fn bounded_receiver(config: &str) -> (Receiver, Arc<Both>, Captured, Arc<MemoryLedger>) {
    let config = Config::from_toml(config).unwrap();
    let (metrics, out) = metrics_for(&config);
    let ledger = Arc::new(MemoryLedger::new());
    let receiver = Receiver::new(
        &config,
        ledger.clone(),
        Arc::new(MemoryQueue::new(Duration::from_secs(30))),
    )
    .with_clock(Arc::new(ManualClock::new(Timestamp::from_secs(
        1_800_000_000,
    ))))
    .with_metrics(metrics.clone());
    (receiver, metrics, out, ledger)
}

fn request(source: &str, headers: &[(String, String)], body: &str) -> IncomingRequest {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    IncomingRequest {
        method: Method::POST,
        source: source.into(),
        headers: map,
        body: Bytes::copy_from_slice(body.as_bytes()),
        trace_header: None,
    }
}

/// The distinct `source="…",type="…"` label pairs of a `/metrics` page.
fn series(page: &str) -> std::collections::BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let labels = l.split('{').nth(1)?.split('}').next()?;
            let mut pairs = labels.split(',').take(2);
            Some(format!("{},{}", pairs.next()?, pairs.next()?))
        })
        .collect()
}

/// The distinct `type` values of the EMF lines of `source`.
fn emf_types(out: &Captured, source: &str) -> std::collections::BTreeSet<String> {
    out.text()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["source"] == source)
        .map(|l| l["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn replaying_one_captured_delivery_with_new_types_adds_no_series() {
    // The audit's attack: one captured GitHub delivery, replayed 200 times with a different
    // (unsigned) X-GitHub-Event each time. Each replay is a duplicate; none may add a series.
    let (receiver, metrics, out, ledger) =
        bounded_receiver("[sources.github]\nscheme = 'github'\nsecrets = ['gh-webhook-secret-1']");
    let body = r#"{"ref":"refs/heads/main"}"#;
    let mut captured = receiver.sign("github", body.as_bytes()).unwrap();
    captured.push(("x-github-event".into(), "push".into()));
    let first = receiver.accept(request("github", &captured, body)).await;
    taken(ledger.as_ref(), &queued_id(first.unwrap())).await;
    let page_before = metrics.registry.render();
    for i in 0..200 {
        let mut replay = captured.clone();
        replay.last_mut().unwrap().1 = format!("made-up-{i}");
        let outcome = receiver.accept(request("github", &replay, body)).await;
        assert!(matches!(
            outcome,
            Ok(hookgate_core::receiver::Accepted::Duplicate(_))
        ));
    }
    let page_after = metrics.registry.render();
    assert_eq!(
        series(&page_before),
        series(&page_after),
        "no new series on /metrics:\n{page_after}"
    );
    assert_eq!(series(&page_after).len(), 1);
    assert!(!page_after.contains("made-up"), "{page_after}");
    // The type header is unsigned and the source lists no types: everything counts as other.
    let r = &metrics.registry;
    assert_eq!(r.count(Counter::Enqueued, "github", OTHER_TYPE), 1);
    assert_eq!(r.count(Counter::Duplicates, "github", OTHER_TYPE), 200);
    assert_eq!(r.count(Counter::Received, "github", OTHER_TYPE), 201);
    assert_eq!(emf_types(&out, "github"), [OTHER_TYPE.to_owned()].into());
}

#[tokio::test]
async fn listed_types_are_counted_and_duplicates_only_under_existing_series() {
    let (receiver, metrics, out, ledger) = bounded_receiver(
        "[sources.github]\nscheme = 'github'\nsecrets = ['gh-webhook-secret-1']\n\
         metric_types = ['push', 'pull_request', 'issues']",
    );
    let send = |body: &str, event: &str| {
        let mut headers = receiver.sign("github", body.as_bytes()).unwrap();
        headers.push(("x-github-event".into(), event.into()));
        request("github", &headers, body)
    };
    let first = receiver.accept(send("{\"n\":1}", "push")).await.unwrap();
    taken(ledger.as_ref(), &queued_id(first)).await;
    receiver.accept(send("{\"n\":2}", "made-up")).await.unwrap();
    // A duplicate relabelled with another listed type: that series does not exist yet.
    receiver.accept(send("{\"n\":1}", "issues")).await.unwrap();
    receiver.accept(send("{\"n\":1}", "push")).await.unwrap();
    let r = &metrics.registry;
    assert_eq!(r.count(Counter::Enqueued, "github", "push"), 1);
    assert_eq!(r.count(Counter::Enqueued, "github", OTHER_TYPE), 1);
    assert_eq!(r.count(Counter::Duplicates, "github", OTHER_TYPE), 1);
    assert_eq!(r.count(Counter::Duplicates, "github", "push"), 1);
    assert_eq!(r.count(Counter::Received, "github", "issues"), 0);
    assert_eq!(
        emf_types(&out, "github"),
        ["push".to_owned(), OTHER_TYPE.to_owned()].into()
    );
}

#[tokio::test]
async fn the_series_cap_holds_on_both_sinks() {
    // Signed types (the body's) are trusted, but no more than the cap of them per source.
    let (receiver, metrics, out, _ledger) = bounded_receiver(
        "[sources.demo]\nscheme = 'hmac-sha256'\nsecrets = ['local-demo-s3cr3t']\n\
         [sources.other]\nscheme = 'hmac-sha256'\nsecrets = ['local-demo-s3cr3t']\n\
         [metrics]\nmax_types_per_source = 5",
    );
    for source in ["demo", "other"] {
        for i in 0..20 {
            let body = format!("{{\"type\":\"type-{i}\"}}");
            let headers = receiver.sign(source, body.as_bytes()).unwrap();
            let outcome = receiver.accept(request(source, &headers, &body)).await;
            assert!(matches!(
                outcome,
                Ok(hookgate_core::receiver::Accepted::Queued(_))
            ));
        }
    }
    let page = metrics.registry.render();
    for source in ["demo", "other"] {
        let mut want: std::collections::BTreeSet<String> =
            (0..5).map(|i| format!("type-{i}")).collect();
        want.insert(OTHER_TYPE.to_owned());
        let received: std::collections::BTreeSet<String> = page
            .lines()
            .filter(|l| {
                l.starts_with(&format!(
                    "hookgate_events_received_total{{source=\"{source}\""
                ))
            })
            .map(|l| {
                l.split("type=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(received, want, "{source}: {page}");
        assert_eq!(emf_types(&out, source), want, "{source}");
        assert_eq!(
            metrics
                .registry
                .count(Counter::Enqueued, source, OTHER_TYPE),
            15
        );
    }
}
