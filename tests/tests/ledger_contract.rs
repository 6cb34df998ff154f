//! The `Ledger` contract: one suite, run against `MemoryLedger` and against `DynamoDbLedger` on
//! moto, so the local stack and AWS cannot drift apart.
//!
//! The ledger takes its time from its arguments, never from a clock, so the tests move time by
//! passing later timestamps. They start from a whole second so that `expires_at` (stored by
//! DynamoDB in whole seconds, the TTL format) round-trips exactly.

use std::sync::Arc;
use std::time::Duration;

use hookgate_core::clock::{Clock, SystemClock, Timestamp};
use hookgate_core::destination_policy::DestinationName;
use hookgate_core::envelope::{EventId, SourceName};
use hookgate_core::ledger::{
    Attempt, AttemptEnd, AttemptStart, Claim, ClaimOutcome, Cursor, EventRecord, EventStatus,
    EventSummary, HandOff, HistoryEntry, Ledger, LedgerError, ListQuery, PageQuery, PayloadInfo,
    PayloadStore, PayloadWrite, ReplayOutcome, ReplayStart, ReplayUndo, StartOutcome,
};
use hookgate_core::memory::MemoryLedger;

const DEDUP_WINDOW: Duration = Duration::from_secs(3600);
const CLAIM_TIMEOUT: Duration = Duration::from_secs(30);
const LEASE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Now, rounded down to a whole second.
fn t0() -> Timestamp {
    Timestamp::from_secs(SystemClock.now().as_secs())
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn new_id() -> EventId {
    EventId::parse(&format!("test:{}", uuid::Uuid::new_v4().simple())).unwrap()
}

fn source() -> SourceName {
    SourceName::parse("github").unwrap()
}

fn token() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn claim_at(id: &EventId, now: Timestamp, token: &str) -> Claim {
    Claim {
        event_id: id.clone(),
        source: source(),
        event_type: "push".into(),
        now,
        expires_at: now.plus(DEDUP_WINDOW),
        timeout: CLAIM_TIMEOUT,
        token: token.into(),
    }
}

fn start_at(id: &EventId, received_at: Timestamp, now: Timestamp) -> AttemptStart {
    AttemptStart {
        destination: None,
        ticket: None,
        event_id: id.clone(),
        source: source(),
        event_type: "push".into(),
        received_at,
        expires_at: received_at.plus(DEDUP_WINDOW),
        now,
        lease_until: now.plus(LEASE),
        lease_token: uuid::Uuid::new_v4().to_string(),
        generation: 0,
        payload: None,
    }
}

fn end_at(
    id: &EventId,
    attempt: u32,
    started: Timestamp,
    now: Timestamp,
    status: EventStatus,
    error: Option<&str>,
) -> AttemptEnd {
    AttemptEnd {
        deliveries: Vec::new(),
        next_attempt_at: None,
        event_id: id.clone(),
        attempt: Attempt {
            attempt,
            at: started,
            duration_ms: now.since(started).as_millis() as u64,
            success: error.is_none(),
            error: error.map(str::to_owned),
            note: None,
            url: None,
            status_code: None,
        },
        status,
        now,
    }
}

/// Claims `id` at `now` as the receiver does (it stays `received` until the processor takes
/// it); returns the token.
async fn claim_new(ledger: &dyn Ledger, id: &EventId, now: Timestamp) -> String {
    let tok = token();
    assert_eq!(
        ledger.claim(&claim_at(id, now, &tok)).await.unwrap(),
        ClaimOutcome::Claimed
    );
    tok
}

/// A source name no other test uses, so a listing sees only this test's events even on a
/// shared table.
fn unique_source() -> SourceName {
    SourceName::parse(&format!(
        "list-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))
    .unwrap()
}

/// A new event from `source`, received at `at`, taken to `status` through the ledger's own
/// operations (everything happens at `at`; `failed` and `dead_lettered` after one attempt that
/// failed with "boom", `processed` after one that succeeded, `queued` replayed after that).
async fn event_in(
    ledger: &dyn Ledger,
    source: &SourceName,
    at: Timestamp,
    status: EventStatus,
) -> EventId {
    let id = new_id();
    let tok = token();
    let claim = Claim {
        source: source.clone(),
        ..claim_at(&id, at, &tok)
    };
    assert_eq!(ledger.claim(&claim).await.unwrap(), ClaimOutcome::Claimed);
    if status == EventStatus::Received {
        return id;
    }
    let start = AttemptStart {
        source: source.clone(),
        ..start_at(&id, at, at)
    };
    assert_eq!(
        ledger.start_attempt(&start).await.unwrap(),
        StartOutcome::Started { attempt: 1 }
    );
    if status == EventStatus::Processing {
        return id;
    }
    // Only a replay (or a redrive) makes an event `queued`: processed first, then replayed.
    let settled = match status {
        EventStatus::Queued => EventStatus::Processed,
        other => other,
    };
    let error = (settled != EventStatus::Processed).then_some("boom");
    ledger
        .finish_attempt(&end_at(&id, 1, at, at, settled, error))
        .await
        .unwrap();
    if status == EventStatus::Queued {
        let outcome = ledger
            .begin_replay(&replay_start(&id, 0, at, None))
            .await
            .unwrap();
        assert!(
            matches!(outcome, ReplayOutcome::Started { .. }),
            "{outcome:?}"
        );
    }
    id
}

async fn list(
    ledger: &dyn Ledger,
    status: Option<EventStatus>,
    source: &SourceName,
    limit: usize,
) -> Vec<EventSummary> {
    ledger
        .list(&ListQuery {
            status,
            source: Some(source.clone()),
            limit,
        })
        .await
        .unwrap()
}

fn ids(listed: &[EventSummary]) -> Vec<EventId> {
    listed.iter().map(|s| s.event_id.clone()).collect()
}

fn assert_conflict<T: std::fmt::Debug>(r: Result<T, LedgerError>) {
    assert!(
        matches!(r, Err(LedgerError::Conflict(_))),
        "expected Conflict, got {r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------------------------

async fn claim_records_a_received_event(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    let tok = token();
    assert_eq!(
        ledger.claim(&claim_at(&id, now, &tok)).await.unwrap(),
        ClaimOutcome::Claimed
    );
    let record = ledger
        .get(&id)
        .await
        .unwrap()
        .expect("claimed event is in the ledger");
    assert_eq!(
        record,
        EventRecord {
            deliveries: Vec::new(),
            destination: None,
            next_attempt_at: None,
            event_id: id.clone(),
            source: source(),
            event_type: "push".into(),
            status: EventStatus::Received,
            received_at: now,
            updated_at: now,
            expires_at: now.plus(DEDUP_WINDOW),
            attempt_count: 0,
            attempts: vec![],
            last_error: None,
            generation: 0,
            replays: 0,
            history: vec![],
            payload: None,
        }
    );
}

async fn claim_then_duplicate(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    let tok = token();
    assert_eq!(
        ledger.claim(&claim_at(&id, now, &tok)).await.unwrap(),
        ClaimOutcome::Claimed
    );
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Received);
    assert_eq!(record.received_at, now);
    // The processor takes it: from then on the claim is settled.
    let later = now.plus(secs(2));
    ledger
        .start_attempt(&start_at(&id, now, later))
        .await
        .unwrap();
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Processing);

    // Same id again, any token, any time inside the window — even long after the claim timeout.
    for at in [now.plus(secs(3)), now.plus(secs(600))] {
        assert_eq!(
            ledger.claim(&claim_at(&id, at, &token())).await.unwrap(),
            ClaimOutcome::Duplicate(EventStatus::Processing)
        );
    }
    // The duplicate changed nothing, and the claim can no longer be released.
    assert_eq!(ledger.get(&id).await.unwrap().unwrap(), record);
    assert_conflict(ledger.release(&id, &tok).await);
    assert_eq!(ledger.get(&id).await.unwrap().unwrap(), record);
}

async fn duplicate_reports_the_current_status(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    claim_new(ledger.as_ref(), &id, now).await;
    let s1 = now.plus(secs(1));
    assert_eq!(
        ledger.start_attempt(&start_at(&id, now, s1)).await.unwrap(),
        StartOutcome::Started { attempt: 1 }
    );
    assert_eq!(
        ledger.claim(&claim_at(&id, s1, &token())).await.unwrap(),
        ClaimOutcome::Duplicate(EventStatus::Processing)
    );
    let e1 = now.plus(secs(2));
    ledger
        .finish_attempt(&end_at(&id, 1, s1, e1, EventStatus::Failed, Some("boom")))
        .await
        .unwrap();
    assert_eq!(
        ledger.claim(&claim_at(&id, e1, &token())).await.unwrap(),
        ClaimOutcome::Duplicate(EventStatus::Failed)
    );
    ledger.start_attempt(&start_at(&id, now, e1)).await.unwrap();
    ledger
        .finish_attempt(&end_at(
            &id,
            2,
            e1,
            e1,
            EventStatus::DeadLettered,
            Some("boom"),
        ))
        .await
        .unwrap();
    assert_eq!(
        ledger.claim(&claim_at(&id, e1, &token())).await.unwrap(),
        ClaimOutcome::Duplicate(EventStatus::DeadLettered)
    );
    ledger.start_attempt(&start_at(&id, now, e1)).await.unwrap();
    ledger
        .finish_attempt(&end_at(&id, 3, e1, e1, EventStatus::Processed, None))
        .await
        .unwrap();
    assert_eq!(
        ledger.claim(&claim_at(&id, e1, &token())).await.unwrap(),
        ClaimOutcome::Duplicate(EventStatus::Processed)
    );
}

async fn claim_in_progress_is_not_a_duplicate(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    let first = token();
    assert_eq!(
        ledger.claim(&claim_at(&id, now, &first)).await.unwrap(),
        ClaimOutcome::Claimed
    );
    // Still `received`, and not stale: up to and including exactly `timeout` later.
    for at in [now, now.plus(secs(1)), now.plus(CLAIM_TIMEOUT)] {
        assert_eq!(
            ledger.claim(&claim_at(&id, at, &token())).await.unwrap(),
            ClaimOutcome::InProgress
        );
    }
    // The first claim still owns it: its own claim again is its own, and it may release it.
    assert_eq!(
        ledger.claim(&claim_at(&id, now, &first)).await.unwrap(),
        ClaimOutcome::Claimed
    );
    ledger.release(&id, &first).await.unwrap();
    assert_eq!(ledger.get(&id).await.unwrap(), None);
}

async fn stale_claim_is_taken_over(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    let first = token();
    assert_eq!(
        ledger.claim(&claim_at(&id, now, &first)).await.unwrap(),
        ClaimOutcome::Claimed
    );
    // One millisecond past the claim timeout, the claim is stale.
    let later = now.plus(CLAIM_TIMEOUT).plus(Duration::from_millis(1));
    let second = token();
    assert_eq!(
        ledger.claim(&claim_at(&id, later, &second)).await.unwrap(),
        ClaimOutcome::Claimed
    );
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Received);
    assert_eq!(record.received_at, later);
    // The first owner lost it; the second owns it.
    assert_conflict(ledger.release(&id, &first).await);
    assert_eq!(
        ledger.claim(&claim_at(&id, later, &second)).await.unwrap(),
        ClaimOutcome::Claimed
    );
    assert_eq!(
        ledger.claim(&claim_at(&id, later, &first)).await.unwrap(),
        ClaimOutcome::InProgress
    );
}

async fn expired_claim_is_reclaimable(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    claim_new(ledger.as_ref(), &id, now).await;
    ledger
        .start_attempt(&start_at(&id, now, now))
        .await
        .unwrap();
    ledger
        .finish_attempt(&end_at(&id, 1, now, now, EventStatus::Processed, None))
        .await
        .unwrap();
    let expires_at = now.plus(DEDUP_WINDOW);
    // At exactly `expires_at` it still deduplicates …
    assert_eq!(
        ledger
            .claim(&claim_at(&id, expires_at, &token()))
            .await
            .unwrap(),
        ClaimOutcome::Duplicate(EventStatus::Processed)
    );
    // … one millisecond later it does not: the id starts a fresh life.
    let later = expires_at.plus(Duration::from_millis(1));
    let tok = token();
    assert_eq!(
        ledger.claim(&claim_at(&id, later, &tok)).await.unwrap(),
        ClaimOutcome::Claimed
    );
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Received);
    assert_eq!(record.received_at, later);
    assert_eq!(record.attempt_count, 0);
    assert_eq!(record.attempts, vec![]);
    assert_eq!(
        ledger.claim(&claim_at(&id, later, &tok)).await.unwrap(),
        ClaimOutcome::Claimed
    );
}

async fn release_frees_the_id(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    let tok = token();
    assert_eq!(
        ledger.claim(&claim_at(&id, now, &tok)).await.unwrap(),
        ClaimOutcome::Claimed
    );
    // Another token may not release it, and trying changes nothing.
    assert_conflict(ledger.release(&id, "not-the-token").await);
    assert_eq!(
        ledger.get(&id).await.unwrap().unwrap().status,
        EventStatus::Received
    );

    ledger.release(&id, &tok).await.unwrap();
    assert_eq!(ledger.get(&id).await.unwrap(), None);
    // Released twice (a retried call whose first answer was lost): nothing is claimed, which
    // is what a release is for.
    ledger.release(&id, &tok).await.unwrap();
    // The provider's retry is a fresh claim, not a duplicate.
    assert_eq!(
        ledger
            .claim(&claim_at(&id, now.plus(secs(1)), &token()))
            .await
            .unwrap(),
        ClaimOutcome::Claimed
    );
}

async fn release_after_queued_conflicts(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let tok = claim_new(ledger.as_ref(), &id, t0()).await;
    // Put back on the queue by a replay after a first attempt: no longer the receiver's claim.
    ledger
        .start_attempt(&start_at(&id, t0(), t0()))
        .await
        .unwrap();
    assert_conflict(ledger.release(&id, &tok).await);
    assert_eq!(
        ledger.get(&id).await.unwrap().unwrap().status,
        EventStatus::Processing
    );
    // Unknown ids: nothing to release.
    let unknown = new_id();
    ledger.release(&unknown, &tok).await.unwrap();
    assert_eq!(ledger.get(&unknown).await.unwrap(), None);
}

async fn start_attempt_numbers_attempts(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    claim_new(ledger.as_ref(), &id, now).await;
    for n in 1..=3u32 {
        let s = now.plus(secs(u64::from(n) * 10));
        assert_eq!(
            ledger.start_attempt(&start_at(&id, now, s)).await.unwrap(),
            StartOutcome::Started { attempt: n }
        );
        let record = ledger.get(&id).await.unwrap().unwrap();
        assert_eq!(record.status, EventStatus::Processing);
        assert_eq!(record.attempt_count, n);
        assert_eq!(record.updated_at, s);
        // The row's own fields are kept, not overwritten by the start's.
        assert_eq!(record.received_at, now);
        ledger
            .finish_attempt(&end_at(
                &id,
                n,
                s,
                s.plus(secs(1)),
                EventStatus::Failed,
                Some("boom"),
            ))
            .await
            .unwrap();
    }
}

async fn live_lease_is_respected(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    claim_new(ledger.as_ref(), &id, now).await;
    let lease_until = now.plus(LEASE);
    assert_eq!(
        ledger
            .start_attempt(&start_at(&id, now, now))
            .await
            .unwrap(),
        StartOutcome::Started { attempt: 1 }
    );
    // Live up to and including `lease_until`.
    for at in [now, now.plus(secs(10)), lease_until] {
        assert_eq!(
            ledger.start_attempt(&start_at(&id, now, at)).await.unwrap(),
            StartOutcome::Leased { until: lease_until }
        );
    }
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(record.attempt_count, 1);
    assert_eq!(record.updated_at, now);
}

async fn expired_lease_is_taken_over(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    claim_new(ledger.as_ref(), &id, now).await;
    ledger
        .start_attempt(&start_at(&id, now, now))
        .await
        .unwrap();
    let later = now.plus(LEASE).plus(Duration::from_millis(1));
    assert_eq!(
        ledger
            .start_attempt(&start_at(&id, now, later))
            .await
            .unwrap(),
        StartOutcome::Started { attempt: 2 }
    );
    // The new lease is the new owner's.
    assert_eq!(
        ledger
            .start_attempt(&start_at(&id, now, later))
            .await
            .unwrap(),
        StartOutcome::Leased {
            until: later.plus(LEASE)
        }
    );
}

async fn processed_is_final(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    claim_new(ledger.as_ref(), &id, now).await;
    ledger
        .start_attempt(&start_at(&id, now, now))
        .await
        .unwrap();
    let done = now.plus(secs(1));
    ledger
        .finish_attempt(&end_at(&id, 1, now, done, EventStatus::Processed, None))
        .await
        .unwrap();
    let before = ledger.get(&id).await.unwrap().unwrap();
    for at in [now.plus(secs(2)), now.plus(LEASE).plus(secs(10))] {
        assert_eq!(
            ledger.start_attempt(&start_at(&id, now, at)).await.unwrap(),
            StartOutcome::AlreadyProcessed
        );
    }
    assert_eq!(ledger.get(&id).await.unwrap().unwrap(), before);
}

async fn finish_with_a_stale_attempt_conflicts(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    claim_new(ledger.as_ref(), &id, now).await;
    ledger
        .start_attempt(&start_at(&id, now, now))
        .await
        .unwrap();
    // The first consumer's lease runs out; a second one starts attempt 2.
    let later = now.plus(LEASE).plus(secs(1));
    assert_eq!(
        ledger
            .start_attempt(&start_at(&id, now, later))
            .await
            .unwrap(),
        StartOutcome::Started { attempt: 2 }
    );
    // The first consumer finishes late: refused, nothing recorded.
    assert_conflict(
        ledger
            .finish_attempt(&end_at(&id, 1, now, later, EventStatus::Processed, None))
            .await,
    );
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Processing);
    assert_eq!(record.attempts, vec![]);
    // A number from the future is refused too.
    assert_conflict(
        ledger
            .finish_attempt(&end_at(&id, 3, later, later, EventStatus::Processed, None))
            .await,
    );
    // The current attempt finishes.
    ledger
        .finish_attempt(&end_at(&id, 2, later, later, EventStatus::Processed, None))
        .await
        .unwrap();
    assert_eq!(
        ledger.get(&id).await.unwrap().unwrap().status,
        EventStatus::Processed
    );
}

