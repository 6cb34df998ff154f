//! Standard Webhooks `v1a` (ed25519) against vectors made by an independent implementation:
//! `vectors/ed25519_standard_webhooks.json`, written by `vectors/ed25519_standard_webhooks.py`
//! with Python's `cryptography` package. Inbound, a source verifies them with the `whpk_` key;
//! outbound, hookgate signs the same messages with the `whsk_` key (either form) and must write
//! the same bytes, ed25519 being deterministic. The last test runs the generator live on a fresh
//! random key when `HOOKGATE_PYTHON` names the test venv's python:
//!
//! ```text
//! HOOKGATE_PYTHON=/work/main/.venv/bin/python cargo test -p hookgate-core --test ed25519
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use hookgate_core::delivery::{Destination, ForwardOptions, Forwarder};
use hookgate_core::signature::{SignatureScheme, SignedRequest, StandardWebhooks};
use hookgate_core::{Config, Envelope, EventId, ManualClock, Secret, SourceName, Timestamp};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const FIXTURE: &str = include_str!("vectors/ed25519_standard_webhooks.json");
const GENERATOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/ed25519_standard_webhooks.py"
);
/// A `whsec_` secret for rotation tests: the Standard Webhooks published test secret.
const HMAC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug, Clone, Deserialize)]
struct Case {
    name: String,
    key_form: String,
    seed_hex: String,
    public_key_hex: String,
    secret_key: String,
    public_key: String,
    msg_id: String,
    timestamp: i64,
    body: String,
    signature: String,
}

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

fn cases() -> Vec<Case> {
    let fixture: Fixture = serde_json::from_str(FIXTURE).expect("fixture parses");
    assert!(fixture.cases.len() >= 4);
    for form in ["seed32", "seed_and_public64"] {
        assert!(
            fixture.cases.iter().any(|c| c.key_form == form),
            "the fixture has a {form} key"
        );
    }
    fixture.cases
}

/// The scheme of source `src`, scheme `scheme`, with `secrets`.
fn scheme(scheme: &str, secrets: &[&str]) -> Arc<dyn SignatureScheme> {
    let doc = format!("[sources.src]\nscheme = {scheme:?}\nsecrets = {secrets:?}\n");
    let config = Config::from_toml(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    config.sources[&SourceName::parse("src").unwrap()]
        .scheme
        .clone()
}

fn headers(prefix: &str, id: &str, timestamp: i64, signature: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("id", id.to_owned()),
        ("timestamp", timestamp.to_string()),
        ("signature", signature.to_owned()),
    ] {
        h.insert(
            HeaderName::from_bytes(format!("{prefix}-{name}").as_bytes()).unwrap(),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    h
}

/// Verifies `signature` of `body` as message `id` at `timestamp`, at `timestamp`; the error code
/// when refused.
fn verify(
    s: &dyn SignatureScheme,
    prefix: &str,
    id: &str,
    timestamp: i64,
    signature: &str,
    body: &[u8],
) -> Result<EventId, &'static str> {
    let h = headers(prefix, id, timestamp, signature);
    s.verify(
        &SourceName::parse("src").unwrap(),
        &SignedRequest { headers: &h, body },
        Timestamp::from_secs(timestamp),
    )
    .map(|v| v.event_id)
    .map_err(|e| e.code())
}

fn verify_case(s: &dyn SignatureScheme, prefix: &str, c: &Case) -> Result<EventId, &'static str> {
    verify(
        s,
        prefix,
        &c.msg_id,
        c.timestamp,
        &c.signature,
        c.body.as_bytes(),
    )
}

/// Both `whsk_` forms of a case's key: the 32-byte seed and the 64-byte seed ‖ public key.
fn both_private_forms(c: &Case) -> [String; 2] {
    let seed = hex::decode(&c.seed_hex).unwrap();
    let public = hex::decode(&c.public_key_hex).unwrap();
    [
        format!("whsk_{}", B64.encode(&seed)),
        format!("whsk_{}", B64.encode([seed, public].concat())),
    ]
}

#[test]
fn the_fixtures_signatures_verify_inbound_under_their_public_key() {
    for c in cases() {
        for (name, prefix) in [("standard", "webhook"), ("svix", "svix")] {
            let s = scheme(name, &[&c.public_key]);
            let id =
                verify_case(s.as_ref(), prefix, &c).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(
                id,
                EventId::from_provider(&SourceName::parse("src").unwrap(), &c.msg_id),
                "{}",
                c.name
            );
        }
        // The private key verifies too, with its public half.
        let s = scheme("standard", &[&c.secret_key]);
        assert!(verify_case(s.as_ref(), "webhook", &c).is_ok(), "{}", c.name);
        // Among other signatures: a wrong v1, a junk v1a, a v2.
        let crowded = format!(
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1a,AAAA v2,abcd {}",
            c.signature
        );
        let s = scheme("standard", &[&c.public_key]);
        let body = c.body.as_bytes();
        assert!(verify(
            s.as_ref(),
            "webhook",
            &c.msg_id,
            c.timestamp,
            &crowded,
            body
        )
        .is_ok());
    }
}

