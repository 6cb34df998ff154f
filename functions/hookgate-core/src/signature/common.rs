//! Pieces the HMAC-SHA256 schemes share (generic `hmac-sha256`, GitHub, Shopify, Slack): the
//! redacted key list, MAC header decoding and encoding, and event-type cleaning.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use http::HeaderMap;

use super::SignatureError;
use crate::secret::Secret;

/// Longest event type taken from a header or a body; anything longer counts as `unknown`.
pub(super) const MAX_EVENT_TYPE_LEN: usize = 200;

/// The signing secrets of a source, as HMAC keys. Never printed: `Debug` shows `***` per key.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct SigningKeys(pub(super) Vec<Vec<u8>>);

impl SigningKeys {
    /// Every configured secret, in order (the first one signs).
    pub(super) fn new(secrets: &[Secret]) -> Self {
        Self(
            secrets
                .iter()
                .map(|s| s.expose().as_bytes().to_vec())
                .collect(),
        )
    }

    /// All keys, for verification.
    pub(super) fn all(&self) -> &[Vec<u8>] {
        &self.0
    }

    /// The key that signs (`hookgate sign`, tests), if any.
    pub(super) fn signing(&self) -> Option<&[u8]> {
        self.0.first().map(Vec::as_slice)
    }
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted;
        impl fmt::Debug for Redacted {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("***")
            }
        }
        f.debug_list()
            .entries(self.0.iter().map(|_| Redacted))
            .finish()
    }
}

/// `t` if it can serve as an event type: 1–200 bytes, no control characters, and nothing SQS
/// refuses in a message (the type travels as a message attribute).
pub(super) fn clean_event_type(t: &str) -> Option<&str> {
    let ok = !t.is_empty()
        && t.len() <= MAX_EVENT_TYPE_LEN
        && !t
            .chars()
            .any(|c| c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}'));
    ok.then_some(t)
}

/// An optional metadata header (event type, topic) as text fit for an event type.
pub(super) fn event_type_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .and_then(clean_event_type)
}

/// How the MAC is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lower- or upper-case hex.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// Decodes a 32-byte MAC written as `<prefix><encoded>` in `header`. A value without the
/// prefix, with bad hex or base64, or of the wrong length is malformed.
pub(super) fn decode_mac(
    value: &str,
    prefix: &str,
    encoding: Encoding,
    header: &str,
) -> Result<Vec<u8>, SignatureError> {
    let malformed = || SignatureError::Malformed(header.to_owned());
    let encoded = value.trim().strip_prefix(prefix).ok_or_else(malformed)?;
    let given = match encoding {
        Encoding::Hex => hex::decode(encoded).map_err(|_| malformed())?,
        Encoding::Base64 => B64.decode(encoded).map_err(|_| malformed())?,
    };
    if given.len() == 32 {
        Ok(given)
    } else {
        Err(malformed())
    }
}

/// Encodes a MAC for a header value.
pub(super) fn encode_mac(tag: &[u8], encoding: Encoding) -> String {
    match encoding {
        Encoding::Hex => hex::encode(tag),
        Encoding::Base64 => B64.encode(tag),
    }
}
