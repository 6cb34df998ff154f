//! The AWS-native destinations on moto: an EventBridge bus (routed by a rule to an SQS queue, so
//! the test reads what the bus received) and an SQS queue, with the claim check for bodies
//! over the entry limit, and refusals classified.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookgate_aws::targets::{EventBridgeTarget, SqsTarget, MAX_ENTRY_BYTES};
use hookgate_core::archive::Archive;
use hookgate_core::handler::{Context, Handler};
use hookgate_core::{Envelope, EventId};
use hookgate_testkit::{fresh_resources, moto_endpoint, MotoResources};

fn event(id: &str, body: &[u8]) -> Envelope {
    Envelope {
        event_id: EventId::parse(id).unwrap(),
        source: hookgate_core::SourceName::parse("stripe").unwrap(),
        event_type: "charge.succeeded".into(),
        received_at: hookgate_core::Timestamp::from_millis(1_700_000_000_000),
        headers: Default::default(),
        body: Bytes::copy_from_slice(body),
    }
}

fn cx(e: &Envelope) -> Context {
    Context::first_attempt(e, Duration::from_secs(10))
}

async fn queue(res: &MotoResources, name: &str) -> (String, String) {
    let sqs = res.sqs();
    let url = sqs
        .create_queue()
        .queue_name(format!("{name}-{}", uuid::Uuid::new_v4().simple()))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .cloned()
        .unwrap();
    (url, arn)
}

async fn receive(res: &MotoResources, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let mut got = Vec::new();
    for _ in 0..20 {
        let out = res
            .sqs()
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap();
        got.extend(out.messages.unwrap_or_default());
        if !got.is_empty() {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    got
}

#[tokio::test]
async fn eventbridge_puts_the_event_on_the_bus_with_source_type_and_detail() {
    let Some(endpoint) = moto_endpoint() else {
        eprintln!("skipped: no moto");
        return;
    };
    let res = fresh_resources(&endpoint, 5, 30).await;
    let eb = aws_sdk_eventbridge::Client::new(&res.config);
    let bus = format!("bus-{}", uuid::Uuid::new_v4().simple());
    eb.create_event_bus().name(&bus).send().await.unwrap();
    let (url, arn) = queue(&res, "eb-sink").await;
    eb.put_rule()
        .name("all-hookgate")
        .event_bus_name(&bus)
        .event_pattern(r#"{"source":[{"prefix":"hookgate."}]}"#)
        .send()
        .await
        .unwrap();
    eb.put_targets()
        .rule("all-hookgate")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("sink")
                .arn(&arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let target = EventBridgeTarget::new(eb.clone(), &bus);
    let e = event("stripe:evt_1@audit", br#"{"id":"evt_1","amount":12000}"#);
    let handled = target.handle(e.clone(), &cx(&e)).await.unwrap();
    assert_eq!(
        handled.delivery.unwrap().url,
        format!("eventbridge://{bus}")
    );
    let got = receive(&res, &url).await;
    assert_eq!(got.len(), 1, "the rule routed the event to the sink queue");
    let routed: serde_json::Value = serde_json::from_str(got[0].body().unwrap()).unwrap();
    assert_eq!(routed["source"], "hookgate.stripe");
    assert_eq!(routed["detail-type"], "charge.succeeded");
    assert_eq!(routed["detail"]["amount"], 12000);
    assert_eq!(routed["resources"][0], "hookgate:event/stripe:evt_1@audit");

    // A bus that does not exist is refused: a permanent failure, named.
    let missing = EventBridgeTarget::new(eb, "no-such-bus");
    let err = missing.handle(e.clone(), &cx(&e)).await.unwrap_err();
    assert!(err.permanent, "{err:?}");
}

#[tokio::test]
async fn sqs_sends_the_body_with_attributes_and_claim_checks_a_large_one() {
    let Some(endpoint) = moto_endpoint() else {
        eprintln!("skipped: no moto");
        return;
    };
    let res = fresh_resources(&endpoint, 5, 30).await;
    let (url, _) = queue(&res, "copy").await;
    let archive: Arc<dyn Archive> = Arc::new(res.archive());
    let target = SqsTarget::new(res.sqs(), &url).with_archive(archive.clone(), &res.bucket);

    let e = event("stripe:evt_2@copy", br#"{"id":"evt_2"}"#);
    target.handle(e.clone(), &cx(&e)).await.unwrap();
    let got = receive(&res, &url).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body(), Some(r#"{"id":"evt_2"}"#));
    let attrs = got[0].message_attributes().unwrap();
    assert_eq!(
        attrs["hookgate-event-id"].string_value(),
        Some("stripe:evt_2@copy")
    );
    assert_eq!(
        attrs["hookgate-event-type"].string_value(),
        Some("charge.succeeded")
    );
    assert!(!attrs.contains_key("hookgate-claim-check"));
    res.sqs()
        .delete_message()
        .queue_url(&url)
        .receipt_handle(got[0].receipt_handle().unwrap())
        .send()
        .await
        .unwrap();

    // Over the entry limit: the body goes to the archive, the message carries the pointer.
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_ENTRY_BYTES));
    let e = event("stripe:evt_3@copy", big.as_bytes());
    target.handle(e.clone(), &cx(&e)).await.unwrap();
    let got = receive(&res, &url).await;
    assert_eq!(got.len(), 1);
    let pointer: serde_json::Value = serde_json::from_str(got[0].body().unwrap()).unwrap();
    assert_eq!(pointer["claim_check"]["bucket"], res.bucket.as_str());
    assert_eq!(pointer["claim_check"]["bytes"], big.len());
    assert_eq!(
        got[0].message_attributes().unwrap()["hookgate-claim-check"].string_value(),
        Some("1")
    );
    let kept = archive.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(
        kept.body.as_ref(),
        big.as_bytes(),
        "the archive holds the body"
    );

    // Without an archive, an oversize body cannot be sent: permanent, saying why.
    let bare = SqsTarget::new(res.sqs(), &url);
    let err = bare.handle(e.clone(), &cx(&e)).await.unwrap_err();
    assert!(
        err.permanent && err.message.contains("claim check"),
        "{err:?}"
    );

    // A queue that does not exist: permanent.
    let missing = SqsTarget::new(res.sqs(), format!("{endpoint}/123456789012/no-such-queue"));
    let e = event("stripe:evt_4@copy", b"{}");
    let err = missing.handle(e.clone(), &cx(&e)).await.unwrap_err();
    assert!(err.permanent, "{err:?}");
}
