//! `github`: GitHub webhooks (repository, organisation and App webhooks).
//!
//! Wire format: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`, keyed with the
//! webhook secret. The legacy `X-Hub-Signature: sha1=…` header is never verified: SHA-1 alone is
//! refused as if no signature were sent (`signature_missing`, naming `x-hub-signature-256`).
//! The event type is the `X-GitHub-Event` header (`unknown` when absent).
//!
//! `ping` (sent when a hook is created) is verified like any delivery and then answered at once
//! with `{"status": "pong", "hook_id": …}` (the body's `hook_id`, when it has one); nothing is
//! enqueued.
//!
//! Dedup key: the verified MAC of the body ([`EventId::from_body_mac`]: a keyed hash of exactly
//! the signed content, so no second pass over the body). `X-GitHub-Delivery` is *not* signed,
//! so keying on it would let anyone who captured one delivery replay its body, with its valid
//! signature, under fresh delivery ids and have it accepted again and again. The body is the only
//! signed content; GitHub's own redeliveries resend the same body, so they dedupe too.
//! (`X-GitHub-Event` is unsigned as well, so it is not part of the key: a replay relabelled as
//! another event type still dedupes against the original, and metrics count it as `other` unless
//! the source lists it in `metric_types`.)
//!
//! Replays: GitHub signs no timestamp, so a captured delivery verifies forever, and once its
//! claim has left the ledger (`dedup_window_secs`, 7 days by default) it is a new event. Give the
//! source a longer `dedup_window_secs` to close that window for longer.

use hmac::Mac;

use super::common::{decode_mac, encode_mac, event_type_header};
use super::common::{Encoding, SigningKeys};
use super::{
    any_signature_matches, header_str, hmac_sha256, CommonOptions, SignatureError, SignatureScheme,
    SignedRequest, TypeSource, Verified,
};
use crate::clock::Timestamp;
use crate::envelope::{EventId, SourceName};

/// The header that carries the HMAC-SHA256.
const SIGNATURE: &str = "x-hub-signature-256";
/// The event type.
const EVENT: &str = "x-github-event";
/// GitHub's delivery GUID (unsigned; kept for reference only).
const DELIVERY: &str = "x-github-delivery";
/// The hook's id (unsigned; kept for reference only).
const HOOK_ID: &str = "x-github-hook-id";

/// The `github` scheme.
#[derive(Debug, Clone)]
pub struct GitHub {
    keys: SigningKeys,
    kept_headers: Vec<String>,
}

impl GitHub {
    /// The scheme with a source's secrets (it takes no options of its own).
    pub fn new(common: &CommonOptions) -> Self {
        Self {
            keys: SigningKeys::new(&common.secrets),
            kept_headers: [EVENT, DELIVERY, HOOK_ID].map(str::to_owned).to_vec(),
        }
    }
}

/// The answer to a verified `ping`.
fn pong(body: &[u8]) -> serde_json::Value {
    #[derive(serde::Deserialize)]
    struct Ping {
        #[serde(default)]
        hook_id: Option<serde_json::Number>,
    }
    let mut answer = serde_json::json!({ "status": "pong" });
    if let Some(hook_id) = serde_json::from_slice::<Ping>(body)
        .ok()
        .and_then(|p| p.hook_id)
    {
        answer["hook_id"] = serde_json::Value::Number(hook_id);
    }
    answer
}

