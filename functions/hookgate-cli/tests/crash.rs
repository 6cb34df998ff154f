//! Crash: `hookgate serve --backend aws` on moto is killed with SIGKILL in the middle of its
//! batches and started again. Every accepted event must end `processed`, recorded as processed
//! exactly once; a counting destination on 127.0.0.1 checks the ids it was sent.
//!
//! What the kill can cost is bounded and visible: a delivery in flight at the kill is sent
//! again after the message's visibility timeout, with the same `webhook-id` (the destination
//! dedupes on it), and the event's ledger history shows the attempt the crash cut off.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{client, post_signed, serve};
use futures::stream::{self, StreamExt};
use hookgate_core::{Config, EventId, EventStatus, Ledger};
use hookgate_testkit::sink::{Answer, Sink};

const EVENTS: usize = 150;
/// Records in flight at most: `concurrency` × `pollers`.
const IN_FLIGHT: usize = 10 * 2;

fn config_toml(sink: &Sink) -> String {
    format!(
        r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["crash-test-s3cr3t"]

[sources.demo.forward]
url = "{}"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
timeout_ms = 1000
allow_http = true
allow_private_networks = true

[processor]
max_receive_count = 5
visibility_timeout_secs = 2
handler_timeout_secs = 2
batch_size = 10
concurrency = 10
pollers = 2
wait_time_ms = 200
backoff_base_ms = 200
backoff_cap_secs = 1
"#,
        sink.url("/counted")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_batch_then_restart_loses_nothing_and_processes_nothing_twice() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto");
        return;
    };
    let aws = hookgate_testkit::fresh_resources(&endpoint, 5, 2).await;
    // A slow destination, so that deliveries are in flight when the process dies.
    let sink = Sink::start(Vec::new(), Answer::ok().after(Duration::from_millis(150))).await;
    let toml = config_toml(&sink);
    let config = Config::from_toml(&toml).unwrap();
    let mut first = serve(&toml, Some(&aws));

    let client = client();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let ids: Vec<EventId> = stream::iter(0..EVENTS)
        .map(|i| {
            let (client, config, base) = (&client, &config, &first.base);
            let body = format!(r#"{{"type":"order.created","run":"{run}","n":{i}}}"#);
            async move {
                let (status, answer) = post_signed(client, config, base, "demo", &body).await;
                assert_eq!(status, 202, "{answer}");
                EventId::parse(answer["event_id"].as_str().unwrap()).unwrap()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;

    // Kill it well into the work, the moment a delivery has just reached the destination (which
    // takes 150 ms to answer): that delivery, and its batch, are in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = sink.requests().len();
    loop {
        let now_seen = sink.requests().len();
        if now_seen >= 30 && now_seen > seen {
            break;
        }
        seen = now_seen;
        assert!(Instant::now() < deadline, "the destination saw only {seen}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.kill();
    let delivered_before_kill = sink.requests().len();
    assert!(delivered_before_kill < EVENTS, "killed too late to matter");

    // Same resources, a new process: it takes over what the dead one left.
    let _second = serve(&toml, Some(&aws));
    let ledger = aws.backend().ledger;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut records = HashMap::new();
    for id in &ids {
        loop {
            let record = ledger.get(id).await.unwrap();
            if let Some(r) = record.filter(|r| r.status == EventStatus::Processed) {
                records.insert(id.clone(), r);
                break;
            }
            assert!(Instant::now() < deadline, "{id} was lost");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Processed exactly once in the ledger.
    for (id, r) in &records {
        let successes = r.attempts.iter().filter(|a| a.success).count();
        assert_eq!(successes, 1, "{id}: {:?}", r.attempts);
    }
    // Every id reached the destination; an id sent twice is one whose delivery was in flight at
    // the kill, and its history shows the attempt the crash cut off.
    let mut sent: HashMap<String, usize> = HashMap::new();
    for request in sink.requests() {
        *sent
            .entry(request.headers["webhook-id"].clone())
            .or_default() += 1;
    }
    for id in &ids {
        assert!(sent.contains_key(id.as_str()), "{id} never delivered");
    }
    let resent: Vec<_> = sent.iter().filter(|(_, n)| **n > 1).collect();
    for (id, n) in &resent {
        assert_eq!(**n, 2, "{id} delivered {n} times");
        let r = &records[&EventId::parse(id).unwrap()];
        assert!(
            r.attempt_count as usize > r.attempts.len(),
            "{id} was delivered twice without a cut-off attempt: {r:?}"
        );
    }
    assert!(resent.len() <= IN_FLIGHT, "{} resent", resent.len());
    let cut_off = records
        .values()
        .filter(|r| r.attempt_count as usize > r.attempts.len())
        .count();
    println!(
        "crash: {EVENTS} events, SIGKILL after {delivered_before_kill} deliveries; lost 0, \
         processed twice 0; {cut_off} attempts cut off by the kill, {} deliveries sent again \
         (same webhook-id)",
        resent.len()
    );
}
