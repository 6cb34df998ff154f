//! Payloads kept and replayed, end to end through the receiver and the processor, on the
//! in-memory backends and on SQS/DynamoDB/S3 served by moto.
//!
//! Where each payload goes (inline in the ledger, an archive object, the claim check), what a
//! missing or damaged object does, and replay: one event, the generation guard (a stale copy of
//! the original after a replay, two replays racing, a replay that crashed half-way), bulk by
//! status, source and time, a bulk run interrupted and run again. The handler's runs are
//! counted in every test: nothing may run twice by accident.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookgate_core::archive::key_for;
use hookgate_core::event_source::EventSource;
use hookgate_core::faults::{Faults, FaultyArchive, FaultyLedger, FaultyQueue};
use hookgate_core::ledger::{EventStatus, PayloadStore};
use hookgate_core::queue::{attr, OutgoingMessage};
use hookgate_core::replay::{run_bulk, BulkFilter, BulkOptions, Origin, ReplayError, Replayer};
use hookgate_core::{
    Archive, Clock, Config, Envelope, EventId, EventRecord, HandlerError, Handlers,
    IncomingRequest, Ledger, ManualClock, Processor, Queue, Receiver, RecordOutcome, SystemClock,
};
use hookgate_testkit::pipeline::Pipeline;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

const MAX_RECEIVE_COUNT: u32 = 3;
const VISIBILITY_SECS: u64 = 4;
/// A small claim-check size, so bodies on both sides of it stay quick to send.
const CLAIM_CHECK: usize = 64 * 1024;

fn config(extra: &str) -> Config {
    Config::from_toml(&format!(
        r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["archive-replay-s3cr3t"]

[receiver]
claim_timeout_secs = 30

[processor]
max_receive_count = {MAX_RECEIVE_COUNT}
visibility_timeout_secs = {VISIBILITY_SECS}
backoff_base_ms = 100
backoff_cap_secs = 1
wait_time_ms = 300
batch_window_ms = 0

[archive]
claim_check_bytes = {CLAIM_CHECK}
{extra}
"#
    ))
    .unwrap()
}

/// Every run of the handler, by event id: the body it saw and the generation-free outcome.
#[derive(Clone, Default)]
struct Runs {
    seen: Arc<Mutex<BTreeMap<String, Vec<Bytes>>>>,
    fail_permanently: Arc<AtomicBool>,
}

impl Runs {
    fn handlers(&self) -> Handlers {
        let this = self.clone();
        Handlers::new().on("*", "*", move |e: Envelope| {
            let this = this.clone();
            async move {
                this.seen
                    .lock()
                    .unwrap()
                    .entry(e.event_id.to_string())
                    .or_default()
                    .push(e.body.clone());
                if this.fail_permanently.load(Ordering::SeqCst) {
                    return Err(HandlerError::permanent("downstream 422"));
                }
                Ok(())
            }
        })
    }

    fn of(&self, id: &EventId) -> Vec<Bytes> {
        self.seen
            .lock()
            .unwrap()
            .get(id.as_str())
            .cloned()
            .unwrap_or_default()
    }
}

struct Rig {
    b: Pipeline,
    config: Config,
    faults: Arc<Faults>,
    clock: Arc<ManualClock>,
    receiver: Receiver,
    replayer: Replayer,
    runs: Runs,
    source: EventSource,
}

fn rig(b: Pipeline, extra: &str) -> Rig {
    let config = config(extra);
    let faults = Faults::new();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let ledger: Arc<dyn Ledger> = Arc::new(FaultyLedger::new(b.ledger.clone(), faults.clone()));
    let queue: Arc<dyn Queue> = Arc::new(FaultyQueue::new(b.queue.clone(), faults.clone()));
    let archive: Arc<dyn Archive> = Arc::new(FaultyArchive::new(b.archive.clone(), faults.clone()));
    let receiver =
        Receiver::new(&config, ledger.clone(), queue.clone()).with_archive(archive.clone());
    let runs = Runs::default();
    let processor = Processor::new(&config, ledger.clone(), queue.clone(), runs.handlers())
        .with_archive(archive.clone());
    let replayer = Replayer::new(&config, ledger, queue, Some(archive)).with_clock(clock.clone());
    let source = EventSource::new(b.queue.clone(), Arc::new(processor));
    Rig {
        b,
        config,
        faults,
        clock,
        receiver,
        replayer,
        runs,
        source,
    }
}

