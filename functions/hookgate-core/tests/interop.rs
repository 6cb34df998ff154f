//! Interoperability of the `standard`, `svix` and `stripe` schemes with independent
//! implementations: the `standardwebhooks` and `stripe` PyPI packages, run in the test venv.
//!
//! `HOOKGATE_PYTHON` names the venv's python (the test command sets it). Without it these tests
//! print `skipped: HOOKGATE_PYTHON unset` and pass, unless `HOOKGATE_REQUIRE_MOTO=1` says the
//! full toolchain is expected, in which case they fail.
//!
//! ```text
//! HOOKGATE_PYTHON=/work/main/.venv/bin/python cargo test -p hookgate-core --test interop
//! ```

use std::io::Write as _;
use std::process::{Command, Stdio};

use std::sync::Arc;

use hookgate_core::signature::{SignatureScheme, SignedRequest};
use hookgate_core::{Clock, Config, EventId, SourceName, SystemClock, Timestamp};
use http::{HeaderMap, HeaderName, HeaderValue};

const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STRIPE_SECRET: &str = "whsec_interop_test_secret";

/// A body with non-ASCII text, escapes and spacing that a re-serialisation would change.
const BODY: &str = "{\"type\": \"invoice.paid\",  \"id\":\"evt_interop_1\", \"note\": \"caf\u{e9} \u{1f600} \\u00e9\\n\"}";

/// The venv's python, or `None` when the tests should be skipped.
fn python() -> Option<String> {
    match std::env::var("HOOKGATE_PYTHON") {
        Ok(p) if !p.trim().is_empty() => Some(p),
        _ => {
            if std::env::var("HOOKGATE_REQUIRE_MOTO").is_ok_and(|v| v.trim() == "1") {
                panic!(
                    "HOOKGATE_REQUIRE_MOTO=1 but HOOKGATE_PYTHON is unset: the test command sets \
                     HOOKGATE_PYTHON to the test venv's python"
                );
            }
            println!("skipped: HOOKGATE_PYTHON unset");
            None
        }
    }
}

