//! The event envelope: what the receiver accepted, exactly as the processor will see it.
//!
//! The envelope travels through the queue as one message: a line of JSON with the event's
//! metadata, then the provider's raw body, byte for byte: verbatim when it is text SQS accepts,
//! base64 otherwise, never re-serialised. Copying the body in verbatim rather than as an escaped
//! JSON string keeps the receiver's cost for a large body near one pass of the HMAC over it.
//!
//! A body too large for the queue travels beside it, in the archive: the message then carries
//! a pointer (the claim check: key, size, SHA-256) and nothing after its head line. The head
//! also carries the event's *generation*: 0 as received, one more for each replay, so a stale
//! copy of an older message is told apart from the replay that superseded it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::destination_policy::DestinationName;

/// The stable identity of one event, used as the dedup key in the ledger and as the
/// `webhook-id` of anything hookgate sends on about it.
///
/// Shared, not copied: an id is cloned into every ledger write, log span and handler context
/// of its record, so a clone is a reference count, not an allocation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId(Arc<str>);

/// Longest event id accepted (DynamoDB keys allow far more; logs and URLs prefer less).
pub const MAX_EVENT_ID_LEN: usize = 200;

impl EventId {
    /// Validates `s` as an event id: 1–200 characters from `[A-Za-z0-9._:-]`, or a delivery's
    /// id, `<event id>@<destination name>` (see [`EventId::delivery`]).
    pub fn parse(s: &str) -> Result<Self, InvalidEventId> {
        let ok = match s.split_once('@') {
            None => is_plain_id(s),
            Some((event, destination)) => {
                is_plain_id(event) && DestinationName::parse(destination).is_ok()
            }
        };
        if ok {
            Ok(Self(Arc::from(s)))
        } else {
            Err(InvalidEventId)
        }
    }

    /// The id of this event's delivery to `destination`: `<id>@<destination>`. A delivery is
    /// kept in the ledger as an event of its own (its own attempts, status, retries and DLQ
    /// outcome), under this id; the event it came from is [`EventId::delivery_of`].
    pub fn delivery(&self, destination: &DestinationName) -> EventId {
        let parent = self.as_str().split('@').next().unwrap_or_default();
        Self(Arc::from(format!("{parent}@{destination}")))
    }

    /// When this id is a delivery's: the event it delivers and the destination.
    pub fn delivery_of(&self) -> Option<(EventId, DestinationName)> {
        let (event, destination) = self.as_str().split_once('@')?;
        Some((
            Self(Arc::from(event)),
            DestinationName::parse(destination).ok()?,
        ))
    }

