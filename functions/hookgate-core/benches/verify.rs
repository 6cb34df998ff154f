//! Signature verification cost per request, per scheme, for 1 KiB and 256 KiB bodies, beside
//! the floor: one SHA-256 pass over the body and one HMAC-SHA256 over it.
//!
//! `cargo bench -p hookgate-core --bench verify`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, KeyInit, Mac};
use hookgate_core::signature::{SignatureScheme, SignedRequest};
use hookgate_core::{Config, Timestamp};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use std::hint::black_box;

const CONFIG: &str = r#"
[sources.standard]
scheme = "standard"
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
"#;

/// The headers `scheme`'s provider would send with `body` at `now`.
fn signed_headers(scheme: &dyn SignatureScheme, body: &[u8], now: Timestamp) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (k, v) in scheme.sign(body, now) {
        headers.insert(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(&v).expect("value"),
        );
    }
    headers
}

/// A Stripe-shaped event of about `size` bytes: pretty-printed, `id` first, `type` last, after a
/// `data` object of many small fields, all of which the `type` read must skip.
fn stripe_body(size: usize) -> Vec<u8> {
    let mut b = "{\n  \"id\": \"evt_1\",\n  \"object\": \"event\",\n  \"data\": {\n    \"object\": {\n      \"lines\": [\n".to_owned();
    let mut n = 0;
    while b.len() + 300 < size {
        b.push_str(&format!(
            "        {{\n          \"id\": \"il_{n:06}\",\n          \"amount\": 1999,\n          \"description\": \"Pro plan \\\"monthly\\\"\",\n          \"metadata\": {{ \"order\": \"{n}\" }}\n        }},\n"
        ));
        n += 1;
    }
    b.push_str("        {}\n      ]\n    }\n  },\n  \"livemode\": false,\n  \"type\": \"charge.succeeded\"");
    while b.len() < size - 2 {
        b.push(' ');
    }
    b.push_str("\n}");
    b.into_bytes()
}

/// A JSON body of about `size` bytes with `id` and `type` first, as providers send.
fn body(size: usize) -> Vec<u8> {
    let mut b = br#"{"id":"evt_1","type":"charge.succeeded","data":""#.to_vec();
    b.resize(size - 2, b'x');
    b.extend_from_slice(b"\"}");
    b
}

fn bench(c: &mut Criterion) {
    let config = Config::from_toml(CONFIG).expect("bench config");
    let now = Timestamp::from_secs(1_800_000_000);
    let mut group = c.benchmark_group("verify");
    for size in [1024usize, 256 * 1024] {
        let body = body(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("floor-sha256", size), &body, |b, body| {
            b.iter(|| Sha256::digest(black_box(body)))
        });
        group.bench_with_input(
            BenchmarkId::new("floor-hmac-sha256", size),
            &body,
            |b, body| {
                b.iter(|| {
                    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"k").expect("any key");
                    mac.update(black_box(body));
                    mac.finalize()
                })
            },
        );
        for (name, source) in &config.sources {
            let scheme = &source.scheme;
            let headers = signed_headers(scheme.as_ref(), &body, now);
            let request = SignedRequest {
                headers: &headers,
                body: &body,
            };
            assert!(
                scheme.verify(name, &request, now).is_ok(),
                "{name} verifies"
            );
            group.bench_with_input(BenchmarkId::new(scheme.name(), size), &request, |b, r| {
                b.iter(|| scheme.verify(name, black_box(r), now))
            });
        }
        // Stripe's own field order: `type` last, so the whole `data` object is skipped to it.
        let stripe_name = hookgate_core::SourceName::parse("stripe").expect("name");
        let stripe = &config.sources[&stripe_name].scheme;
        let shaped = stripe_body(size);
        let headers = signed_headers(stripe.as_ref(), &shaped, now);
        let request = SignedRequest {
            headers: &headers,
            body: &shaped,
        };
        let verified = stripe
            .verify(&stripe_name, &request, now)
            .expect("verifies");
        assert_eq!(verified.event_type, "charge.succeeded");
        assert!(serde_json::from_slice::<serde_json::Value>(&shaped).is_ok());
        group.bench_with_input(
            BenchmarkId::new("stripe-type-last", size),
            &request,
            |b, r| b.iter(|| stripe.verify(&stripe_name, black_box(r), now)),
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
