//! Retries out of flight (issue 18): a retry due later than `retry_hold_max_secs` is re-sent as
//! a delayed copy and the original acknowledged, so a failing destination does not fill SQS's
//! in-flight set; the ledger shows when the next attempt is due; a copy received early is
//! passed on; receives are counted across copies for the DLQ; and a crash between the re-send
//! and the deletion of the original neither loses the event nor runs an attempt twice. On the
//! in-memory backends and on SQS/DynamoDB served by moto, in real time (delays of 1-3 s).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookgate_core::event_source::EventSource;
use hookgate_core::faults::{AwsError, Faults, FaultyLedger, FaultyQueue};
use hookgate_core::ledger::{Attempt, AttemptEnd, AttemptStart, HandOff, StartOutcome};
use hookgate_core::processor::BatchOutcome;
use hookgate_core::queue::{attr, OutgoingMessage};
use hookgate_core::{
    Clock, Config, Envelope, EventId, EventStatus, HandlerError, Handlers, Processor, Queue,
    RecordOutcome, SourceName, SystemClock, Timestamp,
};
use hookgate_testkit::pipeline::Pipeline;

/// The queue's redrive maximum (and the processor's `max_receive_count`).
const MAX_RECEIVE_COUNT: u32 = 3;

fn memory() -> Pipeline {
    Pipeline::memory(MAX_RECEIVE_COUNT, Duration::from_secs(1))
}

async fn moto() -> Option<Pipeline> {
    Pipeline::moto(MAX_RECEIVE_COUNT, 1).await
}

/// Every retry re-sent (`retry_hold_max_secs = 0`), after `schedule`.
fn config(schedule: &str) -> Config {
    Config::from_toml(&format!(
        "[processor]\nmax_receive_count = {MAX_RECEIVE_COUNT}\nvisibility_timeout_secs = 1\n\
         retry_schedule = {schedule}\nretry_hold_max_secs = 0\nwait_time_ms = 500\n\
         batch_window_ms = 0\n"
    ))
    .unwrap()
}

fn envelope(tag: &str) -> Envelope {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    Envelope {
        event_id: EventId::parse(&format!("demo:{tag}-{unique}")).unwrap(),
        source: SourceName::parse("demo").unwrap(),
        event_type: tag.into(),
        received_at: Timestamp::from_secs(1_800_000_000),
        headers: BTreeMap::new(),
        body: Bytes::from_static(b"{}"),
    }
}

/// A handler that fails its first `failures` runs, then succeeds; it counts its runs.
#[derive(Clone, Default)]
struct Flaky {
    runs: Arc<AtomicU32>,
    failures: u32,
}

impl Flaky {
    fn failing(failures: u32) -> Self {
        Self {
            runs: Arc::default(),
            failures,
        }
    }
    fn handlers(&self) -> Handlers {
        let this = self.clone();
        Handlers::new().on("*", "*", move |_: Envelope| {
            let run = this.runs.fetch_add(1, Ordering::SeqCst) + 1;
            let fail = run <= this.failures;
            async move {
                if fail {
                    Err(HandlerError::retry("destination down"))
                } else {
                    Ok(())
                }
            }
        })
    }
    fn runs(&self) -> u32 {
        self.runs.load(Ordering::SeqCst)
    }
}

struct Rig {
    faults: Arc<Faults>,
    source: EventSource,
}

/// The processor over `b` with `config`, its ledger and queue wrapped in faults; the event
/// source deletes acknowledged messages through the same faulty queue.
fn rig(b: &Pipeline, config: &Config, handler: &Flaky) -> Rig {
    let faults = Faults::new();
    let queue: Arc<dyn Queue> = Arc::new(FaultyQueue::new(b.queue.clone(), faults.clone()));
    let processor = Processor::new(
        config,
        Arc::new(FaultyLedger::new(b.ledger.clone(), faults.clone())),
        queue.clone(),
        handler.handlers(),
    );
    Rig {
        faults,
        source: EventSource::new(queue, Arc::new(processor)),
    }
}

/// The next batch with a message in it (or a panic after 20 s).
async fn next_batch(source: &EventSource) -> BatchOutcome {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let outcome = source.poll().await.unwrap();
        if !outcome.records.is_empty() {
            return outcome;
        }
        assert!(Instant::now() < deadline, "no message came");
    }
}

