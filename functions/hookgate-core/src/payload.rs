//! Where an event's payload is kept, decided once per event by its size — a pure decision, so
//! the receiver, the processor and replay agree on it.
//!
//! | body | travels in | kept |
//! |---|---|---|
//! | over `[archive] claim_check_bytes` (256 KiB) | a pointer message | an archive object, written by the receiver before the enqueue |
//! | compressed envelope ≤ `inline_max_bytes` (3 KiB) | the message | inline in the ledger item, in the lease write the processor makes anyway |
//! | anything between | the message | an archive object, written by the processor when it first takes the event |
//!
//! Why inline at all: an S3 PUT costs $5 per million, more than the rest of an event's AWS
//! requests together, while a small compressed payload fits inside the first kilobyte of the
//! ledger item that DynamoDB bills per write anyway (see the README's cost table, and
//! `hookgate bench-cost`, which measures it). The envelope is compressed with DEFLATE
//! (`miniz_oxide`, pure Rust): JSON shrinks 3–5×.

use bytes::Bytes;

use crate::archive::{decode_object, encode_object, sha256_hex, ArchiveError};
use crate::config::ArchiveConfig;
use crate::envelope::Envelope;
use crate::ledger::{PayloadInfo, PayloadStore, PayloadWrite};

/// DEFLATE level: 1 compresses JSON nearly as well as 6 for a payload of a few kilobytes, at
/// a fraction of the CPU.
const LEVEL: u8 = 1;

/// The largest envelope an inline payload decompresses to: a compressed payload claiming more
/// is refused rather than inflated (a zip bomb in the ledger cannot exhaust memory).
pub const MAX_INLINE_ENVELOPE: usize = 1024 * 1024;

/// Where an event's payload goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The receiver archives it before the enqueue; the message carries a pointer.
    ClaimCheck,
    /// Inline in the ledger item: this compressed envelope.
    Inline(Bytes),
    /// An archive object, written by the processor.
    Archive,
    /// Not kept (`[archive] enabled = false`).
    NotKept,
}

/// Whether the receiver must put the body in the archive and send a pointer.
pub fn needs_claim_check(body_len: usize, config: &ArchiveConfig) -> bool {
    body_len > config.claim_check_bytes
}

/// Where the payload of `envelope`, which travelled in its message, is kept (the processor's
/// decision on first take). Compresses it to find out whether it fits inline.
pub fn placement(envelope: &Envelope, config: &ArchiveConfig) -> Placement {
    if needs_claim_check(envelope.body.len(), config) {
        return Placement::ClaimCheck;
    }
    if !config.enabled {
        return Placement::NotKept;
    }
    // A body already far over the inline limit cannot compress under it (DEFLATE shrinks even
    // repetitive JSON by at most ~100×, and such bodies are rare): do not pay to find out.
    if envelope.body.len() > config.inline_max_bytes.saturating_mul(64) {
        return Placement::Archive;
    }
    let compressed = compress(envelope);
    if compressed.len() <= config.inline_max_bytes {
        Placement::Inline(compressed)
    } else {
        Placement::Archive
    }
}

/// The ledger write recording `envelope`'s payload kept in `store` (with the compressed
/// envelope when inline).
pub fn write_for(envelope: &Envelope, store: PayloadStore, inline: Option<Bytes>) -> PayloadWrite {
    PayloadWrite {
        info: PayloadInfo {
            bytes: envelope.body.len() as u64,
            sha256: sha256_hex(&envelope.body),
            stored: store,
        },
        inline,
    }
}

/// The envelope as an archive object, DEFLATE-compressed.
pub fn compress(envelope: &Envelope) -> Bytes {
    Bytes::from(miniz_oxide::deflate::compress_to_vec(
        &encode_object(envelope),
        LEVEL,
    ))
}

