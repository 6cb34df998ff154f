//! `slack`: requests from Slack apps (Events API, slash commands, interactivity).
//!
//! Wire format: `X-Slack-Signature: v0=<hex>`, the HMAC-SHA256 (keyed with the app's signing
//! secret) of `v0:{X-Slack-Request-Timestamp}:{raw body}`; the three pieces are fed to the HMAC
//! one after the other, the body is never copied. A timestamp more than `tolerance_secs` before
//! or after now is refused (`timestamp_out_of_tolerance`), checked once the signature is known to
//! be good.
//!
//! The body is JSON (Events API) or form-encoded (slash commands, interactivity). Event type:
//! the JSON `type`, except that an `event_callback` takes its inner `event.type` (e.g.
//! `app_mention`); a form body gives its `command` (e.g. `/deploy`); otherwise `unknown`.
//! `url_verification` (`{"type":"url_verification","challenge":"…"}`, sent when the request URL
//! is configured) is verified and answered at once with `{"challenge": …}`; nothing is enqueued.
//!
//! Dedup key: the Events API `event_id`, which is inside the signed body
//! ([`EventId::from_provider`]). Without one (commands, interactivity, other callbacks) the key
//! is derived from the body ([`EventId::derive`]) — never from the timestamp: Slack re-signs every
//! retry with a fresh timestamp, and a retry must dedupe against the original.

use std::borrow::Cow;

use hmac::Mac;

use super::common::{clean_event_type, decode_mac, encode_mac};
use super::common::{Encoding, SigningKeys};
use super::{
    any_signature_matches, check_tolerance, header_str, hmac_sha256, parse_unix_secs,
    CommonOptions, SignatureError, SignatureScheme, SignedRequest, TypeSource, Verified,
};
use crate::clock::Timestamp;
use crate::envelope::{EventId, SourceName};

/// The header that carries the signature.
const SIGNATURE: &str = "x-slack-signature";
/// The signing time, Unix seconds; signed.
const TIMESTAMP: &str = "x-slack-request-timestamp";
/// Which retry this is (unsigned; kept for reference only).
const RETRY_NUM: &str = "x-slack-retry-num";
/// Why Slack retried (unsigned; kept for reference only).
const RETRY_REASON: &str = "x-slack-retry-reason";
/// The signature version, its header prefix and the first piece of the signed content.
const VERSION: &str = "v0";

/// The `slack` scheme.
#[derive(Debug, Clone)]
pub struct Slack {
    keys: SigningKeys,
    tolerance_secs: u64,
    kept_headers: Vec<String>,
}

impl Slack {
    /// The scheme with a source's secrets and `tolerance_secs` (it takes no options of its
    /// own).
    pub fn new(common: &CommonOptions) -> Self {
        Self {
            keys: SigningKeys::new(&common.secrets),
            tolerance_secs: common.tolerance_secs,
            kept_headers: [TIMESTAMP, RETRY_NUM, RETRY_REASON]
                .map(str::to_owned)
                .to_vec(),
        }
    }
}

/// The pieces of the signed content, in order.
fn signed_parts<'a>(timestamp: &'a str, body: &'a [u8]) -> [&'a [u8]; 5] {
    [VERSION.as_bytes(), b":", timestamp.as_bytes(), b":", body]
}

/// What the body says about the event.
struct Payload {
    event_id: Option<String>,
    event_type: Option<String>,
    /// A `url_verification` handshake, to be answered rather than enqueued.
    handshake: bool,
    /// The handshake's challenge, echoed back (`null` if the body has none).
    challenge: Option<String>,
}

