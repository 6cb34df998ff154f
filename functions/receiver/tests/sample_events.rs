//! The receiver adapter on the sample API Gateway events in `events/`, with the sample
//! configuration from `events/env.json`, over in-memory ports.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hookgate_core::memory::{MemoryLedger, MemoryQueue};
use hookgate_core::{Config, EventId, Queue};
use lambda_http::http::StatusCode;
use lambda_http::RequestExt;
use serde_json::Value;

#[path = "../../hookgate-core/tests/support/mod.rs"]
mod support;

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

fn sample_config() -> Config {
    let env: Value =
        serde_json::from_str(&std::fs::read_to_string(events_dir().join("env.json")).unwrap())
            .unwrap();
    Config::from_toml(env["ReceiverFunction"]["HOOKGATE_CONFIG"].as_str().unwrap()).unwrap()
}

struct Harness {
    app: receiver::App,
    queue: Arc<MemoryQueue>,
    ledger: Arc<MemoryLedger>,
}

fn harness() -> Harness {
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let ledger = Arc::new(MemoryLedger::new());
    let app = receiver::App::new(&sample_config(), ledger.clone(), queue.clone()).unwrap();
    Harness { app, queue, ledger }
}

/// The processor takes the event `body` names (see hookgate-core's tests/support).
async fn taken(h: &Harness, body: &Value) {
    let id = EventId::parse(body["event_id"].as_str().unwrap()).unwrap();
    support::taken(h.ledger.as_ref(), &id).await;
}

fn sample(file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(events_dir().join(file)).unwrap()).unwrap()
}

async fn invoke(h: &Harness, file: &str) -> (StatusCode, Value) {
    invoke_event(h, &sample(file)).await
}

async fn invoke_event(h: &Harness, event: &Value) -> (StatusCode, Value) {
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let response = h.app.handle(request).await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    (response.status(), body)
}

#[tokio::test]
async fn http_api_v2_event_is_queued_then_in_progress_then_a_duplicate() {
    let h = harness();
    let (status, body) = invoke(&h, "webhook-demo.json").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "queued");
    // The repeat while the event waits in the queue, in the container that queued it: it knows,
    // a duplicate.
    let (status, known) = invoke(&h, "webhook-demo.json").await;
    assert_eq!(status, StatusCode::OK, "{known}");
    assert_eq!(known["status"], "duplicate");
    // The same repeat in another container, which cannot tell it from a claim whose receiver
    // died before the enqueue: in progress, retry later.
    let elsewhere = Harness {
        app: receiver::App::new(&sample_config(), h.ledger.clone(), h.queue.clone()).unwrap(),
        queue: h.queue.clone(),
        ledger: h.ledger.clone(),
    };
    let (status, busy) = invoke(&elsewhere, "webhook-demo.json").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(busy["error"], "event_in_progress");
    // Once the processor has it: a duplicate there too.
    taken(&h, &body).await;
    let (status, again) = invoke(&elsewhere, "webhook-demo.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["event_id"], body["event_id"]);
    assert_eq!(h.queue.len(), 1);
}

#[tokio::test]
async fn base64_body_is_decoded_before_verification() {
    let h = harness();
    let (status, body) = invoke(&h, "webhook-demo-base64.json").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let message = &h.queue.receive(1, Duration::ZERO).await.unwrap()[0];
    let envelope = hookgate_core::Envelope::from_message(&message.body).unwrap();
    assert!(std::str::from_utf8(&envelope.body)
        .unwrap()
        .contains("café"));
}

#[tokio::test]
async fn every_scheme_sample_event_is_accepted_once() {
    let h = harness();
    let mut names: Vec<String> = std::fs::read_dir(events_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("webhook-") && n.ends_with(".json"))
        .filter(|n| {
            ![
                "webhook-bad-signature.json",
                "webhook-unknown-source.json",
                "webhook-github-redelivery.json",
                // The same body as webhook-demo.json, as REST API v1: its own test.
                "webhook-demo-rest-v1.json",
            ]
            .contains(&n.as_str())
        })
        .collect();
    names.sort();
    for scheme in [
        "demo", "github", "shopify", "slack", "standard", "stripe", "svix",
    ] {
        assert!(
            names.contains(&format!("webhook-{scheme}.json")),
            "no sample event for {scheme}"
        );
    }
    for name in &names {
        let (status, body) = invoke(&h, name).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
        taken(&h, &body).await;
    }
    assert_eq!(h.queue.len(), names.len());
    // GitHub redelivers the same signed body under a new delivery id: a duplicate.
    let (status, body) = invoke(&h, "webhook-github-redelivery.json").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("duplicate")),
        "{body}"
    );
    assert_eq!(h.queue.len(), names.len());
}

#[tokio::test]
async fn rest_api_v1_event_is_accepted() {
    let h = harness();
    let (status, body) = invoke(&h, "webhook-demo-rest-v1.json").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn the_invocation_trace_header_goes_to_the_queue() {
    let h = harness();
    let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let mut context = lambda_http::Context::default();
    context.xray_trace_id = Some(header.to_owned());
    let request = lambda_http::request::from_str(&sample("webhook-demo.json").to_string())
        .unwrap()
        .with_lambda_context(context);
    let response = h.app.handle(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // Without a trace in the context (the other samples), the message carries none.
    let (status, _) = invoke(&h, "webhook-standard.json").await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let mut headers: Vec<Option<String>> = h
        .queue
        .receive(10, Duration::ZERO)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.trace_header)
        .collect();
    headers.sort();
    assert_eq!(headers, [None, Some(header.to_owned())]);
}

#[tokio::test]
async fn rejections_from_sample_events() {
    let h = harness();
    let (status, body) = invoke(&h, "webhook-bad-signature.json").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("signature_mismatch"))
    );
    let (status, body) = invoke(&h, "webhook-unknown-source.json").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_source"))
    );
    assert!(h.queue.is_empty());
}

