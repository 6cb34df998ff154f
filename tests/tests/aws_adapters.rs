//! What only the AWS adapters have: resource setup, the stored item layout, and how store
//! failures map onto the ports' errors. (The behaviour both backends share is in the contract
//! suites.)

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ProjectionType,
    ScalarAttributeType, TimeToLiveStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;
use hookgate_aws::setup::{STATUS_INDEX_ATTRIBUTES, STATUS_SHARD_INDEX_ATTRIBUTES};
use hookgate_aws::{DynamoDbLedger, SqsQueue, STATUS_INDEX, STATUS_SHARD_INDEX};
use hookgate_core::archive::{Archive, ArchiveError};
use hookgate_core::clock::{Clock, SystemClock, Timestamp};
use hookgate_core::envelope::{EventId, SourceName};
use hookgate_core::ledger::{
    Attempt, AttemptEnd, AttemptStart, Claim, ClaimOutcome, EventRecord, EventStatus, HistoryEntry,
    Ledger, LedgerError, ListQuery, PayloadInfo, PayloadStore, PayloadWrite, ReplayOutcome,
    ReplayStart,
};
use hookgate_core::queue::{OutgoingMessage, Queue, QueueError};
use hookgate_testkit::{fresh_resources, moto_endpoint, moto_sdk_config};

macro_rules! moto_or_skip {
    () => {
        match moto_endpoint() {
            Some(endpoint) => endpoint,
            None => {
                eprintln!("skipped: no moto");
                return;
            }
        }
    };
}

fn new_id() -> EventId {
    EventId::parse(&format!("test:{}", uuid::Uuid::new_v4().simple())).unwrap()
}

fn claim(id: &EventId, now: Timestamp, token: &str) -> Claim {
    Claim {
        event_id: id.clone(),
        source: SourceName::parse("github").unwrap(),
        event_type: "push".into(),
        now,
        expires_at: now.plus(Duration::from_secs(3600)),
        timeout: Duration::from_secs(30),
        token: token.into(),
    }
}

#[tokio::test]
async fn setup_is_idempotent_and_configures_resources() {
    let endpoint = moto_or_skip!();
    let r = fresh_resources(&endpoint, 4, 7).await;
    let dynamodb = r.dynamodb();
    let sqs = r.sqs();

    // Again, on existing resources: fine, same URLs.
    hookgate_aws::create_table(&dynamodb, &r.table)
        .await
        .unwrap();
    let urls = hookgate_aws::create_queues(&sqs, &r.queue_name, 4, 7)
        .await
        .unwrap();
    assert_eq!(urls.queue_url, r.queue_url);
    assert_eq!(urls.dlq_url, r.dlq_url);
    // With other settings: re-applied.
    let urls = hookgate_aws::create_queues(&sqs, &r.queue_name, 5, 9)
        .await
        .unwrap();
    assert_eq!(urls.queue_url, r.queue_url);

    let ttl = dynamodb
        .describe_time_to_live()
        .table_name(&r.table)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));

    let table = dynamodb
        .describe_table()
        .table_name(&r.table)
        .send()
        .await
        .unwrap();
    let key = table.table().unwrap().key_schema();
    assert_eq!(key.len(), 1);
    assert_eq!(key[0].attribute_name(), "event_id");

    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&r.queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attrs = attrs.attributes().unwrap();
    assert_eq!(attrs[&QueueAttributeName::VisibilityTimeout], "9");
    let redrive: serde_json::Value =
        serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert_eq!(redrive["maxReceiveCount"], 5);
    assert!(redrive["deadLetterTargetArn"]
        .as_str()
        .unwrap()
        .ends_with(&format!("{}-dlq", r.queue_name)));

    let dlq_attrs = sqs
        .get_queue_attributes()
        .queue_url(&r.dlq_url)
        .attribute_names(QueueAttributeName::MessageRetentionPeriod)
        .send()
        .await
        .unwrap();
    assert_eq!(
        dlq_attrs.attributes().unwrap()[&QueueAttributeName::MessageRetentionPeriod],
        "1209600"
    );
}

#[tokio::test]
async fn setup_sets_both_queues_maximum_message_size_explicitly() {
    let endpoint = moto_or_skip!();
    let config = moto_sdk_config(&endpoint).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let name = format!("hookgate-size-{}", uuid::Uuid::new_v4().simple());
    // Queues that exist already with a smaller limit (moto's default is 1 MiB, so a
    // default could not show the difference): setup sets it again, on both.
    for queue in [name.clone(), format!("{name}-dlq")] {
        sqs.create_queue()
            .queue_name(&queue)
            .attributes(QueueAttributeName::MaximumMessageSize, "1024")
            .send()
            .await
            .unwrap();
    }
    let urls = hookgate_aws::create_queues(&sqs, &name, 3, 30)
        .await
        .unwrap();
    for url in [&urls.queue_url, &urls.dlq_url] {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::MaximumMessageSize)
            .send()
            .await
            .unwrap();
        assert_eq!(
            attrs.attributes().unwrap()[&QueueAttributeName::MaximumMessageSize],
            "1048576",
            "{url}"
        );
    }
    assert_eq!(hookgate_aws::setup::MAX_MESSAGE_BYTES, 1_048_576);
}

