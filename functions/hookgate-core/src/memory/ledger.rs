//! `MemoryLedger`: the ledger in a mutex, with exactly the DynamoDB ledger's conditions.
//!
//! Like the DynamoDB table's TTL, it forgets events whose dedup window has ended: every
//! [`SWEEP_EVERY`] claims it drops the rows past their `expires_at`, so a long-running local
//! stack holds only the events of one dedup window, not every event it ever saw.
//!
//! It also counts its writes as DynamoDB would meter them ([`LedgerLimits`], DynamoDB's values
//! by default): each write (a failed conditional write too) is one write to the table's
//! partition key value, the event id, and a write beyond [`LedgerLimits::table_key_writes_per_sec`]
//! in one second fails as DynamoDB's throttling does ([`LedgerError::Unavailable`], which the
//! cores retry as any transient failure); each applied write that changes what the `by-status`
//! index holds writes that index — out of the old status's partition and into the new one's
//! (see [`crate::status_index`]) — and an index write beyond
//! [`LedgerLimits::index_partition_writes`] in one [`LedgerLimits::index_window`] (a second, as
//! DynamoDB meters) is counted as throttled (on AWS the index's back-pressure would then
//! throttle the table's writes). Time is the ledger's [`Clock`]'s.
//!
//! The index's window may be longer than a second for a simulation scaled down by a factor
//! `s`: with rates `s` times lower, writes counted over `1/s` seconds against the full-scale
//! limit have the same distribution as a second's at full scale, so a scaled run sees the
//! bursts a full-scale one would (a limit scaled to `1000 · s` per second would not: a handful
//! of writes landing in one second would look like a hot partition).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::envelope::EventId;
use crate::ledger::{
    listing_order, AttemptEnd, AttemptStart, Claim, ClaimOutcome, Cursor, EventRecord, EventStatus,
    EventSummary, HandOff, HistoryEntry, Ledger, LedgerError, ListQuery, Page, PageQuery,
    ReplayOutcome, ReplayStart, ReplayUndo, StartOutcome, MAX_LIST_LIMIT,
};
use crate::status_index::status_partition;

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
        destination: crate::ledger::destination_of(event_id, None),
        deliveries: Vec::new(),
    }
}

/// Claims between two sweeps of expired rows.
pub const SWEEP_EVERY: usize = 1024;

/// Writes per second a DynamoDB partition key value takes (on-demand or provisioned): 1,000
/// write units.
pub const DYNAMODB_PARTITION_WRITES_PER_SEC: u32 = 1_000;

/// The write limits a [`MemoryLedger`] meters against. The defaults are DynamoDB's; tests may
/// use small ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerLimits {
    /// Writes per second to one partition key value of the table (one event id); beyond, a
    /// write fails as throttled.
    pub table_key_writes_per_sec: u32,
    /// Writes to one partition key value of the `by-status` index in one
    /// [`LedgerLimits::index_window`]; beyond, the write is counted as throttled.
    pub index_partition_writes: u32,
    /// The window the index's writes are counted over: a second (DynamoDB's), or `1/s`
    /// seconds for a simulation at scale `s` (see the module documentation).
    pub index_window: Duration,
}

impl Default for LedgerLimits {
    fn default() -> Self {
        Self {
            table_key_writes_per_sec: DYNAMODB_PARTITION_WRITES_PER_SEC,
            index_partition_writes: DYNAMODB_PARTITION_WRITES_PER_SEC,
            index_window: Duration::from_secs(1),
        }
    }
}

/// What a [`MemoryLedger`] has written and throttled. The peaks count from the last
/// [`MemoryLedger::reset_peaks`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerCounters {
    /// Writes to the table (failed conditional writes included, throttled ones not).
    pub table_writes: u64,
    /// Writes to the `by-status` index (a status change is two).
    pub index_writes: u64,
    /// Table writes refused as throttled (hot partition key).
    pub table_throttles: u64,
    /// Index writes over the per-partition limit: what DynamoDB would have throttled.
    pub index_throttles: u64,
    /// Most writes to the table in one second.
    pub peak_table_writes_per_sec: u64,
    /// Most writes to one index partition in one index window.
    pub peak_index_partition_writes: u32,
    /// The index partition of that peak.
    pub peak_index_partition: Option<String>,
}

