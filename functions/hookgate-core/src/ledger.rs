//! The `Ledger` port: what hookgate knows about every event — has it been seen, where is it,
//! what happened on each attempt.
//!
//! The ledger is the dedup authority (a conditional claim per event id) and the guard that keeps
//! a redelivered message from running its handler again (`processed` is final; a live
//! `processing` lease belongs to one consumer). Implementations: `MemoryLedger` here and the
//! DynamoDB ledger in `hookgate-aws`; both pass the same contract suite.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::destination_policy::DestinationName;
use crate::envelope::{EventId, SourceName};

/// Where an event is in its life.
///
/// `received` → `processing` → `processed` | `failed` | `dead_lettered`;
/// a `failed` event goes back to `processing` when its message is redelivered; a replay or a
/// redrive makes an event `queued` again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Claimed by the receiver: on its way to the queue or waiting in it. The receiver makes
    /// no ledger write after its enqueue (one request fewer on the provider's path), so a new
    /// event stays `received` until the processor's lease moves it on.
    Received,
    /// Put back on the queue by a replay or a redrive, waiting for the processor.
    Queued,
    /// A processor holds a lease on it and is running its handler.
    Processing,
    /// The handler succeeded. Final.
    Processed,
    /// The last attempt failed; the message will be delivered again.
    Failed,
    /// Out of attempts, or failed permanently: the message is in the DLQ.
    DeadLettered,
}

impl EventStatus {
    /// Every status, in the order of an event's life.
    pub const ALL: [EventStatus; 6] = [
        EventStatus::Received,
        EventStatus::Queued,
        EventStatus::Processing,
        EventStatus::Processed,
        EventStatus::Failed,
        EventStatus::DeadLettered,
    ];

    /// The status as stored and shown (`dead_lettered`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Received => "received",
            EventStatus::Queued => "queued",
            EventStatus::Processing => "processing",
            EventStatus::Processed => "processed",
            EventStatus::Failed => "failed",
            EventStatus::DeadLettered => "dead_lettered",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "received" => EventStatus::Received,
            "queued" => EventStatus::Queued,
            "processing" => EventStatus::Processing,
            "processed" => EventStatus::Processed,
            "failed" => EventStatus::Failed,
            "dead_lettered" => EventStatus::DeadLettered,
            _ => return None,
        })
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One processing attempt, as recorded when it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt, counting every start.
    pub attempt: u32,
    /// When the attempt started.
    pub at: Timestamp,
    /// How long the handler ran.
    pub duration_ms: u64,
    /// Whether the handler succeeded.
    pub success: bool,
    /// The handler's error, truncated to [`MAX_ERROR_LEN`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What else happened on this attempt: a redrive from the DLQ, a hand-back before the
    /// deadline, a move to the DLQ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The URL the attempt delivered to, when its handler called out (forwarding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The HTTP status the destination answered, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

/// Longest error text kept per attempt.
pub const MAX_ERROR_LEN: usize = 1024;

/// Cuts `s` to at most [`MAX_ERROR_LEN`] bytes on a character boundary.
pub fn truncate_error(s: &str) -> String {
    if s.len() <= MAX_ERROR_LEN {
        return s.to_owned();
    }
    let mut end = MAX_ERROR_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Everything the ledger holds about one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The event's id.
    pub event_id: EventId,
    /// The source it arrived on.
    pub source: SourceName,
    /// The provider's event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Where it is now.
    pub status: EventStatus,
    /// When the receiver accepted it.
    pub received_at: Timestamp,
    /// When the record last changed.
    pub updated_at: Timestamp,
    /// Until when the id deduplicates.
    pub expires_at: Timestamp,
    /// Attempts started (including one still running).
    pub attempt_count: u32,
    /// Finished attempts, oldest first.
    pub attempts: Vec<Attempt>,
    /// The last attempt's error, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// 0 as received; one more for each replay. Only a message of the current generation
    /// runs the handler (see [`StartOutcome::Superseded`]).
    #[serde(default)]
    pub generation: u64,
    /// How many times the event was replayed.
    #[serde(default)]
    pub replays: u32,
    /// What happened to the event besides its attempts (replays, a DLQ purge), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// The payload's size and SHA-256, and where it is kept, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<PayloadInfo>,
    /// When the next attempt is due, while the event waits for a retry (`failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    /// The destination this record delivers to: a delivery's (`<event id>@<destination>`), or
    /// an event's that a single route delivered itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<DestinationName>,
    /// The destinations the event was fanned out to, one delivery each (read them as
    /// `<event id>@<destination>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<DestinationName>,
}

