//! Destinations that are AWS services rather than URLs: an EventBridge bus (`kind =
//! "eventbridge"`) and an SQS queue (`kind = "sqs"`). Each is a [`Handler`] the processor runs
//! for a delivery like the HTTP forwarder, so it gets the same attempts, backoff, circuit
//! breaker and DLQ.
//!
//! - **EventBridge**: one `PutEvents` entry — source `hookgate.<source>`, detail-type the
//!   event type, detail the body (or its transform) when it is a JSON object, else
//!   `{"body": <the JSON value, or the text>}` (EventBridge takes only objects), with the event
//!   id as the entry's resource `hookgate:event/<id>` so rules and consumers can deduplicate.
//! - **SQS**: one `SendMessage` — the body as it is, with message attributes
//!   `hookgate-event-id`, `hookgate-source`, `hookgate-event-type`.
//!
//! Size rules are the receiver's: a body over the claim-check size (256 KiB; EventBridge and SQS
//! both refuse larger entries) is put in the archive under the delivery's id and the entry
//! carries a pointer instead, `{"claim_check": {"bucket", "key", "bytes", "sha256"}}` (the
//! archive object is a JSON head line, then the raw body). Without an archive such a delivery
//! fails permanently, saying so.
//!
//! Errors: throttling and AWS's internal failures are retried; anything else the service refuses
//! (a malformed entry, access denied, a missing bus or queue) is permanent.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sqs::types::MessageAttributeValue;
use bytes::Bytes;
use hookgate_core::archive::{Archive, PayloadRef};
use hookgate_core::clock::SystemClock;
use hookgate_core::delivery::DestinationError;
use hookgate_core::destination_gate::{CachedGate, DEFAULT_MAX_AGE};
use hookgate_core::handler::{Context, Delivery, Handled, Handler, HandlerError};
use hookgate_core::processor::Destinations;
use hookgate_core::routing::{Routing, Transport};
use hookgate_core::Envelope;
use tracing::{info, warn};

use crate::error_text;

/// The largest entry either service takes: larger bodies go through the claim check.
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// How a body travels to an AWS target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carried {
    /// In the entry itself.
    Inline(String),
    /// In the archive; the entry carries this pointer document.
    ClaimCheck,
}

/// What an EventBridge detail must be: `body` itself when it is a JSON object, else the body
/// wrapped as `{"body": …}` (parsed JSON, or the text, or base64 under `body_base64`).
pub fn eventbridge_detail(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(_)) => String::from_utf8_lossy(body).into_owned(),
        Ok(other) => serde_json::json!({ "body": other }).to_string(),
        Err(_) => match std::str::from_utf8(body) {
            Ok(text) => serde_json::json!({ "body": text }).to_string(),
            Err(_) => {
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::STANDARD.encode(body);
                serde_json::json!({ "body_base64": b64 }).to_string()
            }
        },
    }
}

/// The pointer document sent instead of a body over [`MAX_ENTRY_BYTES`].
pub fn claim_check_document(bucket: &str, pointer: &PayloadRef) -> String {
    serde_json::json!({
        "claim_check": {
            "bucket": bucket,
            "key": pointer.key,
            "bytes": pointer.size,
            "sha256": pointer.sha256,
        }
    })
    .to_string()
}

/// Whether `text` fits in one entry.
pub fn carried(text: String) -> Carried {
    if text.len() <= MAX_ENTRY_BYTES {
        Carried::Inline(text)
    } else {
        Carried::ClaimCheck
    }
}

/// Puts an oversize delivery in the archive and returns the pointer document to send.
async fn claim_check(
    archive: Option<&(Arc<dyn Archive>, String)>,
    event: &Envelope,
    body: Bytes,
) -> Result<String, HandlerError> {
    let Some((archive, bucket)) = archive else {
        return Err(HandlerError::permanent(format!(
            "the body is {} bytes, over the {MAX_ENTRY_BYTES} an entry takes, and no archive is configured for a claim check",
            body.len()
        )));
    };
    let copy = Envelope {
        body,
        ..event.clone()
    };
    let pointer = archive
        .put(&copy)
        .await
        .map_err(|e| HandlerError::retry(format!("claim check: {e}")))?;
    Ok(claim_check_document(bucket, &pointer))
}

/// Whether an AWS error code means "try again".
fn transient(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "Throttling"
            | "InternalFailure"
            | "InternalException"
            | "ServiceUnavailable"
            | "RequestThrottled"
            | "KMS.ThrottlingException"
    ) || code.contains("Throttl")
}