#[tokio::test]
async fn sample_events_are_counted_by_source_type_and_reason() {
    use hookgate_core::metrics::{Counter, MetricsRegistry, UNKNOWN_SOURCE, UNVERIFIED_TYPE};
    let metrics = Arc::new(MetricsRegistry::new());
    let Harness { app, queue, ledger } = harness();
    let h = Harness {
        app: app.with_metrics(metrics.clone()),
        queue,
        ledger,
    };
    let (_, first) = invoke(&h, "webhook-demo.json").await;
    taken(&h, &first).await;
    invoke(&h, "webhook-demo.json").await;
    invoke(&h, "webhook-bad-signature.json").await;
    invoke(&h, "webhook-unknown-source.json").await;
    invoke(&h, "status-get.json").await;
    assert_eq!(metrics.count(Counter::Enqueued, "demo", "order.created"), 1);
    assert_eq!(
        metrics.count(Counter::Duplicates, "demo", "order.created"),
        1
    );
    assert_eq!(
        metrics.rejected("demo", UNVERIFIED_TYPE, "signature_mismatch"),
        1
    );
    assert_eq!(
        metrics.rejected(UNKNOWN_SOURCE, UNVERIFIED_TYPE, "unknown_source"),
        1
    );
    // Status routes are not webhook requests.
    assert_eq!(metrics.total(Counter::Received), 4);
}

#[tokio::test]
async fn status_route_reads_the_ledger() {
    let h = harness();
    let (status, body) = invoke(&h, "status-get.json").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("event_not_found"))
    );
}

#[tokio::test]
async fn listing_route_lists_the_newest_events() {
    let h = harness();
    // `status=received&source=demo&limit=5`, before anything arrived.
    let (status, body) = invoke(&h, "status-list.json").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, serde_json::json!({ "events": [] }));

    let mut queued = Vec::new();
    for file in [
        "webhook-demo.json",
        "webhook-demo-base64.json",
        "webhook-github.json",
    ] {
        let (status, body) = invoke(&h, file).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{file}: {body}");
        queued.push(body["event_id"].as_str().unwrap().to_owned());
    }
    let (status, body) = invoke(&h, "status-list.json").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = body["events"].as_array().unwrap();
    let mut listed: Vec<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    listed.sort_unstable();
    let mut demo = vec![queued[0].as_str(), queued[1].as_str()];
    demo.sort_unstable();
    // Only the demo source's two events: not github's.
    assert_eq!(listed, demo, "{body}");
    for event in events {
        assert_eq!(event["status"], "received");
        assert_eq!(event["source"], "demo");
        assert!(event["type"].is_string(), "{event}");
        assert!(event.get("attempts").is_none(), "{event}");
    }
    let times: Vec<&str> = events
        .iter()
        .map(|e| e["received_at"].as_str().unwrap())
        .collect();
    assert!(times[0] >= times[1], "not newest first: {times:?}");

    // Without the source filter and with limit=1: the newest of all three.
    let mut event = sample("status-list.json");
    event["rawQueryString"] = "status=received&limit=1".into();
    event["queryStringParameters"] = serde_json::json!({ "status": "received", "limit": "1" });
    let (status, body) = invoke_event(&h, &event).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 1, "{body}");
}

#[tokio::test]
async fn listing_route_rejects_bad_queries_and_other_methods() {
    let h = harness();
    for (query, code) in [
        ("status=bogus", "invalid_status"),
        ("source=Not%20A%20Source", "invalid_source"),
        ("limit=0", "invalid_limit"),
        ("limit=101", "invalid_limit"),
        ("limit=ten", "invalid_limit"),
    ] {
        let mut event = sample("status-list.json");
        event["rawQueryString"] = query.into();
        event
            .as_object_mut()
            .unwrap()
            .remove("queryStringParameters");
        let (status, body) = invoke_event(&h, &event).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{query}: {body}"
        );
    }
    let mut event = sample("status-list.json");
    event["requestContext"]["http"]["method"] = "DELETE".into();
    let (status, body) = invoke_event(&h, &event).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
}

/// The large sample body goes through the archive: the message the receiver enqueues for it is
/// the pointer `sqs-batch-pointer.json` carries (so the processor sample reads what the receiver
/// archived), and the payload and replay routes answer for events they know nothing of.
#[tokio::test]
async fn the_large_sample_is_claim_checked_into_the_pointer_sample() {
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let archive = Arc::new(hookgate_core::memory::MemoryArchive::new());
    let ledger = Arc::new(MemoryLedger::new());
    let app = receiver::App::with_archive(
        &sample_config(),
        ledger.clone(),
        queue.clone(),
        Some(archive.clone()),
    )
    .unwrap();
    let h = Harness { app, queue, ledger };
    let (status, body) = invoke(&h, "webhook-demo-large.json").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let sent = h.queue.receive(1, Duration::ZERO).await.unwrap().remove(0);
    let got = hookgate_core::envelope::QueuedEvent::from_message(&sent.body).unwrap();
    let sample = sample("sqs-batch-pointer.json");
    let want = hookgate_core::envelope::QueuedEvent::from_message(
        sample["Records"][0]["body"].as_str().unwrap(),
    )
    .unwrap();
    assert!(got.pointer.is_some());
    assert_eq!(got.pointer, want.pointer);
    assert_eq!(got.envelope.event_id, want.envelope.event_id);
    assert_eq!(archive.len(), 1);

    for file in ["status-payload.json", "status-replay.json"] {
        let (status, body) = invoke(&h, file).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{file}: {body}");
        assert_eq!(body["error"], "event_not_found", "{file}");
    }
}
