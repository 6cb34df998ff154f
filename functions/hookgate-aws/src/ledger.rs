//! `DynamoDbLedger`: the [`Ledger`] port on a DynamoDB table.
//!
//! It exists because the ledger's guarantees (one owner per claim, one live lease per event, no
//! attempt recorded over a later one) must hold across concurrent Lambda invocations, and
//! DynamoDB's conditional writes give exactly that: every decision `MemoryLedger` takes under its
//! mutex is a `ConditionExpression` here, and every "why not" answer comes from the old item the
//! failed condition returns (`ReturnValuesOnConditionCheckFailure::AllOld`), so no decision is
//! taken on a separate, racy read.
//!
//! Item layout (partition key `event_id`, S):
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `event_id`, `source`, `event_type` | S | the event |
//! | `status` | S | [`EventStatus::as_str`] |
//! | `status_shard` | S | `status#shard` ([`status_partition`]): the sharded status index's key, written with every status |
//! | `received_at`, `updated_at` | N | epoch milliseconds |
//! | `expires_at` | N | epoch **seconds** (rounded up): the table's TTL attribute |
//! | `claim_token`, `claimed_at` (ms) | S, N | the receiver's claim |
//! | `lease_until`, `lease_token` | N, S | ms, and the start's token; only while an attempt runs |
//! | `attempt_count` | N | attempts started |
//! | `finished_attempt` | N | the highest attempt whose end is recorded |
//! | `attempts` | L of M | `attempt`, `at` (ms), `duration_ms`, `success` (BOOL), `error`, `note`, `url` (S, optional), `status_code` (N, optional) |
//! | `last_error` | S | only when the last attempt failed |
//! | `generation`, `replays` | N | one more per replay (absent: 0); a message of an older generation is superseded |
//! | `history` | L of M | `at` (ms), `kind`, `note`: replays, their undoing, DLQ purges |
//! | `history_tokens` | SS | the tokens of the entries [`Ledger::add_history`] added, so a retried call adds none twice |
//! | `payload_bytes`, `payload_sha256`, `payload_stored` | N, S, S | the payload, once the processor took the event: `inline` or `archive` |
//! | `payload` | B | the compressed envelope, when `inline` |
//! | `replay_token`, `replay_run`, `replayed_at`, `replay_previous` | S, S, N, S | the last replay |
//! | `retry_ticket`, `retry_ticket_generation` | S, N | the ticket of the re-sent copy of the message that holds the event's retry, and the generation it was handed off in ([`HandOff`]) |
//! | `next_attempt_at` | N | ms: when the next attempt is due, while the event waits for a retry |
//!
//! Optional attributes are absent, never NULL. Tables hold items written by every earlier
//! version, so an attribute is never renamed or re-typed, and one added later reads as its zero
//! when absent. The private `item` submodule is this table's only encoder and decoder (and says
//! why it is written by hand rather than with `serde_dynamo`).
//!
//! **Retried writes.** The SDK sends a write again when its answer is lost (a timeout, a dropped
//! connection), so a condition may fail against the item the first attempt wrote. Each write
//! recognises its own mark in the old item and answers as if just applied: the claim its
//! `claim_token`, a release a missing item, a start
//! its `lease_token`, an attempt's end its number in `finished_attempt` — which the end's own
//! condition also checks, so a retried end never appends its attempt twice.
//!
//! DynamoDB's TTL deletes expired items up to days late (and moto never does), so expiry is part
//! of the claim's condition rather than left to TTL.
//!
//! Listings ([`Ledger::list`], [`Ledger::list_page`]) read the global secondary index
//! `by-status-shard` ([`STATUS_SHARD_INDEX`]: partition key `status_shard`, sort key
//! `received_at`, projecting exactly the attributes of an [`EventSummary`]) with `Query`,
//! every shard of a status at once, merged newest first — never a `Scan` (the private `listing`
//! submodule). A table not migrated yet is listed from the old `by-status` ([`STATUS_INDEX`],
//! keyed by `status`). The template and [`create_table`](crate::setup::create_table) define the
//! same indexes.