/// The current second's table writes and the current window's index writes.
#[derive(Debug, Default)]
struct Metering {
    second: i64,
    table: u64,
    per_key: HashMap<EventId, u32>,
    index_window: i64,
    per_index_partition: HashMap<String, u32>,
    counters: LedgerCounters,
}

impl Metering {
    fn roll_table(&mut self, second: i64) {
        if second != self.second {
            self.second = second;
            self.table = 0;
            self.per_key.clear();
        }
    }

    fn roll_index(&mut self, window: i64) {
        if window != self.index_window {
            self.index_window = window;
            self.per_index_partition.clear();
        }
    }
}

/// An in-process ledger for the local stack and fast tests.
#[derive(Debug)]
pub struct MemoryLedger {
    rows: Mutex<HashMap<EventId, Row>>,
    claims: AtomicUsize,
    limits: LedgerLimits,
    metering: Mutex<Metering>,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryLedger {
    fn default() -> Self {
        Self {
            rows: Mutex::default(),
            claims: AtomicUsize::default(),
            limits: LedgerLimits::default(),
            metering: Mutex::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl MemoryLedger {
    /// An empty ledger with DynamoDB's limits, metering by the wall clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same ledger metering against `limits`.
    pub fn with_limits(mut self, limits: LedgerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The same ledger metering its seconds by `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// What it has written and throttled.
    pub fn counters(&self) -> LedgerCounters {
        self.meter().counters.clone()
    }

    /// Starts new peaks: the peaks of [`LedgerCounters`] count from now on.
    pub fn reset_peaks(&self) {
        let mut m = self.meter();
        m.counters.peak_table_writes_per_sec = 0;
        m.counters.peak_index_partition_writes = 0;
        m.counters.peak_index_partition = None;
    }

    fn meter(&self) -> std::sync::MutexGuard<'_, Metering> {
        // Counters only: a poisoned lock holds counts as good as any.
        self.metering.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Meters one write to the table under `key`; refuses it as DynamoDB's throttling would
    /// when the key has had its writes this second.
    fn admit(&self, key: &EventId) -> Result<(), LedgerError> {
        let second = self.clock.now().as_secs();
        let mut m = self.meter();
        m.roll_table(second);
        let limit = self.limits.table_key_writes_per_sec;
        let count = m.per_key.entry(key.clone()).or_default();
        if *count >= limit {
            m.counters.table_throttles += 1;
            return Err(LedgerError::Unavailable(format!(
                "throttled: more than {limit} writes/s to the partition key {key} \
                 (ProvisionedThroughputExceededException)"
            )));
        }
        *count += 1;
        m.table += 1;
        m.counters.table_writes += 1;
        m.counters.peak_table_writes_per_sec = m.counters.peak_table_writes_per_sec.max(m.table);
        Ok(())
    }

    /// Meters the index writes of an applied write that took `event_id` from `before` to
    /// `after` (`None`: no item).
    fn index(&self, event_id: &EventId, before: Option<EventStatus>, after: Option<EventStatus>) {
        let before = before.map(|s| status_partition(s, event_id));
        let mut after = after.map(|s| status_partition(s, event_id));
        if after.is_some() && after == before {
            // The same partition: the entry is updated in place, one write.
            after = None;
        }
        if before.is_none() && after.is_none() {
            return;
        }
        let window_ms = i64::try_from(self.limits.index_window.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let window = self.clock.now().as_millis().div_euclid(window_ms);
        let limit = self.limits.index_partition_writes;
        let mut m = self.meter();
        m.roll_index(window);
        for partition in before.into_iter().chain(after) {
            // Every write of an event goes through here: a partition's name is copied only the
            // first time in a window it is written, or when it makes a new peak.
            let count = match m.per_index_partition.get_mut(partition.as_str()) {
                Some(count) => {
                    *count += 1;
                    *count
                }
                None => {
                    m.per_index_partition.insert(partition.clone(), 1);
                    1
                }
            };
            m.counters.index_writes += 1;
            if count > limit {
                m.counters.index_throttles += 1;
            }
            if count > m.counters.peak_index_partition_writes {
                m.counters.peak_index_partition_writes = count;
                if m.counters.peak_index_partition.as_deref() != Some(partition.as_str()) {
                    m.counters.peak_index_partition = Some(partition);
                }
            }
        }
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
        self.admit(&claim.event_id)?;
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
        let before = rows
            .insert(
                claim.event_id.clone(),
                Row::new(record, Some(claim.token.clone()), claim.now),
            )
            .map(|row| row.record.status);
        self.index(&claim.event_id, before, Some(EventStatus::Received));
        Ok(ClaimOutcome::Claimed)
    }

    async fn release(&self, event_id: &EventId, token: &str) -> Result<(), LedgerError> {
        self.admit(event_id)?;
        let mut rows = self.lock();
        match rows.get(event_id) {
            Some(row)
                if row.record.status == EventStatus::Received
                    && row.claim_token.as_deref() == Some(token) =>
            {
                rows.remove(event_id);
                self.index(event_id, Some(EventStatus::Received), None);
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
        self.admit(&start.event_id)?;
        let mut rows = self.lock();
        let before = rows.get(&start.event_id).map(|row| row.record.status);
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
        if start.destination.is_some() {
            row.record.destination = start.destination.clone();
        }
        if let (None, Some(payload)) = (&row.record.payload, &start.payload) {
            row.record.payload = Some(payload.info.clone());
            row.inline_payload = payload.inline.clone();
        }
        self.index(&start.event_id, before, Some(EventStatus::Processing));
        Ok(StartOutcome::Started {
            attempt: row.record.attempt_count,
        })
    }

    async fn finish_attempt(&self, end: &AttemptEnd) -> Result<(), LedgerError> {
        self.admit(&end.event_id)?;
        let mut rows = self.lock();
        match rows.get_mut(&end.event_id) {
            // Recorded before (a retried call, or a kept success recorded again): once is enough.
            Some(row) if row.finished_attempt == end.attempt.attempt => Ok(()),
            Some(row) if row.record.attempt_count == end.attempt.attempt => {
                self.index(&end.event_id, Some(row.record.status), Some(end.status));
                row.record.status = end.status;
                row.record.updated_at = end.now;
                row.record.last_error = end.attempt.error.clone();
                row.record.attempts.push(end.attempt.clone());
                row.record.next_attempt_at = end.next_attempt_at;
                if !end.deliveries.is_empty() {
                    row.record.deliveries = end.deliveries.clone();
                }
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
        let rows = self.lock();
        let matching = rows
            .values()
            .map(|row| &row.record)
            .filter(|r| query.status.is_none_or(|s| r.status == s))
            .filter(|r| query.source.as_ref().is_none_or(|s| &r.source == s));
        Ok(newest_summaries(matching, query.effective_limit()))
    }

    async fn list_page(&self, query: &PageQuery) -> Result<Page, LedgerError> {
        let limit = query.limit.clamp(1, MAX_LIST_LIMIT);
        let after = |r: &EventRecord| match &query.cursor {
            None => true,
            // Newest first: what comes after the cursor is older (or as old, with a smaller id).
            Some(c) => (r.received_at, &r.event_id) < (c.received_at, &c.event_id),
        };
        let rows = self.lock();
        let matching = rows.values().map(|row| &row.record).filter(|r| {
            r.status == query.status
                && after(r)
                && query.admits(
                    r.received_at,
                    &r.source,
                    &r.event_type,
                    r.destination.as_ref(),
                )
        });
        let mut matching = newest_summaries(matching, limit + 1);
        drop(rows);
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
        self.admit(&replay.event_id)?;
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
        self.index(&replay.event_id, Some(previous), Some(EventStatus::Queued));
        Ok(ReplayOutcome::Started {
            generation: row.record.generation,
            previous,
        })
    }

    async fn undo_replay(&self, undo: &ReplayUndo) -> Result<(), LedgerError> {
        self.admit(&undo.event_id)?;
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
                self.index(
                    &undo.event_id,
                    Some(EventStatus::Queued),
                    Some(undo.restore),
                );
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
        // The history is not in the index: a table write only.
        self.admit(event_id)?;
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

/// The newest `limit` of `records` as summaries, in the listing order; only the kept ones are
/// copied. Every page of a listing scans the whole map, so a page of a large local ledger
/// (100,000 events) costs comparisons, not a copy and a sort of every match.
fn newest_summaries<'a>(
    records: impl Iterator<Item = &'a EventRecord>,
    limit: usize,
) -> Vec<EventSummary> {
    let newest = |a: &&EventRecord, b: &&EventRecord| {
        listing_order((a.received_at, &a.event_id), (b.received_at, &b.event_id))
    };
    if limit == 0 {
        return Vec::new();
    }
    let mut kept: Vec<&EventRecord> = records.collect();
    if kept.len() > limit {
        kept.select_nth_unstable_by(limit - 1, newest);
        kept.truncate(limit);
    }
    kept.sort_unstable_by(newest);
    kept.into_iter().map(EventRecord::summary).collect()
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

    /// `count` numbers for [`claim_at`] whose event ids share one status index shard, and
    /// that shard (the index counts writes per `status#shard` partition).
    fn one_shard(count: usize) -> (Vec<usize>, u32) {
        let shard_of = |n: usize| {
            let claim = claim_at(n, Timestamp::from_secs(0), Duration::ZERO);
            crate::status_index::shard_of(&claim.event_id)
        };
        let shard = shard_of(0);
        let numbers = (0..)
            .filter(|n| shard_of(*n) == shard)
            .take(count)
            .collect();
        (numbers, shard)
    }

    /// The processor's first take of `claim`'s event: `received` → `processing`.
    fn take(claim: &Claim, now: Timestamp) -> AttemptStart {
        AttemptStart {
            destination: None,
            event_id: claim.event_id.clone(),
            source: claim.source.clone(),
            event_type: claim.event_type.clone(),
            received_at: claim.now,
            expires_at: claim.expires_at,
            now,
            lease_until: now.plus(Duration::from_secs(60)),
            lease_token: "lease".into(),
            generation: 0,
            payload: None,
            ticket: None,
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
    async fn a_hot_partition_key_is_throttled_as_dynamodb_does_and_recovers_next_second() {
        let clock = Arc::new(crate::clock::ManualClock::new(Timestamp::from_secs(1_000)));
        let limits = LedgerLimits {
            table_key_writes_per_sec: 3,
            ..LedgerLimits::default()
        };
        let ledger = MemoryLedger::new()
            .with_limits(limits)
            .with_clock(clock.clone());
        let claim = claim_at(1, clock.now(), Duration::from_secs(60));
        assert_eq!(ledger.claim(&claim).await.unwrap(), ClaimOutcome::Claimed);
        // A provider's retries of one event: a failed conditional write is still a write.
        for _ in 0..2 {
            assert_eq!(ledger.claim(&claim).await.unwrap(), ClaimOutcome::Claimed);
        }
        let throttled = ledger.claim(&claim).await;
        assert!(
            matches!(&throttled, Err(LedgerError::Unavailable(e)) if e.contains("throttled")),
            "{throttled:?}"
        );
        // Another key is not affected.
        let other = claim_at(2, clock.now(), Duration::from_secs(60));
        assert_eq!(ledger.claim(&other).await.unwrap(), ClaimOutcome::Claimed);
        let counters = ledger.counters();
        assert_eq!((counters.table_writes, counters.table_throttles), (4, 1));
        assert_eq!(counters.peak_table_writes_per_sec, 4);
        clock.advance(Duration::from_secs(1));
        assert!(ledger
            .start_attempt(&take(&claim, clock.now()))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn status_changes_write_the_index_out_of_one_partition_and_into_another() {
        let clock = Arc::new(crate::clock::ManualClock::new(Timestamp::from_secs(1_000)));
        let limits = LedgerLimits {
            index_partition_writes: 2,
            ..LedgerLimits::default()
        };
        let ledger = MemoryLedger::new()
            .with_limits(limits)
            .with_clock(clock.clone());
        let (numbers, shard) = one_shard(3);
        for n in numbers {
            let claim = claim_at(n, clock.now(), Duration::from_secs(60));
            ledger.claim(&claim).await.unwrap();
            ledger
                .start_attempt(&take(&claim, clock.now()))
                .await
                .unwrap();
        }
        let counters = ledger.counters();
        // Three puts into `received#shard`, three moves `received#shard` → `processing#shard`.
        assert_eq!(counters.index_writes, 9);
        assert_eq!(counters.peak_index_partition_writes, 6);
        assert_eq!(
            counters.peak_index_partition,
            Some(format!("received#{shard}"))
        );
        // received#shard: 6 writes, 4 over the limit; processing#shard: 3 writes, 1 over.
        assert_eq!(counters.index_throttles, 5);
        // Counted, not refused: the table's writes went through.
        assert_eq!(counters.table_throttles, 0);
        ledger.reset_peaks();
        assert_eq!(ledger.counters().peak_index_partition_writes, 0);
        // A refused conditional write changes no index entry.
        let stale = claim_at(0, clock.now(), Duration::from_secs(60));
        assert!(ledger
            .release(&stale.event_id, "not-the-token")
            .await
            .is_err());
        assert_eq!(ledger.counters().index_writes, 9);
    }

    #[tokio::test]
    async fn index_writes_are_counted_over_the_configured_window() {
        let clock = Arc::new(crate::clock::ManualClock::new(Timestamp::from_secs(1_000)));
        let limits = LedgerLimits {
            index_partition_writes: 3,
            index_window: Duration::from_secs(10),
            ..LedgerLimits::default()
        };
        let ledger = MemoryLedger::new()
            .with_limits(limits)
            .with_clock(clock.clone());
        let (numbers, shard) = one_shard(5);
        // Three puts into `received#shard`, a second apart: one window, at the limit, not over.
        for n in &numbers[..3] {
            ledger
                .claim(&claim_at(*n, clock.now(), Duration::from_secs(60)))
                .await
                .unwrap();
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(ledger.counters().index_throttles, 0);
        // Another shard's partition counts on its own.
        let elsewhere = (0..)
            .find(|n| {
                let id = claim_at(*n, clock.now(), Duration::ZERO).event_id;
                crate::status_index::shard_of(&id) != shard
            })
            .unwrap();
        ledger
            .claim(&claim_at(elsewhere, clock.now(), Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(ledger.counters().index_throttles, 0, "another shard");
        ledger
            .claim(&claim_at(numbers[3], clock.now(), Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(ledger.counters().index_throttles, 1, "the fourth in 10 s");
        // The next window starts afresh.
        clock.advance(Duration::from_secs(10));
        ledger
            .claim(&claim_at(numbers[4], clock.now(), Duration::from_secs(60)))
            .await
            .unwrap();
        let counters = ledger.counters();
        assert_eq!(
            (
                counters.index_throttles,
                counters.peak_index_partition_writes
            ),
            (1, 4)
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