/// A request the service did not take, as the delivery's failure: retried when it throttled or
/// failed on its side (or no code came back: the network), permanent when it refused.
fn failed_request(
    operation: &str,
    code: Option<&str>,
    err: &(dyn std::error::Error + 'static),
    delivery: Delivery,
) -> HandlerError {
    let text = format!("{operation} failed: {}", error_text::one_line(err));
    warn!(url = %delivery.url, error = %text, "delivery failed");
    let error = match code {
        Some(code) if !transient(code) => HandlerError::permanent(text),
        _ => HandlerError::retry(text),
    };
    error.with_delivery(delivery)
}

/// An EventBridge bus as a destination.
pub struct EventBridgeTarget {
    client: aws_sdk_eventbridge::Client,
    event_bus: String,
    archive: Option<(Arc<dyn Archive>, String)>,
}

impl std::fmt::Debug for EventBridgeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBridgeTarget")
            .field("event_bus", &self.event_bus)
            .finish_non_exhaustive()
    }
}

impl EventBridgeTarget {
    /// A target putting events on `event_bus` (a name or an ARN).
    pub fn new(client: aws_sdk_eventbridge::Client, event_bus: impl Into<String>) -> Self {
        Self {
            client,
            event_bus: event_bus.into(),
            archive: None,
        }
    }

    /// The same target, claim-checking oversize bodies into `archive` (`bucket` names it in
    /// the pointer).
    pub fn with_archive(mut self, archive: Arc<dyn Archive>, bucket: impl Into<String>) -> Self {
        self.archive = Some((archive, bucket.into()));
        self
    }

    fn delivery(&self) -> Delivery {
        Delivery {
            url: format!("eventbridge://{}", self.event_bus),
            status_code: None,
        }
    }
}

#[async_trait]
impl Handler for EventBridgeTarget {
    async fn handle(&self, event: Envelope, _cx: &Context) -> Result<Handled, HandlerError> {
        let detail = match carried(eventbridge_detail(&event.body)) {
            Carried::Inline(detail) => detail,
            Carried::ClaimCheck => claim_check(self.archive.as_ref(), &event, event.body.clone())
                .await
                .map_err(|e| e.with_delivery(self.delivery()))?,
        };
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.event_bus)
            .source(format!("hookgate.{}", event.source))
            .detail_type(&event.event_type)
            .detail(detail)
            .resources(format!("hookgate:event/{}", event.event_id))
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| {
                let code = e
                    .as_service_error()
                    .and_then(aws_sdk_eventbridge::error::ProvideErrorMetadata::code);
                failed_request("PutEvents", code, &e, self.delivery())
            })?;
        if out.failed_entry_count() > 0 {
            let (code, message) = out
                .entries()
                .first()
                .map(|e| {
                    (
                        e.error_code().unwrap_or_default().to_owned(),
                        e.error_message().unwrap_or_default().to_owned(),
                    )
                })
                .unwrap_or_default();
            let text = format!("EventBridge refused the entry: {code} {message}");
            warn!(event_bus = %self.event_bus, error = %text, "delivery failed");
            let error = if transient(&code) {
                HandlerError::retry(text)
            } else {
                HandlerError::permanent(text)
            };
            return Err(error.with_delivery(self.delivery()));
        }
        info!(event_bus = %self.event_bus, "delivered");
        Ok(Handled {
            delivery: Some(self.delivery()),
        })
    }
}

/// An SQS queue as a destination.
pub struct SqsTarget {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    archive: Option<(Arc<dyn Archive>, String)>,
}

impl std::fmt::Debug for SqsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsTarget")
            .field("queue_url", &self.queue_url)
            .finish_non_exhaustive()
    }
}

impl SqsTarget {
    /// A target sending to `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            archive: None,
        }
    }

    /// The same target, claim-checking oversize bodies into `archive`.
    pub fn with_archive(mut self, archive: Arc<dyn Archive>, bucket: impl Into<String>) -> Self {
        self.archive = Some((archive, bucket.into()));
        self
    }

    fn delivery(&self) -> Delivery {
        Delivery {
            url: format!("sqs://{}", self.queue_url.split('?').next().unwrap_or("")),
            status_code: None,
        }
    }
}

fn string_attribute(value: &str) -> Option<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .ok()
}