#[test]
fn outbound_signing_matches_the_fixture_byte_for_byte_in_both_key_forms() {
    for c in cases() {
        let mut forms = both_private_forms(&c).to_vec();
        forms.push(c.secret_key.clone());
        for key in forms {
            let signer = StandardWebhooks::for_signing(&Secret::new(key)).unwrap();
            let signed = signer.sign_message(
                &c.msg_id,
                c.body.as_bytes(),
                Timestamp::from_secs(c.timestamp),
            );
            assert_eq!(
                signed,
                vec![
                    ("webhook-id".to_owned(), c.msg_id.clone()),
                    ("webhook-timestamp".to_owned(), c.timestamp.to_string()),
                    ("webhook-signature".to_owned(), c.signature.clone()),
                ],
                "{}",
                c.name
            );
        }
        // A source whose first key is a whsk_ key signs v1a too (`hookgate sign`), and its
        // signature verifies under the whpk_ key alone.
        let config = Config::from_toml(&format!(
            "[sources.src]\nscheme = 'standard'\nsecrets = ['{}', '{HMAC_SECRET}']\n",
            c.secret_key
        ))
        .unwrap();
        let signed = config
            .sign("src", c.body.as_bytes(), Timestamp::from_secs(c.timestamp))
            .unwrap();
        assert!(signed[2].1.starts_with("v1a,"), "{signed:?}");
        let verifier = scheme("standard", &[&c.public_key]);
        let (id, sig) = (&signed[0].1, &signed[2].1);
        assert!(verify(
            verifier.as_ref(),
            "webhook",
            id,
            c.timestamp,
            sig,
            c.body.as_bytes()
        )
        .is_ok());
    }
}

#[test]
fn tampered_content_wrong_keys_and_the_wrong_kind_of_key_are_refused() {
    let all = cases();
    let c = &all[0];
    let other = &all[1];
    let s = scheme("standard", &[&c.public_key]);
    let body = c.body.as_bytes();
    let mismatch = Err("signature_mismatch");
    // Tampered body: one byte changed, one added, emptied.
    let mut flipped = body.to_vec();
    flipped[3] ^= 1;
    let mut longer = body.to_vec();
    longer.push(b' ');
    for tampered in [&flipped[..], &longer[..], b""] {
        assert_eq!(
            verify(
                s.as_ref(),
                "webhook",
                &c.msg_id,
                c.timestamp,
                &c.signature,
                tampered
            ),
            mismatch
        );
    }
    // Tampered timestamp (within the tolerance, so only the signature refuses it) and id.
    assert_eq!(
        verify(
            s.as_ref(),
            "webhook",
            &c.msg_id,
            c.timestamp + 1,
            &c.signature,
            body
        ),
        mismatch
    );
    assert_eq!(
        verify(
            s.as_ref(),
            "webhook",
            "msg_other",
            c.timestamp,
            &c.signature,
            body
        ),
        mismatch
    );
    // Tampered signature.
    let mut sig = B64.decode(&c.signature[4..]).unwrap();
    sig[10] ^= 0x40;
    let bad = format!("v1a,{}", B64.encode(&sig));
    assert_eq!(
        verify(s.as_ref(), "webhook", &c.msg_id, c.timestamp, &bad, body),
        mismatch
    );
    // Another key's signature, and this signature under another key.
    assert_eq!(verify_case(s.as_ref(), "webhook", other), mismatch);
    let wrong_key = scheme("standard", &[&other.public_key]);
    assert_eq!(verify_case(wrong_key.as_ref(), "webhook", c), mismatch);
    // A v1a signature is never checked against an HMAC secret, nor a v1 MAC against a public
    // key: a source with only the other kind of key refuses it.
    let hmac_only = scheme("standard", &[HMAC_SECRET]);
    assert_eq!(verify_case(hmac_only.as_ref(), "webhook", c), mismatch);
    let v1 = StandardWebhooks::for_signing(&Secret::new(HMAC_SECRET))
        .unwrap()
        .sign_message(&c.msg_id, body, Timestamp::from_secs(c.timestamp));
    assert_eq!(
        verify(
            s.as_ref(),
            "webhook",
            &c.msg_id,
            c.timestamp,
            &v1[2].1,
            body
        ),
        mismatch
    );
    // The right signature bytes written as v1 do not count (wrong length for a MAC: malformed).
    let as_v1 = c.signature.replacen("v1a,", "v1,", 1);
    assert_eq!(
        verify(s.as_ref(), "webhook", &c.msg_id, c.timestamp, &as_v1, body),
        Err("signature_malformed")
    );
    // The replay window holds for v1a as for v1.
    let h = headers("webhook", &c.msg_id, c.timestamp, &c.signature);
    let late = s.verify(
        &SourceName::parse("src").unwrap(),
        &SignedRequest { headers: &h, body },
        Timestamp::from_secs(c.timestamp + 301),
    );
    assert_eq!(late.unwrap_err().code(), "timestamp_out_of_tolerance");
}

