//! `DynamoDbGate`: the [`DestinationGate`] port on the ledger's DynamoDB table.
//!
//! It exists because a destination's rate limit and circuit must hold across every concurrent
//! processor invocation, and the ledger table is already there, already in every function's
//! IAM policy: each decision is one conditional `UpdateItem` (a failure that changes the
//! circuit may take a `PutItem` more), so no decision is taken on a separate, racy read.
//!
//! Items (partition key `event_id`, S, as the ledger's — never an event id, which cannot hold
//! `#`):
//!
//! | key | attributes |
//! |---|---|
//! | `rate#<name>#<window start ms>` | `destination` S, `sends` N, `expires_at` N (epoch seconds, the table's TTL: the window's end + [`RATE_ITEM_GRACE`]) |
//! | `destination#<name>` | `destination` S, `circuit` S (`closed`, `open`, `half_open`, `disabled`), `failures` N, `last_failure` S, `open_until` N (ms, while open), `probe_until` N (ms, while half-open), `disabled_at` N (ms) and `disabled_reason` S (while disabled), `updated_at` N (ms), `version` N |
//!
//! **Not events.** Neither item has `status` or `status_shard`, so neither is in the status
//! indexes listings query (a GSI holds only items with its key attribute), nor touched by
//! `hookgate setup`'s backfill of `status_shard` (it skips items without `status`); and
//! `GET /events/{id}` cannot name them (an event id has no `#`). The table, its TTL and the
//! processor's IAM (`GetItem`, `PutItem`, `UpdateItem`) need nothing new.
//!
//! **Rate windows.** A take is `ADD sends :one` under `attribute_not_exists(sends) OR sends <
//! :limit`: DynamoDB serialises writes to one item, so however many processors take at once, no
//! window admits more than its limit; a failed condition is the answer `WaitUntil(window end)`.
//! Expiry needs no condition: the window's start is in the key, so a later window is another
//! item, whether or not TTL (late by up to days on AWS, never on moto) has deleted the old one.
//! One window is one item, so one partition: DynamoDB takes about 1,000 writes a second per
//! partition, refused takes included — a limit near that (or many deliveries waiting on a full
//! window) would be throttled; `CachedGate` answers a window it knows is full without a write.
//!
//! **Health.** A success, a probe, disabling and enabling are each one conditional update that
//! writes the state [`DestinationHealth`]'s transitions describe. A failure is first tried as an
//! `ADD failures :one` under "closed and below the threshold after it" (the common case, one
//! request); otherwise — the threshold, a failed probe, an open or disabled circuit — the next
//! state is computed by [`DestinationHealth::after_failure`] from the item the failed condition
//! returned and put under `version = :read` (optimistic concurrency, a few rounds at most).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use hookgate_core::clock::Timestamp;
use hookgate_core::destination_gate::{
    rate_window, BreakerOptions, Circuit, DestinationGate, DestinationHealth, DestinationName,
    GateError, RateDecision, RateLimit,
};
use tokio::task::JoinSet;

use crate::error_text::one_line;
use crate::setup::{KEY_ATTRIBUTE, TTL_ATTRIBUTE};

/// How long a rate window's item outlives the window before TTL may delete it.
pub const RATE_ITEM_GRACE: Duration = Duration::from_secs(60);

/// How many times a failure is re-computed against a newer item before giving up (each round
/// means another writer changed the destination in between).
const FAILURE_ROUNDS: usize = 8;

/// How many health items [`DestinationGate::list`] reads at once.
const LIST_CONCURRENCY: usize = 16;

type Item = HashMap<String, AttributeValue>;

/// Attribute names.
mod a {
    pub const DESTINATION: &str = "destination";
    pub const SENDS: &str = "sends";
    pub const CIRCUIT: &str = "circuit";
    pub const FAILURES: &str = "failures";
    pub const LAST_FAILURE: &str = "last_failure";
    pub const OPEN_UNTIL: &str = "open_until";
    pub const PROBE_UNTIL: &str = "probe_until";
    pub const DISABLED_AT: &str = "disabled_at";
    pub const DISABLED_REASON: &str = "disabled_reason";
    pub const UPDATED_AT: &str = "updated_at";
    pub const VERSION: &str = "version";
}