#[async_trait]
impl Handler for SqsTarget {
    async fn handle(&self, event: Envelope, _cx: &Context) -> Result<Handled, HandlerError> {
        // SQS takes only text: a binary body goes through the archive whatever its size.
        let (body, claim_checked) = match std::str::from_utf8(&event.body) {
            Ok(text) if text.len() <= MAX_ENTRY_BYTES => (text.to_owned(), false),
            _ => (
                claim_check(self.archive.as_ref(), &event, event.body.clone())
                    .await
                    .map_err(|e| e.with_delivery(self.delivery()))?,
                true,
            ),
        };
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body);
        for (name, value) in [
            ("hookgate-event-id", event.event_id.as_str()),
            ("hookgate-source", event.source.as_str()),
            ("hookgate-event-type", event.event_type.as_str()),
            ("hookgate-claim-check", if claim_checked { "1" } else { "" }),
        ] {
            if value.is_empty() {
                continue;
            }
            if let Some(attribute) = string_attribute(value) {
                request = request.message_attributes(name, attribute);
            }
        }
        request.send().await.map_err(|e| {
            let code = e
                .as_service_error()
                .and_then(aws_sdk_sqs::error::ProvideErrorMetadata::code);
            failed_request("SendMessage", code, &e, self.delivery())
        })?;
        info!(queue_url = %self.queue_url, "delivered");
        Ok(Handled {
            delivery: Some(self.delivery()),
        })
    }
}

/// The configuration's destinations as the processor delivers to them from AWS: HTTP ones
/// through their forwarders, EventBridge and SQS ones through these targets (claim-checking
/// oversize bodies into `archive`), all asking `gate` before a delivery — the gate on the
/// ledger's table (see [`crate::destination_gate`]), cached per container.
pub fn destinations(
    routing: Arc<Routing>,
    sdk: &aws_config::SdkConfig,
    table: &str,
    archive: Option<&Arc<crate::S3Archive>>,
) -> Result<Destinations, DestinationError> {
    let gate = Arc::new(CachedGate::new(
        Arc::new(crate::destination_gate::DynamoDbGate::new(
            aws_sdk_dynamodb::Client::new(sdk),
            table,
        )),
        Arc::new(SystemClock),
        DEFAULT_MAX_AGE,
    ));
    let mut destinations = Destinations::new(routing.clone(), gate)?;
    let archived = archive.map(|a| (a.clone() as Arc<dyn Archive>, a.bucket().to_owned()));
    let mut eventbridge = None;
    let mut sqs = None;
    for spec in routing.destinations() {
        let sender: Arc<dyn Handler> = match &spec.transport {
            Transport::Http(_) => continue,
            Transport::EventBridge { event_bus } => {
                let client = eventbridge
                    .get_or_insert_with(|| aws_sdk_eventbridge::Client::new(sdk))
                    .clone();
                let mut target = EventBridgeTarget::new(client, event_bus);
                if let Some((archive, bucket)) = &archived {
                    target = target.with_archive(archive.clone(), bucket);
                }
                Arc::new(target)
            }
            Transport::Sqs { queue_url } => {
                let client = sqs
                    .get_or_insert_with(|| aws_sdk_sqs::Client::new(sdk))
                    .clone();
                let mut target = SqsTarget::new(client, queue_url);
                if let Some((archive, bucket)) = &archived {
                    target = target.with_archive(archive.clone(), bucket);
                }
                Arc::new(target)
            }
        };
        destinations = destinations.with_sender(&spec.name, sender);
    }
    Ok(destinations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eventbridge_detail_is_always_a_json_object() {
        assert_eq!(eventbridge_detail(br#"{"a":1}"#), r#"{"a":1}"#);
        assert_eq!(eventbridge_detail(b"[1,2]"), r#"{"body":[1,2]}"#);
        assert_eq!(
            eventbridge_detail(b"plain text"),
            r#"{"body":"plain text"}"#
        );
        assert_eq!(eventbridge_detail(b"\xff\x00"), r#"{"body_base64":"/wA="}"#);
    }

    #[test]
    fn bodies_over_the_entry_limit_take_the_claim_check() {
        assert_eq!(carried("x".into()), Carried::Inline("x".into()));
        assert_eq!(
            carried("x".repeat(MAX_ENTRY_BYTES)),
            Carried::Inline("x".repeat(MAX_ENTRY_BYTES))
        );
        assert_eq!(
            carried("x".repeat(MAX_ENTRY_BYTES + 1)),
            Carried::ClaimCheck
        );
    }

    #[test]
    fn throttling_is_transient_and_refusals_are_not() {
        assert!(transient("ThrottlingException"));
        assert!(transient("InternalFailure"));
        assert!(!transient("MalformedDetail"));
        assert!(!transient("AccessDeniedException"));
        assert!(!transient("AWS.SimpleQueueService.NonExistentQueue"));
    }
}
