//! What keeping every payload costs, counted on moto through the SDK's own interceptor: the
//! AWS requests one event makes from the provider's request to `processed`, by operation, with
//! the archive on and off, for a small, a medium and a large body — and the ledger item's size
//! as DynamoDB bills it (write units are per started kilobyte of the larger of the item before
//! and after a write).
//!
//! The assertions hold the design the README's cost table rests on: a small payload costs no
//! S3 request and keeps the item under one write unit; a medium one costs one `PutObject`, made
//! by the processor; a large one one `PutObject` by the receiver and one `GetObject` by the
//! processor. Run with `--nocapture` for the table (requests and item bytes per event).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use hookgate_aws::faults::SdkFaults;
use hookgate_core::event_source::EventSource;
use hookgate_core::{
    Config, EventId, EventStatus, Handlers, IncomingRequest, Ledger, Processor, Receiver,
};
use hookgate_testkit::{budgeted_sdk_config, fresh_resources, moto_endpoint};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

const OPERATIONS: [&str; 8] = [
    "PutItem",
    "UpdateItem",
    "GetItem",
    "SendMessage",
    "DeleteMessage",
    "ReceiveMessage",
    "PutObject",
    "GetObject",
];

/// A Stripe-like JSON body of about `n` bytes: invoice lines with random ids, as real ones
/// have (which DEFLATE cannot fold away), about 2.5× compressible.
fn body(n: usize) -> Vec<u8> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut s = format!(
        r#"{{"id":"evt_{tag}","type":"invoice.paid","data":{{"object":{{"id":"in_{tag}","lines":["#
    );
    let mut i = 0;
    while s.len() + 160 < n {
        let line_id = uuid::Uuid::new_v4().simple().to_string();
        s.push_str(&format!(
            r#"{{"id":"il_{line_id}","amount":{},"currency":"usd","description":"Pro plan, seat {i}"}},"#,
            1999 + i * 7
        ));
        i += 1;
    }
    s.push_str(r#"{"id":"last"}]}}}"#);
    s.into_bytes()
}

/// DynamoDB's size of an item: each attribute's name plus its value (strings and binary by
/// length, numbers by about one byte per two digits plus one, lists and maps 3 bytes plus
/// their elements, each element one byte more).
fn item_size(item: &std::collections::HashMap<String, AttributeValue>) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.len().div_ceil(2) + 1,
            AttributeValue::B(b) => b.as_ref().len(),
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::L(l) => 3 + l.iter().map(|e| value(e) + 1).sum::<usize>(),
            AttributeValue::M(m) => {
                3 + m.iter().map(|(k, e)| k.len() + value(e) + 1).sum::<usize>()
            }
            AttributeValue::Ss(s) => s.iter().map(String::len).sum(),
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

struct Measured {
    requests: BTreeMap<&'static str, u32>,
    item_bytes: usize,
}

async fn one_event(archive_on: bool, size: usize) -> Option<Measured> {
    let endpoint = moto_endpoint()?;
    let resources = fresh_resources(&endpoint, 3, 10).await;
    let sdk = budgeted_sdk_config(&endpoint).await;
    let faults = SdkFaults::new();
    let backend = resources.backend_through(&faults, &sdk, true);
    let config = Config::from_toml(&format!(
        "[sources.demo]\nscheme = 'hmac-sha256'\nsecrets = ['archive-cost-s3cr3t']\n\
         [processor]\nvisibility_timeout_secs = 10\nwait_time_ms = 200\n\
         [archive]\nenabled = {archive_on}\n"
    ))
    .unwrap();
    let archive = backend
        .archive
        .clone()
        .map(|a| a as Arc<dyn hookgate_core::Archive>);
    let mut receiver = Receiver::new(&config, backend.ledger.clone(), backend.queue.clone());
    let mut processor = Processor::new(
        &config,
        backend.ledger.clone(),
        backend.queue.clone(),
        Handlers::new(),
    );
    if let Some(archive) = &archive {
        receiver = receiver.with_archive(archive.clone());
        processor = processor.with_archive(archive.clone());
    }
    let body = body(size);
    let mut headers = HeaderMap::new();
    for (k, v) in receiver.sign("demo", &body).unwrap() {
        headers.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(&v).unwrap(),
        );
    }
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let reply = receiver
        .handle(IncomingRequest {
            method: Method::POST,
            source: "demo".into(),
            headers,
            body: Bytes::from(body),
            trace_header: None,
        })
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    let id = EventId::parse(reply.body["event_id"].as_str().unwrap()).unwrap();
    let source = EventSource::new(backend.queue.clone(), Arc::new(processor));
    let deadline = Instant::now() + Duration::from_secs(30);
    while source.poll().await.unwrap().records.is_empty() {
        assert!(Instant::now() < deadline);
    }
    let mut requests = BTreeMap::new();
    for op in OPERATIONS {
        requests.insert(op, faults.attempts(op));
    }
    let item = resources
        .dynamodb()
        .get_item()
        .table_name(&resources.table)
        .key("event_id", AttributeValue::S(id.to_string()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let record = backend.ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Processed);
    Some(Measured {
        requests,
        item_bytes: item_size(&item),
    })
}

#[tokio::test]
async fn requests_and_item_bytes_per_event_with_and_without_the_archive() {
    if moto_endpoint().is_none() {
        eprintln!("skipped: no moto");
        return;
    }
    println!("| body | archive | PutItem | UpdateItem | SendMessage | DeleteMessage | PutObject | GetObject | ledger item bytes |");
    for (label, size) in [
        ("1 KiB", 1024),
        ("16 KiB", 16 * 1024),
        ("300 KiB", 300 * 1024),
    ] {
        for archive_on in [false, true] {
            let m = one_event(archive_on, size).await.unwrap();
            let r = |op: &str| m.requests[op];
            println!(
                "| {label} | {} | {} | {} | {} | {} | {} | {} | {} |",
                if archive_on { "on" } else { "off" },
                r("PutItem"),
                r("UpdateItem"),
                r("SendMessage"),
                r("DeleteMessage"),
                r("PutObject"),
                r("GetObject"),
                m.item_bytes
            );
            // The same DynamoDB and SQS requests whatever the archive does: claim, lease,
            // end; one message sent and deleted.
            assert_eq!((r("PutItem"), r("UpdateItem")), (1, 2), "{label}");
            assert_eq!((r("SendMessage"), r("DeleteMessage")), (1, 1), "{label}");
            let (put, get) = match (size, archive_on) {
                // The claim check, archive or not: the receiver puts, the processor gets.
                (300_000.., _) => (1, 1),
                // A small payload rides inline in the lease write: no S3 request.
                (..=1024, _) => (0, 0),
                // A medium one is an object the processor puts — when the archive is on.
                (_, true) => (1, 0),
                (_, false) => (0, 0),
            };
            assert_eq!((r("PutObject"), r("GetObject")), (put, get), "{label}");
            if size <= 1024 {
                // Kept inline, the 1 KiB payload still leaves the item in one write unit.
                assert!(m.item_bytes <= 1024, "{label}: {} bytes", m.item_bytes);
            }
        }
    }
}
