//! The ledger item's encoding: the one place that turns ledger values into DynamoDB attribute
//! values, and items back into [`EventRecord`]s and [`EventSummary`]s, following the layout
//! table in the [parent module](super)'s doc. Which write happens when, and under which
//! condition, is the parent's business; the names and values it writes come from here.
//!
//! Compatibility with the items already in tables is tested twice: here against literal
//! attribute maps, and on moto in `tests/tests/aws_adapters.rs`
//! (`items_written_before_still_read`, `the_ledger_writes_the_documented_attributes`).
//!
//! **Why by hand, not `serde_dynamo`.** `serde_dynamo` 4.3 (feature `aws-sdk-dynamodb+1`) was
//! tried against this module and not adopted:
//! - the domain types cannot derive the stored form (a [`Timestamp`] serialises as RFC 3339 for
//!   the HTTP API, `expires_at` is whole seconds, ids, sources and statuses are parsed types), so
//!   it needs private mirror structs, `with` helpers for milliseconds and seconds, and
//!   conversions into the domain types: about 175 lines for the 120 they replace;
//! - its errors do not name the attribute (`Expected num`, `invalid type: string "1", expected
//!   u32`), which a [`LedgerError::Corrupt`] must;
//! - a NULL `generation` or `attempts` no longer reads as absent;
//! - every `Option` needs `skip_serializing_if` and the payload a bytes helper, or it writes
//!   NULL, and a list of numbers instead of B;
//! - the single-attribute reads the conditional writes make of an old item (`status_of`,
//!   `opt_s`, `opt_n`) are needed anyway;
//! - and it adds two crates (itself and a second `base64`).

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use hookgate_core::clock::Timestamp;
use hookgate_core::destination_policy::DestinationName;
use hookgate_core::envelope::{EventId, SourceName};
use hookgate_core::ledger::{
    Attempt, Claim, EventRecord, EventStatus, EventSummary, HistoryEntry, LedgerError, PayloadInfo,
    PayloadStore,
};
use hookgate_core::status_index::status_partition;

/// A DynamoDB item: attribute name to value.
pub(super) type Item = HashMap<String, AttributeValue>;

/// Attribute names, in one place.
pub(super) mod a {
    pub const EVENT_ID: &str = "event_id";
    pub const SOURCE: &str = "source";
    pub const EVENT_TYPE: &str = "event_type";
    pub const STATUS: &str = "status";
    pub const STATUS_SHARD: &str = "status_shard";
    pub const RECEIVED_AT: &str = "received_at";
    pub const UPDATED_AT: &str = "updated_at";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const CLAIM_TOKEN: &str = "claim_token";
    pub const CLAIMED_AT: &str = "claimed_at";
    pub const ATTEMPT_COUNT: &str = "attempt_count";
    pub const ATTEMPTS: &str = "attempts";
    pub const LAST_ERROR: &str = "last_error";
    pub const LEASE_UNTIL: &str = "lease_until";
    pub const LEASE_TOKEN: &str = "lease_token";
    pub const FINISHED_ATTEMPT: &str = "finished_attempt";
    pub const GENERATION: &str = "generation";
    pub const REPLAYS: &str = "replays";
    pub const HISTORY: &str = "history";
    pub const PAYLOAD: &str = "payload";
    pub const PAYLOAD_BYTES: &str = "payload_bytes";
    pub const PAYLOAD_SHA256: &str = "payload_sha256";
    pub const PAYLOAD_STORED: &str = "payload_stored";
    pub const REPLAY_TOKEN: &str = "replay_token";
    pub const REPLAY_RUN: &str = "replay_run";
    pub const REPLAYED_AT: &str = "replayed_at";
    pub const REPLAY_PREVIOUS: &str = "replay_previous";
    pub const RETRY_TICKET: &str = "retry_ticket";
    pub const RETRY_TICKET_GENERATION: &str = "retry_ticket_generation";
    pub const NEXT_ATTEMPT_AT: &str = "next_attempt_at";
    pub const DESTINATION: &str = "destination";
    pub const DELIVERIES: &str = "deliveries";
    // Inside one `history` entry.
    pub const KIND: &str = "kind";
    // Inside one `attempts` entry.
    pub const ATTEMPT: &str = "attempt";
    pub const AT: &str = "at";
    pub const DURATION_MS: &str = "duration_ms";
    pub const SUCCESS: &str = "success";
    pub const ERROR: &str = "error";
    pub const NOTE: &str = "note";
    pub const URL: &str = "url";
    pub const STATUS_CODE: &str = "status_code";
}

