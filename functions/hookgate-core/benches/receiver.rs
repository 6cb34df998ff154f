//! The receiver core per request, in process, on the in-memory ledger and queue, with the
//! `standard` scheme: a 1 KiB body (budget: median ≤ 20 µs), and a 256 KiB body beside the floor
//! of one plain SHA-256 pass and one HMAC-SHA256 pass over the same bytes ("bounded by one pass
//! of hashing": the ratio stays near 1). Two body shapes: one long JSON string (`padded`), and
//! a provider-like object with a quote every few bytes (`json`). Beside the whole request, its
//! parts: the signature check, and the queue message built from a ready envelope.
//!
//! `cargo bench -p hookgate-core --bench receiver`
//!
//! Every timed request is a new event (the ledger deduplicates), signed beforehand outside the
//! timing; the ledger and queue are renewed every few thousand requests (also outside it) so a
//! long run does not hold gigabytes of queued 256 KiB messages.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, KeyInit, Mac};
use hookgate_core::memory::{LedgerLimits, MemoryLedger, MemoryQueue};
use hookgate_core::receiver::Accepted;
use hookgate_core::signature::SignedRequest;
use hookgate_core::Queue as _;
use hookgate_core::{
    Clock, Config, Envelope, EventId, IncomingRequest, Receiver, SourceName, SystemClock,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use sha2::{Digest, Sha256};

#[path = "../tests/support/mod.rs"]
mod support;

const SOURCE: &str = "standard";
const CONFIG: &str = r#"
[sources.standard]
scheme = "standard"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
"#;

/// A JSON body of `size` bytes with `type` first and one long string (nothing to escape but
/// its quotes): the best case for copying it into the queue message.
fn padded_body(size: usize) -> Bytes {
    let mut b = br#"{"type":"invoice.paid","data":""#.to_vec();
    b.resize(size - 2, b'x');
    b.extend_from_slice(b"\"}");
    Bytes::from(b)
}

/// A JSON body of `size` bytes shaped like a provider's: many small fields, a quote every few
/// bytes (each escaped in the queue message).
fn json_body(size: usize) -> Bytes {
    let mut b = br#"{"type":"invoice.paid","data":{"lines":["#.to_vec();
    let mut n = 0;
    while b.len() + 200 < size {
        let line = format!(
            r#"{{"id":"il_{n:06}","object":"line_item","amount":1999,"currency":"usd","description":"Pro plan \"monthly\"","metadata":{{"order":"{n}"}}}},"#
        );
        b.extend_from_slice(line.as_bytes());
        n += 1;
    }
    b.extend_from_slice(br#"{"id":"last"}]}"#);
    b.resize(size - 1, b' ');
    b.push(b'}');
    Bytes::from(b)
}

fn config() -> Config {
    Config::from_toml(CONFIG).expect("bench config")
}

/// A receiver on a fresh in-memory ledger and queue.
fn receiver() -> Receiver {
    receiver_and_queue().0
}

/// A receiver on a fresh in-memory ledger and queue, and that queue.
fn receiver_and_queue() -> (Receiver, Arc<MemoryQueue>) {
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let receiver = Receiver::new(&config(), Arc::new(MemoryLedger::new()), queue.clone());
    (receiver, queue)
}

/// [`receiver_and_queue`] with an in-memory archive: bodies over the claim-check size
/// (256 KiB) are archived and enqueued as pointers.
fn archiving_receiver_and_queue() -> (Receiver, Arc<MemoryQueue>) {
    let (receiver, queue) = receiver_and_queue();
    let archive = Arc::new(hookgate_core::memory::MemoryArchive::new());
    (receiver.with_archive(archive), queue)
}

/// A request for `body` that a receiver (with an archive or not) accepted, and whose event the
/// processor has since taken; that receiver (`.1`: it remembers the event, and answers a repeat
/// `duplicate` from memory), and another on the same ledger (`.0`: another container, which
/// asks the ledger, and gets `duplicate` from it).
fn repeat_of(
    rt: &tokio::runtime::Runtime,
    body: &Bytes,
    archive: bool,
) -> (Receiver, Receiver, IncomingRequest) {
    // The bench repeats one event's claim far more often than DynamoDB's 1,000 writes a second
    // to one key, which the memory ledger enforces (a refused conditional write counts too):
    // what is measured is the receiver's path, not the throttle.
    let unthrottled = LedgerLimits {
        table_key_writes_per_sec: u32::MAX,
        ..LedgerLimits::default()
    };
    let ledger = Arc::new(MemoryLedger::new().with_limits(unthrottled));
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let container = || {
        let receiver = Receiver::new(&config(), ledger.clone(), queue.clone());
        match archive {
            true => receiver.with_archive(Arc::new(hookgate_core::memory::MemoryArchive::new())),
            false => receiver,
        }
    };
    let (here, elsewhere) = (container(), container());
    let first = signed(&here, body);
    let Ok(Accepted::Queued(id)) = rt.block_on(here.accept(first.clone())) else {
        panic!("the first request was not accepted");
    };
    rt.block_on(support::taken(ledger.as_ref(), &id));
    (elsewhere, here, first)
}

/// A request for a new event (a fresh `webhook-id`), signed now. The body is shared, not copied.
fn signed(receiver: &Receiver, body: &Bytes) -> IncomingRequest {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in receiver.sign(SOURCE, body).expect("signs") {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(&value).expect("value"),
        );
    }
    IncomingRequest {
        method: Method::POST,
        source: SOURCE.to_owned(),
        headers,
        body: body.clone(),
        trace_header: None,
    }
}

/// What becomes of the queued messages while new events are accepted.
#[derive(Clone, Copy)]
enum Messages {
    /// The queue keeps them all (`chunk` at a time): each new message lands in fresh memory.
    Kept,
    /// They are consumed between requests (outside the timing), as the processor consumes
    /// them: the steady state of a running stack, where a message's memory is freed soon after
    /// it was sent and reused for the next.
    Consumed,
}

/// Times `iters` accepts of new events one by one, `chunk` at a time on a fresh receiver.
fn accept_new_events(
    rt: &tokio::runtime::Runtime,
    body: &Bytes,
    iters: u64,
    chunk: u64,
    messages: Messages,
) -> Duration {
    accept_new_events_on(rt, body, iters, chunk, messages, receiver_and_queue)
}

/// [`accept_new_events`] on receivers `make` builds.
fn accept_new_events_on(
    rt: &tokio::runtime::Runtime,
    body: &Bytes,
    iters: u64,
    chunk: u64,
    messages: Messages,
    make: fn() -> (Receiver, Arc<MemoryQueue>),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk);
        left -= n;
        let (receiver, queue) = make();
        let requests: Vec<IncomingRequest> = (0..n).map(|_| signed(&receiver, body)).collect();
        rt.block_on(async {
            for request in requests {
                let start = Instant::now();
                let outcome = receiver.accept(black_box(request)).await;
                total += start.elapsed();
                assert!(
                    matches!(outcome, Ok(Accepted::Queued(_))),
                    "every request is a new event, queued"
                );
                if let Messages::Consumed = messages {
                    for message in queue.receive(10, Duration::ZERO).await.expect("receive") {
                        queue.delete(&message.receipt_handle).await.expect("delete");
                    }
                }
            }
        });
    }
    total
}