#[test]
fn rotation_a_source_with_a_secret_and_a_public_key_accepts_either_kind() {
    let c = &cases()[1];
    let body = c.body.as_bytes();
    let v1 = StandardWebhooks::for_signing(&Secret::new(HMAC_SECRET))
        .unwrap()
        .sign_message(&c.msg_id, body, Timestamp::from_secs(c.timestamp));
    let v1 = &v1[2].1;
    assert!(v1.starts_with("v1,"));
    for secrets in [
        [HMAC_SECRET, c.public_key.as_str()],
        [c.public_key.as_str(), HMAC_SECRET],
    ] {
        for name in ["standard", "svix"] {
            let prefix = if name == "svix" { "svix" } else { "webhook" };
            let s = scheme(name, &secrets);
            assert!(verify_case(s.as_ref(), prefix, c).is_ok(), "{secrets:?}");
            assert!(verify(s.as_ref(), prefix, &c.msg_id, c.timestamp, v1, body).is_ok());
            // Both in one header, as a provider mid-rotation sends them.
            let both = format!("{v1} {}", c.signature);
            assert!(verify(s.as_ref(), prefix, &c.msg_id, c.timestamp, &both, body).is_ok());
            // Either one valid beside a tampered other.
            let v1_bad = format!("v1,{}", B64.encode([7u8; 32]));
            let v1a_bad = format!("v1a,{}", B64.encode([7u8; 64]));
            for header in [
                format!("{v1_bad} {}", c.signature),
                format!("{v1} {v1a_bad}"),
            ] {
                assert!(verify(s.as_ref(), prefix, &c.msg_id, c.timestamp, &header, body).is_ok());
            }
            let neither = format!("{v1_bad} {v1a_bad}");
            assert_eq!(
                verify(s.as_ref(), prefix, &c.msg_id, c.timestamp, &neither, body),
                Err("signature_mismatch")
            );
        }
    }
}

#[test]
fn malformed_keys_are_refused_at_load_naming_the_field() {
    let c = &cases()[1];
    let seed = hex::decode(&c.seed_hex).unwrap();
    let mismatched = format!(
        "whsk_{}",
        B64.encode([seed.clone(), vec![9u8; 32]].concat())
    );
    let swapped = format!(
        "whsk_{}",
        B64.encode([hex::decode(&c.public_key_hex).unwrap(), seed.clone()].concat())
    );
    let source_cases = [
        ("whpk_", "sources.src: secrets[1]: a whpk_ key must decode to 32 bytes"),
        ("whpk_not*base64", "secrets[1]: a whpk_ key must decode to 32 bytes"),
        (&*format!("whpk_{}", B64.encode([1u8; 31])), "secrets[1]: a whpk_ key must decode to 32 bytes"),
        (&*format!("whpk_{}", B64.encode([1u8; 64])), "secrets[1]: a whpk_ key must decode to 32 bytes"),
        ("whsk_", "secrets[1]: a whsk_ key must decode to 32 bytes (an ed25519 seed) or 64"),
        (&*format!("whsk_{}", B64.encode([1u8; 48])), "secrets[1]: a whsk_ key must decode to 32"),
        (&*mismatched, "secrets[1]: the last 32 bytes of this 64-byte whsk_ key are not the public key of its first 32"),
        (&*swapped, "secrets[1]: the last 32 bytes"),
    ];
    for (bad, want) in source_cases {
        for name in ["standard", "svix"] {
            let doc = format!(
                "[sources.src]\nscheme = '{name}'\nsecrets = ['{}', '{bad}']\n",
                c.public_key
            );
            let err = Config::from_toml(&doc).unwrap_err().to_string();
            assert!(err.contains(want), "{bad}: {err}");
            assert!(bad.len() <= 8 || !err.contains(&bad[5..]), "{err}");
            assert!(!err.contains(&c.public_key[5..]), "{err}");
        }
    }
    // A destination's secret: the same rules, and a public key cannot sign.
    let forward = |secret: &str| {
        Config::from_toml(&format!(
            "[sources.a]\nscheme = 'hmac-sha256'\nsecrets = ['a-16-byte-secret']\n\
             [sources.a.forward]\nurl = 'https://b.example/'\nsecret = '{secret}'\n"
        ))
    };
    for (bad, want) in [
        (
            &*mismatched,
            "sources.a.forward: secret: the last 32 bytes of this 64-byte whsk_ key",
        ),
        (
            "whsk_AAAA",
            "sources.a.forward: secret: a whsk_ key must decode to 32 bytes",
        ),
        (
            &*c.public_key,
            "sources.a.forward: secret: a whpk_ public key verifies but cannot sign",
        ),
    ] {
        let err = forward(bad).unwrap_err().to_string();
        assert!(err.contains(want), "{bad}: {err}");
        assert!(!err.contains(&bad[5..]), "{err}");
    }
    for good in both_private_forms(c) {
        assert!(forward(&good).is_ok());
    }
}