#[tokio::test]
async fn setup_creates_the_archive_bucket_idempotently_with_its_settings() {
    use aws_sdk_s3::types::{ExpirationStatus, ObjectOwnership, ServerSideEncryption};
    let endpoint = moto_or_skip!();
    let r = fresh_resources(&endpoint, 3, 30).await;
    let s3 = r.s3();
    // Again, on the bucket fresh_resources made, with another retention: re-applied.
    hookgate_aws::create_archive_bucket(&s3, &r.bucket, 3, false)
        .await
        .unwrap();

    let block = s3
        .get_public_access_block()
        .bucket(&r.bucket)
        .send()
        .await
        .unwrap();
    let block = block.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            block.block_public_acls(),
            block.ignore_public_acls(),
            block.block_public_policy(),
            block.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let sse = s3
        .get_bucket_encryption()
        .bucket(&r.bucket)
        .send()
        .await
        .unwrap();
    let rule = &sse.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .map(|d| d.sse_algorithm()),
        Some(&ServerSideEncryption::Aes256)
    );
    let ownership = s3
        .get_bucket_ownership_controls()
        .bucket(&r.bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ownership.ownership_controls().unwrap().rules()[0].object_ownership(),
        &ObjectOwnership::BucketOwnerEnforced
    );
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket(&r.bucket)
        .send()
        .await
        .unwrap();
    let rules = lifecycle.rules();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(
        rules[0].id(),
        Some(hookgate_aws::setup::ARCHIVE_LIFECYCLE_RULE)
    );
    assert_eq!(rules[0].status(), &ExpirationStatus::Enabled);
    assert_eq!(rules[0].expiration().and_then(|e| e.days()), Some(3));
    // (Versioning is never turned on; moto's GetBucketVersioning answer for a bucket that
    // never had it has a root element the SDK refuses, so it is not read here.)

    // A name S3 would refuse is refused before any request.
    let err = hookgate_aws::create_archive_bucket(&s3, "Not_A_Bucket", 7, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, hookgate_aws::SetupError::BucketName(..)),
        "{err}"
    );
}

#[tokio::test]
async fn the_tls_only_policy_refuses_plain_http() {
    // moto enforces bucket policies: a bucket made with the TLS-only policy refuses the
    // plain-HTTP requests a test makes to it, as S3 refuses requests without TLS.
    let endpoint = moto_or_skip!();
    let config = moto_sdk_config(&endpoint).await;
    let s3 = hookgate_aws::archive::s3_client(&config);
    let bucket = format!("hookgate-tls-{}", uuid::Uuid::new_v4().simple());
    hookgate_aws::create_archive_bucket(&s3, &bucket, 7, true)
        .await
        .unwrap();
    let policy = s3.get_bucket_policy().bucket(&bucket).send().await.unwrap();
    assert!(
        policy
            .policy()
            .unwrap_or_default()
            .contains("aws:SecureTransport"),
        "{policy:?}"
    );
    let archive = hookgate_aws::S3Archive::new(s3, &bucket);
    let got = archive.get(&new_id()).await;
    assert!(
        matches!(got, Err(ArchiveError::Unavailable(ref m)) if m.contains("403")),
        "got {got:?}"
    );
}

#[tokio::test]
async fn setup_makes_the_bucket_in_the_clients_region() {
    let endpoint = moto_or_skip!();
    let config = moto_sdk_config(&endpoint)
        .await
        .to_builder()
        .region(aws_config::Region::new("eu-west-1"))
        .build();
    let s3 = hookgate_aws::archive::s3_client(&config);
    let bucket = format!("hookgate-eu-{}", uuid::Uuid::new_v4().simple());
    hookgate_aws::create_archive_bucket(&s3, &bucket, 7, false)
        .await
        .unwrap();
    hookgate_aws::create_archive_bucket(&s3, &bucket, 7, false)
        .await
        .unwrap();
    let location = s3
        .get_bucket_location()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(
        location.location_constraint().map(|c| c.as_str()),
        Some("eu-west-1")
    );
}

