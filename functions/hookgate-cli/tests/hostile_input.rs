//! Hostile input over real HTTP: a table of bad requests, written byte for byte on a TCP
//! socket (so paths, methods and header bytes arrive exactly as a hostile client sends them) to
//! an embedded local stack on 127.0.0.1 whose ledger and queue the test holds. Every row gets
//! its documented status and `error` code, in JSON; after the table nothing has reached the
//! queue or the ledger, and neither was even asked to claim or enqueue.
//!
//! Also: the content type never decides (the signature does), and replays with an altered
//! unsigned id are duplicates while an altered signed id is refused.

use std::sync::Arc;
use std::time::Duration;

use hookgate_cli::local::LocalStack;
use hookgate_core::faults::{Faults, FaultyLedger, FaultyQueue};
use hookgate_core::ledger::ListQuery;
use hookgate_core::memory::{MemoryLedger, MemoryQueue};
use hookgate_core::{Clock, Config, Envelope, Handlers, Ledger, Queue, SystemClock, Timestamp};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "../../hookgate-core/tests/support/mod.rs"]
mod support;

const STANDARD_SECRET: &str = "whsec_aG9va2dhdGUtbG9jYWwtc3RhbmRhcmQtc2VjcmV0ISE=";
const MAX_BODY: usize = 4096;

fn config() -> Config {
    Config::from_toml(&format!(
        r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["local-demo-s3cr3t"]
[sources.standard]
scheme = "standard"
secrets = ["{STANDARD_SECRET}"]
[sources.svix]
scheme = "svix"
secrets = ["{STANDARD_SECRET}"]
[sources.stripe]
scheme = "stripe"
secrets = ["whsec_local_stripe_secret"]
[sources.github]
scheme = "github"
secrets = ["local-github-secret"]
[sources.shopify]
scheme = "shopify"
secrets = ["local-shopify-secret"]
[sources.slack]
scheme = "slack"
secrets = ["local-slack-signing-secret"]

[receiver]
max_body_bytes = {MAX_BODY}

[processor]
visibility_timeout_secs = 1
"#
    ))
    .expect("test config is valid")
}

/// One request exactly as written on the wire.
#[derive(Clone, Debug)]
struct Raw {
    method: String,
    path: String,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    /// `Content-Length` to declare instead of the body's length (the body is then not sent).
    declared_length: Option<usize>,
    /// Send the body with `Transfer-Encoding: chunked`.
    chunked: bool,
}

impl Raw {
    fn post(source: &str, body: &[u8]) -> Self {
        Self {
            method: "POST".into(),
            path: format!("/webhooks/{source}"),
            headers: vec![(b"content-type".to_vec(), b"application/json".to_vec())],
            body: body.to_vec(),
            declared_length: None,
            chunked: false,
        }
    }

    /// A POST to `source` with the headers its provider would send for `body` at `at`.
    fn signed(source: &str, body: &[u8], at: Timestamp) -> Self {
        let mut raw = Self::post(source, body);
        for (name, value) in config()
            .sign(source, body, at)
            .expect("the source is configured")
        {
            raw.headers.push((name.into_bytes(), value.into_bytes()));
        }
        raw
    }