/// Something that happened to an event other than an attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When.
    pub at: Timestamp,
    /// What, as a stable word: `replayed`, `replay_undone`, `dlq_purged`.
    pub kind: String,
    /// In words: how, by whom, why.
    pub note: String,
}

/// Where a payload is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadStore {
    /// Compressed, in the ledger item itself.
    Inline,
    /// An object in the archive.
    Archive,
}

impl PayloadStore {
    /// The name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadStore::Inline => "inline",
            PayloadStore::Archive => "archive",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inline" => Some(PayloadStore::Inline),
            "archive" => Some(PayloadStore::Archive),
            _ => None,
        }
    }
}

/// What the ledger records about an event's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadInfo {
    /// The body's size in bytes.
    pub bytes: u64,
    /// The body's SHA-256, lower-case hex.
    pub sha256: String,
    /// Where it is kept.
    pub stored: PayloadStore,
}

/// A payload to record with the start of an attempt, if none is recorded yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadWrite {
    /// Its size, SHA-256 and place.
    pub info: PayloadInfo,
    /// With [`PayloadStore::Inline`]: the compressed envelope (see [`crate::payload`]).
    pub inline: Option<Bytes>,
}

impl EventRecord {
    /// The record without its attempts, as listings show it.
    pub fn summary(&self) -> EventSummary {
        EventSummary {
            event_id: self.event_id.clone(),
            source: self.source.clone(),
            event_type: self.event_type.clone(),
            status: self.status,
            received_at: self.received_at,
            updated_at: self.updated_at,
            attempt_count: self.attempt_count,
            last_error: self.last_error.clone(),
            destination: self.destination.clone(),
        }
    }
}

/// One event in a listing: its record without the attempts (read one event for those).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSummary {
    /// The event's id.
    pub event_id: EventId,
    /// The source it arrived on.
    pub source: SourceName,
    /// The provider's event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Where it is now.
    pub status: EventStatus,
    /// When the receiver accepted it.
    pub received_at: Timestamp,
    /// When the record last changed.
    pub updated_at: Timestamp,
    /// Attempts started (including one still running).
    pub attempt_count: u32,
    /// The last attempt's error, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The destination it delivers to, if it is a delivery (see [`EventRecord::destination`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<DestinationName>,
}

/// Most events one listing returns.
pub const MAX_LIST_LIMIT: usize = 100;

/// Events a listing returns when the caller does not say how many.
pub const DEFAULT_LIST_LIMIT: usize = 20;

/// Which events to list: the newest `limit` with this status (any status if `None`) from this
/// source (any source if `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// Only events with this status; every status if `None`.
    pub status: Option<EventStatus>,
    /// Only events from this source; every source if `None`.
    pub source: Option<SourceName>,
    /// At most this many events (ledgers cap it at [`MAX_LIST_LIMIT`]).
    pub limit: usize,
}

impl Default for ListQuery {
    /// Every status, every source, [`DEFAULT_LIST_LIMIT`] events.
    fn default() -> Self {
        Self {
            status: None,
            source: None,
            limit: DEFAULT_LIST_LIMIT,
        }
    }
}

impl ListQuery {
    /// The limit a ledger applies: the query's, at most [`MAX_LIST_LIMIT`].
    pub fn effective_limit(&self) -> usize {
        self.limit.min(MAX_LIST_LIMIT)
    }
}

/// Puts summaries newest first (by `received_at`; equal times by event id, descending, so the
/// order is the same on every ledger) and keeps the first `limit`: how a listing across
/// statuses merges one list per status.
pub fn newest_first(mut summaries: Vec<EventSummary>, limit: usize) -> Vec<EventSummary> {
    summaries
        .sort_by(|a, b| listing_order((a.received_at, &a.event_id), (b.received_at, &b.event_id)));
    summaries.truncate(limit);
    summaries
}