impl Rig {
    fn request(&self, body: &[u8]) -> IncomingRequest {
        let mut headers = HeaderMap::new();
        for (k, v) in self.receiver.sign("demo", body).unwrap() {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(&v).unwrap(),
            );
        }
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        IncomingRequest {
            method: Method::POST,
            source: "demo".into(),
            headers,
            body: Bytes::copy_from_slice(body),
            trace_header: None,
        }
    }

    async fn accepted(&self, body: &[u8]) -> EventId {
        let reply = self.receiver.handle(self.request(body)).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
        EventId::parse(reply.body["event_id"].as_str().unwrap()).unwrap()
    }

    /// Processes until `id` is `status` and the queue is empty.
    async fn settle(&self, id: &EventId, status: EventStatus) -> EventRecord {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let outcome = self.source.poll().await.expect("poll");
            let record = self.b.ledger.get(id).await.expect("ledger read");
            if outcome.records.is_empty() && record.as_ref().is_some_and(|r| r.status == status) {
                return record.unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "{id} never settled as {status}: {record:?}"
            );
        }
    }

    /// Replaces the archived object of `id` with `bytes`, on either backend.
    async fn damage(&self, id: &EventId, bytes: Option<&[u8]>) {
        match (&self.b.memory_archive, &self.b.moto, bytes) {
            (Some(memory), _, Some(bytes)) => {
                memory.overwrite_raw(id, Bytes::copy_from_slice(bytes))
            }
            (_, Some(moto), Some(bytes)) => {
                moto.s3()
                    .put_object()
                    .bucket(&moto.bucket)
                    .key(key_for(id))
                    .body(aws_sdk_s3::primitives::ByteStream::from(bytes.to_vec()))
                    .send()
                    .await
                    .expect("raw put");
            }
            (_, _, None) => self.b.archive.delete(id).await.expect("delete"),
            (None, None, Some(_)) => unreachable!("a pipeline is on memory or on moto"),
        }
    }
}

