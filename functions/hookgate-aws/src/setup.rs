//! Idempotent creation of hookgate's AWS resources: the ledger table, the queue pair and the
//! archive bucket.
//!
//! It exists so the contract and end-to-end tests (on moto) and the `hookgate` command (against
//! a real account or a local stand-in) create exactly the same resources: the table the
//! [`DynamoDbLedger`](crate::DynamoDbLedger) expects (key `event_id`, TTL on `expires_at`, the
//! sharded status index [`STATUS_SHARD_INDEX`] of `template.yaml`), a queue whose `RedrivePolicy` sends a
//! message to `{name}-dlq` after `max_receive_count` receives (both queues taking messages of
//! [`MAX_MESSAGE_BYTES`], set explicitly), and the bucket of the
//! [`S3Archive`](crate::S3Archive) with the template's settings ([`create_archive_bucket`]).
//! Running it again on existing resources succeeds, adds the sharded status index to a table
//! created without it (beside the old `by-status`, which it leaves) and backfills its key on the
//! existing items, and re-applies the queue and bucket settings. (On AWS proper the SAM template
//! owns these resources; this is for local stacks and tests.)

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CreateGlobalSecondaryIndexAction,
    GlobalSecondaryIndex, GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus,
};
use aws_sdk_s3::operation::create_bucket::CreateBucketError;
use aws_sdk_s3::operation::head_bucket::HeadBucketError;
use aws_sdk_sqs::types::QueueAttributeName;
use hookgate_core::envelope::EventId;
use hookgate_core::ledger::EventStatus;
use hookgate_core::status_index::status_partition;

/// The ledger table's partition key.
pub const KEY_ATTRIBUTE: &str = "event_id";

/// The ledger table's TTL attribute (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// The status index before it was sharded: partition key `status` (S), sort key `received_at`
/// (N, epoch ms). Tables made before keep it until the operator drops it (see
/// `docs/operations.md`); listings read it only while [`STATUS_SHARD_INDEX`] cannot be read.
/// `template.yaml` keeps it while its `LegacyStatusIndex` parameter is `true`.
pub const STATUS_INDEX: &str = "by-status";

/// The global secondary index listings query: partition key `status_shard` (S, `status#shard`,
/// see [`hookgate_core::status_index`]), sort key `received_at` (N, epoch ms). Same name, keys
/// and projection as `EventTable` in `template.yaml`.
pub const STATUS_SHARD_INDEX: &str = "by-status-shard";

/// The sharded index's partition key attribute.
pub const STATUS_SHARD_ATTRIBUTE: &str = "status_shard";

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

/// The attributes [`STATUS_SHARD_INDEX`] projects besides its keys: those of
/// [`STATUS_INDEX_ATTRIBUTES`] and `status` (no longer a key).
pub const STATUS_SHARD_INDEX_ATTRIBUTES: [&str; 6] = [
    "status",
    "source",
    "event_type",
    "attempt_count",
    "last_error",
    "updated_at",
];

/// How long the DLQ keeps a message: 14 days, SQS's maximum.
pub const DLQ_RETENTION_SECS: u64 = 14 * 24 * 3600;

/// The largest message both queues take: 1 MiB, SQS's maximum, set explicitly (never left to a
/// service default). The same as `MaximumMessageSize` in `template.yaml`.
pub const MAX_MESSAGE_BYTES: usize = hookgate_core::queue::SQS_MAX_MESSAGE_BYTES;

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
    /// An S3 request failed.
    #[error("S3 {op} on bucket {bucket} failed: {message}")]
    S3 {
        /// The operation.
        op: &'static str,
        /// The bucket.
        bucket: String,
        /// What the service or the SDK said.
        message: String,
    },
    /// The bucket name cannot be used.
    #[error("bucket name {0:?} cannot be used: {1}")]
    BucketName(String, String),
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

/// The key attributes of [`STATUS_SHARD_INDEX`], defined on the table.
fn status_index_attributes(
    op: &'static str,
    table: &str,
) -> Result<Vec<AttributeDefinition>, SetupError> {
    Ok(vec![
        attribute(op, table, STATUS_SHARD_ATTRIBUTE, ScalarAttributeType::S)?,
        attribute(op, table, "received_at", ScalarAttributeType::N)?,
    ])
}

