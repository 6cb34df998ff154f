//! The receiver core on in-memory ports: every answer it gives, and what it leaves behind.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookgate_core::faults::{Faults, FaultyLedger, FaultyQueue};
use hookgate_core::memory::{MemoryLedger, MemoryQueue};
use hookgate_core::{
    Config, EventId, EventStatus, IncomingRequest, Ledger, ManualClock, Queue, Receiver, Timestamp,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

mod support;
use support::taken;

const CONFIG: &str = r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["local-demo-s3cr3t", "old-local-secret"]

[receiver]
max_body_bytes = 64
claim_timeout_secs = 60
dedup_window_secs = 3600
"#;

struct Fixture {
    receiver: Receiver,
    ledger: Arc<MemoryLedger>,
    queue: Arc<MemoryQueue>,
    faults: Arc<Faults>,
    clock: Arc<ManualClock>,
}

fn fixture() -> Fixture {
    let config = Config::from_toml(CONFIG).unwrap();
    let ledger = Arc::new(MemoryLedger::new());
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let faults = Faults::new();
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_800_000_000)));
    let receiver = Receiver::new(
        &config,
        Arc::new(FaultyLedger::new(ledger.clone(), faults.clone())),
        Arc::new(FaultyQueue::new(queue.clone(), faults.clone())),
    )
    .with_clock(clock.clone());
    Fixture {
        receiver,
        ledger,
        queue,
        faults,
        clock,
    }
}

/// A second receiver on the same ledger and queue: another Lambda container.
fn another_container(f: &Fixture) -> Receiver {
    Receiver::new(
        &Config::from_toml(CONFIG).unwrap(),
        Arc::new(FaultyLedger::new(f.ledger.clone(), f.faults.clone())),
        Arc::new(FaultyQueue::new(f.queue.clone(), f.faults.clone())),
    )
    .with_clock(f.clock.clone())
}

fn request(f: &Fixture, source: &str, body: &[u8]) -> IncomingRequest {
    let mut headers = HeaderMap::new();
    for (k, v) in f.receiver.sign("demo", body).unwrap() {
        headers.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(&v).unwrap(),
        );
    }
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    IncomingRequest {
        method: Method::POST,
        source: source.into(),
        headers,
        body: Bytes::copy_from_slice(body),
        trace_header: None,
    }
}

fn event_id(reply: &hookgate_core::Reply) -> EventId {
    EventId::parse(reply.body["event_id"].as_str().unwrap()).unwrap()
}

async fn queued_ids(q: &MemoryQueue) -> Vec<String> {
    q.receive(10, Duration::ZERO)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.attributes["event_id"].clone())
        .collect()
}

