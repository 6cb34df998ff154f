//! CPU of one DynamoDB request in the AWS SDK, with no network: the client answers every
//! request at once with a canned `200 {}`. What is left is the SDK's own work per request
//! (runtime plugins, endpoint resolution, identity, signing, interceptors, retry and timeout
//! bookkeeping, serialisation), which the Lambda bench showed to be most of a record's CPU.
//!
//! Read it against `tests/lambda_bench.py`, where one request costs the function ten times as
//! much: most of a request's CPU there is the I/O and the wake-ups around it, not the SDK
//! (docs/cost.md).
//!
//!     cargo bench -p hookgate-aws --bench sdk_request

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_http_client::test_util::infallible_client_fn;
use criterion::{criterion_group, criterion_main, Criterion};

fn base() -> aws_config::ConfigLoader {
    hookgate_aws::budget::apply(aws_config::defaults(BehaviorVersion::latest()))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::for_tests())
        .endpoint_url("http://127.0.0.1:1")
        .http_client(infallible_client_fn(|_| {
            http::Response::builder()
                .status(200)
                .header("content-type", "application/x-amz-json-1.0")
                .body("{}")
                .expect("a canned response")
        }))
}

async fn finish(client: &aws_sdk_dynamodb::Client) {
    client
        .update_item()
        .table_name("hookgate")
        .key("pk", AttributeValue::S("evt_0123456789abcdef".into()))
        .condition_expression(
            "attempt_count = :n AND (attribute_not_exists(finished_attempt) OR finished_attempt < :n)",
        )
        .update_expression(
            "SET #status = :status, updated_at = :now, finished_attempt = :n, \
             attempts = list_append(if_not_exists(attempts, :empty), :attempt) \
             REMOVE lease_until, lease_token",
        )
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":status", AttributeValue::S("succeeded".into()))
        .expression_attribute_values(":now", AttributeValue::N("1764633600000".into()))
        .expression_attribute_values(":n", AttributeValue::N("1".into()))
        .expression_attribute_values(":empty", AttributeValue::L(vec![]))
        .expression_attribute_values(":attempt", AttributeValue::L(vec![AttributeValue::S("x".into())]))
        .send()
        .await
        .expect("the canned answer");
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let config: SdkConfig = rt.block_on(base().load());
    let client = aws_sdk_dynamodb::Client::new(&config);
    let mut group = c.benchmark_group("sdk_request");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("dynamodb-update-item", |b| {
        b.to_async(&rt).iter(|| finish(&client))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