/// [`STATUS_SHARD_INDEX`]'s key schema and projection.
fn status_index_parts(
    op: &'static str,
    table: &str,
) -> Result<(Vec<KeySchemaElement>, Projection), SetupError> {
    let keys = vec![
        key_element(op, table, STATUS_SHARD_ATTRIBUTE, KeyType::Hash)?,
        key_element(op, table, "received_at", KeyType::Range)?,
    ];
    let projection = Projection::builder()
        .projection_type(ProjectionType::Include)
        .set_non_key_attributes(Some(
            STATUS_SHARD_INDEX_ATTRIBUTES
                .iter()
                .map(|a| (*a).to_owned())
                .collect(),
        ))
        .build();
    Ok((keys, projection))
}

/// Creates the ledger table (on-demand, key `event_id` S, the status index
/// [`STATUS_SHARD_INDEX`]) and turns on TTL on `expires_at`. A table that already exists is
/// fine; one without the sharded index gets it beside any old [`STATUS_INDEX`], and its items
/// get their `status_shard` ([`backfill_status_shards`]: DynamoDB indexes an item once it has
/// the key); TTL already on is left alone.
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), SetupError> {
    const OP: &str = "CreateTable";
    let mut attributes = vec![attribute(OP, table, KEY_ATTRIBUTE, ScalarAttributeType::S)?];
    attributes.extend(status_index_attributes(OP, table)?);
    let (index_keys, projection) = status_index_parts(OP, table)?;
    let index = GlobalSecondaryIndex::builder()
        .index_name(STATUS_SHARD_INDEX)
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
    backfill_status_shards(client, table).await?;

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

/// Adds [`STATUS_SHARD_INDEX`] to a table that lacks it (one made by an earlier `hookgate
/// setup`, with or without the old [`STATUS_INDEX`], which is left in place), and waits until
/// it is `ACTIVE`. An index of that name is taken as it is.
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
            .any(|i| i.index_name() == Some(STATUS_SHARD_INDEX))
    });
    if has_index {
        return Ok(());
    }
    let (keys, projection) = status_index_parts(OP, table)?;
    let create = CreateGlobalSecondaryIndexAction::builder()
        .index_name(STATUS_SHARD_INDEX)
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
        Ok(_) => tracing::info!(table, index = STATUS_SHARD_INDEX, "added the status index"),
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

