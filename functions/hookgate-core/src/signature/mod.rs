//! Signature schemes: how a source proves that a request really came from its provider.
//!
//! Each scheme is one module implementing [`SignatureScheme`], with its own options;
//! [`registry`] lists them all and [`build`] makes one from a source's `scheme = "…"`, its
//! common options and its own. A scheme verifies over the exact raw bytes received, compares in
//! constant time, tries every configured secret (rotation), and says which event id the request
//! carries — derived from signed content, so an unsigned header cannot split or merge events.

mod body_fields;
mod common;
mod ed25519;
mod github;
mod hmac_sha256;
pub mod registry;
pub mod secret_policy;
mod shopify;
mod slack;
mod standard;
mod stripe;

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::clock::Timestamp;
use crate::envelope::{EventId, SourceName};

pub use github::GitHub;
pub use hmac_sha256::{HmacSha256, HmacSha256Options};
pub use registry::{
    build, kind, names, CommonOptions, SchemeKind, DEFAULT_TOLERANCE_SECS, SCHEMES,
};
pub use shopify::Shopify;
pub use slack::Slack;
pub use standard::StandardWebhooks;
pub use stripe::Stripe;

/// Longest signature header value looked at; anything longer is malformed.
pub const MAX_SIGNATURE_HEADER_LEN: usize = 4096;

/// What a scheme sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The raw body, exactly as received (after API Gateway's base64 is undone).
    pub body: &'a [u8],
}

/// What a successful verification establishes about the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The stable id of the event (the dedup key), taken from signed content.
    pub event_id: EventId,
    /// The provider's event type, or `unknown`.
    pub event_type: String,
    /// Whether `event_type` comes from signed content (the body) or is `unknown`, rather than
    /// from an unsigned header (GitHub's `X-GitHub-Event`, Shopify's `X-Shopify-Topic`, the
    /// generic `type_header`) that anyone replaying a request may rewrite. Metrics split only
    /// by signed types unless the source lists its types (see [`crate::metrics`]).
    pub type_signed: bool,
    /// A handshake the provider expects answered at once (Slack's `url_verification`,
    /// GitHub's `ping`): the receiver answers `200` with this JSON and enqueues nothing.
    pub respond_now: Option<serde_json::Value>,
}

impl Verified {
    /// An ordinary event, to be enqueued.
    pub fn event(event_id: EventId, event_type: impl Into<String>) -> Self {
        Self {
            event_id,
            event_type: event_type.into(),
            type_signed: true,
            respond_now: None,
        }
    }

    /// An ordinary event whose type was read from the unsigned header `header`, if it was
    /// (`None`: the type is signed, or the fallback `unknown`).
    pub fn event_typed_by(
        event_id: EventId,
        event_type: impl Into<String>,
        header: Option<&str>,
    ) -> Self {
        Self {
            type_signed: header.is_none(),
            ..Self::event(event_id, event_type)
        }
    }
}

/// Why a request's signature was not accepted. Every variant answers 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature header (or another signed header) is absent.
    #[error("missing signature header {0}")]
    Missing(String),
    /// The header is present but not in the scheme's format.
    #[error("malformed signature header {0}")]
    Malformed(String),
    /// Well formed, but made with none of the configured secrets.
    #[error("signature does not match")]
    Mismatch,
    /// The signed timestamp is outside the replay window.
    #[error("timestamp outside the accepted window")]
    TimestampOutOfTolerance,
}

impl SignatureError {
    /// The stable `error` code of the 401 answer.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing(_) => "signature_missing",
            SignatureError::Malformed(_) => "signature_malformed",
            SignatureError::Mismatch => "signature_mismatch",
            SignatureError::TimestampOutOfTolerance => "timestamp_out_of_tolerance",
        }
    }
}

/// A way of signing webhook requests.
pub trait SignatureScheme: Send + Sync + fmt::Debug {
    /// The config name (`scheme = "…"`).
    fn name(&self) -> &'static str;

    /// Verifies `request`, sent to `source`, at time `now`.
    fn verify(
        &self,
        source: &SourceName,
        request: &SignedRequest<'_>,
        now: Timestamp,
    ) -> Result<Verified, SignatureError>;