/// The destination gate on a DynamoDB table (the ledger's).
#[derive(Debug, Clone)]
pub struct DynamoDbGate {
    client: Client,
    table: String,
}

impl DynamoDbGate {
    /// A gate on `table`, through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The key of `d`'s health item.
    pub fn health_key(d: &DestinationName) -> String {
        format!("destination#{d}")
    }

    /// The key of `d`'s rate item for the window starting at `start`.
    pub fn rate_key(d: &DestinationName, start: Timestamp) -> String {
        format!("rate#{d}#{}", start.as_millis())
    }

    fn key(key: String) -> Item {
        HashMap::from([(KEY_ATTRIBUTE.to_owned(), s(key))])
    }

    async fn get_health_item(&self, d: &DestinationName) -> Result<Option<Item>, GateError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(Self::health_key(d))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", &e))?;
        Ok(out.item)
    }

    /// An update of `d`'s health item: `SET` the destination's name and `set`, `REMOVE`
    /// `remove` (if any), and `ADD` one to the version and to each of `add`.
    fn health_update(
        &self,
        d: &DestinationName,
        set: &str,
        remove: &str,
        add: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        let remove = if remove.is_empty() {
            String::new()
        } else {
            format!(" REMOVE {remove}")
        };
        let add = if add.is_empty() {
            String::new()
        } else {
            format!(", {add} :one")
        };
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(Self::health_key(d))))
            .update_expression(format!(
                "SET #destination = :name, {set}{remove} ADD #version :one{add}"
            ))
            .expression_attribute_names("#destination", a::DESTINATION)
            .expression_attribute_names("#version", a::VERSION)
            .expression_attribute_values(":name", s(d.as_str()))
            .expression_attribute_values(":one", n(1))
    }

    /// The failure's common case in one request: closed, and still below the threshold after it.
    /// `Err` when the condition failed, with the item it failed against (if DynamoDB returned
    /// it).
    async fn failure_below_threshold(
        &self,
        d: &DestinationName,
        reason: &str,
        breaker: BreakerOptions,
        now: Timestamp,
    ) -> Result<Result<(), Option<Item>>, GateError> {
        let result = self
            .health_update(
                d,
                "#circuit = if_not_exists(#circuit, :closed), #last_failure = :reason, \
                 #updated_at = :now",
                "",
                "#failures",
            )
            .condition_expression(
                "(attribute_not_exists(#circuit) OR #circuit = :closed) \
                 AND (attribute_not_exists(#failures) OR #failures < :below)",
            )
            .expression_attribute_names("#circuit", a::CIRCUIT)
            .expression_attribute_names("#last_failure", a::LAST_FAILURE)
            .expression_attribute_names("#updated_at", a::UPDATED_AT)
            .expression_attribute_names("#failures", a::FAILURES)
            .expression_attribute_values(":closed", s(Circuit::Closed.as_str()))
            .expression_attribute_values(
                ":reason",
                s(hookgate_core::destination_gate::clip_reason(reason)),
            )
            .expression_attribute_values(":now", n(now.as_millis()))
            // Failures after this one stay below the threshold: stored count < threshold − 1.
            .expression_attribute_values(":below", n(breaker.failures.max(1) - 1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(err) => match err.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(e) => Ok(Err(e.item)),
                other => Err(unavailable_service("UpdateItem", &other)),
            },
        }
    }

    /// Puts `next` over the item `old` (absent: none) if no one changed it since. `Err` holds
    /// the item the condition failed against, when DynamoDB returned it.
    async fn put_over(
        &self,
        next: &DestinationHealth,
        old: Option<&Item>,
    ) -> Result<Result<(), Option<Item>>, GateError> {
        let version = match old {
            Some(item) => opt_n::<u64>(item, a::VERSION)?,
            None => None,
        };
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(health_item(next, version.unwrap_or(0) + 1)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        put = match (old, version) {
            (None, _) => put
                .condition_expression("attribute_not_exists(#key)")
                .expression_attribute_names("#key", KEY_ATTRIBUTE),
            (Some(_), Some(v)) => put
                .condition_expression("#version = :read")
                .expression_attribute_names("#version", a::VERSION)
                .expression_attribute_values(":read", n(v)),
            (Some(_), None) => put
                .condition_expression("attribute_exists(#key) AND attribute_not_exists(#version)")
                .expression_attribute_names("#key", KEY_ATTRIBUTE)
                .expression_attribute_names("#version", a::VERSION),
        };
        match put.send().await {
            Ok(_) => Ok(Ok(())),
            Err(err) => match err.into_service_error() {
                PutItemError::ConditionalCheckFailedException(e) => Ok(Err(e.item)),
                other => Err(unavailable_service("PutItem", &other)),
            },
        }
    }
}