/// Gives every item of `table` the `status_shard` its `status` and id call for
/// ([`status_partition`]), where it lacks it or holds another (an item written before the index
/// was sharded, or under another shard count): a `Scan` of the key, status and shard, and one
/// conditional update per item to change — only if its status is still the one read, so a
/// concurrent status change (which writes its own shard) is never overwritten. Idempotent: a
/// second run changes nothing. Returns how many items it changed.
pub async fn backfill_status_shards(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<u64, SetupError> {
    let mut start = None;
    let mut changed = 0;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .projection_expression("event_id, #status, status_shard")
            .expression_attribute_names("#status", "status")
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| dynamo_err("Scan", table, e))?;
        for item in out.items() {
            let (Some(AttributeValue::S(id)), Some(AttributeValue::S(status))) =
                (item.get(KEY_ATTRIBUTE), item.get("status"))
            else {
                continue;
            };
            let (Ok(event_id), Some(parsed)) = (EventId::parse(id), EventStatus::parse(status))
            else {
                tracing::warn!(table, event_id = %id, "item with an unreadable id or status; not indexed");
                continue;
            };
            let want = status_partition(parsed, &event_id);
            if matches!(item.get(STATUS_SHARD_ATTRIBUTE), Some(AttributeValue::S(have)) if *have == want)
            {
                continue;
            }
            let updated = client
                .update_item()
                .table_name(table)
                .key(KEY_ATTRIBUTE, AttributeValue::S(id.clone()))
                .update_expression("SET status_shard = :shard")
                .condition_expression("#status = :status")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":shard", AttributeValue::S(want))
                .expression_attribute_values(":status", AttributeValue::S(status.clone()))
                .send()
                .await;
            match updated {
                Ok(_) => changed += 1,
                Err(e) => match e.into_service_error() {
                    // Its status changed (or it was deleted) since the scan: the writer that
                    // changed it wrote its shard.
                    UpdateItemError::ConditionalCheckFailedException(_) => {}
                    other => return Err(dynamo_err("UpdateItem", table, other)),
                },
            }
        }
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    if changed > 0 {
        tracing::info!(table, changed, "backfilled status_shard");
    }
    Ok(changed)
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
/// default visibility timeout, both taking messages of up to [`MAX_MESSAGE_BYTES`]. Existing
/// queues get these attributes set again.
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
        HashMap::from([
            (
                QueueAttributeName::MessageRetentionPeriod,
                DLQ_RETENTION_SECS.to_string(),
            ),
            (
                QueueAttributeName::MaximumMessageSize,
                MAX_MESSAGE_BYTES.to_string(),
            ),
        ]),
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
            (
                QueueAttributeName::MaximumMessageSize,
                MAX_MESSAGE_BYTES.to_string(),
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

// ------------------------------------------------------------------------------------------
// The archive bucket
// ------------------------------------------------------------------------------------------

/// The ID of the archive bucket's lifecycle rule.
pub const ARCHIVE_LIFECYCLE_RULE: &str = "hookgate-archive-retention";

fn s3_err<E>(
    op: &'static str,
    bucket: &str,
    err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> SetupError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    SetupError::S3 {
        op,
        bucket: bucket.to_owned(),
        message: crate::archive::describe(&err),
    }
}

fn s3_build_err(op: &'static str, bucket: &str, err: aws_sdk_s3::error::BuildError) -> SetupError {
    SetupError::S3 {
        op,
        bucket: bucket.to_owned(),
        message: err.to_string(),
    }
}

/// Checks `name` against S3's rules for a general purpose bucket — 3 to 63 characters, lower
/// case letters, digits and hyphens, starting and ending with a letter or digit, none of the
/// reserved prefixes and suffixes — and one of hookgate's: no dots, which break TLS for
/// virtual-hosted-style requests (`a.b.s3.amazonaws.com` matches no certificate). Returns why
/// not.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    if !(3..=63).contains(&name.len()) {
        return Err(format!("{} characters, not 3 to 63", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{c:?} is not a lower case letter, a digit or a hyphen"
        ));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(name.chars().next()) || !alnum(name.chars().last()) {
        return Err("it must start and end with a letter or a digit".into());
    }
    const RESERVED_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
    const RESERVED_SUFFIXES: [&str; 4] = ["-s3alias", "--ol-s3", "--x-s3", "--table-s3"];
    if let Some(p) = RESERVED_PREFIXES.iter().find(|p| name.starts_with(**p)) {
        return Err(format!("the prefix {p} is reserved by S3"));
    }
    if let Some(x) = RESERVED_SUFFIXES.iter().find(|x| name.ends_with(**x)) {
        return Err(format!("the suffix {x} is reserved by S3"));
    }
    Ok(())
}

