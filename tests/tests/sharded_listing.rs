//! The write-sharded status index (issue 18): listings read every shard of a status at once and
//! merge them newest first, and paging goes on across shards without skipping or repeating an
//! event (on `MemoryLedger` and on DynamoDB served by moto); `hookgate setup` migrates a table
//! listed by the old unsharded index (moto).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType,
};
use hookgate_aws::setup::{backfill_status_shards, STATUS_INDEX_ATTRIBUTES};
use hookgate_aws::{DynamoDbLedger, STATUS_INDEX, STATUS_SHARD_INDEX};
use hookgate_core::clock::{Clock, SystemClock, Timestamp};
use hookgate_core::envelope::{EventId, SourceName};
use hookgate_core::ledger::{
    Claim, ClaimOutcome, EventStatus, Ledger, ListQuery, PageQuery, MAX_LIST_LIMIT,
};
use hookgate_core::memory::MemoryLedger;
use hookgate_core::status_index::{shard_of, status_partition};
use hookgate_testkit::{fresh_resources, moto_endpoint, moto_sdk_config};

/// An event put in the ledger by a test: its id, source and time.
#[derive(Clone, Debug)]
struct Put {
    id: EventId,
    source: SourceName,
    at: Timestamp,
}

/// Claims and queues `count` events from `sources` in turn, received 1 ms apart from `t` except
/// that every fifth shares the previous one's millisecond (ties are ordered by id).
async fn put_events(
    ledger: &dyn Ledger,
    count: usize,
    sources: &[SourceName],
    t: Timestamp,
) -> Vec<Put> {
    let mut put = Vec::new();
    let mut ms = 0;
    for n in 0..count {
        if n % 5 != 4 {
            ms += 1;
        }
        let id = EventId::parse(&format!("shard:{}", uuid::Uuid::new_v4().simple())).unwrap();
        let source = sources[n % sources.len()].clone();
        let at = t.plus(Duration::from_millis(ms));
        let claim = Claim {
            event_id: id.clone(),
            source: source.clone(),
            event_type: "t".into(),
            now: at,
            expires_at: at.plus(Duration::from_secs(3600)),
            timeout: Duration::from_secs(30),
            token: "tok".into(),
        };
        assert_eq!(ledger.claim(&claim).await.unwrap(), ClaimOutcome::Claimed);
        put.push(Put { id, source, at });
    }
    put
}

/// `put`'s events newest first, as a listing orders them.
fn newest_first(put: &[Put]) -> Vec<EventId> {
    let mut sorted: Vec<&Put> = put.iter().collect();
    sorted.sort_by(|x, y| (y.at, &y.id).cmp(&(x.at, &x.id)));
    sorted.into_iter().map(|p| p.id.clone()).collect()
}

/// Walks every page of `query` (from no cursor), returning the events in order and how many
/// pages it took. Panics on a repeated cursor (no progress).
async fn walk(ledger: &dyn Ledger, mut query: PageQuery) -> (Vec<EventId>, usize) {
    let mut listed = Vec::new();
    let mut seen_cursors = BTreeSet::new();
    for pages in 1..=500 {
        let page = ledger.list_page(&query).await.unwrap();
        assert!(page.events.len() <= query.limit, "{page:?}");
        listed.extend(page.events.into_iter().map(|e| e.event_id));
        match page.next {
            None => return (listed, pages),
            Some(next) => {
                assert!(
                    seen_cursors.insert(next.encode()),
                    "cursor repeated: {next:?}"
                );
                // Through its text, as the HTTP API and the CLI carry it.
                query.cursor = hookgate_core::ledger::Cursor::parse(&next.encode());
            }
        }
    }
    panic!("more than 500 pages");
}

fn query(source: Option<&SourceName>, limit: usize) -> PageQuery {
    PageQuery {
        destination: None,
        status: EventStatus::Received,
        source: source.cloned(),
        event_type: None,
        since: None,
        until: None,
        limit,
        cursor: None,
    }
}

