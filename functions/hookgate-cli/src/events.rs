//! Sample Lambda events: `hookgate events` writes `events/` afresh.
//!
//! Timestamped signature schemes sign the time, so their sample events go stale; this module
//! signs one API Gateway (HTTP API v2) event per configured source with the sample
//! configuration (`events/sample-config.toml`), plus the rejections, a duplicate pair, a REST
//! API v1 event, a base64 body, a status query and a status listing, two SQS batches (one record
//! of them in the version 1 message format), and
//! `env.json` for
//! `sam local invoke --env-vars` / `cargo lambda watch`.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use hookgate_core::envelope::Envelope;
use hookgate_core::queue::attr;
use hookgate_core::{Clock, Config, EventId, SourceName, SystemClock, Timestamp};
use serde_json::{json, Value};

/// A sample body per source: what that provider sends.
fn body_for(source: &str) -> &'static str {
    match source {
        "stripe" => {
            r#"{"id":"evt_sample_1","object":"event","type":"charge.succeeded","data":{"object":{"id":"ch_1","amount":4200}}}"#
        }
        "github" => {
            r#"{"ref":"refs/heads/main","after":"9f1c2e3","repository":{"full_name":"acme/shop"}}"#
        }
        "shopify" => r#"{"id":820982911946154508,"email":"jon@example.com","total_price":"42.00"}"#,
        "slack" => {
            r#"{"type":"event_callback","event_id":"Ev0SAMPLE1","event":{"type":"app_mention","text":"hi"}}"#
        }
        "standard" | "svix" => r#"{"type":"invoice.paid","data":{"invoice":"in_1","amount":4200}}"#,
        _ => r#"{"type":"order.created","order":{"id":1001,"total":"42.00"}}"#,
    }
}

/// Extra unsigned headers a provider sends with its signature.
fn provider_headers(source: &str) -> Vec<(&'static str, &'static str)> {
    match source {
        "github" => vec![
            ("x-github-event", "push"),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ],
        "shopify" => vec![
            ("x-shopify-topic", "orders/create"),
            ("x-shopify-shop-domain", "acme.myshopify.com"),
        ],
        _ => vec![],
    }
}

/// Where an HTTP API event is routed.
struct ApiRoute<'a> {
    method: &'a str,
    path: String,
    route: &'a str,
    /// The path parameters; `Value::Null` for a route without any (API Gateway then leaves
    /// `pathParameters` out).
    params: Value,
    /// The query string's parameters, in order (already URL-safe).
    query: Vec<(&'a str, &'a str)>,
}

impl ApiRoute<'_> {
    fn webhook(source: &str) -> ApiRoute<'static> {
        ApiRoute {
            method: "POST",
            path: format!("/webhooks/{source}"),
            route: "POST /webhooks/{source}",
            params: json!({ "source": source }),
            query: Vec::new(),
        }
    }
}

/// An API Gateway HTTP API (payload v2) event.
fn http_api_v2(
    to: &ApiRoute<'_>,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    base64: bool,
    now: Timestamp,
) -> Value {
    let body = if base64 {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    let raw_query = to
        .query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut event = json!({
        "version": "2.0",
        "routeKey": to.route,
        "rawPath": to.path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "hookgate",
            "domainName": "hookgate.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "hookgate",
            "http": { "method": to.method, "path": to.path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "hookgate-sample" },
            "requestId": "sample-request",
            "routeKey": to.route,
            "stage": "$default",
            "time": "23/Nov/2026:12:00:00 +0000",
            "timeEpoch": now.as_millis(),
        },
        "pathParameters": to.params,
        "body": body,
        "isBase64Encoded": base64,
    });
    if let Some(event) = event.as_object_mut().filter(|_| to.params.is_null()) {
        event.remove("pathParameters");
    }
    if !to.query.is_empty() {
        let params: serde_json::Map<String, Value> = to
            .query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        event["queryStringParameters"] = Value::Object(params);
    }
    event
}

fn webhook(
    source: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    base64: bool,
    now: Timestamp,
) -> Value {
    http_api_v2(&ApiRoute::webhook(source), headers, body, base64, now)
}

fn signed_headers(
    config: &Config,
    source: &str,
    body: &[u8],
    now: Timestamp,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut headers: BTreeMap<String, String> =
        config.sign(source, body, now)?.into_iter().collect();
    headers.insert("content-type".into(), "application/json".into());
    for (k, v) in provider_headers(source) {
        headers.insert(k.into(), v.into());
    }
    Ok(headers)
}