#[async_trait]
impl DestinationGate for DynamoDbGate {
    async fn take_rate(
        &self,
        d: &DestinationName,
        limit: RateLimit,
        now: Timestamp,
    ) -> Result<RateDecision, GateError> {
        let (start, end) = rate_window(limit, now);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(Self::rate_key(d, start))))
            .update_expression("SET #destination = :name, #ttl = :ttl ADD #sends :one")
            .condition_expression("attribute_not_exists(#sends) OR #sends < :limit")
            .expression_attribute_names("#destination", a::DESTINATION)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_names("#sends", a::SENDS)
            .expression_attribute_values(":name", s(d.as_str()))
            .expression_attribute_values(":ttl", n(end.plus(RATE_ITEM_GRACE).ceil_secs().as_secs()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(limit.count))
            .send()
            .await;
        match result {
            Ok(_) => Ok(RateDecision::Admit),
            Err(err) => match err.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(_) => {
                    Ok(RateDecision::WaitUntil(end))
                }
                other => Err(unavailable_service("UpdateItem", &other)),
            },
        }
    }

    async fn health(&self, d: &DestinationName) -> Result<DestinationHealth, GateError> {
        match self.get_health_item(d).await? {
            Some(item) => health_from_item(d, &item),
            None => Ok(DestinationHealth::new(d.clone())),
        }
    }

    async fn take_probe(
        &self,
        d: &DestinationName,
        now: Timestamp,
        lease: Duration,
    ) -> Result<bool, GateError> {
        let result = self
            .health_update(
                d,
                "#circuit = :half_open, #probe_until = :lease_end, #updated_at = :now",
                "#open_until",
                "",
            )
            .condition_expression(
                "(#circuit = :open AND #open_until <= :now) OR (#circuit = :half_open \
                 AND (attribute_not_exists(#probe_until) OR #probe_until <= :now))",
            )
            .expression_attribute_names("#circuit", a::CIRCUIT)
            .expression_attribute_names("#probe_until", a::PROBE_UNTIL)
            .expression_attribute_names("#open_until", a::OPEN_UNTIL)
            .expression_attribute_names("#updated_at", a::UPDATED_AT)
            .expression_attribute_values(":half_open", s(Circuit::HalfOpen.as_str()))
            .expression_attribute_values(":open", s("open"))
            .expression_attribute_values(":lease_end", n(now.plus(lease).as_millis()))
            .expression_attribute_values(":now", n(now.as_millis()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) => match err.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(_) => Ok(false),
                other => Err(unavailable_service("UpdateItem", &other)),
            },
        }
    }

    async fn record_success(&self, d: &DestinationName, now: Timestamp) -> Result<(), GateError> {
        let result = self
            .health_update(
                d,
                "#circuit = :closed, #failures = :zero, #updated_at = :now",
                "#open_until, #probe_until",
                "",
            )
            .condition_expression("attribute_not_exists(#circuit) OR #circuit <> :disabled")
            .expression_attribute_names("#circuit", a::CIRCUIT)
            .expression_attribute_names("#failures", a::FAILURES)
            .expression_attribute_names("#updated_at", a::UPDATED_AT)
            .expression_attribute_names("#open_until", a::OPEN_UNTIL)
            .expression_attribute_names("#probe_until", a::PROBE_UNTIL)
            .expression_attribute_values(":closed", s(Circuit::Closed.as_str()))
            .expression_attribute_values(":disabled", s("disabled"))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", n(now.as_millis()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.into_service_error() {
                // Disabled: a success changes nothing until an operator enables it.
                UpdateItemError::ConditionalCheckFailedException(_) => Ok(()),
                other => Err(unavailable_service("UpdateItem", &other)),
            },
        }
    }

    async fn record_failure(
        &self,
        d: &DestinationName,
        reason: &str,
        breaker: BreakerOptions,
        now: Timestamp,
    ) -> Result<Circuit, GateError> {
        // A threshold of 1 opens on the first failure: never the "below" case.
        let mut old = if breaker.failures > 1 {
            match self
                .failure_below_threshold(d, reason, breaker, now)
                .await?
            {
                Ok(()) => return Ok(Circuit::Closed),
                Err(Some(item)) => Some(item),
                Err(None) => self.get_health_item(d).await?,
            }
        } else {
            self.get_health_item(d).await?
        };
        for _ in 0..FAILURE_ROUNDS {
            let current = match &old {
                Some(item) => health_from_item(d, item)?,
                None => DestinationHealth::new(d.clone()),
            };
            let next = current.after_failure(reason, breaker, now);
            match self.put_over(&next, old.as_ref()).await? {
                Ok(()) => return Ok(next.circuit),
                Err(Some(item)) => old = Some(item),
                Err(None) => old = self.get_health_item(d).await?,
            }
        }
        Err(GateError::Unavailable(format!(
            "destination {d}: the failure could not be recorded, the item changed {FAILURE_ROUNDS} times under it"
        )))
    }

    async fn disable(
        &self,
        d: &DestinationName,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), GateError> {
        self.health_update(
            d,
            "#circuit = :disabled, #disabled_at = if_not_exists(#disabled_at, :now), \
             #disabled_reason = :reason, #failures = if_not_exists(#failures, :zero), \
             #updated_at = :now",
            "#open_until, #probe_until",
            "",
        )
        .expression_attribute_names("#circuit", a::CIRCUIT)
        .expression_attribute_names("#disabled_at", a::DISABLED_AT)
        .expression_attribute_names("#disabled_reason", a::DISABLED_REASON)
        .expression_attribute_names("#failures", a::FAILURES)
        .expression_attribute_names("#updated_at", a::UPDATED_AT)
        .expression_attribute_names("#open_until", a::OPEN_UNTIL)
        .expression_attribute_names("#probe_until", a::PROBE_UNTIL)
        .expression_attribute_values(":disabled", s("disabled"))
        .expression_attribute_values(
            ":reason",
            s(hookgate_core::destination_gate::clip_reason(reason)),
        )
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":now", n(now.as_millis()))
        .send()
        .await
        .map_err(|e| unavailable("UpdateItem", &e))?;
        Ok(())
    }

    async fn enable(&self, d: &DestinationName, now: Timestamp) -> Result<(), GateError> {
        self.health_update(
            d,
            "#circuit = :closed, #failures = :zero, #updated_at = :now",
            "#open_until, #probe_until, #disabled_at, #disabled_reason",
            "",
        )
        .expression_attribute_names("#circuit", a::CIRCUIT)
        .expression_attribute_names("#failures", a::FAILURES)
        .expression_attribute_names("#updated_at", a::UPDATED_AT)
        .expression_attribute_names("#open_until", a::OPEN_UNTIL)
        .expression_attribute_names("#probe_until", a::PROBE_UNTIL)
        .expression_attribute_names("#disabled_at", a::DISABLED_AT)
        .expression_attribute_names("#disabled_reason", a::DISABLED_REASON)
        .expression_attribute_values(":closed", s(Circuit::Closed.as_str()))
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":now", n(now.as_millis()))
        .send()
        .await
        .map_err(|e| unavailable("UpdateItem", &e))?;
        Ok(())
    }

    /// One consistent `GetItem` per name, [`LIST_CONCURRENCY`] at a time (the functions' IAM
    /// grants `GetItem`, not `BatchGetItem`).
    async fn list(&self, names: &[DestinationName]) -> Result<Vec<DestinationHealth>, GateError> {
        let gate = Arc::new(self.clone());
        let mut found: Vec<Option<DestinationHealth>> = vec![None; names.len()];
        for (chunk_no, chunk) in names.chunks(LIST_CONCURRENCY).enumerate() {
            let mut reads = JoinSet::new();
            for (i, d) in chunk.iter().enumerate() {
                let gate = gate.clone();
                let d = d.clone();
                reads.spawn(async move { (i, gate.health(&d).await) });
            }
            while let Some(joined) = reads.join_next().await {
                let (i, health) = joined
                    .map_err(|e| GateError::Unavailable(format!("a health read stopped: {e}")))?;
                found[chunk_no * LIST_CONCURRENCY + i] = Some(health?);
            }
        }
        found
            .into_iter()
            .zip(names)
            .map(|(h, d)| {
                h.ok_or_else(|| GateError::Unavailable(format!("destination {d} was not read")))
            })
            .collect()
    }
}