mod item;
mod listing;

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use bytes::Bytes;
use hookgate_core::clock::Timestamp;
use hookgate_core::envelope::EventId;
use hookgate_core::ledger::{
    newest_first, AttemptEnd, AttemptStart, Claim, ClaimOutcome, EventRecord, EventStatus,
    EventSummary, HandOff, HistoryEntry, Ledger, LedgerError, ListQuery, Page, PageQuery,
    ReplayOutcome, ReplayStart, ReplayUndo, StartOutcome,
};
use hookgate_core::status_index::status_partition;
use tokio::task::JoinSet;

use item::{
    a, attempt_to_av, b, claim_item, history_to_av, inline_payload, n, opt_n, opt_s,
    record_from_item, req_n, s, status_of, ttl_secs, Item,
};

pub use crate::setup::{STATUS_INDEX, STATUS_SHARD_INDEX};

/// How many index entries one page of a listing filtered by source reads. (DynamoDB's `Limit`
/// counts the entries read, before the filter drops other sources' events.)
pub const FILTERED_PAGE_ITEMS: usize = 200;

/// How many pages a listing reads at most, per index partition (a status has
/// [`STATUS_SHARDS`](hookgate_core::status_index::STATUS_SHARDS) of them, read at once): 2.
/// Without a source filter the first page normally holds all `limit` events; with one, a
/// listing reads at most 2 × [`FILTERED_PAGE_ITEMS`] = 400 entries per shard (12,800 of a
/// status's newest events), so a source whose events are rarer than that among them may be
/// listed short of `limit` (or not at all), with a cursor to go on from. The bound keeps a
/// listing's cost and latency fixed however large the table grows.
pub const MAX_LIST_PAGES: usize = 2;

/// The hookgate ledger on a DynamoDB table keyed by `event_id` (S).
#[derive(Debug, Clone)]
pub struct DynamoDbLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
    page_items: usize,
    max_pages: usize,
}

impl DynamoDbLedger {
    /// A ledger on `table`, through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            page_items: FILTERED_PAGE_ITEMS,
            max_pages: MAX_LIST_PAGES,
        }
    }

    /// The same ledger with other listing bounds: `page_items` entries per page of a filtered
    /// listing (at least 1) and at most `max_pages` pages per index partition (at least 1). For tests of
    /// the paging; the defaults are [`FILTERED_PAGE_ITEMS`] and [`MAX_LIST_PAGES`].
    pub fn with_list_paging(mut self, page_items: usize, max_pages: usize) -> Self {
        self.page_items = page_items.max(1);
        self.max_pages = max_pages.max(1);
        self
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn key(event_id: &EventId) -> Item {
        HashMap::from([(a::EVENT_ID.to_owned(), s(event_id.as_str()))])
    }

    /// Reads an item with a strongly consistent read.
    async fn get_item(&self, event_id: &EventId) -> Result<Option<Item>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(event_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", &e))?;
        Ok(out.item)
    }

    /// The item a failed condition was evaluated against: the one DynamoDB returned, or (should
    /// a store not return it) a fresh consistent read.
    async fn old_item(
        &self,
        event_id: &EventId,
        returned: Option<Item>,
    ) -> Result<Option<Item>, LedgerError> {
        match returned {
            Some(item) => Ok(Some(item)),
            None => self.get_item(event_id).await,
        }
    }
}