/// The order of every listing, on an event's `(received_at, event_id)`: newest first, equal
/// times by event id, descending ([`newest_first`] sorts summaries by it).
pub fn listing_order(a: (Timestamp, &EventId), b: (Timestamp, &EventId)) -> std::cmp::Ordering {
    b.cmp(&a)
}

/// A receiver's request to own an event id.
#[derive(Clone, Debug)]
pub struct Claim {
    /// The id to claim.
    pub event_id: EventId,
    /// The source it arrived on.
    pub source: SourceName,
    /// The provider's event type.
    pub event_type: String,
    /// Now: the claim's time.
    pub now: Timestamp,
    /// Until when the claim deduplicates (now + `dedup_window_secs`).
    pub expires_at: Timestamp,
    /// How long a claim may stay `received` before another request may take it over.
    pub timeout: Duration,
    /// Unique to this claim: only its owner may mark it queued or release it, and a retried
    /// claim that finds its own token in the ledger knows its first attempt was applied.
    pub token: String,
}

/// The answer to a [`Claim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The id is ours: enqueue the event.
    Claimed,
    /// The id was claimed and enqueued before (still inside its dedup window).
    Duplicate(EventStatus),
    /// Another request claimed it moments ago and has not enqueued it yet. Not a duplicate:
    /// the provider should retry.
    InProgress,
}

/// A processor's request to run an event's handler.
#[derive(Clone, Debug)]
pub struct AttemptStart {
    /// The event.
    pub event_id: EventId,
    /// Its source (recorded if the ledger has no row for it).
    pub source: SourceName,
    /// Its type (recorded if the ledger has no row for it).
    pub event_type: String,
    /// When it was received (recorded if the ledger has no row for it).
    pub received_at: Timestamp,
    /// Until when a new row deduplicates (if the ledger has no row for it).
    pub expires_at: Timestamp,
    /// Now.
    pub now: Timestamp,
    /// Until when this processor owns the event.
    pub lease_until: Timestamp,
    /// Unique to this start: a retried start that finds its own token on the lease knows its
    /// first attempt was applied (its answer lost), and takes the lease it already holds.
    pub lease_token: String,
    /// The generation of the message being processed: an older one than the event's is
    /// [`StartOutcome::Superseded`]; a newer one (a replay whose record was undone after its
    /// message went out) becomes the event's.
    pub generation: u64,
    /// The payload to record, if the event has none recorded yet (the first take).
    pub payload: Option<PayloadWrite>,
    /// The retry ticket the message carries (`None` for a message the processor never
    /// re-sent): the attempt starts only if the ledger holds the same (see [`HandOff`]);
    /// otherwise the message is a [`StartOutcome::Stale`] copy.
    pub ticket: Option<String>,
    /// The destination the attempt delivers to, when the record is a delivery (recorded on
    /// the event, for listings by destination).
    pub destination: Option<DestinationName>,
}

/// The answer to an [`AttemptStart`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartOutcome {
    /// The lease is ours; this is attempt number `attempt`.
    Started {
        /// The attempt's number, from 1.
        attempt: u32,
    },
    /// The event was processed before: acknowledge the message, do not run the handler.
    AlreadyProcessed,
    /// Another consumer holds a live lease until `until`: back off.
    Leased {
        /// When that lease ends.
        until: Timestamp,
    },
    /// The message is of an older generation than the event: a replay superseded it.
    /// Acknowledge it without running the handler.
    Superseded {
        /// The event's generation.
        current: u64,
    },
    /// The message's retry ticket is not the event's: the retry was handed to another copy of
    /// the message (this one survived a crash between the re-send and its deletion), or this
    /// copy is one whose hand-off was never recorded. Acknowledge it without running the
    /// handler; the copy holding the ticket carries the event on.
    Stale,
}

