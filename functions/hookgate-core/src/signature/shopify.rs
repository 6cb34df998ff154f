//! `shopify`: Shopify webhooks.
//!
//! Wire format: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the raw body>` (standard base64,
//! no prefix), keyed with the app's client secret. The event type is the topic,
//! `X-Shopify-Topic` (e.g. `orders/create`; `unknown` when absent).
//!
//! Dedup key: the verified MAC of the body ([`EventId::from_body_mac`]: a keyed hash of exactly
//! the signed content, so no second pass over the body). `X-Shopify-Webhook-Id` (and
//! `X-Shopify-Event-Id`) are *not* signed, so keying on them would let anyone who captured one
//! delivery replay its body, with its valid HMAC, under fresh ids and have it accepted again. The
//! body is the only signed content, and Shopify's retries resend the same body, so they dedupe.
//! The topic is unsigned too and so is not part of the key. The price: two deliveries of
//! different topics with byte-identical bodies are one event here.
//!
//! Replays: Shopify signs no timestamp, so a captured delivery verifies forever, and once its
//! claim has left the ledger (`dedup_window_secs`) it would be a new event. As a sanity check,
//! a delivery whose `X-Shopify-Triggered-At` is older than the source's dedup window is refused
//! (`timestamp_out_of_tolerance`): no genuine delivery or retry is that old (Shopify retries for
//! hours, the window is days). The header is unsigned, so this stops a replay sent with its
//! original headers, not one that rewrites the header; an absent or unreadable header is
//! accepted. A longer `dedup_window_secs` on the source is the full mitigation.

use hmac::Mac;

use super::common::{decode_mac, encode_mac, event_type_header};
use super::common::{Encoding, SigningKeys};
use super::{
    any_signature_matches, header_str, hmac_sha256, CommonOptions, SignatureError, SignatureScheme,
    SignedRequest, TypeSource, Verified,
};
use crate::clock::Timestamp;
use crate::envelope::{EventId, SourceName};

/// The header that carries the HMAC-SHA256, base64.
const SIGNATURE: &str = "x-shopify-hmac-sha256";
/// The topic: the event type.
const TOPIC: &str = "x-shopify-topic";
/// Shopify's id of the delivery (unsigned; kept for reference only).
const WEBHOOK_ID: &str = "x-shopify-webhook-id";
/// The shop's `*.myshopify.com` domain.
const SHOP_DOMAIN: &str = "x-shopify-shop-domain";
/// The Admin API version of the payload.
const API_VERSION: &str = "x-shopify-api-version";
/// When Shopify triggered the webhook.
const TRIGGERED_AT: &str = "x-shopify-triggered-at";

/// The `shopify` scheme.
#[derive(Debug, Clone)]
pub struct Shopify {
    keys: SigningKeys,
    kept_headers: Vec<String>,
    /// The source's dedup window: a delivery triggered longer ago is refused.
    replay_horizon: std::time::Duration,
}

impl Shopify {
    /// The scheme with a source's secrets and dedup window (it takes no options of its own).
    pub fn new(common: &CommonOptions) -> Self {
        Self {
            keys: SigningKeys::new(&common.secrets),
            kept_headers: [TOPIC, WEBHOOK_ID, SHOP_DOMAIN, API_VERSION, TRIGGERED_AT]
                .map(str::to_owned)
                .to_vec(),
            replay_horizon: common.dedup_window,
        }
    }

    /// Refuses a delivery whose (unsigned) `X-Shopify-Triggered-At` is older than the dedup
    /// window; an absent or unreadable header passes.
    fn check_triggered_at(
        &self,
        request: &SignedRequest<'_>,
        now: Timestamp,
    ) -> Result<(), SignatureError> {
        let triggered_at = request
            .headers
            .get(TRIGGERED_AT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Timestamp::parse_rfc3339(v.trim()));
        match triggered_at {
            Some(at) if now.since(at) > self.replay_horizon => {
                Err(SignatureError::TimestampOutOfTolerance)
            }
            _ => Ok(()),
        }
    }
}