    /// The headers a provider would send with `body` at `now`, signed with the first secret.
    /// Used by `hookgate sign`, the tests and the examples.
    fn sign(&self, body: &[u8], now: Timestamp) -> Vec<(String, String)>;

    /// Request headers (lower case) worth keeping in the envelope: the provider's event
    /// metadata. Signature headers are never kept.
    fn kept_headers(&self) -> &[String] {
        &[]
    }

    /// Whether verification checks a signed timestamp against `tolerance_secs`, so that a
    /// replay outside it is refused whatever the ledger remembers.
    fn signs_timestamp(&self) -> bool;

    /// Where the event type of a request is read from.
    fn type_source(&self) -> TypeSource<'_>;
}

/// Where a scheme reads a request's event type from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeSource<'a> {
    /// The body (signed content).
    Body,
    /// This header (lower case), unsigned; without it the type is `unknown`.
    Header(&'a str),
    /// This header (lower case), unsigned; without it, the body.
    HeaderElseBody(&'a str),
}

/// Why a source's scheme could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    /// `scheme = "…"` names no known scheme.
    #[error("unknown signature scheme {0:?} (known: {known})", known = names().collect::<Vec<_>>().join(", "))]
    Unknown(String),
    /// The scheme's own options do not parse: one it does not take, or a value of the wrong
    /// type (serde's message, naming the field).
    #[error("{0}")]
    OptionsRefused(String),
    /// An option has a value the scheme cannot use.
    #[error("{0}")]
    Option(String),
}

/// An HMAC-SHA256 over `parts`, concatenated, without copying them.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Whether any of `signatures` is the HMAC-SHA256 of `parts` under any of `keys`. Each
/// comparison is constant time; the HMAC is computed once per key, however many signatures
/// the header carries.
pub(crate) fn any_signature_matches(
    keys: &[Vec<u8>],
    parts: &[&[u8]],
    signatures: &[Vec<u8>],
) -> bool {
    keys.iter().any(|key| {
        let tag = hmac_sha256(key, parts).finalize().into_bytes();
        signatures
            .iter()
            .any(|given| bool::from(given.as_slice().ct_eq(tag.as_slice())))
    })
}

/// Parses a Unix timestamp in whole seconds (digits only, at most 12 of them).
pub(crate) fn parse_unix_secs(value: &str, header: &str) -> Result<Timestamp, SignatureError> {
    let value = value.trim();
    if value.is_empty() || value.len() > 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed(header.to_owned()));
    }
    value
        .parse::<i64>()
        .map(Timestamp::from_secs)
        .map_err(|_| SignatureError::Malformed(header.to_owned()))
}

/// Refuses a signed timestamp more than `tolerance_secs` before or after `now`.
pub(crate) fn check_tolerance(
    signed_at: Timestamp,
    now: Timestamp,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let skew = (now.as_secs() - signed_at.as_secs()).unsigned_abs();
    if skew > tolerance_secs {
        Err(SignatureError::TimestampOutOfTolerance)
    } else {
        Ok(())
    }
}

/// The top-level `id` and `type` strings of a JSON object body, read without parsing the rest
/// of it (see [`body_fields`]). `None` where the body is not a JSON object or the field is not a
/// string.
pub(crate) fn json_id_and_type(body: &[u8]) -> (Option<String>, Option<String>) {
    let [id, event_type] = body_fields::top_level_strings(body, ["id", "type"]);
    (id, event_type)
}

/// The top-level `type` string of a JSON object body (see [`json_id_and_type`]).
pub(crate) fn json_type(body: &[u8]) -> Option<String> {
    let [event_type] = body_fields::top_level_strings(body, ["type"]);
    event_type
}

/// Reads a header as a string, refusing oversized or non-text values, and a header sent more
/// than once: which copy a proxy would keep is ambiguous, so neither is trusted.
pub(crate) fn header_str<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<&'a str, SignatureError> {
    let mut values = headers.get_all(name).iter();
    let value = values
        .next()
        .ok_or_else(|| SignatureError::Missing(name.to_owned()))?;
    if values.next().is_some() || value.len() > MAX_SIGNATURE_HEADER_LEN {
        return Err(SignatureError::Malformed(name.to_owned()));
    }
    value
        .to_str()
        .map_err(|_| SignatureError::Malformed(name.to_owned()))
}