fn only(outcome: &BatchOutcome) -> &RecordOutcome {
    assert_eq!(outcome.records.len(), 1, "{outcome:?}");
    &outcome.records[0].1
}

/// Polls until `id` is `status`, collecting every record outcome on the way.
async fn until(
    b: &Pipeline,
    source: &EventSource,
    id: &EventId,
    status: EventStatus,
) -> Vec<RecordOutcome> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        if b.ledger.get(id).await.unwrap().map(|r| r.status) == Some(status) {
            return seen;
        }
        assert!(Instant::now() < deadline, "{id} never {status}: {seen:?}");
        let outcome = source.poll().await.unwrap();
        seen.extend(outcome.records.into_iter().map(|(_, o)| o));
    }
}

/// Polls for `wait`, collecting the record outcomes.
async fn drain(source: &EventSource, wait: Duration) -> Vec<RecordOutcome> {
    let deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let outcome = source.poll().await.unwrap();
        seen.extend(outcome.records.into_iter().map(|(_, o)| o));
    }
    seen
}

/// A failed attempt with a retry beyond the hold: the original is acknowledged (not held in
/// flight), a delayed copy carries the retry, the ledger says when, and the copy runs it.
async fn a_long_retry_leaves_the_in_flight_set(b: Pipeline) {
    let handler = Flaky::failing(1);
    let rig = rig(&b, &config(r#"["2s"]"#), &handler);
    let e = envelope("resent");
    b.enqueue(&e).await;

    let before = SystemClock.now();
    let first = next_batch(&rig.source).await;
    let RecordOutcome::Rescheduled {
        error: Some(error),
        due,
    } = only(&first)
    else {
        panic!("not rescheduled: {first:?}");
    };
    assert_eq!(error, "destination down");
    assert!(
        *due >= before.plus(Duration::from_secs(2))
            && *due <= SystemClock.now().plus(Duration::from_secs(2)),
        "due {due}"
    );
    assert!(
        first.to_response().batch_item_failures.is_empty(),
        "the original is acknowledged, not held"
    );
    let record = b.ledger.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Failed);
    assert_eq!(
        record.next_attempt_at,
        Some(*due),
        "the ledger shows the next attempt"
    );
    let json = serde_json::to_value(&record).unwrap();
    assert!(json["next_attempt_at"].is_string(), "{json}");

    // Nothing is visible or in flight meanwhile: the copy waits delayed, the original is gone.
    let early = b.queue.receive(10, Duration::ZERO).await.unwrap();
    assert!(early.is_empty(), "{early:?}");

    let second = next_batch(&rig.source).await;
    assert_eq!(only(&second), &RecordOutcome::Processed);
    assert!(
        SystemClock.now() >= due.minus(Duration::from_secs(1)),
        "not before it was due"
    );
    assert_eq!(handler.runs(), 2);
    let record = b.ledger.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.attempt_count, record.next_attempt_at),
        (EventStatus::Processed, 2, None)
    );
    assert!(drain(&rig.source, Duration::from_secs(2)).await.is_empty());
}

/// An event whose first attempt failed, its retry handed to a copy "leg-1" due in 3 s that
/// says `receives_before` earlier receives; the copy is sent without a delay, so it is received
/// early (as one 15-minute leg of a longer delay is). Returns the attempt's start and the due time.
async fn an_early_copy(
    b: &Pipeline,
    e: &Envelope,
    receives_before: u32,
) -> (AttemptStart, Timestamp) {
    let now = SystemClock.now();
    let start = AttemptStart {
        destination: None,
        event_id: e.event_id.clone(),
        source: e.source.clone(),
        event_type: e.event_type.clone(),
        received_at: e.received_at,
        expires_at: now.plus(Duration::from_secs(3600)),
        now,
        lease_until: now.plus(Duration::from_secs(60)),
        lease_token: "lease".into(),
        generation: 0,
        payload: None,
        ticket: None,
    };
    assert_eq!(
        b.ledger.start_attempt(&start).await.unwrap(),
        StartOutcome::Started { attempt: 1 }
    );
    let due = now.plus(Duration::from_secs(3));
    let end = AttemptEnd {
        deliveries: Vec::new(),
        event_id: e.event_id.clone(),
        attempt: Attempt {
            attempt: 1,
            at: now,
            duration_ms: 1,
            success: false,
            error: Some("destination down".into()),
            note: None,
            url: None,
            status_code: None,
        },
        status: EventStatus::Failed,
        now,
        next_attempt_at: Some(due),
    };
    b.ledger.finish_attempt(&end).await.unwrap();
    b.ledger
        .hand_off(&HandOff {
            event_id: e.event_id.clone(),
            from: None,
            to: "leg-1".into(),
            due,
            generation: 0,
        })
        .await
        .unwrap();
    let attributes = BTreeMap::from([
        (attr::EVENT_ID.to_owned(), e.event_id.to_string()),
        (attr::RETRY_TICKET.to_owned(), "leg-1".to_owned()),
        (attr::DUE_AT.to_owned(), due.as_millis().to_string()),
        (
            attr::RECEIVES_BEFORE.to_owned(),
            receives_before.to_string(),
        ),
    ]);
    b.queue
        .send(OutgoingMessage {
            body: e.to_message(),
            attributes,
            trace_header: None,
            delay: None,
        })
        .await
        .unwrap();
    (start, due)
}