/// The AWS account id in an SQS queue URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`,
/// and moto's `http://HOST:PORT/ACCOUNT/NAME`), if it shows one.
pub fn queue_url_account(queue_url: &str) -> Option<&str> {
    let path = queue_url
        .split_once("://")
        .map_or(queue_url, |(_, rest)| rest);
    let account = path.split('/').nth(1)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

/// The archive bucket `hookgate setup` creates unless told a name:
/// `<queue name>-archive-<account id>-<region>`, from the queue's URL (whose path starts with
/// the account id) — bucket names are global, so the account and region make it unique, and
/// the queue's name keeps two stacks of one account apart. The queue name is lower-cased, `_`
/// becoming `-`. `None` when the URL shows no account id or the name would not be a valid
/// bucket name (longer than 63 characters, say): then a name must be given.
pub fn default_archive_bucket(queue_name: &str, queue_url: &str, region: &str) -> Option<String> {
    let account = queue_url_account(queue_url)?;
    let queue = queue_name.to_ascii_lowercase().replace('_', "-");
    let name = format!("{queue}-archive-{account}-{region}");
    check_bucket_name(&name).ok().map(|()| name)
}

/// A bucket name as `HOOKGATE_ARCHIVE_BUCKET` may give it, with `{account}` and `{region}`
/// replaced by the account id of the queue's URL and the SDK's region — so a configuration
/// written before the account is known (`cargo lambda deploy`'s metadata:
/// `hookgate-events-archive-{account}-{region}`) names the bucket `hookgate setup` made. The
/// result must be a valid bucket name ([`check_bucket_name`]); returns why not.
pub fn expand_bucket_name(
    name: &str,
    queue_url: &str,
    region: Option<&str>,
) -> Result<String, String> {
    let mut expanded = name.trim().to_owned();
    if expanded.contains("{account}") {
        let account = queue_url_account(queue_url).ok_or_else(|| {
            format!("{{account}} needs a queue URL holding an account id, not {queue_url}")
        })?;
        expanded = expanded.replace("{account}", account);
    }
    if expanded.contains("{region}") {
        let region = region.ok_or("{region} needs a region (AWS_REGION)")?;
        expanded = expanded.replace("{region}", region);
    }
    check_bucket_name(&expanded).map(|()| expanded)
}

/// Lifecycle expiration days that keep objects at least `window_secs`: whole days, rounded up,
/// at least 1 (S3 counts in days; it also rounds each expiry up to the next midnight UTC).
pub fn retention_days(window_secs: u64) -> u32 {
    let days = window_secs.div_ceil(24 * 3600).max(1);
    u32::try_from(days).unwrap_or(u32::MAX)
}

/// The AWS partition of `region`, for ARNs.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The bucket policy denying every request not made over TLS (`aws:SecureTransport` false),
/// as `ArchiveBucketPolicy` in `template.yaml`.
pub fn tls_only_policy(bucket: &str, region: &str) -> String {
    let arn = format!("arn:{}:s3:::{bucket}", partition(region));
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn.clone(), format!("{arn}/*")],
            "Condition": { "Bool": { "aws:SecureTransport": "false" } },
        }],
    })
    .to_string()
}

/// Creates the archive bucket `bucket` (in the client's region) with the settings of
/// `ArchiveBucket` in `template.yaml`: every public access blocked, object ownership enforced
/// for the bucket owner (no ACLs), default encryption SSE-S3 (AES-256), a lifecycle rule
/// ([`ARCHIVE_LIFECYCLE_RULE`]) expiring every object `retention_days` after it was written,
/// versioning left off, and — with `tls_only` — the bucket policy refusing requests without
/// TLS ([`tls_only_policy`]). Leave `tls_only` off only for a plain-HTTP stand-in
/// ([`crate::archive::plain_http_endpoint`]), which would otherwise refuse every request (moto
/// enforces bucket policies). A bucket of this name this account can already reach is taken as
/// it is and gets the settings again; one that exists but cannot be reached belongs to someone
/// else (bucket names are global), which is an error naming it.
pub async fn create_archive_bucket(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    retention_days: u32,
    tls_only: bool,
) -> Result<(), SetupError> {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, BucketLocationConstraint, CreateBucketConfiguration,
        ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, ObjectOwnership,
        OwnershipControls, OwnershipControlsRule, PublicAccessBlockConfiguration,
        ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
        ServerSideEncryptionRule,
    };

    check_bucket_name(bucket).map_err(|why| SetupError::BucketName(bucket.to_owned(), why))?;
    if retention_days == 0 {
        return Err(SetupError::BucketName(
            bucket.to_owned(),
            "the retention must be at least one day".into(),
        ));
    }
    let region = client
        .config()
        .region()
        .map(|r| r.as_ref().to_owned())
        .unwrap_or_else(|| "us-east-1".to_owned());

    // HeadBucket first: re-creating one's own bucket in us-east-1 answers 200 and resets its
    // ACLs, and a 403 here tells a name taken by another account apart.
    let exists = match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => true,
        Err(e) => match e.as_service_error() {
            Some(HeadBucketError::NotFound(_)) => false,
            Some(_) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {
                return Err(SetupError::BucketName(
                    bucket.to_owned(),
                    "it exists, and this account may not use it (another account's bucket?)".into(),
                ))
            }
            _ => return Err(s3_err("HeadBucket", bucket, e)),
        },
    };
    if !exists {
        let mut create = client.create_bucket().bucket(bucket);
        if region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => tracing::info!(bucket, "created the archive bucket"),
            Err(e) => match e.as_service_error() {
                // Two setups racing: the other one created it.
                Some(CreateBucketError::BucketAlreadyOwnedByYou(_)) => {}
                Some(CreateBucketError::BucketAlreadyExists(_)) => {
                    return Err(SetupError::BucketName(
                        bucket.to_owned(),
                        "another account owns a bucket of this name: choose another".into(),
                    ))
                }
                _ => return Err(s3_err("CreateBucket", bucket, e)),
            },
        }
    }

    client
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| s3_err("PutPublicAccessBlock", bucket, e))?;

    let ownership = OwnershipControlsRule::builder()
        .object_ownership(ObjectOwnership::BucketOwnerEnforced)
        .build()
        .map_err(|e| s3_build_err("PutBucketOwnershipControls", bucket, e))?;
    client
        .put_bucket_ownership_controls()
        .bucket(bucket)
        .ownership_controls(
            OwnershipControls::builder()
                .rules(ownership)
                .build()
                .map_err(|e| s3_build_err("PutBucketOwnershipControls", bucket, e))?,
        )
        .send()
        .await
        .map_err(|e| s3_err("PutBucketOwnershipControls", bucket, e))?;

    let sse = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .map_err(|e| s3_build_err("PutBucketEncryption", bucket, e))?;
    client
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(sse)
                        .build(),
                )
                .build()
                .map_err(|e| s3_build_err("PutBucketEncryption", bucket, e))?,
        )
        .send()
        .await
        .map_err(|e| s3_err("PutBucketEncryption", bucket, e))?;

    let rule = LifecycleRule::builder()
        .id(ARCHIVE_LIFECYCLE_RULE)
        .status(ExpirationStatus::Enabled)
        // Every object: the bucket holds the archive and nothing else.
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .expiration(
            LifecycleExpiration::builder()
                .days(i32::try_from(retention_days).unwrap_or(i32::MAX))
                .build(),
        )
        .build()
        .map_err(|e| s3_build_err("PutBucketLifecycleConfiguration", bucket, e))?;
    client
        .put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(rule)
                .build()
                .map_err(|e| s3_build_err("PutBucketLifecycleConfiguration", bucket, e))?,
        )
        .send()
        .await
        .map_err(|e| s3_err("PutBucketLifecycleConfiguration", bucket, e))?;

    if tls_only {
        client
            .put_bucket_policy()
            .bucket(bucket)
            .policy(tls_only_policy(bucket, &region))
            .send()
            .await
            .map_err(|e| s3_err("PutBucketPolicy", bucket, e))?;
    } else {
        tracing::warn!(
            bucket,
            "the endpoint is plain HTTP: the TLS-only bucket policy is not applied"
        );
    }
    Ok(())
}