fn sqs_record(message_id: &str, body: &str, attributes: &BTreeMap<String, String>) -> Value {
    let message_attributes: serde_json::Map<String, Value> = attributes
        .iter()
        .map(|(k, v)| (k.clone(), json!({ "stringValue": v, "dataType": "String", "stringListValues": [], "binaryListValues": [] })))
        .collect();
    json!({
        "messageId": message_id,
        "receiptHandle": format!("receipt-{message_id}"),
        "body": body,
        "attributes": { "ApproximateReceiveCount": "1", "SentTimestamp": "1795435200000", "SenderId": "AROAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1795435200001" },
        "messageAttributes": message_attributes,
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:hookgate-events",
        "awsRegion": "us-east-1",
    })
}

fn sample_envelope(
    n: u32,
    event_type: &str,
    now: Timestamp,
) -> anyhow::Result<(String, BTreeMap<String, String>)> {
    let body = json!({ "type": event_type, "order": { "id": n } }).to_string();
    let envelope = Envelope {
        event_id: EventId::parse(&format!("demo:sample{n:026}"))?,
        source: SourceName::parse("demo")?,
        event_type: event_type.into(),
        received_at: now,
        headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
        body: body.into(),
    };
    let attributes = BTreeMap::from([
        (attr::EVENT_ID.to_owned(), envelope.event_id.to_string()),
        (attr::SOURCE.to_owned(), "demo".to_owned()),
        (attr::EVENT_TYPE.to_owned(), event_type.to_owned()),
    ]);
    Ok((envelope.to_message(), attributes))
}

