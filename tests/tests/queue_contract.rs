//! The `Queue` contract: one suite, run against `MemoryQueue` and against `SqsQueue` on moto.
//!
//! Every test gets a queue with a 1 s visibility timeout whose messages move to a dead-letter
//! queue after 2 receives, and that DLQ as a queue of its own (it has no DLQ itself). moto
//! keeps visibility in real time, so the tests really wait; they wait with long polls rather
//! than fixed sleeps where they can.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookgate_core::memory::MemoryQueue;
use hookgate_core::queue::{attr, OutgoingMessage, Queue, QueueError, ReceivedMessage};

const VISIBILITY_SECS: u64 = 1;
const VISIBILITY: Duration = Duration::from_secs(VISIBILITY_SECS);
const MAX_RECEIVE_COUNT: u32 = 2;
/// Long enough for a message whose visibility timeout has run out to come back.
const LONG_POLL: Duration = Duration::from_secs(3);
/// An X-Ray trace header as Lambda hands one to an invocation.
const TRACE_HEADER: &str =
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

/// A queue and its dead-letter queue.
struct Queues {
    queue: Arc<dyn Queue>,
    dlq: Arc<dyn Queue>,
}

fn message(body: &str) -> OutgoingMessage {
    OutgoingMessage {
        delay: None,
        body: body.to_owned(),
        attributes: BTreeMap::from([
            (attr::EVENT_ID.to_owned(), format!("github:{body}")),
            (attr::SOURCE.to_owned(), "github".to_owned()),
            (attr::EVENT_TYPE.to_owned(), "push".to_owned()),
        ]),
        trace_header: None,
    }
}

async fn receive_one(queue: &dyn Queue, wait: Duration) -> ReceivedMessage {
    let mut got = queue.receive(10, wait).await.unwrap();
    assert_eq!(got.len(), 1, "expected exactly one message, got {got:?}");
    got.remove(0)
}

async fn assert_empty(queue: &dyn Queue, wait: Duration) {
    let got = queue.receive(10, wait).await.unwrap();
    assert!(got.is_empty(), "expected no message, got {got:?}");
}

// ---------------------------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------------------------

async fn send_receive_round_trip(q: Queues) {
    let sent = message(r#"{"hello":"wörld","n":1}"#);
    let id = q.queue.send(sent.clone()).await.unwrap();
    assert!(!id.is_empty());
    let got = receive_one(q.queue.as_ref(), LONG_POLL).await;
    assert_eq!(got.message_id, id);
    assert_eq!(got.body, sent.body);
    assert_eq!(got.attributes, sent.attributes);
    assert_eq!(got.receive_count, 1);
    assert!(!got.receipt_handle.is_empty());
}

/// Twelve messages sent as a batch (ten, then two): each sent once, with its attributes, an id
/// for each in the order given. (Each entry carries its trace header too — checked where the
/// entry is built, `hookgate_aws::queue`: moto drops system attributes in batches.)
async fn send_batch_sends_each_once_in_order(q: Queues) {
    let messages: Vec<OutgoingMessage> = (0..12)
        .map(|n| OutgoingMessage {
            trace_header: Some(format!("Root=1-00000000-{n:024}")),
            ..message(&format!("batch-{n}"))
        })
        .collect();
    let results = q.queue.send_batch(messages).await;
    assert_eq!(results.len(), 12);
    let ids: Vec<String> = results.into_iter().map(Result::unwrap).collect();
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 12, "one id each: {ids:?}");
    let mut received = Vec::new();
    while received.len() < 12 {
        let got = q.queue.receive(10, Duration::from_secs(1)).await.unwrap();
        assert!(!got.is_empty(), "only {} came back", received.len());
        received.extend(got);
    }
    let mut bodies: Vec<&str> = received.iter().map(|m| m.body.as_str()).collect();
    bodies.sort_by_key(|b| b.trim_start_matches("batch-").parse::<u32>().unwrap());
    let want: Vec<String> = (0..12).map(|n| format!("batch-{n}")).collect();
    assert_eq!(bodies, want);
    for m in &received {
        assert_eq!(m.attributes[attr::EVENT_ID], format!("github:{}", m.body));
        assert!(
            ids.contains(&m.message_id),
            "{} was not given out",
            m.message_id
        );
    }
    assert_empty(&*q.queue, Duration::ZERO).await;
}