/// What `hookgate setup` does for the archive: the bucket `bucket`, or if none is given the
/// [`default_archive_bucket`] of the queue (`queue_name` at `queue_url`), created in
/// `config`'s region with [`create_archive_bucket`] — the TLS-only policy unless the endpoint
/// is plain HTTP. Returns the bucket's name.
pub async fn setup_archive_bucket(
    config: &aws_config::SdkConfig,
    bucket: Option<String>,
    queue_name: &str,
    queue_url: &str,
    retention_days: u32,
) -> Result<String, SetupError> {
    let region = config
        .region()
        .map(|r| r.as_ref().to_owned())
        .unwrap_or_else(|| "us-east-1".to_owned());
    let bucket = match bucket {
        Some(bucket) => bucket,
        None => default_archive_bucket(queue_name, queue_url, &region).ok_or_else(|| {
            SetupError::BucketName(
                format!("{queue_name}-archive-…"),
                format!(
                    "no default bucket name from the queue {queue_url} in {region} (no account \
                     id in its URL, or too long): give one with --bucket"
                ),
            )
        })?,
    };
    let client = crate::archive::s3_client(config);
    let tls_only = !crate::archive::plain_http_endpoint(config);
    create_archive_bucket(&client, &bucket, retention_days, tls_only).await?;
    Ok(bucket)
}