impl SignatureScheme for Shopify {
    fn name(&self) -> &'static str {
        "shopify"
    }

    fn verify(
        &self,
        source: &SourceName,
        request: &SignedRequest<'_>,
        now: Timestamp,
    ) -> Result<Verified, SignatureError> {
        let value = header_str(request.headers, SIGNATURE)?;
        let given = decode_mac(value, "", Encoding::Base64, SIGNATURE)?;
        if !any_signature_matches(
            self.keys.all(),
            &[request.body],
            std::slice::from_ref(&given),
        ) {
            return Err(SignatureError::Mismatch);
        }
        self.check_triggered_at(request, now)?;
        let topic = event_type_header(request.headers, TOPIC);
        Ok(Verified::event_typed_by(
            EventId::from_body_mac(source, &given),
            topic.unwrap_or("unknown"),
            topic.map(|_| TOPIC),
        ))
    }

    fn sign(&self, body: &[u8], now: Timestamp) -> Vec<(String, String)> {
        let Some(key) = self.keys.signing() else {
            return Vec::new();
        };
        let tag = hmac_sha256(key, &[body]).finalize().into_bytes();
        vec![
            (SIGNATURE.to_owned(), encode_mac(&tag, Encoding::Base64)),
            (WEBHOOK_ID.to_owned(), crate::token::uuid().to_string()),
            (TRIGGERED_AT.to_owned(), now.to_rfc3339()),
        ]
    }

    fn kept_headers(&self) -> &[String] {
        &self.kept_headers
    }

    fn signs_timestamp(&self) -> bool {
        false
    }

    fn type_source(&self) -> TypeSource<'_> {
        TypeSource::Header(TOPIC)
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderName, HeaderValue};

    use super::*;

    // Shopify's official Node library, Shopify/shopify-api-js:
    // packages/shopify-api/lib/webhooks/__tests__/validate.test.ts expects the HMAC
    // `B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=` for the raw body `{"foo": "bar"}` under the
    // test config's `apiSecretKey: 'test_secret_key'` (lib/__tests__/test-config.ts), with topic
    // `products/create`. (Re-checked with Python's hmac + base64.)
    const LIB_SECRET: &str = "test_secret_key";
    const LIB_BODY: &[u8] = br#"{"foo": "bar"}"#;
    const LIB_HMAC: &str = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=";

    fn scheme(secrets: &[&str]) -> Shopify {
        Shopify::new(&CommonOptions::for_test(secrets))
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

    fn hmac_header(value: &str) -> HeaderMap {
        headers(&[(SIGNATURE, value.as_bytes())])
    }

    fn verify(s: &Shopify, h: &HeaderMap, body: &[u8]) -> Result<Verified, SignatureError> {
        let source = SourceName::parse("shop").unwrap();
        s.verify(
            &source,
            &SignedRequest { headers: h, body },
            Timestamp::from_secs(0),
        )
    }

    #[test]
    fn accepts_the_official_library_vector() {
        let s = scheme(&[LIB_SECRET]);
        let h = headers(&[
            (SIGNATURE, LIB_HMAC.as_bytes()),
            (TOPIC, b"products/create"),
            (WEBHOOK_ID, b"123456789"),
            (SHOP_DOMAIN, b"shop1.myshopify.io"),
            (API_VERSION, b"2023-01"),
        ]);
        let v = verify(&s, &h, LIB_BODY).unwrap();
        assert_eq!(v.event_type, "products/create");
        assert!(!v.type_signed, "the topic header is unsigned");
        assert_eq!(v.respond_now, None);
        let signed = s.sign(LIB_BODY, Timestamp::from_secs(1_700_000_000));
        assert_eq!(signed[0], (SIGNATURE.to_owned(), LIB_HMAC.to_owned()));
        assert_eq!(signed[1].0, WEBHOOK_ID);
        assert_eq!(
            signed[2],
            (
                TRIGGERED_AT.to_owned(),
                "2023-11-14T22:13:20.000Z".to_owned()
            )
        );
        // No topic: the type is unknown (hookgate's own word, not the sender's).
        let v = verify(&s, &hmac_header(LIB_HMAC), LIB_BODY).unwrap();
        assert_eq!(v.event_type, "unknown");
        assert!(v.type_signed);
    }

    #[test]
    fn rejections_have_exact_codes() {
        let s = scheme(&[LIB_SECRET]);
        let hex_of_the_same_mac =
            "076ded5cdebcd60674a8858d46b82dcc113d5d20e8e72694bbac1f9a1bb76bb8";
        let short = "B23tXN681gZ0qIWNRrgtzA==";
        for (value, code) in [
            ("not base64 at all!", "signature_malformed"),
            (
                "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g",
                "signature_malformed",
            ),
            (short, "signature_malformed"),
            (hex_of_the_same_mac, "signature_malformed"),
            (
                "sha256=B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=",
                "signature_malformed",
            ),
            ("", "signature_malformed"),
            (
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "signature_mismatch",
            ),
        ] {
            assert_eq!(
                verify(&s, &hmac_header(value), LIB_BODY)
                    .unwrap_err()
                    .code(),
                code,
                "{value:?}"
            );
        }
        let oversized = "A".repeat(5000);
        assert_eq!(
            verify(&s, &hmac_header(&oversized), LIB_BODY)
                .unwrap_err()
                .code(),
            "signature_malformed"
        );
        let not_text = headers(&[(SIGNATURE, b"B23t\xff\xfe")]);
        assert_eq!(
            verify(&s, &not_text, LIB_BODY).unwrap_err().code(),
            "signature_malformed"
        );
        assert_eq!(
            verify(&s, &headers(&[(TOPIC, b"orders/create")]), LIB_BODY)
                .unwrap_err()
                .code(),
            "signature_missing"
        );
        assert_eq!(
            verify(&s, &hmac_header(LIB_HMAC), br#"{"foo": "baz"}"#)
                .unwrap_err()
                .code(),
            "signature_mismatch"
        );
    }

    #[test]
    fn every_configured_secret_verifies() {
        let rotated = scheme(&["new-secret", LIB_SECRET]);
        assert!(verify(&rotated, &hmac_header(LIB_HMAC), LIB_BODY).is_ok());
        let with_new = scheme(&["new-secret"]).sign(LIB_BODY, Timestamp::from_secs(0));
        assert!(verify(&rotated, &hmac_header(&with_new[0].1), LIB_BODY).is_ok());
        assert_eq!(
            verify(&scheme(&["other"]), &hmac_header(LIB_HMAC), LIB_BODY)
                .unwrap_err()
                .code(),
            "signature_mismatch"
        );
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let s = scheme(&["shpss_123"]);
        let body = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
        let signed = s.sign(body, Timestamp::from_secs(0));
        let mut h = HeaderMap::new();
        for (k, v) in &signed {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h.insert(TOPIC, HeaderValue::from_static("orders/create"));
        assert_eq!(verify(&s, &h, body).unwrap().event_type, "orders/create");
    }

    #[test]
    fn the_dedup_key_is_the_signed_body_not_the_webhook_id() {
        let s = scheme(&[LIB_SECRET]);
        let first = headers(&[
            (SIGNATURE, LIB_HMAC.as_bytes()),
            (TOPIC, b"products/create"),
            (WEBHOOK_ID, b"b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
        ]);
        let replay = headers(&[
            (SIGNATURE, LIB_HMAC.as_bytes()),
            (TOPIC, b"products/create"),
            (WEBHOOK_ID, b"ffffffff-ffff-ffff-ffff-ffffffffffff"),
        ]);
        let a = verify(&s, &first, LIB_BODY).unwrap().event_id;
        assert_eq!(a, verify(&s, &replay, LIB_BODY).unwrap().event_id);
        assert_eq!(
            a,
            EventId::from_body_mac(
                &SourceName::parse("shop").unwrap(),
                &hmac_sha256(LIB_SECRET.as_bytes(), &[LIB_BODY])
                    .finalize()
                    .into_bytes()
            )
        );
        let other = br#"{"foo": "qux"}"#;
        let signed = s.sign(other, Timestamp::from_secs(0));
        assert_ne!(
            a,
            verify(&s, &hmac_header(&signed[0].1), other)
                .unwrap()
                .event_id
        );
    }

    #[test]
    fn a_delivery_triggered_before_the_dedup_window_is_refused() {
        let s = Shopify::new(&CommonOptions::for_test_with(
            &[LIB_SECRET],
            "dedup_window_secs=86400",
        ));
        let source = SourceName::parse("shop").unwrap();
        let triggered = Timestamp::from_secs(1_700_000_000);
        let at = |now: i64, triggered_at: &[u8]| {
            let h = headers(&[
                (SIGNATURE, LIB_HMAC.as_bytes()),
                (TOPIC, b"products/create"),
                (TRIGGERED_AT, triggered_at),
            ]);
            s.verify(
                &source,
                &SignedRequest {
                    headers: &h,
                    body: LIB_BODY,
                },
                Timestamp::from_secs(now),
            )
            .map(|_| ())
            .map_err(|e| e.code())
        };
        let stamp = triggered.to_rfc3339();
        let day = 86_400;
        // Shopify's retries (hours later) pass; the same request a day and a second later,
        // with its headers as captured, does not.
        assert_eq!(at(1_700_000_000 + 4 * 3600, stamp.as_bytes()), Ok(()));
        assert_eq!(at(1_700_000_000 + day, stamp.as_bytes()), Ok(()));
        assert_eq!(
            at(1_700_000_000 + day + 1, stamp.as_bytes()),
            Err("timestamp_out_of_tolerance")
        );
        // Shopify's own format, nanoseconds and all.
        assert_eq!(
            at(1_700_000_000 + 2 * day, b"2023-11-14T22:13:20.123456789Z"),
            Err("timestamp_out_of_tolerance")
        );
        // The header is unsigned: absent or unreadable, it decides nothing.
        assert_eq!(at(1_700_000_000 + 2 * day, b"yesterday"), Ok(()));
        assert!(verify(&s, &hmac_header(LIB_HMAC), LIB_BODY).is_ok());
        // The window is the one given (the configuration gives the receiver's by default).
        let default = scheme(&[LIB_SECRET]);
        assert_eq!(default.replay_horizon.as_secs(), 7 * day as u64);
    }

    #[test]
    fn kept_headers_are_the_event_metadata() {
        assert_eq!(
            scheme(&["x"]).kept_headers(),
            [
                "x-shopify-topic",
                "x-shopify-webhook-id",
                "x-shopify-shop-domain",
                "x-shopify-api-version",
                "x-shopify-triggered-at",
            ]
        );
    }

    #[test]
    fn generic_options_are_refused_and_secrets_never_print() {
        let options = toml::from_str("encoding='hex'").unwrap();
        let common = CommonOptions::for_test(&["0123456789abcdef"]);
        let err = crate::signature::build("shopify", &common, options).unwrap_err();
        assert!(err.to_string().contains("encoding"), "{err}");

        let s = scheme(&[LIB_SECRET]);
        assert!(!format!("{s:?}").contains(LIB_SECRET));
        let err = verify(&s, &hmac_header(&"A".repeat(43)), LIB_BODY).unwrap_err();
        let shown = format!("{err:?} {err}");
        assert!(
            !shown.contains("B23t") && !shown.contains(LIB_SECRET),
            "{shown}"
        );
    }
}
