//! Listings on the status index: every index partition of a status queried at once, merged
//! newest first, with a cursor that goes on where the merged page ended.
//!
//! It exists because the status index is write-sharded ([`hookgate_core::status_index`]): a
//! status's events are spread over [`STATUS_SHARDS`] partition key values (`failed#0` …
//! `failed#31`), so no one of them takes more than a share of the writes. A listing reads them
//! all — one `Query` per partition, run concurrently, each newest first and bounded — and
//! merges them.
//!
//! **Paging.** The order is total: `received_at` descending, then event id descending. A
//! cursor names the last event listed (`<millis>.<event id>`, the same text as before the
//! index was sharded), and every partition is read from there on: `received_at ≤` the
//! cursor's in the key condition, the entries at or before the cursor skipped. A partition
//! whose read stopped early (its page bound, or enough events) says where; the merged page
//! keeps only events at or before the newest such stop — beyond it some partition has not been
//! read — and the next cursor is the last event kept or that stop. So no event is skipped or
//! listed twice, whichever partitions hold them.
//!
//! **Migration.** A table made before the sharded index has only `by-status` (key `status`).
//! While the sharded index is missing or still being built, listings read the old index
//! instead (one partition per status, the same merge); once `hookgate setup` has added it and
//! backfilled `status_shard` on the existing items, they read the new one (see
//! `docs/operations.md`).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use hookgate_core::clock::Timestamp;
use hookgate_core::envelope::EventId;
use hookgate_core::ledger::{
    page_matches, Cursor, EventStatus, EventSummary, LedgerError, Page, PageQuery, MAX_LIST_LIMIT,
};
use hookgate_core::status_index::{status_partitions, STATUS_SHARDS};
use tokio::task::JoinSet;

use super::item::{a, corrupt, n, req_n, req_s, s, summary_from_item};
use super::DynamoDbLedger;
use crate::setup::{STATUS_INDEX, STATUS_SHARD_INDEX};

/// Which status index a listing reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Index {
    /// [`STATUS_SHARD_INDEX`], keyed by `status_shard`.
    Sharded,
    /// [`STATUS_INDEX`], keyed by `status`: tables not migrated yet.
    Legacy,
}

impl Index {
    fn name(self) -> &'static str {
        match self {
            Index::Sharded => STATUS_SHARD_INDEX,
            Index::Legacy => STATUS_INDEX,
        }
    }

    fn key_attribute(self) -> &'static str {
        match self {
            Index::Sharded => a::STATUS_SHARD,
            Index::Legacy => a::STATUS,
        }
    }

    /// The partition key values holding `status`'s events.
    fn partitions(self, status: EventStatus) -> Vec<String> {
        match self {
            Index::Sharded => status_partitions(status).collect(),
            Index::Legacy => vec![status.as_str().to_owned()],
        }
    }
}

/// Why a partition could not be read.
enum ReadError {
    /// The index does not exist (yet) or is still being built: read the other one.
    NoIndex(String),
    /// Anything else.
    Ledger(LedgerError),
}

impl From<LedgerError> for ReadError {
    fn from(e: LedgerError) -> Self {
        ReadError::Ledger(e)
    }
}

/// What one partition gave: the matching events newest first, and where reading stopped when
/// older entries may remain unread.
struct PartitionRead {
    found: Vec<EventSummary>,
    stopped: Option<Cursor>,
}

/// An event's place in the listing order (greater is newer).
fn order(received_at: Timestamp, event_id: &EventId) -> (Timestamp, &EventId) {
    (received_at, event_id)
}

impl DynamoDbLedger {
    /// One page of `query`: from the sharded index, or from the old one while the table has no
    /// usable sharded index.
    pub(super) async fn read_page(&self, query: &PageQuery) -> Result<Page, LedgerError> {
        match self.read_page_on(Index::Sharded, query).await {
            Ok(page) => Ok(page),
            Err(ReadError::NoIndex(why)) => {
                tracing::warn!(
                    table = %self.table,
                    reason = %why,
                    "the sharded status index cannot be read yet; listing from {STATUS_INDEX} (run `hookgate setup` to migrate)"
                );
                match self.read_page_on(Index::Legacy, query).await {
                    Ok(page) => Ok(page),
                    Err(ReadError::NoIndex(why))
                    | Err(ReadError::Ledger(LedgerError::Unavailable(why))) => {
                        Err(LedgerError::Unavailable(format!(
                            "DynamoDB Query: the table has no status index to list from: {why}"
                        )))
                    }
                    Err(ReadError::Ledger(e)) => Err(e),
                }
            }
            Err(ReadError::Ledger(e)) => Err(e),
        }
    }

