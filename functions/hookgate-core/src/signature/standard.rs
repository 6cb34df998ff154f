//! `standard` and `svix`: the Standard Webhooks scheme (<https://www.standardwebhooks.com>),
//! which Svix sends under its own header names.
//!
//! Wire format (scheme `standard`; scheme `svix` is identical with `svix-` for `webhook-`):
//!
//! ```text
//! webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek
//! webhook-timestamp: 1614265330
//! webhook-signature: v1,<base64 HMAC-SHA256> [v1a,<base64 ed25519 signature> …]
//! ```
//!
//! Both versions sign `{id}.{timestamp}.{body}`:
//!
//! - `v1`: HMAC-SHA256, keyed with a secret's bytes. The secret is configured as
//!   `whsec_<base64>`, and the part after the prefix is base64-decoded (a secret without the
//!   prefix is decoded whole, as the official libraries do).
//! - `v1a`: ed25519, verified with a public key configured as `whpk_<base64 of 32 bytes>`, and
//!   made with a private key `whsk_<base64>` (see [`super::ed25519`] for the two forms it takes).
//!
//! A source's `secrets` may mix them (rotation from one kind to the other). The signature header
//! is a space-separated list; the request is accepted if any `v1` entry matches under any
//! `whsec_` secret or any `v1a` entry verifies under any `whpk_` key (or the public half of a
//! `whsk_` key). A signature of one kind is never checked against a key of the other. Entries of
//! other versions (`v2,…`) are ignored. The timestamp must be within `tolerance_secs` of now,
//! either way. Signing (`hookgate sign`, a forward destination) uses the first configured key
//! that can sign: a `whsec_` secret writes `v1`, a `whsk_` key `v1a`; a `whpk_` key cannot sign.
//!
//! Dedup key: the `webhook-id` header. It is part of the signed content, and the provider keeps
//! it across retries (a retry is re-signed with a new timestamp, but carries the same id), so
//! the event id is [`EventId::from_provider`]`(source, webhook-id)`. Deriving it from the body
//! would merge distinct messages that happen to have equal bodies. The event type is the
//! top-level JSON `type` of the body, else `unknown`.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD as B64};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::Mac;

use super::common::clean_event_type;
use super::ed25519::{self, KeyKind, PrivateKey, PublicKey};
use super::{
    any_signature_matches, check_tolerance, header_str, hmac_sha256, json_type, parse_unix_secs,
    CommonOptions, SchemeError, SignatureError, SignatureScheme, SignedRequest, TypeSource,
    Verified,
};
use crate::clock::Timestamp;
use crate::envelope::{EventId, SourceName};
use crate::secret::Secret;

/// The prefix of a Standard Webhooks secret.
const SECRET_PREFIX: &str = "whsec_";

/// Length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Base64 for secrets: the standard alphabet, with or without padding.
const SECRET_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The Standard Webhooks scheme (`standard`), or Svix's form of it (`svix`).
#[derive(Clone)]
pub struct StandardWebhooks {
    name: &'static str,
    /// The decoded `whsec_` secrets, in configuration order: they verify `v1`. Never printed.
    keys: Vec<Vec<u8>>,
    /// The `whpk_` keys and the public halves of `whsk_` keys, in configuration order: they
    /// verify `v1a`. Never printed.
    public_keys: Vec<PublicKey>,
    /// The first configured key that can sign, if any. Never printed.
    signer: Option<Signer>,
    tolerance_secs: u64,
    id_header: String,
    timestamp_header: String,
    signature_header: String,
    /// `[id_header, timestamp_header]`: the headers worth keeping in the envelope.
    kept: Vec<String>,
}

impl fmt::Debug for StandardWebhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardWebhooks")
            .field("name", &self.name)
            .field("keys", &format_args!("[***; {}]", self.keys.len()))
            .field(
                "public_keys",
                &format_args!("[***; {}]", self.public_keys.len()),
            )
            .field("signs", &self.signer.as_ref().map(Signer::version))
            .field("tolerance_secs", &self.tolerance_secs)
            .field("id_header", &self.id_header)
            .field("timestamp_header", &self.timestamp_header)
            .field("signature_header", &self.signature_header)
            .finish()
    }
}