    fn now_signed(source: &str, body: &[u8]) -> Self {
        Self::signed(source, body, SystemClock.now())
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// Sets (replaces) a header, with raw bytes.
    fn set(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name.as_bytes()));
        self.headers.push((name.as_bytes().to_vec(), value.into()));
        self
    }

    /// Adds a header line, keeping any others of that name.
    fn add(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.as_bytes().to_vec(), value.into()));
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name.as_bytes()));
        self
    }

    fn method(mut self, method: &str) -> Self {
        self.method = method.into();
        self
    }

    fn path(mut self, path: &str) -> Self {
        self.path = path.into();
        self
    }

    fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.path).into_bytes();
        out.extend_from_slice(b"host: 127.0.0.1\r\nconnection: close\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if self.chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            for chunk in self.body.chunks(1024) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else if let Some(n) = self.declared_length {
            out.extend_from_slice(format!("content-length: {n}\r\n\r\n").as_bytes());
        } else {
            out.extend_from_slice(
                format!("content-length: {}\r\n\r\n", self.body.len()).as_bytes(),
            );
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// An answer as read off the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Writes `raw` on a fresh connection and reads the answer to the end (`connection: close`).
async fn send(base: &str, raw: &Raw) -> Answer {
    let mut stream = TcpStream::connect(base).await.expect("connect");
    // The server may answer (413, 431) and close before reading everything: a short write is
    // fine, the answer is what counts.
    let _ = stream.write_all(&raw.bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer head: {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    let content_type = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned());
    Answer {
        status,
        content_type,
        body: buf[split + 4..].to_vec(),
    }
}

struct Stack {
    addr: String,
    ledger: Arc<MemoryLedger>,
    queue: Arc<MemoryQueue>,
    faults: Arc<Faults>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The whole local stack (receiver routes and processor) on 127.0.0.1, over ports the test
/// holds, each wrapped to count the calls made to it.
async fn stack() -> Stack {
    let config = config();
    let ledger = Arc::new(MemoryLedger::new());
    let queue = Arc::new(MemoryQueue::new(config.processor.visibility_timeout()));
    let faults = Faults::new();
    let stack = LocalStack::new(
        &config,
        Arc::new(FaultyLedger::new(ledger.clone(), faults.clone())),
        Arc::new(FaultyQueue::new(queue.clone(), faults.clone())),
        Handlers::new(),
    )
    .expect("stack");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(stack.serve(listener, async move {
        let _ = stopped.await;
    }));
    Stack {
        addr,
        ledger,
        queue,
        faults,
        _stop: stop,
    }
}

/// The bad requests, each with its documented status and code.
fn bad_requests() -> Vec<(&'static str, Raw, u16, &'static str)> {
    let now = SystemClock.now();
    let hour_ago = now.minus(Duration::from_secs(3600));
    let in_an_hour = now.plus(Duration::from_secs(3600));
    let body: &[u8] = br#"{"id":"evt_hostile_1","type":"order.created"}"#;
    let other: &[u8] = br#"{"id":"evt_hostile_2","type":"order.created"}"#;
    let demo = Raw::now_signed("demo", body);
    let github = Raw::now_signed("github", body);
    let stripe = Raw::now_signed("stripe", body);
    let standard = Raw::now_signed("standard", body);
    let shopify = Raw::now_signed("shopify", body);
    let slack = Raw::now_signed("slack", body);
    let demo_sig = demo.header("x-signature").unwrap();
    let demo_hex = demo_sig.trim_start_matches("sha256=").to_owned();
    let github_sig = github.header("x-hub-signature-256").unwrap();
    let stripe_sig = stripe.header("stripe-signature").unwrap();
    let stripe_v1 = stripe_sig.split(",v1=").nth(1).unwrap().to_owned();
    let stripe_t = stripe_sig.split(',').next().unwrap().to_owned();
    let standard_sig = standard.header("webhook-signature").unwrap();
    let shopify_sig = shopify.header("x-shopify-hmac-sha256").unwrap();
    let slack_sig = slack.header("x-slack-signature").unwrap();
    let other_signed = Raw::now_signed("demo", other)
        .header("x-signature")
        .unwrap();

    let unauthorized = 401;
    vec![
        // hmac-sha256 (the generic scheme)
        (
            "demo: no signature header",
            demo.clone().without("x-signature"),
            unauthorized,
            "signature_missing",
        ),
        (
            "demo: empty signature header",
            demo.clone().set("x-signature", ""),
            unauthorized,
            "signature_malformed",
        ),
        (
            "demo: wrong prefix",
            demo.clone().set("x-signature", format!("sha1={demo_hex}")),
            unauthorized,
            "signature_malformed",
        ),
        (
            "demo: bad hex",
            demo.clone()
                .set("x-signature", format!("sha256={}", "zz".repeat(32))),
            unauthorized,
            "signature_malformed",
        ),
        (
            "demo: wrong length",
            demo.clone()
                .set("x-signature", format!("sha256={}", &demo_hex[..40])),
            unauthorized,
            "signature_malformed",
        ),
        (
            "demo: signature header twice (valid, then junk)",
            demo.clone().add("x-signature", "sha256=00"),
            unauthorized,
            "signature_malformed",
        ),
        (
            "demo: signature header twice (junk, then valid)",
            demo.clone()
                .without("x-signature")
                .add("x-signature", "sha256=00")
                .add("x-signature", demo_sig.clone()),
            unauthorized,
            "signature_malformed",
        ),
        (
            "demo: a valid signature of another body",
            demo.clone().set("x-signature", other_signed),
            unauthorized,
            "signature_mismatch",
        ),
        (
            "demo: invalid UTF-8 in the signature header",
            demo.clone()
                .set("x-signature", b"sha256=\xff\xfe\x80".to_vec()),
            unauthorized,
            "signature_malformed",
        ),
        (
            "demo: oversized signature header",
            demo.clone()
                .set("x-signature", format!("sha256={}", "a".repeat(5000))),
            unauthorized,
            "signature_malformed",
        ),
        // GitHub
        (
            "github: the SHA-1 header only",
            github.clone().without("x-hub-signature-256").set(
                "x-hub-signature",
                "sha1=0123456789abcdef0123456789abcdef01234567",
            ),
            unauthorized,
            "signature_missing",
        ),
        (
            "github: sha1= prefix in the SHA-256 header",
            github.clone().set(
                "x-hub-signature-256",
                github_sig.replace("sha256=", "sha1="),
            ),
            unauthorized,
            "signature_malformed",
        ),
        (
            "github: upper-case hex of another body",
            github
                .clone()
                .set("x-hub-signature-256", format!("sha256={}", "AB".repeat(32))),
            unauthorized,
            "signature_mismatch",
        ),
        // Stripe
        (
            "stripe: v0 only",
            stripe
                .clone()
                .set("stripe-signature", format!("{stripe_t},v0={stripe_v1}")),
            unauthorized,
            "signature_malformed",
        ),
        (
            "stripe: no timestamp",
            stripe
                .clone()
                .set("stripe-signature", format!("v1={stripe_v1}")),
            unauthorized,
            "signature_malformed",
        ),
        (
            "stripe: bad hex in v1",
            stripe
                .clone()
                .set("stripe-signature", format!("{stripe_t},v1=xyz")),
            unauthorized,
            "signature_malformed",
        ),
        (
            "stripe: an hour old",
            Raw::signed("stripe", body, hour_ago),
            unauthorized,
            "timestamp_out_of_tolerance",
        ),
        (
            "stripe: an hour ahead",
            Raw::signed("stripe", body, in_an_hour),
            unauthorized,
            "timestamp_out_of_tolerance",
        ),
        // Standard Webhooks and Svix
        (
            "standard: v1a only",
            standard
                .clone()
                .set("webhook-signature", standard_sig.replace("v1,", "v1a,")),
            unauthorized,
            "signature_malformed",
        ),
        (
            "standard: bad base64",
            standard
                .clone()
                .set("webhook-signature", "v1,!!!not-base64!!!"),
            unauthorized,
            "signature_malformed",
        ),
        (
            "standard: no webhook-id",
            standard.clone().without("webhook-id"),
            unauthorized,
            "signature_missing",
        ),
        (
            "standard: timestamp not a number",
            standard.clone().set("webhook-timestamp", "yesterday"),
            unauthorized,
            "signature_malformed",
        ),
        (
            "standard: an hour old",
            Raw::signed("standard", body, hour_ago),
            unauthorized,
            "timestamp_out_of_tolerance",
        ),
        (
            "standard: an hour ahead",
            Raw::signed("standard", body, in_an_hour),
            unauthorized,
            "timestamp_out_of_tolerance",
        ),
        (
            "svix: no svix-signature",
            Raw::now_signed("svix", body).without("svix-signature"),
            unauthorized,
            "signature_missing",
        ),
        // Shopify
        (
            "shopify: hex instead of base64",
            shopify
                .clone()
                .set("x-shopify-hmac-sha256", hex::encode([7u8; 32])),
            unauthorized,
            "signature_malformed",
        ),
        (
            "shopify: base64 of the wrong length",
            shopify
                .clone()
                .set("x-shopify-hmac-sha256", &shopify_sig[..20]),
            unauthorized,
            "signature_malformed",
        ),
        // Slack
        (
            "slack: v1= version",
            slack
                .clone()
                .set("x-slack-signature", slack_sig.replace("v0=", "v1=")),
            unauthorized,
            "signature_malformed",
        ),
        (
            "slack: an hour old",
            Raw::signed("slack", body, hour_ago),
            unauthorized,
            "timestamp_out_of_tolerance",
        ),
        (
            "slack: an hour ahead",
            Raw::signed("slack", body, in_an_hour),
            unauthorized,
            "timestamp_out_of_tolerance",
        ),
        // Bodies
        (
            "empty body, signed",
            Raw::now_signed("demo", b""),
            400,
            "malformed_body",
        ),
        (
            "body over max_body_bytes, declared",
            Raw {
                declared_length: Some(MAX_BODY + 1),
                ..demo.clone()
            },
            413,
            "body_too_large",
        ),
        (
            "body over max_body_bytes, chunked",
            Raw {
                chunked: true,
                ..Raw::now_signed("demo", &vec![b'x'; MAX_BODY + 1])
            },
            413,
            "body_too_large",
        ),
        (
            "invalid UTF-8 body, signature of another body",
            demo.clone().body(b"\xff\xfe{\"type\":\"x\"}\xc3\x28"),
            unauthorized,
            "signature_mismatch",
        ),
        // Content types do not decide; a bad signature is refused whatever they say.
        (
            "text/plain, altered body",
            demo.clone()
                .set("content-type", "text/plain")
                .body(b"{\"type\":\"order.deleted\"}"),
            unauthorized,
            "signature_mismatch",
        ),
        (
            "multipart, no signature",
            demo.clone()
                .set("content-type", "multipart/form-data; boundary=x")
                .without("x-signature"),
            unauthorized,
            "signature_missing",
        ),
        (
            "invalid UTF-8 content type, altered body",
            demo.clone()
                .set("content-type", b"application/\xff".to_vec())
                .body(b"{}"),
            unauthorized,
            "signature_mismatch",
        ),
        // Paths
        (
            "unknown source",
            demo.clone().path("/webhooks/nope"),
            404,
            "unknown_source",
        ),
        (
            "traversal ..%2F",
            demo.clone().path("/webhooks/..%2Fdemo"),
            404,
            "unknown_source",
        ),
        (
            "encoded slash",
            demo.clone().path("/webhooks/demo%2Fx"),
            404,
            "unknown_source",
        ),
        (
            "encoded dots",
            demo.clone().path("/webhooks/%2e%2e"),
            404,
            "unknown_source",
        ),
        (
            "raw dot segments",
            demo.clone().path("/webhooks/../webhooks/demo"),
            404,
            "not_found",
        ),
        (
            "upper case",
            demo.clone().path("/webhooks/DEMO"),
            404,
            "unknown_source",
        ),
        (
            "unicode",
            demo.clone().path("/webhooks/d%C3%A9mo"),
            404,
            "unknown_source",
        ),
        (
            "percent-encoded invalid UTF-8",
            demo.clone().path("/webhooks/%ff%fe"),
            404,
            "unknown_source",
        ),
        (
            "very long name",
            demo.clone()
                .path(&format!("/webhooks/{}", "a".repeat(4000))),
            404,
            "unknown_source",
        ),
        (
            "NUL in the name",
            demo.clone().path("/webhooks/demo%00"),
            404,
            "unknown_source",
        ),
        (
            "no source",
            demo.clone().path("/webhooks/"),
            404,
            "not_found",
        ),
        (
            "extra segment",
            demo.clone().path("/webhooks/demo/extra"),
            404,
            "not_found",
        ),
        // Methods
        ("GET", demo.clone().method("GET"), 405, "method_not_allowed"),
        ("PUT", demo.clone().method("PUT"), 405, "method_not_allowed"),
        (
            "DELETE",
            demo.clone().method("DELETE"),
            405,
            "method_not_allowed",
        ),
        (
            "PATCH",
            demo.clone().method("PATCH"),
            405,
            "method_not_allowed",
        ),
        (
            "OPTIONS",
            demo.clone().method("OPTIONS"),
            405,
            "method_not_allowed",
        ),
        // Headers
        // Over hookgate's 10 KiB but within hyper's 16 KiB buffer, so answered in JSON (a head
        // over hyper's buffer gets hyper's bare 431: slow_clients.rs).
        (
            "one header of 12 KiB",
            demo.clone().add("x-padding", "p".repeat(12 * 1024)),
            431,
            "headers_too_large",
        ),
        (
            "150 header lines",
            (0..150).fold(demo.clone(), |r, i| r.add(&format!("x-h{i}"), "1")),
            431,
            "headers_too_large",
        ),
        (
            "headers of 13 KiB",
            (0..13).fold(demo.clone(), |r, i| {
                r.add(&format!("x-big{i}"), "b".repeat(1024))
            }),
            431,
            "headers_too_large",
        ),
    ]
}

#[tokio::test]
async fn every_bad_request_gets_its_status_and_code_and_leaves_no_trace() {
    let s = stack().await;
    let rows = bad_requests();
    assert!(rows.len() >= 30, "{} rows", rows.len());
    let mut wrong = Vec::new();
    for (name, raw, status, code) in &rows {
        let answer = send(&s.addr, raw).await;
        let json = answer.json();
        let as_documented = (answer.status, json["error"].as_str()) == (*status, Some(*code))
            && answer.content_type.as_deref() == Some("application/json")
            && json["message"].as_str().is_some_and(|m| !m.is_empty());
        if !as_documented {
            wrong.push(format!(
                "{name}: expected {status} {code}, got {} {:?}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Nothing reached the ports: no claim, no send, no attempt; nothing queued or recorded.
    for operation in ["claim", "send", "start_attempt"] {
        assert_eq!(s.faults.calls(operation), 0, "{operation} was called");
    }
    assert!(s.queue.is_empty());
    assert!(s.ledger.is_empty());
    let listed = s.ledger.list(&ListQuery::default()).await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

/// Waits for the queue to hold `n` messages (the stack's processor may hold them meanwhile:
/// the test's stack has no handler, so they come back after the visibility timeout).
async fn queued_envelopes(queue: &MemoryQueue) -> Vec<Envelope> {
    let messages = queue.receive(10, Duration::from_secs(3)).await.unwrap();
    messages
        .iter()
        .map(|m| Envelope::from_message(&m.body).unwrap())
        .collect()
}

/// The receiver routes only (no processor), so what was enqueued stays on the queue.
async fn routes_only() -> (String, Arc<MemoryLedger>, Arc<MemoryQueue>) {
    let config = config();
    let ledger = Arc::new(MemoryLedger::new());
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let stack = LocalStack::new(&config, ledger.clone(), queue.clone(), Handlers::new()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(hookgate_cli::http_server::serve(
        listener,
        stack.router(),
        std::future::pending(),
    ));
    (addr, ledger, queue)
}

#[tokio::test]
async fn the_signature_decides_not_the_content_type() {
    let (addr, _ledger, queue) = routes_only().await;
    // A validly signed body that is not UTF-8, sent as text/plain: accepted, kept byte for byte.
    let binary: &[u8] = b"\xff\x00\xfebinary\xc3\x28";
    let answer = send(
        &addr,
        &Raw::now_signed("demo", binary).set("content-type", "text/plain"),
    )
    .await;
    assert_eq!(answer.status, 202, "{:?}", answer.json());
    // No content type at all: the same rule.
    let json: &[u8] = br#"{"type":"no.content.type"}"#;
    let answer = send(
        &addr,
        &Raw::now_signed("demo", json).without("content-type"),
    )
    .await;
    assert_eq!(answer.status, 202, "{:?}", answer.json());

    let mut envelopes = queued_envelopes(&queue).await;
    envelopes.sort_by_key(|e| e.body.len());
    assert_eq!(envelopes.len(), 2);
    assert_eq!(&envelopes[0].body[..], binary);
    assert_eq!(envelopes[0].headers["content-type"], "text/plain");
    assert_eq!(&envelopes[1].body[..], json);
    assert!(!envelopes[1].headers.contains_key("content-type"));
}

#[tokio::test]
async fn a_replay_with_an_altered_unsigned_id_is_a_duplicate_and_a_signed_one_is_refused() {
    let (addr, ledger, queue) = routes_only().await;
    let body: &[u8] = br#"{"id":"evt_replay","type":"push"}"#;

    // GitHub: X-GitHub-Delivery is not signed; the dedup key is the body's MAC.
    let first = Raw::now_signed("github", body).set("x-github-delivery", "delivery-1");
    let answer = send(&addr, &first).await;
    assert_eq!(answer.status, 202, "{:?}", answer.json());
    let id = answer.json()["event_id"].clone();
    let replay = first.clone().set("x-github-delivery", "delivery-2-forged");
    // While the event waits in the queue, the receiver that queued it knows the replay for a
    // duplicate (another container would refuse it as in progress); once taken, a duplicate
    // for the ledger too.
    let known = send(&addr, &replay).await;
    assert_eq!(
        (known.status, known.json()["status"].clone()),
        (200, Value::from("duplicate"))
    );
    let event_id = hookgate_core::EventId::parse(id.as_str().unwrap()).unwrap();
    support::taken(ledger.as_ref(), &event_id).await;
    let again = send(&addr, &replay).await;
    assert_eq!(
        (
            again.status,
            again.json()["status"].clone(),
            again.json()["event_id"].clone()
        ),
        (200, Value::from("duplicate"), id)
    );

    // Shopify: X-Shopify-Webhook-Id is not signed either.
    let first = Raw::now_signed("shopify", body).set("x-shopify-webhook-id", "w-1");
    let answer = send(&addr, &first).await;
    assert_eq!(answer.status, 202);
    let event_id = hookgate_core::EventId::parse(answer.json()["event_id"].as_str().unwrap());
    support::taken(ledger.as_ref(), &event_id.unwrap()).await;
    let again = send(&addr, &first.clone().set("x-shopify-webhook-id", "w-2")).await;
    assert_eq!(again.json()["status"], "duplicate");

    // Standard Webhooks and Svix: the id is signed, so changing it breaks the signature.
    for (source, header) in [("standard", "webhook-id"), ("svix", "svix-id")] {
        let first = Raw::now_signed(source, body);
        assert_eq!(send(&addr, &first).await.status, 202, "{source}");
        let forged = first.clone().set(header, "msg_forged_new_id");
        let answer = send(&addr, &forged).await;
        assert_eq!(
            (answer.status, answer.json()["error"].clone()),
            (401, Value::from("signature_mismatch")),
            "{source}"
        );
    }

    // Four events accepted, one message each; the replays added nothing.
    assert_eq!(queue.len(), 4);
    assert_eq!(ledger.len(), 4);
}