/// Runs `script` with `args`, `stdin` on its standard input. Returns (success, stdout, stderr).
fn run_python(python: &str, script: &str, args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .expect("write to python's stdin");
    let out = child.wait_with_output().expect("wait for python");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scheme(scheme: &str, secret: &str) -> Arc<dyn SignatureScheme> {
    let doc = format!("[sources.interop]\nscheme = {scheme:?}\nsecrets = [{secret:?}]\n");
    let config = Config::from_toml(&doc).expect("config");
    config.sources[&source()].scheme.clone()
}

fn source() -> SourceName {
    SourceName::parse("interop").unwrap()
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// `Webhook(secret).sign(msg_id, datetime, payload)` from the `standardwebhooks` package.
const PY_STANDARD_SIGN: &str = r#"
import sys
from datetime import datetime, timezone
from standardwebhooks.webhooks import Webhook
secret, msg_id, ts = sys.argv[1:4]
payload = sys.stdin.buffer.read().decode("utf-8")
print(Webhook(secret).sign(msg_id, datetime.fromtimestamp(int(ts), tz=timezone.utc), payload))
"#;

/// `Webhook(secret).verify(payload, headers)` from the `standardwebhooks` package; headers as
/// JSON in argv. Prints the verified JSON's `id`.
const PY_STANDARD_VERIFY: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
secret, headers = sys.argv[1], json.loads(sys.argv[2])
payload = sys.stdin.buffer.read()
try:
    print(Webhook(secret).verify(payload, headers)["id"])
except WebhookVerificationError as e:
    print("rejected:", e)
    sys.exit(3)
"#;

#[test]
fn standard_webhooks_python_signatures_verify_here() {
    let Some(py) = python() else { return };
    let ts = 1_700_000_000_i64;
    let msg_id = "msg_2ZyqL7WfYd3fBqnLbGr8uXKJvTf";
    let (ok, signature, stderr) = run_python(
        &py,
        PY_STANDARD_SIGN,
        &[STANDARD_SECRET, msg_id, &ts.to_string()],
        BODY.as_bytes(),
    );
    assert!(ok, "python standardwebhooks sign failed: {stderr}");
    assert!(signature.starts_with("v1,"), "{signature}");

    for (scheme_name, prefix) in [("standard", "webhook"), ("svix", "svix")] {
        let s = scheme(scheme_name, STANDARD_SECRET);
        let headers = header_map(&[
            (format!("{prefix}-id"), msg_id.to_owned()),
            (format!("{prefix}-timestamp"), ts.to_string()),
            (format!("{prefix}-signature"), signature.clone()),
        ]);
        let request = SignedRequest {
            headers: &headers,
            body: BODY.as_bytes(),
        };
        let v = s
            .verify(&source(), &request, Timestamp::from_secs(ts + 5))
            .unwrap_or_else(|e| panic!("{scheme_name}: {e}"));
        assert_eq!(v.event_id, EventId::from_provider(&source(), msg_id));
        assert_eq!(v.event_type, "invoice.paid");

        // The same signature over another body does not verify.
        let tampered = BODY.replace("caf", "cof");
        let request = SignedRequest {
            headers: &headers,
            body: tampered.as_bytes(),
        };
        let err = s
            .verify(&source(), &request, Timestamp::from_secs(ts))
            .unwrap_err();
        assert_eq!(err.code(), "signature_mismatch", "{scheme_name}");
    }
}

#[test]
fn our_standard_webhooks_signatures_verify_in_python() {
    let Some(py) = python() else { return };
    // The Python library checks against its own clock: sign at the real now.
    let now = SystemClock.now();
    for (scheme_name, prefix) in [("standard", "webhook"), ("svix", "svix")] {
        let signed = scheme(scheme_name, STANDARD_SECRET).sign(BODY.as_bytes(), now);
        assert_eq!(signed.len(), 3, "{signed:?}");
        // The Python library reads webhook-* names; svix-* carry the same values.
        let headers: serde_json::Map<String, serde_json::Value> = signed
            .iter()
            .map(|(k, v)| {
                let name = k.replacen(&format!("{prefix}-"), "webhook-", 1);
                (name, serde_json::Value::String(v.clone()))
            })
            .collect();
        let headers = serde_json::Value::Object(headers).to_string();
        let (ok, out, stderr) = run_python(
            &py,
            PY_STANDARD_VERIFY,
            &[STANDARD_SECRET, &headers],
            BODY.as_bytes(),
        );
        assert!(
            ok,
            "{scheme_name}: python rejected our signature: {out} {stderr}"
        );
        assert_eq!(out, "evt_interop_1");

        // And Python does reject a tampered body or another secret: the check is real.
        let tampered = BODY.replace("caf", "cof");
        let (ok, out, _) = run_python(
            &py,
            PY_STANDARD_VERIFY,
            &[STANDARD_SECRET, &headers],
            tampered.as_bytes(),
        );
        assert!(!ok && out.starts_with("rejected"), "{scheme_name}: {out}");
        let (ok, out, _) = run_python(
            &py,
            PY_STANDARD_VERIFY,
            &[
                "whsec_c2VjcmV0LWtleS1vZi10aGlydHktdHdvLWJ5dGVzISE=",
                &headers,
            ],
            BODY.as_bytes(),
        );
        assert!(!ok && out.starts_with("rejected"), "{scheme_name}: {out}");
    }
}

/// `stripe.Webhook.construct_event(payload, header, secret)` (which runs
/// `stripe.WebhookSignature.verify_header`, tolerance 300 s). Prints the event's id and type.
const PY_STRIPE_VERIFY: &str = r#"
import sys
import stripe
header, secret = sys.argv[1:3]
payload = sys.stdin.buffer.read().decode("utf-8")
try:
    event = stripe.Webhook.construct_event(payload, header, secret)
except stripe.SignatureVerificationError as e:
    print("rejected:", e)
    sys.exit(3)
print(event["id"], event["type"])
"#;

/// `stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)`.
const PY_STRIPE_SIGN: &str = r#"
import sys
import stripe
secret, ts = sys.argv[1:3]
payload = sys.stdin.buffer.read().decode("utf-8")
print(stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=int(ts)))
"#;

/// A Stripe-shaped event (`construct_event` wants `"object": "event"`).
const STRIPE_BODY: &str = "{\n  \"id\": \"evt_interop_2\",\n  \"object\": \"event\",\n  \"type\": \"charge.succeeded\",\n  \"data\": {\"object\": {\"description\": \"caf\u{e9} \u{1f600}\"}}\n}\n";

#[test]
fn our_stripe_signatures_verify_in_python() {
    let Some(py) = python() else { return };
    let now = SystemClock.now();
    let signed = scheme("stripe", STRIPE_SECRET).sign(STRIPE_BODY.as_bytes(), now);
    assert_eq!(signed.len(), 1, "{signed:?}");
    assert_eq!(signed[0].0, "stripe-signature");
    let header = &signed[0].1;
    let (ok, out, stderr) = run_python(
        &py,
        PY_STRIPE_VERIFY,
        &[header, STRIPE_SECRET],
        STRIPE_BODY.as_bytes(),
    );
    assert!(ok, "python stripe rejected our signature: {out} {stderr}");
    assert_eq!(out, "evt_interop_2 charge.succeeded");

    // Python rejects a tampered body and the secret without its whsec_ prefix.
    let tampered = STRIPE_BODY.replace("caf", "cof");
    let (ok, out, _) = run_python(
        &py,
        PY_STRIPE_VERIFY,
        &[header, STRIPE_SECRET],
        tampered.as_bytes(),
    );
    assert!(!ok && out.starts_with("rejected"), "{out}");
    let stripped = STRIPE_SECRET.trim_start_matches("whsec_");
    let (ok, out, _) = run_python(
        &py,
        PY_STRIPE_VERIFY,
        &[header, stripped],
        STRIPE_BODY.as_bytes(),
    );
    assert!(!ok && out.starts_with("rejected"), "{out}");
}

#[test]
fn stripe_python_signatures_verify_here() {
    let Some(py) = python() else { return };
    let ts = 1_700_000_000_i64;
    let (ok, header, stderr) = run_python(
        &py,
        PY_STRIPE_SIGN,
        &[STRIPE_SECRET, &ts.to_string()],
        STRIPE_BODY.as_bytes(),
    );
    assert!(ok, "python stripe sign failed: {stderr}");
    let s = scheme("stripe", STRIPE_SECRET);
    let headers = header_map(&[("stripe-signature".to_owned(), header.clone())]);
    let request = SignedRequest {
        headers: &headers,
        body: STRIPE_BODY.as_bytes(),
    };
    let v = s
        .verify(&source(), &request, Timestamp::from_secs(ts + 60))
        .unwrap_or_else(|e| panic!("{header}: {e}"));
    assert_eq!(v.event_id.as_str(), "interop:evt_interop_2");
    assert_eq!(v.event_type, "charge.succeeded");
    // Our signature for the same body and time is Python's, byte for byte.
    assert_eq!(
        s.sign(STRIPE_BODY.as_bytes(), Timestamp::from_secs(ts)),
        vec![("stripe-signature".to_owned(), header)]
    );
}