/// Hands an event's retry from one copy of its message to a re-sent one: the ledger's ticket
/// goes from `from` to `to` and `next_attempt_at` becomes `due`, if the event still holds
/// `from`, is not `processed`, and is not of a newer generation than `generation`. A retried
/// call that finds `to` in place is success; anything else is [`LedgerError::Conflict`] (the
/// sending copy is stale).
///
/// The processor sends the new copy first and records the hand-off second, and the original
/// is deleted last: a crash after the send leaves the original holding the ticket (the new
/// copy is stale), a crash after the hand-off leaves the new copy holding it (the original is
/// stale). Either way one copy runs, once.
#[derive(Clone, Debug)]
pub struct HandOff {
    /// The event.
    pub event_id: EventId,
    /// The ticket of the copy handing off (`None`: the message the receiver or a replay sent).
    pub from: Option<String>,
    /// The new copy's ticket.
    pub to: String,
    /// When the new copy's attempt is due.
    pub due: Timestamp,
    /// The generation of the message handing off.
    pub generation: u64,
}

/// An operator's request to run an event again from its archived payload.
#[derive(Clone, Debug)]
pub struct ReplayStart {
    /// The event.
    pub event_id: EventId,
    /// The generation the caller read: the replay is refused if it has changed since (two
    /// replays racing: one wins).
    pub expected_generation: u64,
    /// Unique to this replay: a retried call that finds it knows its write was applied.
    pub token: String,
    /// The bulk replay run this belongs to, if any: an event this run replayed already is not
    /// replayed again when the run is repeated.
    pub run: Option<String>,
    /// Now.
    pub now: Timestamp,
    /// A replay still `queued` since before this never reached the queue (it crashed): it may
    /// be taken over.
    pub stale_before: Timestamp,
    /// The history entry that says when and how.
    pub entry: HistoryEntry,
}

/// The answer to a [`ReplayStart`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Recorded: the event is `queued` again under `generation`; send its message now.
    Started {
        /// The new generation.
        generation: u64,
        /// The status it had.
        previous: EventStatus,
    },
    /// No such event (never seen, or forgotten with its dedup window).
    NotFound,
    /// The event is on its way (received, queued or processing): a replay would race it.
    InProgress(EventStatus),
    /// Its generation is no longer the one read: another replay got there first.
    Superseded {
        /// The generation now.
        current: u64,
    },
    /// This bulk run replayed it already.
    AlreadyInRun,
}

/// Takes back a replay whose message could not be sent: the event returns to the status and
/// generation it had, so its pending retry (if any) is not superseded by a replay that never
/// happened.
#[derive(Clone, Debug)]
pub struct ReplayUndo {
    /// The event.
    pub event_id: EventId,
    /// The replay's token (only its own replay is undone).
    pub token: String,
    /// The generation the replay set.
    pub generation: u64,
    /// The status to return to.
    pub restore: EventStatus,
    /// The history entry that says why.
    pub entry: HistoryEntry,
    /// Now.
    pub now: Timestamp,
}

/// Which events a paged listing reads: one status (a listing pages through one index
/// partition at a time), newest first, within a time range, optionally one source and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageQuery {
    /// The status.
    pub status: EventStatus,
    /// Only this source.
    pub source: Option<SourceName>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only deliveries to this destination.
    pub destination: Option<DestinationName>,
    /// Received at or after this.
    pub since: Option<Timestamp>,
    /// Received before this.
    pub until: Option<Timestamp>,
    /// Events per page, at most [`MAX_LIST_LIMIT`].
    pub limit: usize,
    /// Where the previous page ended.
    pub cursor: Option<Cursor>,
}

/// Where a page ended: the last event's `received_at` and id. Opaque to callers, printable as
/// text (`<millis>.<event id>`), so a listing can go on from it later.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// The last event's `received_at`.
    pub received_at: Timestamp,
    /// The last event's id.
    pub event_id: EventId,
}

impl Cursor {
    /// The cursor as text.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.received_at.as_millis(), self.event_id)
    }

    /// Parses [`Cursor::encode`]'s text.
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, id) = s.split_once('.')?;
        Some(Self {
            received_at: Timestamp::from_millis(ms.parse().ok()?),
            event_id: EventId::parse(id).ok()?,
        })
    }
}

/// One page of a [`PageQuery`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The events, newest first.
    pub events: Vec<EventSummary>,
    /// Where the next page starts, if there may be one.
    pub next: Option<Cursor>,
}