// ---- The health item ----

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The whole health item for `h`, at `version`.
fn health_item(h: &DestinationHealth, version: u64) -> Item {
    let mut item: Item = HashMap::from([
        (
            KEY_ATTRIBUTE.to_owned(),
            s(DynamoDbGate::health_key(&h.name)),
        ),
        (a::DESTINATION.to_owned(), s(h.name.as_str())),
        (a::CIRCUIT.to_owned(), s(h.circuit.as_str())),
        (a::FAILURES.to_owned(), n(h.consecutive_failures)),
        (a::VERSION.to_owned(), n(version)),
    ]);
    let mut optional = vec![
        (a::LAST_FAILURE, h.last_failure.as_deref().map(s)),
        (a::UPDATED_AT, h.updated_at.map(|t| n(t.as_millis()))),
        (a::PROBE_UNTIL, h.probe_until.map(|t| n(t.as_millis()))),
    ];
    match &h.circuit {
        Circuit::Open { until } => optional.push((a::OPEN_UNTIL, Some(n(until.as_millis())))),
        Circuit::Disabled { since, reason } => {
            optional.push((a::DISABLED_AT, Some(n(since.as_millis()))));
            optional.push((a::DISABLED_REASON, Some(s(reason.as_str()))));
        }
        Circuit::Closed | Circuit::HalfOpen => {}
    }
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.to_owned(), value);
        }
    }
    item
}

