//! Replay: run an event again from its kept payload — one by id, or many by a filter.
//!
//! A replay re-enqueues the payload as accepted, under the **same event id** (so `webhook-id`
//! is stable and a destination that dedupes can), and under the event's **next generation**.
//! The ledger records it first (`queued`, `replays` + 1, a history entry), conditionally on
//! the generation read, so of two replays racing one wins; the processor runs only a message
//! of the event's current generation, so a stale copy of the original, redelivered after the
//! replay, is acknowledged without running the handler. A message that cannot be sent takes
//! the ledger back to where it was; a replay that crashed between the two is taken over by the
//! next replay after the claim timeout.
//!
//! [`Replayer`] does it against the ports; [`run_bulk`] pages through a status's events (the
//! by-status index, never a scan) and replays each through any [`ReplayTarget`] — the
//! `Replayer` itself, or a running local stack over HTTP — at a bounded rate, tagging each with
//! the run's id so a run interrupted and started again replays nothing twice.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::archive::{Archive, ArchiveError, PayloadRef};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::config::{ArchiveConfig, Config};
use crate::envelope::{Envelope, EventId, SourceName};
use crate::ledger::{
    EventStatus, HistoryEntry, Ledger, LedgerError, Page, PageQuery, PayloadStore, ReplayOutcome,
    ReplayStart, ReplayUndo,
};
use crate::payload;
use crate::queue::{attr, OutgoingMessage, Queue};
use crate::reply::Reply;

/// Why an event was not replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// No such event (never seen, or forgotten with its dedup window).
    #[error("no such event")]
    NotFound,
    /// The event is on its way (received, queued or processing).
    #[error("the event is {0}: a replay would race it; try again once it has settled")]
    InProgress(EventStatus),
    /// Another replay changed it since it was read.
    #[error("the event was replayed meanwhile (generation {0})")]
    Superseded(u64),
    /// This bulk run replayed it already.
    #[error("replayed already by this run")]
    AlreadyInRun,
    /// Its payload is not kept: archiving was off, or the retention has passed.
    #[error("the payload is not archived: {0}")]
    PayloadNotArchived(String),
    /// The ledger could not be reached.
    #[error("ledger unavailable: {0}")]
    LedgerUnavailable(String),
    /// The archive could not be reached.
    #[error("archive unavailable: {0}")]
    ArchiveUnavailable(String),
    /// The queue could not be reached; nothing was replayed.
    #[error("queue unavailable: {0}")]
    QueueUnavailable(String),
}

impl ReplayError {
    /// The stable `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            ReplayError::NotFound => "event_not_found",
            ReplayError::InProgress(_) | ReplayError::Superseded(_) => "event_in_progress",
            ReplayError::AlreadyInRun => "already_replayed",
            ReplayError::PayloadNotArchived(_) => "payload_not_archived",
            ReplayError::LedgerUnavailable(_) => "ledger_unavailable",
            ReplayError::ArchiveUnavailable(_) => "archive_unavailable",
            ReplayError::QueueUnavailable(_) => "queue_unavailable",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ReplayError::NotFound => StatusCode::NOT_FOUND,
            ReplayError::InProgress(_)
            | ReplayError::Superseded(_)
            | ReplayError::AlreadyInRun
            | ReplayError::PayloadNotArchived(_) => StatusCode::CONFLICT,
            ReplayError::LedgerUnavailable(_)
            | ReplayError::ArchiveUnavailable(_)
            | ReplayError::QueueUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Whether a bulk run may go on past it (it concerns this event only).
    pub fn is_skip(&self) -> bool {
        !matches!(
            self,
            ReplayError::LedgerUnavailable(_)
                | ReplayError::ArchiveUnavailable(_)
                | ReplayError::QueueUnavailable(_)
        )
    }
}

impl From<ReplayError> for Reply {
    fn from(e: ReplayError) -> Self {
        Reply::error(e.status(), e.code(), e.to_string())
    }
}

impl From<LedgerError> for ReplayError {
    fn from(e: LedgerError) -> Self {
        ReplayError::LedgerUnavailable(e.to_string())
    }
}

