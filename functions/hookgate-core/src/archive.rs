//! The `Archive` port: every accepted event's payload, kept so an operator can read what a
//! provider sent and run it again, and so a body too large for the queue can travel beside it.
//!
//! What is stored is the envelope as accepted — the raw body byte for byte (binary-safe), its
//! kept headers and metadata — under a key derived from the event id ([`key_for`]). The object
//! is one line of JSON (the metadata, the body's size and SHA-256), a newline, then the body's
//! raw bytes ([`encode_object`]), so it is readable with any S3 tool and checked on every read.
//!
//! Implementations: `MemoryArchive` here and the S3 archive in `hookgate-aws`; both pass the
//! same contract suite. Small payloads are also kept inline in the ledger item (see
//! [`crate::payload`]): this port holds the rest.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::envelope::{Envelope, EventId, SourceName};

pub use crate::envelope::{sha256_hex, PayloadRef};

impl PayloadRef {
    /// The reference for `envelope`'s body under its event id's key.
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            key: key_for(&envelope.event_id),
            size: envelope.body.len() as u64,
            sha256: sha256_hex(&envelope.body),
        }
    }
}

/// The archive key of an event: `payloads/<2 hex digits>/<event id>`. The two digits (from a
/// hash of the id) spread keys over 256 prefixes, so the request rate S3 allows per prefix
/// (3,500 writes/s) is no ceiling; event ids are `[A-Za-z0-9._:-]`, safe in any key.
pub fn key_for(event_id: &EventId) -> String {
    let digest = Sha256::digest(event_id.as_str().as_bytes());
    format!("payloads/{:02x}/{}", digest[0], event_id.as_str())
}

/// An archive operation that did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// The store could not be reached or refused for now: try again.
    #[error("archive unavailable: {0}")]
    Unavailable(String),
    /// A stored object is not an archived envelope, or not the one its key names.
    #[error("archived payload unreadable: {0}")]
    Corrupt(String),
}

/// Every accepted event's payload, by event id.
#[async_trait]
pub trait Archive: Send + Sync {
    /// Stores `envelope` under its event id's key, replacing what was there (the same id is the
    /// same event, so a second put of it is harmless). Returns where it is.
    async fn put(&self, envelope: &Envelope) -> Result<PayloadRef, ArchiveError>;

    /// The envelope archived under `event_id`, if any. A stored object that is not an
    /// archived envelope, whose body does not match its recorded size and SHA-256, or that
    /// names another event, is [`ArchiveError::Corrupt`].
    async fn get(&self, event_id: &EventId) -> Result<Option<Envelope>, ArchiveError>;

    /// Whether a payload is archived under `event_id` (without reading it).
    async fn exists(&self, event_id: &EventId) -> Result<bool, ArchiveError>;

    /// Forgets the payload of `event_id`. Deleting one that is not there is not an error.
    async fn delete(&self, event_id: &EventId) -> Result<(), ArchiveError>;
}

/// Version of the archived object format.
pub const OBJECT_VERSION: u32 = 1;

/// The head line of an archived object.
#[derive(Serialize, Deserialize)]
struct ObjectHead {
    v: u32,
    event_id: EventId,
    source: SourceName,
    #[serde(rename = "type")]
    event_type: String,
    received_at: Timestamp,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body_len: u64,
    sha256: String,
}

/// The archived object of `envelope`: its head line, a newline, the raw body.
pub fn encode_object(envelope: &Envelope) -> Vec<u8> {
    encode_object_and_ref(envelope).0
}

/// [`encode_object`], with the reference to it: the body is hashed once for both.
pub fn encode_object_and_ref(envelope: &Envelope) -> (Vec<u8>, PayloadRef) {
    let sha256 = sha256_hex(&envelope.body);
    let reference = PayloadRef {
        key: key_for(&envelope.event_id),
        size: envelope.body.len() as u64,
        sha256: sha256.clone(),
    };
    let head = ObjectHead {
        v: OBJECT_VERSION,
        event_id: envelope.event_id.clone(),
        source: envelope.source.clone(),
        event_type: envelope.event_type.clone(),
        received_at: envelope.received_at,
        headers: envelope.headers.clone(),
        body_len: envelope.body.len() as u64,
        sha256,
    };
    // Serialising a struct of strings, numbers and maps cannot fail.
    let head = serde_json::to_vec(&head).unwrap_or_default();
    let mut object = Vec::with_capacity(head.len() + 1 + envelope.body.len());
    object.extend_from_slice(&head);
    object.push(b'\n');
    object.extend_from_slice(&envelope.body);
    (object, reference)
}

