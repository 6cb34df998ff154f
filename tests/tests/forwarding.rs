//! Forwarding to a destination ("service B"), end to end through the processor over a real
//! queue: on the in-memory backends and on SQS/DynamoDB served by moto. The destination is a
//! scripted HTTP sink on 127.0.0.1; what it received is checked by the independent
//! `standardwebhooks` PyPI package.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookgate_core::event_source::EventSource;
use hookgate_core::{
    BatchOutcome, Config, Envelope, EventId, EventStatus, Handlers, Processor, RecordOutcome,
    SourceName, Timestamp,
};
use hookgate_testkit::pipeline::Pipeline;
use hookgate_testkit::sink::{closed_port, Answer, Recorded, Sink};

const MAX_RECEIVE_COUNT: u32 = 3;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// A body a re-serialisation would change: spacing, escapes, non-ASCII.
const BODY: &str = "{\"type\": \"order.paid\",  \"amount\":12.50, \"note\":\"caf\u{e9} \\u00e9\"}";

fn memory() -> Pipeline {
    Pipeline::memory(MAX_RECEIVE_COUNT, Duration::from_secs(1))
}

async fn moto() -> Option<Pipeline> {
    Pipeline::moto(MAX_RECEIVE_COUNT, 1).await
}

/// A config with one source per `(name, forward table)`.
fn config(sources: &[(&str, String)]) -> Config {
    let mut doc = String::new();
    for (name, forward) in sources {
        doc.push_str(&format!(
            "[sources.{name}]\nscheme = 'hmac-sha256'\nsecrets = ['forwarding-test-secret']\n\
             [sources.{name}.forward]\nsecret = '{SECRET}'\n{forward}\n"
        ));
    }
    doc.push_str(&format!(
        "[processor]\nmax_receive_count = {MAX_RECEIVE_COUNT}\nvisibility_timeout_secs = 1\n\
         backoff_base_ms = 100\nbackoff_cap_secs = 1\nhandler_timeout_secs = 15\n\
         wait_time_ms = 1000\nbatch_window_ms = 0\n"
    ));
    Config::from_toml(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"))
}

/// A forward table to `url` that may reach the sink (plain http on loopback).
fn to_sink(url: &str, extra: &str) -> String {
    format!("url = '{url}'\nallow_http = true\nallow_private_networks = true\n{extra}")
}

fn event(source: &str) -> Envelope {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    Envelope {
        event_id: EventId::parse(&format!("{source}:evt_{unique}")).unwrap(),
        source: SourceName::parse(source).unwrap(),
        event_type: "order.paid".into(),
        received_at: Timestamp::from_secs(1_800_000_000),
        headers: BTreeMap::from([(
            "content-type".to_owned(),
            "application/json; charset=utf-8".to_owned(),
        )]),
        body: Bytes::from_static(BODY.as_bytes()),
    }
}

/// The processor with forwarding from `config`, fed by a local event source.
fn events(p: &Pipeline, config: &Config) -> EventSource {
    let handlers = Handlers::new()
        .with_forwarding(config.destinations())
        .unwrap();
    let processor = Processor::new(config, p.ledger.clone(), p.queue.clone(), handlers);
    EventSource::new(p.queue.clone(), Arc::new(processor))
}

/// Polls until a batch with a record arrives; returns that record's outcome.
async fn next_outcome(events: &EventSource) -> RecordOutcome {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let BatchOutcome { mut records } = events.poll().await.unwrap();
        if let Some((_, outcome)) = records.pop() {
            assert!(records.is_empty(), "one event at a time");
            return outcome;
        }
        assert!(Instant::now() < deadline, "no message came back");
    }
}

fn failed_error(outcome: &RecordOutcome) -> &str {
    match outcome {
        RecordOutcome::Failed {
            error,
            dead_lettered: false,
            ..
        } => error,
        other => panic!("expected a retried failure, got {other:?}"),
    }
}