/// A JSON body of about `n` bytes that DEFLATE shrinks well.
fn json_body(n: usize) -> Vec<u8> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut s = format!(r#"{{"type":"order.created","tag":"{tag}","items":["#);
    let mut i = 0;
    while s.len() < n.saturating_sub(20) {
        s.push_str(&format!(r#"{{"sku":"item-{i}","qty":{i}}},"#));
        i += 1;
    }
    s.push_str(r#"{"end":true}]}"#);
    s.into_bytes()
}

/// A body of exactly `n` bytes that does not compress (hex of a hash chain).
fn noisy_body(n: usize) -> Vec<u8> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut s = format!(r#"{{"type":"blob","tag":"{tag}","data":""#);
    let mut state = hookgate_core::archive::sha256_hex(tag.as_bytes());
    while s.len() + 2 < n {
        state = hookgate_core::archive::sha256_hex(state.as_bytes());
        s.push_str(&state);
    }
    s.truncate(n - 2);
    s.push_str("\"}");
    assert_eq!(s.len(), n);
    s.into_bytes()
}

fn stored(record: &EventRecord) -> Option<PayloadStore> {
    record.payload.as_ref().map(|p| p.stored)
}

// ------------------------------------------------------------------------------------------
// Where payloads go
// ------------------------------------------------------------------------------------------

async fn small_payloads_are_kept_inline_and_read_back(b: Pipeline) {
    let rig = rig(b, "");
    let body = json_body(1500);
    let id = rig.accepted(&body).await;
    let record = rig.settle(&id, EventStatus::Processed).await;
    assert_eq!(stored(&record), Some(PayloadStore::Inline));
    let info = record.payload.unwrap();
    assert_eq!(info.bytes, body.len() as u64);
    assert_eq!(info.sha256, hookgate_core::archive::sha256_hex(&body));
    assert!(
        !rig.b.archive.exists(&id).await.unwrap(),
        "no object for an inline payload"
    );
    let payload = rig.replayer.payload(&id).await.unwrap();
    assert_eq!(payload.body, body);
    assert_eq!(payload.headers["content-type"], "application/json");
    assert_eq!(
        rig.faults.calls("archive_put"),
        0,
        "no S3 request for a small payload"
    );
}

async fn medium_payloads_become_archive_objects_off_the_providers_path(b: Pipeline) {
    let rig = rig(b, "");
    let body = noisy_body(20_000);
    let id = rig.accepted(&body).await;
    assert_eq!(
        rig.faults.calls("archive_put"),
        0,
        "the receiver did not archive it"
    );
    let record = rig.settle(&id, EventStatus::Processed).await;
    assert_eq!(stored(&record), Some(PayloadStore::Archive));
    assert_eq!(
        rig.faults.calls("archive_put"),
        1,
        "the processor did, once"
    );
    assert_eq!(rig.replayer.payload(&id).await.unwrap().body, body);
}

async fn bodies_over_the_claim_check_size_travel_as_pointers(b: Pipeline) {
    let rig = rig(b, "");
    for size in [CLAIM_CHECK - 1, CLAIM_CHECK, CLAIM_CHECK + 1, 300_000] {
        let body = noisy_body(size);
        let puts_before = rig.faults.calls("archive_put");
        let id = rig.accepted(&body).await;
        let by_receiver = rig.faults.calls("archive_put") - puts_before;
        assert_eq!(by_receiver, u32::from(size > CLAIM_CHECK), "size {size}");
        let record = rig.settle(&id, EventStatus::Processed).await;
        assert_eq!(stored(&record), Some(PayloadStore::Archive), "size {size}");
        assert_eq!(
            rig.runs.of(&id),
            [Bytes::from(body.clone())],
            "size {size}: the handler saw the bytes"
        );
        assert_eq!(rig.replayer.payload(&id).await.unwrap().body, body);
    }
}

async fn a_failed_claim_check_put_releases_the_claim_and_answers_503(b: Pipeline) {
    let rig = rig(b, "");
    let body = noisy_body(CLAIM_CHECK + 10);
    rig.faults.fail_next("archive_put", 1);
    let reply = rig.receiver.handle(rig.request(&body)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert_eq!(reply.error_code(), Some("archive_unavailable"));
    assert_eq!(rig.faults.calls("send"), 0, "nothing enqueued");
    assert_eq!(rig.faults.calls("release"), 1);
    // The provider's retry is a new request, accepted — not a duplicate.
    let id = rig.accepted(&body).await;
    rig.settle(&id, EventStatus::Processed).await;
    assert_eq!(rig.runs.of(&id).len(), 1);
}

async fn a_missing_or_damaged_object_goes_to_the_dlq_with_its_code(b: Pipeline) {
    let rig = rig(b, "");
    let good = noisy_body(CLAIM_CHECK + 100);
    let cases: [(&str, Option<Vec<u8>>); 3] = [
        ("payload_missing", None),
        (
            "payload_corrupt",
            Some(b"not an archived envelope".to_vec()),
        ),
        // A well-formed object of another body: the pointer's SHA-256 tells.
        ("payload_corrupt", Some(Vec::new())),
    ];
    for (code, damage) in cases {
        let body = noisy_body(CLAIM_CHECK + 100);
        let id = rig.accepted(&body).await;
        match &damage {
            Some(bytes) if bytes.is_empty() => {
                let other = Envelope {
                    body: Bytes::from(good.clone()),
                    ..rig.replayer.payload(&id).await.unwrap()
                };
                rig.b.archive.put(&other).await.unwrap();
            }
            Some(bytes) => rig.damage(&id, Some(bytes)).await,
            None => rig.damage(&id, None).await,
        }
        let record = rig.settle(&id, EventStatus::DeadLettered).await;
        assert!(rig.runs.of(&id).is_empty(), "{code}: the handler never ran");
        let last = record.attempts.last().unwrap();
        assert!(
            last.error.as_deref().unwrap_or("").starts_with(code),
            "{code}: {last:?}"
        );
        assert_eq!(record.attempts.len(), 1, "{code}: not retried");
    }
}

// ------------------------------------------------------------------------------------------
// Replay
// ------------------------------------------------------------------------------------------

fn api() -> Origin {
    Origin::single("test")
}

async fn a_replay_runs_the_handler_once_more_under_the_same_id(b: Pipeline) {
    let rig = rig(b, "");
    let body = json_body(800);
    let id = rig.accepted(&body).await;
    rig.settle(&id, EventStatus::Processed).await;
    let replayed = rig.replayer.replay(&id, &api()).await.unwrap();
    assert_eq!(
        (replayed.generation, replayed.previous),
        (1, EventStatus::Processed)
    );
    let record = rig.settle(&id, EventStatus::Processed).await;
    assert_eq!(
        rig.runs.of(&id),
        [Bytes::from(body.clone()), Bytes::from(body)]
    );
    assert_eq!((record.generation, record.replays), (1, 1));
    assert_eq!(record.history.len(), 1);
    assert_eq!(record.history[0].kind, "replayed");
    assert!(
        record.history[0].note.contains("from processed via test"),
        "{:?}",
        record.history
    );
    let successes: Vec<u32> = record
        .attempts
        .iter()
        .filter(|a| a.success)
        .map(|a| a.attempt)
        .collect();
    assert_eq!(successes, [1, 2]);
}

async fn a_stale_copy_of_the_original_after_a_replay_does_not_run(b: Pipeline) {
    let rig = rig(b, "");
    let body = json_body(900);
    let id = rig.accepted(&body).await;
    rig.settle(&id, EventStatus::Processed).await;
    rig.replayer.replay(&id, &api()).await.unwrap();
    rig.settle(&id, EventStatus::Processed).await;
    // The original message (generation 0), delivered late — a redelivery, or a DLQ redrive.
    let original = rig.replayer.payload(&id).await.unwrap();
    rig.b
        .queue
        .send(OutgoingMessage {
            delay: None,
            body: original.to_message(),
            attributes: BTreeMap::from([(attr::EVENT_ID.to_owned(), id.to_string())]),
            trace_header: None,
        })
        .await
        .unwrap();
    let outcome = rig.source.poll().await.unwrap();
    assert_eq!(outcome.records.len(), 1, "{outcome:?}");
    assert!(
        matches!(
            outcome.records[0].1,
            RecordOutcome::Superseded { current: 1 } | RecordOutcome::AlreadyProcessed
        ),
        "{outcome:?}"
    );
    // While the replay is still queued, a stale copy is superseded (not run) too.
    rig.replayer.replay(&id, &api()).await.unwrap();
    rig.b
        .queue
        .send(OutgoingMessage {
            delay: None,
            body: original.to_message(),
            attributes: BTreeMap::new(),
            trace_header: None,
        })
        .await
        .unwrap();
    rig.settle(&id, EventStatus::Processed).await;
    assert_eq!(
        rig.runs.of(&id).len(),
        3,
        "original, replay 1, replay 2: once each"
    );
}

async fn two_replays_racing_run_the_handler_once(b: Pipeline) {
    let rig = rig(b, "");
    let id = rig.accepted(&json_body(700)).await;
    rig.settle(&id, EventStatus::Processed).await;
    let origin = api();
    let (a, b2) = tokio::join!(
        rig.replayer.replay(&id, &origin),
        rig.replayer.replay(&id, &origin)
    );
    let won = [a.is_ok(), b2.is_ok()].iter().filter(|ok| **ok).count();
    assert_eq!(won, 1, "{a:?} {b2:?}");
    let lost = a.err().or(b2.err()).unwrap();
    assert!(
        matches!(
            lost,
            ReplayError::Superseded(_) | ReplayError::InProgress(_)
        ),
        "{lost:?}"
    );
    assert_eq!(lost.code(), "event_in_progress");
    let record = rig.settle(&id, EventStatus::Processed).await;
    assert_eq!(rig.runs.of(&id).len(), 2, "the original and one replay");
    assert_eq!(record.replays, 1);
}

async fn a_replay_that_could_not_be_sent_is_taken_back(b: Pipeline) {
    let rig = rig(b, "");
    let id = rig.accepted(&json_body(700)).await;
    rig.settle(&id, EventStatus::Processed).await;
    rig.faults.fail_next("send", 1);
    let err = rig.replayer.replay(&id, &api()).await.unwrap_err();
    assert_eq!(err.code(), "queue_unavailable");
    let record = rig.b.ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.generation, record.replays),
        (EventStatus::Processed, 0, 0)
    );
    assert_eq!(record.history.last().unwrap().kind, "replay_undone");
    // And it can be replayed at once.
    rig.replayer.replay(&id, &api()).await.unwrap();
    rig.settle(&id, EventStatus::Processed).await;
    assert_eq!(rig.runs.of(&id).len(), 2);
}

async fn a_replay_that_crashed_half_way_is_taken_over_after_the_claim_timeout(b: Pipeline) {
    let rig = rig(b, "");
    let id = rig.accepted(&json_body(700)).await;
    rig.settle(&id, EventStatus::Processed).await;
    // The send fails and so does the undo: the ledger says queued, no message exists (as if the
    // replayer had crashed between the two).
    rig.faults.fail_next("send", 1);
    rig.faults.fail_next("undo_replay", 1);
    assert!(rig.replayer.replay(&id, &api()).await.is_err());
    let stuck = rig.b.ledger.get(&id).await.unwrap().unwrap();
    assert_eq!((stuck.status, stuck.generation), (EventStatus::Queued, 1));
    let err = rig.replayer.replay(&id, &api()).await.unwrap_err();
    assert_eq!(err.code(), "event_in_progress", "too soon to take it over");
    rig.clock.advance(Duration::from_secs(31));
    let replayed = rig.replayer.replay(&id, &api()).await.unwrap();
    assert_eq!(replayed.generation, 2);
    let record = rig.settle(&id, EventStatus::Processed).await;
    assert_eq!(
        rig.runs.of(&id).len(),
        2,
        "the original and the replay that reached the queue"
    );
    assert_eq!(record.generation, 2);
}

async fn replay_errors_say_why(b: Pipeline) {
    let rig = rig(b, "");
    let unknown = EventId::parse("demo:never-seen").unwrap();
    assert_eq!(
        rig.replayer
            .replay(&unknown, &api())
            .await
            .unwrap_err()
            .code(),
        "event_not_found"
    );
    let id = rig.accepted(&json_body(700)).await;
    // Still queued: a replay would race it.
    assert_eq!(
        rig.replayer.replay(&id, &api()).await.unwrap_err().code(),
        "event_in_progress"
    );
    rig.settle(&id, EventStatus::Processed).await;

    // Archiving off: a small payload is not kept, so it cannot be replayed.
    let off = rig_like(&rig, "enabled = false");
    let id = off.accepted(&json_body(700)).await;
    off.settle(&id, EventStatus::Processed).await;
    let err = off.replayer.replay(&id, &api()).await.unwrap_err();
    assert_eq!(err.code(), "payload_not_archived", "{err}");
    assert_eq!(err.status(), StatusCode::CONFLICT);
    assert_eq!(off.runs.of(&id).len(), 1);
}

/// Another rig on the same backends, with other archive settings.
fn rig_like(rig: &Rig, extra: &str) -> Rig {
    let b = Pipeline {
        ledger: rig.b.ledger.clone(),
        queue: rig.b.queue.clone(),
        dlq: rig.b.dlq.clone(),
        archive: rig.b.archive.clone(),
        memory_archive: rig.b.memory_archive.clone(),
        moto: rig.b.moto.clone(),
    };
    let _ = &rig.config;
    self::rig(b, extra)
}

// ------------------------------------------------------------------------------------------
// Bulk
// ------------------------------------------------------------------------------------------

async fn bulk_replay_by_status_source_and_time_replays_each_once_even_when_run_twice(b: Pipeline) {
    let rig = rig(b, "");
    // Six processed events; three dead-lettered (a permanent failure).
    let mut processed = Vec::new();
    for _ in 0..6 {
        processed.push(rig.accepted(&json_body(600)).await);
    }
    for id in &processed {
        rig.settle(id, EventStatus::Processed).await;
    }
    rig.runs.fail_permanently.store(true, Ordering::SeqCst);
    let mut dead = Vec::new();
    for _ in 0..3 {
        dead.push(rig.accepted(&json_body(600)).await);
    }
    for id in &dead {
        rig.settle(id, EventStatus::DeadLettered).await;
    }
    rig.runs.fail_permanently.store(false, Ordering::SeqCst);

    let now = SystemClock.now();
    let filter = BulkFilter {
        status: EventStatus::DeadLettered,
        source: Some(hookgate_core::SourceName::parse("demo").unwrap()),
        event_type: Some("order.created".into()),
        since: Some(now.minus(Duration::from_secs(3600))),
        until: now.plus(Duration::from_secs(1)),
    };
    // A dry run counts and changes nothing.
    let options = BulkOptions {
        page_size: 2,
        dry_run: true,
        ..BulkOptions::default()
    };
    let never = || false;
    let dry = run_bulk(&rig.replayer, &filter, &options, &never, &mut |_| {}).await;
    assert_eq!((dry.matched, dry.replayed, dry.dry_run), (3, 3, true));
    assert_eq!(
        rig.b.ledger.get(&dead[0]).await.unwrap().unwrap().replays,
        0
    );

    // Interrupted after the first event.
    let options = BulkOptions {
        page_size: 2,
        ..BulkOptions::default()
    };
    let count = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = count.clone();
    let after_one = move || seen.load(Ordering::SeqCst) >= 1;
    let first = run_bulk(&rig.replayer, &filter, &options, &after_one, &mut |s| {
        count.store(s.replayed as u32, Ordering::SeqCst);
    })
    .await;
    assert_eq!(first.stopped.as_deref(), Some("interrupted"));
    assert_eq!(first.replayed, 1);
    // Run again with the same filter (the same run): the rest, and nothing twice — even if the
    // first one's replay has not been processed yet (it is `queued`, so no longer listed) or
    // has (it is `processed` now, no longer dead-lettered either).
    let second = run_bulk(&rig.replayer, &filter, &options, &never, &mut |_| {}).await;
    assert_eq!(second.stopped, None);
    assert_eq!(second.replayed, 2, "{second:?}");
    for id in &dead {
        let record = rig.settle(id, EventStatus::Processed).await;
        assert_eq!(record.replays, 1, "{id}");
        assert_eq!(rig.runs.of(id).len(), 2, "{id}: the failure and one replay");
    }
    for id in &processed {
        assert_eq!(rig.runs.of(id).len(), 1, "{id}: not matched");
    }
    // Another run (another filter: processed events) is another run: it replays all nine
    // processed ones; run once more, it replays none of them again.
    let filter = BulkFilter {
        status: EventStatus::Processed,
        ..filter
    };
    let third = run_bulk(&rig.replayer, &filter, &options, &never, &mut |_| {}).await;
    assert_eq!(third.replayed, 9, "{third:?}");
    for id in processed.iter().chain(&dead) {
        rig.settle(id, EventStatus::Processed).await;
    }
    let again = run_bulk(&rig.replayer, &filter, &options, &never, &mut |_| {}).await;
    assert_eq!(again.replayed, 0, "{again:?}");
    assert!(
        again.skipped.get("already_replayed").copied().unwrap_or(0)
            + again.skipped.get("event_in_progress").copied().unwrap_or(0)
            >= 1,
        "{again:?}"
    );
}

// ------------------------------------------------------------------------------------------
// DLQ
// ------------------------------------------------------------------------------------------

async fn pointer_messages_go_through_the_dlq_and_a_purge_keeps_the_payload(b: Pipeline) {
    use hookgate_core::dlq::{DeadLetters, Selection};
    let rig = rig(b, "");
    let body = noisy_body(CLAIM_CHECK + 500);
    rig.runs.fail_permanently.store(true, Ordering::SeqCst);
    let id = rig.accepted(&body).await;
    rig.settle(&id, EventStatus::DeadLettered).await;
    rig.runs.fail_permanently.store(false, Ordering::SeqCst);
    let tools = DeadLetters::new(rig.b.queue.clone(), rig.b.dlq.clone(), rig.b.ledger.clone());
    let listed = tools.list(10).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].event_id.as_deref(), Some(id.as_str()));
    // Redriven, the pointer message brings the archived body back to the handler.
    let report = tools.redrive(&Selection::All, None).await.unwrap();
    assert_eq!(report.moved, 1, "{report:?}");
    rig.settle(&id, EventStatus::Processed).await;
    let runs = rig.runs.of(&id);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1], Bytes::from(body.clone()));

    // Another one dead-lettered, then purged: the ledger notes it, the payload stays, and a
    // replay brings it back.
    rig.runs.fail_permanently.store(true, Ordering::SeqCst);
    let other = rig.accepted(&noisy_body(CLAIM_CHECK + 600)).await;
    rig.settle(&other, EventStatus::DeadLettered).await;
    rig.runs.fail_permanently.store(false, Ordering::SeqCst);
    let purged = tools.purge().await.unwrap();
    assert_eq!(purged.purged, 1);
    assert_eq!(purged.event_ids, [other.to_string()]);
    let record = rig.b.ledger.get(&other).await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::DeadLettered);
    assert_eq!(
        record.history.last().map(|h| h.kind.as_str()),
        Some("dlq_purged")
    );
    assert!(
        rig.b.archive.exists(&other).await.unwrap(),
        "a purge keeps the payload"
    );
    rig.replayer.replay(&other, &api()).await.unwrap();
    rig.settle(&other, EventStatus::Processed).await;
    assert_eq!(rig.runs.of(&other).len(), 2);
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Pipeline::memory(
                        super::MAX_RECEIVE_COUNT,
                        std::time::Duration::from_secs(super::VISIBILITY_SECS),
                    ))
                    .await;
                }
            )*
        }
        mod moto {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(b) =
                        super::Pipeline::moto(super::MAX_RECEIVE_COUNT, super::VISIBILITY_SECS).await
                    else {
                        eprintln!("skipped: no moto");
                        return;
                    };
                    super::$name(b).await;
                }
            )*
        }
    };
}