/// Times `iters` copies of `body` into fresh memory, keeping `chunk` of them at a time.
fn kept_copies(body: &Bytes, iters: u64, chunk: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk);
        left -= n;
        let mut kept: Vec<Vec<u8>> = Vec::with_capacity(n as usize);
        let start = Instant::now();
        for _ in 0..n {
            kept.push(black_box(body).to_vec());
        }
        total += start.elapsed();
        drop(black_box(kept));
    }
    total
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = config();
    let name = SourceName::parse(SOURCE).expect("name");
    let scheme = config.sources[&name].scheme.clone();
    let mut group = c.benchmark_group("receiver");
    for (size, chunk) in [(1024usize, 10_000u64), (256 * 1024, 64)] {
        let body = padded_body(size);
        let json = json_body(size);
        assert_eq!((body.len(), json.len()), (size, size));
        assert!(serde_json::from_slice::<serde_json::Value>(&json).is_ok());
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("floor-sha256", size), &body, |b, body| {
            b.iter(|| Sha256::digest(black_box(body)))
        });
        group.bench_with_input(
            BenchmarkId::new("floor-hmac-sha256", size),
            &body,
            |b, body| {
                b.iter(|| {
                    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"k").expect("any key");
                    mac.update(black_box(body));
                    mac.finalize()
                })
            },
        );
        // The floor of keeping one copy of the body, as a queue holding the message must: a
        // copy into fresh memory, kept (and dropped `chunk` at a time, outside the timing, as
        // the receivers below are).
        group.bench_with_input(
            BenchmarkId::new("floor-kept-copy", size),
            &body,
            |b, body| b.iter_custom(|iters| kept_copies(body, iters, chunk)),
        );
        // The signature check alone (HMAC pass + the JSON scan for `type`), to show what the
        // rest of the request adds to it.
        let signing = receiver();
        let now = SystemClock.now();
        for (id, shape) in [("verify-standard", &body), ("verify-standard-json", &json)] {
            let request = signed(&signing, shape);
            let signed_request = SignedRequest {
                headers: &request.headers,
                body: &request.body,
            };
            assert!(scheme.verify(&name, &signed_request, now).is_ok());
            group.bench_with_input(BenchmarkId::new(id, size), &signed_request, |b, r| {
                b.iter(|| scheme.verify(&name, black_box(r), now))
            });
        }
        // The queue message of a ready envelope: the UTF-8 and SQS character checks, the head
        // line, and the copy of the body into the message.
        let envelope = Envelope {
            event_id: EventId::parse("standard:msg_1").expect("id"),
            source: name.clone(),
            event_type: "invoice.paid".into(),
            received_at: now,
            headers: [("content-type".to_owned(), "application/json".to_owned())].into(),
            body: json.clone(),
        };
        group.bench_with_input(
            BenchmarkId::new("queue-message-json", size),
            &envelope,
            |b, envelope| b.iter(|| black_box(envelope).to_message()),
        );
        group.bench_with_input(
            BenchmarkId::new("accept-new-event", size),
            &body,
            |b, body| {
                b.iter_custom(|iters| accept_new_events(&rt, body, iters, chunk, Messages::Kept))
            },
        );
        group.bench_with_input(
            BenchmarkId::new("accept-new-event-json", size),
            &json,
            |b, body| {
                b.iter_custom(|iters| accept_new_events(&rt, body, iters, chunk, Messages::Kept))
            },
        );
        group.bench_with_input(
            BenchmarkId::new("accept-new-event-json-consumed", size),
            &json,
            |b, body| {
                b.iter_custom(|iters| {
                    accept_new_events(&rt, body, iters, chunk, Messages::Consumed)
                })
            },
        );
        // A provider's retry of an event already taken: verified, then answered `duplicate` by
        // the ledger (in another container), or from memory (in the one that queued it).
        let (repeat, remembering, first) = repeat_of(&rt, &body, false);
        for (name, receiver) in [
            ("accept-duplicate", &repeat),
            ("accept-duplicate-remembered", &remembering),
        ] {
            group.bench_with_input(BenchmarkId::new(name, size), &first, |b, request| {
                b.iter(|| {
                    let outcome = rt.block_on(receiver.accept(black_box(request.clone())));
                    assert!(matches!(outcome, Ok(Accepted::Duplicate(_))), "{outcome:?}");
                })
            });
        }
    }
    group.finish();

    // A 5 MiB body (GitHub and Shopify send this much): the claim check. Verified (one HMAC
    // pass), hashed for its pointer (one SHA-256 pass), copied once into the archived object,
    // and enqueued as a pointer of a few hundred bytes.
    let mut group = c.benchmark_group("receiver-claim-check");
    group.sample_size(20);
    let size = 5 * 1024 * 1024;
    let body = json_body(size);
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_with_input(BenchmarkId::new("floor-sha256", size), &body, |b, body| {
        b.iter(|| Sha256::digest(black_box(body)))
    });
    group.bench_with_input(
        BenchmarkId::new("accept-new-event-archived", size),
        &body,
        |b, body| {
            b.iter_custom(|iters| {
                accept_new_events_on(
                    &rt,
                    body,
                    iters,
                    4,
                    Messages::Consumed,
                    archiving_receiver_and_queue,
                )
            })
        },
    );
    let (repeat, _, first) = repeat_of(&rt, &body, true);
    group.bench_with_input(
        BenchmarkId::new("accept-duplicate", size),
        &first,
        |b, request| {
            b.iter(|| {
                let outcome = rt.block_on(repeat.accept(black_box(request.clone())));
                assert!(matches!(outcome, Ok(Accepted::Duplicate(_))));
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