    /// Reads every partition of `query.status` on `index` concurrently and merges them.
    async fn read_page_on(&self, index: Index, query: &PageQuery) -> Result<Page, ReadError> {
        let limit = query.limit.clamp(1, MAX_LIST_LIMIT);
        let partitions = index.partitions(query.status);
        // The bound on pages read holds per partition; the old index, one partition per
        // status, gets the same total.
        let max_pages = match index {
            Index::Sharded => self.max_pages,
            Index::Legacy => self.max_pages * STATUS_SHARDS as usize,
        };
        let mut reads = JoinSet::new();
        for partition in partitions {
            let ledger = self.clone();
            let query = query.clone();
            reads.spawn(async move {
                ledger
                    .read_partition(index, &partition, &query, limit, max_pages)
                    .await
            });
        }
        let mut done = Vec::new();
        // On the first error the set is dropped, which cancels the reads still running.
        while let Some(joined) = reads.join_next().await {
            let read = joined
                .map_err(|e| LedgerError::Unavailable(format!("DynamoDB Query task: {e}")))??;
            done.push(read);
        }
        Ok(merge(done, limit))
    }

    /// Reads one partition newest first from `query.cursor` on, until `want` events match, the
    /// partition has no more, or `max_pages` pages past the cursor were read — and never stops
    /// inside a millisecond: the entries of the last one read are all read too (the index
    /// orders entries of one `received_at` in no particular order), so the read is complete
    /// for every time at or after where it stopped.
    async fn read_partition(
        &self,
        index: Index,
        partition: &str,
        query: &PageQuery,
        want: usize,
        max_pages: usize,
    ) -> Result<PartitionRead, ReadError> {
        let filtered =
            query.source.is_some() || query.event_type.is_some() || query.destination.is_some();
        // The newest `received_at` to read: before `until`, and not after the cursor's.
        let until = query.until.map(|t| t.as_millis() - 1);
        let cursor = query.cursor.as_ref().map(|c| c.received_at.as_millis());
        let upper = match (until, cursor) {
            (Some(u), Some(c)) => Some(u.min(c)),
            (u, c) => u.or(c),
        };
        let since = query.since.map(Timestamp::as_millis);
        let mut read = PartitionRead {
            found: Vec::new(),
            stopped: None,
        };
        if let (Some(since), Some(upper)) = (since, upper) {
            if since > upper {
                return Ok(read);
            }
        }
        let range = Range { since, upper };
        let mut start = None;
        let mut pages = 0;
        let last = loop {
            // Unfiltered, every entry read is listed: read no more than are still wanted.
            let page = if filtered {
                self.page_items
            } else {
                want.saturating_sub(read.found.len()).max(1)
            };
            let (items, last) = self
                .query_once(index, partition, query, range, page, start.take())
                .await?;
            self.keep(query, &items, &mut read.found)?;
            let Some(last) = last else {
                return Ok(read);
            };
            // A page of entries at the cursor's own millisecond only (listed before) does not
            // count against the bound, so a read always gets past the cursor.
            let at = req_n::<i64>(&last, a::RECEIVED_AT)?;
            if cursor.is_none_or(|c| at < c) {
                pages += 1;
            }
            if read.found.len() >= want || pages >= max_pages {
                break last;
            }
            start = Some(last);
        };
        // Stopped: read the rest of the last millisecond, so the read is whole down to it.
        let stopped = position(&last)?;
        let millisecond = stopped.received_at.as_millis();
        let same = Range {
            since: Some(millisecond),
            upper: Some(millisecond),
        };
        let mut start = Some(last);
        while let Some(from) = start.take() {
            let (items, last) = self
                .query_once(index, partition, query, same, self.page_items, Some(from))
                .await?;
            self.keep(query, &items, &mut read.found)?;
            start = last;
        }
        read.stopped = Some(stopped);
        Ok(read)
    }

