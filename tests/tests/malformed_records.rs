//! The processor given queue records the receiver did not write, on the in-memory backends and
//! on SQS/DynamoDB served by moto: each fails alone (the well-formed record of the same batch is
//! processed), nothing panics, each goes to the DLQ, and each whose `event_id` attribute names
//! an event has a ledger entry saying why.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookgate_core::event_source::to_sqs_event;
use hookgate_core::queue::{attr, OutgoingMessage, ReceivedMessage};
use hookgate_core::{
    Config, Envelope, EventId, EventStatus, Handlers, Processor, RecordOutcome, SourceName,
    Timestamp,
};
use hookgate_testkit::pipeline::Pipeline;

fn config() -> Config {
    Config::from_toml(
        "[processor]\nmax_receive_count = 3\nvisibility_timeout_secs = 5\nbackoff_base_ms = 200\n",
    )
    .unwrap()
}

fn unique(tag: &str) -> String {
    format!("demo:{tag}-{}", uuid::Uuid::new_v4().simple())
}

/// One record to send: its body, its attributes, and what must become of it.
struct Case {
    name: &'static str,
    body: String,
    attributes: BTreeMap<String, String>,
    /// The event its attributes name, if any: it must be in the ledger, dead-lettered.
    named: Option<EventId>,
}

fn case(name: &'static str, body: String, event_id: Option<&str>) -> Case {
    let attributes = event_id
        .map(|id| BTreeMap::from([(attr::EVENT_ID.to_owned(), id.to_owned())]))
        .unwrap_or_default();
    Case {
        name,
        body,
        attributes,
        named: event_id.and_then(|id| EventId::parse(id).ok()),
    }
}

fn envelope(id: &str) -> Envelope {
    Envelope {
        event_id: EventId::parse(id).unwrap(),
        source: SourceName::parse("demo").unwrap(),
        event_type: "order.created".into(),
        received_at: Timestamp::from_secs(1_800_000_000),
        headers: BTreeMap::new(),
        body: Bytes::from_static(b"{}"),
    }
}

fn malformed_cases() -> Vec<Case> {
    let valid = envelope(&unique("template")).to_message();
    // A binary body travels as base64 ("/w==" for 0xff); the same length of non-base64 instead.
    let binary = Envelope {
        body: Bytes::from_static(&[0xff]),
        ..envelope(&unique("template"))
    }
    .to_message();
    assert!(binary.ends_with("\n/w=="), "{binary}");
    let not_base64 = binary.replace("\n/w==", "\n!!!!");
    let cut_off = valid[..valid.len() - 1].to_owned();
    // A version 1 envelope (still read) whose base64 body is not base64.
    let v1_not_base64 = format!(
        r#"{{"v":1,"event_id":"{}","source":"demo","type":"order.created","received_at":"2027-01-15T08:00:00Z","body_base64":"!!! not base64 !!!"}}"#,
        unique("v1")
    );
    let bad_event_id = valid.replace(
        &format!("\"{}\"", envelope_id(&valid)),
        "\"../../etc/passwd\"",
    );
    let other_version = valid.replace("\"v\":2", "\"v\":7");
    assert_ne!(other_version, valid);
    // Printable garbage just under SQS's 1 MiB limit.
    let huge: String = (0..1024 * 1024 - 1024)
        .map(|i| char::from(b'!' + (i % 90) as u8))
        .collect();
    vec![
        case(
            "not JSON",
            "this is not json".into(),
            Some(&unique("notjson")),
        ),
        case(
            "JSON of another shape",
            r#"{"hello":"world","items":[1,2,3]}"#.into(),
            Some(&unique("shape")),
        ),
        case(
            "a base64 body that is not base64",
            not_base64,
            Some(&unique("notbase64")),
        ),
        case("a body cut off", cut_off, Some(&unique("cutoff"))),
        case(
            "a version 1 body_base64 that is not base64",
            v1_not_base64,
            Some(&unique("v1notbase64")),
        ),
        case(
            "an event id that does not parse",
            bad_event_id,
            Some(&unique("badid")),
        ),
        case(
            "an unknown envelope version",
            other_version,
            Some(&unique("version")),
        ),
        case("1 MiB of garbage", huge, Some(&unique("huge"))),
        case("no message attributes at all", "garbage".into(), None),
        case(
            "an event_id attribute that is not an event id",
            "garbage".into(),
            Some("../not an id"),
        ),
    ]
}

/// The event id in a message's head line.
fn envelope_id(message: &str) -> String {
    let head = message.split('\n').next().unwrap();
    let wire: serde_json::Value = serde_json::from_str(head).unwrap();
    wire["event_id"].as_str().unwrap().to_owned()
}

async fn send(b: &Pipeline, body: String, attributes: BTreeMap<String, String>) {
    b.queue
        .send(OutgoingMessage {
            delay: None,
            body,
            attributes,
            trace_header: None,
        })
        .await
        .expect("send");
}

async fn receive(b: &Pipeline, n: usize) -> Vec<ReceivedMessage> {
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.len() < n && Instant::now() < deadline {
        received.extend(b.queue.receive(10, Duration::from_secs(1)).await.unwrap());
    }
    assert_eq!(received.len(), n, "not every message came back");
    received
}