fn unique_source(tag: &str) -> SourceName {
    SourceName::parse(&format!(
        "{tag}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ))
    .unwrap()
}

/// 90 events over most shards, paged 7 at a time: every event once, newest first, across
/// shards; filtered by source and by time, the same.
async fn pages_walk_every_shard_newest_first(ledger: Arc<dyn Ledger>) {
    let (a, b) = (unique_source("pa"), unique_source("pb"));
    let t = Timestamp::from_secs(SystemClock.now().as_secs() + 86_400 * 365);
    let put = put_events(&*ledger, 90, &[a.clone(), b.clone()], t).await;
    let shards: BTreeSet<u32> = put.iter().map(|p| shard_of(&p.id)).collect();
    assert!(
        shards.len() >= 20,
        "the events span {} shards",
        shards.len()
    );

    // Only this test's events: both sources, received at or after t.
    let mut all = query(None, 7);
    all.since = Some(t);
    let (listed, pages) = walk(&*ledger, all).await;
    assert_eq!(listed, newest_first(&put));
    assert!(pages >= 13, "{pages} pages");

    let only_a: Vec<Put> = put.iter().filter(|p| p.source == a).cloned().collect();
    let (listed, _) = walk(&*ledger, query(Some(&a), 4)).await;
    assert_eq!(listed, newest_first(&only_a));

    // A time window: [t + 20 ms, t + 60 ms).
    let mut window = query(Some(&b), 5);
    window.since = Some(t.plus(Duration::from_millis(20)));
    window.until = Some(t.plus(Duration::from_millis(60)));
    let in_window: Vec<Put> = put
        .iter()
        .filter(|p| p.source == b && p.at >= window.since.unwrap() && p.at < window.until.unwrap())
        .cloned()
        .collect();
    assert!(in_window.len() > 10);
    let (listed, _) = walk(&*ledger, window).await;
    assert_eq!(listed, newest_first(&in_window));

    // The non-paged listing merges the shards too.
    let newest = ledger
        .list(&ListQuery {
            status: Some(EventStatus::Received),
            source: Some(b.clone()),
            limit: MAX_LIST_LIMIT,
        })
        .await
        .unwrap();
    let only_b: Vec<Put> = put.iter().filter(|p| p.source == b).cloned().collect();
    assert_eq!(
        newest.into_iter().map(|s| s.event_id).collect::<Vec<_>>(),
        newest_first(&only_b)
    );
}

mod memory {
    #[tokio::test]
    async fn pages_walk_every_shard_newest_first() {
        super::pages_walk_every_shard_newest_first(std::sync::Arc::new(super::MemoryLedger::new()))
            .await;
    }
}

mod moto {
    use super::*;

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

    #[tokio::test]
    async fn pages_walk_every_shard_newest_first() {
        let endpoint = moto_or_skip!();
        let r = fresh_resources(&endpoint, 3, 30).await;
        super::pages_walk_every_shard_newest_first(r.backend().ledger).await;
    }

    /// Filtered listings whose partitions stop early (one page of two entries per shard):
    /// pages come back short or empty with a cursor, and the walk still lists every match
    /// once, in order.
    #[tokio::test]
    async fn bounded_reads_page_on_without_gaps() {
        let endpoint = moto_or_skip!();
        let r = fresh_resources(&endpoint, 3, 30).await;
        let ledger = DynamoDbLedger::new(r.dynamodb(), &r.table).with_list_paging(2, 1);
        let (a, b, c) = (
            unique_source("ba"),
            unique_source("bb"),
            unique_source("bc"),
        );
        let t = Timestamp::from_secs(SystemClock.now().as_secs() + 86_400 * 366);
        let put = put_events(&ledger, 70, &[a.clone(), b.clone(), b.clone(), c], t).await;
        let only_a: Vec<Put> = put.iter().filter(|p| p.source == a).cloned().collect();
        let (listed, pages) = walk(&ledger, query(Some(&a), 3)).await;
        assert_eq!(listed, newest_first(&only_a));
        assert!(pages > only_a.len() / 3, "{pages} pages");
        let mut all = query(None, 10);
        all.since = Some(t);
        let (listed, _) = walk(&ledger, all).await;
        assert_eq!(listed, newest_first(&put));

        // Seven events of one shard in one millisecond, read two entries at a time: the index
        // orders them in no particular way, the listing by id, and paging splits them right.
        let t2 = t.plus(Duration::from_secs(60));
        let shard = shard_of(&put[0].id);
        let mut tied = Vec::new();
        while tied.len() < 7 {
            let id = EventId::parse(&format!("tie:{}", uuid::Uuid::new_v4().simple())).unwrap();
            if shard_of(&id) != shard {
                continue;
            }
            let claim = Claim {
                event_id: id.clone(),
                source: a.clone(),
                event_type: "t".into(),
                now: t2,
                expires_at: t2.plus(Duration::from_secs(3600)),
                timeout: Duration::from_secs(30),
                token: "tok".into(),
            };
            assert_eq!(ledger.claim(&claim).await.unwrap(), ClaimOutcome::Claimed);
            tied.push(Put {
                id,
                source: a.clone(),
                at: t2,
            });
        }
        let mut ties = query(None, 3);
        ties.since = Some(t2);
        let (listed, pages) = walk(&ledger, ties).await;
        assert_eq!(listed, newest_first(&tied));
        assert!(pages >= 3, "{pages}");
    }

    /// A table as the previous release made it — the unsharded `by-status` only, items without
    /// `status_shard` (one with a shard of another count) — is listed from the old index until
    /// `hookgate setup` adds the sharded one beside it and backfills the key; a second setup
    /// changes nothing.
    #[tokio::test]
    async fn setup_migrates_a_table_listed_by_status_alone() {
        let endpoint = moto_or_skip!();
        let config = moto_sdk_config(&endpoint).await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&config);
        let table = format!("hookgate-unsharded-{}", uuid::Uuid::new_v4().simple());
        let attribute = |name: &str, kind| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .unwrap()
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .unwrap()
        };
        dynamodb
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("event_id", KeyType::Hash))
            .attribute_definitions(attribute("event_id", ScalarAttributeType::S))
            .attribute_definitions(attribute("status", ScalarAttributeType::S))
            .attribute_definitions(attribute("received_at", ScalarAttributeType::N))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(STATUS_INDEX)
                    .key_schema(key("status", KeyType::Hash))
                    .key_schema(key("received_at", KeyType::Range))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::Include)
                            .set_non_key_attributes(Some(
                                STATUS_INDEX_ATTRIBUTES.map(str::to_owned).to_vec(),
                            ))
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let ledger = DynamoDbLedger::new(dynamodb.clone(), &table);
        let t = Timestamp::from_secs(SystemClock.now().as_secs());
        let source = unique_source("old");
        let put = put_events(&ledger, 12, std::slice::from_ref(&source), t).await;
        // As the previous release wrote them: no status_shard; one under another shard count.
        for (n, p) in put.iter().enumerate() {
            let update = dynamodb
                .update_item()
                .table_name(&table)
                .key("event_id", AttributeValue::S(p.id.to_string()));
            let update = if n == 0 {
                update
                    .update_expression("SET status_shard = :other")
                    .expression_attribute_values(":other", AttributeValue::S("received#999".into()))
            } else {
                update.update_expression("REMOVE status_shard")
            };
            update.send().await.unwrap();
        }
        let listing = ListQuery {
            status: Some(EventStatus::Received),
            source: None,
            limit: MAX_LIST_LIMIT,
        };
        let ids = |listed: Vec<hookgate_core::ledger::EventSummary>| {
            listed.into_iter().map(|s| s.event_id).collect::<Vec<_>>()
        };
        // No sharded index yet: listed from by-status.
        assert_eq!(
            ids(ledger.list(&listing).await.unwrap()),
            newest_first(&put)
        );

        hookgate_aws::create_table(&dynamodb, &table).await.unwrap();
        let described = dynamodb
            .describe_table()
            .table_name(&table)
            .send()
            .await
            .unwrap();
        let mut indexes: Vec<&str> = described
            .table()
            .unwrap()
            .global_secondary_indexes()
            .iter()
            .filter_map(|i| i.index_name())
            .collect();
        indexes.sort_unstable();
        assert_eq!(
            indexes,
            [STATUS_INDEX, STATUS_SHARD_INDEX],
            "beside the old one"
        );
        for p in &put {
            let item = dynamodb
                .get_item()
                .table_name(&table)
                .key("event_id", AttributeValue::S(p.id.to_string()))
                .send()
                .await
                .unwrap()
                .item
                .unwrap();
            assert_eq!(
                item["status_shard"],
                AttributeValue::S(status_partition(EventStatus::Received, &p.id))
            );
        }
        assert_eq!(
            backfill_status_shards(&dynamodb, &table).await.unwrap(),
            0,
            "idempotent"
        );
        // Listed from the sharded index now: every event, in order, paged.
        assert_eq!(
            ids(ledger.list(&listing).await.unwrap()),
            newest_first(&put)
        );
        let (listed, _) = walk(&ledger, query(Some(&source), 5)).await;
        assert_eq!(listed, newest_first(&put));
    }
}