    /// Adds the entries of `items` past the cursor that pass `query`'s filters to `found`.
    fn keep(
        &self,
        query: &PageQuery,
        items: &[HashMap<String, AttributeValue>],
        found: &mut Vec<EventSummary>,
    ) -> Result<(), LedgerError> {
        for item in items {
            let summary = summary_from_item(item)?;
            let after_cursor = query.cursor.as_ref().is_none_or(|c| {
                order(summary.received_at, &summary.event_id) < order(c.received_at, &c.event_id)
            });
            if after_cursor && page_matches(query, &summary) {
                found.push(summary);
            }
        }
        Ok(())
    }

    /// One `Query` of `partition` newest first within `range`, at most `limit` entries read,
    /// from `start`: the entries and the `LastEvaluatedKey`, if more may follow.
    async fn query_once(
        &self,
        index: Index,
        partition: &str,
        query: &PageQuery,
        range: Range,
        limit: usize,
        start: Option<HashMap<String, AttributeValue>>,
    ) -> Result<Page0, ReadError> {
        let mut key = String::from("#pk = :pk");
        match (range.since, range.upper) {
            (Some(_), Some(_)) => key.push_str(" AND received_at BETWEEN :since AND :upper"),
            (Some(_), None) => key.push_str(" AND received_at >= :since"),
            (None, Some(_)) => key.push_str(" AND received_at <= :upper"),
            (None, None) => {}
        }
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index.name())
            .key_condition_expression(key)
            .projection_expression(
                "event_id, #source, event_type, #status, received_at, updated_at, \
                 attempt_count, last_error",
            )
            .expression_attribute_names("#pk", index.key_attribute())
            .expression_attribute_names("#status", a::STATUS)
            .expression_attribute_names("#source", a::SOURCE)
            .expression_attribute_values(":pk", s(partition))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start);
        if let Some(since) = range.since {
            request = request.expression_attribute_values(":since", n(since));
        }
        if let Some(upper) = range.upper {
            request = request.expression_attribute_values(":upper", n(upper));
        }
        let mut filter = Vec::new();
        if let Some(source) = &query.source {
            filter.push("#source = :source");
            request = request.expression_attribute_values(":source", s(source.as_str()));
        }
        if let Some(event_type) = &query.event_type {
            filter.push("event_type = :event_type");
            request = request.expression_attribute_values(":event_type", s(event_type));
        }
        if let Some(destination) = &query.destination {
            // A delivery's id ends `@<destination>`; the exact match is checked on each entry
            // read (`page_matches`), this only keeps the others off the wire.
            filter.push("contains(event_id, :at_destination)");
            request = request
                .expression_attribute_values(":at_destination", s(format!("@{destination}")));
        }
        if !filter.is_empty() {
            request = request.filter_expression(filter.join(" AND "));
        }
        match request.send().await {
            Ok(out) => {
                let last = out.last_evaluated_key.filter(|k| !k.is_empty());
                Ok((out.items.unwrap_or_default(), last))
            }
            Err(e) => {
                // DynamoDB: `ValidationException` ("The table does not have the specified
                // index", "Cannot read from backfilling global secondary index"); moto:
                // `ResourceNotFoundException` ("Invalid index").
                let missing = e.as_service_error().is_some_and(|e| {
                    let message = e.message().unwrap_or_default();
                    match e.code() {
                        Some("ValidationException") => {
                            message.contains("specified index") || message.contains("backfilling")
                        }
                        Some("ResourceNotFoundException") => message.contains("index"),
                        _ => false,
                    }
                });
                let text = super::unavailable("Query", &e);
                Err(if missing {
                    ReadError::NoIndex(text.to_string())
                } else {
                    ReadError::Ledger(text)
                })
            }
        }
    }
}

/// The `received_at` range a `Query` reads (epoch ms, both ends included).
#[derive(Debug, Clone, Copy)]
struct Range {
    since: Option<i64>,
    upper: Option<i64>,
}

/// What one `Query` returned: its entries and its `LastEvaluatedKey`.
type Page0 = (
    Vec<HashMap<String, AttributeValue>>,
    Option<HashMap<String, AttributeValue>>,
);

/// Where a `Query` stopped: its `LastEvaluatedKey` as a cursor.
fn position(key: &HashMap<String, AttributeValue>) -> Result<Cursor, LedgerError> {
    Ok(Cursor {
        received_at: Timestamp::from_millis(req_n(key, a::RECEIVED_AT)?),
        event_id: EventId::parse(req_s(key, a::EVENT_ID)?)
            .map_err(|e| corrupt(a::EVENT_ID, &e.to_string()))?,
    })
}