// ---- Writing ----

/// A string (S).
pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number (N), in its decimal form.
pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Bytes (B).
pub(super) fn b(v: &[u8]) -> AttributeValue {
    AttributeValue::B(Blob::new(v))
}

/// `t` in whole epoch seconds, rounded up (DynamoDB TTL wants seconds).
///
/// Rounding up keeps an item at least as long as its dedup window, and — with `:now_secs` also
/// rounded up — makes `expires_at < :now_secs` agree exactly with the in-memory ledger's
/// `expires_at < now` whenever `expires_at` falls on a whole second; otherwise DynamoDB holds
/// on to the id for less than one second longer.
pub(super) fn ttl_secs(t: Timestamp) -> i64 {
    let ms = t.as_millis();
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0)
}

/// The item a claim puts: a `received` event with no attempt yet.
pub(super) fn claim_item(claim: &Claim) -> Item {
    HashMap::from([
        (a::EVENT_ID.to_owned(), s(claim.event_id.as_str())),
        (a::SOURCE.to_owned(), s(claim.source.as_str())),
        (a::EVENT_TYPE.to_owned(), s(&claim.event_type)),
        (a::STATUS.to_owned(), s(EventStatus::Received.as_str())),
        (
            a::STATUS_SHARD.to_owned(),
            s(status_partition(EventStatus::Received, &claim.event_id)),
        ),
        (a::RECEIVED_AT.to_owned(), n(claim.now.as_millis())),
        (a::UPDATED_AT.to_owned(), n(claim.now.as_millis())),
        (a::EXPIRES_AT.to_owned(), n(ttl_secs(claim.expires_at))),
        (a::CLAIM_TOKEN.to_owned(), s(&claim.token)),
        (a::CLAIMED_AT.to_owned(), n(claim.now.as_millis())),
        (a::ATTEMPT_COUNT.to_owned(), n(0)),
    ])
}

/// One `attempts` entry (M); its optional attributes are left out when `None`.
pub(super) fn attempt_to_av(attempt: &Attempt) -> AttributeValue {
    let mut m: Item = HashMap::from([
        (a::ATTEMPT.to_owned(), n(attempt.attempt)),
        (a::AT.to_owned(), n(attempt.at.as_millis())),
        (a::DURATION_MS.to_owned(), n(attempt.duration_ms)),
        (a::SUCCESS.to_owned(), AttributeValue::Bool(attempt.success)),
    ]);
    let optional = [
        (a::ERROR, attempt.error.as_deref().map(s)),
        (a::NOTE, attempt.note.as_deref().map(s)),
        (a::URL, attempt.url.as_deref().map(s)),
        (a::STATUS_CODE, attempt.status_code.map(n)),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            m.insert(name.to_owned(), value);
        }
    }
    AttributeValue::M(m)
}

/// One `history` entry (M).
pub(super) fn history_to_av(entry: &HistoryEntry) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        (a::AT.to_owned(), n(entry.at.as_millis())),
        (a::KIND.to_owned(), s(&entry.kind)),
        (a::NOTE.to_owned(), s(&entry.note)),
    ]))
}

// ---- Reading ----

