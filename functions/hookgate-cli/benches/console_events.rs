//! The console's events page with many events: how long the local stack takes to render its
//! first page (criterion), and which requests the page makes on DynamoDB (moto), counted by
//! operation.
//!
//! ```sh
//! cargo bench -p hookgate-cli --bench console_events
//! # with moto (see docs/performance.md): HOOKGATE_MOTO_ENDPOINT=http://127.0.0.1:5123 …
//! ```
//!
//! `HOOKGATE_BENCH_EVENTS` sets how many events the in-memory ledger holds (default 100,000)
//! and `HOOKGATE_BENCH_MOTO_EVENTS` how many are written to moto (default 300: a page's
//! requests do not grow with the table, and moto writes slowly).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use axum::Router;
use criterion::{criterion_group, Criterion};
use hookgate_aws::faults::SdkFaults;
use hookgate_aws::AwsBackend;
use hookgate_cli::console::{self, ConsoleAccess, ConsoleBackend};
use hookgate_core::memory::{MemoryLedger, MemoryQueue};
use hookgate_core::replay::Replayer;
use hookgate_core::{Clock, Config, IncomingRequest, Ledger, Queue, Receiver, SystemClock};
use tower::ServiceExt;

const CONFIG: &str = r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["local-demo-s3cr3t"]
"#;

fn events(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Accepts `n` signed events through the receiver core (so the ledger holds what a stack
/// would: `queued` events, newest last).
async fn fill(config: &Config, ledger: Arc<dyn Ledger>, queue: Arc<dyn Queue>, n: usize) {
    let receiver = Receiver::new(config, ledger, queue);
    for i in 0..n {
        let body = format!(r#"{{"order":{i},"total":"42.00"}}"#);
        let signed = config
            .sign("demo", body.as_bytes(), SystemClock.now())
            .expect("demo signs");
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("x-event-type", HeaderValue::from_static("order.created"));
        for (name, value) in signed {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(&value).unwrap(),
            );
        }
        let reply = receiver
            .handle(IncomingRequest {
                method: Method::POST,
                source: "demo".to_owned(),
                headers,
                body: body.into(),
                trace_header: None,
            })
            .await;
        assert_eq!(reply.status.as_u16(), 202, "{}", reply.body_string());
    }
}

fn router(config: &Config, ledger: Arc<dyn Ledger>, queue: Arc<dyn Queue>) -> Router {
    let replayer = Arc::new(Replayer::new(config, ledger.clone(), queue, None));
    let backend = Arc::new(ConsoleBackend::new(ledger, replayer, config));
    console::router(backend, Arc::new(ConsoleAccess::new(None, false)))
}

/// Renders `path`; returns the page's size.
async fn render(router: &Router, path: &str) -> usize {
    let response = router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{path}");
    axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .len()
}

fn memory(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = Config::from_toml(CONFIG).unwrap();
    let n = events("HOOKGATE_BENCH_EVENTS", 100_000);
    let ledger: Arc<dyn Ledger> = Arc::new(MemoryLedger::new());
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let started = Instant::now();
    rt.block_on(fill(&config, ledger.clone(), queue.clone(), n));
    eprintln!(
        "{n} events accepted into the in-memory ledger in {:?}",
        started.elapsed()
    );
    let router = router(&config, ledger, queue);
    let mut group = c.benchmark_group(format!("console_events_page_{n}_events"));
    group.sample_size(20);
    for (name, path) in [
        ("status_queued_first_page", "/console?status=queued"),
        ("every_status_newest", "/console"),
    ] {
        let bytes = rt.block_on(render(&router, path));
        eprintln!("{path}: {bytes} bytes of HTML");
        group.bench_function(name, |b| b.iter(|| rt.block_on(render(&router, path))));
    }
    group.finish();
}

/// The requests the events page makes on moto, by operation.
fn moto_requests() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("moto: skipped (set HOOKGATE_MOTO_ENDPOINT to count the page's requests)");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = Config::from_toml(CONFIG).unwrap();
        let n = events("HOOKGATE_BENCH_MOTO_EVENTS", 300);
        let aws = hookgate_testkit::fresh_resources(&endpoint, 3, 30).await;
        let faults = SdkFaults::new();
        let backend = AwsBackend::from_clients(
            faults.dynamodb_client(&aws.config),
            faults.sqs_client(&aws.config),
            faults.s3_client(&aws.config),
            &aws.table,
            &aws.queue_url,
            None,
            None,
        );
        let (ledger, queue): (Arc<dyn Ledger>, Arc<dyn Queue>) =
            (backend.ledger.clone(), backend.queue.clone());
        fill(&config, ledger.clone(), queue.clone(), n).await;
        let router = router(&config, ledger.clone(), queue);
        let operations = [
            "Query",
            "Scan",
            "GetItem",
            "BatchGetItem",
            "PutItem",
            "UpdateItem",
        ];
        let count = |what: &str| {
            let counted: Vec<String> = operations
                .iter()
                .map(|op| (op, faults.attempts(op)))
                .filter(|(_, n)| *n > 0)
                .map(|(op, n)| format!("{op} {n}"))
                .collect();
            println!("moto, {n} events: {what}: {}", counted.join(", "));
            faults.reset_counts();
        };
        faults.reset_counts();
        let page = hookgate_core::ledger::PageQuery {
            destination: None,
            status: hookgate_core::EventStatus::Queued,
            source: None,
            event_type: None,
            since: None,
            until: None,
            limit: console::pages::PAGE_SIZE,
            cursor: None,
        };
        let listed = ledger.list_page(&page).await.unwrap();
        assert_eq!(listed.events.len(), console::pages::PAGE_SIZE.min(n));
        count("the listing of the first page alone (Ledger::list_page)");
        render(&router, "/console?status=queued").await;
        count("the events page, status=queued (the listing, then one capped count per status)");
        render(&router, "/console").await;
        count("the events page, every status (one listing per status, then the counts)");
    });
}

criterion_group!(benches, memory);

fn main() {
    moto_requests();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
