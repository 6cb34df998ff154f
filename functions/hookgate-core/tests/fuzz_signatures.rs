//! Property-based fuzzing of every scheme's header parsers and verifiers (cargo-fuzz needs a
//! nightly toolchain, which this project does not assume).
//!
//! - No input panics: arbitrary header values under each scheme's header names (and a few
//!   plausible shapes of them), arbitrary bodies.
//! - A validly signed request with any one body byte changed is refused.
//!
//! The test command runs the default number of cases; for a longer run:
//! `PROPTEST_CASES=200000 cargo test --release -p hookgate-core --test fuzz_signatures`.

use std::sync::Arc;

use hookgate_core::signature::{SignatureScheme, SignedRequest};
use hookgate_core::{Config, SourceName, Timestamp};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

const NOW: i64 = 1_800_000_000;

fn config() -> Config {
    Config::from_toml(
        r#"
[sources.standard]
scheme = "standard"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
[sources.svix]
scheme = "svix"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
[sources.stripe]
scheme = "stripe"
secrets = ["whsec_fuzz_stripe_secret_1"]
[sources.github]
scheme = "github"
secrets = ["fuzz-github-secret"]
[sources.shopify]
scheme = "shopify"
secrets = ["fuzz-shopify-secret"]
[sources.slack]
scheme = "slack"
secrets = ["fuzz-slack-secret-1"]
[sources.hmac]
scheme = "hmac-sha256"
secrets = ["fuzz-generic-secret"]
[sources.templated]
scheme = "hmac-sha256"
secrets = ["fuzz-generic-secret"]
timestamp_header = "x-ts"
id_header = "x-id"
signed_content = "{id}.{timestamp}.{body}"
"#,
    )
    .expect("fuzz config is valid")
}

fn schemes() -> Vec<(SourceName, Arc<dyn SignatureScheme>)> {
    let config = config();
    config
        .sources
        .iter()
        .map(|(name, source)| (name.clone(), source.scheme.clone()))
        .collect()
}

/// Header names any scheme reads.
const NAMES: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "stripe-signature",
    "x-hub-signature-256",
    "x-hub-signature",
    "x-github-event",
    "x-shopify-hmac-sha256",
    "x-shopify-topic",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-signature",
    "x-ts",
    "x-id",
    "x-event-type",
];

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Raw bytes (only those http allows in a header value survive).
        proptest::collection::vec(any::<u8>(), 0..300),
        // Plausible shapes with junk inside.
        "(v1,|v0=|t=|sha256=|v1=|,| |[0-9]{1,14}|[A-Za-z0-9+/=]{0,90}|[0-9a-f]{0,70}){0,8}"
            .prop_map(String::into_bytes),
    ]
}

proptest! {
    #[test]
    fn no_input_panics(
        headers in proptest::collection::vec((0..NAMES.len(), header_value()), 0..8),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut map = HeaderMap::new();
        for (i, value) in headers {
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                map.append(HeaderName::from_static(NAMES[i]), v);
            }
        }
        for (name, scheme) in schemes() {
            let request = SignedRequest { headers: &map, body: &body };
            let _ = scheme.verify(&name, &request, Timestamp::from_secs(NOW));
        }
    }

    #[test]
    fn a_changed_body_byte_is_refused(
        body in proptest::collection::vec(any::<u8>(), 1..512),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let now = Timestamp::from_secs(NOW);
        for (name, scheme) in schemes() {
            let mut map = HeaderMap::new();
            for (k, v) in scheme.sign(&body, now) {
                map.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(&v).unwrap());
            }
            let ok = scheme.verify(&name, &SignedRequest { headers: &map, body: &body }, now);
            prop_assert!(ok.is_ok(), "{}: own signature refused: {:?}", name, ok);
            let mut changed = body.clone();
            let i = index.index(changed.len());
            changed[i] ^= flip;
            let refused = scheme.verify(&name, &SignedRequest { headers: &map, body: &changed }, now);
            prop_assert!(refused.is_err(), "{}: changed body accepted", name);
        }
    }
}