/// The error for an attribute that is missing, of the wrong type, or holds an unknown value.
pub(super) fn corrupt(name: &str, what: &str) -> LedgerError {
    LedgerError::Corrupt(format!("attribute {name}: {what}"))
}

/// An optional string attribute (absent or NULL: `None`).
pub(super) fn opt_s<'a>(item: &'a Item, name: &str) -> Result<Option<&'a str>, LedgerError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        Some(_) => Err(corrupt(name, "not a string")),
    }
}

/// A string attribute the item must have.
pub(super) fn req_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, LedgerError> {
    opt_s(item, name)?.ok_or_else(|| corrupt(name, "missing"))
}

/// An optional number attribute (absent or NULL: `None`), which must fit `T`.
pub(super) fn opt_n<T: FromStr>(item: &Item, name: &str) -> Result<Option<T>, LedgerError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v
            .parse()
            .map(Some)
            .map_err(|_| corrupt(name, &format!("{v:?} is out of range"))),
        Some(_) => Err(corrupt(name, "not a number")),
    }
}

/// A number attribute the item must have, which must fit `T`.
pub(super) fn req_n<T: FromStr>(item: &Item, name: &str) -> Result<T, LedgerError> {
    opt_n(item, name)?.ok_or_else(|| corrupt(name, "missing"))
}

/// The item's `status`.
pub(super) fn status_of(item: &Item) -> Result<EventStatus, LedgerError> {
    let raw = req_s(item, a::STATUS)?;
    EventStatus::parse(raw).ok_or_else(|| corrupt(a::STATUS, &format!("unknown status {raw:?}")))
}

/// The item's `payload` bytes (B), if it has them.
pub(super) fn inline_payload(item: &Item) -> Result<Option<Bytes>, LedgerError> {
    match item.get(a::PAYLOAD) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::B(blob)) => Ok(Some(Bytes::copy_from_slice(blob.as_ref()))),
        Some(_) => Err(corrupt(a::PAYLOAD, "not binary")),
    }
}

/// The whole item as an [`EventRecord`]. Attributes added since the first version
/// (`generation`, `replays`, `history`, the payload's) read as their zero when absent.
pub(super) fn record_from_item(item: &Item) -> Result<EventRecord, LedgerError> {
    let summary = summary_from_item(item)?;
    Ok(EventRecord {
        event_id: summary.event_id,
        source: summary.source,
        event_type: summary.event_type,
        status: summary.status,
        received_at: summary.received_at,
        updated_at: summary.updated_at,
        expires_at: Timestamp::from_secs(req_n(item, a::EXPIRES_AT)?),
        attempt_count: summary.attempt_count,
        attempts: list_of(item, a::ATTEMPTS, attempt_from_av)?,
        last_error: summary.last_error,
        generation: opt_n(item, a::GENERATION)?.unwrap_or(0),
        replays: opt_n(item, a::REPLAYS)?.unwrap_or(0),
        history: list_of(item, a::HISTORY, history_from_av)?,
        payload: payload_from_item(item)?,
        next_attempt_at: opt_n(item, a::NEXT_ATTEMPT_AT)?.map(Timestamp::from_millis),
        destination: opt_s(item, a::DESTINATION)?
            .and_then(|d| DestinationName::parse(d).ok())
            .or(summary.destination),
        deliveries: list_of(item, a::DELIVERIES, destination_from_av)?,
    })
}

fn destination_from_av(av: &AttributeValue) -> Result<DestinationName, LedgerError> {
    match av {
        AttributeValue::S(name) => {
            DestinationName::parse(name).map_err(|e| corrupt(a::DELIVERIES, &e.to_string()))
        }
        _ => Err(corrupt(a::DELIVERIES, "an entry is not a string")),
    }
}

