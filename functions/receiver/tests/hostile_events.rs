//! Hostile input through the receiver Lambda's own entry (`App::handle_event`): API Gateway
//! HTTP API (v2) events carrying bad requests, including a body marked `isBase64Encoded` that is
//! not base64 (lambda_http alone would panic on it). Each gets its documented status and code;
//! nothing is claimed or enqueued.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hookgate_core::faults::{Faults, FaultyLedger, FaultyQueue};
use hookgate_core::memory::{MemoryLedger, MemoryQueue};
use hookgate_core::{Clock, Config, SystemClock};
use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent};
use serde_json::{json, Value};

fn config() -> Config {
    Config::from_toml(
        r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["local-demo-s3cr3t"]
[sources.stripe]
scheme = "stripe"
secrets = ["whsec_local_stripe_secret"]
[sources.github]
scheme = "github"
secrets = ["local-github-secret"]
[receiver]
max_body_bytes = 1024
"#,
    )
    .unwrap()
}

/// An HTTP API (v2) event for `method path`, with `headers` and `body` as API Gateway sends.
fn event(method: &str, source: &str, headers: Value, body: &str, base64: bool) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "ANY /webhooks/{source}",
        "rawPath": format!("/webhooks/{source}"),
        "rawQueryString": "",
        "headers": headers,
        "pathParameters": { "source": source },
        "requestContext": {
            "accountId": "123456789012", "apiId": "hookgate",
            "domainName": "hookgate.execute-api.us-east-1.amazonaws.com", "domainPrefix": "hookgate",
            "http": { "method": method, "path": format!("/webhooks/{source}"), "protocol": "HTTP/1.1",
                      "sourceIp": "127.0.0.1", "userAgent": "hostile" },
            "requestId": "hostile", "routeKey": "ANY /webhooks/{source}", "stage": "$default",
            "time": "23/Nov/2026:12:00:00 +0000", "timeEpoch": 1795451527761u64
        },
        "body": body,
        "isBase64Encoded": base64
    })
}

fn signed_headers(source: &str, body: &[u8]) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    map.insert("content-type".into(), "application/json".into());
    for (name, value) in config().sign(source, body, SystemClock.now()).unwrap() {
        map.insert(name, value.into());
    }
    map
}

fn with(mut map: serde_json::Map<String, Value>, name: &str, value: &str) -> Value {
    map.insert(name.into(), value.into());
    Value::Object(map)
}

fn without(mut map: serde_json::Map<String, Value>, name: &str) -> Value {
    map.remove(name);
    Value::Object(map)
}

