//! Idempotent creation of hookgate's AWS resources: the ledger table and the queue pair.
//!
//! It exists so the contract and end-to-end tests (on moto) and the `hookgate` command (against
//! a real account or a local stand-in) create exactly the same resources: the table the
//! [`DynamoDbLedger`](crate::DynamoDbLedger) expects (key `event_id`, TTL on `expires_at`, the
//! status index [`STATUS_INDEX`] of `template.yaml`) and a queue whose `RedrivePolicy` sends a
//! message to `{name}-dlq` after `max_receive_count` receives. Running it again on existing
//! resources succeeds, adds the status index to a table created without it, and re-applies the
//! queue settings. (On AWS proper the SAM template owns these resources; this is for local
//! stacks and tests.)

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;

/// The ledger table's partition key.
pub const KEY_ATTRIBUTE: &str = "event_id";

/// The ledger table's TTL attribute (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// The global secondary index listings query: partition key `status` (S), sort key
/// `received_at` (N, epoch ms). Same name, keys and projection as `EventTable` in
/// `template.yaml`.
pub const STATUS_INDEX: &str = "by-status";

/// The attributes [`STATUS_INDEX`] projects besides the keys (`event_id`, `status`,
/// `received_at`): exactly what an event summary shows, so the attempts list is not copied
/// into the index (`ProjectionType: INCLUDE`, as in `template.yaml`).
pub const STATUS_INDEX_ATTRIBUTES: [&str; 5] = [
    "source",
    "event_type",
    "attempt_count",
    "last_error",
    "updated_at",
];

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
    /// The table (or one of its indexes) did not become `ACTIVE` in time.
    #[error("table {0} (or an index of it) did not become ACTIVE within {TABLE_ACTIVE_TIMEOUT:?}")]
    TableNotActive(String),
    /// A response lacked something it must hold.
    #[error("{0}")]
    Incomplete(String),
}

fn dynamo_err(op: &'static str, table: &str, err: impl std::error::Error + 'static) -> SetupError {
    SetupError::DynamoDb {
        op,
        table: table.to_owned(),
        message: crate::error_text::one_line(&err),
    }
}

fn sqs_err(op: &'static str, queue: &str, err: impl std::error::Error + 'static) -> SetupError {
    SetupError::Sqs {
        op,
        queue: queue.to_owned(),
        message: crate::error_text::one_line(&err),
    }
}

fn key_element(
    op: &'static str,
    table: &str,
    name: &str,
    key_type: KeyType,
) -> Result<KeySchemaElement, SetupError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .map_err(|e| dynamo_err(op, table, e))
}

fn attribute(
    op: &'static str,
    table: &str,
    name: &str,
    kind: ScalarAttributeType,
) -> Result<AttributeDefinition, SetupError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .map_err(|e| dynamo_err(op, table, e))
}

/// The key attributes of [`STATUS_INDEX`], defined on the table.
fn status_index_attributes(
    op: &'static str,
    table: &str,
) -> Result<Vec<AttributeDefinition>, SetupError> {
    Ok(vec![
        attribute(op, table, "status", ScalarAttributeType::S)?,
        attribute(op, table, "received_at", ScalarAttributeType::N)?,
    ])
}

/// [`STATUS_INDEX`]'s key schema and projection.
fn status_index_parts(
    op: &'static str,
    table: &str,
) -> Result<(Vec<KeySchemaElement>, Projection), SetupError> {
    let keys = vec![
        key_element(op, table, "status", KeyType::Hash)?,
        key_element(op, table, "received_at", KeyType::Range)?,
    ];
    let projection = Projection::builder()
        .projection_type(ProjectionType::Include)
        .set_non_key_attributes(Some(
            STATUS_INDEX_ATTRIBUTES
                .iter()
                .map(|a| (*a).to_owned())
                .collect(),
        ))
        .build();
    Ok((keys, projection))
}

/// Creates the ledger table (on-demand, key `event_id` S, the status index [`STATUS_INDEX`])
/// and turns on TTL on `expires_at`. A table that already exists is fine; one without the
/// status index gets it (DynamoDB then fills it from the table before it is `ACTIVE`); TTL
/// already on is left alone.
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), SetupError> {
    const OP: &str = "CreateTable";
    let mut attributes = vec![attribute(OP, table, KEY_ATTRIBUTE, ScalarAttributeType::S)?];
    attributes.extend(status_index_attributes(OP, table)?);
    let (index_keys, projection) = status_index_parts(OP, table)?;
    let index = GlobalSecondaryIndex::builder()
        .index_name(STATUS_INDEX)
        .set_key_schema(Some(index_keys))
        .projection(projection)
        .build()
        .map_err(|e| dynamo_err(OP, table, e))?;
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key_element(OP, table, KEY_ATTRIBUTE, KeyType::Hash)?)
        .set_attribute_definitions(Some(attributes))
        .global_secondary_indexes(index)
        .send()
        .await;
    match created {
        Ok(_) => tracing::info!(table, "created table"),
        Err(e) => match e.into_service_error() {
            CreateTableError::ResourceInUseException(_) => {
                tracing::debug!(table, "table exists already")
            }
            other => return Err(dynamo_err(OP, table, other)),
        },
    }
    wait_until_active(client, table).await?;
    ensure_status_index(client, table).await?;

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

/// Adds [`STATUS_INDEX`] to a table that lacks it (one made by an earlier `hookgate setup`),
/// and waits until it is `ACTIVE`. An index of that name is taken as it is.
async fn ensure_status_index(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), SetupError> {
    const OP: &str = "UpdateTable";
    let out = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| dynamo_err("DescribeTable", table, e))?;
    let has_index = out.table().is_some_and(|t| {
        t.global_secondary_indexes()
            .iter()
            .any(|i| i.index_name() == Some(STATUS_INDEX))
    });
    if has_index {
        return Ok(());
    }
    let (keys, projection) = status_index_parts(OP, table)?;
    let create = CreateGlobalSecondaryIndexAction::builder()
        .index_name(STATUS_INDEX)
        .set_key_schema(Some(keys))
        .projection(projection)
        .build()
        .map_err(|e| dynamo_err(OP, table, e))?;
    let updated = client
        .update_table()
        .table_name(table)
        .set_attribute_definitions(Some(status_index_attributes(OP, table)?))
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder().create(create).build(),
        )
        .send()
        .await;
    match updated {
        Ok(_) => tracing::info!(table, index = STATUS_INDEX, "added the status index"),
        Err(e) => {
            // Two setups racing: the other one is adding it already.
            let already = e.message().is_some_and(|m| m.contains("already exists"));
            if !already {
                return Err(dynamo_err(OP, table, e));
            }
        }
    }
    wait_until_active(client, table).await
}

/// Waits until the table and every one of its indexes are `ACTIVE`.
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
        let description = out.table();
        let status = description.and_then(|t| t.table_status());
        // An index without a status (some stand-ins omit it) counts as active.
        let indexes_active = description.is_some_and(|t| {
            t.global_secondary_indexes()
                .iter()
                .all(|i| i.index_status().is_none_or(|s| *s == IndexStatus::Active))
        });
        if status == Some(&TableStatus::Active) && indexes_active {
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