async fn finish_unknown_event_conflicts(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    assert_conflict(
        ledger
            .finish_attempt(&end_at(&id, 1, now, now, EventStatus::Processed, None))
            .await,
    );
    // And did not create a row.
    assert_eq!(ledger.get(&id).await.unwrap(), None);
}

async fn finish_records_attempts_in_order(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    claim_new(ledger.as_ref(), &id, now).await;

    let s1 = now.plus(secs(1));
    ledger.start_attempt(&start_at(&id, now, s1)).await.unwrap();
    let e1 = s1.plus(Duration::from_millis(250));
    let mut end1 = end_at(
        &id,
        1,
        s1,
        e1,
        EventStatus::Failed,
        Some("upstream said 502 — «retry»"),
    );
    // A delivery attempt carries where it went and what the destination answered.
    end1.attempt.url = Some("https://service-b.example/hooks?x=1".into());
    end1.attempt.status_code = Some(502);
    ledger.finish_attempt(&end1).await.unwrap();
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Failed);
    assert_eq!(record.updated_at, e1);
    assert_eq!(record.attempt_count, 1);
    assert_eq!(record.attempts, vec![end1.attempt.clone()]);
    assert_eq!(
        record.last_error.as_deref(),
        Some("upstream said 502 — «retry»")
    );

    // The finished attempt released its lease: a redelivery may start at once, well before the
    // old lease would have run out.
    let s2 = e1.plus(secs(1));
    assert!(s2 < s1.plus(LEASE));
    assert_eq!(
        ledger.start_attempt(&start_at(&id, now, s2)).await.unwrap(),
        StartOutcome::Started { attempt: 2 }
    );
    let e2 = s2.plus(Duration::from_millis(40));
    let end2 = end_at(&id, 2, s2, e2, EventStatus::Processed, None);
    ledger.finish_attempt(&end2).await.unwrap();

    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(
        record,
        EventRecord {
            deliveries: Vec::new(),
            destination: None,
            next_attempt_at: None,
            event_id: id.clone(),
            source: source(),
            event_type: "push".into(),
            status: EventStatus::Processed,
            received_at: now,
            updated_at: e2,
            expires_at: now.plus(DEDUP_WINDOW),
            attempt_count: 2,
            attempts: vec![end1.attempt, end2.attempt],
            last_error: None,
            generation: 0,
            replays: 0,
            history: vec![],
            payload: None,
        }
    );
}