/// An index entry as an [`EventSummary`]: the attributes the status index projects.
pub(super) fn summary_from_item(item: &Item) -> Result<EventSummary, LedgerError> {
    let event_id = req_s(item, a::EVENT_ID)?;
    let event_id = EventId::parse(event_id)
        .map_err(|e| corrupt(a::EVENT_ID, &format!("{event_id:?}: {e}")))?;
    let source = req_s(item, a::SOURCE)?;
    let source =
        SourceName::parse(source).map_err(|e| corrupt(a::SOURCE, &format!("{source:?}: {e}")))?;
    Ok(EventSummary {
        source,
        event_type: req_s(item, a::EVENT_TYPE)?.to_owned(),
        status: status_of(item)?,
        received_at: Timestamp::from_millis(req_n(item, a::RECEIVED_AT)?),
        updated_at: Timestamp::from_millis(req_n(item, a::UPDATED_AT)?),
        attempt_count: req_n(item, a::ATTEMPT_COUNT)?,
        last_error: opt_s(item, a::LAST_ERROR)?.map(str::to_owned),
        // The index projects no destination: a listing knows a delivery by its id.
        destination: hookgate_core::ledger::destination_of(&event_id, None),
        event_id,
    })
}

/// An optional list attribute (L), each entry read by `entry` (absent or NULL: empty).
fn list_of<T>(
    item: &Item,
    name: &str,
    entry: fn(&AttributeValue) -> Result<T, LedgerError>,
) -> Result<Vec<T>, LedgerError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(Vec::new()),
        Some(AttributeValue::L(list)) => list.iter().map(entry).collect(),
        Some(_) => Err(corrupt(name, "not a list")),
    }
}

fn attempt_from_av(av: &AttributeValue) -> Result<Attempt, LedgerError> {
    let AttributeValue::M(m) = av else {
        return Err(corrupt(a::ATTEMPTS, "an entry is not a map"));
    };
    let success = match m.get(a::SUCCESS) {
        Some(AttributeValue::Bool(b)) => *b,
        _ => return Err(corrupt(a::SUCCESS, "missing or not a boolean")),
    };
    Ok(Attempt {
        attempt: req_n(m, a::ATTEMPT)?,
        at: Timestamp::from_millis(req_n(m, a::AT)?),
        duration_ms: req_n(m, a::DURATION_MS)?,
        success,
        error: opt_s(m, a::ERROR)?.map(str::to_owned),
        note: opt_s(m, a::NOTE)?.map(str::to_owned),
        url: opt_s(m, a::URL)?.map(str::to_owned),
        status_code: opt_n(m, a::STATUS_CODE)?,
    })
}

fn history_from_av(av: &AttributeValue) -> Result<HistoryEntry, LedgerError> {
    let AttributeValue::M(m) = av else {
        return Err(corrupt(a::HISTORY, "an entry is not a map"));
    };
    Ok(HistoryEntry {
        at: Timestamp::from_millis(req_n(m, a::AT)?),
        kind: req_s(m, a::KIND)?.to_owned(),
        note: req_s(m, a::NOTE)?.to_owned(),
    })
}