/// Whether `summary` passes `query`'s filters (time range, source, type): the check each
/// ledger applies to the entries it reads, in one place.
pub fn page_matches(query: &PageQuery, summary: &EventSummary) -> bool {
    query.admits(
        summary.received_at,
        &summary.source,
        &summary.event_type,
        summary.destination.as_ref(),
    )
}

impl PageQuery {
    /// Whether an event with these fields passes the query's filters (time range, source,
    /// type, destination); its status is the caller's to check. [`page_matches`] for a summary.
    pub fn admits(
        &self,
        received_at: Timestamp,
        source: &SourceName,
        event_type: &str,
        destination: Option<&DestinationName>,
    ) -> bool {
        self.since.is_none_or(|t| received_at >= t)
            && self.until.is_none_or(|t| received_at < t)
            && self.source.as_ref().is_none_or(|s| source == s)
            && self.event_type.as_deref().is_none_or(|t| event_type == t)
            && self
                .destination
                .as_ref()
                .is_none_or(|d| destination == Some(d))
    }
}

/// The destination a record delivers to: the one recorded, or the one its id names (a
/// delivery's id is `<event id>@<destination>`; a delivery never attempted yet has no
/// recorded one).
pub fn destination_of(
    event_id: &EventId,
    recorded: Option<DestinationName>,
) -> Option<DestinationName> {
    recorded.or_else(|| event_id.delivery_of().map(|(_, d)| d))
}

/// How an attempt ended, as the ledger records it.
#[derive(Clone, Debug)]
pub struct AttemptEnd {
    /// The event.
    pub event_id: EventId,
    /// The attempt that ended.
    pub attempt: Attempt,
    /// The event's new status: `processed`, `failed` or `dead_lettered`.
    pub status: EventStatus,
    /// Now.
    pub now: Timestamp,
    /// When the next attempt is due, when the event is to be retried.
    pub next_attempt_at: Option<Timestamp>,
    /// The destinations the attempt fanned the event out to (empty when it did not).
    pub deliveries: Vec<DestinationName>,
}

/// A ledger operation that did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The store could not be reached or refused for now (network, throttling): try again.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    /// The record was not in the state the operation requires (another owner took it over).
    #[error("ledger conflict: {0}")]
    Conflict(String),
    /// A stored record could not be read.
    #[error("ledger record unreadable: {0}")]
    Corrupt(String),
}