#[tokio::test]
async fn items_have_the_documented_layout() {
    let endpoint = moto_or_skip!();
    let r = fresh_resources(&endpoint, 3, 30).await;
    let ledger = r.backend().ledger;
    let dynamodb = r.dynamodb();
    let raw = |id: &EventId| {
        let dynamodb = dynamodb.clone();
        let table = r.table.clone();
        let id = id.as_str().to_owned();
        async move {
            dynamodb
                .get_item()
                .table_name(table)
                .key("event_id", AttributeValue::S(id))
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item
                .unwrap()
        }
    };

    let id = new_id();
    // Not on a whole second: expires_at is stored rounded up to whole seconds.
    let now = Timestamp::from_millis(SystemClock.now().as_secs() * 1000 + 250);
    assert_eq!(
        ledger.claim(&claim(&id, now, "tok")).await.unwrap(),
        ClaimOutcome::Claimed
    );
    let item = raw(&id).await;
    let n = |name: &str| item[name].as_n().unwrap().parse::<i64>().unwrap();
    assert_eq!(item["status"].as_s().unwrap(), "received");
    assert_eq!(item["claim_token"].as_s().unwrap(), "tok");
    assert_eq!(n("received_at"), now.as_millis());
    assert_eq!(n("claimed_at"), now.as_millis());
    assert_eq!(n("expires_at"), now.as_secs() + 3600 + 1);
    assert_eq!(n("attempt_count"), 0);
    assert!(!item.contains_key("attempts"));
    assert!(!item.contains_key("lease_until"));
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(
        record.expires_at,
        Timestamp::from_secs(now.as_secs() + 3601)
    );

    let start = AttemptStart {
        destination: None,
        ticket: None,
        event_id: id.clone(),
        source: SourceName::parse("github").unwrap(),
        event_type: "push".into(),
        received_at: now,
        expires_at: now,
        now,
        lease_until: now.plus(Duration::from_secs(60)),
        lease_token: uuid::Uuid::new_v4().to_string(),
        generation: 0,
        payload: None,
    };
    ledger.start_attempt(&start).await.unwrap();
    let item = raw(&id).await;
    assert_eq!(item["status"].as_s().unwrap(), "processing");
    assert_eq!(
        item["lease_until"].as_n().unwrap(),
        &start.lease_until.as_millis().to_string()
    );
    // The claim's expiry was kept, not replaced by the start's.
    assert_eq!(
        item["expires_at"].as_n().unwrap(),
        &(now.as_secs() + 3601).to_string()
    );

    let end = |attempt: u32, status, error: Option<&str>| AttemptEnd {
        deliveries: Vec::new(),
        next_attempt_at: None,
        event_id: id.clone(),
        attempt: Attempt {
            attempt,
            at: now,
            duration_ms: 12,
            success: error.is_none(),
            error: error.map(str::to_owned),
            note: None,
            url: None,
            status_code: None,
        },
        status,
        now,
    };
    ledger
        .finish_attempt(&end(1, EventStatus::Failed, Some("boom")))
        .await
        .unwrap();
    let item = raw(&id).await;
    assert_eq!(item["status"].as_s().unwrap(), "failed");
    assert_eq!(item["last_error"].as_s().unwrap(), "boom");
    assert!(!item.contains_key("lease_until"));
    let attempts = item["attempts"].as_l().unwrap();
    assert_eq!(attempts.len(), 1);
    let a = attempts[0].as_m().unwrap();
    assert_eq!(a["attempt"].as_n().unwrap(), "1");
    assert_eq!(a["at"].as_n().unwrap(), &now.as_millis().to_string());
    assert_eq!(a["duration_ms"].as_n().unwrap(), "12");
    assert_eq!(a["success"].as_bool().unwrap(), &false);
    assert_eq!(a["error"].as_s().unwrap(), "boom");

    ledger.start_attempt(&start).await.unwrap();
    ledger
        .finish_attempt(&end(2, EventStatus::Processed, None))
        .await
        .unwrap();
    let item = raw(&id).await;
    assert_eq!(item["status"].as_s().unwrap(), "processed");
    assert!(!item.contains_key("last_error"));
    let attempts = item["attempts"].as_l().unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(!attempts[1].as_m().unwrap().contains_key("error"));
}

#[tokio::test]
async fn unreadable_items_are_corrupt() {
    let endpoint = moto_or_skip!();
    let r = fresh_resources(&endpoint, 3, 30).await;
    let ledger = r.backend().ledger;
    let dynamodb = r.dynamodb();
    let put = |id: &EventId, status: &str, attempt_count: AttributeValue| {
        dynamodb
            .put_item()
            .table_name(&r.table)
            .item("event_id", AttributeValue::S(id.as_str().into()))
            .item("source", AttributeValue::S("github".into()))
            .item("event_type", AttributeValue::S("push".into()))
            .item("status", AttributeValue::S(status.into()))
            // As a current writer would: in the sharded index.
            .item(
                "status_shard",
                AttributeValue::S(format!(
                    "{status}#{}",
                    hookgate_core::status_index::shard_of(id)
                )),
            )
            .item("received_at", AttributeValue::N("1".into()))
            .item("updated_at", AttributeValue::N("1".into()))
            .item("expires_at", AttributeValue::N("99999999999".into()))
            .item("attempt_count", attempt_count)
            .send()
    };

    let id = new_id();
    put(&id, "bogus", AttributeValue::N("0".into()))
        .await
        .unwrap();
    let got = ledger.get(&id).await;
    assert!(matches!(got, Err(LedgerError::Corrupt(_))), "got {got:?}");
    let got = ledger.claim(&claim(&id, SystemClock.now(), "t")).await;
    assert!(matches!(got, Err(LedgerError::Corrupt(_))), "got {got:?}");

    let id = new_id();
    put(&id, "queued", AttributeValue::S("one".into()))
        .await
        .unwrap();
    let got = ledger.get(&id).await;
    assert!(matches!(got, Err(LedgerError::Corrupt(_))), "got {got:?}");
    // Claims only need the status: still a duplicate.
    assert_eq!(
        ledger
            .claim(&claim(&id, SystemClock.now(), "t"))
            .await
            .unwrap(),
        ClaimOutcome::Duplicate(EventStatus::Queued)
    );
    // A listing that meets it says so rather than skipping it.
    for status in [Some(EventStatus::Queued), None] {
        let got = ledger
            .list(&ListQuery {
                status,
                ..ListQuery::default()
            })
            .await;
        assert!(matches!(got, Err(LedgerError::Corrupt(_))), "got {got:?}");
    }
}