/// A copy received before it is due (one 15-minute leg of a longer delay) is passed on to
/// another delayed copy without an attempt; that one runs it when due.
async fn a_copy_received_early_is_passed_on(b: Pipeline) {
    let handler = Flaky::failing(0);
    let rig = rig(&b, &config(r#"["30m"]"#), &handler);
    let e = envelope("early");
    let (start, due) = an_early_copy(&b, &e, 1).await;
    let early = next_batch(&rig.source).await;
    assert_eq!(
        only(&early),
        &RecordOutcome::Rescheduled { error: None, due },
        "passed on, no attempt"
    );
    assert_eq!(handler.runs(), 0);
    // "leg-1" no longer holds the retry: the next leg does.
    let mut stale = start.clone();
    stale.ticket = Some("leg-1".into());
    stale.now = due;
    assert_eq!(
        b.ledger.start_attempt(&stale).await.unwrap(),
        StartOutcome::Stale
    );

    let outcomes = until(&b, &rig.source, &e.event_id, EventStatus::Processed).await;
    assert_eq!(outcomes, [RecordOutcome::Processed]);
    assert!(
        SystemClock.now() >= due.minus(Duration::from_secs(1)),
        "not before it was due"
    );
    assert_eq!(handler.runs(), 1);
    let record = b.ledger.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(record.attempt_count, 2, "the hop was no attempt");
    assert_eq!(record.next_attempt_at, None);
}

/// Passing a copy on is no receive: the early copy ran no attempt, so the attempt its
/// successor runs when due is the event's second receive (of `MAX_RECEIVE_COUNT` = 3), and a
/// failure there is retried — not dead-lettered as a third. (A 2 h delay is eight legs: counted
/// as receives, they ran the event out of receives while its destination was still down.)
async fn a_copy_passed_on_counts_no_receive(b: Pipeline) {
    let handler = Flaky::failing(1);
    let rig = rig(&b, &config(r#"["30m"]"#), &handler);
    let e = envelope("legs");
    let (_, due) = an_early_copy(&b, &e, 1).await;
    let early = next_batch(&rig.source).await;
    assert_eq!(
        only(&early),
        &RecordOutcome::Rescheduled { error: None, due },
        "passed on, no attempt"
    );
    let when_due = next_batch(&rig.source).await;
    assert!(
        matches!(
            only(&when_due),
            RecordOutcome::Rescheduled { error: Some(error), .. } if error == "destination down"
        ),
        "receive 2 of 3 is retried: {when_due:?}"
    );
    assert_eq!(handler.runs(), 1);
    let record = b.ledger.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.attempt_count),
        (EventStatus::Failed, 2)
    );
    assert!(record.next_attempt_at.is_some());
    assert!(b.dlq.receive(10, Duration::ZERO).await.unwrap().is_empty());
}

/// Every failure re-sent: receives are counted across copies (SQS's count restarts with each),
/// so the event is dead-lettered on its `max_receive_count`-th receive all the same.
async fn receives_count_across_copies_for_the_dlq(b: Pipeline) {
    let handler = Flaky::failing(u32::MAX);
    let rig = rig(&b, &config(r#"["1s"]"#), &handler);
    let e = envelope("exhausted");
    b.enqueue(&e).await;
    let outcomes = until(&b, &rig.source, &e.event_id, EventStatus::DeadLettered).await;
    assert_eq!(handler.runs(), MAX_RECEIVE_COUNT, "{outcomes:?}");
    assert!(matches!(
        outcomes.last(),
        Some(RecordOutcome::Failed {
            dead_lettered: true,
            ..
        })
    ));
    let record = b.ledger.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(record.attempt_count, MAX_RECEIVE_COUNT);
    assert_eq!(
        record.attempts.last().unwrap().note.as_deref(),
        Some("receive 3 of 3: moved to the DLQ")
    );
    let dead = b.dlq.receive(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].attributes[attr::EVENT_ID], e.event_id.as_str());
    assert_eq!(dead[0].attributes[attr::RECEIVES_BEFORE], "2");
    assert!(drain(&rig.source, Duration::from_secs(2)).await.is_empty());
}

/// A crash after the copy was sent but before the hand-off was recorded (injected: the
/// ledger refuses the hand-off): the original keeps the retry and runs it; the copy, whose
/// ticket the ledger never took, is stale when it comes and runs nothing.
async fn a_crash_before_the_hand_off_leaves_the_original_live(b: Pipeline) {
    let handler = Flaky::failing(2);
    let rig = rig(&b, &config(r#"["1s"]"#), &handler);
    let e = envelope("crash-before");
    b.enqueue(&e).await;
    rig.faults
        .fail_next_with("hand_off", 2, AwsError::ServiceUnavailable);
    let first = next_batch(&rig.source).await;
    let RecordOutcome::Failed {
        retry_in: Some(_), ..
    } = only(&first)
    else {
        panic!("the original is not held: {first:?}");
    };
    assert_eq!(rig.faults.calls("send"), 1, "the copy was sent");
    assert_eq!(rig.faults.injected("hand_off"), 2);

    let outcomes = until(&b, &rig.source, &e.event_id, EventStatus::Processed).await;
    let mut outcomes = outcomes;
    outcomes.extend(drain(&rig.source, Duration::from_secs(3)).await);
    assert_eq!(
        handler.runs(),
        3,
        "attempts 1 and 2 failed, 3 succeeded: {outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, RecordOutcome::Stale | RecordOutcome::AlreadyProcessed))
            .count(),
        1,
        "the orphaned copy ran nothing: {outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == RecordOutcome::Processed)
            .count(),
        1
    );
    let record = b.ledger.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.attempt_count),
        (EventStatus::Processed, 3)
    );
    assert!(b
        .queue
        .receive(10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
}

/// A crash after the hand-off but before the original was deleted (injected: the event
/// source's delete fails, so the original comes back after its visibility timeout): the
/// original is stale and runs nothing; the copy runs the retry, once.
async fn a_crash_before_the_delete_leaves_the_copy_live(b: Pipeline) {
    let handler = Flaky::failing(1);
    let rig = rig(&b, &config(r#"["2s"]"#), &handler);
    let e = envelope("crash-after");
    b.enqueue(&e).await;
    rig.faults
        .fail_next_with("delete", 1, AwsError::ServiceUnavailable);
    let first = next_batch(&rig.source).await;
    assert!(
        matches!(
            only(&first),
            RecordOutcome::Rescheduled { error: Some(_), .. }
        ),
        "{first:?}"
    );
    assert_eq!(
        rig.faults.injected("delete"),
        1,
        "the original was not deleted"
    );

    // The original comes back first (visibility 1 s; the copy is due in 2 s).
    let back = next_batch(&rig.source).await;
    assert_eq!(
        only(&back),
        &RecordOutcome::Stale,
        "the original redelivered"
    );
    assert_eq!(handler.runs(), 1);
    let outcomes = until(&b, &rig.source, &e.event_id, EventStatus::Processed).await;
    assert_eq!(outcomes, [RecordOutcome::Processed]);
    assert_eq!(handler.runs(), 2);
    assert!(drain(&rig.source, Duration::from_secs(2)).await.is_empty());
    let record = b.ledger.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.attempt_count),
        (EventStatus::Processed, 2)
    );
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::memory()).await;
                }
            )*
        }
        mod moto {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(backend) = super::moto().await else {
                        eprintln!("skipped: no moto");
                        return;
                    };
                    super::$name(backend).await;
                }
            )*
        }
    };
}

suite!(
    a_long_retry_leaves_the_in_flight_set,
    a_copy_received_early_is_passed_on,
    a_copy_passed_on_counts_no_receive,
    receives_count_across_copies_for_the_dlq,
    a_crash_before_the_hand_off_leaves_the_original_live,
    a_crash_before_the_delete_leaves_the_copy_live,
);