impl SignatureScheme for GitHub {
    fn name(&self) -> &'static str {
        "github"
    }

    fn verify(
        &self,
        source: &SourceName,
        request: &SignedRequest<'_>,
        _now: Timestamp,
    ) -> Result<Verified, SignatureError> {
        // Only the SHA-256 header counts; a request carrying just `X-Hub-Signature` (SHA-1)
        // is missing its signature.
        let value = header_str(request.headers, SIGNATURE)?;
        let given = decode_mac(value, "sha256=", Encoding::Hex, SIGNATURE)?;
        if !any_signature_matches(
            self.keys.all(),
            &[request.body],
            std::slice::from_ref(&given),
        ) {
            return Err(SignatureError::Mismatch);
        }
        let event_id = EventId::from_body_mac(source, &given);
        let from_header = event_type_header(request.headers, EVENT);
        let event_type = from_header.unwrap_or("unknown");
        let mut verified =
            Verified::event_typed_by(event_id, event_type, from_header.map(|_| EVENT));
        if event_type == "ping" {
            verified.respond_now = Some(pong(request.body));
        }
        Ok(verified)
    }

    fn sign(&self, body: &[u8], _now: Timestamp) -> Vec<(String, String)> {
        let Some(key) = self.keys.signing() else {
            return Vec::new();
        };
        let tag = hmac_sha256(key, &[body]).finalize().into_bytes();
        vec![
            (
                SIGNATURE.to_owned(),
                format!("sha256={}", encode_mac(&tag, Encoding::Hex)),
            ),
            (DELIVERY.to_owned(), crate::token::uuid().to_string()),
        ]
    }

    fn kept_headers(&self) -> &[String] {
        &self.kept_headers
    }

    fn signs_timestamp(&self) -> bool {
        false
    }

    fn type_source(&self) -> TypeSource<'_> {
        TypeSource::Header(EVENT)
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderName, HeaderValue};
    use serde_json::json;

    use super::*;

    // GitHub Docs, "Validating webhook deliveries" → "Testing the webhook payload validation"
    // (https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries).
    const DOC_SECRET: &str = "It's a Secret to Everybody";
    const DOC_PAYLOAD: &[u8] = b"Hello, World!";
    const DOC_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn scheme(secrets: &[&str]) -> GitHub {
        GitHub::new(&CommonOptions::for_test(secrets))
    }

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    /// Header name and owned value pairs.
    type Pairs = Vec<(&'static str, Vec<u8>)>;

    fn own(v: impl AsRef<[u8]>) -> Vec<u8> {
        v.as_ref().to_vec()
    }

    fn verify(s: &GitHub, h: &HeaderMap, body: &[u8]) -> Result<Verified, SignatureError> {
        let source = SourceName::parse("gh").unwrap();
        s.verify(
            &source,
            &SignedRequest { headers: h, body },
            Timestamp::from_secs(0),
        )
    }

    fn signed(s: &GitHub, body: &[u8], extra: &[(&str, &[u8])]) -> HeaderMap {
        let mut pairs: Vec<(String, Vec<u8>)> = s
            .sign(body, Timestamp::from_secs(0))
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_vec())));
        let refs: Vec<(&str, &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        headers(&refs)
    }

    #[test]
    fn accepts_the_published_vector() {
        let s = scheme(&[DOC_SECRET]);
        let h = headers(&[(SIGNATURE, DOC_SIGNATURE.as_bytes())]);
        let v = verify(&s, &h, DOC_PAYLOAD).unwrap();
        assert_eq!(v.event_type, "unknown");
        assert!(
            v.type_signed,
            "unknown is hookgate's fallback, not the sender's word"
        );
        assert_eq!(v.respond_now, None);
        let h = headers(&[(SIGNATURE, DOC_SIGNATURE.as_bytes()), (EVENT, b"push")]);
        let v = verify(&s, &h, DOC_PAYLOAD).unwrap();
        assert_eq!(v.event_type, "push");
        assert!(!v.type_signed, "X-GitHub-Event is unsigned");
        let headers = s.sign(DOC_PAYLOAD, Timestamp::from_secs(0));
        assert_eq!(headers[0], (SIGNATURE.to_owned(), DOC_SIGNATURE.to_owned()));
        assert_eq!(headers[1].0, DELIVERY);
    }

    #[test]
    fn rejections_have_exact_codes() {
        let s = scheme(&[DOC_SECRET]);
        let hex = DOC_SIGNATURE.trim_start_matches("sha256=");
        let legacy_sha1 = b"sha1=e4f1d7e1a7f6d8b7d8a7e4f1d7e1a7f6d8b7d8a7";
        let sig = |v: &str| vec![(SIGNATURE, own(v))];
        let cases: Vec<(Pairs, &[u8], &str)> = vec![
            // Legacy SHA-1 alone: refused as missing, never verified.
            (
                vec![("x-hub-signature", own(legacy_sha1))],
                DOC_PAYLOAD,
                "signature_missing",
            ),
            (vec![], DOC_PAYLOAD, "signature_missing"),
            (vec![(EVENT, own("push"))], DOC_PAYLOAD, "signature_missing"),
            // Wrong or absent prefix.
            (
                sig(&format!("sha1={hex}")),
                DOC_PAYLOAD,
                "signature_malformed",
            ),
            (sig(hex), DOC_PAYLOAD, "signature_malformed"),
            (
                sig(&format!("SHA256={hex}")),
                DOC_PAYLOAD,
                "signature_malformed",
            ),
            // Bad hex, odd length, short, long, oversized, not text.
            (
                sig(&format!("sha256={}", "zz".repeat(32))),
                DOC_PAYLOAD,
                "signature_malformed",
            ),
            (
                sig(&format!("sha256={}", &hex[..63])),
                DOC_PAYLOAD,
                "signature_malformed",
            ),
            (
                sig(&format!("sha256={}", &hex[..40])),
                DOC_PAYLOAD,
                "signature_malformed",
            ),
            (
                sig(&format!("sha256={hex}00")),
                DOC_PAYLOAD,
                "signature_malformed",
            ),
            (sig(&"a".repeat(5000)), DOC_PAYLOAD, "signature_malformed"),
            (
                vec![(SIGNATURE, own(b"sha256=\xe9\xe9"))],
                DOC_PAYLOAD,
                "signature_malformed",
            ),
            // Well formed but wrong.
            (sig(DOC_SIGNATURE), b"Hello, World?", "signature_mismatch"),
            (
                sig(&format!("sha256={}", "0".repeat(64))),
                DOC_PAYLOAD,
                "signature_mismatch",
            ),
            // A SHA-1 header alongside does not rescue a bad SHA-256 one.
            (
                vec![
                    (SIGNATURE, own(format!("sha256={}", "0".repeat(64)))),
                    ("x-hub-signature", own(legacy_sha1)),
                ],
                DOC_PAYLOAD,
                "signature_mismatch",
            ),
        ];
        for (pairs, body, code) in cases {
            let pairs: Vec<(&str, &[u8])> = pairs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            let h = headers(&pairs);
            assert_eq!(verify(&s, &h, body).unwrap_err().code(), code, "{h:?}");
        }
        // Upper-case hex is still hex.
        let h = headers(&[(
            SIGNATURE,
            format!("sha256={}", hex.to_ascii_uppercase()).as_bytes(),
        )]);
        assert!(verify(&s, &h, DOC_PAYLOAD).is_ok());
    }

    #[test]
    fn every_configured_secret_verifies() {
        let rotated = scheme(&["new-secret", DOC_SECRET]);
        let h = headers(&[(SIGNATURE, DOC_SIGNATURE.as_bytes())]);
        assert!(verify(&rotated, &h, DOC_PAYLOAD).is_ok());
        let h = signed(&scheme(&["new-secret"]), DOC_PAYLOAD, &[]);
        assert!(verify(&rotated, &h, DOC_PAYLOAD).is_ok());
        assert_eq!(
            verify(&scheme(&["other"]), &h, DOC_PAYLOAD)
                .unwrap_err()
                .code(),
            "signature_mismatch"
        );
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let s = scheme(&["s3cr3t"]);
        let body = br#"{"action":"opened","number":1}"#;
        let h = signed(&s, body, &[(EVENT, b"pull_request")]);
        let v = verify(&s, &h, body).unwrap();
        assert_eq!(v.event_type, "pull_request");
        assert!(v.respond_now.is_none());
    }

    #[test]
    fn ping_is_answered_at_once() {
        let s = scheme(&["s3cr3t"]);
        let body = br#"{"zen":"Design for failure.","hook_id":123456789,"hook":{"type":"Repository","id":123456789}}"#;
        let h = signed(&s, body, &[(EVENT, b"ping")]);
        let v = verify(&s, &h, body).unwrap();
        assert_eq!(v.event_type, "ping");
        assert_eq!(
            v.respond_now,
            Some(json!({"status": "pong", "hook_id": 123456789}))
        );
        // Without a hook_id (or with a body that is not JSON) the answer is just the pong.
        let body = b"zen=Design+for+failure.";
        let h = signed(&s, body, &[(EVENT, b"ping")]);
        assert_eq!(
            verify(&s, &h, body).unwrap().respond_now,
            Some(json!({"status": "pong"}))
        );
        // A forged ping is refused like any other request.
        let h = headers(&[
            (SIGNATURE, format!("sha256={}", "ab".repeat(32)).as_bytes()),
            (EVENT, b"ping"),
        ]);
        assert_eq!(
            verify(&s, &h, br#"{"hook_id":1}"#).unwrap_err().code(),
            "signature_mismatch"
        );
        let h = headers(&[(EVENT, b"ping")]);
        assert_eq!(
            verify(&s, &h, br#"{"hook_id":1}"#).unwrap_err().code(),
            "signature_missing"
        );
    }

    #[test]
    fn the_dedup_key_is_the_signed_body_not_the_delivery_id() {
        let s = scheme(&["s3cr3t"]);
        let body = br#"{"ref":"refs/heads/main","after":"abc"}"#;
        let first = signed(
            &s,
            body,
            &[
                (EVENT, b"push"),
                (DELIVERY, b"72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ],
        );
        // The same body replayed (or redelivered) under a new delivery id, even relabelled.
        let mut replay = first.clone();
        replay.insert(
            DELIVERY,
            HeaderValue::from_static("00000000-0000-0000-0000-000000000000"),
        );
        replay.insert(EVENT, HeaderValue::from_static("release"));
        let a = verify(&s, &first, body).unwrap().event_id;
        let b = verify(&s, &replay, body).unwrap().event_id;
        assert_eq!(a, b);
        assert_eq!(
            a,
            EventId::from_body_mac(
                &SourceName::parse("gh").unwrap(),
                &hmac_sha256(b"s3cr3t", &[body]).finalize().into_bytes()
            )
        );
        // A different body is a different event.
        let other = br#"{"ref":"refs/heads/main","after":"def"}"#;
        let c = verify(&s, &signed(&s, other, &[]), other).unwrap().event_id;
        assert_ne!(a, c);
    }

    #[test]
    fn kept_headers_are_the_event_metadata() {
        assert_eq!(
            scheme(&["x"]).kept_headers(),
            ["x-github-event", "x-github-delivery", "x-github-hook-id"]
        );
    }

    #[test]
    fn generic_options_are_refused() {
        let options = toml::from_str("header='x-hub-signature'").unwrap();
        let common = CommonOptions::for_test(&[DOC_SECRET]);
        let err = crate::signature::build("github", &common, options).unwrap_err();
        assert!(err.to_string().contains("header"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let s = scheme(&[DOC_SECRET]);
        let shown = format!("{s:?}");
        assert!(!shown.contains("Secret to Everybody"), "{shown}");
        let h = headers(&[(SIGNATURE, format!("sha256={}", "0".repeat(64)).as_bytes())]);
        let err = verify(&s, &h, DOC_PAYLOAD).unwrap_err();
        let shown = format!("{err:?} {err}");
        assert!(
            !shown.contains("757107ea") && !shown.contains("Everybody"),
            "{shown}"
        );
    }
}
