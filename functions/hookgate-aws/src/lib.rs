//! hookgate's AWS adapters: the ports of `hookgate-core` on DynamoDB, SQS and S3.
//!
//! This crate exists to keep the AWS SDK out of the domain: `hookgate-core` decides, these
//! types only translate each port call into one conditional DynamoDB write, one SQS request or
//! one S3 request.
//!
//! - [`ledger`]: [`DynamoDbLedger`], the `Ledger` port on a DynamoDB table.
//! - [`queue`]: [`SqsQueue`], the `Queue` port on an SQS queue with a dead-letter queue.
//! - [`archive`]: [`S3Archive`], the `Archive` port on an S3 bucket.
//! - [`destination_gate`]: [`DynamoDbGate`], the `DestinationGate` port (rate windows, circuits)
//!   on the ledger's table.
//! - [`config_source`]: the functions' configuration, from Secrets Manager.
//! - [`budget`]: the SDK's bounded retry and timeout budget.
//! - `faults` (feature `fault-injection`, for tests): an SDK interceptor that answers chosen
//!   calls with throttling or 503 errors, so the SDK's own retry policy runs.
//! - [`error_text`]: SDK errors as one readable line (no `Debug` dumps).
//! - [`preflight`]: what operator commands check before relying on AWS (region, credentials,
//!   the queue's redrive policy).
//! - [`redrive`]: `hookgate dlq redrive` on SQS, where SQS's own move task may only move
//!   everything.
//! - [`targets`]: EventBridge buses and SQS queues as destinations (`kind = "eventbridge"`, `"sqs"`).
//! - [`setup`]: idempotent creation of the table, the queue pair and the archive bucket (tests,
//!   local stacks, CLI).
//! - [`AwsBackend`]: the adapters built from one SDK configuration, as the Lambda functions
//!   build them from their environment.

pub mod archive;
pub mod budget;
pub mod config_source;
pub mod destination_gate;
pub mod error_text;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod ledger;
pub mod preflight;
pub mod queue;
pub mod redrive;
pub mod setup;
pub mod targets;

use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};

pub use archive::S3Archive;
pub use config_source::{load_config, ConfigSourceError, ENV_CONFIG_SECRET_ID};
pub use destination_gate::DynamoDbGate;
pub use ledger::DynamoDbLedger;
pub use queue::SqsQueue;
pub use setup::{
    create_archive_bucket, create_queues, create_table, QueueUrls, SetupError, STATUS_INDEX,
    STATUS_SHARD_INDEX,
};

/// Environment variable naming the ledger table.
pub const ENV_TABLE: &str = "HOOKGATE_TABLE";
/// Environment variable holding the queue's URL.
pub const ENV_QUEUE_URL: &str = "HOOKGATE_QUEUE_URL";
/// Environment variable holding the dead-letter queue's URL (optional).
pub const ENV_DLQ_URL: &str = "HOOKGATE_DLQ_URL";
/// Environment variable naming the archive's S3 bucket (optional: no archive without it).
pub const ENV_ARCHIVE_BUCKET: &str = "HOOKGATE_ARCHIVE_BUCKET";

/// The SDK configuration from the environment (region, credentials, and `AWS_ENDPOINT_URL`
/// for local stand-ins such as moto), with hookgate's bounded retry and timeout [`budget`].
pub async fn sdk_config() -> SdkConfig {
    budget::apply(aws_config::defaults(BehaviorVersion::latest()))
        .load()
        .await
}

/// `url_or_name` as a queue URL: itself if it is one, else the URL of the queue of that name.
async fn resolve_queue_url(
    sqs: &aws_sdk_sqs::Client,
    url_or_name: String,
) -> Result<String, InitError> {
    if url_or_name.contains("://") {
        return Ok(url_or_name);
    }
    let out = sqs
        .get_queue_url()
        .queue_name(&url_or_name)
        .send()
        .await
        .map_err(|e| InitError::QueueNotFound(url_or_name.clone(), error_text::one_line(&e)))?;
    out.queue_url
        .ok_or_else(|| InitError::QueueNotFound(url_or_name, "no QueueUrl in the answer".into()))
}