both_backends!(
    small_payloads_are_kept_inline_and_read_back,
    medium_payloads_become_archive_objects_off_the_providers_path,
    bodies_over_the_claim_check_size_travel_as_pointers,
    a_failed_claim_check_put_releases_the_claim_and_answers_503,
    a_missing_or_damaged_object_goes_to_the_dlq_with_its_code,
    a_replay_runs_the_handler_once_more_under_the_same_id,
    a_stale_copy_of_the_original_after_a_replay_does_not_run,
    two_replays_racing_run_the_handler_once,
    a_replay_that_could_not_be_sent_is_taken_back,
    a_replay_that_crashed_half_way_is_taken_over_after_the_claim_timeout,
    replay_errors_say_why,
    bulk_replay_by_status_source_and_time_replays_each_once_even_when_run_twice,
    pointer_messages_go_through_the_dlq_and_a_purge_keeps_the_payload,
);

/// 100,000 events matched: the bulk run reads them a page at a time — no page larger than
/// asked — and counts every one (memory only: moto would take minutes to fill).
#[tokio::test]
async fn a_filter_matching_100000_events_is_paged() {
    use hookgate_core::ledger::Claim;
    let ledger = Arc::new(hookgate_core::memory::MemoryLedger::new());
    let t0 = SystemClock.now().minus(Duration::from_secs(3600));
    for n in 0..100_000u32 {
        let id = EventId::parse(&format!("demo:bulk-{n}")).unwrap();
        let at = t0.plus(Duration::from_millis(u64::from(n)));
        ledger
            .claim(&Claim {
                event_id: id.clone(),
                source: hookgate_core::SourceName::parse("demo").unwrap(),
                event_type: "t".into(),
                now: at,
                expires_at: at.plus(Duration::from_secs(86_400)),
                timeout: Duration::from_secs(30),
                token: "t".into(),
            })
            .await
            .unwrap();
    }
    struct Counting {
        ledger: Arc<dyn Ledger>,
        largest: std::sync::atomic::AtomicUsize,
    }
    #[async_trait::async_trait]
    impl hookgate_core::replay::ReplayTarget for Counting {
        async fn page(
            &self,
            q: &hookgate_core::ledger::PageQuery,
        ) -> Result<hookgate_core::ledger::Page, ReplayError> {
            let page = self.ledger.list_page(q).await?;
            self.largest.fetch_max(page.events.len(), Ordering::SeqCst);
            Ok(page)
        }
        async fn replay(
            &self,
            _: &EventId,
            _: &str,
        ) -> Result<hookgate_core::replay::Replayed, ReplayError> {
            Err(ReplayError::NotFound)
        }
    }
    let target = Counting {
        ledger: ledger.clone(),
        largest: Default::default(),
    };
    let filter = BulkFilter {
        status: EventStatus::Received,
        source: None,
        event_type: None,
        since: None,
        until: SystemClock.now(),
    };
    let options = BulkOptions {
        dry_run: true,
        ..BulkOptions::default()
    };
    let summary = run_bulk(&target, &filter, &options, &|| false, &mut |_| {}).await;
    assert_eq!(summary.matched, 100_000);
    assert_eq!(target.largest.load(Ordering::SeqCst), 100);
}
