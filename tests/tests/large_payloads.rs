//! A 5 MB GitHub-signed body end to end, on the in-memory backends and on SQS/DynamoDB/S3
//! served by moto: verified in one pass, archived by the receiver (the claim check), enqueued
//! as a pointer far under the queue's limit, read back by the processor, and forwarded byte
//! for byte to a destination on 127.0.0.1 — whose copy the independent `standardwebhooks`
//! PyPI package verifies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hookgate_core::envelope::QueuedEvent;
use hookgate_core::event_source::EventSource;
use hookgate_core::ledger::PayloadStore;
use hookgate_core::{
    Config, EventId, EventStatus, Handlers, IncomingRequest, Processor, Receiver, Timestamp,
};
use hookgate_testkit::pipeline::Pipeline;
use hookgate_testkit::sink::{Answer, Recorded, Sink};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

const FORWARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const FIVE_MB: usize = 5 * 1024 * 1024;

fn config(sink_url: &str) -> Config {
    Config::from_toml(&format!(
        r#"
[sources.gh]
scheme = "github"
secrets = ["large-payloads-github-secret"]

[sources.gh.forward]
url = "{sink_url}"
secret = "{FORWARD_SECRET}"
allow_http = true
allow_private_networks = true
timeout_ms = 15000

[processor]
max_receive_count = 3
visibility_timeout_secs = 20
handler_timeout_secs = 18
wait_time_ms = 500
"#
    ))
    .unwrap()
}

/// A GitHub `push`-shaped body of exactly `n` bytes.
fn push_body(n: usize) -> Vec<u8> {
    let mut s = String::from(r#"{"ref":"refs/heads/main","commits":["#);
    let mut i = 0u32;
    while s.len() < n - 64 {
        s.push_str(&format!(
            r#"{{"id":"{:040x}","message":"commit n\u00b0{i} caf\u00e9","added":["src/{i}.rs"]}},"#,
            u128::from(i) * 0x9e37_79b9_7f4a_7c15
        ));
        i += 1;
    }
    s.push_str(r#"{"id":"end"}],"pad":""#);
    while s.len() < n - 2 {
        s.push('x');
    }
    s.push_str("\"}");
    assert_eq!(s.len(), n);
    s.into_bytes()
}

fn verify_with_standardwebhooks(seen: &Recorded) -> Option<Result<(), String>> {
    let python = hookgate_testkit::python::python()?;
    let payload = serde_json::to_vec(&serde_json::json!({
        "headers": seen.headers,
        "body": base64::engine::general_purpose::STANDARD.encode(&seen.body),
    }))
    .unwrap();
    let script = r#"
import base64, json, sys
from standardwebhooks.webhooks import Webhook
r = json.load(sys.stdin)
Webhook(sys.argv[1]).verify(base64.b64decode(r["body"]), r["headers"])
print("verified")
"#;
    let (ok, out, err) =
        hookgate_testkit::python::run(&python, script, &[FORWARD_SECRET], &payload);
    Some(if ok && out == "verified" {
        Ok(())
    } else {
        Err(format!("{out}\n{err}"))
    })
}

async fn a_five_megabyte_github_body_is_claim_checked_and_forwarded_byte_for_byte(p: Pipeline) {
    let sink = Sink::start(Vec::new(), Answer::ok()).await;
    let config = config(&sink.url("/hooks"));
    let receiver =
        Receiver::new(&config, p.ledger.clone(), p.queue.clone()).with_archive(p.archive.clone());
    let body = push_body(FIVE_MB);
    let mut headers = HeaderMap::new();
    for (k, v) in config.sign("gh", &body, Timestamp::from_secs(0)).unwrap() {
        headers.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(&v).unwrap(),
        );
    }
    headers.insert("x-github-event", HeaderValue::from_static("push"));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let reply = receiver
        .handle(IncomingRequest {
            method: Method::POST,
            source: "gh".into(),
            headers,
            body: Bytes::from(body.clone()),
            trace_header: None,
        })
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    let id = EventId::parse(reply.body["event_id"].as_str().unwrap()).unwrap();

    // On the queue: a pointer, a few hundred bytes, not the body.
    let held = p.queue.receive(1, Duration::from_secs(1)).await.unwrap();
    assert_eq!(held.len(), 1);
    assert!(held[0].body.len() < 2048, "{} bytes", held[0].body.len());
    let queued = QueuedEvent::from_message(&held[0].body).unwrap();
    let pointer = queued.pointer.expect("a pointer message");
    assert_eq!(pointer.size, FIVE_MB as u64);
    assert_eq!(pointer.sha256, hookgate_core::archive::sha256_hex(&body));
    p.queue
        .change_visibility(&held[0].receipt_handle, Duration::ZERO)
        .await
        .unwrap();

    let handlers = Handlers::new()
        .with_forwarding(config.destinations())
        .unwrap();
    let processor = Processor::new(&config, p.ledger.clone(), p.queue.clone(), handlers)
        .with_archive(p.archive.clone());
    let source = EventSource::new(p.queue.clone(), Arc::new(processor));
    let deadline = Instant::now() + Duration::from_secs(90);
    let record = loop {
        source.poll_once().await.unwrap();
        let record = p.ledger.get(&id).await.unwrap().unwrap();
        if record.status == EventStatus::Processed {
            break record;
        }
        assert!(Instant::now() < deadline, "{record:?}");
    };
    let info = record.payload.expect("payload recorded");
    assert_eq!(
        (info.bytes, info.stored),
        (FIVE_MB as u64, PayloadStore::Archive)
    );

    let seen = sink.requests();
    assert_eq!(seen.len(), 1, "delivered once");
    assert!(
        seen[0].body == body,
        "the destination got the bytes the provider sent"
    );
    assert_eq!(seen[0].headers["webhook-id"], id.as_str());
    if let Some(verdict) = verify_with_standardwebhooks(&seen[0]) {
        verdict.unwrap();
        let mut tampered = seen[0].clone();
        tampered.body[FIVE_MB / 2] ^= 1;
        assert!(verify_with_standardwebhooks(&tampered).unwrap().is_err());
    }
}

#[tokio::test]
async fn memory() {
    a_five_megabyte_github_body_is_claim_checked_and_forwarded_byte_for_byte(Pipeline::memory(
        3,
        Duration::from_secs(20),
    ))
    .await;
}

#[tokio::test]
async fn moto() {
    let Some(p) = Pipeline::moto(3, 20).await else {
        eprintln!("skipped: no moto");
        return;
    };
    a_five_megabyte_github_body_is_claim_checked_and_forwarded_byte_for_byte(p).await;
}