impl StandardWebhooks {
    /// The scheme with a source's secrets and `tolerance_secs` (it takes no options of its
    /// own). `header_prefix` is `webhook` for scheme `standard` and `svix` for scheme `svix`.
    pub fn new(common: &CommonOptions, header_prefix: &str) -> Result<Self, SchemeError> {
        let prefix = header_prefix.to_ascii_lowercase();
        let id_header = format!("{prefix}-id");
        let timestamp_header = format!("{prefix}-timestamp");
        let signature_header = format!("{prefix}-signature");
        for h in [&id_header, &timestamp_header, &signature_header] {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(SchemeError::Option(format!("{h:?} is not a header name")));
            }
        }
        let keys = Keys::decode(
            common
                .secrets
                .iter()
                .enumerate()
                .map(|(i, secret)| (format!("secrets[{i}]"), secret.expose())),
        )?;
        Ok(Self {
            name: if prefix == "svix" { "svix" } else { "standard" },
            keys: keys.hmac,
            public_keys: keys.public,
            signer: keys.signer,
            tolerance_secs: common.tolerance_secs,
            kept: vec![id_header.clone(), timestamp_header.clone()],
            id_header,
            timestamp_header,
            signature_header,
        })
    }

    /// A `standard` scheme that signs outbound messages with `secret`: the forwarding
    /// handler's signer. A `whsec_<base64>` secret signs `v1` (HMAC-SHA256), a `whsk_<base64>`
    /// private key `v1a` (ed25519); a `whpk_` public key cannot sign and is refused. Errors name
    /// the field `secret`, never the key.
    pub fn for_signing(secret: &Secret) -> Result<Self, SchemeError> {
        if ed25519::kind_of(secret.expose()) == KeyKind::Public {
            return Err(SchemeError::Option(format!(
                "secret: a {} public key verifies but cannot sign; sign with the {} private \
                 key and give the destination its {} public key",
                ed25519::PUBLIC_KEY_PREFIX,
                ed25519::PRIVATE_KEY_PREFIX,
                ed25519::PUBLIC_KEY_PREFIX,
            )));
        }
        let keys = Keys::decode([("secret".to_owned(), secret.expose())])?;
        let id_header = "webhook-id".to_owned();
        let timestamp_header = "webhook-timestamp".to_owned();
        Ok(Self {
            name: "standard",
            keys: keys.hmac,
            public_keys: keys.public,
            signer: keys.signer,
            tolerance_secs: super::DEFAULT_TOLERANCE_SECS,
            kept: vec![id_header.clone(), timestamp_header.clone()],
            id_header,
            timestamp_header,
            signature_header: "webhook-signature".to_owned(),
        })
    }

    /// The three headers that sign `body` as message `id` sent at `now`, under the first key
    /// that can sign: `webhook-id`, `webhook-timestamp`, `webhook-signature` (or the `svix-`
    /// forms). None when no configured key can sign (only `whpk_` public keys).
    pub fn sign_message(&self, id: &str, body: &[u8], now: Timestamp) -> Vec<(String, String)> {
        let Some(signer) = &self.signer else {
            return Vec::new();
        };
        let timestamp = now.as_secs().to_string();
        let signature = match signer {
            Signer::Hmac(key) => Self::v1_signature(key, id, &timestamp, body),
            Signer::Ed25519(key) => Self::v1a_signature(key, id, &timestamp, body),
        };
        vec![
            (self.id_header.clone(), id.to_owned()),
            (self.timestamp_header.clone(), timestamp),
            (self.signature_header.clone(), signature),
        ]
    }

    /// The `v1,<base64>` signature of `body` sent as message `id` at `timestamp`, under `key`.
    fn v1_signature(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
        let tag = hmac_sha256(
            key,
            &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
        )
        .finalize()
        .into_bytes();
        format!("v1,{}", B64.encode(tag))
    }

    /// The `v1a,<base64>` signature of `body` sent as message `id` at `timestamp`, under `key`.
    fn v1a_signature(key: &PrivateKey, id: &str, timestamp: &str, body: &[u8]) -> String {
        format!(
            "v1a,{}",
            B64.encode(key.sign(&signed_content(id, timestamp, body)))
        )
    }
}

/// What signs a scheme's outbound messages.
#[derive(Clone)]
enum Signer {
    /// A `whsec_` secret: `v1`, HMAC-SHA256.
    Hmac(Vec<u8>),
    /// A `whsk_` private key: `v1a`, ed25519.
    Ed25519(PrivateKey),
}

impl Signer {
    /// The signature version it writes.
    fn version(&self) -> &'static str {
        match self {
            Signer::Hmac(_) => "v1",
            Signer::Ed25519(_) => "v1a",
        }
    }
}

/// A scheme's keys, sorted by what they do.
struct Keys {
    hmac: Vec<Vec<u8>>,
    public: Vec<PublicKey>,
    signer: Option<Signer>,
}

