//! hookgate's test harness: the connection to a local moto server and fresh AWS resources on
//! it, shared by the Ledger/Queue contract suites (in `tests/`) and the end-to-end tests.
//!
//! moto is optional: [`moto_endpoint`] returns `None` when `HOOKGATE_MOTO_ENDPOINT` is unset and
//! the caller skips (printing `skipped: no moto`), unless `HOOKGATE_REQUIRE_MOTO=1` says moto
//! must be there, as in CI.

pub mod logs;
pub mod pipeline;
pub mod python;
pub mod sink;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use hookgate_aws::{AwsBackend, S3Archive, SqsQueue};

/// Environment variable with moto's endpoint, e.g. `http://127.0.0.1:5123`.
pub const ENV_MOTO_ENDPOINT: &str = "HOOKGATE_MOTO_ENDPOINT";
/// Environment variable that, set to `1`, turns a missing moto endpoint into a failure.
pub const ENV_REQUIRE_MOTO: &str = "HOOKGATE_REQUIRE_MOTO";

/// The moto endpoint, or `None` if none is configured (the caller should skip).
///
/// # Panics
/// If no endpoint is configured but `HOOKGATE_REQUIRE_MOTO=1`.
pub fn moto_endpoint() -> Option<String> {
    match std::env::var(ENV_MOTO_ENDPOINT) {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().to_owned()),
        _ => {
            if std::env::var(ENV_REQUIRE_MOTO).is_ok_and(|v| v.trim() == "1") {
                panic!(
                    "{ENV_REQUIRE_MOTO}=1 but {ENV_MOTO_ENDPOINT} is not set: start moto \
                     (`moto_server -H 127.0.0.1 -p 5123`) and set \
                     {ENV_MOTO_ENDPOINT}=http://127.0.0.1:5123"
                );
            }
            None
        }
    }
}

/// An SDK configuration that talks to moto at `endpoint`: region `us-east-1`, static test
/// credentials.
pub async fn moto_sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "hookgate-testkit",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// [`moto_sdk_config`] with hookgate's bounded retry and timeout budget
/// (`hookgate_aws::budget`), as `hookgate_aws::sdk_config` gives the functions: for tests of
/// what the SDK's own retries do.
pub async fn budgeted_sdk_config(endpoint: &str) -> SdkConfig {
    hookgate_aws::budget::apply(aws_config::defaults(BehaviorVersion::latest()))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "hookgate-testkit",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// How long the test buckets' lifecycle rule keeps objects (moto does not enforce it).
pub const TEST_RETENTION_DAYS: u32 = 7;

/// A table, a queue pair and an archive bucket created on moto for one test, under unique
/// names.
#[derive(Debug, Clone)]
pub struct MotoResources {
    /// The SDK configuration pointing at moto.
    pub config: SdkConfig,
    /// The ledger table's name.
    pub table: String,
    /// The main queue's name (the DLQ is `{queue_name}-dlq`).
    pub queue_name: String,
    /// The main queue's URL.
    pub queue_url: String,
    /// The dead-letter queue's URL.
    pub dlq_url: String,
    /// The archive bucket's name.
    pub bucket: String,
}

impl MotoResources {
    /// The AWS backend on these resources (with the DLQ for `move_to_dlq`, and the archive).
    pub fn backend(&self) -> AwsBackend {
        AwsBackend::from_parts(
            &self.config,
            &self.table,
            &self.queue_url,
            Some(self.dlq_url.clone()),
            Some(self.bucket.clone()),
        )
    }

    /// The AWS backend on these resources with every SDK client made by `faults` (so its
    /// requests are counted and can be failed) on `sdk`; the archive only when `archive`.
    pub fn backend_through(
        &self,
        faults: &std::sync::Arc<hookgate_aws::faults::SdkFaults>,
        sdk: &SdkConfig,
        archive: bool,
    ) -> AwsBackend {
        AwsBackend::from_clients(
            faults.dynamodb_client(sdk),
            faults.sqs_client(sdk),
            faults.s3_client(sdk),
            &self.table,
            &self.queue_url,
            Some(self.dlq_url.clone()),
            archive.then(|| self.bucket.clone()),
        )
    }

    /// The archive in this test's bucket.
    pub fn archive(&self) -> S3Archive {
        S3Archive::new(self.s3(), &self.bucket)
    }

    /// The dead-letter queue as a queue of its own (no DLQ of its own), to read what landed
    /// there.
    pub fn dlq(&self) -> SqsQueue {
        SqsQueue::new(aws_sdk_sqs::Client::new(&self.config), &self.dlq_url, None)
    }

    /// The environment a `hookgate serve --backend aws` (or a function binary) needs to run on
    /// these resources: moto's endpoint, test credentials, and the resource names.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "AWS_ENDPOINT_URL",
                self.config.endpoint_url().unwrap_or_default().to_owned(),
            ),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            (hookgate_aws::ENV_TABLE, self.table.clone()),
            (hookgate_aws::ENV_QUEUE_URL, self.queue_url.clone()),
            (hookgate_aws::ENV_DLQ_URL, self.dlq_url.clone()),
            (hookgate_aws::ENV_ARCHIVE_BUCKET, self.bucket.clone()),
        ]
    }

    /// A DynamoDB client on moto.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.config)
    }

    /// An SQS client on moto.
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.config)
    }

    /// An S3 client on moto (path-style, as the archive's).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        hookgate_aws::archive::s3_client(&self.config)
    }
}

/// Creates a fresh ledger table, queue pair and archive bucket on moto, named
/// `hookgate-…-<uuid>`, through `hookgate_aws::setup` (as the `hookgate` command does).
///
/// # Panics
/// If moto refuses to create them (a test harness failure, not a test result).
pub async fn fresh_resources(
    endpoint: &str,
    max_receive_count: u32,
    visibility_timeout_secs: u64,
) -> MotoResources {
    let config = moto_sdk_config(endpoint).await;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let table = format!("hookgate-ledger-{unique}");
    let queue_name = format!("hookgate-events-{unique}");
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    if let Err(e) = hookgate_aws::create_table(&dynamodb, &table).await {
        panic!("creating table {table} on moto at {endpoint}: {e}");
    }
    let urls = match hookgate_aws::create_queues(
        &sqs,
        &queue_name,
        max_receive_count,
        visibility_timeout_secs,
    )
    .await
    {
        Ok(urls) => urls,
        Err(e) => panic!("creating queues {queue_name} on moto at {endpoint}: {e}"),
    };
    let bucket = format!("hookgate-archive-{unique}");
    let s3 = hookgate_aws::archive::s3_client(&config);
    // moto is plain HTTP and enforces bucket policies: no TLS-only policy here.
    let tls_only = !hookgate_aws::archive::plain_http_endpoint(&config);
    if let Err(e) =
        hookgate_aws::create_archive_bucket(&s3, &bucket, TEST_RETENTION_DAYS, tls_only).await
    {
        panic!("creating bucket {bucket} on moto at {endpoint}: {e}");
    }
    MotoResources {
        config,
        table,
        queue_name,
        queue_url: urls.queue_url,
        dlq_url: urls.dlq_url,
        bucket,
    }
}