#[async_trait]
impl Ledger for DynamoDbLedger {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, LedgerError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(claim_item(claim)))
            .condition_expression(
                "attribute_not_exists(event_id) OR expires_at < :now_secs \
                 OR (#status = :received AND claimed_at < :stale_ms)",
            )
            .expression_attribute_names("#status", a::STATUS)
            .expression_attribute_values(":now_secs", n(ttl_secs(claim.now)))
            .expression_attribute_values(":received", s(EventStatus::Received.as_str()))
            .expression_attribute_values(":stale_ms", n(claim.now.minus(claim.timeout).as_millis()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let returned = match result {
            Ok(_) => return Ok(ClaimOutcome::Claimed),
            Err(err) => match err.into_service_error() {
                PutItemError::ConditionalCheckFailedException(e) => e.item,
                other => return Err(unavailable_service("PutItem", &other)),
            },
        };
        let Some(old) = self.old_item(&claim.event_id, returned).await? else {
            // The holder vanished between the failed write and the read: someone else's claim
            // was released. Not ours yet; the provider's retry will take it.
            return Ok(ClaimOutcome::InProgress);
        };
        Ok(match status_of(&old)? {
            // Our own claim, applied by an attempt whose answer was lost.
            EventStatus::Received if opt_s(&old, a::CLAIM_TOKEN)? == Some(claim.token.as_str()) => {
                ClaimOutcome::Claimed
            }
            EventStatus::Received => ClaimOutcome::InProgress,
            status => ClaimOutcome::Duplicate(status),
        })
    }

    async fn release(&self, event_id: &EventId, token: &str) -> Result<(), LedgerError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(event_id)))
            .condition_expression("#status = :received AND claim_token = :token")
            .expression_attribute_names("#status", a::STATUS)
            .expression_attribute_values(":received", s(EventStatus::Received.as_str()))
            .expression_attribute_values(":token", s(token))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.into_service_error() {
                // No item at all: released by this call's earlier attempt (or never claimed);
                // either way nothing is claimed, which is what a release is for.
                DeleteItemError::ConditionalCheckFailedException(e) if e.item.is_none() => {
                    match self.get_item(event_id).await? {
                        None => Ok(()),
                        Some(_) => Err(not_owned(event_id)),
                    }
                }
                DeleteItemError::ConditionalCheckFailedException(_) => Err(not_owned(event_id)),
                other => Err(unavailable_service("DeleteItem", &other)),
            },
        }
    }

    async fn start_attempt(&self, start: &AttemptStart) -> Result<StartOutcome, LedgerError> {
        let mut update = String::from(
            "SET #status = :processing, status_shard = :shard, \
             lease_until = :lease_until, lease_token = :lease_token, \
             attempt_count = if_not_exists(attempt_count, :zero) + :one, \
             updated_at = :now, generation = :generation, \
             #source = if_not_exists(#source, :source), \
             event_type = if_not_exists(event_type, :event_type), \
             received_at = if_not_exists(received_at, :received_at), \
             expires_at = if_not_exists(expires_at, :expires_at)",
        );
        let mut payload_values: Vec<(&str, AttributeValue)> = Vec::new();
        if let Some(p) = &start.payload {
            update.push_str(
                ", payload_bytes = if_not_exists(payload_bytes, :payload_bytes), \
                 payload_sha256 = if_not_exists(payload_sha256, :payload_sha256), \
                 payload_stored = if_not_exists(payload_stored, :payload_stored)",
            );
            payload_values.push((":payload_bytes", n(p.info.bytes)));
            payload_values.push((":payload_sha256", s(&p.info.sha256)));
            payload_values.push((":payload_stored", s(p.info.stored.as_str())));
            if let Some(inline) = &p.inline {
                update.push_str(", payload = if_not_exists(payload, :payload)");
                payload_values.push((":payload", b(inline)));
            }
        }
        if let Some(destination) = &start.destination {
            update.push_str(", destination = :destination");
            payload_values.push((":destination", s(destination.as_str())));
        }
        update.push_str(" REMOVE next_attempt_at");
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&start.event_id)))
            .update_expression(update)
            .condition_expression(format!(
                "attribute_not_exists(event_id) OR (#status <> :processed AND \
                 (attribute_not_exists(generation) OR generation <= :generation) AND \
                 {TICKET_HELD} AND \
                 (#status <> :processing OR attribute_not_exists(lease_until) \
                 OR lease_until < :now))",
                TICKET_HELD = ticket_held(start.ticket.is_some()),
            ))
            .expression_attribute_names("#status", a::STATUS)
            .expression_attribute_names("#source", a::SOURCE)
            .expression_attribute_values(":processing", s(EventStatus::Processing.as_str()))
            .expression_attribute_values(
                ":shard",
                s(status_partition(EventStatus::Processing, &start.event_id)),
            )
            .expression_attribute_values(":processed", s(EventStatus::Processed.as_str()))
            .expression_attribute_values(":lease_until", n(start.lease_until.as_millis()))
            .expression_attribute_values(":lease_token", s(&start.lease_token))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(start.now.as_millis()))
            .expression_attribute_values(":source", s(start.source.as_str()))
            .expression_attribute_values(":event_type", s(&start.event_type))
            .expression_attribute_values(":received_at", n(start.received_at.as_millis()))
            .expression_attribute_values(":expires_at", n(ttl_secs(start.expires_at)))
            .expression_attribute_values(":generation", n(start.generation))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, value) in payload_values {
            request = request.expression_attribute_values(name, value);
        }
        if let Some(ticket) = &start.ticket {
            request = request.expression_attribute_values(":ticket", s(ticket));
        }
        let result = request.send().await;
        let returned = match result {
            Ok(out) => {
                let new = out.attributes.ok_or_else(|| {
                    LedgerError::Corrupt(format!(
                        "{}: UpdateItem returned no attributes",
                        start.event_id
                    ))
                })?;
                let attempt = req_n::<u32>(&new, a::ATTEMPT_COUNT)?;
                return Ok(StartOutcome::Started { attempt });
            }
            Err(err) => match err.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(e) => e.item,
                other => return Err(unavailable_service("UpdateItem", &other)),
            },
        };
        let old = self.old_item(&start.event_id, returned).await?;
        let Some(old) = old else {
            return Err(LedgerError::Unavailable(format!(
                "{}: attempt refused but the row is gone; try again",
                start.event_id
            )));
        };
        let current = opt_n::<u64>(&old, a::GENERATION)?.unwrap_or(0);
        match status_of(&old)? {
            EventStatus::Processed => Ok(StartOutcome::AlreadyProcessed),
            _ if current > start.generation => Ok(StartOutcome::Superseded { current }),
            _ if !holds_ticket(&old, start.ticket.as_deref(), start.generation)? => {
                Ok(StartOutcome::Stale)
            }
            // Our own lease, taken by an attempt whose answer was lost.
            EventStatus::Processing
                if opt_s(&old, a::LEASE_TOKEN)? == Some(start.lease_token.as_str()) =>
            {
                Ok(StartOutcome::Started {
                    attempt: req_n::<u32>(&old, a::ATTEMPT_COUNT)?,
                })
            }
            EventStatus::Processing => match opt_n::<i64>(&old, a::LEASE_UNTIL)? {
                Some(until) => Ok(StartOutcome::Leased {
                    until: Timestamp::from_millis(until),
                }),
                None => Err(LedgerError::Unavailable(format!(
                    "{}: attempt refused but the row holds no lease; try again",
                    start.event_id
                ))),
            },
            other => Err(LedgerError::Unavailable(format!(
                "{}: attempt refused but the row is {other}; try again",
                start.event_id
            ))),
        }
    }

    async fn finish_attempt(&self, end: &AttemptEnd) -> Result<(), LedgerError> {
        let mut update = String::from(
            "SET #status = :status, status_shard = :shard, updated_at = :now, \
             finished_attempt = :n, \
             attempts = list_append(if_not_exists(attempts, :empty), :attempt)",
        );
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&end.event_id)))
            .condition_expression(
                "attempt_count = :n AND \
                 (attribute_not_exists(finished_attempt) OR finished_attempt < :n)",
            )
            .expression_attribute_names("#status", a::STATUS)
            .expression_attribute_values(":status", s(end.status.as_str()))
            .expression_attribute_values(":shard", s(status_partition(end.status, &end.event_id)))
            .expression_attribute_values(":now", n(end.now.as_millis()))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(
                ":attempt",
                AttributeValue::L(vec![attempt_to_av(&end.attempt)]),
            )
            .expression_attribute_values(":n", n(end.attempt.attempt))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let mut remove = vec!["lease_until", "lease_token"];
        match &end.attempt.error {
            Some(error) => {
                update.push_str(", last_error = :last_error");
                request = request.expression_attribute_values(":last_error", s(error));
            }
            None => remove.push(a::LAST_ERROR),
        }
        if !end.deliveries.is_empty() {
            update.push_str(", deliveries = :deliveries");
            request = request.expression_attribute_values(
                ":deliveries",
                AttributeValue::L(end.deliveries.iter().map(|d| s(d.as_str())).collect()),
            );
        }
        match end.next_attempt_at {
            Some(at) => {
                update.push_str(", next_attempt_at = :next_attempt_at");
                request =
                    request.expression_attribute_values(":next_attempt_at", n(at.as_millis()));
            }
            None => remove.push(a::NEXT_ATTEMPT_AT),
        }
        update.push_str(" REMOVE ");
        update.push_str(&remove.join(", "));
        let result = request.update_expression(update).send().await;
        let returned = match result {
            Ok(_) => return Ok(()),
            Err(err) => match err.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(e) => e.item,
                other => return Err(unavailable_service("UpdateItem", &other)),
            },
        };
        Err(match self.old_item(&end.event_id, returned).await? {
            // Recorded before: this call's earlier attempt was applied (or a kept success is
            // recorded again). Once is enough.
            Some(old) if opt_n::<u32>(&old, a::FINISHED_ATTEMPT)? == Some(end.attempt.attempt) => {
                return Ok(())
            }
            Some(_) => LedgerError::Conflict(format!(
                "{}: a later attempt than {} has started",
                end.event_id, end.attempt.attempt
            )),
            None => LedgerError::Conflict(format!("{} is not in the ledger", end.event_id)),
        })
    }

    async fn hand_off(&self, hand_off: &HandOff) -> Result<(), LedgerError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&hand_off.event_id)))
            .update_expression(
                "SET retry_ticket = :to, retry_ticket_generation = :generation, \
                 next_attempt_at = :due",
            )
            .condition_expression(format!(
                "attribute_exists(event_id) AND #status <> :processed AND \
                 (attribute_not_exists(generation) OR generation <= :generation) AND \
                 {TICKET_HELD}",
                TICKET_HELD = ticket_held(hand_off.from.is_some()),
            ))
            .expression_attribute_names("#status", a::STATUS)
            .expression_attribute_values(":processed", s(EventStatus::Processed.as_str()))
            .expression_attribute_values(":to", s(&hand_off.to))
            .expression_attribute_values(":generation", n(hand_off.generation))
            .expression_attribute_values(":due", n(hand_off.due.as_millis()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(from) = &hand_off.from {
            request = request.expression_attribute_values(":ticket", s(from));
        }
        let returned = match request.send().await {
            Ok(_) => return Ok(()),
            Err(err) => match err.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(e) => e.item,
                other => return Err(unavailable_service("UpdateItem", &other)),
            },
        };
        match self.old_item(&hand_off.event_id, returned).await? {
            // This very hand-off, applied by an attempt whose answer was lost.
            Some(old) if opt_s(&old, a::RETRY_TICKET)? == Some(hand_off.to.as_str()) => Ok(()),
            _ => Err(LedgerError::Conflict(format!(
                "{}: this copy no longer holds the retry",
                hand_off.event_id
            ))),
        }
    }

    async fn get(&self, event_id: &EventId) -> Result<Option<EventRecord>, LedgerError> {
        self.get_item(event_id)
            .await?
            .map(|item| record_from_item(&item))
            .transpose()
    }

    /// One page per status asked for (all six at once without a status), each read from every
    /// shard of the status index at once, merged newest first. Reads the index, so it is
    /// eventually consistent: a change shows within moments.
    async fn list(&self, query: &ListQuery) -> Result<Vec<EventSummary>, LedgerError> {
        let limit = query.effective_limit();
        if limit == 0 {
            return Ok(Vec::new());
        }
        let statuses = match query.status {
            Some(status) => vec![status],
            None => EventStatus::ALL.to_vec(),
        };
        let mut pages = JoinSet::new();
        for status in statuses {
            let ledger = self.clone();
            let page = PageQuery {
                destination: None,
                status,
                source: query.source.clone(),
                event_type: None,
                since: None,
                until: None,
                limit,
                cursor: None,
            };
            pages.spawn(async move { ledger.read_page(&page).await });
        }
        let mut found = Vec::new();
        // On the first error the set is dropped, which cancels the reads still running.
        while let Some(joined) = pages.join_next().await {
            let page = joined
                .map_err(|e| LedgerError::Unavailable(format!("DynamoDB Query task: {e}")))??;
            found.extend(page.events);
        }
        Ok(newest_first(found, limit))
    }

    async fn list_page(&self, query: &PageQuery) -> Result<Page, LedgerError> {
        self.read_page(query).await
    }

    async fn inline_payload(&self, event_id: &EventId) -> Result<Option<Bytes>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(event_id)))
            .projection_expression("payload")
            .send()
            .await
            .map_err(|e| unavailable("GetItem", &e))?;
        match out.item {
            Some(item) => inline_payload(&item),
            None => Ok(None),
        }
    }

    async fn begin_replay(&self, replay: &ReplayStart) -> Result<ReplayOutcome, LedgerError> {
        let mut update = String::from(
            "SET replay_previous = #status, #status = :queued, status_shard = :shard, \
             generation = :next, \
             replays = if_not_exists(replays, :zero) + :one, updated_at = :now, \
             history = list_append(if_not_exists(history, :empty), :entry), \
             replay_token = :token, replayed_at = :now",
        );
        let mut condition = String::from(
            "attribute_exists(event_id) AND \
             (generation = :expected OR (attribute_not_exists(generation) AND :expected = :zero)) AND \
             (#status IN (:processed, :failed, :dead_lettered) OR \
              (#status = :queued AND replayed_at < :stale))",
        );
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&replay.event_id)))
            .expression_attribute_names("#status", a::STATUS)
            .expression_attribute_values(
                ":shard",
                s(status_partition(EventStatus::Queued, &replay.event_id)),
            )
            .expression_attribute_values(":queued", s(EventStatus::Queued.as_str()))
            .expression_attribute_values(":processed", s(EventStatus::Processed.as_str()))
            .expression_attribute_values(":failed", s(EventStatus::Failed.as_str()))
            .expression_attribute_values(":dead_lettered", s(EventStatus::DeadLettered.as_str()))
            .expression_attribute_values(":expected", n(replay.expected_generation))
            .expression_attribute_values(":next", n(replay.expected_generation + 1))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(replay.now.as_millis()))
            .expression_attribute_values(":stale", n(replay.stale_before.as_millis()))
            .expression_attribute_values(":token", s(&replay.token))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(
                ":entry",
                AttributeValue::L(vec![history_to_av(&replay.entry)]),
            )
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match &replay.run {
            Some(run) => {
                update.push_str(", replay_run = :run");
                condition.push_str(" AND (attribute_not_exists(replay_run) OR replay_run <> :run)");
                request = request.expression_attribute_values(":run", s(run));
            }
            None => update.push_str(" REMOVE replay_run, lease_until, lease_token"),
        }
        if replay.run.is_some() {
            update.push_str(" REMOVE lease_until, lease_token");
        }
        let result = request
            .update_expression(update)
            .condition_expression(condition)
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        let returned = match result {
            Ok(out) => {
                // ALL_OLD: the item as it was, its status among it. (UPDATED_OLD would do on
                // DynamoDB, but moto leaves out attributes named through `#placeholders`.)
                let previous = out
                    .attributes
                    .as_ref()
                    .map(status_of)
                    .transpose()?
                    .unwrap_or(EventStatus::Processed);
                return Ok(ReplayOutcome::Started {
                    generation: replay.expected_generation + 1,
                    previous,
                });
            }
            Err(err) => match err.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(e) => e.item,
                other => return Err(unavailable_service("UpdateItem", &other)),
            },
        };
        let Some(old) = self.old_item(&replay.event_id, returned).await? else {
            return Ok(ReplayOutcome::NotFound);
        };
        let status = status_of(&old)?;
        let current = opt_n::<u64>(&old, a::GENERATION)?.unwrap_or(0);
        if opt_s(&old, a::REPLAY_TOKEN)? == Some(replay.token.as_str()) {
            // This replay, applied by an attempt whose answer was lost.
            let previous = opt_s(&old, a::REPLAY_PREVIOUS)?
                .and_then(EventStatus::parse)
                .unwrap_or(EventStatus::Processed);
            return Ok(ReplayOutcome::Started {
                generation: current,
                previous,
            });
        }
        if replay.run.is_some() && opt_s(&old, a::REPLAY_RUN)? == replay.run.as_deref() {
            return Ok(ReplayOutcome::AlreadyInRun);
        }
        let stale_replay = status == EventStatus::Queued
            && opt_n::<i64>(&old, a::REPLAYED_AT)?
                .is_some_and(|at| at < replay.stale_before.as_millis());
        Ok(match status {
            EventStatus::Processed | EventStatus::Failed | EventStatus::DeadLettered => {
                ReplayOutcome::Superseded { current }
            }
            _ if stale_replay => ReplayOutcome::Superseded { current },
            other => ReplayOutcome::InProgress(other),
        })
    }

    async fn undo_replay(&self, undo: &ReplayUndo) -> Result<(), LedgerError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&undo.event_id)))
            .update_expression(
                "SET #status = :restore, status_shard = :shard, generation = :previous, \
                 replays = replays - :one, \
                 updated_at = :now, history = list_append(if_not_exists(history, :empty), :entry) \
                 REMOVE replay_token, replay_run, replayed_at, replay_previous",
            )
            .condition_expression(
                "replay_token = :token AND generation = :generation AND #status = :queued",
            )
            .expression_attribute_names("#status", a::STATUS)
            .expression_attribute_values(":restore", s(undo.restore.as_str()))
            .expression_attribute_values(
                ":shard",
                s(status_partition(undo.restore, &undo.event_id)),
            )
            .expression_attribute_values(":queued", s(EventStatus::Queued.as_str()))
            .expression_attribute_values(":generation", n(undo.generation))
            .expression_attribute_values(":previous", n(undo.generation.saturating_sub(1)))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(undo.now.as_millis()))
            .expression_attribute_values(":token", s(&undo.token))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(
                ":entry",
                AttributeValue::L(vec![history_to_av(&undo.entry)]),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(_) => Err(LedgerError::Conflict(
                    format!("{}: not queued by this replay", undo.event_id),
                )),
                other => Err(unavailable_service("UpdateItem", &other)),
            },
        }
    }

    async fn add_history(
        &self,
        event_id: &EventId,
        entry: &HistoryEntry,
        token: &str,
    ) -> Result<bool, LedgerError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(event_id)))
            .update_expression(
                "SET history = list_append(if_not_exists(history, :empty), :entry) \
                 ADD history_tokens :tokens",
            )
            .condition_expression(
                "attribute_exists(event_id) AND \
                 (attribute_not_exists(history_tokens) OR NOT contains(history_tokens, :token))",
            )
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":entry", AttributeValue::L(vec![history_to_av(entry)]))
            .expression_attribute_values(":tokens", AttributeValue::Ss(vec![token.to_owned()]))
            .expression_attribute_values(":token", s(token))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) => match err.into_service_error() {
                // Either no such event, or this entry is there already (a retried call).
                UpdateItemError::ConditionalCheckFailedException(e) => {
                    Ok(self.old_item(event_id, e.item).await?.is_some())
                }
                other => Err(unavailable_service("UpdateItem", &other)),
            },
        }
    }
}