/// Verifies every request with `Webhook(secret).verify(body, headers)` from the
/// `standardwebhooks` package; `Err` with python's output if any fails.
fn verify_with_standardwebhooks(requests: &[Recorded]) -> Option<Result<(), String>> {
    let python = hookgate_testkit::python::python()?;
    let payload = serde_json::to_vec(
        &requests
            .iter()
            .map(|r| serde_json::json!({"headers": r.headers, "body": r.body}))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
for r in json.load(sys.stdin):
    Webhook(sys.argv[1]).verify(bytes(r["body"]), r["headers"])
print("verified")
"#;
    let (ok, out, err) = hookgate_testkit::python::run(&python, script, &[SECRET], &payload);
    Some(if ok && out == "verified" {
        Ok(())
    } else {
        Err(format!("{out}\n{err}"))
    })
}

async fn failures_then_delivery_signed_with_a_stable_id(p: Pipeline) {
    let sink = Sink::start(vec![Answer::status(500).body("db down"); 2], Answer::ok()).await;
    let config = config(&[("fwd", to_sink(&sink.url("/hooks?token=t0k"), ""))]);
    let events = events(&p, &config);
    let e = event("fwd");
    p.enqueue(&e).await;
    let record = p
        .poll_until(&events, &e.event_id, EventStatus::Processed)
        .await;

    // Three attempts logged, each with where it went and what the destination answered; the
    // recorded URL drops the query string (it may carry a credential).
    let logged: Vec<_> = record
        .attempts
        .iter()
        .map(|a| (a.attempt, a.success, a.status_code, a.url.clone()))
        .collect();
    let url = Some(sink.url("/hooks"));
    assert_eq!(
        logged,
        vec![
            (1, false, Some(500), url.clone()),
            (2, false, Some(500), url.clone()),
            (3, true, Some(200), url),
        ]
    );
    assert_eq!(
        record.attempts[0].error.as_deref(),
        Some("destination answered 500: db down")
    );

    // The destination saw the same event three times: same id, same bytes, same content type.
    let seen = sink.requests();
    assert_eq!(seen.len(), 3);
    for r in &seen {
        assert_eq!(r.uri, "/hooks?token=t0k");
        assert_eq!(r.headers["webhook-id"], e.event_id.as_str());
        assert_eq!(r.body, BODY.as_bytes());
        assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");
        assert_eq!(r.headers["x-hookgate-source"], "fwd");
        assert_eq!(r.headers["x-hookgate-event-type"], "order.paid");
        assert!(r.headers["webhook-signature"].starts_with("v1,"));
    }

    // An independent implementation accepts every signature, and refuses a tampered body.
    if let Some(verdict) = verify_with_standardwebhooks(&seen) {
        verdict.unwrap();
        let mut tampered = seen[0].clone();
        tampered.body.push(b' ');
        assert!(verify_with_standardwebhooks(&[tampered]).unwrap().is_err());
    }
}

async fn retry_after_is_honoured(p: Pipeline) {
    let sink = Sink::start(
        vec![Answer::status(429).header("retry-after", "2")],
        Answer::ok(),
    )
    .await;
    let config = config(&[("fwd", to_sink(&sink.url("/"), ""))]);
    let events = events(&p, &config);
    let e = event("fwd");
    p.enqueue(&e).await;
    match next_outcome(&events).await {
        RecordOutcome::Failed {
            error,
            retry_in,
            dead_lettered: false,
        } => {
            assert_eq!(error, "destination answered 429");
            // Retry-After wins over the (100 ms base) backoff schedule.
            assert_eq!(retry_in, Some(Duration::from_secs(2)));
        }
        other => panic!("{other:?}"),
    }
    let record = p
        .poll_until(&events, &e.event_id, EventStatus::Processed)
        .await;
    let [first, second] = &record.attempts[..] else {
        panic!("{:?}", record.attempts)
    };
    assert_eq!(
        (first.status_code, second.status_code),
        (Some(429), Some(200))
    );
    let waited = second.at.since(first.at);
    assert!(waited >= Duration::from_millis(1_900), "{waited:?}");
}

async fn a_timeout_is_retried(p: Pipeline) {
    let sink = Sink::start(
        vec![Answer::ok().after(Duration::from_secs(2))],
        Answer::ok(),
    )
    .await;
    let config = config(&[("fwd", to_sink(&sink.url("/slow"), "timeout_ms = 300"))]);
    let events = events(&p, &config);
    let e = event("fwd");
    p.enqueue(&e).await;
    let outcome = next_outcome(&events).await;
    assert_eq!(failed_error(&outcome), "no answer within 300 ms");
    let record = p
        .poll_until(&events, &e.event_id, EventStatus::Processed)
        .await;
    assert_eq!(record.attempts[0].status_code, None);
    assert_eq!(record.attempts[0].url, Some(sink.url("/slow")));
    assert_eq!(record.attempts.last().unwrap().status_code, Some(200));
}

async fn a_refused_connection_is_retried(p: Pipeline) {
    let url = format!("http://127.0.0.1:{}/hooks", closed_port().await);
    let config = config(&[("fwd", to_sink(&url, ""))]);
    let events = events(&p, &config);
    let e = event("fwd");
    p.enqueue(&e).await;
    let outcome = next_outcome(&events).await;
    let error = failed_error(&outcome);
    assert!(error.starts_with("could not connect: "), "{error}");
    let record = p.ledger.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Failed);
    assert_eq!(record.attempts[0].url.as_deref(), Some(url.as_str()));
    assert_eq!(record.attempts[0].status_code, None);
    assert!(p.dlq.receive(10, Duration::ZERO).await.unwrap().is_empty());
}