async fn dead_lettered_event_may_start_again(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    claim_new(ledger.as_ref(), &id, now).await;
    ledger
        .start_attempt(&start_at(&id, now, now))
        .await
        .unwrap();
    ledger
        .finish_attempt(&end_at(
            &id,
            1,
            now,
            now,
            EventStatus::DeadLettered,
            Some("gave up"),
        ))
        .await
        .unwrap();
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::DeadLettered);
    assert_eq!(record.last_error.as_deref(), Some("gave up"));
    // Redriven: it starts again, numbering on.
    assert_eq!(
        ledger
            .start_attempt(&start_at(&id, now, now.plus(secs(1))))
            .await
            .unwrap(),
        StartOutcome::Started { attempt: 2 }
    );
}

async fn get_unknown_is_none(ledger: Arc<dyn Ledger>) {
    assert_eq!(ledger.get(&new_id()).await.unwrap(), None);
}

async fn start_attempt_on_unknown_id_upserts(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let received = t0();
    let now = received.plus(secs(5));
    assert_eq!(
        ledger
            .start_attempt(&start_at(&id, received, now))
            .await
            .unwrap(),
        StartOutcome::Started { attempt: 1 }
    );
    assert_eq!(
        ledger.get(&id).await.unwrap(),
        Some(EventRecord {
            deliveries: Vec::new(),
            destination: None,
            next_attempt_at: None,
            event_id: id.clone(),
            source: source(),
            event_type: "push".into(),
            status: EventStatus::Processing,
            received_at: received,
            updated_at: now,
            expires_at: received.plus(DEDUP_WINDOW),
            attempt_count: 1,
            attempts: vec![],
            last_error: None,
            generation: 0,
            replays: 0,
            history: vec![],
            payload: None,
        })
    );
    // The row now deduplicates a late claim of the same id.
    assert_eq!(
        ledger.claim(&claim_at(&id, now, &token())).await.unwrap(),
        ClaimOutcome::Duplicate(EventStatus::Processing)
    );
    assert_eq!(
        ledger
            .start_attempt(&start_at(&id, received, now))
            .await
            .unwrap(),
        StartOutcome::Leased {
            until: now.plus(LEASE)
        }
    );
}

