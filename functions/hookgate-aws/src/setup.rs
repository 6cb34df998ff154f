//! Idempotent creation of hookgate's AWS resources: the ledger table and the queue pair.
//!
//! It exists so the contract and end-to-end tests (on moto) and the `hookgate` command (against
//! a real account or a local stand-in) create exactly the same resources: the table the
//! [`DynamoDbLedger`](crate::DynamoDbLedger) expects (key `event_id`, TTL on `expires_at`) and a
//! queue whose `RedrivePolicy` sends a message to `{name}-dlq` after `max_receive_count`
//! receives. Running it again on existing resources succeeds and re-applies the queue settings.
//! (On AWS proper the SAM template owns these resources; this is for local stacks and tests.)

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;

/// The ledger table's partition key.
pub const KEY_ATTRIBUTE: &str = "event_id";

/// The ledger table's TTL attribute (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// How long the DLQ keeps a message: 14 days, SQS's maximum.
pub const DLQ_RETENTION_SECS: u64 = 14 * 24 * 3600;

/// How long to wait for a new table to become `ACTIVE`.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// The URLs of a queue and its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrls {
    /// The main queue.
    pub queue_url: String,
    /// Its dead-letter queue (`{name}-dlq`).
    pub dlq_url: String,
}

/// A resource that could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A DynamoDB request failed.
    #[error("DynamoDB {op} on {table} failed: {message}")]
    DynamoDb {
        /// The operation.
        op: &'static str,
        /// The table.
        table: String,
        /// What the service or the SDK said.
        message: String,
    },
    /// An SQS request failed.
    #[error("SQS {op} on {queue} failed: {message}")]
    Sqs {
        /// The operation.
        op: &'static str,
        /// The queue name or URL.
        queue: String,
        /// What the service or the SDK said.
        message: String,
    },
    /// The table did not become `ACTIVE` in time.
    #[error("table {0} did not become ACTIVE within {TABLE_ACTIVE_TIMEOUT:?}")]
    TableNotActive(String),
    /// A response lacked something it must hold.
    #[error("{0}")]
    Incomplete(String),
}

fn dynamo_err(op: &'static str, table: &str, err: impl std::error::Error) -> SetupError {
    SetupError::DynamoDb {
        op,
        table: table.to_owned(),
        message: DisplayErrorContext(err).to_string(),
    }
}

fn sqs_err(op: &'static str, queue: &str, err: impl std::error::Error) -> SetupError {
    SetupError::Sqs {
        op,
        queue: queue.to_owned(),
        message: DisplayErrorContext(err).to_string(),
    }
}

/// Creates the ledger table (on-demand, key `event_id` S) and turns on TTL on `expires_at`.
/// A table that already exists is fine; TTL already on is left alone.
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), SetupError> {
    let key = KeySchemaElement::builder()
        .attribute_name(KEY_ATTRIBUTE)
        .key_type(KeyType::Hash)
        .build()
        .map_err(|e| dynamo_err("CreateTable", table, e))?;
    let key_def = AttributeDefinition::builder()
        .attribute_name(KEY_ATTRIBUTE)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| dynamo_err("CreateTable", table, e))?;
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key)
        .attribute_definitions(key_def)
        .send()
        .await;
    match created {
        Ok(_) => tracing::info!(table, "created table"),
        Err(e) => match e.into_service_error() {
            CreateTableError::ResourceInUseException(_) => {
                tracing::debug!(table, "table exists already")
            }
            other => return Err(dynamo_err("CreateTable", table, other)),
        },
    }
    wait_until_active(client, table).await?;

    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| dynamo_err("DescribeTimeToLive", table, e))?;
    let ttl_on = ttl.time_to_live_description().is_some_and(|d| {
        d.attribute_name() == Some(TTL_ATTRIBUTE)
            && matches!(
                d.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            )
    });
    if !ttl_on {
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(TTL_ATTRIBUTE)
            .enabled(true)
            .build()
            .map_err(|e| dynamo_err("UpdateTimeToLive", table, e))?;
        let updated = client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(spec)
            .send()
            .await;
        if let Err(e) = updated {
            // Two setups racing: the other one turned it on first.
            let already = e.message().is_some_and(|m| m.contains("already enabled"));
            if !already {
                return Err(dynamo_err("UpdateTimeToLive", table, e));
            }
        }
    }
    Ok(())
}

async fn wait_until_active(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), SetupError> {
    let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
    loop {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| dynamo_err("DescribeTable", table, e))?;
        let status = out.table().and_then(|t| t.table_status());
        if status == Some(&TableStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SetupError::TableNotActive(table.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates the queue `name` and its dead-letter queue `{name}-dlq` (kept 14 days), with a
/// `RedrivePolicy` that moves a message there after `max_receive_count` receives and the given
/// default visibility timeout. Existing queues get these attributes set again.
pub async fn create_queues(
    client: &aws_sdk_sqs::Client,
    name: &str,
    max_receive_count: u32,
    visibility_timeout_secs: u64,
) -> Result<QueueUrls, SetupError> {
    let dlq_name = format!("{name}-dlq");
    let dlq_url = ensure_queue(
        client,
        &dlq_name,
        HashMap::from([(
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_RETENTION_SECS.to_string(),
        )]),
    )
    .await?;

    let attrs = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sqs_err("GetQueueAttributes", &dlq_url, e))?;
    let dlq_arn = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .ok_or_else(|| SetupError::Incomplete(format!("SQS returned no QueueArn for {dlq_url}")))?;

    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receive_count,
    })
    .to_string();
    let queue_url = ensure_queue(
        client,
        name,
        HashMap::from([
            (QueueAttributeName::RedrivePolicy, redrive),
            (
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout_secs.to_string(),
            ),
        ]),
    )
    .await?;
    Ok(QueueUrls { queue_url, dlq_url })
}

/// Creates `name` with `attributes`, or, if it exists with other attributes, sets them.
async fn ensure_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> Result<String, SetupError> {
    let created = client
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes.clone()))
        .send()
        .await;
    match created {
        Ok(out) => out
            .queue_url
            .ok_or_else(|| SetupError::Incomplete(format!("SQS returned no URL for {name}"))),
        Err(e) => {
            let exists = e
                .code()
                .is_some_and(|c| c.contains("QueueNameExists") || c.contains("QueueAlreadyExists"));
            if !exists {
                return Err(sqs_err("CreateQueue", name, e));
            }
            let url = client
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map_err(|e| sqs_err("GetQueueUrl", name, e))?
                .queue_url
                .ok_or_else(|| SetupError::Incomplete(format!("SQS returned no URL for {name}")))?;
            client
                .set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(attributes))
                .send()
                .await
                .map_err(|e| sqs_err("SetQueueAttributes", name, e))?;
            Ok(url)
        }
    }
}