/// 2026-01-01T00:00:00.250Z: a fixed time, so the items below are exact. (Nothing here depends on
/// the real clock: moto never expires items, and every condition compares stored values.)
const T0: i64 = 1_767_225_600_250;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn m<const N: usize>(entries: [(&str, AttributeValue); N]) -> AttributeValue {
    AttributeValue::M(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// An item as an ordered map, so a failed comparison prints attribute by attribute.
fn sorted(item: HashMap<String, AttributeValue>) -> BTreeMap<String, AttributeValue> {
    item.into_iter().collect()
}

fn expected<const N: usize>(
    entries: [(&str, AttributeValue); N],
) -> BTreeMap<String, AttributeValue> {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

async fn raw_item(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    id: &EventId,
) -> BTreeMap<String, AttributeValue> {
    let item = dynamodb
        .get_item()
        .table_name(table)
        .key("event_id", s(id.as_str()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    sorted(item)
}

/// Items as tables written by earlier versions hold them — put with raw attribute values, not
/// through the ledger — read to the same records: one from before the archive and replay
/// existed (no `generation`, `replays`, `history` or payload attributes) and one with every
/// attribute written today.
#[tokio::test]
async fn items_written_before_still_read() {
    let endpoint = moto_or_skip!();
    let r = fresh_resources(&endpoint, 3, 30).await;
    let dynamodb = r.dynamodb();
    let ledger = DynamoDbLedger::new(dynamodb.clone(), &r.table);
    let put = |item: BTreeMap<String, AttributeValue>| {
        dynamodb
            .put_item()
            .table_name(&r.table)
            .set_item(Some(item.into_iter().collect()))
            .send()
    };
    let failed_attempt = Attempt {
        attempt: 1,
        at: at(2_000),
        duration_ms: 12,
        success: false,
        error: Some("boom".into()),
        note: Some("redriven from the DLQ".into()),
        url: Some("https://b.example/hooks".into()),
        status_code: Some(503),
    };
    let failed_attempt_av = m([
        ("attempt", n(1)),
        ("at", n(T0 + 2_000)),
        ("duration_ms", n(12)),
        ("success", AttributeValue::Bool(false)),
        ("error", s("boom")),
        ("note", s("redriven from the DLQ")),
        ("url", s("https://b.example/hooks")),
        ("status_code", n(503)),
    ]);
    let ok_attempt = Attempt {
        attempt: 2,
        at: at(3_000),
        duration_ms: 7,
        success: true,
        error: None,
        note: None,
        url: None,
        status_code: None,
    };
    let ok_attempt_av = m([
        ("attempt", n(2)),
        ("at", n(T0 + 3_000)),
        ("duration_ms", n(7)),
        ("success", AttributeValue::Bool(true)),
    ]);

    // Before the archive and replay: a failed event, its lease released.
    let old = EventId::parse("github:written-before-the-archive").unwrap();
    put(expected([
        ("event_id", s(old.as_str())),
        ("source", s("github")),
        ("event_type", s("push")),
        ("status", s("failed")),
        ("received_at", n(T0)),
        ("updated_at", n(T0 + 2_012)),
        ("expires_at", n(1_767_229_201)),
        ("claim_token", s("claim-tok")),
        ("claimed_at", n(T0)),
        ("attempt_count", n(1)),
        ("finished_attempt", n(1)),
        (
            "attempts",
            AttributeValue::L(vec![failed_attempt_av.clone()]),
        ),
        ("last_error", s("boom")),
    ]))
    .await
    .unwrap();
    let old_record = EventRecord {
        deliveries: Vec::new(),
        destination: None,
        next_attempt_at: None,
        event_id: old.clone(),
        source: SourceName::parse("github").unwrap(),
        event_type: "push".into(),
        status: EventStatus::Failed,
        received_at: at(0),
        updated_at: at(2_012),
        expires_at: Timestamp::from_secs(1_767_229_201),
        attempt_count: 1,
        attempts: vec![failed_attempt.clone()],
        last_error: Some("boom".into()),
        generation: 0,
        replays: 0,
        history: Vec::new(),
        payload: None,
    };
    assert_eq!(ledger.get(&old).await.unwrap(), Some(old_record.clone()));
    assert_eq!(ledger.inline_payload(&old).await.unwrap(), None);

    // Every attribute written today: replayed once, its payload inline, a DLQ purge recorded.
    let new = EventId::parse("github:written-with-every-attribute").unwrap();
    let payload = b"\x78\x9c compressed envelope \x00\xff".to_vec();
    put(expected([
        ("event_id", s(new.as_str())),
        ("source", s("github")),
        ("event_type", s("push")),
        ("status", s("queued")),
        ("received_at", n(T0 + 1)),
        ("updated_at", n(T0 + 6_000)),
        ("expires_at", n(1_767_229_201)),
        ("claim_token", s("claim-tok")),
        ("claimed_at", n(T0 + 1)),
        ("attempt_count", n(2)),
        ("finished_attempt", n(2)),
        (
            "attempts",
            AttributeValue::L(vec![failed_attempt_av, ok_attempt_av]),
        ),
        ("generation", n(1)),
        ("replays", n(1)),
        (
            "history",
            AttributeValue::L(vec![
                m([
                    ("at", n(T0 + 6_000)),
                    ("kind", s("replayed")),
                    ("note", s("by the test")),
                ]),
                m([
                    ("at", n(T0 + 7_000)),
                    ("kind", s("dlq_purged")),
                    ("note", s("purged")),
                ]),
            ]),
        ),
        (
            "history_tokens",
            AttributeValue::Ss(vec!["purge-tok".into()]),
        ),
        ("payload_bytes", n(1_234)),
        ("payload_sha256", s(&"ab".repeat(32))),
        ("payload_stored", s("inline")),
        ("payload", AttributeValue::B(Blob::new(payload.clone()))),
        ("replay_previous", s("processed")),
        ("replay_token", s("replay-tok")),
        ("replay_run", s("run-1")),
        ("replayed_at", n(T0 + 6_000)),
    ]))
    .await
    .unwrap();
    let new_record = EventRecord {
        deliveries: Vec::new(),
        destination: None,
        next_attempt_at: None,
        event_id: new.clone(),
        source: SourceName::parse("github").unwrap(),
        event_type: "push".into(),
        status: EventStatus::Queued,
        received_at: at(1),
        updated_at: at(6_000),
        expires_at: Timestamp::from_secs(1_767_229_201),
        attempt_count: 2,
        attempts: vec![failed_attempt, ok_attempt],
        last_error: None,
        generation: 1,
        replays: 1,
        history: vec![
            HistoryEntry {
                at: at(6_000),
                kind: "replayed".into(),
                note: "by the test".into(),
            },
            HistoryEntry {
                at: at(7_000),
                kind: "dlq_purged".into(),
                note: "purged".into(),
            },
        ],
        payload: Some(PayloadInfo {
            bytes: 1_234,
            sha256: "ab".repeat(32),
            stored: PayloadStore::Inline,
        }),
    };
    assert_eq!(ledger.get(&new).await.unwrap(), Some(new_record.clone()));
    assert_eq!(
        ledger.inline_payload(&new).await.unwrap().as_deref(),
        Some(payload.as_slice())
    );

    // The listings read the same items through the status index, once `hookgate setup` has
    // given the items of earlier versions their shard.
    hookgate_aws::setup::backfill_status_shards(&dynamodb, &r.table)
        .await
        .unwrap();
    for record in [&old_record, &new_record] {
        let listed = ledger
            .list(&ListQuery {
                status: Some(record.status),
                source: None,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(listed, vec![record.summary()]);
    }
}

/// What the ledger writes, attribute for attribute: an event claimed, queued, failed once with
/// its payload kept inline, processed, replayed and its DLQ copy purged. A change to any
/// attribute's name, type or encoding (milliseconds, TTL seconds, BOOL, B, absent rather than
/// NULL) fails here — and would make the items already in tables unreadable, or these unreadable
/// by the version before.
#[tokio::test]
async fn the_ledger_writes_the_documented_attributes() {
    let endpoint = moto_or_skip!();
    let r = fresh_resources(&endpoint, 3, 30).await;
    let dynamodb = r.dynamodb();
    let ledger = DynamoDbLedger::new(dynamodb.clone(), &r.table);
    let id = new_id();
    let github = SourceName::parse("github").unwrap();

    let claim = Claim {
        event_id: id.clone(),
        source: github.clone(),
        event_type: "push".into(),
        now: at(0),
        // Not on a whole second: the TTL is stored rounded up.
        expires_at: at(3_600_000),
        timeout: Duration::from_secs(30),
        token: "claim-tok".into(),
    };
    assert_eq!(ledger.claim(&claim).await.unwrap(), ClaimOutcome::Claimed);
    // The sharded status index's key, written with every status.
    let shard = |status: &str| {
        s(&hookgate_core::status_index::status_partition(
            EventStatus::parse(status).unwrap(),
            &id,
        ))
    };
    let claimed = [
        ("event_id", s(id.as_str())),
        ("source", s("github")),
        ("event_type", s("push")),
        ("received_at", n(T0)),
        ("expires_at", n(1_767_229_201)),
        ("claim_token", s("claim-tok")),
        ("claimed_at", n(T0)),
    ];
    let mut want = expected(claimed.clone());
    want.extend(expected([
        ("status", s("received")),
        ("status_shard", shard("received")),
        ("updated_at", n(T0)),
        ("attempt_count", n(0)),
    ]));
    assert_eq!(raw_item(&dynamodb, &r.table, &id).await, want);

    let payload = b"\x78\x9c compressed envelope \x00\xff".to_vec();
    let start = |attempt: i64, lease_token: &str| AttemptStart {
        destination: None,
        ticket: None,
        event_id: id.clone(),
        source: github.clone(),
        event_type: "push".into(),
        received_at: at(0),
        expires_at: at(0),
        now: at(attempt * 1_000),
        lease_until: at(attempt * 1_000 + 60_000),
        lease_token: lease_token.into(),
        generation: 0,
        payload: Some(PayloadWrite {
            info: PayloadInfo {
                bytes: 1_234,
                sha256: "ab".repeat(32),
                stored: PayloadStore::Inline,
            },
            inline: Some(payload.clone().into()),
        }),
    };
    ledger.start_attempt(&start(1, "lease-1")).await.unwrap();
    let kept = [
        ("generation", n(0)),
        ("payload_bytes", n(1_234)),
        ("payload_sha256", s(&"ab".repeat(32))),
        ("payload_stored", s("inline")),
        ("payload", AttributeValue::B(Blob::new(payload.clone()))),
    ];
    let mut want = expected(claimed.clone());
    want.extend(expected(kept.clone()));
    want.extend(expected([
        ("status", s("processing")),
        ("status_shard", shard("processing")),
        ("updated_at", n(T0 + 1_000)),
        ("attempt_count", n(1)),
        ("lease_until", n(T0 + 61_000)),
        ("lease_token", s("lease-1")),
    ]));
    assert_eq!(raw_item(&dynamodb, &r.table, &id).await, want);

    let failed = Attempt {
        attempt: 1,
        at: at(1_000),
        duration_ms: 12,
        success: false,
        error: Some("boom".into()),
        note: Some("handed back before the deadline".into()),
        url: Some("https://b.example/hooks".into()),
        status_code: Some(503),
    };
    ledger
        .finish_attempt(&AttemptEnd {
            deliveries: Vec::new(),
            next_attempt_at: None,
            event_id: id.clone(),
            attempt: failed,
            status: EventStatus::Failed,
            now: at(1_012),
        })
        .await
        .unwrap();
    let failed_av = m([
        ("attempt", n(1)),
        ("at", n(T0 + 1_000)),
        ("duration_ms", n(12)),
        ("success", AttributeValue::Bool(false)),
        ("error", s("boom")),
        ("note", s("handed back before the deadline")),
        ("url", s("https://b.example/hooks")),
        ("status_code", n(503)),
    ]);
    let mut want = expected(claimed.clone());
    want.extend(expected(kept.clone()));
    want.extend(expected([
        ("status", s("failed")),
        ("status_shard", shard("failed")),
        ("updated_at", n(T0 + 1_012)),
        ("attempt_count", n(1)),
        ("finished_attempt", n(1)),
        ("attempts", AttributeValue::L(vec![failed_av.clone()])),
        ("last_error", s("boom")),
    ]));
    assert_eq!(raw_item(&dynamodb, &r.table, &id).await, want);

    ledger.start_attempt(&start(2, "lease-2")).await.unwrap();
    let processed = Attempt {
        attempt: 2,
        at: at(2_000),
        duration_ms: 7,
        success: true,
        error: None,
        note: None,
        url: None,
        status_code: None,
    };
    ledger
        .finish_attempt(&AttemptEnd {
            deliveries: Vec::new(),
            next_attempt_at: None,
            event_id: id.clone(),
            attempt: processed,
            status: EventStatus::Processed,
            now: at(2_007),
        })
        .await
        .unwrap();
    // Absent, never NULL: a success writes no `error`, `note`, `url` or `status_code`.
    let processed_av = m([
        ("attempt", n(2)),
        ("at", n(T0 + 2_000)),
        ("duration_ms", n(7)),
        ("success", AttributeValue::Bool(true)),
    ]);
    let attempts = AttributeValue::L(vec![failed_av, processed_av]);

    let replayed = ledger
        .begin_replay(&ReplayStart {
            event_id: id.clone(),
            expected_generation: 0,
            token: "replay-tok".into(),
            run: Some("run-1".into()),
            now: at(6_000),
            stale_before: at(6_000 - 900_000),
            entry: HistoryEntry {
                at: at(6_000),
                kind: "replayed".into(),
                note: "by the test".into(),
            },
        })
        .await
        .unwrap();
    assert!(
        matches!(replayed, ReplayOutcome::Started { generation: 1, .. }),
        "{replayed:?}"
    );
    let purge = HistoryEntry {
        at: at(7_000),
        kind: "dlq_purged".into(),
        note: "purged".into(),
    };
    assert!(ledger.add_history(&id, &purge, "purge-tok").await.unwrap());
    let mut want = expected(claimed);
    want.extend(expected(kept));
    want.extend(expected([
        ("status", s("queued")),
        ("status_shard", shard("queued")),
        ("updated_at", n(T0 + 6_000)),
        ("attempt_count", n(2)),
        ("finished_attempt", n(2)),
        ("attempts", attempts),
        // The replay's generation replaces the starts' 0.
        ("generation", n(1)),
        ("replays", n(1)),
        (
            "history",
            AttributeValue::L(vec![
                m([
                    ("at", n(T0 + 6_000)),
                    ("kind", s("replayed")),
                    ("note", s("by the test")),
                ]),
                m([
                    ("at", n(T0 + 7_000)),
                    ("kind", s("dlq_purged")),
                    ("note", s("purged")),
                ]),
            ]),
        ),
        (
            "history_tokens",
            AttributeValue::Ss(vec!["purge-tok".into()]),
        ),
        ("replay_previous", s("processed")),
        ("replay_token", s("replay-tok")),
        ("replay_run", s("run-1")),
        ("replayed_at", n(T0 + 6_000)),
    ]));
    assert_eq!(raw_item(&dynamodb, &r.table, &id).await, want);
}

#[tokio::test]
async fn missing_resources_are_unavailable() {
    let endpoint = moto_or_skip!();
    let config = moto_sdk_config(&endpoint).await;
    let ledger = DynamoDbLedger::new(aws_sdk_dynamodb::Client::new(&config), "no-such-table");
    let got = ledger.get(&new_id()).await;
    assert!(
        matches!(got, Err(LedgerError::Unavailable(_))),
        "got {got:?}"
    );
    let got = ledger
        .claim(&claim(&new_id(), SystemClock.now(), "t"))
        .await;
    assert!(
        matches!(got, Err(LedgerError::Unavailable(_))),
        "got {got:?}"
    );
    for status in [Some(EventStatus::Failed), None] {
        let got = ledger
            .list(&ListQuery {
                status,
                ..ListQuery::default()
            })
            .await;
        assert!(
            matches!(got, Err(LedgerError::Unavailable(_))),
            "got {got:?}"
        );
    }

    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&config),
        format!("{endpoint}/123456789012/no-such-queue"),
        None,
    );
    let msg = OutgoingMessage {
        delay: None,
        body: "x".into(),
        attributes: BTreeMap::new(),
        trace_header: None,
    };
    let got = queue.send(msg).await;
    assert!(
        matches!(got, Err(QueueError::Unavailable(_))),
        "got {got:?}"
    );
    let got = queue.receive(1, Duration::ZERO).await;
    assert!(
        matches!(got, Err(QueueError::Unavailable(_))),
        "got {got:?}"
    );
}

#[tokio::test]
async fn unreachable_store_is_unavailable() {
    // A port nothing listens on; no moto needed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = moto_sdk_config(&format!("http://127.0.0.1:{port}"))
        .await
        .to_builder()
        .retry_config(RetryConfig::disabled())
        .build();
    let backend = hookgate_aws::AwsBackend::from_parts(
        &config,
        "t",
        "http://127.0.0.1:1/q",
        None,
        Some("hookgate-unreachable".into()),
    );

    let got = backend.ledger.get(&new_id()).await;
    assert!(
        matches!(got, Err(LedgerError::Unavailable(_))),
        "got {got:?}"
    );
    let got = backend
        .ledger
        .claim(&claim(&new_id(), SystemClock.now(), "t"))
        .await;
    assert!(
        matches!(got, Err(LedgerError::Unavailable(_))),
        "got {got:?}"
    );
    let got = backend.ledger.list(&ListQuery::default()).await;
    assert!(
        matches!(got, Err(LedgerError::Unavailable(_))),
        "got {got:?}"
    );

    let got = backend.queue.receive(1, Duration::ZERO).await;
    assert!(
        matches!(got, Err(QueueError::Unavailable(_))),
        "got {got:?}"
    );
    let got = backend.queue.delete("r").await;
    assert!(
        matches!(got, Err(QueueError::Unavailable(_))),
        "got {got:?}"
    );

    let archive = backend.archive.expect("a bucket was given");
    let id = new_id();
    let envelope = hookgate_core::Envelope {
        event_id: id.clone(),
        source: SourceName::parse("github").unwrap(),
        event_type: "push".into(),
        received_at: SystemClock.now(),
        headers: BTreeMap::new(),
        body: bytes::Bytes::from_static(b"{}"),
    };
    let got = archive.put(&envelope).await;
    assert!(
        matches!(got, Err(ArchiveError::Unavailable(_))),
        "got {got:?}"
    );
    let got = archive.get(&id).await;
    assert!(
        matches!(got, Err(ArchiveError::Unavailable(ref m)) if m.contains("dispatch failure")),
        "got {got:?}"
    );
    let got = archive.exists(&id).await;
    assert!(
        matches!(got, Err(ArchiveError::Unavailable(_))),
        "got {got:?}"
    );
    let got = archive.delete(&id).await;
    assert!(
        matches!(got, Err(ArchiveError::Unavailable(_))),
        "got {got:?}"
    );
}

/// Asserts `table` has the sharded status index: keys `status_shard` (S) / `received_at` (N),
/// projecting exactly [`STATUS_SHARD_INDEX_ATTRIBUTES`].
async fn assert_status_index(dynamodb: &aws_sdk_dynamodb::Client, table: &str) {
    let out = dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap();
    let description = out.table().unwrap();
    let index = description
        .global_secondary_indexes()
        .iter()
        .find(|i| i.index_name() == Some(STATUS_SHARD_INDEX))
        .unwrap_or_else(|| panic!("no index {STATUS_SHARD_INDEX} on {table}: {description:?}"));
    let keys: Vec<(&str, &KeyType)> = index
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    assert_eq!(
        keys,
        [
            ("status_shard", &KeyType::Hash),
            ("received_at", &KeyType::Range)
        ]
    );
    let projection = index.projection().unwrap();
    assert_eq!(projection.projection_type(), Some(&ProjectionType::Include));
    let mut projected: Vec<&str> = projection
        .non_key_attributes()
        .iter()
        .map(String::as_str)
        .collect();
    projected.sort_unstable();
    let mut want = STATUS_SHARD_INDEX_ATTRIBUTES.to_vec();
    want.sort_unstable();
    assert_eq!(projected, want);
    let types: BTreeMap<&str, &ScalarAttributeType> = description
        .attribute_definitions()
        .iter()
        .map(|d| (d.attribute_name(), d.attribute_type()))
        .collect();
    assert_eq!(types["status_shard"], &ScalarAttributeType::S);
    assert_eq!(types["received_at"], &ScalarAttributeType::N);
}

#[tokio::test]
async fn setup_creates_the_status_index() {
    let endpoint = moto_or_skip!();
    let r = fresh_resources(&endpoint, 3, 30).await;
    assert_status_index(&r.dynamodb(), &r.table).await;
    // Again: still one index, the same.
    hookgate_aws::create_table(&r.dynamodb(), &r.table)
        .await
        .unwrap();
    assert_status_index(&r.dynamodb(), &r.table).await;
}

#[tokio::test]
async fn setup_adds_the_status_index_to_a_table_made_without_it() {
    let endpoint = moto_or_skip!();
    let config = moto_sdk_config(&endpoint).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let table = format!("hookgate-old-{}", uuid::Uuid::new_v4().simple());
    // The table as an earlier `hookgate setup` made it: the key only.
    dynamodb
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("event_id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("event_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let ledger = DynamoDbLedger::new(dynamodb.clone(), &table);
    let id = new_id();
    ledger
        .claim(&claim(&id, SystemClock.now(), "t"))
        .await
        .unwrap();
    let got = ledger.list(&ListQuery::default()).await;
    assert!(
        matches!(got, Err(LedgerError::Unavailable(_))),
        "no index yet, got {got:?}"
    );

    hookgate_aws::create_table(&dynamodb, &table).await.unwrap();
    assert_status_index(&dynamodb, &table).await;
    // The event from before the index is listed.
    let listed = ledger.list(&ListQuery::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].event_id, id);
    assert_eq!(listed[0].status, EventStatus::Received);
}

#[tokio::test]
async fn listing_pages_through_the_status_index() {
    let endpoint = moto_or_skip!();
    let r = fresh_resources(&endpoint, 3, 30).await;
    let dynamodb = r.dynamodb();
    // Two index entries per page of a filtered listing, at most 20 pages.
    let ledger = DynamoDbLedger::new(dynamodb.clone(), &r.table).with_list_paging(2, 20);
    let (a, b) = (
        SourceName::parse("pages-a").unwrap(),
        SourceName::parse("pages-b").unwrap(),
    );
    let t = Timestamp::from_secs(SystemClock.now().as_secs());
    let mut put = Vec::new();
    // b's one event is the oldest; nine newer ones from a. All in one shard of the status
    // index, so the bounds act on one partition's pages.
    let shard = hookgate_core::status_index::shard_of(&new_id());
    let same_shard = || loop {
        let id = new_id();
        if hookgate_core::status_index::shard_of(&id) == shard {
            return id;
        }
    };
    for (n, source) in std::iter::once(&b).chain([&a; 9]).enumerate() {
        let id = same_shard();
        let now = t.plus(Duration::from_secs(n as u64));
        let mut c = claim(&id, now, "t");
        c.source = source.clone();
        assert_eq!(ledger.claim(&c).await.unwrap(), ClaimOutcome::Claimed);
        put.push(id);
    }
    let query = |source: &SourceName, limit| ListQuery {
        status: Some(EventStatus::Received),
        source: Some(source.clone()),
        limit,
    };
    let ids = |listed: Vec<hookgate_core::ledger::EventSummary>| {
        listed.into_iter().map(|s| s.event_id).collect::<Vec<_>>()
    };
    // Found on the fifth page.
    assert_eq!(
        ids(ledger.list(&query(&b, 5)).await.unwrap()),
        [put[0].clone()]
    );
    // Stops once the limit is met, across a page boundary.
    assert_eq!(
        ids(ledger.list(&query(&a, 3)).await.unwrap()),
        [put[9].clone(), put[8].clone(), put[7].clone()]
    );
    assert_eq!(ledger.list(&query(&a, 100)).await.unwrap().len(), 9);
    // Unfiltered, across statuses.
    let all = ledger
        .list(&ListQuery {
            limit: 4,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(all), put[6..].iter().rev().cloned().collect::<Vec<_>>());

    // The bound on pages (per partition): two pages of two entries never reach b's event, the
    // tenth newest of its shard.
    let bounded = DynamoDbLedger::new(dynamodb, &r.table).with_list_paging(2, 2);
    assert_eq!(bounded.list(&query(&b, 5)).await.unwrap(), []);
    assert_eq!(bounded.list(&query(&a, 5)).await.unwrap().len(), 4);
}

/// `hookgate setup` must make the index the template deploys (and the receiver's policy must
/// name it): compared as text, so a change on either side fails here.
#[test]
fn template_defines_the_status_index_setup_creates() {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"),
    )
    .unwrap();
    let attributes = STATUS_SHARD_INDEX_ATTRIBUTES.join(", ");
    let legacy = STATUS_INDEX_ATTRIBUTES.join(", ");
    for want in [
        format!("- IndexName: {STATUS_SHARD_INDEX}"),
        "- AttributeName: status_shard\n              KeyType: HASH".to_owned(),
        "- AttributeName: received_at\n              KeyType: RANGE".to_owned(),
        "ProjectionType: INCLUDE".to_owned(),
        format!("NonKeyAttributes: [{attributes}]"),
        "- AttributeName: status_shard\n          AttributeType: S".to_owned(),
        "- AttributeName: received_at\n          AttributeType: N".to_owned(),
        format!("- !Sub ${{EventTable.Arn}}/index/{STATUS_SHARD_INDEX}"),
        // The old index, kept while `LegacyStatusIndex` is true (the migration's first deploy).
        format!("IndexName: {STATUS_INDEX}"),
        "- AttributeName: status\n                KeyType: HASH".to_owned(),
        format!("NonKeyAttributes: [{legacy}]"),
        format!("- !Sub ${{EventTable.Arn}}/index/{STATUS_INDEX}"),
    ] {
        assert!(template.contains(&want), "template.yaml lacks {want:?}");
    }
}

#[test]
fn template_defines_the_archive_and_queue_limits_setup_creates() {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"),
    )
    .unwrap();
    // Both queues' maximum message size, set explicitly, as setup sets it.
    let size = format!(
        "MaximumMessageSize: {}",
        hookgate_aws::setup::MAX_MESSAGE_BYTES
    );
    assert_eq!(template.matches(&size).count(), 2, "{size}");
    // The bucket's settings, as create_archive_bucket applies them.
    for want in [
        "SSEAlgorithm: AES256".to_owned(),
        "ObjectOwnership: BucketOwnerEnforced".to_owned(),
        format!("- Id: {}", hookgate_aws::setup::ARCHIVE_LIFECYCLE_RULE),
        "ExpirationInDays: !Ref ArchiveRetentionDays".to_owned(),
        "aws:SecureTransport: \"false\"".to_owned(),
        "HOOKGATE_ARCHIVE_BUCKET: !Ref ArchiveBucket".to_owned(),
        "Path: /events/{id}/payload".to_owned(),
        "Path: /events/{id}/replay".to_owned(),
    ] {
        assert!(template.contains(&want), "template.yaml lacks {want:?}");
    }
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert!(
            template.contains(&format!("{flag}: true")),
            "template.yaml lacks {flag}: true"
        );
    }
    // The functions may touch only the archive's keys: the prefix of `key_for`.
    let key = hookgate_core::archive::key_for(&new_id());
    let prefix = &key[..key.find('/').unwrap() + 1];
    let resource = format!("Resource: !Sub ${{ArchiveBucket.Arn}}/{prefix}*");
    assert_eq!(template.matches(&resource).count(), 2, "{resource}");
}