async fn start_attempt_on_a_received_claim(ledger: Arc<dyn Ledger>) {
    // The receiver makes no write after its enqueue: the processor starts a `received` claim.
    let id = new_id();
    let now = t0();
    let tok = token();
    ledger.claim(&claim_at(&id, now, &tok)).await.unwrap();
    assert_eq!(
        ledger
            .start_attempt(&start_at(&id, now, now.plus(secs(1))))
            .await
            .unwrap(),
        StartOutcome::Started { attempt: 1 }
    );
    // … and then the claim can no longer be released, nor taken over once stale.
    assert_conflict(ledger.release(&id, &tok).await);
    let stale = now.plus(CLAIM_TIMEOUT).plus(secs(1));
    assert_eq!(
        ledger.claim(&claim_at(&id, stale, &token())).await.unwrap(),
        ClaimOutcome::Duplicate(EventStatus::Processing)
    );
    assert_eq!(
        ledger.get(&id).await.unwrap().unwrap().status,
        EventStatus::Processing
    );
}

async fn list_by_status_is_newest_first(ledger: Arc<dyn Ledger>) {
    let src = unique_source();
    let t = t0();
    let l = ledger.as_ref();
    let q1 = event_in(l, &src, t, EventStatus::Queued).await;
    let q2 = event_in(l, &src, t.plus(secs(2)), EventStatus::Queued).await;
    let q3 = event_in(l, &src, t.plus(secs(1)), EventStatus::Queued).await;
    let done = event_in(l, &src, t.plus(secs(3)), EventStatus::Processed).await;
    let fresh = event_in(l, &src, t.plus(secs(4)), EventStatus::Received).await;
    let failed = event_in(l, &src, t.plus(secs(5)), EventStatus::Failed).await;

    let queued = list(l, Some(EventStatus::Queued), &src, 20).await;
    assert_eq!(ids(&queued), [q2.clone(), q3, q1]);
    // A summary is the record without its attempts.
    let record = ledger.get(&q2).await.unwrap().unwrap();
    assert_eq!(queued[0], record.summary());
    assert_eq!(queued[0].status, EventStatus::Queued);
    assert_eq!(queued[0].attempt_count, 1);

    let processed = list(l, Some(EventStatus::Processed), &src, 20).await;
    assert_eq!(ids(&processed), vec![done.clone()]);
    assert_eq!(
        processed[0],
        ledger.get(&done).await.unwrap().unwrap().summary()
    );
    assert_eq!(processed[0].attempt_count, 1);
    assert_eq!(processed[0].last_error, None);

    let failing = list(l, Some(EventStatus::Failed), &src, 20).await;
    assert_eq!(ids(&failing), [failed]);
    assert_eq!(failing[0].last_error.as_deref(), Some("boom"));
    assert_eq!(failing[0].event_type, "push");
    assert_eq!(failing[0].received_at, t.plus(secs(5)));

    assert_eq!(
        ids(&list(l, Some(EventStatus::Received), &src, 20).await),
        [fresh]
    );
    assert_eq!(list(l, Some(EventStatus::DeadLettered), &src, 20).await, []);
    assert_eq!(list(l, Some(EventStatus::Processing), &src, 20).await, []);
}

async fn list_filters_by_source(ledger: Arc<dyn Ledger>) {
    let (a, b) = (unique_source(), unique_source());
    let t = t0();
    let l = ledger.as_ref();
    let a1 = event_in(l, &a, t, EventStatus::Failed).await;
    let b1 = event_in(l, &b, t.plus(secs(1)), EventStatus::Failed).await;
    let a2 = event_in(l, &a, t.plus(secs(2)), EventStatus::Failed).await;
    let b2 = event_in(l, &b, t.plus(secs(3)), EventStatus::Failed).await;
    let a3 = event_in(l, &a, t.plus(secs(4)), EventStatus::Failed).await;
    let b3 = event_in(l, &b, t.plus(secs(5)), EventStatus::Processed).await;

    let from_a = list(l, Some(EventStatus::Failed), &a, 20).await;
    assert_eq!(ids(&from_a), [a3.clone(), a2.clone(), a1]);
    assert!(from_a.iter().all(|s| s.source == a));
    assert_eq!(
        ids(&list(l, Some(EventStatus::Failed), &b, 20).await),
        [b2.clone(), b1.clone()]
    );
    // With a limit: the newest of that source, not of the whole status.
    assert_eq!(
        ids(&list(l, Some(EventStatus::Failed), &a, 2).await),
        [a3, a2]
    );
    assert_eq!(ids(&list(l, None, &b, 20).await), [b3, b2, b1]);
    assert_eq!(
        list(l, Some(EventStatus::Failed), &unique_source(), 20).await,
        []
    );
}

