//! Signature schemes: how a source proves that a request really came from its provider.
//!
//! Each scheme is one module implementing [`SignatureScheme`]; [`build`] maps a source's
//! `scheme = "…"` to it. A scheme verifies over the exact raw bytes received, compares in
//! constant time, tries every configured secret (rotation), and says which event id the request
//! carries — derived from signed content, so an unsigned header cannot split or merge events.

mod hmac_sha256;

use std::fmt;

use http::HeaderMap;

use crate::clock::Timestamp;
use crate::config::SourceConfig;
use crate::envelope::{EventId, SourceName};

pub use hmac_sha256::HmacSha256;

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
    /// The stable id of the event.
    pub event_id: EventId,
    /// The provider's event type, or `unknown`.
    pub event_type: String,
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
}

/// Why a source's scheme could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    /// `scheme = "…"` names no known scheme.
    #[error("unknown signature scheme {0:?} (known: hmac-sha256)")]
    Unknown(String),
    /// An option has a value the scheme cannot use.
    #[error("{0}")]
    Option(String),
}

/// Builds the scheme a source's configuration names.
pub fn build(
    _name: &SourceName,
    config: &SourceConfig,
) -> Result<Box<dyn SignatureScheme>, SchemeError> {
    match config.scheme.as_str() {
        "hmac-sha256" => Ok(Box::new(HmacSha256::from_config(config)?)),
        other => Err(SchemeError::Unknown(other.to_owned())),
    }
}

/// Why `hookgate sign` could not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// No source of that name is configured.
    #[error("no source named {0:?} is configured")]
    UnknownSource(String),
    /// The source's scheme could not be built.
    #[error(transparent)]
    Scheme(#[from] SchemeError),
}

/// The headers `source`'s provider would send with `body` at `now`, as configured in `config`.
pub fn sign(
    config: &crate::config::Config,
    source: &str,
    body: &[u8],
    now: Timestamp,
) -> Result<Vec<(String, String)>, SignError> {
    let unknown = || SignError::UnknownSource(source.to_owned());
    let name = SourceName::parse(source).map_err(|_| unknown())?;
    let source_config = config.sources.get(&name).ok_or_else(unknown)?;
    Ok(build(&name, source_config)?.sign(body, now))
}

/// Reads a header as a string, refusing oversized or non-text values.
pub(crate) fn header_str<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<&'a str, SignatureError> {
    let value = headers
        .get(name)
        .ok_or_else(|| SignatureError::Missing(name.to_owned()))?;
    if value.len() > MAX_SIGNATURE_HEADER_LEN {
        return Err(SignatureError::Malformed(name.to_owned()));
    }
    value
        .to_str()
        .map_err(|_| SignatureError::Malformed(name.to_owned()))
}
