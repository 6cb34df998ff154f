//! `MemoryLedger`: the ledger in a mutex, with exactly the DynamoDB ledger's conditions.
//!
//! Like the DynamoDB table's TTL, it forgets events whose dedup window has ended: every
//! [`SWEEP_EVERY`] claims it drops the rows past their `expires_at`, so a long-running local
//! stack holds only the events of one dedup window, not every event it ever saw.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use crate::clock::Timestamp;
use crate::envelope::EventId;
use crate::ledger::{
    newest_first, page_matches, AttemptEnd, AttemptStart, Claim, ClaimOutcome, Cursor, EventRecord,
    EventStatus, EventSummary, HandOff, HistoryEntry, Ledger, LedgerError, ListQuery, Page,
    PageQuery, ReplayOutcome, ReplayStart, ReplayUndo, StartOutcome, MAX_LIST_LIMIT,
};

#[derive(Debug, Clone)]
struct Row {
    record: EventRecord,
    claim_token: Option<String>,
    claimed_at: Timestamp,
    lease_until: Option<Timestamp>,
    lease_token: Option<String>,
    /// The highest attempt whose end is recorded (0 for none): a second end of it is a retry.
    finished_attempt: u32,
    /// The compressed envelope, when the payload is kept inline.
    inline_payload: Option<Bytes>,
    /// The last replay: its token, bulk run, time, and the status it replayed from.
    replay_token: Option<String>,
    replay_run: Option<String>,
    replayed_at: Option<Timestamp>,
    replay_previous: Option<EventStatus>,
    /// Tokens of the history entries added with [`Ledger::add_history`].
    history_tokens: std::collections::BTreeSet<String>,
    /// The retry ticket and the generation it was handed off in (see [`HandOff`]).
    ticket: Option<(String, u64)>,
}

impl Row {
    /// Whether a message of `generation` carrying `ticket` is the event's live copy: the same
    /// ticket, or none while the ledger holds none of this generation or later.
    fn holds_ticket(&self, ticket: Option<&str>, generation: u64) -> bool {
        match (&self.ticket, ticket) {
            (None, None) => true,
            (Some((_, of)), None) => *of < generation,
            (Some((held, _)), Some(ticket)) => held == ticket,
            (None, Some(_)) => false,
        }
    }
}

impl Row {
    fn new(record: EventRecord, claim_token: Option<String>, claimed_at: Timestamp) -> Self {
        Self {
            record,
            claim_token,
            claimed_at,
            lease_until: None,
            lease_token: None,
            finished_attempt: 0,
            inline_payload: None,
            replay_token: None,
            replay_run: None,
            replayed_at: None,
            replay_previous: None,
            history_tokens: std::collections::BTreeSet::new(),
            ticket: None,
        }
    }
}

/// The record of an event the ledger has just learnt of.
fn new_record(
    event_id: &EventId,
    source: &crate::envelope::SourceName,
    event_type: &str,
    status: EventStatus,
    received_at: Timestamp,
    now: Timestamp,
    expires_at: Timestamp,
) -> EventRecord {
    EventRecord {
        event_id: event_id.clone(),
        source: source.clone(),
        event_type: event_type.to_owned(),
        status,
        received_at,
        updated_at: now,
        expires_at,
        attempt_count: 0,
        attempts: Vec::new(),
        last_error: None,
        generation: 0,
        replays: 0,
        history: Vec::new(),
        payload: None,
        next_attempt_at: None,
    }
}

/// Claims between two sweeps of expired rows.
pub const SWEEP_EVERY: usize = 1024;