async fn received_message_is_invisible_then_redelivered(q: Queues) {
    let id = q.queue.send(message("a")).await.unwrap();
    let first = receive_one(q.queue.as_ref(), LONG_POLL).await;
    let received_at = Instant::now();
    assert_eq!(first.receive_count, 1);
    // Invisible while its visibility timeout runs.
    assert_empty(q.queue.as_ref(), Duration::ZERO).await;
    // Then back, with its count raised and a new receipt.
    let second = receive_one(q.queue.as_ref(), LONG_POLL).await;
    assert!(
        received_at.elapsed() >= VISIBILITY - Duration::from_millis(100),
        "redelivered after {:?}, before the visibility timeout",
        received_at.elapsed()
    );
    assert_eq!(second.message_id, id);
    assert_eq!(second.body, "a");
    assert_eq!(second.receive_count, 2);
    assert_ne!(second.receipt_handle, first.receipt_handle);
}

async fn change_visibility_zero_makes_visible_at_once(q: Queues) {
    q.queue.send(message("a")).await.unwrap();
    let first = receive_one(q.queue.as_ref(), LONG_POLL).await;
    // Hide it for far longer than the long poll below, then make it visible at once: only the
    // second change can bring it back within the poll.
    q.queue
        .change_visibility(&first.receipt_handle, Duration::from_secs(30))
        .await
        .unwrap();
    q.queue
        .change_visibility(&first.receipt_handle, Duration::ZERO)
        .await
        .unwrap();
    let second = receive_one(q.queue.as_ref(), LONG_POLL).await;
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.receive_count, 2);
}

async fn change_visibility_extends_the_timeout(q: Queues) {
    q.queue.send(message("a")).await.unwrap();
    let first = receive_one(q.queue.as_ref(), LONG_POLL).await;
    q.queue
        .change_visibility(&first.receipt_handle, Duration::from_secs(4))
        .await
        .unwrap();
    // Past the queue's own 1 s timeout, still hidden.
    tokio::time::sleep(VISIBILITY + Duration::from_millis(600)).await;
    assert_empty(q.queue.as_ref(), Duration::ZERO).await;
    // The same receipt still controls it.
    q.queue
        .change_visibility(&first.receipt_handle, Duration::ZERO)
        .await
        .unwrap();
    let second = receive_one(q.queue.as_ref(), LONG_POLL).await;
    assert_eq!(second.receive_count, 2);
}

async fn delete_removes_the_message(q: Queues) {
    q.queue.send(message("a")).await.unwrap();
    let got = receive_one(q.queue.as_ref(), LONG_POLL).await;
    q.queue.delete(&got.receipt_handle).await.unwrap();
    // Deleting again is not an error.
    q.queue.delete(&got.receipt_handle).await.unwrap();
    // It does not come back after its visibility timeout.
    assert_empty(q.queue.as_ref(), VISIBILITY + Duration::from_secs(1)).await;
    // Nor did it go to the DLQ.
    assert_empty(q.dlq.as_ref(), Duration::ZERO).await;
}

async fn receive_takes_at_most_max(q: Queues) {
    for body in ["a", "b", "c"] {
        q.queue.send(message(body)).await.unwrap();
    }
    let mut bodies = Vec::new();
    let first = q.queue.receive(2, LONG_POLL).await.unwrap();
    assert!(
        (1..=2).contains(&first.len()),
        "receive(2) gave {} messages",
        first.len()
    );
    bodies.extend(first.into_iter().map(|m| m.body));
    while bodies.len() < 3 {
        let more = q.queue.receive(10, LONG_POLL).await.unwrap();
        assert!(!more.is_empty(), "messages went missing: have {bodies:?}");
        bodies.extend(more.into_iter().map(|m| m.body));
    }
    bodies.sort();
    assert_eq!(bodies, ["a", "b", "c"]);
    assert_empty(q.queue.as_ref(), Duration::ZERO).await;
}