fn corrupt(d: &DestinationName, name: &str, what: &str) -> GateError {
    GateError::Corrupt(format!("destination {d}: attribute {name}: {what}"))
}

fn opt_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<Option<T>, GateError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v
            .parse()
            .map(Some)
            .map_err(|_| GateError::Corrupt(format!("attribute {name}: {v:?} is out of range"))),
        Some(_) => Err(GateError::Corrupt(format!(
            "attribute {name}: not a number"
        ))),
    }
}

fn opt_s<'a>(item: &'a Item, name: &str) -> Result<Option<&'a str>, GateError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        Some(_) => Err(GateError::Corrupt(format!(
            "attribute {name}: not a string"
        ))),
    }
}

fn opt_time(item: &Item, name: &str) -> Result<Option<Timestamp>, GateError> {
    Ok(opt_n::<i64>(item, name)?.map(Timestamp::from_millis))
}

/// `d`'s health from its item.
fn health_from_item(d: &DestinationName, item: &Item) -> Result<DestinationHealth, GateError> {
    let circuit = match opt_s(item, a::CIRCUIT)?.unwrap_or("closed") {
        "closed" => Circuit::Closed,
        "half_open" => Circuit::HalfOpen,
        "open" => Circuit::Open {
            until: opt_time(item, a::OPEN_UNTIL)?
                .ok_or_else(|| corrupt(d, a::OPEN_UNTIL, "missing while open"))?,
        },
        "disabled" => Circuit::Disabled {
            since: opt_time(item, a::DISABLED_AT)?
                .ok_or_else(|| corrupt(d, a::DISABLED_AT, "missing while disabled"))?,
            reason: opt_s(item, a::DISABLED_REASON)?
                .unwrap_or_default()
                .to_owned(),
        },
        other => {
            return Err(corrupt(
                d,
                a::CIRCUIT,
                &format!("unknown circuit {other:?}"),
            ))
        }
    };
    Ok(DestinationHealth {
        name: d.clone(),
        circuit,
        consecutive_failures: opt_n(item, a::FAILURES)?.unwrap_or(0),
        last_failure: opt_s(item, a::LAST_FAILURE)?.map(str::to_owned),
        updated_at: opt_time(item, a::UPDATED_AT)?,
        probe_until: opt_time(item, a::PROBE_UNTIL)?,
    })
}

