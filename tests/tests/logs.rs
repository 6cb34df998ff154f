//! What the logs say, read the way an operator reads them (the Lambda JSON lines, at `TRACE`,
//! the most verbose level): signed requests through the receiver (accepted, duplicate, in
//! progress, bad signature, unknown source) and their events through the processor, forwarded
//! to a destination that accepts, fails once, or refuses for good — on the in-memory backends
//! and on SQS/DynamoDB served by moto.
//!
//! Checked: no secret, signature or payload appears in any line; every line about an event
//! carries its `event_id` (and the processor's its `message_id`, `receive_count` and, once
//! started, `attempt`); a rejection carries the source and its error code; and the X-Ray trace
//! header the receiver was invoked with is on the processor's lines about the same event.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use bytes::Bytes;
use hookgate_core::event_source::EventSource;
use hookgate_core::ledger::Claim;
use hookgate_core::{
    Clock, Config, EventId, EventStatus, Handlers, IncomingRequest, Processor, Receiver,
    SourceName, SystemClock,
};
use hookgate_testkit::logs::CapturedLogs;
use hookgate_testkit::pipeline::Pipeline;
use hookgate_testkit::sink::{Answer, Sink};
use serde_json::{Map, Value};

type Line = Map<String, Value>;

/// In every body; never in a log line.
const MARKER: &str = "payload-marker-4f1c";
/// The destinations' signing secret (`forward-signing-secret-1`).
const FORWARD_SECRET: &str = "whsec_Zm9yd2FyZC1zaWduaW5nLXNlY3JldC0x";
/// A static header the destinations require.
const API_KEY: &str = "sink-api-key-never-logged";
/// A credential in the destinations' query string.
const QUERY_TOKEN: &str = "query-secret-token";

/// A source, its destination's behaviour, and the trace its requests arrive with.
struct Source {
    name: &'static str,
    /// The receiver's secret: `whsec_` and the base64 of `key`.
    secret: &'static str,
    key: &'static str,
    trace: &'static str,
    /// The destination's answers, then 200 for ever.
    answers: Vec<u16>,
    /// Where the event ends.
    ends: EventStatus,
}

fn sources() -> Vec<Source> {
    vec![
        Source {
            name: "shop",
            secret: "whsec_c2hvcC1yZWNlaXZlci1zZWNyZXQtMDAx",
            key: "shop-receiver-secret-001",
            trace: "Root=1-6760a1b2-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1",
            answers: vec![],
            ends: EventStatus::Processed,
        },
        Source {
            name: "flaky",
            secret: "whsec_Zmxha3ktcmVjZWl2ZXItc2VjcmV0LTAy",
            key: "flaky-receiver-secret-02",
            trace: "Root=1-6760a1b3-89abcdef0123456789abcdef;Parent=1f2e3d4c5b6a7988;Sampled=1",
            answers: vec![500],
            ends: EventStatus::Processed,
        },
        Source {
            name: "gone",
            secret: "whsec_Z29uZS1yZWNlaXZlci1zZWNyZXQtMDAz",
            key: "gone-receiver-secret-003",
            trace: "Root=1-6760a1b4-fedcba9876543210fedcba98;Parent=0a1b2c3d4e5f6071;Sampled=0",
            answers: vec![410],
            ends: EventStatus::DeadLettered,
        },
    ]
}