/// The condition that the message's retry ticket (`:ticket`, when it carries one) is the
/// item's: the same ticket, or — for a message without one — none handed off in its generation
/// (`:generation`) or later.
fn ticket_held(carries_ticket: bool) -> &'static str {
    if carries_ticket {
        "retry_ticket = :ticket"
    } else {
        "(attribute_not_exists(retry_ticket) OR retry_ticket_generation < :generation)"
    }
}

/// [`ticket_held`] read from an old item: whether a message of `generation` carrying `ticket`
/// holds the event's retry.
fn holds_ticket(old: &Item, ticket: Option<&str>, generation: u64) -> Result<bool, LedgerError> {
    let held = opt_s(old, a::RETRY_TICKET)?;
    Ok(match (held, ticket) {
        (None, None) => true,
        (Some(_), None) => opt_n::<u64>(old, a::RETRY_TICKET_GENERATION)?.unwrap_or(0) < generation,
        (Some(held), Some(ticket)) => held == ticket,
        (None, Some(_)) => false,
    })
}

fn not_owned(event_id: &EventId) -> LedgerError {
    LedgerError::Conflict(format!(
        "{event_id} is not a received event claimed by this token"
    ))
}

fn unavailable<E, R>(op: &str, err: &SdkError<E, R>) -> LedgerError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    LedgerError::Unavailable(format!("DynamoDB {op}: {}", DisplayErrorContext(err)))
}

fn unavailable_service<E>(op: &str, err: &E) -> LedgerError
where
    E: std::error::Error,
{
    LedgerError::Unavailable(format!("DynamoDB {op}: {}", DisplayErrorContext(err)))
}