/// A one-request HTTP server on 127.0.0.1: answers 200 and hands back the request's headers
/// and body.
async fn one_request_sink() -> (
    String,
    tokio::task::JoinHandle<(BTreeMap<String, String>, Vec<u8>)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let (head_len, content_length) = loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the connection closed early");
            raw.extend_from_slice(&buf[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(raw[..end].to_vec()).unwrap();
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                break (end + 4, length);
            }
        };
        while raw.len() < head_len + content_length {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the connection closed early");
            raw.extend_from_slice(&buf[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let head = String::from_utf8(raw[..head_len - 4].to_vec()).unwrap();
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        (headers, raw[head_len..head_len + content_length].to_vec())
    });
    (url, task)
}

#[tokio::test]
async fn a_destination_with_a_whsk_key_forwards_v1a_that_verifies_under_the_public_key() {
    for c in cases().into_iter().take(2) {
        let (url, sink) = one_request_sink().await;
        let options: ForwardOptions = toml::from_str(&format!(
            "url = '{url}'\nsecret = '{}'\nallow_http = true\nallow_private_networks = true\n",
            c.secret_key
        ))
        .unwrap();
        let forwarder = Forwarder::new(Destination::new(&options).unwrap())
            .unwrap()
            .with_clock(Arc::new(ManualClock::new(Timestamp::from_secs(
                c.timestamp,
            ))));
        let event = Envelope {
            event_id: EventId::parse("fwd:evt_ed25519").unwrap(),
            source: SourceName::parse("fwd").unwrap(),
            event_type: "order.paid".into(),
            received_at: Timestamp::from_secs(c.timestamp),
            headers: BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]),
            body: Bytes::from(c.body.clone()),
        };
        forwarder.deliver(&event).await.unwrap();
        let (seen, body) = sink.await.unwrap();
        assert_eq!(body, c.body.as_bytes());
        assert_eq!(seen["webhook-id"], "fwd:evt_ed25519");
        assert_eq!(seen["webhook-timestamp"], c.timestamp.to_string());
        let signature = &seen["webhook-signature"];
        assert!(signature.starts_with("v1a,"), "{signature}");
        // What the same signer writes for this message, and what the destination, holding only
        // the public key, accepts.
        let expected = StandardWebhooks::for_signing(&Secret::new(c.secret_key.clone()))
            .unwrap()
            .sign_message("fwd:evt_ed25519", &body, Timestamp::from_secs(c.timestamp));
        assert_eq!(*signature, expected[2].1);
        let verifier = scheme("standard", &[&c.public_key]);
        let verified = verify(
            verifier.as_ref(),
            "webhook",
            "fwd:evt_ed25519",
            c.timestamp,
            signature,
            &body,
        );
        assert!(verified.is_ok(), "{verified:?}");
    }
}

#[test]
fn a_fresh_key_signed_live_by_python_verifies_here() {
    let python = match std::env::var("HOOKGATE_PYTHON") {
        Ok(p) if !p.trim().is_empty() => p,
        _ => {
            println!("skipped: HOOKGATE_PYTHON unset");
            return;
        }
    };
    for _ in 0..3 {
        let out = std::process::Command::new(&python)
            .arg(GENERATOR)
            .arg("--live")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c: Case = serde_json::from_slice(&out.stdout).expect("one case as JSON");
        let s = scheme("standard", &[HMAC_SECRET, &c.public_key]);
        assert!(verify_case(s.as_ref(), "webhook", &c).is_ok(), "{c:?}");
        let mut tampered = c.body.clone().into_bytes();
        tampered.push(b'\n');
        assert_eq!(
            verify(
                s.as_ref(),
                "webhook",
                &c.msg_id,
                c.timestamp,
                &c.signature,
                &tampered
            ),
            Err("signature_mismatch")
        );
        // And hookgate signs that message exactly as Python did, from either key form.
        for key in both_private_forms(&c) {
            let signed = StandardWebhooks::for_signing(&Secret::new(key))
                .unwrap()
                .sign_message(
                    &c.msg_id,
                    c.body.as_bytes(),
                    Timestamp::from_secs(c.timestamp),
                );
            assert_eq!(signed[2].1, c.signature);
        }
    }
}