#[tokio::test]
async fn signed_event_is_claimed_queued_and_answered_202() {
    let f = fixture();
    let reply = f
        .receiver
        .handle(request(&f, "demo", br#"{"type":"push"}"#))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    assert_eq!(reply.body["status"], "queued");
    let id = event_id(&reply);
    assert_eq!(reply.body["status_url"], format!("/events/{id}"));

    // The receiver's last write is the claim: `received` until the processor takes it.
    let record = f.ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Received);
    assert_eq!(record.event_type, "push");
    assert_eq!(
        record.expires_at,
        Timestamp::from_secs(1_800_000_000 + 3600)
    );

    let messages = f.queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(messages.len(), 1);
    let envelope = hookgate_core::Envelope::from_message(&messages[0].body).unwrap();
    assert_eq!(envelope.event_id, id);
    assert_eq!(&envelope.body[..], br#"{"type":"push"}"#);
    assert_eq!(envelope.headers["content-type"], "application/json");
    assert!(
        envelope.headers.keys().all(|h| h != "x-signature"),
        "signatures are not kept"
    );
}

#[tokio::test]
async fn replay_is_a_duplicate_and_enqueues_nothing() {
    let f = fixture();
    let first = f.receiver.handle(request(&f, "demo", b"{}")).await;
    taken(f.ledger.as_ref(), &event_id(&first)).await;
    let again = f.receiver.handle(request(&f, "demo", b"{}")).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(event_id(&again), event_id(&first));
    assert_eq!(f.queue.len(), 1);
}

#[tokio::test]
async fn the_dedup_window_ends() {
    let f = fixture();
    f.receiver.handle(request(&f, "demo", b"{}")).await;
    f.clock.advance(Duration::from_secs(3601));
    let later = f.receiver.handle(request(&f, "demo", b"{}")).await;
    assert_eq!(later.status, StatusCode::ACCEPTED);
    assert_eq!(f.queue.len(), 2);
}

#[tokio::test]
async fn the_trace_header_goes_to_the_queue_when_well_formed() {
    let f = fixture();
    let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let traced = IncomingRequest {
        trace_header: Some(header.to_owned()),
        ..request(&f, "demo", br#"{"n":1}"#)
    };
    assert_eq!(f.receiver.handle(traced).await.status, StatusCode::ACCEPTED);
    // A malformed header is dropped; the event is accepted all the same.
    let malformed = IncomingRequest {
        trace_header: Some("Root=1-nothex;Parent=x y".to_owned()),
        ..request(&f, "demo", br#"{"n":2}"#)
    };
    assert_eq!(
        f.receiver.handle(malformed).await.status,
        StatusCode::ACCEPTED
    );
    let untraced = request(&f, "demo", br#"{"n":3}"#);
    assert_eq!(
        f.receiver.handle(untraced).await.status,
        StatusCode::ACCEPTED
    );

    let messages = f.queue.receive(10, Duration::ZERO).await.unwrap();
    let mut headers: Vec<(Vec<u8>, Option<String>)> = messages
        .iter()
        .map(|m| {
            let body = hookgate_core::Envelope::from_message(&m.body).unwrap().body;
            (body.to_vec(), m.trace_header.clone())
        })
        .collect();
    headers.sort();
    assert_eq!(
        headers,
        [
            (br#"{"n":1}"#.to_vec(), Some(header.to_owned())),
            (br#"{"n":2}"#.to_vec(), None),
            (br#"{"n":3}"#.to_vec(), None),
        ]
    );
}

#[tokio::test]
async fn enqueue_failure_after_the_claim_does_not_turn_the_retry_into_a_duplicate() {
    let f = fixture();
    f.faults.fail_next("send", 1);
    let first = f.receiver.handle(request(&f, "demo", b"{\"n\":1}")).await;
    assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(first.error_code(), Some("queue_unavailable"));
    assert!(f.queue.is_empty());
    assert!(f.ledger.is_empty(), "the claim was released");

    let retry = f.receiver.handle(request(&f, "demo", b"{\"n\":1}")).await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{retry:?}");
    assert_eq!(
        queued_ids(&f.queue).await,
        vec![event_id(&retry).to_string()]
    );
}

#[tokio::test]
async fn a_claim_whose_release_failed_is_in_progress_then_taken_over() {
    let f = fixture();
    f.faults.fail_next("send", 1);
    f.faults.fail_next("release", 1);
    let first = f.receiver.handle(request(&f, "demo", b"{}")).await;
    assert_eq!(first.error_code(), Some("queue_unavailable"));

    // Not a duplicate: the provider is told to retry.
    let soon = f.receiver.handle(request(&f, "demo", b"{}")).await;
    assert_eq!(soon.status, StatusCode::CONFLICT);
    assert_eq!(soon.error_code(), Some("event_in_progress"));
    assert!(f.queue.is_empty());

    f.clock.advance(Duration::from_secs(61));
    let later = f.receiver.handle(request(&f, "demo", b"{}")).await;
    assert_eq!(later.status, StatusCode::ACCEPTED);
    assert_eq!(f.queue.len(), 1);
}

#[tokio::test]
async fn ledger_down_is_503_and_nothing_is_enqueued() {
    let f = fixture();
    f.faults.fail_next("claim", 1);
    let reply = f.receiver.handle(request(&f, "demo", b"{}")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.error_code(), Some("ledger_unavailable"));
    assert!(f.queue.is_empty());
}

/// The provider's path makes two calls for a new event, the claim and the enqueue; the event
/// stays `received` until the processor takes it. The container that queued it knows it is
/// queued, and answers a repeat `200 duplicate` without asking the ledger; another container
/// cannot tell a queued event from one whose receiver died before the enqueue, so it refuses
/// the repeat as in progress (409), never answering it as a duplicate.
#[tokio::test]
async fn a_new_event_is_one_ledger_write_and_one_enqueue() {
    let f = fixture();
    let reply = f.receiver.handle(request(&f, "demo", b"{}")).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(reply.body["status"], "queued");
    let calls = |op| f.faults.calls(op);
    assert_eq!((calls("claim"), calls("send")), (1, 1));
    let ledger_calls = || -> u32 {
        ["claim", "release", "get", "start_attempt", "finish_attempt"]
            .iter()
            .map(|op| calls(op))
            .sum()
    };
    assert_eq!(ledger_calls(), 1, "only the claim touches the ledger");
    let id = EventId::parse(reply.body["event_id"].as_str().unwrap()).unwrap();
    let record = f.ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Received);
    assert_eq!(f.queue.len(), 1);

    let again = f.receiver.handle(request(&f, "demo", b"{}")).await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(event_id(&again), id);
    assert_eq!(ledger_calls(), 1, "the repeat was answered from memory");
    assert_eq!(calls("send"), 1);

    let elsewhere = another_container(&f)
        .handle(request(&f, "demo", b"{}"))
        .await;
    assert_eq!(elsewhere.status, StatusCode::CONFLICT, "{elsewhere:?}");
    assert_eq!(elsewhere.error_code(), Some("event_in_progress"));
    assert_eq!((calls("claim"), calls("send")), (2, 1));
    assert_eq!(f.queue.len(), 1);
}

/// What a container remembers is a shortcut to the ledger's answer, never past it: a quarter
/// of the dedup window here (15 minutes at most, and never more than half the shortest window),
/// after which a repeat asks the ledger again; and an event whose enqueue failed is not
/// remembered.
#[tokio::test]
async fn a_remembered_event_is_forgotten_long_before_its_window_ends() {
    let f = fixture();
    f.receiver.handle(request(&f, "demo", b"{}")).await;
    f.clock.advance(Duration::from_secs(14 * 60));
    let soon = f.receiver.handle(request(&f, "demo", b"{}")).await;
    assert_eq!(soon.body["status"], "duplicate");
    assert_eq!(f.faults.calls("claim"), 1);

    f.clock.advance(Duration::from_secs(60));
    let later = f.receiver.handle(request(&f, "demo", b"{}")).await;
    assert_eq!(f.faults.calls("claim"), 2, "asked the ledger: {later:?}");

    f.faults.fail_next("send", 1);
    let failed = f.receiver.handle(request(&f, "demo", b"{\"n\":2}")).await;
    assert_eq!(failed.error_code(), Some("queue_unavailable"));
    let retried = f.receiver.handle(request(&f, "demo", b"{\"n\":2}")).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{retried:?}");
    assert_eq!(f.faults.calls("claim"), 4);
}

#[tokio::test]
async fn bad_requests_get_their_status_and_code_and_leave_no_trace() {
    let f = fixture();
    let good = request(&f, "demo", b"{}");
    let mut cases: Vec<(IncomingRequest, StatusCode, &str)> = Vec::new();

    let mut r = good.clone();
    r.method = Method::GET;
    cases.push((r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
    for source in ["nope", "../demo", "DEMO", "", "demo/x"] {
        let mut r = good.clone();
        r.source = source.into();
        cases.push((r, StatusCode::NOT_FOUND, "unknown_source"));
    }
    cases.push((
        request(&f, "demo", &[b'x'; 65]),
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    ));
    cases.push((
        request(&f, "demo", b""),
        StatusCode::BAD_REQUEST,
        "malformed_body",
    ));
    let mut r = good.clone();
    r.headers.remove("x-signature");
    cases.push((r, StatusCode::UNAUTHORIZED, "signature_missing"));
    let mut r = good.clone();
    r.headers
        .insert("x-signature", HeaderValue::from_static("sha256=nothex"));
    cases.push((r, StatusCode::UNAUTHORIZED, "signature_malformed"));
    let mut r = good.clone();
    r.body = Bytes::from_static(b"{ }");
    cases.push((r, StatusCode::UNAUTHORIZED, "signature_mismatch"));

    for (req, status, code) in cases {
        let desc = format!("{} {:?}", req.method, req.source);
        let reply = f.receiver.handle(req).await;
        assert_eq!(reply.status, status, "{desc}: {reply:?}");
        assert_eq!(reply.error_code(), Some(code), "{desc}");
        assert!(reply.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    assert!(f.queue.is_empty());
    assert!(f.ledger.is_empty());
    assert_eq!(f.faults.calls("claim"), 0);
}

/// A `demo` request for `body`, signed now.
fn signed_demo(receiver: &Receiver, body: Vec<u8>) -> IncomingRequest {
    let mut headers = HeaderMap::new();
    for (k, v) in receiver.sign("demo", &body).unwrap() {
        headers.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(&v).unwrap(),
        );
    }
    IncomingRequest {
        method: Method::POST,
        source: "demo".into(),
        headers,
        body: body.into(),
        trace_header: None,
    }
}

#[tokio::test]
async fn the_encoded_message_must_fit_the_queue() {
    let config =
        Config::from_toml(&CONFIG.replace("max_body_bytes = 64", "max_body_bytes = 2000000"))
            .unwrap();
    let ledger = Arc::new(MemoryLedger::new());
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let receiver = Receiver::new(&config, ledger.clone(), queue.clone());
    // A binary body under max_body_bytes whose base64 in the message is over the queue's limit:
    // refused before anything is claimed.
    let reply = receiver
        .handle(signed_demo(&receiver, vec![0xff; 800 * 1024]))
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(ledger.is_empty() && queue.is_empty());
    // Text travels verbatim, so 1,000,000 bytes of quotes (which a JSON-escaped body would have
    // doubled) fit the 1 MiB message, byte for byte.
    let text = vec![b'"'; 1_000_000];
    let reply = receiver.handle(signed_demo(&receiver, text.clone())).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let message = queue.receive(1, Duration::ZERO).await.unwrap().remove(0);
    assert!(message.body.len() <= hookgate_core::queue::SQS_MAX_MESSAGE_BYTES);
    let envelope = hookgate_core::Envelope::from_message(&message.body).unwrap();
    assert_eq!(envelope.body, text);
}

#[tokio::test]
async fn provider_handshakes_are_answered_and_not_enqueued() {
    let config = Config::from_toml(
        "[sources.slack]\nscheme='slack'\nsecrets=['local-slack-secret']\n[sources.github]\nscheme='github'\nsecrets=['local-github-secret']",
    )
    .unwrap();
    let ledger = Arc::new(MemoryLedger::new());
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let receiver = Receiver::new(&config, ledger.clone(), queue.clone());
    let send = |source: &'static str,
                body: &'static [u8],
                extra: &'static [(&'static str, &'static str)]| {
        let mut headers = HeaderMap::new();
        for (k, v) in receiver.sign(source, body).unwrap() {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(&v).unwrap(),
            );
        }
        for (k, v) in extra {
            headers.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        receiver.handle(IncomingRequest {
            method: Method::POST,
            source: source.into(),
            headers,
            body: Bytes::from_static(body),
            trace_header: None,
        })
    };
    let reply = send("slack", br#"{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#, &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        serde_json::json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    let reply = send(
        "github",
        br#"{"zen":"Keep it logically awesome.","hook_id":42}"#,
        &[("x-github-event", "ping")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["status"], "pong");
    assert!(queue.is_empty() && ledger.is_empty());

    let reply = send(
        "github",
        br#"{"ref":"refs/heads/main"}"#,
        &[("x-github-event", "push")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let message = &queue.receive(1, Duration::ZERO).await.unwrap()[0];
    assert_eq!(message.attributes["event_type"], "push");
    let envelope = hookgate_core::Envelope::from_message(&message.body).unwrap();
    assert_eq!(envelope.headers["x-github-event"], "push");
    assert!(!envelope.headers.contains_key("x-hub-signature-256"));
}

/// A receiver for `config` on fresh in-memory ports, at 1,800,000,000 s.
fn receiver_for(config: &str) -> (Receiver, Arc<MemoryQueue>, Arc<ManualClock>) {
    let (receiver, queue, clock, _) = receiver_and_ledger_for(config);
    (receiver, queue, clock)
}

fn receiver_and_ledger_for(
    config: &str,
) -> (
    Receiver,
    Arc<MemoryQueue>,
    Arc<ManualClock>,
    Arc<MemoryLedger>,
) {
    let config = Config::from_toml(config).unwrap();
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_800_000_000)));
    let ledger = Arc::new(MemoryLedger::new());
    let receiver = Receiver::new(&config, ledger.clone(), queue.clone()).with_clock(clock.clone());
    (receiver, queue, clock, ledger)
}

fn raw_request(source: &str, headers: &[(&str, &str)], body: &[u8]) -> IncomingRequest {
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
        body: Bytes::copy_from_slice(body),
        trace_header: None,
    }
}

#[tokio::test]
async fn a_replay_with_the_id_body_boundary_moved_is_refused_and_enqueues_nothing() {
    // The provider signs `{id}:{body}`. An attacker who captured one request moves the boundary:
    // the same signed bytes, so the same valid MAC, read as another id and another body.
    let (receiver, queue, _) = receiver_for(
        "[sources.orders]\nscheme = 'hmac-sha256'\nsecrets = ['orders-provider-key']\n\
         id_header = 'x-id'\nsigned_content = '{id}:{body}'",
    );
    let body = br#"{"order":1,"total":"42.00"}"#;
    let mac = {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac =
            <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"orders-provider-key").unwrap();
        mac.update(b"evt-42:");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let captured = raw_request("orders", &[("x-signature", &mac), ("x-id", "evt-42")], body);
    let reply = receiver.handle(captured).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    assert_eq!(reply.body["event_id"], "orders:evt-42");

    let moved = raw_request(
        "orders",
        &[("x-signature", &mac), ("x-id", r#"evt-42:{"order""#)],
        br#"1,"total":"42.00"}"#,
    );
    let reply = receiver.handle(moved).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert_eq!(reply.body["error"], "signature_malformed");
    assert_eq!(queued_ids(&queue).await, ["orders:evt-42"]);
}

#[tokio::test]
async fn a_source_may_remember_its_events_longer_than_the_receiver() {
    // github signs no timestamp: a captured delivery verifies forever, so its source keeps its
    // claims a year; the receiver's window (1 hour) applies to the others.
    let (receiver, queue, clock, ledger) = receiver_and_ledger_for(
        "[receiver]\ndedup_window_secs = 3600\n\
         [sources.gh]\nscheme = 'github'\nsecrets = ['gh-webhook-secret-1']\ndedup_window_secs = 31536000\n\
         [sources.demo]\nscheme = 'hmac-sha256'\nsecrets = ['local-demo-s3cr3t']",
    );
    let send = |source: &'static str| {
        let headers = receiver.sign(source, b"{}").unwrap();
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        raw_request(source, &pairs, b"{}")
    };
    for source in ["gh", "demo"] {
        let reply = receiver.handle(send(source)).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        taken(ledger.as_ref(), &event_id(&reply)).await;
    }
    clock.advance(Duration::from_secs(30 * 24 * 3600));
    assert_eq!(
        receiver.handle(send("gh")).await.body["status"],
        "duplicate",
        "a month later the github delivery is still remembered"
    );
    assert_eq!(
        receiver.handle(send("demo")).await.status,
        StatusCode::ACCEPTED,
        "the demo source forgot after an hour"
    );
    assert_eq!(queue.len(), 3);
}

#[tokio::test]
async fn a_v1a_signed_request_is_accepted_and_a_tampered_one_answered_401() {
    // The first case of the ed25519 vectors (signed by Python's `cryptography`, see
    // tests/ed25519.rs): a source holding only the public key, beside an HMAC secret.
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("vectors/ed25519_standard_webhooks.json")).unwrap();
    let case = &fixture["cases"][0];
    let text = |k: &str| case[k].as_str().unwrap().to_owned();
    let (public_key, msg_id, body, signature) = (
        text("public_key"),
        text("msg_id"),
        text("body"),
        text("signature"),
    );
    let timestamp = case["timestamp"].as_i64().unwrap().to_string();
    let (receiver, queue, clock) = receiver_for(&format!(
        "[sources.ed]\nscheme = 'standard'\n\
         secrets = ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', '{public_key}']"
    ));
    clock.set(Timestamp::from_secs(case["timestamp"].as_i64().unwrap()));
    let signed = |body: &[u8], timestamp: &str| {
        raw_request(
            "ed",
            &[
                ("webhook-id", &msg_id),
                ("webhook-timestamp", timestamp),
                ("webhook-signature", &signature),
                ("content-type", "application/json"),
            ],
            body,
        )
    };

    let reply = receiver.handle(signed(body.as_bytes(), &timestamp)).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    assert_eq!(reply.body["event_id"], format!("ed:{msg_id}"));

    let mut tampered = body.clone().into_bytes();
    tampered[10] ^= 1;
    let later = (case["timestamp"].as_i64().unwrap() + 1).to_string();
    for request in [
        signed(&tampered, &timestamp),
        signed(body.as_bytes(), &later),
    ] {
        let reply = receiver.handle(request).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
        assert_eq!(reply.body["error"], "signature_mismatch");
    }
    assert_eq!(queued_ids(&queue).await, [format!("ed:{msg_id}")]);
}
