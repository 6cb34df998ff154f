//! `stripe`: Stripe's webhook signatures (<https://docs.stripe.com/webhooks#verify-manually>).
//!
//! Wire format: one header,
//!
//! ```text
//! Stripe-Signature: t=1533204620,v1=<hex HMAC-SHA256>[,v1=<hex>…][,v0=<hex>]
//! ```
//!
//! The MAC is HMAC-SHA256 over `{t}.{body}`, keyed with the endpoint secret's raw bytes — the
//! whole `whsec_…` string, prefix included, exactly as Stripe's libraries use it (unlike
//! Standard Webhooks, the secret is not base64-decoded). The request is accepted if any `v1`
//! entry matches under any configured secret (Stripe sends one `v1` per active secret while an
//! endpoint secret is being rolled). `v0` (test-mode legacy) and unknown schemes are ignored;
//! `t` must be within `tolerance_secs` of now, either way.
//!
//! Dedup key: the event's `id` (`evt_…`) from the signed JSON body, as
//! [`EventId::from_provider`]`(source, id)`. Stripe retries an event with a new `t` and so a new
//! signature, but the same body and so the same `id`: keying on the header would make every
//! retry a new event. A verified body without a string `id` falls back to
//! [`EventId::derive`] over the body. The event type is the body's `type`, else `unknown`.

use std::fmt;

use hmac::Mac;

use super::common::clean_event_type;
use super::{
    any_signature_matches, check_tolerance, header_str, hmac_sha256, json_id_and_type,
    parse_unix_secs, CommonOptions, SignatureError, SignatureScheme, SignedRequest, TypeSource,
    Verified,
};
use crate::clock::Timestamp;
use crate::envelope::{EventId, SourceName};

/// The header Stripe signs with (lower case, as [`http::HeaderMap`] stores names).
const HEADER: &str = "stripe-signature";

/// Length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// The Stripe scheme.
#[derive(Clone)]
pub struct Stripe {
    /// The secrets' bytes, in configuration order. Never printed.
    keys: Vec<Vec<u8>>,
    tolerance_secs: u64,
}

impl fmt::Debug for Stripe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stripe")
            .field("keys", &format_args!("[***; {}]", self.keys.len()))
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

impl Stripe {
    /// The scheme with a source's secrets and `tolerance_secs` (it takes no options of its
    /// own).
    pub fn new(common: &CommonOptions) -> Self {
        Self {
            keys: common
                .secrets
                .iter()
                .map(|s| s.expose().as_bytes().to_vec())
                .collect(),
            tolerance_secs: common.tolerance_secs,
        }
    }

    /// The hex `v1` signature of `body` at `t` under `key`.
    fn v1_signature(key: &[u8], t: &str, body: &[u8]) -> String {
        hex::encode(
            hmac_sha256(key, &[t.as_bytes(), b".", body])
                .finalize()
                .into_bytes(),
        )
    }
}

/// A parsed `Stripe-Signature` header.
struct Header<'a> {
    /// `t`, exactly as sent (it is part of the signed content).
    t: &'a str,
    signed_at: Timestamp,
    /// The decodable `v1` signatures.
    v1: Vec<Vec<u8>>,
}

/// Parses `t=…,v1=…[,v1=…][,v0=…]`. Exactly one `t`; at least one `v1` that is the hex of a
/// 32-byte MAC (unreadable `v1` entries beside a readable one are skipped, as Stripe's
/// libraries do); other keys are ignored.
fn parse_header(value: &str) -> Result<Header<'_>, SignatureError> {
    let malformed = || SignatureError::Malformed(HEADER.to_owned());
    let mut t = None;
    let mut v1 = Vec::new();
    for item in value.split(',') {
        let (key, val) = item.trim().split_once('=').ok_or_else(malformed)?;
        match key {
            "t" => {
                if t.is_some() {
                    return Err(malformed());
                }
                let val = val.trim();
                t = Some((val, parse_unix_secs(val, HEADER)?));
            }
            "v1" => {
                if let Ok(sig) = hex::decode(val.trim()) {
                    if sig.len() == TAG_LEN {
                        v1.push(sig);
                    }
                }
            }
            _ => {}
        }
    }
    let (t, signed_at) = t.ok_or_else(malformed)?;
    if v1.is_empty() {
        return Err(malformed());
    }
    Ok(Header { t, signed_at, v1 })
}