impl Keys {
    /// Decodes each `(field, value)` by its prefix; the first that can sign signs. Errors name
    /// the field, never the value.
    fn decode<'a>(
        values: impl IntoIterator<Item = (String, &'a str)>,
    ) -> Result<Self, SchemeError> {
        let mut keys = Self {
            hmac: Vec::new(),
            public: Vec::new(),
            signer: None,
        };
        for (field, value) in values {
            match ed25519::kind_of(value) {
                KeyKind::Secret => {
                    let key = decode_secret(value, &field)?;
                    keys.signer.get_or_insert_with(|| Signer::Hmac(key.clone()));
                    keys.hmac.push(key);
                }
                KeyKind::Public => keys.public.push(PublicKey::decode(value, &field)?),
                KeyKind::Private => {
                    let key = PrivateKey::decode(value, &field)?;
                    keys.public.push(key.public_key());
                    keys.signer.get_or_insert(Signer::Ed25519(key));
                }
            }
        }
        Ok(keys)
    }
}

/// `{id}.{timestamp}.{body}` in one buffer: ed25519 signs a message whole.
fn signed_content(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// Decodes a Standard Webhooks secret: `whsec_<base64>`, or the base64 alone (the prefix is
/// optional, as in the official libraries). The error names `field`, never the secret. Its
/// minimum length is checked by [`super::secret_policy`].
pub(super) fn decode_secret(secret: &str, field: &str) -> Result<Vec<u8>, SchemeError> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    match SECRET_B64.decode(encoded) {
        Ok(key) if !key.is_empty() => Ok(key),
        _ => Err(SchemeError::Option(format!(
            "{field} is not a Standard Webhooks secret (expected base64, optionally after \
             \"whsec_\")"
        ))),
    }
}

/// The signatures of a signature header, decoded: `v1` (HMAC) and `v1a` (ed25519).
#[derive(Debug, Default)]
struct Signatures {
    v1: Vec<Vec<u8>>,
    v1a: Vec<Vec<u8>>,
}

/// The `v1` and `v1a` signatures of a signature header, decoded. `Err` when the header holds no
/// usable entry at all: none, or every one of them not base64 of a signature of its version's
/// length (32 bytes for `v1`, 64 for `v1a`). Unreadable entries beside a readable one are
/// skipped, as the official libraries do.
fn signatures(value: &str, header: &str) -> Result<Signatures, SignatureError> {
    let malformed = || SignatureError::Malformed(header.to_owned());
    let mut signatures = Signatures::default();
    for entry in value.split_ascii_whitespace() {
        let (version, encoded) = entry.split_once(',').ok_or_else(malformed)?;
        let (list, len) = match version {
            "v1" => (&mut signatures.v1, TAG_LEN),
            "v1a" => (&mut signatures.v1a, ed25519::SIGNATURE_LEN),
            _ => continue,
        };
        if let Ok(sig) = B64.decode(encoded) {
            if sig.len() == len {
                list.push(sig);
            }
        }
    }
    if signatures.v1.is_empty() && signatures.v1a.is_empty() {
        return Err(malformed());
    }
    Ok(signatures)
}

/// The body's top-level JSON `type`, or `unknown`.
fn event_type(body: &[u8]) -> String {
    match json_type(body) {
        Some(t) if clean_event_type(&t).is_some() => t,
        _ => "unknown".to_owned(),
    }
}