async fn redrive_after_max_receive_count(q: Queues) {
    let sent = OutgoingMessage {
        trace_header: Some(TRACE_HEADER.to_owned()),
        ..message("poison")
    };
    let id = q.queue.send(sent.clone()).await.unwrap();
    for n in 1..=MAX_RECEIVE_COUNT {
        let got = receive_one(q.queue.as_ref(), LONG_POLL).await;
        assert_eq!(got.receive_count, n);
        q.queue
            .change_visibility(&got.receipt_handle, Duration::ZERO)
            .await
            .unwrap();
    }
    // Received `max_receive_count` times: the next delivery goes to the DLQ instead.
    assert_empty(q.queue.as_ref(), Duration::from_secs(1)).await;
    let dead = receive_one(q.dlq.as_ref(), LONG_POLL).await;
    assert_eq!(dead.message_id, id, "redrive keeps the message id");
    assert_eq!(dead.body, sent.body);
    assert_eq!(dead.attributes, sent.attributes);
    assert_eq!(dead.trace_header.as_deref(), Some(TRACE_HEADER));
    // (The DLQ's receive count differs: MemoryQueue restarts it, SQS/moto carries it on.)
    assert!(dead.receive_count >= 1);
    // And it is gone from the main queue for good.
    assert_empty(q.queue.as_ref(), Duration::from_secs(1)).await;
}

async fn trace_header_travels_with_the_message(q: Queues) {
    let traced = OutgoingMessage {
        trace_header: Some(TRACE_HEADER.to_owned()),
        ..message("traced")
    };
    q.queue.send(traced).await.unwrap();
    q.queue.send(message("untraced")).await.unwrap();
    let mut received = Vec::new();
    let deadline = Instant::now() + LONG_POLL;
    while received.len() < 2 && Instant::now() < deadline {
        received.extend(q.queue.receive(10, Duration::from_secs(1)).await.unwrap());
    }
    received.sort_by(|a, b| a.body.cmp(&b.body));
    let [got, other] = <[ReceivedMessage; 2]>::try_from(received).unwrap();
    assert_eq!(got.body, "traced");
    assert_eq!(got.trace_header.as_deref(), Some(TRACE_HEADER));
    assert_eq!(other.body, "untraced");
    assert_eq!(other.trace_header, None);
    // Moved to the DLQ, it keeps its trace.
    q.queue.move_to_dlq(&got).await.unwrap();
    let dead = receive_one(q.dlq.as_ref(), LONG_POLL).await;
    assert_eq!(dead.body, "traced");
    assert_eq!(dead.trace_header.as_deref(), Some(TRACE_HEADER));
}

async fn move_to_dlq_moves_at_once(q: Queues) {
    let sent = message("give-up");
    q.queue.send(sent.clone()).await.unwrap();
    let got = receive_one(q.queue.as_ref(), LONG_POLL).await;
    assert_eq!(got.receive_count, 1);
    q.queue.move_to_dlq(&got).await.unwrap();
    let dead = receive_one(q.dlq.as_ref(), LONG_POLL).await;
    assert_eq!(dead.body, sent.body);
    assert_eq!(dead.attributes, sent.attributes);
    assert_eq!(dead.receive_count, 1);
    // Deleted from the main queue: it does not come back after its visibility timeout.
    assert_empty(q.queue.as_ref(), VISIBILITY + Duration::from_secs(1)).await;
}