impl Payload {
    fn read(body: &[u8]) -> Self {
        let json = body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'{');
        if json {
            Self::from_json(body)
        } else {
            Self {
                event_id: None,
                event_type: form_field(body, "command"),
                handshake: false,
                challenge: None,
            }
        }
    }

    fn from_json(body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Inner<'a> {
            #[serde(borrow, default, rename = "type")]
            event_type: Option<Cow<'a, str>>,
        }
        #[derive(serde::Deserialize)]
        struct Outer<'a> {
            #[serde(borrow, default, rename = "type")]
            event_type: Option<Cow<'a, str>>,
            #[serde(borrow, default)]
            event_id: Option<Cow<'a, str>>,
            #[serde(borrow, default)]
            challenge: Option<Cow<'a, str>>,
            #[serde(borrow, default)]
            event: Option<Inner<'a>>,
        }
        let Ok(outer) = serde_json::from_slice::<Outer<'_>>(body) else {
            return Self {
                event_id: None,
                event_type: None,
                handshake: false,
                challenge: None,
            };
        };
        let outer_type = outer.event_type.as_deref();
        let event_type = match outer_type {
            Some("event_callback") => outer
                .event
                .as_ref()
                .and_then(|e| e.event_type.as_deref())
                .or(outer_type),
            other => other,
        };
        Self {
            event_id: outer
                .event_id
                .as_deref()
                .filter(|id| !id.is_empty())
                .map(str::to_owned),
            event_type: event_type.and_then(clean_event_type).map(str::to_owned),
            handshake: outer_type == Some("url_verification"),
            challenge: outer.challenge.map(Cow::into_owned),
        }
    }
}