async fn list_respects_the_limit(ledger: Arc<dyn Ledger>) {
    let src = unique_source();
    let t = t0();
    let mut newest_first = Vec::new();
    for n in 0..5 {
        let id = event_in(ledger.as_ref(), &src, t.plus(secs(n)), EventStatus::Queued).await;
        newest_first.insert(0, id);
    }
    let l = ledger.as_ref();
    for limit in [1, 2, 4, 5] {
        assert_eq!(
            ids(&list(l, Some(EventStatus::Queued), &src, limit).await),
            newest_first[..limit],
            "limit {limit}"
        );
        assert_eq!(
            ids(&list(l, None, &src, limit).await),
            newest_first[..limit],
            "limit {limit}, every status"
        );
    }
    assert_eq!(
        ids(&list(l, Some(EventStatus::Queued), &src, 100).await),
        newest_first
    );
    assert_eq!(list(l, Some(EventStatus::Queued), &src, 0).await, []);
    assert_eq!(list(l, None, &src, 0).await, []);
}

async fn list_without_status_merges_every_status(ledger: Arc<dyn Ledger>) {
    let src = unique_source();
    let t = t0();
    let l = ledger.as_ref();
    let dead = event_in(l, &src, t, EventStatus::DeadLettered).await;
    let queued = event_in(l, &src, t.plus(secs(1)), EventStatus::Queued).await;
    let processed = event_in(l, &src, t.plus(secs(2)), EventStatus::Processed).await;
    let processing = event_in(l, &src, t.plus(secs(3)), EventStatus::Processing).await;
    let failed = event_in(l, &src, t.plus(secs(4)), EventStatus::Failed).await;
    let received = event_in(l, &src, t.plus(secs(5)), EventStatus::Received).await;
    let queued_later = event_in(l, &src, t.plus(secs(6)), EventStatus::Queued).await;

    let all = list(l, None, &src, 20).await;
    assert_eq!(
        ids(&all),
        [
            queued_later.clone(),
            received.clone(),
            failed.clone(),
            processing,
            processed,
            queued,
            dead
        ]
    );
    assert_eq!(
        all.iter().map(|s| s.status).collect::<Vec<_>>(),
        [
            EventStatus::Queued,
            EventStatus::Received,
            EventStatus::Failed,
            EventStatus::Processing,
            EventStatus::Processed,
            EventStatus::Queued,
            EventStatus::DeadLettered,
        ]
    );
    // Truncated after the merge: the newest three across statuses.
    assert_eq!(
        ids(&list(l, None, &src, 3).await),
        [queued_later, received, failed]
    );
}

async fn list_follows_status_changes(ledger: Arc<dyn Ledger>) {
    let src = unique_source();
    let t = t0();
    let l = ledger.as_ref();
    let id = event_in(l, &src, t, EventStatus::Failed).await;
    let failed = list(l, Some(EventStatus::Failed), &src, 20).await;
    assert_eq!(ids(&failed), vec![id.clone()]);
    assert_eq!(failed[0].last_error.as_deref(), Some("boom"));

    // Redelivered: processing, then processed. It leaves the failed listing.
    let s2 = t.plus(secs(10));
    assert_eq!(
        ledger
            .start_attempt(&AttemptStart {
                source: src.clone(),
                ..start_at(&id, t, s2)
            })
            .await
            .unwrap(),
        StartOutcome::Started { attempt: 2 }
    );
    assert_eq!(list(l, Some(EventStatus::Failed), &src, 20).await, []);
    assert_eq!(
        ids(&list(l, Some(EventStatus::Processing), &src, 20).await),
        vec![id.clone()]
    );
    let e2 = s2.plus(secs(1));
    ledger
        .finish_attempt(&end_at(&id, 2, s2, e2, EventStatus::Processed, None))
        .await
        .unwrap();
    assert_eq!(list(l, Some(EventStatus::Failed), &src, 20).await, []);
    assert_eq!(list(l, Some(EventStatus::Processing), &src, 20).await, []);
    let processed = list(l, Some(EventStatus::Processed), &src, 20).await;
    assert_eq!(ids(&processed), vec![id.clone()]);
    assert_eq!(processed[0].attempt_count, 2);
    assert_eq!(processed[0].last_error, None);
    assert_eq!(processed[0].updated_at, e2);
    assert_eq!(processed[0].received_at, t);
    // Listed once across statuses, under its new status.
    let all = list(l, None, &src, 20).await;
    assert_eq!(ids(&all), [id]);
    assert_eq!(all[0].status, EventStatus::Processed);
}

// ---------------------------------------------------------------------------------------------
// Running the contract against each implementation
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Retried writes: the same call sent again after its first answer was lost
// ---------------------------------------------------------------------------------------------

async fn a_retried_claim_finds_its_own_token(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    let tok = token();
    let claim = claim_at(&id, now, &tok);
    assert_eq!(ledger.claim(&claim).await.unwrap(), ClaimOutcome::Claimed);
    // The same claim again: ours, not another request's claim in progress.
    assert_eq!(ledger.claim(&claim).await.unwrap(), ClaimOutcome::Claimed);
    assert_eq!(
        ledger.claim(&claim_at(&id, now, &token())).await.unwrap(),
        ClaimOutcome::InProgress
    );
    // Once the processor has taken it, even its own token's claim is a duplicate.
    ledger
        .start_attempt(&start_at(&id, now, now.plus(secs(1))))
        .await
        .unwrap();
    assert_eq!(
        ledger.claim(&claim).await.unwrap(),
        ClaimOutcome::Duplicate(EventStatus::Processing)
    );
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Processing);
}

async fn a_retried_start_takes_its_own_lease(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    claim_new(ledger.as_ref(), &id, now).await;
    let start = start_at(&id, now, now.plus(secs(1)));
    assert_eq!(
        ledger.start_attempt(&start).await.unwrap(),
        StartOutcome::Started { attempt: 1 }
    );
    // The same start again: the lease it already holds, the same attempt.
    let mut retried = start.clone();
    retried.now = now.plus(secs(2));
    assert_eq!(
        ledger.start_attempt(&retried).await.unwrap(),
        StartOutcome::Started { attempt: 1 }
    );
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.attempt_count),
        (EventStatus::Processing, 1)
    );
    // Another consumer's start is still refused by the live lease.
    assert_eq!(
        ledger
            .start_attempt(&start_at(&id, now, now.plus(secs(3))))
            .await
            .unwrap(),
        StartOutcome::Leased {
            until: start.lease_until
        }
    );
}

async fn a_retried_attempt_end_is_recorded_once(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    claim_new(ledger.as_ref(), &id, now).await;
    let s1 = now.plus(secs(1));
    ledger.start_attempt(&start_at(&id, now, s1)).await.unwrap();
    let failed = end_at(
        &id,
        1,
        s1,
        now.plus(secs(2)),
        EventStatus::Failed,
        Some("503"),
    );
    ledger.finish_attempt(&failed).await.unwrap();
    ledger.finish_attempt(&failed).await.unwrap();
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(record.attempts.len(), 1, "{:?}", record.attempts);
    assert_eq!(record.status, EventStatus::Failed);

    let s2 = now.plus(secs(3));
    assert_eq!(
        ledger.start_attempt(&start_at(&id, now, s2)).await.unwrap(),
        StartOutcome::Started { attempt: 2 }
    );
    let done = end_at(&id, 2, s2, now.plus(secs(4)), EventStatus::Processed, None);
    ledger.finish_attempt(&done).await.unwrap();
    ledger.finish_attempt(&done).await.unwrap();
    let record = ledger.get(&id).await.unwrap().unwrap();
    let numbers: Vec<u32> = record.attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(numbers, [1, 2]);
    assert_eq!(
        (record.status, record.last_error),
        (EventStatus::Processed, None)
    );
    // An end older than the last one recorded is refused as before.
    assert_conflict(ledger.finish_attempt(&failed).await);
}