#[tokio::test]
async fn bad_requests_through_the_lambda_entry_get_their_status_and_code() {
    let ledger = Arc::new(MemoryLedger::new());
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let faults = Faults::new();
    let app = receiver::App::new(
        &config(),
        Arc::new(FaultyLedger::new(ledger.clone(), faults.clone())),
        Arc::new(FaultyQueue::new(queue.clone(), faults.clone())),
    )
    .unwrap();
    let body = r#"{"id":"evt_1","type":"order.created"}"#;
    let demo = signed_headers("demo", body.as_bytes());
    let stripe = signed_headers("stripe", body.as_bytes());
    let github = signed_headers("github", body.as_bytes());
    let hour_ago = SystemClock.now().minus(Duration::from_secs(3600));
    let old_stripe = config()
        .sign("stripe", body.as_bytes(), hour_ago)
        .unwrap()
        .remove(0)
        .1;
    let binary_signed = signed_headers("demo", b"\xff\xfe");

    let rows: Vec<(&str, Value, u16, &str)> = vec![
        (
            "isBase64Encoded with a body that is not base64",
            event(
                "POST",
                "demo",
                Value::Object(demo.clone()),
                "%%% not base64 %%%",
                true,
            ),
            400,
            "malformed_body",
        ),
        (
            "isBase64Encoded, base64 of another body",
            event("POST", "demo", Value::Object(demo.clone()), "eyJ9", true),
            401,
            "signature_mismatch",
        ),
        (
            "isBase64Encoded, a signature of the decoded bytes, altered",
            event(
                "POST",
                "demo",
                Value::Object(binary_signed.clone()),
                &B64.encode(b"\xff\xff"),
                true,
            ),
            401,
            "signature_mismatch",
        ),
        (
            "empty body",
            event(
                "POST",
                "demo",
                Value::Object(signed_headers("demo", b"")),
                "",
                false,
            ),
            400,
            "malformed_body",
        ),
        (
            "empty base64 body",
            event(
                "POST",
                "demo",
                Value::Object(signed_headers("demo", b"")),
                "",
                true,
            ),
            400,
            "malformed_body",
        ),
        (
            "body over max_body_bytes",
            event(
                "POST",
                "demo",
                Value::Object(demo.clone()),
                &"x".repeat(1025),
                false,
            ),
            413,
            "body_too_large",
        ),
        (
            "no signature",
            event(
                "POST",
                "demo",
                without(demo.clone(), "x-signature"),
                body,
                false,
            ),
            401,
            "signature_missing",
        ),
        (
            "signature of another body",
            event(
                "POST",
                "demo",
                Value::Object(demo.clone()),
                r#"{"id":"evt_2"}"#,
                false,
            ),
            401,
            "signature_mismatch",
        ),
        // API Gateway joins a repeated header with a comma.
        (
            "signature header twice, joined",
            event(
                "POST",
                "demo",
                with(
                    demo.clone(),
                    "x-signature",
                    &format!("{},sha256=00", demo["x-signature"].as_str().unwrap()),
                ),
                body,
                false,
            ),
            401,
            "signature_malformed",
        ),
        (
            "github: SHA-1 header only",
            event(
                "POST",
                "github",
                with(
                    without(github.clone(), "x-hub-signature-256")
                        .as_object()
                        .unwrap()
                        .clone(),
                    "x-hub-signature",
                    "sha1=00",
                ),
                body,
                false,
            ),
            401,
            "signature_missing",
        ),
        (
            "stripe: v0 only",
            event(
                "POST",
                "stripe",
                with(
                    stripe.clone(),
                    "stripe-signature",
                    &stripe["stripe-signature"]
                        .as_str()
                        .unwrap()
                        .replace("v1=", "v0="),
                ),
                body,
                false,
            ),
            401,
            "signature_malformed",
        ),
        (
            "stripe: an hour old",
            event(
                "POST",
                "stripe",
                with(stripe.clone(), "stripe-signature", &old_stripe),
                body,
                false,
            ),
            401,
            "timestamp_out_of_tolerance",
        ),
        (
            "unknown source",
            event("POST", "nope", Value::Object(demo.clone()), body, false),
            404,
            "unknown_source",
        ),
        (
            "traversal",
            event("POST", "../demo", Value::Object(demo.clone()), body, false),
            404,
            "unknown_source",
        ),
        (
            "upper case",
            event("POST", "DEMO", Value::Object(demo.clone()), body, false),
            404,
            "unknown_source",
        ),
        (
            "unicode",
            event("POST", "démo", Value::Object(demo.clone()), body, false),
            404,
            "unknown_source",
        ),
        (
            "GET",
            event("GET", "demo", Value::Object(demo.clone()), body, false),
            405,
            "method_not_allowed",
        ),
        (
            "PUT",
            event("PUT", "demo", Value::Object(demo.clone()), body, false),
            405,
            "method_not_allowed",
        ),
        (
            "DELETE",
            event("DELETE", "demo", Value::Object(demo.clone()), body, false),
            405,
            "method_not_allowed",
        ),
    ];
    for (name, event, status, code) in rows {
        let payload: LambdaRequest = serde_json::from_value(event).unwrap();
        let answer = app
            .handle_event(LambdaEvent::new(payload, Context::default()))
            .await
            .unwrap();
        let answer = serde_json::to_value(answer).unwrap();
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(
            (answer["statusCode"].as_u64(), body["error"].as_str()),
            (Some(u64::from(status)), Some(code)),
            "{name}: {body}"
        );
        assert_eq!(
            answer["headers"]["content-type"], "application/json",
            "{name}"
        );
    }
    for operation in ["claim", "send"] {
        assert_eq!(faults.calls(operation), 0, "{operation} was called");
    }
    assert!(queue.is_empty() && ledger.is_empty());
}

#[tokio::test]
async fn a_valid_base64_body_is_accepted_through_the_lambda_entry() {
    let ledger = Arc::new(MemoryLedger::new());
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let app = receiver::App::new(&config(), ledger, queue.clone()).unwrap();
    let bytes: &[u8] = b"\xff\x00binary\xfe";
    let e = event(
        "POST",
        "demo",
        Value::Object(signed_headers("demo", bytes)),
        &B64.encode(bytes),
        true,
    );
    let payload: LambdaRequest = serde_json::from_value(e).unwrap();
    let answer = app
        .handle_event(LambdaEvent::new(payload, Context::default()))
        .await
        .unwrap();
    let answer = serde_json::to_value(answer).unwrap();
    assert_eq!(answer["statusCode"], 202, "{answer}");
    let message = &hookgate_core::Queue::receive(&*queue, 1, Duration::ZERO)
        .await
        .unwrap()[0];
    let envelope = hookgate_core::Envelope::from_message(&message.body).unwrap();
    assert_eq!(&envelope.body[..], bytes);
}