fn payload_from_item(item: &Item) -> Result<Option<PayloadInfo>, LedgerError> {
    let Some(stored) = opt_s(item, a::PAYLOAD_STORED)? else {
        return Ok(None);
    };
    let stored = PayloadStore::parse(stored)
        .ok_or_else(|| corrupt(a::PAYLOAD_STORED, &format!("unknown place {stored:?}")))?;
    Ok(Some(PayloadInfo {
        bytes: req_n(item, a::PAYLOAD_BYTES)?,
        sha256: req_s(item, a::PAYLOAD_SHA256)?.to_owned(),
        stored,
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 2026-01-01T00:00:00.250Z.
    const T0: i64 = 1_767_225_600_250;

    fn at(offset_ms: i64) -> Timestamp {
        Timestamp::from_millis(T0 + offset_ms)
    }

    fn item<const N: usize>(entries: [(&str, AttributeValue); N]) -> Item {
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    fn m<const N: usize>(entries: [(&str, AttributeValue); N]) -> AttributeValue {
        AttributeValue::M(item(entries))
    }

    fn failed_attempt() -> (Attempt, AttributeValue) {
        let attempt = Attempt {
            attempt: 1,
            at: at(2_000),
            duration_ms: 12,
            success: false,
            error: Some("boom".into()),
            note: Some("redriven from the DLQ".into()),
            url: Some("https://b.example/hooks".into()),
            status_code: Some(503),
        };
        let av = m([
            ("attempt", AttributeValue::N("1".into())),
            ("at", AttributeValue::N("1767225602250".into())),
            ("duration_ms", AttributeValue::N("12".into())),
            ("success", AttributeValue::Bool(false)),
            ("error", AttributeValue::S("boom".into())),
            ("note", AttributeValue::S("redriven from the DLQ".into())),
            ("url", AttributeValue::S("https://b.example/hooks".into())),
            ("status_code", AttributeValue::N("503".into())),
        ]);
        (attempt, av)
    }

    fn ok_attempt() -> (Attempt, AttributeValue) {
        let attempt = Attempt {
            attempt: 2,
            at: at(3_000),
            duration_ms: 7,
            success: true,
            error: None,
            note: None,
            url: None,
            status_code: None,
        };
        let av = m([
            ("attempt", AttributeValue::N("2".into())),
            ("at", AttributeValue::N("1767225603250".into())),
            ("duration_ms", AttributeValue::N("7".into())),
            ("success", AttributeValue::Bool(true)),
        ]);
        (attempt, av)
    }

    /// An item as the first versions wrote it (before the archive and replay): raw attribute
    /// values, no `generation`, `replays`, `history` or payload attributes.
    fn item_before_the_archive() -> Item {
        item([
            ("event_id", AttributeValue::S("github:abc".into())),
            ("source", AttributeValue::S("github".into())),
            ("event_type", AttributeValue::S("push".into())),
            ("status", AttributeValue::S("failed".into())),
            ("received_at", AttributeValue::N("1767225600250".into())),
            ("updated_at", AttributeValue::N("1767225602262".into())),
            ("expires_at", AttributeValue::N("1767229201".into())),
            ("claim_token", AttributeValue::S("claim-tok".into())),
            ("claimed_at", AttributeValue::N("1767225600250".into())),
            ("attempt_count", AttributeValue::N("1".into())),
            ("finished_attempt", AttributeValue::N("1".into())),
            ("attempts", AttributeValue::L(vec![failed_attempt().1])),
            ("last_error", AttributeValue::S("boom".into())),
        ])
    }

    fn record_before_the_archive() -> EventRecord {
        EventRecord {
            deliveries: Vec::new(),
            destination: None,
            next_attempt_at: None,
            event_id: EventId::parse("github:abc").unwrap(),
            source: SourceName::parse("github").unwrap(),
            event_type: "push".into(),
            status: EventStatus::Failed,
            received_at: at(0),
            updated_at: at(2_012),
            expires_at: Timestamp::from_secs(1_767_229_201),
            attempt_count: 1,
            attempts: vec![failed_attempt().0],
            last_error: Some("boom".into()),
            generation: 0,
            replays: 0,
            history: Vec::new(),
            payload: None,
        }
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_secs(Timestamp::from_millis(5_000)), 5);
        assert_eq!(ttl_secs(Timestamp::from_millis(5_001)), 6);
        assert_eq!(ttl_secs(Timestamp::from_millis(5_999)), 6);
        assert_eq!(ttl_secs(Timestamp::from_millis(-1)), 0);
    }

    #[test]
    fn an_item_written_before_the_archive_reads_with_zero_replays_and_no_payload() {
        let raw = item_before_the_archive();
        assert_eq!(record_from_item(&raw), Ok(record_before_the_archive()));
        assert_eq!(
            summary_from_item(&raw),
            Ok(record_before_the_archive().summary())
        );
        assert_eq!(inline_payload(&raw), Ok(None));
    }

    #[test]
    fn an_item_with_every_attribute_reads_to_its_record() {
        let mut raw = item_before_the_archive();
        raw.extend(item([
            ("status", AttributeValue::S("queued".into())),
            ("attempt_count", AttributeValue::N("2".into())),
            ("finished_attempt", AttributeValue::N("2".into())),
            (
                "attempts",
                AttributeValue::L(vec![failed_attempt().1, ok_attempt().1]),
            ),
            ("generation", AttributeValue::N("1".into())),
            ("replays", AttributeValue::N("1".into())),
            (
                "history",
                AttributeValue::L(vec![m([
                    ("at", AttributeValue::N("1767225606250".into())),
                    ("kind", AttributeValue::S("replayed".into())),
                    ("note", AttributeValue::S("by the test".into())),
                ])]),
            ),
            (
                "history_tokens",
                AttributeValue::Ss(vec!["purge-tok".into()]),
            ),
            ("payload_bytes", AttributeValue::N("1234".into())),
            ("payload_sha256", AttributeValue::S("ab".repeat(32))),
            ("payload_stored", AttributeValue::S("inline".into())),
            (
                "payload",
                AttributeValue::B(Blob::new(b"\x78\x9c\x00".to_vec())),
            ),
            ("replay_previous", AttributeValue::S("processed".into())),
            ("replay_token", AttributeValue::S("replay-tok".into())),
            ("replay_run", AttributeValue::S("run-1".into())),
            ("replayed_at", AttributeValue::N("1767225606250".into())),
        ]));
        raw.remove("last_error");
        let want = EventRecord {
            status: EventStatus::Queued,
            attempt_count: 2,
            attempts: vec![failed_attempt().0, ok_attempt().0],
            last_error: None,
            generation: 1,
            replays: 1,
            history: vec![HistoryEntry {
                at: at(6_000),
                kind: "replayed".into(),
                note: "by the test".into(),
            }],
            payload: Some(PayloadInfo {
                bytes: 1_234,
                sha256: "ab".repeat(32),
                stored: PayloadStore::Inline,
            }),
            ..record_before_the_archive()
        };
        assert_eq!(record_from_item(&raw), Ok(want));
        assert_eq!(
            inline_payload(&raw),
            Ok(Some(Bytes::from_static(b"\x78\x9c\x00")))
        );
    }

    #[test]
    fn null_optional_attributes_read_as_absent() {
        let mut raw = item_before_the_archive();
        for name in ["attempts", "last_error", "generation", "history", "payload"] {
            raw.insert(name.to_owned(), AttributeValue::Null(true));
        }
        let want = EventRecord {
            attempts: Vec::new(),
            last_error: None,
            ..record_before_the_archive()
        };
        assert_eq!(record_from_item(&raw), Ok(want));
        assert_eq!(inline_payload(&raw), Ok(None));
    }

    #[test]
    fn writes_are_the_documented_attributes() {
        let claim = Claim {
            event_id: EventId::parse("github:abc").unwrap(),
            source: SourceName::parse("github").unwrap(),
            event_type: "push".into(),
            now: at(0),
            expires_at: at(3_600_000),
            timeout: Duration::from_secs(30),
            token: "claim-tok".into(),
        };
        assert_eq!(
            claim_item(&claim),
            item([
                ("event_id", AttributeValue::S("github:abc".into())),
                ("source", AttributeValue::S("github".into())),
                ("event_type", AttributeValue::S("push".into())),
                ("status", AttributeValue::S("received".into())),
                // The sharded index's key: FNV-1a of the id, modulo 32 (pinned).
                ("status_shard", AttributeValue::S("received#8".into())),
                ("received_at", AttributeValue::N("1767225600250".into())),
                ("updated_at", AttributeValue::N("1767225600250".into())),
                // Seconds, rounded up: the TTL attribute.
                ("expires_at", AttributeValue::N("1767229201".into())),
                ("claim_token", AttributeValue::S("claim-tok".into())),
                ("claimed_at", AttributeValue::N("1767225600250".into())),
                ("attempt_count", AttributeValue::N("0".into())),
            ])
        );
        // Every optional attribute set, and none: left out, never NULL.
        for (attempt, av) in [failed_attempt(), ok_attempt()] {
            assert_eq!(attempt_to_av(&attempt), av);
        }
        let entry = HistoryEntry {
            at: at(6_000),
            kind: "replayed".into(),
            note: "by the test".into(),
        };
        assert_eq!(
            history_to_av(&entry),
            m([
                ("at", AttributeValue::N("1767225606250".into())),
                ("kind", AttributeValue::S("replayed".into())),
                ("note", AttributeValue::S("by the test".into())),
            ])
        );
        assert_eq!(
            b(b"\x00\xff"),
            AttributeValue::B(Blob::new(vec![0x00, 0xff]))
        );
    }

    #[test]
    fn what_the_ledger_writes_reads_back() {
        let record = record_before_the_archive();
        let mut raw = item_before_the_archive();
        raw.insert(
            "attempts".into(),
            AttributeValue::L(record.attempts.iter().map(attempt_to_av).collect()),
        );
        assert_eq!(record_from_item(&raw), Ok(record));
    }

    /// Each unreadable attribute is `Corrupt`, and the error names it.
    #[test]
    fn corrupt_attributes_are_named() {
        let not_a_map = AttributeValue::L(vec![AttributeValue::S("x".into())]);
        let without = |name: &str| {
            let AttributeValue::M(mut entry) = failed_attempt().1 else {
                unreachable!()
            };
            entry.remove(name);
            AttributeValue::L(vec![AttributeValue::M(entry)])
        };
        let text = |v: &str| Some(AttributeValue::S(v.into()));
        let number = |v: &str| Some(AttributeValue::N(v.into()));
        #[rustfmt::skip]
        let cases: Vec<(&str, Option<AttributeValue>, &str)> = vec![
            ("status", text("weird"), "attribute status: unknown status \"weird\""),
            ("status", None, "attribute status: missing"),
            ("event_id", text("no spaces"), "attribute event_id: \"no spaces\""),
            ("source", number("1"), "attribute source: not a string"),
            ("attempt_count", text("1"), "attribute attempt_count: not a number"),
            ("attempt_count", number("-1"), "attribute attempt_count: \"-1\" is out of range"),
            ("received_at", None, "attribute received_at: missing"),
            ("expires_at", Some(AttributeValue::Bool(true)), "attribute expires_at: not a number"),
            ("generation", text("1"), "attribute generation: not a number"),
            ("attempts", text("[]"), "attribute attempts: not a list"),
            ("attempts", Some(not_a_map.clone()), "attribute attempts: an entry is not a map"),
            ("attempts", Some(without("success")), "attribute success: missing or not a boolean"),
            ("attempts", Some(without("at")), "attribute at: missing"),
            ("history", Some(not_a_map), "attribute history: an entry is not a map"),
            ("payload_stored", text("disk"), "attribute payload_stored: unknown place \"disk\""),
            ("payload_stored", text("inline"), "attribute payload_bytes: missing"),
        ];
        for (name, value, want) in cases {
            let mut raw = item_before_the_archive();
            match value {
                Some(value) => raw.insert(name.to_owned(), value),
                None => raw.remove(name),
            };
            match record_from_item(&raw) {
                Err(LedgerError::Corrupt(got)) => {
                    assert!(got.starts_with(want), "{name}: {got:?} is not {want:?}")
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        let mut raw = item_before_the_archive();
        raw.insert("payload".into(), AttributeValue::S("x".into()));
        assert_eq!(
            inline_payload(&raw),
            Err(LedgerError::Corrupt("attribute payload: not binary".into()))
        );
    }
}