/// Why [`AwsBackend::from_env`] could not build the backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    /// A required environment variable is unset or empty.
    #[error("environment variable {0} is not set (it must name the {1})")]
    MissingVar(&'static str, &'static str),
    /// A queue given by name could not be found.
    #[error("cannot find the SQS queue {0}: {1}")]
    QueueNotFound(String, String),
    /// An environment variable is not valid Unicode.
    #[error("environment variable {0} is not valid UTF-8")]
    NotUnicode(&'static str),
    /// An environment variable holds a value that cannot be what it names.
    #[error("environment variable {0} is invalid: {1}")]
    Invalid(&'static str, String),
}

/// The ledger, the destination gate, the queue and the archive on AWS, sharing one SDK
/// configuration.
#[derive(Debug, Clone)]
pub struct AwsBackend {
    /// The DynamoDB ledger.
    pub ledger: Arc<DynamoDbLedger>,
    /// The destination gate, on the ledger's table.
    pub gate: Arc<DynamoDbGate>,
    /// The SQS queue.
    pub queue: Arc<SqsQueue>,
    /// Its dead-letter queue, as a queue of its own (for the DLQ tools), when configured.
    pub dlq: Option<Arc<SqsQueue>>,
    /// The payload archive, when a bucket is configured.
    pub archive: Option<Arc<S3Archive>>,
}

impl AwsBackend {
    /// Builds the backend from `HOOKGATE_TABLE`, `HOOKGATE_QUEUE_URL`, and the optional
    /// `HOOKGATE_DLQ_URL` and `HOOKGATE_ARCHIVE_BUCKET` (in which `{account}` and `{region}`
    /// stand for the queue URL's account id and the region: see
    /// [`setup::expand_bucket_name`]), with the SDK configuration from the environment.
    pub async fn from_env() -> Result<AwsBackend, InitError> {
        Self::from_env_with(&sdk_config().await).await
    }

    /// As [`AwsBackend::from_env`], with an SDK configuration already loaded. A queue given by
    /// name rather than URL (as `cargo lambda deploy`'s metadata does) is resolved with
    /// `GetQueueUrl`, once.
    pub async fn from_env_with(config: &SdkConfig) -> Result<AwsBackend, InitError> {
        let table = required_var(ENV_TABLE, "DynamoDB ledger table")?;
        let queue = required_var(ENV_QUEUE_URL, "SQS queue URL")?;
        let dlq = optional_var(ENV_DLQ_URL)?;
        let bucket = optional_var(ENV_ARCHIVE_BUCKET)?;
        let sqs = aws_sdk_sqs::Client::new(config);
        let queue_url = resolve_queue_url(&sqs, queue).await?;
        let dlq_url = match dlq {
            Some(dlq) => Some(resolve_queue_url(&sqs, dlq).await?),
            None => None,
        };
        let bucket = bucket
            .map(|b| {
                setup::expand_bucket_name(&b, &queue_url, config.region().map(|r| r.as_ref()))
                    .map_err(|why| InitError::Invalid(ENV_ARCHIVE_BUCKET, why))
            })
            .transpose()?;
        Ok(Self::from_parts(config, table, queue_url, dlq_url, bucket))
    }

    /// Builds the backend from an SDK configuration and the resources' names (the archive's
    /// S3 client addressed as [`archive::s3_client`] says).
    pub fn from_parts(
        config: &SdkConfig,
        table: impl Into<String>,
        queue_url: impl Into<String>,
        dlq_url: Option<String>,
        archive_bucket: Option<String>,
    ) -> AwsBackend {
        Self::from_clients(
            aws_sdk_dynamodb::Client::new(config),
            aws_sdk_sqs::Client::new(config),
            archive::s3_client(config),
            table,
            queue_url,
            dlq_url,
            archive_bucket,
        )
    }

    /// Builds the backend from clients already built (with interceptors of their own, say).
    /// The S3 client is used only with an `archive_bucket`.
    pub fn from_clients(
        dynamodb: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
        s3: aws_sdk_s3::Client,
        table: impl Into<String>,
        queue_url: impl Into<String>,
        dlq_url: Option<String>,
        archive_bucket: Option<String>,
    ) -> AwsBackend {
        let table = table.into();
        AwsBackend {
            gate: Arc::new(DynamoDbGate::new(dynamodb.clone(), table.clone())),
            ledger: Arc::new(DynamoDbLedger::new(dynamodb, table)),
            dlq: dlq_url
                .clone()
                .map(|url| Arc::new(SqsQueue::new(sqs.clone(), url, None))),
            queue: Arc::new(SqsQueue::new(sqs, queue_url, dlq_url)),
            archive: archive_bucket.map(|bucket| Arc::new(S3Archive::new(s3, bucket))),
        }
    }
}

fn optional_var(name: &'static str) -> Result<Option<String>, InitError> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(InitError::NotUnicode(name)),
    }
}

fn required_var(name: &'static str, what: &'static str) -> Result<String, InitError> {
    optional_var(name)?.ok_or(InitError::MissingVar(name, what))
}