/// An in-process ledger for the local stack and fast tests.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    rows: Mutex<HashMap<EventId, Row>>,
    claims: AtomicUsize,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of events held (for tests and memory checks).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EventId, Row>> {
        // A panic while holding the lock cannot leave a row half-written: every mutation below
        // is a single assignment. So a poisoned lock is still consistent.
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, LedgerError> {
        let mut rows = self.lock();
        if self.claims.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            rows.retain(|_, row| row.record.expires_at >= claim.now);
        }
        if let Some(row) = rows.get(&claim.event_id) {
            if row.record.status == EventStatus::Received
                && row.claim_token.as_deref() == Some(claim.token.as_str())
            {
                // This very claim, applied before: its answer was lost and the call retried.
                return Ok(ClaimOutcome::Claimed);
            }
            let expired = row.record.expires_at < claim.now;
            let stale = row.record.status == EventStatus::Received
                && row.claimed_at < claim.now.minus(claim.timeout);
            if !expired && !stale {
                return Ok(match row.record.status {
                    EventStatus::Received => ClaimOutcome::InProgress,
                    s => ClaimOutcome::Duplicate(s),
                });
            }
        }
        let record = new_record(
            &claim.event_id,
            &claim.source,
            &claim.event_type,
            EventStatus::Received,
            claim.now,
            claim.now,
            claim.expires_at,
        );
        rows.insert(
            claim.event_id.clone(),
            Row::new(record, Some(claim.token.clone()), claim.now),
        );
        Ok(ClaimOutcome::Claimed)
    }

    async fn mark_queued(
        &self,
        event_id: &EventId,
        token: &str,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let mut rows = self.lock();
        match rows.get_mut(event_id) {
            Some(row)
                if row.record.status == EventStatus::Received
                    && row.claim_token.as_deref() == Some(token) =>
            {
                row.record.status = EventStatus::Queued;
                row.record.updated_at = now;
                Ok(())
            }
            // Marked before by this very call: its answer was lost and the call retried.
            Some(row)
                if row.record.status == EventStatus::Queued
                    && row.claim_token.as_deref() == Some(token) =>
            {
                Ok(())
            }
            _ => Err(LedgerError::Conflict(format!(
                "{event_id} is not a received event claimed by this token"
            ))),
        }
    }

    async fn release(&self, event_id: &EventId, token: &str) -> Result<(), LedgerError> {
        let mut rows = self.lock();
        match rows.get(event_id) {
            Some(row)
                if row.record.status == EventStatus::Received
                    && row.claim_token.as_deref() == Some(token) =>
            {
                rows.remove(event_id);
                Ok(())
            }
            // Released before by this very call (or never claimed): nothing is claimed.
            None => Ok(()),
            _ => Err(LedgerError::Conflict(format!(
                "{event_id} is not a received event claimed by this token"
            ))),
        }
    }

    async fn start_attempt(&self, start: &AttemptStart) -> Result<StartOutcome, LedgerError> {
        let mut rows = self.lock();
        let row = rows.entry(start.event_id.clone()).or_insert_with(|| {
            let record = new_record(
                &start.event_id,
                &start.source,
                &start.event_type,
                EventStatus::Queued,
                start.received_at,
                start.now,
                start.expires_at,
            );
            Row::new(record, None, start.received_at)
        });
        if row.record.status == EventStatus::Processed {
            return Ok(StartOutcome::AlreadyProcessed);
        }
        if start.generation < row.record.generation {
            return Ok(StartOutcome::Superseded {
                current: row.record.generation,
            });
        }
        if !row.holds_ticket(start.ticket.as_deref(), start.generation) {
            return Ok(StartOutcome::Stale);
        }
        match (row.record.status, row.lease_until) {
            (EventStatus::Processing, Some(until)) if until >= start.now => {
                // This very start, applied before: its answer was lost and the call retried.
                if row.lease_token.as_deref() == Some(start.lease_token.as_str()) {
                    return Ok(StartOutcome::Started {
                        attempt: row.record.attempt_count,
                    });
                }
                return Ok(StartOutcome::Leased { until });
            }
            _ => {}
        }
        row.record.status = EventStatus::Processing;
        row.record.next_attempt_at = None;
        row.record.attempt_count += 1;
        row.record.updated_at = start.now;
        row.lease_until = Some(start.lease_until);
        row.lease_token = Some(start.lease_token.clone());
        row.record.generation = start.generation;
        if let (None, Some(payload)) = (&row.record.payload, &start.payload) {
            row.record.payload = Some(payload.info.clone());
            row.inline_payload = payload.inline.clone();
        }
        Ok(StartOutcome::Started {
            attempt: row.record.attempt_count,
        })
    }

    async fn finish_attempt(&self, end: &AttemptEnd) -> Result<(), LedgerError> {
        let mut rows = self.lock();
        match rows.get_mut(&end.event_id) {
            // Recorded before (a retried call, or a kept success recorded again): once is enough.
            Some(row) if row.finished_attempt == end.attempt.attempt => Ok(()),
            Some(row) if row.record.attempt_count == end.attempt.attempt => {
                row.record.status = end.status;
                row.record.updated_at = end.now;
                row.record.last_error = end.attempt.error.clone();
                row.record.attempts.push(end.attempt.clone());
                row.record.next_attempt_at = end.next_attempt_at;
                row.lease_until = None;
                row.lease_token = None;
                row.finished_attempt = end.attempt.attempt;
                Ok(())
            }
            Some(_) => Err(LedgerError::Conflict(format!(
                "{}: a later attempt than {} has started",
                end.event_id, end.attempt.attempt
            ))),
            None => Err(LedgerError::Conflict(format!(
                "{} is not in the ledger",
                end.event_id
            ))),
        }
    }

    async fn hand_off(&self, hand_off: &HandOff) -> Result<(), LedgerError> {
        let mut rows = self.lock();
        let Some(row) = rows.get_mut(&hand_off.event_id) else {
            return Err(LedgerError::Conflict(format!(
                "{} is not in the ledger",
                hand_off.event_id
            )));
        };
        if row
            .ticket
            .as_ref()
            .is_some_and(|(held, _)| held == &hand_off.to)
        {
            // This very hand-off, applied before: its answer was lost and the call retried.
            return Ok(());
        }
        if row.record.status == EventStatus::Processed
            || row.record.generation > hand_off.generation
            || !row.holds_ticket(hand_off.from.as_deref(), hand_off.generation)
        {
            return Err(LedgerError::Conflict(format!(
                "{}: this copy no longer holds the retry",
                hand_off.event_id
            )));
        }
        row.ticket = Some((hand_off.to.clone(), hand_off.generation));
        row.record.next_attempt_at = Some(hand_off.due);
        Ok(())
    }

    async fn get(&self, event_id: &EventId) -> Result<Option<EventRecord>, LedgerError> {
        Ok(self.lock().get(event_id).map(|row| row.record.clone()))
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<EventSummary>, LedgerError> {
        let matching: Vec<EventSummary> = self
            .lock()
            .values()
            .map(|row| &row.record)
            .filter(|r| query.status.is_none_or(|s| r.status == s))
            .filter(|r| query.source.as_ref().is_none_or(|s| &r.source == s))
            .map(EventRecord::summary)
            .collect();
        Ok(newest_first(matching, query.effective_limit()))
    }

    async fn list_page(&self, query: &PageQuery) -> Result<Page, LedgerError> {
        let limit = query.limit.clamp(1, MAX_LIST_LIMIT);
        let after = |s: &EventSummary| match &query.cursor {
            None => true,
            // Newest first: what comes after the cursor is older (or as old, with a smaller id).
            Some(c) => (s.received_at, &s.event_id) < (c.received_at, &c.event_id),
        };
        let mut matching: Vec<EventSummary> = self
            .lock()
            .values()
            .map(|row| &row.record)
            .filter(|r| r.status == query.status)
            .map(EventRecord::summary)
            .filter(|s| after(s) && page_matches(query, s))
            .collect();
        matching = newest_first(matching, limit + 1);
        let more = matching.len() > limit;
        matching.truncate(limit);
        let next = more.then(|| matching.last()).flatten().map(|s| Cursor {
            received_at: s.received_at,
            event_id: s.event_id.clone(),
        });
        Ok(Page {
            events: matching,
            next,
        })
    }

    async fn inline_payload(&self, event_id: &EventId) -> Result<Option<Bytes>, LedgerError> {
        Ok(self
            .lock()
            .get(event_id)
            .and_then(|row| row.inline_payload.clone()))
    }

    async fn begin_replay(&self, replay: &ReplayStart) -> Result<ReplayOutcome, LedgerError> {
        let mut rows = self.lock();
        let Some(row) = rows.get_mut(&replay.event_id) else {
            return Ok(ReplayOutcome::NotFound);
        };
        if row.replay_token.as_deref() == Some(replay.token.as_str()) {
            // This very replay, applied before: its answer was lost and the call retried.
            return Ok(ReplayOutcome::Started {
                generation: row.record.generation,
                previous: row.replay_previous.unwrap_or(EventStatus::Processed),
            });
        }
        if replay.run.is_some() && row.replay_run == replay.run {
            return Ok(ReplayOutcome::AlreadyInRun);
        }
        let stale_replay = row.record.status == EventStatus::Queued
            && row.replayed_at.is_some_and(|at| at < replay.stale_before);
        let previous = row.record.status;
        match previous {
            EventStatus::Processed | EventStatus::Failed | EventStatus::DeadLettered => {}
            _ if stale_replay => {}
            status => return Ok(ReplayOutcome::InProgress(status)),
        }
        if row.record.generation != replay.expected_generation {
            return Ok(ReplayOutcome::Superseded {
                current: row.record.generation,
            });
        }
        row.record.generation += 1;
        row.record.status = EventStatus::Queued;
        row.record.replays += 1;
        row.record.updated_at = replay.now;
        row.record.history.push(replay.entry.clone());
        row.lease_until = None;
        row.lease_token = None;
        row.replay_token = Some(replay.token.clone());
        row.replay_run = replay.run.clone();
        row.replayed_at = Some(replay.now);
        row.replay_previous = Some(previous);
        Ok(ReplayOutcome::Started {
            generation: row.record.generation,
            previous,
        })
    }

    async fn undo_replay(&self, undo: &ReplayUndo) -> Result<(), LedgerError> {
        let mut rows = self.lock();
        match rows.get_mut(&undo.event_id) {
            Some(row)
                if row.replay_token.as_deref() == Some(undo.token.as_str())
                    && row.record.generation == undo.generation
                    && row.record.status == EventStatus::Queued =>
            {
                row.record.generation -= 1;
                row.record.status = undo.restore;
                row.record.replays = row.record.replays.saturating_sub(1);
                row.record.updated_at = undo.now;
                row.record.history.push(undo.entry.clone());
                row.replay_token = None;
                row.replay_run = None;
                row.replayed_at = None;
                row.replay_previous = None;
                Ok(())
            }
            _ => Err(LedgerError::Conflict(format!(
                "{}: not queued by this replay",
                undo.event_id
            ))),
        }
    }

    async fn add_history(
        &self,
        event_id: &EventId,
        entry: &HistoryEntry,
        token: &str,
    ) -> Result<bool, LedgerError> {
        let mut rows = self.lock();
        let Some(row) = rows.get_mut(event_id) else {
            return Ok(false);
        };
        if row.history_tokens.insert(token.to_owned()) {
            row.record.history.push(entry.clone());
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::envelope::SourceName;
    use crate::ledger::MAX_LIST_LIMIT;

    fn claim_at(n: usize, now: Timestamp, window: Duration) -> Claim {
        Claim {
            event_id: EventId::parse(&format!("demo:sweep-{n}")).unwrap(),
            source: SourceName::parse("demo").unwrap(),
            event_type: "t".into(),
            now,
            expires_at: now.plus(window),
            timeout: Duration::from_secs(30),
            token: "tok".into(),
        }
    }

    #[tokio::test]
    async fn rows_past_their_dedup_window_are_forgotten() {
        let ledger = MemoryLedger::new();
        let window = Duration::from_secs(60);
        let t0 = Timestamp::from_secs(1_000);
        for n in 0..SWEEP_EVERY - 1 {
            ledger.claim(&claim_at(n, t0, window)).await.unwrap();
        }
        assert_eq!(ledger.len(), SWEEP_EVERY - 1);
        // Inside the window nothing is dropped, even at a sweep.
        ledger
            .claim(&claim_at(SWEEP_EVERY, t0.plus(window), window))
            .await
            .unwrap();
        assert_eq!(ledger.len(), SWEEP_EVERY);
        // Past it, the next sweep keeps only what is still inside its window.
        let later = t0.plus(window + Duration::from_secs(1));
        for n in 0..SWEEP_EVERY {
            ledger
                .claim(&claim_at(SWEEP_EVERY + 1 + n, later, window))
                .await
                .unwrap();
        }
        assert_eq!(
            ledger.len(),
            SWEEP_EVERY + 1,
            "the first window's rows are gone"
        );
        // An id forgotten with its window is a new event again, as on DynamoDB.
        assert_eq!(
            ledger.claim(&claim_at(0, later, window)).await.unwrap(),
            ClaimOutcome::Claimed
        );
    }

    #[tokio::test]
    async fn listing_is_capped_at_the_maximum_limit() {
        let ledger = MemoryLedger::new();
        for n in 0..(MAX_LIST_LIMIT as i64 + 5) {
            let now = Timestamp::from_millis(n);
            let claim = Claim {
                event_id: EventId::parse(&format!("demo:{n}")).unwrap(),
                source: SourceName::parse("demo").unwrap(),
                event_type: "t".into(),
                now,
                expires_at: now.plus(Duration::from_secs(60)),
                timeout: Duration::from_secs(30),
                token: "tok".into(),
            };
            ledger.claim(&claim).await.unwrap();
        }
        let query = ListQuery {
            limit: 10_000,
            ..ListQuery::default()
        };
        let listed = ledger.list(&query).await.unwrap();
        assert_eq!(listed.len(), MAX_LIST_LIMIT);
        assert_eq!(listed[0].event_id.as_str(), "demo:104");
        assert_eq!(listed[0].status, EventStatus::Received);
    }
}