/// What hookgate knows about every event.
///
/// **Every write may be retried after it was applied.** A call whose answer was lost (a
/// timeout, a dropped connection) is sent again by the AWS SDK, and by the cores, so each write
/// must tell its own earlier success from someone else's: the claim and the lease carry a
/// token, an attempt's end its attempt number, and a write that finds its own mark already in
/// place answers as if it had just been applied — without applying it twice.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Claims an event id, atomically: succeeds if the id is unknown, its dedup window has
    /// passed, or an earlier claim stayed `received` for longer than `claim.timeout` — and, for
    /// a retried claim, if the `received` claim in place is its own (same token).
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, LedgerError>;

    /// Forgets a claim that could not be enqueued, if `token` still owns it and it is still
    /// `received`, so the provider's retry is not taken for a duplicate. An event no longer in
    /// the ledger (a retried call) is success.
    async fn release(&self, event_id: &EventId, token: &str) -> Result<(), LedgerError>;

    /// Starts an attempt: → `processing` with a lease, unless the event is `processed` or
    /// another live lease holds it. A live lease with this start's `lease_token` (a retried
    /// call) is this start: `Started` with the attempt number it already took.
    async fn start_attempt(&self, start: &AttemptStart) -> Result<StartOutcome, LedgerError>;

    /// Ends an attempt: appends it to the history and sets the new status, if no later attempt
    /// has started meanwhile (else [`LedgerError::Conflict`]). An attempt already ended (a
    /// retried call, or a kept success recorded again) is success, and is not appended twice.
    async fn finish_attempt(&self, end: &AttemptEnd) -> Result<(), LedgerError>;

    /// Hands the event's retry to a re-sent copy of its message (see [`HandOff`]).
    async fn hand_off(&self, hand_off: &HandOff) -> Result<(), LedgerError>;

    /// Reads one event.
    async fn get(&self, event_id: &EventId) -> Result<Option<EventRecord>, LedgerError>;

    /// Lists the newest events matching `query`, newest first by `received_at`, at most
    /// [`ListQuery::effective_limit`] of them (none for a limit of 0). Without a status, the
    /// listing covers every status: one list per status, merged by [`newest_first`]. Events
    /// received at the same millisecond may come in either order.
    ///
    /// A listing is a snapshot of a moving ledger: on DynamoDB it reads an index that follows
    /// the table within moments (eventually consistent), and a listing filtered by source may
    /// come back short of `limit` (see `DynamoDbLedger`'s bound on pages read).
    async fn list(&self, query: &ListQuery) -> Result<Vec<EventSummary>, LedgerError>;

    /// One page of the events with `query.status`, newest first, from `query.cursor` on. Reads
    /// at most a bounded number of index entries per call (a page may come back short, or
    /// empty with a `next` cursor, when filters drop most of them), so memory and time stay
    /// bounded however many events match.
    async fn list_page(&self, query: &PageQuery) -> Result<Page, LedgerError>;

    /// The compressed envelope kept inline for `event_id`, if its payload is stored inline.
    async fn inline_payload(&self, event_id: &EventId) -> Result<Option<Bytes>, LedgerError>;

    /// Starts a replay: if the event is `processed`, `failed` or `dead_lettered` (or `queued`
    /// by a replay older than `stale_before` that never reached the queue) and still at the
    /// expected generation, it becomes `queued` under the next generation, its `replays` count
    /// goes up and the history records it. A retried call that finds its own token is
    /// `Started` again.
    async fn begin_replay(&self, replay: &ReplayStart) -> Result<ReplayOutcome, LedgerError>;

    /// Takes back a replay whose message could not be sent, if it is still this one's and the
    /// event is still `queued` under its generation (else [`LedgerError::Conflict`]).
    async fn undo_replay(&self, undo: &ReplayUndo) -> Result<(), LedgerError>;

    /// Appends `entry` to an event's history, once per `token` (a retried call appends
    /// nothing more). Returns whether the event is in the ledger.
    async fn add_history(
        &self,
        event_id: &EventId,
        entry: &HistoryEntry,
        token: &str,
    ) -> Result<bool, LedgerError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(id: &str, at_ms: i64) -> EventSummary {
        EventSummary {
            destination: None,
            event_id: EventId::parse(id).unwrap(),
            source: SourceName::parse("demo").unwrap(),
            event_type: "t".into(),
            status: EventStatus::Queued,
            received_at: Timestamp::from_millis(at_ms),
            updated_at: Timestamp::from_millis(at_ms),
            attempt_count: 0,
            last_error: None,
        }
    }

    #[test]
    fn newest_first_sorts_breaks_ties_by_id_and_truncates() {
        let merged = newest_first(
            vec![
                summary("demo:a", 1),
                summary("demo:b", 3),
                summary("demo:c", 2),
                summary("demo:d", 3),
            ],
            3,
        );
        let ids: Vec<&str> = merged.iter().map(|s| s.event_id.as_str()).collect();
        assert_eq!(ids, ["demo:d", "demo:b", "demo:c"]);
        assert!(newest_first(vec![summary("demo:a", 1)], 0).is_empty());
    }

    #[test]
    fn summary_serialises_with_the_record_names() {
        let mut s = summary("demo:a", 1_500);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["type"], "t");
        assert_eq!(json["status"], "queued");
        assert_eq!(json["received_at"], "1970-01-01T00:00:01.500Z");
        assert!(json.get("last_error").is_none(), "{json}");
        assert!(json.get("event_type").is_none(), "{json}");
        s.last_error = Some("boom".into());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["last_error"], "boom");
        assert_eq!(serde_json::from_value::<EventSummary>(json).unwrap(), s);
    }

    #[test]
    fn list_query_caps_its_limit() {
        let mut q = ListQuery::default();
        assert_eq!(q.effective_limit(), DEFAULT_LIST_LIMIT);
        q.limit = MAX_LIST_LIMIT + 1;
        assert_eq!(q.effective_limit(), MAX_LIST_LIMIT);
        assert_eq!(EventStatus::ALL.len(), 6);
        for s in EventStatus::ALL {
            assert_eq!(EventStatus::parse(s.as_str()), Some(s));
        }
    }
}