// ---------------------------------------------------------------------------------------------
// Payloads, generations, replays, history, pages
// ---------------------------------------------------------------------------------------------

fn replay_start(id: &EventId, expected: u64, now: Timestamp, run: Option<&str>) -> ReplayStart {
    ReplayStart {
        event_id: id.clone(),
        expected_generation: expected,
        token: token(),
        run: run.map(str::to_owned),
        now,
        stale_before: now.minus(CLAIM_TIMEOUT),
        entry: HistoryEntry {
            at: now,
            kind: "replayed".into(),
            note: "by the contract suite".into(),
        },
    }
}

/// An event claimed, queued, started and finished with `status` at t0 + 1..2 s.
async fn finished(ledger: &dyn Ledger, id: &EventId, now: Timestamp, status: EventStatus) {
    claim_new(ledger, id, now).await;
    let s1 = now.plus(secs(1));
    ledger.start_attempt(&start_at(id, now, s1)).await.unwrap();
    let error = (status != EventStatus::Processed).then_some("boom");
    ledger
        .finish_attempt(&end_at(id, 1, s1, now.plus(secs(2)), status, error))
        .await
        .unwrap();
}

async fn the_first_start_records_the_payload_once(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    claim_new(ledger.as_ref(), &id, now).await;
    let inline = bytes::Bytes::from_static(b"\x78\x01compressed");
    let mut start = start_at(&id, now, now.plus(secs(1)));
    start.payload = Some(PayloadWrite {
        info: PayloadInfo {
            bytes: 1234,
            sha256: "ab".repeat(32),
            stored: PayloadStore::Inline,
        },
        inline: Some(inline.clone()),
    });
    ledger.start_attempt(&start).await.unwrap();
    // A later start with another payload changes nothing: the first one recorded stays.
    let mut later = start_at(&id, now, now.plus(secs(120)));
    later.payload = Some(PayloadWrite {
        info: PayloadInfo {
            bytes: 1,
            sha256: "cd".repeat(32),
            stored: PayloadStore::Archive,
        },
        inline: None,
    });
    ledger.start_attempt(&later).await.unwrap();
    let record = ledger.get(&id).await.unwrap().unwrap();
    let info = record.payload.unwrap();
    assert_eq!((info.bytes, info.stored), (1234, PayloadStore::Inline));
    assert_eq!(info.sha256, "ab".repeat(32));
    assert_eq!(ledger.inline_payload(&id).await.unwrap(), Some(inline));
    assert_eq!(ledger.inline_payload(&new_id()).await.unwrap(), None);
}

async fn a_replay_moves_the_generation_and_supersedes_older_messages(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    finished(ledger.as_ref(), &id, now, EventStatus::Processed).await;
    let at = now.plus(secs(10));
    assert_eq!(
        ledger
            .begin_replay(&replay_start(&id, 0, at, None))
            .await
            .unwrap(),
        ReplayOutcome::Started {
            generation: 1,
            previous: EventStatus::Processed
        }
    );
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.generation, record.replays),
        (EventStatus::Queued, 1, 1)
    );
    assert_eq!(record.history.len(), 1);
    assert_eq!(record.history[0].kind, "replayed");
    // A message of generation 0 (the original, late) is superseded; one of generation 1 runs.
    let mut stale = start_at(&id, now, at.plus(secs(1)));
    stale.generation = 0;
    assert_eq!(
        ledger.start_attempt(&stale).await.unwrap(),
        StartOutcome::Superseded { current: 1 }
    );
    let mut replayed = start_at(&id, now, at.plus(secs(2)));
    replayed.generation = 1;
    assert_eq!(
        ledger.start_attempt(&replayed).await.unwrap(),
        StartOutcome::Started { attempt: 2 }
    );
    // While it runs, or replayed again from an old read, a replay is refused.
    assert_eq!(
        ledger
            .begin_replay(&replay_start(&id, 1, at.plus(secs(3)), None))
            .await
            .unwrap(),
        ReplayOutcome::InProgress(EventStatus::Processing)
    );
    ledger
        .finish_attempt(&end_at(
            &id,
            2,
            at.plus(secs(2)),
            at.plus(secs(4)),
            EventStatus::Processed,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(
        ledger
            .begin_replay(&replay_start(&id, 0, at.plus(secs(5)), None))
            .await
            .unwrap(),
        ReplayOutcome::Superseded { current: 1 }
    );
    assert_eq!(
        ledger
            .begin_replay(&replay_start(&new_id(), 0, at, None))
            .await
            .unwrap(),
        ReplayOutcome::NotFound
    );
}

async fn a_retried_replay_and_its_undo_and_a_runs_repeat(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    finished(ledger.as_ref(), &id, now, EventStatus::DeadLettered).await;
    let at = now.plus(secs(10));
    let replay = replay_start(&id, 0, at, Some("run-1"));
    let started = ledger.begin_replay(&replay).await.unwrap();
    assert_eq!(
        started,
        ReplayOutcome::Started {
            generation: 1,
            previous: EventStatus::DeadLettered
        }
    );
    // The same call again (its answer lost): the same answer, nothing applied twice.
    assert_eq!(ledger.begin_replay(&replay).await.unwrap(), started);
    assert_eq!(ledger.get(&id).await.unwrap().unwrap().replays, 1);
    // Taken back: dead-lettered again, generation 0, and the history says why.
    let undo = ReplayUndo {
        event_id: id.clone(),
        token: replay.token.clone(),
        generation: 1,
        restore: EventStatus::DeadLettered,
        entry: HistoryEntry {
            at,
            kind: "replay_undone".into(),
            note: "queue down".into(),
        },
        now: at,
    };
    ledger.undo_replay(&undo).await.unwrap();
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.generation, record.replays),
        (EventStatus::DeadLettered, 0, 0)
    );
    let kinds: Vec<&str> = record.history.iter().map(|h| h.kind.as_str()).collect();
    assert_eq!(kinds, ["replayed", "replay_undone"]);
    assert_conflict(ledger.undo_replay(&undo).await);
    // A run that replayed it does not again; another run may.
    ledger
        .begin_replay(&replay_start(&id, 0, at, Some("run-2")))
        .await
        .unwrap();
    let mut runs_start = start_at(&id, now, at.plus(secs(1)));
    runs_start.generation = 1;
    ledger.start_attempt(&runs_start).await.unwrap();
    ledger
        .finish_attempt(&end_at(
            &id,
            2,
            at.plus(secs(1)),
            at.plus(secs(2)),
            EventStatus::DeadLettered,
            Some("x"),
        ))
        .await
        .unwrap();
    assert_eq!(
        ledger
            .begin_replay(&replay_start(&id, 1, at.plus(secs(3)), Some("run-2")))
            .await
            .unwrap(),
        ReplayOutcome::AlreadyInRun
    );
    assert!(matches!(
        ledger
            .begin_replay(&replay_start(&id, 1, at.plus(secs(3)), Some("run-3")))
            .await
            .unwrap(),
        ReplayOutcome::Started { generation: 2, .. }
    ));
}