/// Reads a payload kept inline, with the archive object's checks (size, SHA-256).
pub fn decompress(compressed: &[u8]) -> Result<Envelope, ArchiveError> {
    let object =
        miniz_oxide::inflate::decompress_to_vec_with_limit(compressed, MAX_INLINE_ENVELOPE)
            .map_err(|e| {
                ArchiveError::Corrupt(format!("inline payload does not inflate: {e:?}"))
            })?;
    decode_object(Bytes::from(object))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::clock::Timestamp;
    use crate::envelope::{EventId, SourceName};

    fn envelope(body: Vec<u8>) -> Envelope {
        Envelope {
            event_id: EventId::parse("stripe:evt_1").unwrap(),
            source: SourceName::parse("stripe").unwrap(),
            event_type: "charge.succeeded".into(),
            received_at: Timestamp::from_millis(1_700_000_000_000),
            headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
            body: Bytes::from(body),
        }
    }

    fn json(n: usize) -> Vec<u8> {
        let mut s = String::from(r#"{"id":"evt_1","type":"charge.succeeded","data":{"object":{"#);
        let mut i = 0;
        while s.len() < n {
            s.push_str(&format!(r#""field_{i}":"value {i}","amount_{i}":{i},"#));
            i += 1;
        }
        s.push_str(r#""end":true}}}"#);
        s.into_bytes()
    }

    #[test]
    fn inline_payloads_round_trip() {
        let e = envelope(json(1024));
        let compressed = compress(&e);
        assert!(compressed.len() < 700, "{}", compressed.len());
        assert_eq!(decompress(&compressed).unwrap(), e);
        let binary = envelope((0..=255u8).cycle().take(3000).collect());
        assert_eq!(decompress(&compress(&binary)).unwrap(), binary);
    }

    #[test]
    fn placement_follows_size() {
        let config = ArchiveConfig::default();
        assert!(matches!(
            placement(&envelope(json(1024)), &config),
            Placement::Inline(_)
        ));
        // Repetitive JSON folds far under the limit; incompressible bytes over it go to the
        // archive even when they are small.
        assert!(matches!(
            placement(&envelope(json(6 * 1024)), &config),
            Placement::Inline(_)
        ));
        let noise: Vec<u8> = (0..125u32)
            .flat_map(|i| <sha2::Sha256 as sha2::Digest>::digest(i.to_le_bytes()))
            .collect();
        assert_eq!(placement(&envelope(noise), &config), Placement::Archive);
        // Beyond 64 times the limit it is not even tried.
        assert_eq!(
            placement(&envelope(json(200 * 1024)), &config),
            Placement::Archive
        );
        assert_eq!(
            placement(&envelope(vec![b'x'; 300 * 1024]), &config),
            Placement::ClaimCheck
        );
        let off = ArchiveConfig {
            enabled: false,
            ..ArchiveConfig::default()
        };
        assert_eq!(placement(&envelope(json(1024)), &off), Placement::NotKept);
        assert_eq!(
            placement(&envelope(vec![b'x'; 300 * 1024]), &off),
            Placement::ClaimCheck,
            "a body too large for the queue goes through the archive whatever"
        );
        assert!(!needs_claim_check(256 * 1024, &config));
        assert!(needs_claim_check(256 * 1024 + 1, &config));
    }

    #[test]
    fn damaged_or_oversized_inline_payloads_are_corrupt() {
        let mut compressed = compress(&envelope(json(1024))).to_vec();
        compressed.truncate(compressed.len() / 2);
        assert!(matches!(
            decompress(&compressed),
            Err(ArchiveError::Corrupt(_))
        ));
        // 2 MiB of zeros compresses to a few KiB but inflates past the limit.
        let bomb = miniz_oxide::deflate::compress_to_vec(&vec![0u8; 2 * 1024 * 1024], 9);
        assert!(bomb.len() < 10_000);
        assert!(matches!(decompress(&bomb), Err(ArchiveError::Corrupt(_))));
    }

    #[test]
    fn the_write_records_size_and_hash() {
        let e = envelope(b"hello".to_vec());
        let w = write_for(&e, PayloadStore::Archive, None);
        assert_eq!(w.info.bytes, 5);
        assert_eq!(w.info.sha256, sha256_hex(b"hello"));
        assert_eq!(w.info.stored, PayloadStore::Archive);
    }
}