/// A replay done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Replayed {
    /// The event.
    pub event_id: EventId,
    /// Its status now: `queued`.
    pub status: EventStatus,
    /// The generation the replay runs under.
    pub generation: u64,
    /// The status it had.
    pub previous: EventStatus,
}

/// Who asked, for the history entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// How: `API`, `hookgate replay`, `console`.
    pub via: String,
    /// The bulk run's id, if any.
    pub run: Option<String>,
}

impl Origin {
    /// A single replay asked for through `via`.
    pub fn single(via: impl Into<String>) -> Self {
        Self {
            via: via.into(),
            run: None,
        }
    }
}

/// Replays events from their kept payloads.
pub struct Replayer {
    ledger: Arc<dyn Ledger>,
    queue: Arc<dyn Queue>,
    archive: Option<Arc<dyn Archive>>,
    archive_config: ArchiveConfig,
    /// A replay `queued` for longer than this never reached the queue, and may be taken over.
    takeover_after: Duration,
    clock: Arc<dyn Clock>,
}

impl Replayer {
    /// A replayer over the ports, with `config`'s archive settings and claim timeout.
    pub fn new(
        config: &Config,
        ledger: Arc<dyn Ledger>,
        queue: Arc<dyn Queue>,
        archive: Option<Arc<dyn Archive>>,
    ) -> Self {
        Self {
            ledger,
            queue,
            archive,
            archive_config: config.archive.clone(),
            takeover_after: Duration::from_secs(config.receiver.claim_timeout_secs),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same replayer reading time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The payload kept for `event_id`, as accepted: from the ledger when inline, else from
    /// the archive.
    pub async fn payload(&self, event_id: &EventId) -> Result<Envelope, ReplayError> {
        let record = self
            .ledger
            .get(event_id)
            .await?
            .ok_or(ReplayError::NotFound)?;
        let not_kept = |why: &str| ReplayError::PayloadNotArchived(why.to_owned());
        match record.payload.map(|p| p.stored) {
            Some(PayloadStore::Inline) => {
                let compressed = self
                    .ledger
                    .inline_payload(event_id)
                    .await?
                    .ok_or_else(|| not_kept("the ledger item holds no inline payload"))?;
                payload::decompress(&compressed)
                    .map_err(|e| ReplayError::PayloadNotArchived(e.to_string()))
            }
            // Not recorded yet (the processor has not taken it) or in the archive: the archive
            // answers, if there is one.
            Some(PayloadStore::Archive) | None => {
                let Some(archive) = &self.archive else {
                    return Err(not_kept("no archive is configured"));
                };
                match archive.get(event_id).await {
                    Ok(Some(envelope)) => Ok(envelope),
                    Ok(None) => Err(not_kept(
                        "nothing in the archive: archiving was off, or its retention has passed",
                    )),
                    Err(ArchiveError::Corrupt(e)) => Err(ReplayError::PayloadNotArchived(e)),
                    Err(ArchiveError::Unavailable(e)) => Err(ReplayError::ArchiveUnavailable(e)),
                }
            }
        }
    }

    /// Replays one event.
    pub async fn replay(
        &self,
        event_id: &EventId,
        origin: &Origin,
    ) -> Result<Replayed, ReplayError> {
        let record = self
            .ledger
            .get(event_id)
            .await?
            .ok_or(ReplayError::NotFound)?;
        let now = self.clock.now();
        let stale_before = now.minus(self.takeover_after);
        // On its way: say so before looking for a payload the processor may not have kept yet.
        // (A replay `queued` since before `stale_before` never reached the queue: the ledger
        // lets it be taken over.)
        let last_replay = record
            .history
            .iter()
            .rev()
            .find(|h| h.kind == "replayed")
            .map(|h| h.at);
        let in_progress = match record.status {
            EventStatus::Received | EventStatus::Processing => true,
            EventStatus::Queued => last_replay.is_none_or(|at| at >= stale_before),
            _ => false,
        };
        if in_progress {
            return Err(ReplayError::InProgress(record.status));
        }
        // Read the payload first: a replay that cannot be sent is not recorded.
        let envelope = self.payload(event_id).await?;
        let entry = HistoryEntry {
            at: now,
            kind: "replayed".to_owned(),
            note: format!(
                "replayed from {} via {}{} (generation {})",
                record.status,
                origin.via,
                origin
                    .run
                    .as_deref()
                    .map(|r| format!(", run {r}"))
                    .unwrap_or_default(),
                record.generation + 1
            ),
        };
        let start = ReplayStart {
            event_id: event_id.clone(),
            expected_generation: record.generation,
            token: crate::token::uuid().to_string(),
            run: origin.run.clone(),
            now,
            stale_before,
            entry,
        };
        let (generation, previous) = match self.ledger.begin_replay(&start).await? {
            ReplayOutcome::Started {
                generation,
                previous,
            } => (generation, previous),
            ReplayOutcome::NotFound => return Err(ReplayError::NotFound),
            ReplayOutcome::InProgress(status) => return Err(ReplayError::InProgress(status)),
            ReplayOutcome::Superseded { current } => return Err(ReplayError::Superseded(current)),
            ReplayOutcome::AlreadyInRun => return Err(ReplayError::AlreadyInRun),
        };
        if let Err(e) = self.send(&envelope, generation).await {
            warn!(event_id = %event_id, error = %e, "replay could not be enqueued; taking it back");
            let undo = ReplayUndo {
                event_id: event_id.clone(),
                token: start.token,
                generation,
                restore: previous,
                entry: HistoryEntry {
                    at: self.clock.now(),
                    kind: "replay_undone".to_owned(),
                    note: format!("replay of generation {generation} not enqueued: {e}"),
                },
                now: self.clock.now(),
            };
            if let Err(undo_error) = self.ledger.undo_replay(&undo).await {
                warn!(event_id = %event_id, error = %undo_error,
                    "could not take the replay back; the next replay takes it over after the claim timeout");
            }
            return Err(e);
        }
        info!(event_id = %event_id, generation, previous = %previous, via = %origin.via, "event replayed");
        Ok(Replayed {
            event_id: event_id.clone(),
            status: EventStatus::Queued,
            generation,
            previous,
        })
    }

    /// Enqueues `envelope` for `generation`: in the message, or as a pointer to the archive
    /// when it is too large for one.
    async fn send(&self, envelope: &Envelope, generation: u64) -> Result<(), ReplayError> {
        let attributes = std::collections::BTreeMap::from([
            (attr::EVENT_ID.to_owned(), envelope.event_id.to_string()),
            (attr::SOURCE.to_owned(), envelope.source.to_string()),
            (attr::EVENT_TYPE.to_owned(), envelope.event_type.clone()),
            (attr::GENERATION.to_owned(), generation.to_string()),
        ]);
        let body = if payload::needs_claim_check(envelope.body.len(), &self.archive_config) {
            // Only an archived payload can be this large: the archive holds it already.
            envelope.pointer_message(&PayloadRef::of(envelope), generation)
        } else {
            envelope.encode_as(generation).into_message()
        };
        self.queue
            .send(OutgoingMessage {
                delay: None,
                body,
                attributes,
                trace_header: None,
            })
            .await
            .map(|_| ())
            .map_err(|e| ReplayError::QueueUnavailable(e.to_string()))
    }
}

/// What a bulk replay can page through and replay: the ports directly, or a running stack.
#[async_trait]
pub trait ReplayTarget: Send + Sync {
    /// One page of events.
    async fn page(&self, query: &PageQuery) -> Result<Page, ReplayError>;
    /// Replays one event as part of `run`.
    async fn replay(&self, event_id: &EventId, run: &str) -> Result<Replayed, ReplayError>;
}

#[async_trait]
impl ReplayTarget for Replayer {
    async fn page(&self, query: &PageQuery) -> Result<Page, ReplayError> {
        Ok(self.ledger.list_page(query).await?)
    }

    async fn replay(&self, event_id: &EventId, run: &str) -> Result<Replayed, ReplayError> {
        let origin = Origin {
            via: "hookgate replay".to_owned(),
            run: Some(run.to_owned()),
        };
        Replayer::replay(self, event_id, &origin).await
    }
}

/// Which events a bulk replay takes: one status, optionally one source and type, received in
/// `[since, until)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkFilter {
    /// The status (`failed`, `dead_lettered` or `processed`).
    pub status: EventStatus,
    /// Only this source.
    pub source: Option<SourceName>,
    /// Only this type.
    pub event_type: Option<String>,
    /// Received at or after.
    pub since: Option<Timestamp>,
    /// Received before (a run fixes it when it starts, so it does not chase events arriving
    /// while it runs).
    pub until: Timestamp,
}

impl BulkFilter {
    /// The run's id: a hash of the filter, so the same filter (with the same absolute times)
    /// is the same run, and what it replayed is not replayed again.
    pub fn run_id(&self) -> String {
        let text = format!(
            "{}|{}|{}|{}|{}",
            self.status,
            self.source.as_ref().map(SourceName::as_str).unwrap_or("*"),
            self.event_type.as_deref().unwrap_or("*"),
            self.since.map(|t| t.as_millis()).unwrap_or(i64::MIN),
            self.until.as_millis()
        );
        hex::encode(&Sha256::digest(text.as_bytes())[..6])
    }
}

/// How a bulk replay goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkOptions {
    /// Count only; replay nothing.
    pub dry_run: bool,
    /// Stop after this many matched events.
    pub limit: Option<u64>,
    /// At most this many replays per second.
    pub rate: Option<u32>,
    /// Events per page read.
    pub page_size: usize,
}