fn config(sources: &[Source], sinks: &[Sink]) -> Config {
    let mut doc = String::new();
    for (s, sink) in sources.iter().zip(sinks) {
        doc.push_str(&format!(
            "[sources.{name}]\nscheme = 'standard'\nsecrets = ['{secret}']\n\
             [sources.{name}.forward]\nurl = '{url}'\nsecret = '{FORWARD_SECRET}'\n\
             allow_http = true\nallow_private_networks = true\n\
             headers = {{ 'x-api-key' = '{API_KEY}' }}\n",
            name = s.name,
            secret = s.secret,
            url = sink.url(&format!("/hook?token={QUERY_TOKEN}")),
        ));
    }
    doc.push_str(
        "[processor]\nmax_receive_count = 3\nvisibility_timeout_secs = 1\n\
         backoff_base_ms = 100\nbackoff_cap_secs = 1\nhandler_timeout_secs = 15\n\
         wait_time_ms = 1000\nbatch_window_ms = 0\n",
    );
    Config::from_toml(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"))
}

/// A request signed as `source`'s provider would sign `body`, arriving with `trace`.
fn signed(receiver: &Receiver, source: &str, body: &str, trace: &str) -> IncomingRequest {
    let mut headers = HeaderMap::new();
    for (name, value) in receiver.sign(source, body.as_bytes()).unwrap() {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    IncomingRequest {
        method: Method::POST,
        source: source.to_owned(),
        headers,
        body: Bytes::from(body.to_owned()),
        trace_header: Some(trace.to_owned()),
    }
}

fn header(request: &IncomingRequest, name: &str) -> String {
    request.headers[name].to_str().unwrap().to_owned()
}

/// The innermost `event` span of a line.
fn event_span(line: &Line) -> Option<&Map<String, Value>> {
    line.get("spans")?
        .as_array()?
        .iter()
        .rev()
        .filter_map(Value::as_object)
        .find(|span| span.get("name").and_then(Value::as_str) == Some("event"))
}

fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    map.get(name).and_then(Value::as_str)
}

async fn run(p: Pipeline) {
    let sources = sources();
    let mut sinks = Vec::new();
    for s in &sources {
        let answers = s.answers.iter().map(|&code| Answer::status(code)).collect();
        sinks.push(Sink::start(answers, Answer::ok()).await);
    }
    let config = config(&sources, &sinks);
    let receiver = Receiver::new(&config, p.ledger.clone(), p.queue.clone());
    let handlers = Handlers::new()
        .with_forwarding(config.destinations())
        .unwrap();
    let processor = Processor::new(&config, p.ledger.clone(), p.queue.clone(), handlers);
    let events = EventSource::new(p.queue.clone(), Arc::new(processor));

    // Never to be logged: the secrets in every form, every signature, every body.
    let mut forbidden: Vec<String> = vec![
        MARKER.into(),
        FORWARD_SECRET.into(),
        FORWARD_SECRET.trim_start_matches("whsec_").into(),
        "forward-signing-secret-1".into(),
        API_KEY.into(),
        QUERY_TOKEN.into(),
    ];
    for s in &sources {
        forbidden.extend([
            s.secret.to_owned(),
            s.secret.trim_start_matches("whsec_").to_owned(),
            s.key.to_owned(),
        ]);
    }

    let (logs, guard) = CapturedLogs::lambda_json("TRACE");

    // Receiver: one event per source, accepted.
    let mut ids: BTreeMap<&str, EventId> = BTreeMap::new();
    let mut first_request = None;
    for s in &sources {
        let body = format!(
            r#"{{"type":"order.paid","note":"{MARKER}","source":"{}"}}"#,
            s.name
        );
        let request = signed(&receiver, s.name, &body, s.trace);
        forbidden.extend([body.clone(), header(&request, "webhook-signature")]);
        let reply = receiver.handle(request.clone()).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
        let id = EventId::parse(reply.body["event_id"].as_str().unwrap()).unwrap();
        ids.insert(s.name, id);
        first_request.get_or_insert(request);
    }
    // A bad signature: the body changed after signing.
    let body = format!(r#"{{"type":"order.paid","note":"{MARKER}","tampered":true}}"#);
    let mut tampered = signed(&receiver, "shop", &body, sources[0].trace);
    tampered.body = Bytes::from(body.replace("true", "false"));
    forbidden.extend([body.clone(), header(&tampered, "webhook-signature")]);
    let reply = receiver.handle(tampered).await;
    assert_eq!(reply.body["error"], "signature_mismatch", "{reply:?}");
    // An unknown source.
    let mut unknown = signed(&receiver, "shop", &body, sources[0].trace);
    unknown.source = "nope".into();
    assert_eq!(receiver.handle(unknown).await.status, StatusCode::NOT_FOUND);
    // In progress: another request holds the claim on this very event.
    let body = format!(r#"{{"type":"order.paid","note":"{MARKER}","busy":true}}"#);
    let busy = signed(&receiver, "shop", &body, sources[0].trace);
    forbidden.extend([body.clone(), header(&busy, "webhook-signature")]);
    let busy_id = EventId::parse(&format!("shop:{}", header(&busy, "webhook-id"))).unwrap();
    let now = SystemClock.now();
    let claim = Claim {
        event_id: busy_id.clone(),
        source: SourceName::parse("shop").unwrap(),
        event_type: "order.paid".into(),
        now,
        expires_at: now.plus(Duration::from_secs(3600)).ceil_secs(),
        timeout: Duration::from_secs(60),
        token: "another-request".into(),
    };
    p.ledger.claim(&claim).await.unwrap();
    let reply = receiver.handle(busy).await;
    assert_eq!(reply.body["error"], "event_in_progress", "{reply:?}");

    // Processor: each event to its end.
    for s in &sources {
        p.poll_until(&events, &ids[s.name], s.ends).await;
    }
    // The provider's retry, once the processor has taken the event: a duplicate.
    let replay = first_request.unwrap();
    let reply = receiver.handle(replay).await;
    assert_eq!(reply.body["status"], "duplicate", "{reply:?}");
    drop(guard);

    for sink in &sinks {
        for request in sink.requests() {
            let signature = request.headers["webhook-signature"].clone();
            forbidden.push(signature.trim_start_matches("v1,").to_owned());
            forbidden.push(signature);
            assert_eq!(request.headers["x-api-key"], API_KEY, "the header was sent");
        }
    }
    let text = logs.text();
    for secret in &forbidden {
        assert!(
            !text.contains(secret.as_str()),
            "{secret:?} is in the logs:\n{text}"
        );
    }

    let lines = logs.lines();
    assert!(!lines.is_empty());
    let mut rejections = BTreeSet::new();
    let mut by_event: BTreeMap<String, Vec<&Line>> = BTreeMap::new();
    for line in &lines {
        assert!(
            field(line, "timestamp").is_some() && field(line, "level").is_some(),
            "{line:?}"
        );
        let target = field(line, "target").unwrap_or_default();
        let about_events = ["receiver", "processor", "delivery", "handler"]
            .iter()
            .any(|module| target == format!("hookgate_core::{module}"));
        if !about_events {
            continue;
        }
        if field(line, "message") == Some("request rejected") {
            let source = field(line, "source").expect("a rejection names the source");
            let code = field(line, "error_code").expect("a rejection names its code");
            rejections.insert((source.to_owned(), code.to_owned()));
            continue;
        }
        let span = event_span(line).unwrap_or_else(|| panic!("no event span: {line:?}"));
        let id = field(span, "event_id").unwrap_or_else(|| panic!("no event_id: {line:?}"));
        by_event.entry(id.to_owned()).or_default().push(line);
    }
    assert_eq!(
        rejections,
        BTreeSet::from([
            ("nope".to_owned(), "unknown_source".to_owned()),
            ("shop".to_owned(), "signature_mismatch".to_owned()),
        ])
    );
    let busy_lines = &by_event[busy_id.as_str()];
    assert!(busy_lines
        .iter()
        .any(|l| field(l, "message") == Some("event is being accepted by another request")));

    for s in &sources {
        let lines = &by_event[ids[s.name].as_str()];
        let messages: Vec<&str> = lines.iter().filter_map(|l| field(l, "message")).collect();
        assert!(
            messages.contains(&"event queued"),
            "{}: {messages:?}",
            s.name
        );
        for line in lines {
            let span = event_span(line).unwrap();
            assert_eq!(field(span, "source"), Some(s.name), "{line:?}");
            assert_eq!(field(span, "type"), Some("order.paid"), "{line:?}");
            // One trace from the receiver's invocation to the processor's.
            assert_eq!(field(span, "xray_trace_id"), Some(s.trace), "{line:?}");
            if field(line, "target") != Some("hookgate_core::receiver") {
                assert!(field(span, "message_id").is_some(), "{line:?}");
                assert!(span.get("receive_count").is_some(), "{line:?}");
            }
        }
        // The attempt is on every line logged once it started.
        let attempts: Vec<(&str, u64)> = lines
            .iter()
            .filter(|l| {
                matches!(
                    field(l, "message"),
                    Some(
                        "delivered"
                            | "event processed"
                            | "attempt failed"
                            | "delivery failed; will retry"
                            | "delivery refused by the destination; not retried"
                    )
                )
            })
            .map(|l| {
                let attempt = event_span(l)
                    .unwrap()
                    .get("attempt")
                    .and_then(Value::as_u64);
                (
                    field(l, "message").unwrap(),
                    attempt.unwrap_or_else(|| panic!("no attempt: {l:?}")),
                )
            })
            .collect();
        let expected: &[(&str, u64)] = match s.name {
            "shop" => &[("delivered", 1), ("event processed", 1)],
            "flaky" => &[
                ("delivery failed; will retry", 1),
                ("attempt failed", 1),
                ("delivered", 2),
                ("event processed", 2),
            ],
            _ => &[
                ("delivery refused by the destination; not retried", 1),
                ("attempt failed", 1),
            ],
        };
        assert_eq!(attempts, expected, "{}", s.name);
    }
    let duplicates = by_event[ids["shop"].as_str()]
        .iter()
        .filter(|l| field(l, "message") == Some("duplicate event"))
        .count();
    assert_eq!(duplicates, 1);
    assert!(by_event[ids["gone"].as_str()]
        .iter()
        .any(|l| field(l, "message") == Some("moved to the DLQ")));
}

#[tokio::test]
async fn logs_name_every_event_and_leak_nothing_in_memory() {
    run(Pipeline::memory(3, Duration::from_secs(1))).await;
}

#[tokio::test]
async fn logs_name_every_event_and_leak_nothing_on_moto() {
    let Some(p) = Pipeline::moto(3, 1).await else {
        eprintln!("skipped: no moto");
        return;
    };
    run(p).await;
}