impl SignatureScheme for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn verify(
        &self,
        source: &SourceName,
        request: &SignedRequest<'_>,
        now: Timestamp,
    ) -> Result<Verified, SignatureError> {
        let header = parse_header(header_str(request.headers, HEADER)?)?;
        let parts: [&[u8]; 3] = [header.t.as_bytes(), b".", request.body];
        if !any_signature_matches(&self.keys, &parts, &header.v1) {
            return Err(SignatureError::Mismatch);
        }
        // Authentic, but possibly a replay: the signed timestamp must be recent.
        check_tolerance(header.signed_at, now, self.tolerance_secs)?;
        let (id, event_type) = json_id_and_type(request.body);
        let event_id = match id.as_deref() {
            Some(id) if !id.is_empty() => EventId::from_provider(source, id),
            _ => EventId::derive(source, &[request.body]),
        };
        let event_type = match event_type {
            Some(t) if clean_event_type(&t).is_some() => t,
            _ => "unknown".to_owned(),
        };
        Ok(Verified::event(event_id, event_type))
    }

    fn sign(&self, body: &[u8], now: Timestamp) -> Vec<(String, String)> {
        let Some(key) = self.keys.first() else {
            return Vec::new();
        };
        let t = now.as_secs().to_string();
        let v1 = Self::v1_signature(key, &t, body);
        vec![(HEADER.to_owned(), format!("t={t},v1={v1}"))]
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
    use http::{HeaderMap, HeaderValue};

    use super::*;
    use crate::signature::MAX_SIGNATURE_HEADER_LEN;

    // Published vector of stripe-dotnet:
    //   stripe/stripe-dotnet, src/StripeTests/Services/Events/EventUtilityTest.cs
    //     (secret "webhook_secret", t = 1533204620, the v1/v0 pair below)
    //   stripe/stripe-dotnet, src/StripeTests/Resources/event_test_signature.json (the body,
    //     byte for byte, LF line endings and a final newline).
    // The Stripe PyPI package (16.1.0) accepts it too:
    //   stripe.WebhookSignature.verify_header(body, DOTNET_HEADER, "webhook_secret") is True.
    const DOTNET_SECRET: &str = "webhook_secret";
    const DOTNET_T: i64 = 1533204620;
    const DOTNET_V1: &str = "2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7";
    const DOTNET_V0: &str = "63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef";
    const DOTNET_BODY: &str = r#"{
  "id": "evt_123",
  "object": "event",
  "account": "acct_123",
  "api_version": "2017-05-25",
  "created": 1533204620,
  "data": {
    "object": {
      "id": "cus_123",
      "object": "customer",
      "created": 123456789,
      "email": "test@stripe.com",
      "livemode": false,
      "metadata": {}
    }
  },
  "livemode": false,
  "pending_webhooks": 1,
  "request": {
    "id": "req_123",
    "idempotency_key": "idempotency-key-123"
  },
  "type": "customer.created"
}
"#;

    // A vector with a `whsec_` secret (stripe-go's test secret), produced with the Stripe PyPI
    // package 16.1.0:
    //   stripe.WebhookSignature.generate_signature_header(WHSEC_BODY, "whsec_test_secret",
    //                                                    timestamp=1700000000)
    // and the same at timestamp=1700000600 (a retry of the same event).
    const WHSEC_SECRET: &str = "whsec_test_secret";
    const WHSEC_BODY: &[u8] =
        br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"payment_intent.succeeded"}"#;
    const WHSEC_HEADER: &str =
        "t=1700000000,v1=1ee8dd662a91c944c5fc90522bd8a6c2fa5ad2f05377bafef52d694497464c9a";
    const WHSEC_RETRY_HEADER: &str =
        "t=1700000600,v1=278a382d66985049d4a61e2620bb297d537621107e4b6b9d8ddbe232e948c322";

    fn scheme_with(secrets: &[&str], extra: &str) -> Stripe {
        Stripe::new(&CommonOptions::for_test_with(secrets, extra))
    }

    fn dotnet() -> Stripe {
        scheme_with(&[DOTNET_SECRET], "")
    }

    fn dotnet_header() -> String {
        format!("t={DOTNET_T},v1={DOTNET_V1},v0={DOTNET_V0}")
    }

    fn header(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_str(value).unwrap());
        h
    }

    fn source() -> SourceName {
        SourceName::parse("payments").unwrap()
    }

    fn verify_at(
        s: &Stripe,
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
    fn accepts_the_published_stripe_dotnet_vector() {
        let v = verify_at(
            &dotnet(),
            &header(&dotnet_header()),
            DOTNET_BODY.as_bytes(),
            DOTNET_T + 100,
        )
        .unwrap();
        assert_eq!(v.event_id.as_str(), "payments:evt_123");
        assert_eq!(v.event_type, "customer.created");
        assert_eq!(v.respond_now, None);
        assert_eq!(
            Stripe::v1_signature(
                DOTNET_SECRET.as_bytes(),
                &DOTNET_T.to_string(),
                DOTNET_BODY.as_bytes()
            ),
            DOTNET_V1
        );
        // The stripe-dotnet test's rejections: a modified body, and 400 s late with 300 s
        // tolerance.
        let modified = format!("{DOTNET_BODY}this_changes_the_json");
        assert_eq!(
            code(verify_at(
                &dotnet(),
                &header(&dotnet_header()),
                modified.as_bytes(),
                DOTNET_T
            )),
            "signature_mismatch"
        );
        assert_eq!(
            code(verify_at(
                &dotnet(),
                &header(&dotnet_header()),
                DOTNET_BODY.as_bytes(),
                DOTNET_T + 400
            )),
            "timestamp_out_of_tolerance"
        );
    }

    #[test]
    fn the_whsec_prefix_is_part_of_the_key() {
        let s = scheme_with(&[WHSEC_SECRET], "");
        let v = verify_at(&s, &header(WHSEC_HEADER), WHSEC_BODY, 1_700_000_000).unwrap();
        assert_eq!(v.event_id.as_str(), "payments:evt_1NG8Du2eZvKYlo2CUI79vXWy");
        assert_eq!(v.event_type, "payment_intent.succeeded");
        assert_eq!(
            s.sign(WHSEC_BODY, Timestamp::from_secs(1_700_000_000)),
            vec![(HEADER.to_owned(), WHSEC_HEADER.to_owned())]
        );
        // Without the prefix (or base64-decoded, as Standard Webhooks would) it is another key.
        let stripped = scheme_with(&["test_secret"], "");
        assert_eq!(
            code(verify_at(
                &stripped,
                &header(WHSEC_HEADER),
                WHSEC_BODY,
                1_700_000_000
            )),
            "signature_mismatch"
        );
    }

    #[test]
    fn a_retried_event_keeps_its_event_id() {
        let s = scheme_with(&[WHSEC_SECRET], "");
        let first = verify_at(&s, &header(WHSEC_HEADER), WHSEC_BODY, 1_700_000_000).unwrap();
        let retry = verify_at(&s, &header(WHSEC_RETRY_HEADER), WHSEC_BODY, 1_700_000_600).unwrap();
        assert_ne!(WHSEC_HEADER, WHSEC_RETRY_HEADER);
        assert_eq!(first.event_id, retry.event_id);
        assert_eq!(
            first.event_id.as_str(),
            "payments:evt_1NG8Du2eZvKYlo2CUI79vXWy"
        );
        // The same through sign(): new t, new signature, same event.
        let later = s.sign(WHSEC_BODY, Timestamp::from_secs(1_700_086_400));
        let again = verify_at(&s, &header(&later[0].1), WHSEC_BODY, 1_700_086_400).unwrap();
        assert_eq!(again.event_id, first.event_id);
    }

    #[test]
    fn a_body_without_an_id_gets_a_derived_event_id() {
        let s = dotnet();
        for body in [
            &br#"{"type":"x.y"}"#[..],
            br#"{"id":42}"#,
            br#"{"id":""}"#,
            b"not json",
            b"",
        ] {
            let h = header(&s.sign(body, Timestamp::from_secs(DOTNET_T))[0].1);
            let v = verify_at(&s, &h, body, DOTNET_T).unwrap();
            assert_eq!(v.event_id, EventId::derive(&source(), &[body]), "{body:?}");
        }
        let h = header(&s.sign(br#"{"type":"x.y"}"#, Timestamp::from_secs(DOTNET_T))[0].1);
        assert_eq!(
            verify_at(&s, &h, br#"{"type":"x.y"}"#, DOTNET_T)
                .unwrap()
                .event_type,
            "x.y"
        );
        // An id that is not a valid event id is hashed, still stably.
        let body = br#"{"id":"evt with/slash","type":"a"}"#;
        let h = header(&s.sign(body, Timestamp::from_secs(DOTNET_T))[0].1);
        assert_eq!(
            verify_at(&s, &h, body, DOTNET_T).unwrap().event_id,
            EventId::derive(&source(), &[b"evt with/slash"])
        );
    }

    #[test]
    fn any_v1_entry_may_match_and_v0_is_ignored() {
        let s = dotnet();
        let body = DOTNET_BODY.as_bytes();
        let other = "0".repeat(64);
        for value in [
            format!("t={DOTNET_T},v1={other},v1={DOTNET_V1}"),
            format!("v0={DOTNET_V0},v1={DOTNET_V1},t={DOTNET_T}"),
            format!("t={DOTNET_T},v1={DOTNET_V1},v1=bad_signature"),
            format!("t={DOTNET_T}, v1={}", DOTNET_V1.to_ascii_uppercase()),
            format!("t={DOTNET_T},v1={DOTNET_V1},v2=whatever,x=1"),
        ] {
            assert!(
                verify_at(&s, &header(&value), body, DOTNET_T).is_ok(),
                "{value}"
            );
        }
        // v0 holding the right v1 MAC does not count.
        let v0_only = format!("t={DOTNET_T},v0={DOTNET_V1}");
        assert_eq!(
            code(verify_at(&s, &header(&v0_only), body, DOTNET_T)),
            "signature_malformed"
        );
    }

    #[test]
    fn rejections_have_exact_codes() {
        let s = dotnet();
        let body = DOTNET_BODY.as_bytes();
        assert_eq!(
            code(verify_at(&s, &HeaderMap::new(), body, DOTNET_T)),
            "signature_missing"
        );
        let mut wrong_name = HeaderMap::new();
        wrong_name.insert(
            "x-signature",
            HeaderValue::from_str(&dotnet_header()).unwrap(),
        );
        assert_eq!(
            code(verify_at(&s, &wrong_name, body, DOTNET_T)),
            "signature_missing"
        );

        let long = format!(
            "{},v0={}",
            dotnet_header(),
            "0".repeat(MAX_SIGNATURE_HEADER_LEN)
        );
        let malformed = [
            // From stripe-dotnet's ValidateSignatureHandlesIncorrectHeaderValues.
            format!("t=,v1={DOTNET_V1},v0={DOTNET_V0}"),
            "t,v1=,v0=".to_owned(),
            "t,v1=,v0".to_owned(),
            "t,v1=,".to_owned(),
            "t,,".to_owned(),
            ",,".to_owned(),
            "t".to_owned(),
            // From stripe-go's TestTokenNew.
            "v1,t=1".to_owned(),
            "t=".to_owned(),
            // No t, two t, bad t.
            format!("v1={DOTNET_V1}"),
            format!("t={DOTNET_T},t={DOTNET_T},v1={DOTNET_V1}"),
            format!("t=abc,v1={DOTNET_V1}"),
            format!("t=-1,v1={DOTNET_V1}"),
            format!("t=1533204620.0,v1={DOTNET_V1}"),
            format!("t=99999999999999999999,v1={DOTNET_V1}"),
            // No usable v1.
            format!("t={DOTNET_T}"),
            format!("t={DOTNET_T},v1="),
            format!("t={DOTNET_T},v1=zz{}", &DOTNET_V1[2..]),
            format!("t={DOTNET_T},v1={}", &DOTNET_V1[..62]),
            format!("t={DOTNET_T},v1={DOTNET_V1}00"),
            format!("t={DOTNET_T},v1=deadbeef"),
            format!("t={DOTNET_T},v1:{DOTNET_V1}"),
            // Another scheme's header.
            format!("sha256={DOTNET_V1}"),
            format!("v1,{DOTNET_V1}"),
            String::new(),
            long,
        ];
        for value in &malformed {
            assert_eq!(
                code(verify_at(&s, &header(value), body, DOTNET_T)),
                "signature_malformed",
                "{value:?}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert(
            HEADER,
            HeaderValue::from_bytes(b"t=1533204620,v1=\xff\xfe").unwrap(),
        );
        assert_eq!(
            code(verify_at(&s, &h, body, DOTNET_T)),
            "signature_malformed"
        );

        let other = "f".repeat(64);
        let mismatches: Vec<(Stripe, String, &[u8])> = vec![
            (dotnet(), format!("t={DOTNET_T},v1={other}"), body),
            (dotnet(), dotnet_header(), b"{}"),
            (
                dotnet(),
                dotnet_header().replace("t=1533204620", "t=1533204621"),
                body,
            ),
            (scheme_with(&["whsec_other"], ""), dotnet_header(), body),
        ];
        for (s, value, body) in mismatches {
            assert_eq!(
                code(verify_at(&s, &header(&value), body, DOTNET_T)),
                "signature_mismatch",
                "{value:?}"
            );
        }
    }

    #[test]
    fn every_configured_secret_is_tried() {
        let rotating = scheme_with(&["whsec_new", DOTNET_SECRET], "");
        let body = DOTNET_BODY.as_bytes();
        assert!(verify_at(&rotating, &header(&dotnet_header()), body, DOTNET_T).is_ok());
        let by_new = scheme_with(&["whsec_new"], "").sign(body, Timestamp::from_secs(DOTNET_T));
        assert!(verify_at(&rotating, &header(&by_new[0].1), body, DOTNET_T).is_ok());
        assert_eq!(
            code(verify_at(&dotnet(), &header(&by_new[0].1), body, DOTNET_T)),
            "signature_mismatch"
        );
        // Stripe's own rolling header: one v1 per secret.
        let rolled = format!("{},v1={DOTNET_V1}", by_new[0].1);
        assert!(verify_at(&dotnet(), &header(&rolled), body, DOTNET_T).is_ok());
        assert!(verify_at(
            &scheme_with(&["whsec_new"], ""),
            &header(&rolled),
            body,
            DOTNET_T
        )
        .is_ok());
    }

    #[test]
    fn timestamps_outside_the_window_are_refused_either_way() {
        let s = dotnet();
        let h = header(&dotnet_header());
        let body = DOTNET_BODY.as_bytes();
        for now in [
            DOTNET_T - 300,
            DOTNET_T - 1,
            DOTNET_T,
            DOTNET_T + 1,
            DOTNET_T + 300,
        ] {
            assert!(
                verify_at(&s, &h, body, now).is_ok(),
                "now = t{:+}",
                now - DOTNET_T
            );
        }
        for now in [DOTNET_T + 301, DOTNET_T - 301, DOTNET_T + 86_400 * 365, 0] {
            assert_eq!(
                code(verify_at(&s, &h, body, now)),
                "timestamp_out_of_tolerance",
                "now = {now}"
            );
        }
        let tight = scheme_with(&[DOTNET_SECRET], "tolerance_secs = 5");
        assert!(verify_at(&tight, &h, body, DOTNET_T + 5).is_ok());
        assert!(verify_at(&tight, &h, body, DOTNET_T - 5).is_ok());
        assert_eq!(
            code(verify_at(&tight, &h, body, DOTNET_T + 6)),
            "timestamp_out_of_tolerance"
        );
        assert_eq!(
            code(verify_at(&tight, &h, body, DOTNET_T - 6)),
            "timestamp_out_of_tolerance"
        );
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let s = scheme_with(&["whsec_first", "whsec_second"], "");
        let body = br#"{"id":"evt_round","type":"charge.succeeded"}"#;
        let signed = s.sign(body, Timestamp::from_millis(1_700_000_123_456));
        assert_eq!(signed.len(), 1);
        assert_eq!(signed[0].0, "stripe-signature");
        assert!(
            signed[0].1.starts_with("t=1700000123,v1="),
            "{}",
            signed[0].1
        );
        assert_eq!(signed[0].1.len(), "t=1700000123,v1=".len() + 64);
        let v = verify_at(&s, &header(&signed[0].1), body, 1_700_000_123).unwrap();
        assert_eq!(v.event_id.as_str(), "payments:evt_round");
        assert_eq!(v.event_type, "charge.succeeded");
        assert_eq!(s.name(), "stripe");
        assert!(s.kept_headers().is_empty());
    }

    #[test]
    fn secrets_and_expected_signatures_never_print() {
        let s = dotnet();
        let debug = format!("{s:?}");
        assert!(
            !debug.contains(DOTNET_SECRET) && debug.contains("***"),
            "{debug}"
        );
        let err = verify_at(&s, &header(&dotnet_header()), b"{}", DOTNET_T).unwrap_err();
        let expected = Stripe::v1_signature(DOTNET_SECRET.as_bytes(), &DOTNET_T.to_string(), b"{}");
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(
                !text.contains(&expected) && !text.contains(DOTNET_SECRET),
                "{text}"
            );
        }
    }

    #[test]
    fn odd_inputs_never_panic() {
        let s = dotnet();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..500 {
            let len = (seed % 90) as usize;
            let value: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    b"t=v10,af9 ,==,t=1"[(seed % 17) as usize] as char
                })
                .collect();
            if let Ok(v) = HeaderValue::from_str(&value) {
                let mut h = HeaderMap::new();
                h.insert(HEADER, v);
                let _ = verify_at(&s, &h, value.as_bytes(), DOTNET_T);
            }
        }
    }
}