async fn a_replay_that_never_reached_the_queue_is_taken_over_late(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    finished(ledger.as_ref(), &id, now, EventStatus::Processed).await;
    let at = now.plus(secs(10));
    ledger
        .begin_replay(&replay_start(&id, 0, at, None))
        .await
        .unwrap();
    // Still queued by that replay: refused inside the claim timeout, taken over after it.
    assert_eq!(
        ledger
            .begin_replay(&replay_start(&id, 1, at.plus(secs(5)), None))
            .await
            .unwrap(),
        ReplayOutcome::InProgress(EventStatus::Queued)
    );
    assert!(matches!(
        ledger
            .begin_replay(&replay_start(
                &id,
                1,
                at.plus(CLAIM_TIMEOUT + secs(1)),
                None
            ))
            .await
            .unwrap(),
        ReplayOutcome::Started { generation: 2, .. }
    ));
}

async fn history_entries_are_added_once_per_token(ledger: Arc<dyn Ledger>) {
    let id = new_id();
    let now = t0();
    claim_new(ledger.as_ref(), &id, now).await;
    let entry = HistoryEntry {
        at: now,
        kind: "dlq_purged".into(),
        note: "purged".into(),
    };
    assert!(ledger.add_history(&id, &entry, "tok-1").await.unwrap());
    assert!(
        ledger.add_history(&id, &entry, "tok-1").await.unwrap(),
        "retried: no second entry"
    );
    assert!(ledger.add_history(&id, &entry, "tok-2").await.unwrap());
    assert_eq!(ledger.get(&id).await.unwrap().unwrap().history.len(), 2);
    assert!(!ledger
        .add_history(&new_id(), &entry, "tok-1")
        .await
        .unwrap());
}

async fn pages_walk_a_status_by_time_type_and_cursor(ledger: Arc<dyn Ledger>) {
    let source = unique_source();
    let now = t0();
    // Ten events a second apart, alternating two types.
    let mut ids = Vec::new();
    for n in 0..10u64 {
        let id = new_id();
        let at = now.plus(secs(n));
        let mut claim = claim_at(&id, at, &token());
        claim.source = source.clone();
        claim.event_type = if n % 2 == 0 {
            "even".into()
        } else {
            "odd".into()
        };
        ledger.claim(&claim).await.unwrap();
        ids.push(id);
    }
    let query = |event_type: Option<&str>, since, until, limit, cursor| PageQuery {
        destination: None,
        status: EventStatus::Received,
        source: Some(source.clone()),
        event_type: event_type.map(str::to_owned),
        since,
        until,
        limit,
        cursor,
    };
    // Pages of 3, newest first, until the end: every event once.
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let page = ledger
            .list_page(&query(None, None, None, 3, cursor))
            .await
            .unwrap();
        assert!(page.events.len() <= 3);
        seen.extend(page.events.iter().map(|e| e.event_id.clone()));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    let mut newest_first: Vec<EventId> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    // A type and a time range.
    let page = ledger
        .list_page(&query(
            Some("odd"),
            Some(now.plus(secs(2))),
            Some(now.plus(secs(7))),
            100,
            None,
        ))
        .await
        .unwrap();
    let got: Vec<EventId> = page.events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(got, [ids[5].clone(), ids[3].clone()]);
    assert_eq!(page.next, None);
    // A cursor goes on from where a page ended, and survives the text form.
    let first = ledger
        .list_page(&query(None, None, None, 4, None))
        .await
        .unwrap();
    let next = first.next.clone().unwrap();
    let text = next.encode();
    assert_eq!(Cursor::parse(&text), Some(next.clone()));
    let second = ledger
        .list_page(&query(None, None, None, 4, Cursor::parse(&text)))
        .await
        .unwrap();
    newest_first.drain(..4);
    let got: Vec<EventId> = second.events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(got, newest_first[..4]);
}

fn hand_off(
    id: &EventId,
    from: Option<&str>,
    to: &str,
    due: Timestamp,
    generation: u64,
) -> HandOff {
    HandOff {
        event_id: id.clone(),
        from: from.map(str::to_owned),
        to: to.to_owned(),
        due,
        generation,
    }
}

/// A failed attempt's retry handed to a re-sent copy: only the copy holding the ticket starts,
/// the ledger shows when the next attempt is due, a retried hand-off is applied once, and a
/// replay's message (a newer generation, no ticket) starts past an older ticket.
async fn a_retry_handed_to_a_copy_starts_only_from_that_copy(ledger: Arc<dyn Ledger>) {
    let t = t0();
    let id = new_id();
    claim_new(&*ledger, &id, t).await;
    assert_eq!(
        ledger.start_attempt(&start_at(&id, t, t)).await.unwrap(),
        StartOutcome::Started { attempt: 1 }
    );
    let mut end = end_at(&id, 1, t, t.plus(secs(1)), EventStatus::Failed, Some("503"));
    let due = t.plus(secs(3600));
    end.next_attempt_at = Some(due);
    ledger.finish_attempt(&end).await.unwrap();
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(record.next_attempt_at, Some(due));

    // The original hands off to copy "one"; a retried call is success; the original cannot
    // hand off again, and a ticket nobody took cannot either.
    let later = t.plus(secs(7200));
    ledger
        .hand_off(&hand_off(&id, None, "one", later, 0))
        .await
        .unwrap();
    ledger
        .hand_off(&hand_off(&id, None, "one", later, 0))
        .await
        .unwrap();
    assert_conflict(ledger.hand_off(&hand_off(&id, None, "two", later, 0)).await);
    assert_conflict(
        ledger
            .hand_off(&hand_off(&id, Some("zzz"), "two", later, 0))
            .await,
    );
    assert_eq!(
        ledger.get(&id).await.unwrap().unwrap().next_attempt_at,
        Some(later)
    );

    // The original, redelivered after a crash before its deletion, is stale; so is a copy
    // whose hand-off was never recorded.
    let now = t.plus(secs(7200));
    let original = start_at(&id, t, now);
    assert_eq!(
        ledger.start_attempt(&original).await.unwrap(),
        StartOutcome::Stale
    );
    let mut orphan = start_at(&id, t, now);
    orphan.ticket = Some("never-recorded".into());
    assert_eq!(
        ledger.start_attempt(&orphan).await.unwrap(),
        StartOutcome::Stale
    );
    // A hop: copy "one" passes the retry on to "two".
    ledger
        .hand_off(&hand_off(&id, Some("one"), "two", later, 0))
        .await
        .unwrap();
    let mut one = start_at(&id, t, now);
    one.ticket = Some("one".into());
    assert_eq!(
        ledger.start_attempt(&one).await.unwrap(),
        StartOutcome::Stale
    );
    let mut two = start_at(&id, t, now);
    two.ticket = Some("two".into());
    assert_eq!(
        ledger.start_attempt(&two).await.unwrap(),
        StartOutcome::Started { attempt: 2 }
    );
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.next_attempt_at),
        (EventStatus::Processing, None),
        "a started attempt is no longer due"
    );
    let end = end_at(
        &id,
        2,
        now,
        now.plus(secs(1)),
        EventStatus::Failed,
        Some("503"),
    );
    ledger.finish_attempt(&end).await.unwrap();
    assert_eq!(
        ledger.get(&id).await.unwrap().unwrap().next_attempt_at,
        None
    );

    // A replay: its message (generation 1, no ticket) starts; copy "two" (generation 0) is
    // superseded.
    let replay = replay_start(&id, 0, now.plus(secs(2)), None);
    assert!(matches!(
        ledger.begin_replay(&replay).await.unwrap(),
        ReplayOutcome::Started { generation: 1, .. }
    ));
    let mut replayed = start_at(&id, t, now.plus(secs(3)));
    replayed.generation = 1;
    assert_eq!(
        ledger.start_attempt(&replayed).await.unwrap(),
        StartOutcome::Started { attempt: 3 }
    );
    two.generation = 0;
    two.lease_token = token();
    assert_eq!(
        ledger.start_attempt(&two).await.unwrap(),
        StartOutcome::Superseded { current: 1 }
    );

    // A processed event takes no hand-off.
    let end = end_at(&id, 3, now, now.plus(secs(4)), EventStatus::Processed, None);
    ledger.finish_attempt(&end).await.unwrap();
    assert_conflict(
        ledger
            .hand_off(&hand_off(&id, None, "three", later, 1))
            .await,
    );
    assert_conflict(
        ledger
            .hand_off(&hand_off(&new_id(), None, "x", later, 0))
            .await,
    );
}