#[cfg(test)]
mod archive_bucket_tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3s_rules() {
        for ok in [
            "abc",
            "hookgate-archive-123456789012-us-east-1",
            &"a".repeat(63),
        ] {
            assert_eq!(check_bucket_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "Hookgate",
            "hook_gate",
            "hook.gate",
            "-hookgate",
            "hookgate-",
            "xn--hookgate",
            "hookgate-s3alias",
            "hookgate--x-s3",
            "hook gate",
        ] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_bucket_names_the_queue_account_and_region() {
        assert_eq!(
            default_archive_bucket(
                "hookgate-events",
                "https://sqs.eu-west-1.amazonaws.com/123456789012/hookgate-events",
                "eu-west-1"
            )
            .as_deref(),
            Some("hookgate-events-archive-123456789012-eu-west-1")
        );
        // moto's URLs have the same shape; upper case and `_` are made fit.
        assert_eq!(
            default_archive_bucket(
                "My_Events",
                "http://127.0.0.1:5123/123456789012/My_Events",
                "us-east-1"
            )
            .as_deref(),
            Some("my-events-archive-123456789012-us-east-1")
        );
        // No account id in the URL, or a name too long: none.
        assert_eq!(
            default_archive_bucket("q", "http://localhost:9324/queue/q", "us-east-1"),
            None
        );
        let long = "q".repeat(40);
        assert_eq!(
            default_archive_bucket(
                &long,
                &format!("https://sqs.us-east-1.amazonaws.com/123456789012/{long}"),
                "us-east-1"
            ),
            None
        );
    }

    #[test]
    fn bucket_names_may_hold_the_account_and_the_region() {
        let url = "https://sqs.eu-west-1.amazonaws.com/123456789012/hookgate-events";
        assert_eq!(
            expand_bucket_name(
                "hookgate-events-archive-{account}-{region}",
                url,
                Some("eu-west-1")
            ),
            Ok("hookgate-events-archive-123456789012-eu-west-1".to_owned())
        );
        // The same name `hookgate setup` gives by default.
        assert_eq!(
            default_archive_bucket("hookgate-events", url, "eu-west-1"),
            expand_bucket_name(
                "hookgate-events-archive-{account}-{region}",
                url,
                Some("eu-west-1")
            )
            .ok()
        );
        assert_eq!(
            expand_bucket_name(" plain-name ", url, None),
            Ok("plain-name".to_owned())
        );
        assert!(expand_bucket_name("a-{account}", "http://localhost:9324/queue/q", None).is_err());
        assert!(expand_bucket_name("a-{region}", url, None).is_err());
        assert!(expand_bucket_name("Bad_{region}", url, Some("us-east-1")).is_err());
    }

    #[test]
    fn cargo_lambda_deploy_names_the_bucket_setup_makes_by_default() {
        let url = "https://sqs.ap-south-1.amazonaws.com/210987654321/hookgate-events";
        let default = default_archive_bucket("hookgate-events", url, "ap-south-1");
        assert!(default.is_some());
        for (krate, manifest) in [
            ("receiver", include_str!("../../receiver/Cargo.toml")),
            ("processor", include_str!("../../processor/Cargo.toml")),
        ] {
            let name = manifest
                .split("HOOKGATE_ARCHIVE_BUCKET = \"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| {
                    panic!("{krate}'s deploy metadata sets HOOKGATE_ARCHIVE_BUCKET")
                });
            assert_eq!(
                expand_bucket_name(name, url, Some("ap-south-1")).ok(),
                default,
                "{krate}"
            );
        }
    }

    #[test]
    fn retention_rounds_up_to_whole_days() {
        assert_eq!(retention_days(7 * 24 * 3600), 7);
        assert_eq!(retention_days(7 * 24 * 3600 + 1), 8);
        assert_eq!(retention_days(60), 1);
        assert_eq!(retention_days(0), 1);
    }

    #[test]
    fn the_policy_denies_requests_without_tls_on_the_bucket_and_its_objects() {
        let policy: serde_json::Value =
            serde_json::from_str(&tls_only_policy("b-1", "us-east-1")).unwrap();
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Effect"], "Deny");
        assert_eq!(
            statement["Condition"]["Bool"]["aws:SecureTransport"],
            "false"
        );
        assert_eq!(
            statement["Resource"],
            serde_json::json!(["arn:aws:s3:::b-1", "arn:aws:s3:::b-1/*"])
        );
        let cn: serde_json::Value =
            serde_json::from_str(&tls_only_policy("b-1", "cn-north-1")).unwrap();
        assert_eq!(cn["Statement"][0]["Resource"][0], "arn:aws-cn:s3:::b-1");
    }
}