    /// The id derived from signed content: `<source>:<first 32 hex digits of SHA-256(parts)>`.
    ///
    /// Deterministic, so a provider's retry of the same signed content maps to the same id
    /// whatever unsigned headers it changes.
    pub fn derive(source: &SourceName, parts: &[&[u8]]) -> Self {
        let mut h = Sha256::new();
        h.update(source.as_str().as_bytes());
        for p in parts {
            h.update([0u8]);
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        let digest = h.finalize();
        Self(Arc::from(format!(
            "{}:{}",
            source.as_str(),
            hex::encode(&digest[..16])
        )))
    }

    /// The id for a request whose only signed content is its body, keyed on the verified
    /// HMAC of that body (`mac`): a keyed hash of exactly the signed content, so the id costs
    /// no second pass over the body. The same body signed with the same secret is the same
    /// event; re-signed with another secret (during a rotation) it is a different one.
    pub fn from_body_mac(source: &SourceName, mac: &[u8]) -> Self {
        Self::derive(source, &[b"hmac-sha256", mac])
    }

    /// The id for a provider's own event id (signed by the provider): `<source>:<id>` when
    /// that is a valid event id, else derived from it as by [`EventId::derive`].
    pub fn from_provider(source: &SourceName, id: &str) -> Self {
        let candidate = format!("{}:{}", source.as_str(), id);
        if is_plain_id(&candidate) {
            Self(Arc::from(candidate))
        } else {
            // Never a delivery's id: a provider cannot name one.
            Self::derive(source, &[id.as_bytes()])
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for EventId {
    type Error = InvalidEventId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> Self {
        id.0.to_string()
    }
}

/// Whether `s` is an event's own id: 1–200 characters from `[A-Za-z0-9._:-]`.
fn is_plain_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_EVENT_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// An event id that is empty, too long or has characters outside `[A-Za-z0-9._:-]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event ids are 1-200 characters from [A-Za-z0-9._:-]")]
pub struct InvalidEventId;

/// The name of a configured source (the `{source}` in `/webhooks/{source}`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourceName(Arc<str>);

impl SourceName {
    /// Validates a source name: 1–64 characters from `[a-z0-9_-]`. Anything else (path
    /// separators, dots, upper case) can never name a source.
    pub fn parse(s: &str) -> Result<Self, InvalidSourceName> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(Arc::from(s)))
        } else {
            Err(InvalidSourceName)
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SourceName {
    type Error = InvalidSourceName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<SourceName> for String {
    fn from(s: SourceName) -> Self {
        s.0.to_string()
    }
}

/// A source name outside `[a-z0-9_-]{1,64}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("source names are 1-64 characters from [a-z0-9_-]")]
pub struct InvalidSourceName;

/// Where a body travelling beside its message is, and what it must be: what a queue message
/// carries instead of a body too large for the queue (the claim check), and what the ledger
/// records. The archive (see `crate::archive`) makes and reads them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadRef {
    /// The object's key in the archive.
    pub key: String,
    /// The body's size in bytes.
    pub size: u64,
    /// The body's SHA-256, lower-case hex.
    pub sha256: String,
}

impl PayloadRef {
    /// Whether `body` is the body this reference names (size, then SHA-256).
    pub fn matches(&self, body: &[u8]) -> bool {
        body.len() as u64 == self.size && sha256_hex(body) == self.sha256
    }
}

/// The SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One accepted event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Stable id (the dedup key).
    pub event_id: EventId,
    /// The configured source it arrived on.
    pub source: SourceName,
    /// The provider's event type (`push`, `charge.succeeded`, …), or `unknown`.
    pub event_type: String,
    /// When the receiver accepted it.
    pub received_at: Timestamp,
    /// Selected request headers (lower-case names), e.g. `content-type` and the provider's
    /// event headers. Never the signature headers.
    pub headers: BTreeMap<String, String>,
    /// The raw body, byte for byte.
    pub body: Bytes,
}

/// Version of the queue message format written by [`Envelope::to_message`]. Version 1
/// messages (one JSON object, the body escaped inside it) are still read.
pub const MESSAGE_VERSION: u32 = 2;

/// The head line of a version 2 message: every field but the body, as one line of compact
/// JSON (which never holds a raw newline).
#[derive(Serialize, Deserialize)]
struct WireHead {
    v: u32,
    event_id: EventId,
    source: SourceName,
    #[serde(rename = "type")]
    event_type: String,
    received_at: Timestamp,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// How the body after the newline is written.
    body: BodyForm,
    /// Its length in bytes as written, so a cut-off message is refused, not half-processed.
    body_len: usize,
    /// The event's generation: 0 as received, one more per replay.
    #[serde(default, skip_serializing_if = "is_zero")]
    generation: u64,
    /// With `body: "archive"`: where the body is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    archive: Option<PayloadRef>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How a version 2 message carries the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BodyForm {
    /// Verbatim: the body is UTF-8 and SQS accepts every character of it.
    Text,
    /// Standard base64: anything else (binary, or control characters SQS refuses).
    Base64,
    /// Not in the message: in the archive, where the head's `archive` pointer says.
    Archive,
}

/// A version 1 message: one JSON object with the body as an escaped string or base64.
#[derive(Deserialize)]
struct WireEnvelopeV1 {
    v: u32,
    event_id: EventId,
    source: SourceName,
    #[serde(rename = "type")]
    event_type: String,
    received_at: Timestamp,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
}

/// A queue message body that is not an envelope this version can read.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON of the expected shape.
    #[error("message body is not a hookgate envelope: {0}")]
    Shape(#[from] serde_json::Error),
    /// Written by an unknown version of hookgate.
    #[error("unsupported envelope version {0}")]
    Version(u32),
    /// The body is missing, cut off, or not valid base64.
    #[error("envelope body is missing, cut off or not valid base64")]
    Body,
    /// The body is in the archive: read the message with [`QueuedEvent::from_message`].
    #[error("the message points to a body in the archive")]
    Pointer,
}

/// A queue message as the processor reads it: the envelope, its generation, and — when the
/// body travels in the archive — the pointer to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedEvent {
    /// The event. When `pointer` is set its body is empty: fetch it from the archive.
    pub envelope: Envelope,
    /// The generation this message was sent for (0 as received, one more per replay).
    pub generation: u64,
    /// Where the body is, when it is not in the message.
    pub pointer: Option<PayloadRef>,
}

impl QueuedEvent {
    /// Reads a message written by [`Envelope::to_message`], [`Envelope::encode_as`] or
    /// [`Envelope::pointer_message`], of this version or version 1.
    pub fn from_message(s: &str) -> Result<Self, EnvelopeError> {
        let Some((head, body)) = s.split_once('\n') else {
            return Ok(Self {
                envelope: Envelope::from_message_v1(s)?,
                generation: 0,
                pointer: None,
            });
        };
        let head: WireHead = serde_json::from_str(head)?;
        if head.v != MESSAGE_VERSION {
            return Err(EnvelopeError::Version(head.v));
        }
        let (body, pointer) = match head.body {
            BodyForm::Archive => match (head.archive, body.is_empty()) {
                (Some(pointer), true) => (Bytes::new(), Some(pointer)),
                _ => return Err(EnvelopeError::Body),
            },
            _ if body.len() != head.body_len => return Err(EnvelopeError::Body),
            BodyForm::Text => (Bytes::copy_from_slice(body.as_bytes()), None),
            BodyForm::Base64 => (
                Bytes::from(B64.decode(body).map_err(|_| EnvelopeError::Body)?),
                None,
            ),
        };
        Ok(Self {
            envelope: Envelope {
                event_id: head.event_id,
                source: head.source,
                event_type: head.event_type,
                received_at: head.received_at,
                headers: head.headers,
                body,
            },
            generation: head.generation,
            pointer,
        })
    }
}

/// An envelope encoded for the queue, its body not yet copied into the message: the size is
/// known before the copy is paid for (the receiver checks it, then claims the event, and only
/// then builds the message).
#[derive(Debug)]
pub struct EncodedEnvelope<'a> {
    head: String,
    body: Cow<'a, str>,
}

impl EncodedEnvelope<'_> {
    /// The size of the message in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + 1 + self.body.len()
    }

    /// Never true: a message always has its head line.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The message body: the head line, a newline, the body.
    pub fn into_message(self) -> String {
        let mut message = String::with_capacity(self.len());
        message.push_str(&self.head);
        message.push('\n');
        message.push_str(&self.body);
        message
    }
}