async fn a_client_error_is_permanent(p: Pipeline) {
    let sink = Sink::start(
        vec![Answer::status(422).body("{\"error\":\"unknown customer\"}")],
        Answer::ok(),
    )
    .await;
    let config = config(&[("fwd", to_sink(&sink.url("/"), ""))]);
    let events = events(&p, &config);
    let e = event("fwd");
    p.enqueue(&e).await;
    match next_outcome(&events).await {
        RecordOutcome::MovedToDlq { error } => {
            assert_eq!(
                error,
                "destination answered 422: {\"error\":\"unknown customer\"}"
            )
        }
        other => panic!("{other:?}"),
    }
    let record = p.ledger.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::DeadLettered);
    assert_eq!(record.attempts.len(), 1);
    assert_eq!(record.attempts[0].status_code, Some(422));
    let in_dlq = p.dlq.receive(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(in_dlq.len(), 1);
    assert_eq!(sink.requests().len(), 1, "not retried");
}

async fn a_redirect_is_not_followed(p: Pipeline) {
    let sink = Sink::start(Vec::new(), Answer::ok()).await;
    let redirecting = Sink::start(
        vec![Answer::status(307).header("location", &sink.url("/elsewhere"))],
        Answer::ok(),
    )
    .await;
    let config = config(&[("fwd", to_sink(&redirecting.url("/"), ""))]);
    let events = events(&p, &config);
    let e = event("fwd");
    p.enqueue(&e).await;
    match next_outcome(&events).await {
        RecordOutcome::MovedToDlq { error } => assert!(error.contains("redirect"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(redirecting.requests().len(), 1);
    assert!(sink.requests().is_empty(), "the redirect was followed");
}

async fn celery_http_answers_decide(p: Pipeline) {
    let sink = Sink::start(
        vec![Answer::ok().body(r#"{"status": "failure", "reason": "ValueError: bad sku"}"#)],
        Answer::ok().body(r#"{"status": "success", "retval": {"order": 7}}"#),
    )
    .await;
    let config = config(&[("fwd", to_sink(&sink.url("/task"), "mode = 'celery-http'"))]);
    let events = events(&p, &config);
    let e = event("fwd");
    p.enqueue(&e).await;
    let outcome = next_outcome(&events).await;
    assert_eq!(
        failed_error(&outcome),
        "destination reported failure: ValueError: bad sku"
    );
    let record = p
        .poll_until(&events, &e.event_id, EventStatus::Processed)
        .await;
    let results: Vec<_> = record
        .attempts
        .iter()
        .map(|a| (a.success, a.status_code))
        .collect();
    assert_eq!(results, vec![(false, Some(200)), (true, Some(200))]);
}

async fn private_destinations_are_refused(p: Pipeline) {
    let sink = Sink::start(Vec::new(), Answer::ok()).await;
    let public_only = "allow_http = true";
    let config = config(&[
        (
            "loopback",
            format!("url = '{}'\n{public_only}", sink.url("/")),
        ),
        (
            "named",
            format!("url = 'http://localhost:{}/'\n{public_only}", sink.port()),
        ),
        (
            "metadata",
            format!("url = 'http://169.254.169.254/latest/meta-data/'\n{public_only}"),
        ),
    ]);
    let events = events(&p, &config);
    for (source, why) in [
        (
            "loopback",
            "127.0.0.1 resolves to 127.0.0.1, a loopback address",
        ),
        ("named", "localhost resolves to"),
        ("metadata", "a link-local address"),
    ] {
        let e = event(source);
        p.enqueue(&e).await;
        match next_outcome(&events).await {
            RecordOutcome::MovedToDlq { error } => {
                assert!(error.starts_with("destination refused: "), "{error}");
                assert!(error.contains(why), "{source}: {error}");
            }
            other => panic!("{source}: {other:?}"),
        }
        let record = p.ledger.get(&e.event_id).await.unwrap().unwrap();
        assert_eq!(record.status, EventStatus::DeadLettered, "{source}");
        assert!(record.attempts[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("allow_private_networks")));
    }
    assert!(
        sink.requests().is_empty(),
        "a refused destination was called"
    );
}

macro_rules! forwarding_suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::memory()).await;
                }
            )*
        }

        mod moto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(pipeline) = super::moto().await else {
                        eprintln!("skipped: no moto");
                        return;
                    };
                    super::$name(pipeline).await;
                }
            )*
        }
    };
}

forwarding_suite!(
    failures_then_delivery_signed_with_a_stable_id,
    retry_after_is_honoured,
    a_timeout_is_retried,
    a_refused_connection_is_retried,
    a_client_error_is_permanent,
    a_redirect_is_not_followed,
    celery_http_answers_decide,
    private_destinations_are_refused,
);