impl SignatureScheme for StandardWebhooks {
    fn name(&self) -> &'static str {
        self.name
    }

    fn verify(
        &self,
        source: &SourceName,
        request: &SignedRequest<'_>,
        now: Timestamp,
    ) -> Result<Verified, SignatureError> {
        let id = header_str(request.headers, &self.id_header)?;
        let timestamp = header_str(request.headers, &self.timestamp_header)?;
        let signature = header_str(request.headers, &self.signature_header)?;
        if id.is_empty() {
            return Err(SignatureError::Malformed(self.id_header.clone()));
        }
        let timestamp = timestamp.trim();
        let signed_at = parse_unix_secs(timestamp, &self.timestamp_header)?;
        let signatures = signatures(signature, &self.signature_header)?;
        let parts: [&[u8]; 5] = [
            id.as_bytes(),
            b".",
            timestamp.as_bytes(),
            b".",
            request.body,
        ];
        // Each kind of signature under the keys of its kind only; the HMACs (cheap, compared
        // in constant time) first. ed25519 verification involves no secret.
        let v1_matches =
            !signatures.v1.is_empty() && any_signature_matches(&self.keys, &parts, &signatures.v1);
        let matches = v1_matches
            || (!signatures.v1a.is_empty() && !self.public_keys.is_empty() && {
                let content = signed_content(id, timestamp, request.body);
                signatures.v1a.iter().any(|signature| {
                    self.public_keys
                        .iter()
                        .any(|key| key.verifies(&content, signature))
                })
            });
        if !matches {
            return Err(SignatureError::Mismatch);
        }
        // Authentic, but possibly a replay: the signed timestamp must be recent.
        check_tolerance(signed_at, now, self.tolerance_secs)?;
        Ok(Verified::event(
            EventId::from_provider(source, id),
            event_type(request.body),
        ))
    }

    fn sign(&self, body: &[u8], now: Timestamp) -> Vec<(String, String)> {
        let id = format!("msg_{}", crate::token::uuid().simple());
        self.sign_message(&id, body, now)
    }

    fn kept_headers(&self) -> &[String] {
        &self.kept
    }

    fn signs_timestamp(&self) -> bool {
        true
    }

    fn type_source(&self) -> TypeSource<'_> {
        TypeSource::Body
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderName, HeaderValue};

    use super::*;
    use crate::signature::MAX_SIGNATURE_HEADER_LEN;

    // Published vector of the Standard Webhooks test suites:
    //   standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py
    //     (`test_sign_function`, `test_multi_sig_payload_is_valid`)
    //   standard-webhooks/standard-webhooks, libraries/javascript/src/webhook.test.ts
    //     ("sign function works", "multi sig payload is valid")
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    // A well-formed signature that does not match (the suites' "wrong" entry).
    const WRONG: &str = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";

    fn scheme_with(secrets: &[&str], prefix: &str, extra: &str) -> StandardWebhooks {
        StandardWebhooks::new(&CommonOptions::for_test_with(secrets, extra), prefix).unwrap()
    }

    fn scheme() -> StandardWebhooks {
        scheme_with(&[SECRET], "webhook", "")
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn vector_headers(signature: &str) -> HeaderMap {
        headers(&[
            ("webhook-id", MSG_ID),
            ("webhook-timestamp", &TS.to_string()),
            ("webhook-signature", signature),
        ])
    }

    fn source() -> SourceName {
        SourceName::parse("hooks").unwrap()
    }

    fn verify_at(
        s: &StandardWebhooks,
        h: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, SignatureError> {
        s.verify(
            &source(),
            &SignedRequest { headers: h, body },
            Timestamp::from_secs(now),
        )
    }

    fn code(r: Result<Verified, SignatureError>) -> &'static str {
        r.unwrap_err().code()
    }

    #[test]
    fn accepts_the_published_vector() {
        let v = verify_at(&scheme(), &vector_headers(SIGNATURE), PAYLOAD, TS).unwrap();
        assert_eq!(v.event_id.as_str(), "hooks:msg_p5jXN8AQM9LWM0D4loKWxJek");
        assert_eq!(v.event_type, "unknown");
        assert_eq!(v.respond_now, None);
    }

    #[test]
    fn signs_the_published_vector() {
        let key = &scheme().keys[0];
        let sig = StandardWebhooks::v1_signature(key, MSG_ID, &TS.to_string(), PAYLOAD);
        assert_eq!(sig, SIGNATURE);
    }

    #[test]
    fn accepts_a_secret_without_the_prefix() {
        let bare = scheme_with(&["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "webhook", "");
        assert!(verify_at(&bare, &vector_headers(SIGNATURE), PAYLOAD, TS).is_ok());
    }

    #[test]
    fn any_v1_entry_may_match_and_other_versions_are_ignored() {
        // As in the suites' multi-signature test: wrong v1, a v2, the right one, wrong v1.
        let v2 = WRONG.replace("v1,", "v2,");
        let multi = format!("{WRONG} {v2} {SIGNATURE} {WRONG}");
        assert!(verify_at(&scheme(), &vector_headers(&multi), PAYLOAD, TS).is_ok());
        // The right MAC under another version does not count.
        let v1a = SIGNATURE.replace("v1,", "v1a,");
        assert_eq!(
            code(verify_at(
                &scheme(),
                &vector_headers(&format!("{WRONG} {v1a}")),
                PAYLOAD,
                TS
            )),
            "signature_mismatch"
        );
        // An unreadable v1 entry beside the right one is skipped.
        let junk = format!("v1,!!notbase64!! v1,abcd {SIGNATURE}");
        assert!(verify_at(&scheme(), &vector_headers(&junk), PAYLOAD, TS).is_ok());
    }

    #[test]
    fn svix_uses_its_own_header_names() {
        let svix = scheme_with(&[SECRET], "svix", "");
        assert_eq!(svix.name(), "svix");
        assert_eq!(scheme().name(), "standard");
        let h = headers(&[
            ("svix-id", MSG_ID),
            ("svix-timestamp", &TS.to_string()),
            ("svix-signature", SIGNATURE),
        ]);
        let v = verify_at(&svix, &h, PAYLOAD, TS).unwrap();
        assert_eq!(v.event_id.as_str(), "hooks:msg_p5jXN8AQM9LWM0D4loKWxJek");
        // webhook-* headers are not svix-* headers.
        let err = verify_at(&svix, &vector_headers(SIGNATURE), PAYLOAD, TS).unwrap_err();
        assert_eq!(err, SignatureError::Missing("svix-id".into()));
        assert_eq!(
            svix.kept_headers(),
            &["svix-id".to_string(), "svix-timestamp".to_string()]
        );
    }

    #[test]
    fn kept_headers_are_id_and_timestamp_only() {
        assert_eq!(
            scheme().kept_headers(),
            &["webhook-id".to_string(), "webhook-timestamp".to_string()]
        );
    }

    #[test]
    fn rejections_have_exact_codes() {
        let s = scheme();
        let ts = TS.to_string();
        let long = format!("{SIGNATURE} {}", "v1,AAAA".repeat(700));
        // Each case is the vector with headers changed; the body is the payload.
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            // Absent headers.
            (
                vec![("webhook-timestamp", &ts), ("webhook-signature", SIGNATURE)],
                "signature_missing",
            ),
            (
                vec![("webhook-id", MSG_ID), ("webhook-signature", SIGNATURE)],
                "signature_missing",
            ),
            (
                vec![("webhook-id", MSG_ID), ("webhook-timestamp", &ts)],
                "signature_missing",
            ),
            (vec![], "signature_missing"),
            // Malformed timestamps.
            (
                vec![
                    ("webhook-id", MSG_ID),
                    ("webhook-timestamp", "hello"),
                    ("webhook-signature", SIGNATURE),
                ],
                "signature_malformed",
            ),
            (
                vec![
                    ("webhook-id", MSG_ID),
                    ("webhook-timestamp", "-1614265330"),
                    ("webhook-signature", SIGNATURE),
                ],
                "signature_malformed",
            ),
            (
                vec![
                    ("webhook-id", MSG_ID),
                    ("webhook-timestamp", "1614265330.5"),
                    ("webhook-signature", SIGNATURE),
                ],
                "signature_malformed",
            ),
            (
                vec![
                    ("webhook-id", MSG_ID),
                    ("webhook-timestamp", "99999999999999999999"),
                    ("webhook-signature", SIGNATURE),
                ],
                "signature_malformed",
            ),
            (
                vec![
                    ("webhook-id", MSG_ID),
                    ("webhook-timestamp", ""),
                    ("webhook-signature", SIGNATURE),
                ],
                "signature_malformed",
            ),
            // Empty id.
            (
                vec![
                    ("webhook-id", ""),
                    ("webhook-timestamp", &ts),
                    ("webhook-signature", SIGNATURE),
                ],
                "signature_malformed",
            ),
        ];
        for (pairs, want) in cases {
            let h = headers(&pairs);
            assert_eq!(code(verify_at(&s, &h, PAYLOAD, TS)), want, "{pairs:?}");
        }

        let malformed_signatures = [
            "",
            " ",
            "v1",
            "v1,",
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "sha256,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1=g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=X",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O",
            "v1,dawfeoifkpqwoekfpqoekf",
            "v1,!!!!",
            &SIGNATURE[..8],
            &long,
        ];
        for sig in malformed_signatures {
            assert_eq!(
                code(verify_at(&s, &vector_headers(sig), PAYLOAD, TS)),
                "signature_malformed",
                "{sig:?}"
            );
        }

        // Non-UTF-8 header values.
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut h = vector_headers(SIGNATURE);
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(b"v1,\xff\xfe").unwrap(),
            );
            assert_eq!(
                code(verify_at(&s, &h, PAYLOAD, TS)),
                "signature_malformed",
                "{name}"
            );
        }
        // Oversized id.
        let mut h = vector_headers(SIGNATURE);
        h.insert(
            "webhook-id",
            HeaderValue::from_str(&"m".repeat(MAX_SIGNATURE_HEADER_LEN + 1)).unwrap(),
        );
        assert_eq!(code(verify_at(&s, &h, PAYLOAD, TS)), "signature_malformed");

        // Well formed but not made with the secret over this content.
        let mismatches: Vec<(HeaderMap, &[u8])> = vec![
            (vector_headers(WRONG), PAYLOAD),
            (vector_headers(SIGNATURE), br#"{"test": 2432232315}"#),
            (vector_headers(SIGNATURE), b""),
            (
                headers(&[
                    ("webhook-id", "msg_other"),
                    ("webhook-timestamp", &ts),
                    ("webhook-signature", SIGNATURE),
                ]),
                PAYLOAD,
            ),
            (
                headers(&[
                    ("webhook-id", MSG_ID),
                    ("webhook-timestamp", &(TS + 1).to_string()),
                    ("webhook-signature", SIGNATURE),
                ]),
                PAYLOAD,
            ),
        ];
        for (h, body) in mismatches {
            assert_eq!(
                code(verify_at(&s, &h, body, TS)),
                "signature_mismatch",
                "{h:?}"
            );
        }
        let other_secret = scheme_with(
            &["whsec_c2VjcmV0LWtleS1vZi10aGlydHktdHdvLWJ5dGVzISE="],
            "webhook",
            "",
        );
        assert_eq!(
            code(verify_at(
                &other_secret,
                &vector_headers(SIGNATURE),
                PAYLOAD,
                TS
            )),
            "signature_mismatch"
        );
    }

    #[test]
    fn every_configured_secret_is_tried() {
        let new = "whsec_bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldy1zZWNy";
        let rotating = scheme_with(&[new, SECRET], "webhook", "");
        assert!(verify_at(&rotating, &vector_headers(SIGNATURE), PAYLOAD, TS).is_ok());
        let signed_new = scheme_with(&[new], "webhook", "").sign(PAYLOAD, Timestamp::from_secs(TS));
        let h = headers(&pairs(&signed_new));
        assert!(verify_at(&rotating, &h, PAYLOAD, TS).is_ok());
        assert_eq!(
            code(verify_at(&scheme(), &h, PAYLOAD, TS)),
            "signature_mismatch"
        );
    }

    #[test]
    fn timestamps_outside_the_window_are_refused_either_way() {
        let s = scheme();
        let h = vector_headers(SIGNATURE);
        // Default tolerance: 300 s.
        for now in [TS - 300, TS - 1, TS, TS + 1, TS + 300] {
            assert!(
                verify_at(&s, &h, PAYLOAD, now).is_ok(),
                "now = TS{:+}",
                now - TS
            );
        }
        for now in [
            TS + 301,
            TS + 86_400,
            TS - 301,
            TS - 86_400,
            0,
            i64::MAX / 1000,
        ] {
            assert_eq!(
                code(verify_at(&s, &h, PAYLOAD, now)),
                "timestamp_out_of_tolerance",
                "now = {now}"
            );
        }
        // A configured tolerance.
        let tight = scheme_with(&[SECRET], "webhook", "tolerance_secs = 10");
        assert!(verify_at(&tight, &h, PAYLOAD, TS + 10).is_ok());
        assert!(verify_at(&tight, &h, PAYLOAD, TS - 10).is_ok());
        assert_eq!(
            code(verify_at(&tight, &h, PAYLOAD, TS + 11)),
            "timestamp_out_of_tolerance"
        );
        assert_eq!(
            code(verify_at(&tight, &h, PAYLOAD, TS - 11)),
            "timestamp_out_of_tolerance"
        );
    }

    fn pairs(signed: &[(String, String)]) -> Vec<(&str, &str)> {
        signed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn sign_then_verify_round_trips() {
        for prefix in ["webhook", "svix"] {
            let s = scheme_with(&[SECRET, "whsec_b2xkLXNlY3JldA=="], prefix, "");
            let body = br#"{"type":"invoice.paid","data":{"amount":42}}"#;
            let now = Timestamp::from_millis(1_700_000_000_999);
            let signed = s.sign(body, now);
            let names: Vec<&str> = signed.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                names,
                [
                    format!("{prefix}-id"),
                    format!("{prefix}-timestamp"),
                    format!("{prefix}-signature")
                ]
            );
            let id = &signed[0].1;
            assert!(id.starts_with("msg_") && id.len() == 4 + 32, "{id}");
            assert!(id[4..].bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(signed[1].1, "1700000000");
            assert!(signed[2].1.starts_with("v1,"));
            let v = verify_at(&s, &headers(&pairs(&signed)), body, 1_700_000_000).unwrap();
            assert_eq!(v.event_id, EventId::from_provider(&source(), id));
            assert_eq!(v.event_type, "invoice.paid");
            // Each signing is a new message.
            assert_ne!(s.sign(body, now)[0].1, *id);
        }
    }

    #[test]
    fn a_message_re_signed_later_keeps_its_event_id() {
        let s = scheme();
        let key = &s.keys[0];
        let body = br#"{"type":"user.created","id":"not-the-dedup-key"}"#;
        let at = |ts: i64| {
            let t = ts.to_string();
            headers(&[
                ("webhook-id", MSG_ID),
                ("webhook-timestamp", &t),
                (
                    "webhook-signature",
                    &StandardWebhooks::v1_signature(key, MSG_ID, &t, body),
                ),
            ])
        };
        let first = verify_at(&s, &at(TS), body, TS).unwrap();
        let retry = verify_at(&s, &at(TS + 3600), body, TS + 3600).unwrap();
        assert_eq!(first.event_id, retry.event_id);
        assert_eq!(
            first.event_id.as_str(),
            "hooks:msg_p5jXN8AQM9LWM0D4loKWxJek"
        );
        assert_eq!(first.event_type, "user.created");
        // Another message with the same body is another event.
        let t = TS.to_string();
        let other = headers(&[
            ("webhook-id", "msg_2"),
            ("webhook-timestamp", &t),
            (
                "webhook-signature",
                &StandardWebhooks::v1_signature(key, "msg_2", &t, body),
            ),
        ]);
        assert_ne!(
            verify_at(&s, &other, body, TS).unwrap().event_id,
            first.event_id
        );
        // An id that is not a valid event id is hashed, still stably.
        let odd = "msg with spaces/and slashes";
        let odd_headers = headers(&[
            ("webhook-id", odd),
            ("webhook-timestamp", &t),
            (
                "webhook-signature",
                &StandardWebhooks::v1_signature(key, odd, &t, body),
            ),
        ]);
        assert_eq!(
            verify_at(&s, &odd_headers, body, TS).unwrap().event_id,
            EventId::derive(&source(), &[odd.as_bytes()])
        );
    }

    #[test]
    fn bad_secrets_are_refused_at_config_time_without_showing_them() {
        for bad in ["whsec_not*base64!", "whsec_", "%%%"] {
            let common = CommonOptions::for_test(&[SECRET, bad]);
            let err = StandardWebhooks::new(&common, "webhook").unwrap_err();
            let SchemeError::Option(message) = &err else {
                panic!("{err:?}");
            };
            assert!(message.contains("secrets[1]"), "{message}");
            assert!(!message.contains(bad) || bad == "whsec_", "{message}");
            assert!(!message.contains("not*base64"), "{message}");
            assert!(!format!("{err:?}").contains("MfKQ9r8G"));
        }
        // Through the scheme registry and the whole config.
        let doc = "[sources.a]\nscheme = 'svix'\nsecrets = ['whsec_hunter2!']";
        let err = crate::config::Config::from_toml(doc)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("secrets[0]") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn secrets_and_expected_signatures_never_print() {
        let s = scheme();
        let debug = format!("{s:?}");
        assert!(!debug.contains("MfKQ9r8G"), "{debug}");
        assert!(debug.contains("***"), "{debug}");
        let key_bytes = format!("{:?}", s.keys[0]);
        assert!(!debug.contains(&key_bytes[1..20]), "{debug}");
        let tampered = br#"{"test": 1}"#;
        let expected =
            StandardWebhooks::v1_signature(&s.keys[0], MSG_ID, &TS.to_string(), tampered);
        let err = verify_at(&s, &vector_headers(SIGNATURE), tampered, TS).unwrap_err();
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains(&expected[3..]), "{text}");
            assert!(!text.contains("MfKQ9r8G"), "{text}");
        }
    }

    /// RFC 8032 section 7.1, TEST 1: the seed and public key (as `whsk_`, `whpk_`).
    const ED_PRIVATE: &str = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
    const ED_PUBLIC: &str = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

    #[test]
    fn the_first_key_that_can_sign_signs_and_a_public_key_alone_cannot() {
        let body = br#"{"type":"a"}"#;
        let now = Timestamp::from_secs(TS);
        let signature_of = |secrets: &[&str]| {
            let signed = scheme_with(secrets, "webhook", "").sign(body, now);
            signed.get(2).map(|(_, v)| v.clone()).unwrap_or_default()
        };
        assert!(signature_of(&[ED_PUBLIC, SECRET]).starts_with("v1,"));
        assert!(signature_of(&[ED_PUBLIC, ED_PRIVATE, SECRET]).starts_with("v1a,"));
        assert!(signature_of(&[SECRET, ED_PRIVATE]).starts_with("v1,"));
        assert!(scheme_with(&[ED_PUBLIC], "webhook", "")
            .sign(body, now)
            .is_empty());
        // A private key verifies what it signs; so does its public key.
        let signer = scheme_with(&[ED_PRIVATE], "svix", "");
        let signed = signer.sign(body, now);
        let h = headers(&pairs(&signed));
        assert!(verify_at(&signer, &h, body, TS).is_ok());
        let by_public = verify_at(&scheme_with(&[ED_PUBLIC], "svix", ""), &h, body, TS);
        assert!(by_public.is_ok(), "{by_public:?} {signed:?}");
        assert_eq!(
            code(verify_at(&scheme_with(&[SECRET], "svix", ""), &h, body, TS)),
            "signature_mismatch"
        );
        // A destination's signer refuses a public key, naming the field only.
        let err = StandardWebhooks::for_signing(&Secret::new(ED_PUBLIC)).unwrap_err();
        assert!(
            err.to_string().starts_with("secret: a whpk_ public key"),
            "{err}"
        );
        assert!(!err.to_string().contains(&ED_PUBLIC[5..]), "{err}");
    }

    #[test]
    fn ed25519_keys_never_print() {
        let s = scheme_with(&[ED_PRIVATE, ED_PUBLIC, SECRET], "webhook", "");
        let debug = format!("{s:?}");
        assert!(debug.contains("public_keys: [***; 2]"), "{debug}");
        assert!(debug.contains("signs: Some(\"v1a\")"), "{debug}");
        for key in [ED_PRIVATE, ED_PUBLIC, SECRET] {
            assert!(!debug.contains(&key[6..16]), "{debug}");
        }
    }

    #[test]
    fn v1a_entries_must_be_64_byte_signatures() {
        let s = scheme_with(&[ED_PUBLIC], "webhook", "");
        let sig64 = B64.encode([0u8; 64]);
        // A v1a entry of the right length is usable (and wrong): a mismatch.
        assert_eq!(
            code(verify_at(
                &s,
                &vector_headers(&format!("v1a,{sig64}")),
                PAYLOAD,
                TS
            )),
            "signature_mismatch"
        );
        // Of any other length, or not base64, it is skipped: with nothing else, malformed.
        for bad in [
            "v1a,".to_owned(),
            format!("v1a,{}", B64.encode([0u8; 63])),
            format!("v1a,{}", B64.encode([0u8; 65])),
            format!("v1a,{}", B64.encode([0u8; 32])),
            format!("v1a,{}!", &sig64[..sig64.len() - 1]),
        ] {
            assert_eq!(
                code(verify_at(&s, &vector_headers(&bad), PAYLOAD, TS)),
                "signature_malformed",
                "{bad}"
            );
        }
    }

    #[test]
    fn odd_inputs_never_panic() {
        let s = scheme();
        let odd = [
            ",",
            ",,",
            " , ",
            "v1,,",
            "v1,=",
            "v1,==",
            "v1, ",
            "v1,\t",
            "\u{e9}",
            "v1,\u{e9}",
            "v1,A",
            "v1,AA",
            "v1,AAA",
            "v1,AAAA",
            "t=1,v1=00",
            "v1,v1,v1",
            "  v1,x  v1,y  ",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = Vec::new();
        for _ in 0..200 {
            let len = (seed % 80) as usize;
            let text: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    b" ,=v1aAz+/09\t"[(seed % 13) as usize] as char
                })
                .collect();
            random.push(text);
        }
        for value in odd.iter().copied().chain(random.iter().map(String::as_str)) {
            for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
                let mut h = vector_headers(SIGNATURE);
                if let Ok(v) = HeaderValue::from_str(value) {
                    h.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), v);
                    let _ = verify_at(&s, &h, value.as_bytes(), TS);
                }
            }
        }
        // Odd bodies.
        for body in [
            &b""[..],
            b"\xff\xfe",
            b"null",
            b"[]",
            b"{\"type\": 5}",
            b"{\"type\"",
            // Types SQS would refuse as a message attribute, and a control character.
            b"{\"type\": \"a\\u0001b\"}",
            b"{\"type\": \"a\\uffffb\"}",
            b"{\"type\": \"a\\ufffeb\"}",
            b"{\"type\": \"a\\nb\"}",
        ] {
            let signed = s.sign(body, Timestamp::from_secs(TS));
            let v = verify_at(&s, &headers(&pairs(&signed)), body, TS).unwrap();
            assert_eq!(v.event_type, "unknown");
        }
    }
}