/// The page the partitions' reads make together: newest first, only down to the newest
/// millisecond at which a partition stopped (older ones are not read everywhere), at most
/// `limit` events, and the cursor to go on from.
fn merge(reads: Vec<PartitionRead>, limit: usize) -> Page {
    let frontier = reads
        .iter()
        .filter_map(|r| r.stopped.as_ref())
        .max_by_key(|stop| stop.received_at)
        .cloned();
    let mut events: Vec<EventSummary> = reads.into_iter().flat_map(|r| r.found).collect();
    events
        .sort_by(|x, y| order(y.received_at, &y.event_id).cmp(&order(x.received_at, &x.event_id)));
    if let Some(f) = &frontier {
        // Every partition was read whole down to `f`'s millisecond.
        events.retain(|e| e.received_at >= f.received_at);
    }
    let last = |events: &[EventSummary]| {
        events.last().map(|last| Cursor {
            received_at: last.received_at,
            event_id: last.event_id.clone(),
        })
    };
    let next = if events.len() > limit {
        events.truncate(limit);
        last(&events)
    } else {
        // All there is down to the frontier is listed: go on past it (past its millisecond,
        // or — with nothing listed — from the entry the read stopped at, whose millisecond's
        // other entries did not match).
        frontier.map(|f| last(&events).unwrap_or(f))
    };
    Page { events, next }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookgate_core::envelope::SourceName;

    fn summary(id: &str, ms: i64) -> EventSummary {
        EventSummary {
            destination: None,
            event_id: EventId::parse(id).unwrap(),
            source: SourceName::parse("demo").unwrap(),
            event_type: "t".into(),
            status: EventStatus::Queued,
            received_at: Timestamp::from_millis(ms),
            updated_at: Timestamp::from_millis(ms),
            attempt_count: 0,
            last_error: None,
        }
    }

    fn at(id: &str, ms: i64) -> Cursor {
        Cursor {
            received_at: Timestamp::from_millis(ms),
            event_id: EventId::parse(id).unwrap(),
        }
    }

    fn ids(page: &Page) -> Vec<&str> {
        page.events.iter().map(|e| e.event_id.as_str()).collect()
    }

    #[test]
    fn partitions_read_to_the_end_merge_whole() {
        let page = merge(
            vec![
                PartitionRead {
                    found: vec![summary("d:a", 9), summary("d:b", 3)],
                    stopped: None,
                },
                PartitionRead {
                    found: vec![summary("d:c", 5)],
                    stopped: None,
                },
            ],
            10,
        );
        assert_eq!(ids(&page), ["d:a", "d:c", "d:b"]);
        assert_eq!(page.next, None);
    }

    #[test]
    fn a_partition_that_stopped_early_bounds_the_page() {
        // Partition 1 stopped at 6: older events there are unread, so nothing older than 6 is
        // listed yet, and the cursor goes on from 6.
        let page = merge(
            vec![
                PartitionRead {
                    found: vec![summary("d:a", 9), summary("d:b", 6)],
                    stopped: Some(at("d:b", 6)),
                },
                PartitionRead {
                    found: vec![summary("d:c", 7), summary("d:e", 2)],
                    stopped: None,
                },
            ],
            10,
        );
        assert_eq!(ids(&page), ["d:a", "d:c", "d:b"]);
        assert_eq!(page.next, Some(at("d:b", 6)));
    }

    #[test]
    fn a_full_page_ends_at_its_last_event() {
        let page = merge(
            vec![
                PartitionRead {
                    found: vec![summary("d:a", 9), summary("d:b", 8)],
                    stopped: Some(at("d:b", 8)),
                },
                PartitionRead {
                    found: vec![summary("d:c", 9), summary("d:e", 8)],
                    stopped: Some(at("d:e", 8)),
                },
            ],
            2,
        );
        // Ties on time go by id, descending.
        assert_eq!(ids(&page), ["d:c", "d:a"]);
        assert_eq!(page.next, Some(at("d:a", 9)));
        // A filtered read that found nothing but stopped: an empty page that goes on.
        let page = merge(
            vec![PartitionRead {
                found: Vec::new(),
                stopped: Some(at("d:z", 4)),
            }],
            2,
        );
        assert!(page.events.is_empty());
        assert_eq!(page.next, Some(at("d:z", 4)));
    }
}