/// A demo body of 300,000 bytes, over the default claim-check size: the same every time.
fn large_body() -> Vec<u8> {
    let mut body = String::from(r#"{"type":"catalog.exported","items":["#);
    let mut n = 0u32;
    while body.len() < 299_950 {
        body.push_str(&format!(r#"{{"sku":"sku-{n:06}","price":{}}},"#, n % 997));
        n += 1;
    }
    body.push_str(r#"{"end":true}]"#);
    while body.len() < 299_999 {
        body.push(' ');
    }
    body.push('}');
    body.into_bytes()
}

/// The message the receiver core enqueues for the demo request `headers` + `body` (a pointer,
/// for a large body), and its attributes: the core run in memory, so the sample is exactly
/// what a deployed receiver sends.
fn pointer_message(
    config: &Config,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> anyhow::Result<(String, BTreeMap<String, String>)> {
    use hookgate_core::memory::{MemoryArchive, MemoryLedger, MemoryQueue};
    use hookgate_core::{IncomingRequest, Queue, Receiver};
    let queue = std::sync::Arc::new(MemoryQueue::new(std::time::Duration::from_secs(30)));
    let receiver = Receiver::new(
        config,
        std::sync::Arc::new(MemoryLedger::new()),
        queue.clone(),
    )
    .with_archive(std::sync::Arc::new(MemoryArchive::new()));
    let mut header_map = http::HeaderMap::new();
    for (k, v) in headers {
        header_map.insert(
            http::HeaderName::from_bytes(k.as_bytes())?,
            http::HeaderValue::from_str(v)?,
        );
    }
    let request = IncomingRequest {
        method: http::Method::POST,
        source: "demo".into(),
        headers: header_map,
        body: bytes::Bytes::copy_from_slice(body),
        trace_header: None,
    };
    futures::executor::block_on(async {
        receiver
            .accept(request)
            .await
            .map_err(|e| anyhow::anyhow!("the sample large body was refused: {e}"))?;
        let mut received = queue.receive(1, std::time::Duration::ZERO).await?;
        let message = received
            .pop()
            .ok_or_else(|| anyhow::anyhow!("the receiver enqueued nothing"))?;
        Ok((message.body, message.attributes))
    })
}

/// Sample `n` as a version 1 message, as a receiver before message version 2 wrote it (one JSON
/// object, the body escaped inside): the processor still reads those, e.g. from a DLQ redrive.
fn sample_envelope_v1(
    n: u32,
    event_type: &str,
    now: Timestamp,
) -> anyhow::Result<(String, BTreeMap<String, String>)> {
    let (message, attributes) = sample_envelope(n, event_type, now)?;
    let envelope = Envelope::from_message(&message)?;
    // The fields in version 1's order.
    #[derive(serde::Serialize)]
    struct V1<'a> {
        v: u32,
        event_id: &'a EventId,
        source: &'a SourceName,
        #[serde(rename = "type")]
        event_type: &'a str,
        received_at: Timestamp,
        headers: &'a BTreeMap<String, String>,
        body: &'a str,
    }
    let v1 = V1 {
        v: 1,
        event_id: &envelope.event_id,
        source: &envelope.source,
        event_type: &envelope.event_type,
        received_at: envelope.received_at,
        headers: &envelope.headers,
        body: std::str::from_utf8(&envelope.body)?,
    };
    Ok((serde_json::to_string(&v1)?, attributes))
}

/// Every sample event, by file name, signed now with `config` (`config_text` is its TOML, for
/// `env.json`).
pub fn sample_events(
    config: &Config,
    config_text: &str,
) -> anyhow::Result<BTreeMap<String, Value>> {
    let now = SystemClock.now();
    let mut files = BTreeMap::new();
    for source in config.sources.keys() {
        let body = body_for(source.as_str()).as_bytes();
        let headers = signed_headers(config, source.as_str(), body, now)?;
        files.insert(
            format!("webhook-{source}.json"),
            webhook(source.as_str(), &headers, body, false, now),
        );
    }
    if config.sources.contains_key(&SourceName::parse("github")?) {
        // GitHub's redelivery: the same signed body under a new (unsigned) delivery id.
        let body = body_for("github").as_bytes();
        let mut headers = signed_headers(config, "github", body, now)?;
        headers.insert(
            "x-github-delivery".into(),
            "0b989ba4-242f-11e5-81e1-c7b6966d2516".into(),
        );
        files.insert(
            "webhook-github-redelivery.json".into(),
            webhook("github", &headers, body, false, now),
        );
    }
    if config.sources.contains_key(&SourceName::parse("demo")?) {
        let body = "{\"type\":\"order.paid\",\"order\":{\"id\":1002},\"note\":\"café\"}".as_bytes();
        let headers = signed_headers(config, "demo", body, now)?;
        files.insert(
            "webhook-demo-base64.json".into(),
            webhook("demo", &headers, body, true, now),
        );

        let body = body_for("demo").as_bytes();
        let mut forged = signed_headers(config, "demo", body, now)?;
        forged.insert("x-signature".into(), format!("sha256={}", "0".repeat(64)));
        files.insert(
            "webhook-bad-signature.json".into(),
            webhook("demo", &forged, body, false, now),
        );

        // A body over the claim-check size (256 KiB): the receiver archives it and enqueues a
        // pointer; `sqs-batch-pointer.json` is that very pointer message, as the receiver core
        // writes it, so the processor finds the object the receiver put.
        let large = large_body();
        let headers = signed_headers(config, "demo", &large, now)?;
        files.insert(
            "webhook-demo-large.json".into(),
            webhook("demo", &headers, &large, false, now),
        );
        let (pointer, pointer_attrs) = pointer_message(config, &headers, &large)?;
        files.insert(
            "sqs-batch-pointer.json".into(),
            json!({ "Records": [
                sqs_record("66666666-6666-4666-8666-666666666666", &pointer, &pointer_attrs),
            ]}),
        );

        let headers = signed_headers(config, "demo", body, now)?;
        let mut unknown = webhook("nope", &headers, body, false, now);
        unknown["pathParameters"] = json!({ "source": "nope" });
        files.insert("webhook-unknown-source.json".into(), unknown);

        let multi: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.clone(), json!([v])))
            .collect();
        files.insert("webhook-demo-rest-v1.json".into(), json!({
            "resource": "/webhooks/{source}", "path": "/webhooks/demo", "httpMethod": "POST",
            "headers": headers, "multiValueHeaders": multi,
            "queryStringParameters": null, "multiValueQueryStringParameters": null,
            "pathParameters": { "source": "demo" }, "stageVariables": null,
            "requestContext": {
                "accountId": "123456789012", "apiId": "hookgate", "resourcePath": "/webhooks/{source}",
                "httpMethod": "POST", "path": "/prod/webhooks/demo", "stage": "prod", "requestId": "sample-request",
                "identity": { "sourceIp": "127.0.0.1", "userAgent": "hookgate-sample" }, "protocol": "HTTP/1.1",
                "requestTimeEpoch": now.as_millis(),
            },
            "body": String::from_utf8_lossy(body), "isBase64Encoded": false,
        }));
    }
    let id = "demo:0123456789abcdef0123456789abcdef";
    let status_route = ApiRoute {
        method: "GET",
        path: format!("/events/{id}"),
        route: "GET /events/{id}",
        params: json!({ "id": id }),
        query: Vec::new(),
    };
    let accept = BTreeMap::from([("accept".to_owned(), "application/json".to_owned())]);
    files.insert(
        "status-get.json".into(),
        http_api_v2(&status_route, &accept, b"", false, now),
    );
    // The newest queued events of the demo source: the sample webhooks, once they are in.
    let list_route = ApiRoute {
        method: "GET",
        path: "/events".into(),
        route: "GET /events",
        params: Value::Null,
        query: vec![("status", "queued"), ("source", "demo"), ("limit", "5")],
    };
    files.insert(
        "status-list.json".into(),
        http_api_v2(&list_route, &accept, b"", false, now),
    );
    // The payload, and a replay, of the first event of `sqs-batch.json` (once processed).
    let processed = "demo:sample00000000000000000000000001";
    let payload_route = ApiRoute {
        method: "GET",
        path: format!("/events/{processed}/payload"),
        route: "GET /events/{id}/payload",
        params: json!({ "id": processed }),
        query: Vec::new(),
    };
    files.insert(
        "status-payload.json".into(),
        http_api_v2(&payload_route, &accept, b"", false, now),
    );
    let replay_route = ApiRoute {
        method: "POST",
        path: format!("/events/{processed}/replay"),
        route: "POST /events/{id}/replay",
        params: json!({ "id": processed }),
        query: Vec::new(),
    };
    files.insert(
        "status-replay.json".into(),
        http_api_v2(&replay_route, &accept, b"", false, now),
    );

    let (one, one_attrs) = sample_envelope(1, "order.created", now)?;
    let (two, two_attrs) = sample_envelope(2, "order.paid", now)?;
    let (three, three_attrs) = sample_envelope(3, "order.created", now)?;
    let (four, four_attrs) = sample_envelope_v1(4, "order.shipped", now)?;
    files.insert(
        "sqs-batch.json".into(),
        json!({ "Records": [
            sqs_record("11111111-1111-4111-8111-111111111111", &one, &one_attrs),
            sqs_record("22222222-2222-4222-8222-222222222222", &two, &two_attrs),
            sqs_record("55555555-5555-4555-8555-555555555555", &four, &four_attrs),
        ]}),
    );
    files.insert("sqs-batch-one-fails.json".into(), json!({ "Records": [
        sqs_record("33333333-3333-4333-8333-333333333333", &three, &three_attrs),
        sqs_record("44444444-4444-4444-8444-444444444444", "this body is not a hookgate envelope", &BTreeMap::new()),
    ]}));

    let function_env = |extra: &[(&str, &str)]| {
        let mut env = serde_json::Map::new();
        env.insert("HOOKGATE_TABLE".into(), json!("hookgate-events"));
        env.insert(
            "HOOKGATE_QUEUE_URL".into(),
            json!("http://127.0.0.1:5000/123456789012/hookgate-events"),
        );
        // The bucket `hookgate setup` makes by default on moto (account 123456789012).
        env.insert(
            "HOOKGATE_ARCHIVE_BUCKET".into(),
            json!("hookgate-events-archive-123456789012-us-east-1"),
        );
        env.insert("HOOKGATE_CONFIG".into(), json!(config_text));
        for (k, v) in extra {
            env.insert((*k).into(), json!(v));
        }
        env.insert("RUST_LOG".into(), json!("info"));
        Value::Object(env)
    };
    files.insert(
        "env.json".into(),
        json!({
            "ReceiverFunction": function_env(&[]),
            "ProcessorFunction": function_env(&[
                ("HOOKGATE_DLQ_URL", "http://127.0.0.1:5000/123456789012/hookgate-events-dlq"),
                ("HOOKGATE_MAX_RECEIVE_COUNT", "5"),
            ]),
        }),
    );
    Ok(files)
}

/// Writes the sample events into `dir`.
pub fn write_sample_events(dir: &Path, config_text: &str) -> anyhow::Result<Vec<String>> {
    let config = Config::from_toml(config_text)?;
    let files = sample_events(&config, config_text)?;
    std::fs::create_dir_all(dir)?;
    for (name, value) in &files {
        std::fs::write(
            dir.join(name),
            format!("{}\n", serde_json::to_string_pretty(value)?),
        )?;
    }
    Ok(files.into_keys().collect())
}