async fn malformed_records_fail_alone_and_are_recorded(b: Pipeline) {
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    let handlers = Handlers::new().on("*", "*", move |_e: Envelope| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let processor = Processor::new(&config(), b.ledger.clone(), b.queue.clone(), handlers);

    let good = envelope(&unique("good"));
    b.enqueue(&good).await;
    let cases = malformed_cases();
    for c in &cases {
        send(&b, c.body.clone(), c.attributes.clone()).await;
    }
    // One well-formed record more, whose receipt handle is lost on the way.
    let unhandled = envelope(&unique("no-receipt"));
    b.enqueue(&unhandled).await;
    let mut received = receive(&b, cases.len() + 2).await;
    let by_body = |m: &ReceivedMessage, id: &EventId| m.body.contains(id.as_str());
    let lost = received
        .iter()
        .position(|m| by_body(m, &unhandled.event_id))
        .unwrap();
    received[lost].receipt_handle.clear();
    let lost_id = received[lost].message_id.clone();
    // The batch as Lambda hands it over, at most 10 records: the good one and the others.
    let outcomes = {
        let mut all = Vec::new();
        for chunk in received.chunks(10) {
            let batch = to_sqs_event(chunk);
            let outcome = processor.process_batch(&batch, None).await.unwrap();
            all.extend(outcome.records);
        }
        all
    };
    assert_eq!(outcomes.len(), received.len());

    // The well-formed record ran, once; the one without a receipt handle also ran (Lambda
    // acknowledges a success by leaving it out of batchItemFailures).
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let outcome_of = |message_id: &str| {
        outcomes
            .iter()
            .find(|(id, _)| id == message_id)
            .map(|(_, o)| o.clone())
            .unwrap()
    };
    let good_message = received
        .iter()
        .find(|m| by_body(m, &good.event_id))
        .unwrap();
    assert_eq!(
        outcome_of(&good_message.message_id),
        RecordOutcome::Processed
    );
    assert_eq!(outcome_of(&lost_id), RecordOutcome::Processed);

    // Every malformed record went to the DLQ at once; none is named a failure.
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| !o.is_success())
        .map(|(id, _)| id.as_str())
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    for c in &cases {
        let message = received
            .iter()
            .find(|m| m.body == c.body && m.attributes == c.attributes)
            .unwrap_or_else(|| panic!("{}: not received", c.name));
        match outcome_of(&message.message_id) {
            RecordOutcome::MovedToDlq { error } => {
                assert!(
                    error.starts_with("malformed record: "),
                    "{}: {error}",
                    c.name
                )
            }
            other => panic!("{}: {other:?}", c.name),
        }
        if let Some(id) = &c.named {
            let record = b
                .ledger
                .get(id)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{}: no ledger entry", c.name));
            assert_eq!(record.status, EventStatus::DeadLettered, "{}", c.name);
            let last = record.attempts.last().unwrap();
            assert!(!last.success);
            assert!(
                last.error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("malformed record: ")),
                "{}: {last:?}",
                c.name
            );
            assert_eq!(
                last.note.as_deref(),
                Some("malformed record: moved to the DLQ")
            );
        }
    }
    // In the DLQ: every malformed record, and nothing else.
    let mut in_dlq = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while in_dlq < cases.len() && Instant::now() < deadline {
        in_dlq += b
            .dlq
            .receive(10, Duration::from_secs(1))
            .await
            .unwrap()
            .len();
    }
    assert_eq!(in_dlq, cases.len());
    assert!(b
        .dlq
        .receive(10, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
}

async fn a_malformed_record_without_a_receipt_handle_fails_alone(b: Pipeline) {
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    let handlers = Handlers::new().on("*", "*", move |_e: Envelope| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let processor = Processor::new(&config(), b.ledger.clone(), b.queue.clone(), handlers);
    let good = envelope(&unique("good"));
    b.enqueue(&good).await;
    let named = unique("handle-lost");
    send(
        &b,
        "not an envelope".into(),
        BTreeMap::from([(attr::EVENT_ID.to_owned(), named.clone())]),
    )
    .await;
    let mut received = receive(&b, 2).await;
    let broken = received
        .iter()
        .position(|m| m.body == "not an envelope")
        .unwrap();
    received[broken].receipt_handle.clear();
    let outcome = processor
        .process_batch(&to_sqs_event(&received), None)
        .await
        .unwrap();
    // Only that record is named in batchItemFailures; it was not moved (it could not be
    // deleted), so it comes back after its visibility timeout with a handle.
    let failures = outcome.to_response().batch_item_failures;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].item_identifier, received[broken].message_id);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let record = b
        .ledger
        .get(&EventId::parse(&named).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, EventStatus::Failed);
    assert!(b
        .dlq
        .receive(10, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(hookgate_testkit::pipeline::Pipeline::memory(
                        3,
                        std::time::Duration::from_secs(5),
                    ))
                    .await;
                }
            )*
        }
        mod moto {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(backend) = hookgate_testkit::pipeline::Pipeline::moto(3, 5).await else {
                        eprintln!("skipped: no moto");
                        return;
                    };
                    super::$name(backend).await;
                }
            )*
        }
    };
}

suite!(
    malformed_records_fail_alone_and_are_recorded,
    a_malformed_record_without_a_receipt_handle_fails_alone,
);