/// Reads an object written by [`encode_object`], checking its body against the head's size
/// and SHA-256. `object` is taken as `Bytes` so the body is a slice of it, not a copy.
pub fn decode_object(object: Bytes) -> Result<Envelope, ArchiveError> {
    let corrupt = |what: &str| ArchiveError::Corrupt(what.to_owned());
    let newline = memchr::memchr(b'\n', &object).ok_or_else(|| corrupt("no head line"))?;
    let head: ObjectHead = serde_json::from_slice(&object[..newline])
        .map_err(|e| ArchiveError::Corrupt(format!("head line: {e}")))?;
    if head.v != OBJECT_VERSION {
        return Err(ArchiveError::Corrupt(format!(
            "unsupported object version {}",
            head.v
        )));
    }
    let body = object.slice(newline + 1..);
    if body.len() as u64 != head.body_len {
        return Err(ArchiveError::Corrupt(format!(
            "body is {} bytes, {} recorded",
            body.len(),
            head.body_len
        )));
    }
    if sha256_hex(&body) != head.sha256 {
        return Err(corrupt("body does not match its recorded SHA-256"));
    }
    Ok(Envelope {
        event_id: head.event_id,
        source: head.source,
        event_type: head.event_type,
        received_at: head.received_at,
        headers: head.headers,
        body,
    })
}

/// Checks that an object read under `event_id`'s key is that event's.
pub fn check_owner(envelope: Envelope, event_id: &EventId) -> Result<Envelope, ArchiveError> {
    if &envelope.event_id == event_id {
        Ok(envelope)
    } else {
        Err(ArchiveError::Corrupt(format!(
            "the object under {event_id}'s key holds {}",
            envelope.event_id
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(body: &[u8]) -> Envelope {
        Envelope {
            event_id: EventId::parse("github:abc").unwrap(),
            source: SourceName::parse("github").unwrap(),
            event_type: "push".into(),
            received_at: Timestamp::from_millis(1_700_000_000_123),
            headers: [(
                "content-type".to_owned(),
                "application/octet-stream".to_owned(),
            )]
            .into(),
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn objects_round_trip_any_bytes() {
        for body in [
            &b"{\"a\":1}"[..],
            b"",
            b"line\nwith\r\nnewlines\n",
            &[0u8, 0xff, 0xfe, b'\n', 0x80],
        ] {
            let e = envelope(body);
            let object = encode_object(&e);
            assert!(object.ends_with(body));
            assert_eq!(decode_object(Bytes::from(object)).unwrap(), e);
        }
    }

    #[test]
    fn damaged_objects_are_corrupt() {
        let object = encode_object(&envelope(b"0123456789"));
        let cut = Bytes::copy_from_slice(&object[..object.len() - 1]);
        let mut flipped = object.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let mut later = String::from_utf8(object.clone()).unwrap();
        later = later.replacen("\"v\":1", "\"v\":7", 1);
        for bad in [
            cut,
            Bytes::from(flipped),
            Bytes::from(later),
            Bytes::from_static(b"no head line"),
            Bytes::from_static(b"{}\nbody"),
        ] {
            assert!(
                matches!(decode_object(bad.clone()), Err(ArchiveError::Corrupt(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keys_spread_over_prefixes_and_keep_the_id() {
        let id = EventId::parse("stripe:evt_1").unwrap();
        let key = key_for(&id);
        assert!(
            key.starts_with("payloads/") && key.ends_with("/stripe:evt_1"),
            "{key}"
        );
        assert_eq!(key.len(), "payloads/00/".len() + id.as_str().len());
        let prefixes: std::collections::HashSet<String> = (0..2000)
            .map(|n| key_for(&EventId::parse(&format!("s:{n}")).unwrap())[..12].to_owned())
            .collect();
        assert!(prefixes.len() > 200, "{}", prefixes.len());
    }

    #[test]
    fn references_match_only_their_body() {
        let e = envelope(b"hello");
        let r = PayloadRef::of(&e);
        assert_eq!(r.size, 5);
        assert_eq!(
            r.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(r.matches(b"hello"));
        assert!(!r.matches(b"hellO"));
        assert!(!r.matches(b"hello!"));
        assert!(check_owner(e.clone(), &EventId::parse("github:other").unwrap()).is_err());
        assert!(check_owner(e.clone(), &e.event_id).is_ok());
    }
}