async fn move_to_dlq_without_a_dlq_fails(q: Queues) {
    // The DLQ has no DLQ of its own.
    q.dlq.send(message("x")).await.unwrap();
    let got = receive_one(q.dlq.as_ref(), LONG_POLL).await;
    assert_eq!(
        q.dlq.move_to_dlq(&got).await,
        Err(QueueError::NoDeadLetterQueue)
    );
    // The message was left alone: still in flight under its receipt.
    q.dlq
        .change_visibility(&got.receipt_handle, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(receive_one(q.dlq.as_ref(), LONG_POLL).await.body, "x");
}

async fn change_visibility_with_a_dead_receipt_fails(q: Queues) {
    q.queue.send(message("a")).await.unwrap();
    let got = receive_one(q.queue.as_ref(), LONG_POLL).await;
    q.queue.delete(&got.receipt_handle).await.unwrap();
    let r = q
        .queue
        .change_visibility(&got.receipt_handle, Duration::ZERO)
        .await;
    assert!(matches!(r, Err(QueueError::InvalidReceipt(_))), "got {r:?}");
    let r = q
        .queue
        .change_visibility("not-a-receipt-handle", Duration::ZERO)
        .await;
    assert!(matches!(r, Err(QueueError::InvalidReceipt(_))), "got {r:?}");
}

async fn long_poll_returns_a_message_sent_while_waiting(q: Queues) {
    let queue = q.queue.clone();
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        queue.send(message("late")).await.unwrap()
    });
    let started = Instant::now();
    let got = q.queue.receive(1, Duration::from_secs(10)).await.unwrap();
    let waited = started.elapsed();
    let id = sender.await.unwrap();
    assert_eq!(got.len(), 1, "long poll returned {got:?}");
    assert_eq!(got[0].message_id, id);
    assert_eq!(got[0].body, "late");
    assert!(waited < Duration::from_secs(5), "long poll took {waited:?}");
}

async fn empty_receive_waits_then_returns_nothing(q: Queues) {
    let started = Instant::now();
    assert_empty(q.queue.as_ref(), Duration::from_secs(1)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "returned after {:?}",
        started.elapsed()
    );
}

async fn bad_arguments_are_refused(q: Queues) {
    for (max, wait) in [
        (0, Duration::ZERO),
        (11, Duration::ZERO),
        (1, Duration::from_secs(21)),
    ] {
        let r = q.queue.receive(max, wait).await;
        assert!(
            matches!(r, Err(QueueError::Invalid(_))),
            "receive({max}, {wait:?}): {r:?}"
        );
    }
    q.queue.send(message("a")).await.unwrap();
    let got = receive_one(q.queue.as_ref(), LONG_POLL).await;
    let r = q
        .queue
        .change_visibility(&got.receipt_handle, Duration::from_secs(12 * 3600 + 1))
        .await;
    assert!(matches!(r, Err(QueueError::Invalid(_))), "got {r:?}");

    let limit = q.queue.max_message_bytes();
    assert_eq!(limit, hookgate_core::queue::SQS_MAX_MESSAGE_BYTES);
    let big = OutgoingMessage {
        delay: None,
        body: "x".repeat(limit + 1),
        attributes: BTreeMap::new(),
        trace_header: None,
    };
    assert_eq!(
        q.queue.send(big).await,
        Err(QueueError::TooLarge(limit + 1))
    );
}

// ---------------------------------------------------------------------------------------------
// Running the contract against each implementation
// ---------------------------------------------------------------------------------------------

fn memory_queues() -> Queues {
    let (queue, dlq) = MemoryQueue::with_dlq(VISIBILITY, MAX_RECEIVE_COUNT);
    Queues { queue, dlq }
}

async fn moto_queues() -> Option<Queues> {
    let endpoint = hookgate_testkit::moto_endpoint()?;
    let resources =
        hookgate_testkit::fresh_resources(&endpoint, MAX_RECEIVE_COUNT, VISIBILITY_SECS).await;
    Some(Queues {
        queue: resources.backend().queue,
        dlq: Arc::new(resources.dlq()),
    })
}

macro_rules! queue_contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::memory_queues()).await;
                }
            )*
        }

        mod moto {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(queues) = super::moto_queues().await else {
                        eprintln!("skipped: no moto");
                        return;
                    };
                    super::$name(queues).await;
                }
            )*
        }
    };
}

queue_contract!(
    send_batch_sends_each_once_in_order,
    send_receive_round_trip,
    received_message_is_invisible_then_redelivered,
    change_visibility_zero_makes_visible_at_once,
    change_visibility_extends_the_timeout,
    delete_removes_the_message,
    receive_takes_at_most_max,
    redrive_after_max_receive_count,
    trace_header_travels_with_the_message,
    move_to_dlq_moves_at_once,
    move_to_dlq_without_a_dlq_fails,
    change_visibility_with_a_dead_receipt_fails,
    long_poll_returns_a_message_sent_while_waiting,
    empty_receive_waits_then_returns_nothing,
    bad_arguments_are_refused,
);