/// A delivery (`<event id>@<destination>`) is an event of its own: claimed, leased and finished
/// like one; its record names its destination (from the id, or as the start recorded it); the
/// event that fanned out records its deliveries; a listing by destination finds exactly the
/// deliveries to that destination.
async fn deliveries_are_events_listed_by_destination(ledger: Arc<dyn Ledger>) {
    let source = unique_source();
    let now = Timestamp::from_millis(1_700_000_000_000);
    let parent = event_in(&*ledger, &source, now, EventStatus::Processing).await;
    let billing = DestinationName::parse("billing").unwrap();
    let billing_eu = DestinationName::parse("billing-eu").unwrap();
    let audit = DestinationName::parse("audit").unwrap();
    for d in [&billing, &billing_eu, &audit] {
        let id = parent.delivery(d);
        let claim = Claim {
            source: source.clone(),
            ..claim_at(&id, now, &token())
        };
        assert_eq!(ledger.claim(&claim).await.unwrap(), ClaimOutcome::Claimed);
    }
    // One delivery runs and fails; the others wait.
    let id = parent.delivery(&billing);
    let start = AttemptStart {
        source: source.clone(),
        destination: Some(billing.clone()),
        ..start_at(&id, now, now)
    };
    assert_eq!(
        ledger.start_attempt(&start).await.unwrap(),
        StartOutcome::Started { attempt: 1 }
    );
    ledger
        .finish_attempt(&end_at(&id, 1, now, now, EventStatus::Failed, Some("503")))
        .await
        .unwrap();
    let mut end = end_at(&parent, 1, now, now, EventStatus::Processed, None);
    end.deliveries = vec![billing.clone(), billing_eu.clone(), audit.clone()];
    ledger.finish_attempt(&end).await.unwrap();

    let record = ledger.get(&parent).await.unwrap().unwrap();
    assert_eq!(
        record.deliveries,
        [billing.clone(), billing_eu.clone(), audit.clone()]
    );
    assert_eq!(record.destination, None);
    let record = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(record.destination, Some(billing.clone()));
    assert_eq!(
        (record.status, record.attempt_count),
        (EventStatus::Failed, 1)
    );
    // Never attempted: the destination comes from the id.
    let waiting = ledger.get(&parent.delivery(&audit)).await.unwrap().unwrap();
    assert_eq!(waiting.destination, Some(audit.clone()));
    assert_eq!(waiting.status, EventStatus::Received);

    let page = |status, destination: &DestinationName| PageQuery {
        status,
        source: Some(source.clone()),
        event_type: None,
        destination: Some(destination.clone()),
        since: None,
        until: None,
        limit: 50,
        cursor: None,
    };
    let listed = ledger
        .list_page(&page(EventStatus::Failed, &billing))
        .await
        .unwrap();
    assert_eq!(ids(&listed.events), [id]);
    assert_eq!(listed.events[0].destination, Some(billing.clone()));
    // `billing` is not `billing-eu`, though one name begins the other.
    let listed = ledger
        .list_page(&page(EventStatus::Received, &billing))
        .await
        .unwrap();
    assert!(listed.events.is_empty(), "{listed:?}");
    let listed = ledger
        .list_page(&page(EventStatus::Received, &billing_eu))
        .await
        .unwrap();
    assert_eq!(ids(&listed.events), [parent.delivery(&billing_eu)]);
}

async fn moto_ledger() -> Option<Arc<dyn Ledger>> {
    let endpoint = hookgate_testkit::moto_endpoint()?;
    let resources = hookgate_testkit::fresh_resources(&endpoint, 3, 30).await;
    Some(resources.backend().ledger)
}

macro_rules! ledger_contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(std::sync::Arc::new(super::MemoryLedger::new())).await;
                }
            )*
        }

        mod moto {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(ledger) = super::moto_ledger().await else {
                        eprintln!("skipped: no moto");
                        return;
                    };
                    super::$name(ledger).await;
                }
            )*
        }
    };
}

ledger_contract!(
    deliveries_are_events_listed_by_destination,
    a_retry_handed_to_a_copy_starts_only_from_that_copy,
    the_first_start_records_the_payload_once,
    a_replay_moves_the_generation_and_supersedes_older_messages,
    a_retried_replay_and_its_undo_and_a_runs_repeat,
    a_replay_that_never_reached_the_queue_is_taken_over_late,
    history_entries_are_added_once_per_token,
    pages_walk_a_status_by_time_type_and_cursor,
    a_retried_claim_finds_its_own_token,
    a_retried_start_takes_its_own_lease,
    a_retried_attempt_end_is_recorded_once,
    claim_records_a_received_event,
    claim_then_duplicate,
    duplicate_reports_the_current_status,
    claim_in_progress_is_not_a_duplicate,
    stale_claim_is_taken_over,
    expired_claim_is_reclaimable,
    release_frees_the_id,
    release_after_queued_conflicts,
    start_attempt_numbers_attempts,
    live_lease_is_respected,
    expired_lease_is_taken_over,
    processed_is_final,
    finish_with_a_stale_attempt_conflicts,
    finish_unknown_event_conflicts,
    finish_records_attempts_in_order,
    dead_lettered_event_may_start_again,
    get_unknown_is_none,
    start_attempt_on_unknown_id_upserts,
    start_attempt_on_a_received_claim,
    list_by_status_is_newest_first,
    list_filters_by_source,
    list_respects_the_limit,
    list_without_status_merges_every_status,
    list_follows_status_changes,
);