impl Envelope {
    /// Encodes the envelope for the queue (format version 2): a line of JSON with everything but
    /// the body, then the body. A body that is UTF-8 text SQS accepts (any JSON, form or XML
    /// payload) follows verbatim, so it is neither escaped nor re-parsed on either side; anything
    /// else follows as base64.
    pub fn encode(&self) -> EncodedEnvelope<'_> {
        self.encode_as(0)
    }

    /// [`Envelope::encode`] for a given generation (a replay sends the next one).
    pub fn encode_as(&self, generation: u64) -> EncodedEnvelope<'_> {
        let (form, body) = match std::str::from_utf8(&self.body) {
            Ok(text) if crate::queue::sqs_accepts(text) => (BodyForm::Text, Cow::Borrowed(text)),
            _ => (BodyForm::Base64, Cow::Owned(B64.encode(&self.body))),
        };
        let head = WireHead {
            v: MESSAGE_VERSION,
            event_id: self.event_id.clone(),
            source: self.source.clone(),
            event_type: self.event_type.clone(),
            received_at: self.received_at,
            headers: self.headers.clone(),
            body: form,
            body_len: body.len(),
            generation,
            archive: None,
        };
        EncodedEnvelope {
            // Serialising a struct of strings, numbers and maps cannot fail.
            head: serde_json::to_string(&head).unwrap_or_default(),
            body,
        }
    }

    /// The message body the receiver enqueues (see [`Envelope::encode`]).
    pub fn to_message(&self) -> String {
        self.encode().into_message()
    }

    /// The message for an event whose body is in the archive at `pointer`: the head line
    /// (with the pointer), a newline, and nothing else. Its size does not grow with the body.
    pub fn pointer_message(&self, pointer: &PayloadRef, generation: u64) -> String {
        let head = WireHead {
            v: MESSAGE_VERSION,
            event_id: self.event_id.clone(),
            source: self.source.clone(),
            event_type: self.event_type.clone(),
            received_at: self.received_at,
            headers: self.headers.clone(),
            body: BodyForm::Archive,
            body_len: 0,
            generation,
            archive: Some(pointer.clone()),
        };
        // Serialising a struct of strings, numbers and maps cannot fail.
        let mut message = serde_json::to_string(&head).unwrap_or_default();
        message.push('\n');
        message
    }

    /// Reads a message body written by [`Envelope::to_message`], of this version or version 1.
    /// A pointer message (body in the archive) is [`EnvelopeError::Pointer`]; read those with
    /// [`QueuedEvent::from_message`].
    pub fn from_message(s: &str) -> Result<Self, EnvelopeError> {
        let queued = QueuedEvent::from_message(s)?;
        match queued.pointer {
            Some(_) => Err(EnvelopeError::Pointer),
            None => Ok(queued.envelope),
        }
    }

    /// Reads a version 1 message: enqueued by an earlier receiver, or kept on the DLQ since.
    fn from_message_v1(s: &str) -> Result<Self, EnvelopeError> {
        let wire: WireEnvelopeV1 = serde_json::from_str(s)?;
        if wire.v != 1 {
            return Err(EnvelopeError::Version(wire.v));
        }
        let body = match (wire.body, wire.body_base64) {
            (Some(s), _) => Bytes::from(s),
            (None, Some(b)) => Bytes::from(B64.decode(b).map_err(|_| EnvelopeError::Body)?),
            (None, None) => return Err(EnvelopeError::Body),
        };
        Ok(Self {
            event_id: wire.event_id,
            source: wire.source,
            event_type: wire.event_type,
            received_at: wire.received_at,
            headers: wire.headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(body: &[u8]) -> Envelope {
        Envelope {
            event_id: EventId::parse("demo:abc").unwrap(),
            source: SourceName::parse("demo").unwrap(),
            event_type: "push".into(),
            received_at: Timestamp::from_millis(1_700_000_000_123),
            headers: [("content-type".to_string(), "application/json".to_string())].into(),
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn a_delivery_id_names_its_event_and_destination() {
        let event = EventId::parse("stripe:evt_1").unwrap();
        let billing = DestinationName::parse("billing").unwrap();
        let delivery = event.delivery(&billing);
        assert_eq!(delivery.as_str(), "stripe:evt_1@billing");
        assert_eq!(EventId::parse("stripe:evt_1@billing"), Ok(delivery.clone()));
        assert_eq!(
            delivery.delivery_of(),
            Some((event.clone(), billing.clone()))
        );
        assert_eq!(event.delivery_of(), None);
        // A delivery of a delivery is the event's delivery: ids never nest.
        assert_eq!(delivery.delivery(&billing), delivery);
        for bad in ["a@", "@billing", "a@b@c", "a@Billing", "a@b.c", "a@-b"] {
            assert_eq!(EventId::parse(bad), Err(InvalidEventId), "{bad:?}");
        }
        // A provider's id with an `@` is hashed: a provider cannot name a delivery.
        let source = SourceName::parse("stripe").unwrap();
        let id = EventId::from_provider(&source, "evt_1@billing");
        assert_eq!(id.delivery_of(), None);
        assert!(!id.as_str().contains('@'));
    }

    #[test]
    fn text_bodies_follow_the_head_verbatim() {
        for body in [
            r#"{"a": 1,  "b":"\u00e9", "c": "café \"q\""}"#.as_bytes(),
            b"line one\nline two\r\n\tend\n",
            b"\n",
            "\u{7f} \u{fffd} \u{10ffff}".as_bytes(),
        ] {
            let e = envelope(body);
            let m = e.to_message();
            let (head, rest) = m.split_once('\n').unwrap();
            assert_eq!(rest.as_bytes(), body, "{m}");
            assert!(
                head.starts_with(r#"{"v":2,"event_id":"demo:abc""#),
                "{head}"
            );
            assert!(head.ends_with(&format!(r#""body":"text","body_len":{}}}"#, body.len())));
            assert_eq!(e.encode().len(), m.len());
            assert!(crate::queue::sqs_accepts(&m));
            assert_eq!(Envelope::from_message(&m).unwrap(), e);
        }
    }

    #[test]
    fn bodies_sqs_would_refuse_go_as_base64() {
        for body in [
            &[0xff, 0x00, 0xfe, b'x'][..],
            b"text with a \x01 control character",
            b"{\"nul\":\"\x00\"}",
            "noncharacter \u{fffe}".as_bytes(),
            "noncharacter \u{ffff}".as_bytes(),
        ] {
            let e = envelope(body);
            let m = e.to_message();
            assert!(m.contains(r#""body":"base64""#), "{m:?}");
            assert!(crate::queue::sqs_accepts(&m), "{m:?}");
            assert_eq!(e.encode().len(), m.len());
            assert_eq!(Envelope::from_message(&m).unwrap(), e);
        }
    }

    #[test]
    fn generations_and_pointers_round_trip() {
        let e = envelope(b"{\"big\":true}");
        let m = e.encode_as(3).into_message();
        assert!(m.contains(r#""generation":3"#), "{m}");
        let q = QueuedEvent::from_message(&m).unwrap();
        assert_eq!(
            (q.generation, q.pointer.as_ref(), &q.envelope),
            (3, None, &e)
        );
        assert!(!e.to_message().contains("generation"), "0 is left out");

        let pointer = PayloadRef::of(&e);
        let m = e.pointer_message(&pointer, 2);
        assert!(m.ends_with('\n') && m.matches('\n').count() == 1, "{m}");
        assert!(crate::queue::sqs_accepts(&m));
        let q = QueuedEvent::from_message(&m).unwrap();
        assert_eq!(q.pointer, Some(pointer));
        assert_eq!(q.generation, 2);
        assert!(q.envelope.body.is_empty());
        assert_eq!(q.envelope.event_id, e.event_id);
        assert!(matches!(
            Envelope::from_message(&m),
            Err(EnvelopeError::Pointer)
        ));
        // A pointer message with a body after it, or without its pointer, is refused.
        assert!(matches!(
            QueuedEvent::from_message(&format!("{m}x")),
            Err(EnvelopeError::Body)
        ));
        let no_pointer = m.replacen(r#""archive":{"#, r#""other":{"#, 1);
        assert!(matches!(
            QueuedEvent::from_message(&no_pointer),
            Err(EnvelopeError::Body)
        ));
    }

    #[test]
    fn version_1_messages_are_still_read() {
        let text = r#"{"v":1,"event_id":"demo:abc","source":"demo","type":"push","received_at":"2023-11-14T22:13:20.123Z","headers":{"content-type":"application/json"},"body":"{\"a\":\"\\n\"}"}"#;
        let e = Envelope::from_message(text).unwrap();
        assert_eq!(e.body, Bytes::from_static(br#"{"a":"\n"}"#));
        assert_eq!(
            (e.event_id.as_str(), e.event_type.as_str()),
            ("demo:abc", "push")
        );
        assert_eq!(e.received_at, Timestamp::from_millis(1_700_000_000_123));
        let binary = r#"{"v":1,"event_id":"demo:abc","source":"demo","type":"push","received_at":"2023-11-14T22:13:20.123Z","body_base64":"/wD+eA=="}"#;
        assert_eq!(
            Envelope::from_message(binary).unwrap().body,
            Bytes::from_static(&[0xff, 0x00, 0xfe, b'x'])
        );
    }

    #[test]
    fn foreign_messages_are_refused() {
        assert!(matches!(
            Envelope::from_message("hello"),
            Err(EnvelopeError::Shape(_))
        ));
        assert!(matches!(
            Envelope::from_message("hello\nworld"),
            Err(EnvelopeError::Shape(_))
        ));
        let m = envelope(b"x").to_message().replace("\"v\":2", "\"v\":9");
        assert!(matches!(
            Envelope::from_message(&m),
            Err(EnvelopeError::Version(9))
        ));
        let v1_later = r#"{"v":3,"event_id":"demo:abc","source":"demo","type":"push","received_at":"2023-11-14T22:13:20.123Z","body":"x"}"#;
        assert!(matches!(
            Envelope::from_message(v1_later),
            Err(EnvelopeError::Version(3))
        ));
        let m = envelope(&[0xff]).to_message().replace("/w==", "!!!!");
        assert!(matches!(
            Envelope::from_message(&m),
            Err(EnvelopeError::Body)
        ));
        // Cut off, or with something appended.
        let m = envelope(b"0123456789").to_message();
        for changed in [&m[..m.len() - 1], &format!("{m}x")] {
            assert!(matches!(
                Envelope::from_message(changed),
                Err(EnvelopeError::Body)
            ));
        }
    }

    #[test]
    fn ids_and_names_are_validated() {
        assert!(EventId::parse("evt_1.2:3-x").is_ok());
        for bad in ["", "a b", "../x", "a/b", &"x".repeat(201)] {
            assert!(EventId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(SourceName::parse("git-hub_2").is_ok());
        for bad in ["", "GitHub", "..", "a/b", "a.b", "%2e%2e", &"x".repeat(65)] {
            assert!(SourceName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn provider_ids_are_kept_when_valid() {
        let s = SourceName::parse("stripe").unwrap();
        assert_eq!(
            EventId::from_provider(&s, "evt_1A2b").as_str(),
            "stripe:evt_1A2b"
        );
        let odd = EventId::from_provider(&s, "a b/c");
        assert_eq!(odd, EventId::derive(&s, &[b"a b/c"]));
    }

    #[test]
    fn derived_ids_are_stable_and_length_prefixed() {
        let s = SourceName::parse("demo").unwrap();
        let a = EventId::derive(&s, &[b"ab", b"c"]);
        assert_eq!(a, EventId::derive(&s, &[b"ab", b"c"]));
        assert_ne!(a, EventId::derive(&s, &[b"a", b"bc"]));
        assert!(a.as_str().starts_with("demo:"));
        assert_eq!(a.as_str().len(), "demo:".len() + 32);
    }
}