/// A failed request as one readable line (no SDK `Debug` dump: see [`crate::error_text`]).
fn unavailable<E, R>(op: &str, err: &SdkError<E, R>) -> GateError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    GateError::Unavailable(format!("DynamoDB {op}: {}", one_line(err)))
}

fn unavailable_service<E: std::error::Error + 'static>(op: &str, err: &E) -> GateError {
    GateError::Unavailable(format!("DynamoDB {op}: {}", one_line(err)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> DestinationName {
        DestinationName::parse("billing").unwrap()
    }

    #[test]
    fn every_state_round_trips_through_its_item() {
        let t = Timestamp::from_millis;
        let base = DestinationHealth::new(d());
        let states = [
            base.clone(),
            base.after_failure("500 Internal Server Error", BreakerOptions::default(), t(7)),
            DestinationHealth {
                circuit: Circuit::Open { until: t(60_000) },
                consecutive_failures: 5,
                ..base.clone()
            },
            DestinationHealth {
                circuit: Circuit::HalfOpen,
                probe_until: Some(t(70_000)),
                updated_at: Some(t(60_000)),
                ..base.clone()
            },
            base.after_disable("410 Gone", t(9)),
        ];
        for h in states {
            let item = health_item(&h, 3);
            assert!(!item.contains_key("status") && !item.contains_key("status_shard"));
            assert_eq!(health_from_item(&d(), &item).unwrap(), h);
        }
    }

    #[test]
    fn unreadable_items_are_corrupt_and_name_the_attribute() {
        let mut item = health_item(&DestinationHealth::new(d()), 1);
        item.insert(a::CIRCUIT.into(), s("ajar"));
        let e = health_from_item(&d(), &item).unwrap_err();
        assert!(
            matches!(&e, GateError::Corrupt(m) if m.contains("circuit")),
            "{e}"
        );
        item.insert(a::CIRCUIT.into(), s("open"));
        let e = health_from_item(&d(), &item).unwrap_err();
        assert!(
            matches!(&e, GateError::Corrupt(m) if m.contains("open_until")),
            "{e}"
        );
        item.insert(a::OPEN_UNTIL.into(), s("soon"));
        assert!(matches!(
            health_from_item(&d(), &item),
            Err(GateError::Corrupt(_))
        ));
    }

    #[test]
    fn keys_cannot_be_event_ids() {
        let key = DynamoDbGate::rate_key(&d(), Timestamp::from_millis(1_000));
        assert_eq!(key, "rate#billing#1000");
        assert!(hookgate_core::envelope::EventId::parse(&key).is_err());
        assert!(hookgate_core::envelope::EventId::parse(&DynamoDbGate::health_key(&d())).is_err());
    }
}