impl Default for BulkOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            limit: None,
            rate: None,
            page_size: 100,
        }
    }
}

/// What a bulk replay did, as printed at the end (and after each event, as progress).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BulkSummary {
    /// The run's id.
    pub run: String,
    /// Events the filter matched (so far).
    pub matched: u64,
    /// Events replayed (or, in a dry run, that would be).
    pub replayed: u64,
    /// Events skipped, by reason (`already_replayed`, `event_in_progress`,
    /// `payload_not_archived`, `event_not_found`).
    pub skipped: std::collections::BTreeMap<String, u64>,
    /// Whether it stopped before the end (an error, or interrupted).
    pub stopped: Option<String>,
    /// Whether nothing was replayed on purpose.
    pub dry_run: bool,
}

/// Replays every event `filter` matches through `target`, page by page (memory stays bounded
/// whatever the number), calling `progress` after each event. Stops early, with the reason in
/// the summary, when `interrupted` says so or when the ledger, the archive or the queue fails;
/// run again with the same filter, it replays only what it had not.
pub async fn run_bulk(
    target: &dyn ReplayTarget,
    filter: &BulkFilter,
    options: &BulkOptions,
    interrupted: &(dyn Fn() -> bool + Send + Sync),
    progress: &mut (dyn FnMut(&BulkSummary) + Send),
) -> BulkSummary {
    let run = filter.run_id();
    let mut summary = BulkSummary {
        run: run.clone(),
        dry_run: options.dry_run,
        ..BulkSummary::default()
    };
    let pause = options
        .rate
        .filter(|r| *r > 0)
        .map(|r| Duration::from_secs_f64(1.0 / f64::from(r)));
    let mut query = PageQuery {
        destination: None,
        status: filter.status,
        source: filter.source.clone(),
        event_type: filter.event_type.clone(),
        since: filter.since,
        until: Some(filter.until),
        limit: options.page_size.clamp(1, crate::ledger::MAX_LIST_LIMIT),
        cursor: None,
    };
    loop {
        let page = match target.page(&query).await {
            Ok(page) => page,
            Err(e) => {
                summary.stopped = Some(e.to_string());
                return summary;
            }
        };
        for event in &page.events {
            if options.limit.is_some_and(|l| summary.matched >= l) {
                return summary;
            }
            if interrupted() {
                summary.stopped = Some("interrupted".to_owned());
                return summary;
            }
            summary.matched += 1;
            if options.dry_run {
                summary.replayed += 1;
            } else {
                match target.replay(&event.event_id, &run).await {
                    Ok(_) => summary.replayed += 1,
                    Err(e) if e.is_skip() => {
                        *summary.skipped.entry(e.code().to_owned()).or_default() += 1;
                    }
                    Err(e) => {
                        summary.stopped = Some(format!("{}: {e}", event.event_id));
                        progress(&summary);
                        return summary;
                    }
                }
                if let Some(pause) = pause {
                    tokio::time::sleep(pause).await;
                }
            }
            progress(&summary);
        }
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => return summary,
        }
    }
}