/// The first value of `name` in a form-encoded body, decoded; `None` if absent or not text.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        if form_decode(key)? != name {
            return None;
        }
        form_decode(value)
            .as_deref()
            .and_then(clean_event_type)
            .map(str::to_owned)
    })
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space, `%XX` a byte).
fn form_decode(text: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let digits = rest.get(..2)?;
                let mut byte = [0u8; 1];
                hex::decode_to_slice(digits, &mut byte).ok()?;
                out.push(byte[0]);
                rest = &rest[2..];
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

impl SignatureScheme for Slack {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn verify(
        &self,
        source: &SourceName,
        request: &SignedRequest<'_>,
        now: Timestamp,
    ) -> Result<Verified, SignatureError> {
        let value = header_str(request.headers, SIGNATURE)?;
        let given = decode_mac(value, "v0=", Encoding::Hex, SIGNATURE)?;
        let timestamp = header_str(request.headers, TIMESTAMP)?.trim();
        let signed_at = parse_unix_secs(timestamp, TIMESTAMP)?;
        let parts = signed_parts(timestamp, request.body);
        if !any_signature_matches(self.keys.all(), &parts, &[given]) {
            return Err(SignatureError::Mismatch);
        }
        check_tolerance(signed_at, now, self.tolerance_secs)?;

        let payload = Payload::read(request.body);
        let event_id = match &payload.event_id {
            Some(id) => EventId::from_provider(source, id),
            None => EventId::derive(source, &[request.body]),
        };
        let event_type = payload.event_type.as_deref().unwrap_or("unknown");
        let mut verified = Verified::event(event_id, event_type);
        if payload.handshake {
            verified.respond_now = Some(serde_json::json!({ "challenge": payload.challenge }));
        }
        Ok(verified)
    }

    fn sign(&self, body: &[u8], now: Timestamp) -> Vec<(String, String)> {
        let Some(key) = self.keys.signing() else {
            return Vec::new();
        };
        let timestamp = now.as_secs().to_string();
        let tag = hmac_sha256(key, &signed_parts(&timestamp, body))
            .finalize()
            .into_bytes();
        vec![
            (
                SIGNATURE.to_owned(),
                format!("{VERSION}={}", encode_mac(&tag, Encoding::Hex)),
            ),
            (TIMESTAMP.to_owned(), timestamp),
        ]
    }

    fn kept_headers(&self) -> &[String] {
        &self.kept_headers
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
    use serde_json::json;

    use super::*;

    // Slack's published example, "Verifying requests from Slack"
    // (https://api.slack.com/authentication/verifying-requests-from-slack), also the vector of
    // Slack's official Python SDK, slackapi/python-slack-sdk
    // tests/signature/test_signature_verifier.py. The body's command is `/webhook-collect`.
    const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TIMESTAMP: i64 = 1_531_420_618;
    const DOC_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIGNATURE: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn scheme(secrets: &[&str]) -> Slack {
        Slack::new(&CommonOptions::for_test_with(secrets, "tolerance_secs=300"))
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

    fn doc_headers(signature: &str, timestamp: &str) -> HeaderMap {
        headers(&[
            (SIGNATURE, signature.as_bytes()),
            (TIMESTAMP, timestamp.as_bytes()),
        ])
    }

    fn signed(s: &Slack, body: &[u8], at: i64) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in s.sign(body, Timestamp::from_secs(at)) {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(&v).unwrap(),
            );
        }
        h
    }

    fn verify(s: &Slack, h: &HeaderMap, body: &[u8], now: i64) -> Result<Verified, SignatureError> {
        let source = SourceName::parse("slack").unwrap();
        s.verify(
            &source,
            &SignedRequest { headers: h, body },
            Timestamp::from_secs(now),
        )
    }

    #[test]
    fn accepts_the_published_vector() {
        let s = scheme(&[DOC_SECRET]);
        let h = doc_headers(DOC_SIGNATURE, "1531420618");
        let v = verify(&s, &h, DOC_BODY, DOC_TIMESTAMP).unwrap();
        assert_eq!(v.event_type, "/webhook-collect");
        assert_eq!(v.respond_now, None);
        assert_eq!(
            v.event_id,
            EventId::derive(&SourceName::parse("slack").unwrap(), &[DOC_BODY])
        );
        assert_eq!(
            s.sign(DOC_BODY, Timestamp::from_secs(DOC_TIMESTAMP)),
            vec![
                (SIGNATURE.to_owned(), DOC_SIGNATURE.to_owned()),
                (TIMESTAMP.to_owned(), "1531420618".to_owned()),
            ]
        );
    }

    #[test]
    fn rejections_have_exact_codes() {
        let s = scheme(&[DOC_SECRET]);
        let hex = DOC_SIGNATURE.trim_start_matches("v0=");
        let now = DOC_TIMESTAMP;
        let ts = "1531420618";
        let cases: Vec<(HeaderMap, &[u8], &str)> = vec![
            (headers(&[]), DOC_BODY, "signature_missing"),
            (
                headers(&[(TIMESTAMP, ts.as_bytes())]),
                DOC_BODY,
                "signature_missing",
            ),
            (
                headers(&[(SIGNATURE, DOC_SIGNATURE.as_bytes())]),
                DOC_BODY,
                "signature_missing",
            ),
            (
                doc_headers(&format!("v1={hex}"), ts),
                DOC_BODY,
                "signature_malformed",
            ),
            (doc_headers(hex, ts), DOC_BODY, "signature_malformed"),
            (
                doc_headers(&format!("v0={}", "g".repeat(64)), ts),
                DOC_BODY,
                "signature_malformed",
            ),
            (
                doc_headers(&format!("v0={}", &hex[..62]), ts),
                DOC_BODY,
                "signature_malformed",
            ),
            (
                doc_headers(&"v".repeat(5000), ts),
                DOC_BODY,
                "signature_malformed",
            ),
            (
                headers(&[(SIGNATURE, b"v0=\xff"), (TIMESTAMP, ts.as_bytes())]),
                DOC_BODY,
                "signature_malformed",
            ),
            (
                doc_headers(DOC_SIGNATURE, "yesterday"),
                DOC_BODY,
                "signature_malformed",
            ),
            (
                doc_headers(DOC_SIGNATURE, "1531420618.5"),
                DOC_BODY,
                "signature_malformed",
            ),
            (
                doc_headers(DOC_SIGNATURE, "-1531420618"),
                DOC_BODY,
                "signature_malformed",
            ),
            (
                doc_headers(DOC_SIGNATURE, ""),
                DOC_BODY,
                "signature_malformed",
            ),
            (
                headers(&[(SIGNATURE, DOC_SIGNATURE.as_bytes()), (TIMESTAMP, b"\xff")]),
                DOC_BODY,
                "signature_malformed",
            ),
            // Well formed but wrong: body, signature, or a timestamp the signature does not cover.
            (
                doc_headers(DOC_SIGNATURE, ts),
                b"token=xyzz0WbapA4vBCDEFasx0q6G&command=%2Fother",
                "signature_mismatch",
            ),
            (
                doc_headers(&format!("v0={}", "0".repeat(64)), ts),
                DOC_BODY,
                "signature_mismatch",
            ),
            (
                doc_headers(DOC_SIGNATURE, "1531420619"),
                DOC_BODY,
                "signature_mismatch",
            ),
        ];
        for (h, body, code) in cases {
            assert_eq!(verify(&s, &h, body, now).unwrap_err().code(), code, "{h:?}");
        }
    }

    #[test]
    fn the_timestamp_window_applies_both_ways() {
        let s = scheme(&[DOC_SECRET]);
        let h = doc_headers(DOC_SIGNATURE, "1531420618");
        let at = DOC_TIMESTAMP;
        for (now, code) in [
            (at + 300, None),
            (at - 300, None),
            (at + 301, Some("timestamp_out_of_tolerance")),
            (at - 301, Some("timestamp_out_of_tolerance")),
            (at + 86_400, Some("timestamp_out_of_tolerance")),
        ] {
            assert_eq!(
                verify(&s, &h, DOC_BODY, now).err().map(|e| e.code()),
                code,
                "now = at{:+}",
                now - at
            );
        }
        // A stale request that is also forged is reported as forged.
        let forged = doc_headers(&format!("v0={}", "0".repeat(64)), "1531420618");
        assert_eq!(
            verify(&s, &forged, DOC_BODY, at + 86_400)
                .unwrap_err()
                .code(),
            "signature_mismatch"
        );
    }

    #[test]
    fn every_configured_secret_verifies() {
        let rotated = scheme(&["new-signing-secret", DOC_SECRET]);
        let h = doc_headers(DOC_SIGNATURE, "1531420618");
        assert!(verify(&rotated, &h, DOC_BODY, DOC_TIMESTAMP).is_ok());
        let h = signed(&scheme(&["new-signing-secret"]), DOC_BODY, DOC_TIMESTAMP);
        assert!(verify(&rotated, &h, DOC_BODY, DOC_TIMESTAMP).is_ok());
        assert_eq!(
            verify(&scheme(&["other"]), &h, DOC_BODY, DOC_TIMESTAMP)
                .unwrap_err()
                .code(),
            "signature_mismatch"
        );
    }

    // The handshake body from Slack's `url_verification` event documentation.
    const CHALLENGE_BODY: &[u8] = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;

    #[test]
    fn url_verification_is_answered_at_once() {
        let s = scheme(&["s3cr3t"]);
        let h = signed(&s, CHALLENGE_BODY, 1000);
        let v = verify(&s, &h, CHALLENGE_BODY, 1000).unwrap();
        assert_eq!(v.event_type, "url_verification");
        assert_eq!(
            v.respond_now,
            Some(json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}))
        );
        // A handshake without a challenge is still a handshake: answered, never enqueued.
        let bare = br#"{"type":"url_verification"}"#;
        assert_eq!(
            verify(&s, &signed(&s, bare, 1000), bare, 1000)
                .unwrap()
                .respond_now,
            Some(json!({ "challenge": null }))
        );
        // Forged: a challenge signed with another secret, or not signed at all, is refused.
        let forged = signed(&scheme(&["attacker"]), CHALLENGE_BODY, 1000);
        assert_eq!(
            verify(&s, &forged, CHALLENGE_BODY, 1000)
                .unwrap_err()
                .code(),
            "signature_mismatch"
        );
        let unsigned = headers(&[(TIMESTAMP, b"1000")]);
        assert_eq!(
            verify(&s, &unsigned, CHALLENGE_BODY, 1000)
                .unwrap_err()
                .code(),
            "signature_missing"
        );
    }

    const MENTION: &[u8] = br#"{"token":"XXYYZZ","team_id":"T123ABC456","api_app_id":"A123ABC456","event":{"type":"app_mention","user":"U123ABC456","text":"<@U0LAN0Z89> is it everything a river should be?","ts":"1515449522.000016","channel":"C123ABC456","event_ts":"1515449522000016"},"type":"event_callback","event_id":"Ev123ABC456","event_time":1515449522}"#;

    #[test]
    fn events_api_callbacks_use_the_inner_type_and_the_signed_event_id() {
        let s = scheme(&["s3cr3t"]);
        let v = verify(&s, &signed(&s, MENTION, 1000), MENTION, 1000).unwrap();
        assert_eq!(v.event_type, "app_mention");
        assert_eq!(v.event_id.as_str(), "slack:Ev123ABC456");
        assert_eq!(v.respond_now, None);
    }

    #[test]
    fn a_retry_re_signed_with_a_new_timestamp_is_the_same_event() {
        let s = scheme(&["s3cr3t"]);
        // Events API: keyed on event_id; Slack's retry carries a new timestamp and signature.
        let first = signed(&s, MENTION, 1000);
        let mut retry = signed(&s, MENTION, 1065);
        retry.insert(RETRY_NUM, HeaderValue::from_static("1"));
        retry.insert(RETRY_REASON, HeaderValue::from_static("http_timeout"));
        assert_ne!(first[SIGNATURE], retry[SIGNATURE]);
        let a = verify(&s, &first, MENTION, 1070).unwrap().event_id;
        let b = verify(&s, &retry, MENTION, 1070).unwrap().event_id;
        assert_eq!(a, b);
        // Without an event_id: keyed on the body, so the timestamp still does not split it.
        let first = signed(&s, DOC_BODY, 1000);
        let retry = signed(&s, DOC_BODY, 1065);
        let a = verify(&s, &first, DOC_BODY, 1070).unwrap().event_id;
        let b = verify(&s, &retry, DOC_BODY, 1070).unwrap().event_id;
        assert_eq!(a, b);
        // A different event is a different id.
        let other =
            br#"{"type":"event_callback","event":{"type":"app_mention"},"event_id":"Ev999"}"#;
        let c = verify(&s, &signed(&s, other, 1000), other, 1000)
            .unwrap()
            .event_id;
        assert_ne!(
            c,
            verify(&s, &signed(&s, MENTION, 1000), MENTION, 1000)
                .unwrap()
                .event_id
        );
    }

    #[test]
    fn event_types_from_every_body_shape() {
        let s = scheme(&["s3cr3t"]);
        let source = SourceName::parse("slack").unwrap();
        let cases: [(&[u8], &str); 9] = [
            (
                br#"{"type":"app_rate_limited","minute_rate_limited":1518467820}"#,
                "app_rate_limited",
            ),
            (
                br#"  {"type":"event_callback","event_id":"Ev1"}"#,
                "event_callback",
            ),
            (
                br#"{"type":"event_callback","event":{"user":"U1"}}"#,
                "event_callback",
            ),
            (br#"{"event":{"type":"message"}}"#, "unknown"),
            (br#"{"type":7}"#, "unknown"),
            (b"{not json", "unknown"),
            (b"text=a+b&command=%2Fdeploy&user_id=U1", "/deploy"),
            (b"payload=%7B%22type%22%3A%22block_actions%22%7D", "unknown"),
            (b"command=%2", "unknown"),
        ];
        for (body, want) in cases {
            let v = verify(&s, &signed(&s, body, 1000), body, 1000).unwrap();
            assert_eq!(v.event_type, want, "{}", String::from_utf8_lossy(body));
            assert_eq!(v.respond_now, None);
        }
        // No event_id: derived from the body.
        let body: &[u8] = br#"{"type":"app_rate_limited"}"#;
        let v = verify(&s, &signed(&s, body, 1000), body, 1000).unwrap();
        assert_eq!(v.event_id, EventId::derive(&source, &[body]));
    }

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_field(b"a=1&command=%2Fwebbot", "command").as_deref(),
            Some("/webbot")
        );
        assert_eq!(
            form_field(b"command=%2fx+y", "command").as_deref(),
            Some("/x y")
        );
        assert_eq!(form_field(b"commands=1&command", "command"), None);
        assert_eq!(form_field(b"a=1", "command"), None);
        assert_eq!(form_field(b"command=%ff", "command"), None);
        assert_eq!(form_field(b"command=%+1", "command"), None);
        assert_eq!(form_field(b"command=%0a", "command"), None);
        assert_eq!(form_decode(b"%E2%9C%93"), Some("\u{2713}".to_owned()));
    }

    #[test]
    fn kept_headers_and_options() {
        assert_eq!(
            scheme(&["x"]).kept_headers(),
            [
                "x-slack-request-timestamp",
                "x-slack-retry-num",
                "x-slack-retry-reason"
            ]
        );
        let options = toml::from_str("timestamp_header='x-slack-request-timestamp'").unwrap();
        let common = CommonOptions::for_test(&[DOC_SECRET]);
        let err = crate::signature::build("slack", &common, options).unwrap_err();
        assert!(err.to_string().contains("timestamp_header"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let s = scheme(&[DOC_SECRET]);
        assert!(!format!("{s:?}").contains(DOC_SECRET));
        let h = doc_headers(&format!("v0={}", "0".repeat(64)), "1531420618");
        let err = verify(&s, &h, DOC_BODY, DOC_TIMESTAMP).unwrap_err();
        let shown = format!("{err:?} {err}");
        assert!(
            !shown.contains("a2114d57") && !shown.contains(DOC_SECRET),
            "{shown}"
        );
    }
}
