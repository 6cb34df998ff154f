//! The local stack's `GET /metrics`: the Prometheus text format, after real signed requests
//! over HTTP on 127.0.0.1 — through the `hookgate serve` binary (with its per-batch summary
//! lines) and through an embedded stack whose handlers fail on purpose.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{client, Served};

use hookgate_cli::local::LocalStack;
use hookgate_core::{Config, Envelope, HandlerError, Handlers, Timestamp};

const SECRET: &str = "s3cr3t-for-metrics";
const TOKEN: &str = "metrics-admin-token";

fn config_toml() -> String {
    format!(
        r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["{SECRET}"]

[processor]
max_receive_count = 2
visibility_timeout_secs = 1
wait_time_ms = 200
backoff_base_ms = 100

[admin]
token = "{TOKEN}"
"#
    )
}

/// The signature headers of `body` for source `demo`.
fn signature(body: &str) -> Vec<(String, String)> {
    let config = Config::from_toml(&config_toml()).unwrap();
    config
        .sign("demo", body.as_bytes(), Timestamp::from_secs(0))
        .unwrap()
}

async fn post(base: &str, source: &str, body: &str, headers: &[(String, String)]) -> u16 {
    let mut request = client()
        .post(format!("{base}/webhooks/{source}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().await.unwrap().status().as_u16()
}

/// `GET /metrics` without credentials: its content type and its text.
async fn scrape(base: &str) -> (String, String) {
    let response = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.text().await.unwrap())
}

/// Parses the text format: every sample line is `name{labels} value` of a family declared
/// by `# HELP` and `# TYPE` before it. Returns the samples by `name{labels}`.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut help = Vec::new();
    let mut typed = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help.push(rest.split(' ').next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "histogram"].contains(&kind), "{line}");
            assert_eq!(
                help.last().map(String::as_str),
                Some(name),
                "HELP first: {line}"
            );
            typed.push(name.to_owned());
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
            let name = series.split('{').next().unwrap();
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
                "{line}"
            );
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|family| typed.iter().any(|t| t == family))
                .unwrap_or(name);
            assert_eq!(typed.last().map(String::as_str), Some(family), "{line}");
            if series.contains('{') {
                assert!(series.ends_with('}'), "{line}");
            }
            samples.insert(series.to_owned(), value.parse::<f64>().unwrap());
        }
    }
    samples
}

/// Scrapes until `series` reaches `want`, then returns the samples and the raw text.
async fn scrape_until(base: &str, series: &str, want: f64) -> (BTreeMap<String, f64>, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = scrape(base).await;
        let samples = parse(&text);
        if samples.get(series) == Some(&want) {
            return (samples, text);
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn serve() -> Served {
    common::serve(&config_toml(), None)
}

/// `(records, processed, retried, dead-lettered)` of each `batch: …` summary line.
fn batch_summaries(log: &str) -> Vec<(u32, u32, u32, u32)> {
    log.lines()
        .filter_map(|line| line.split_once("batch: ").map(|(_, rest)| rest))
        .map(|rest| {
            let numbers: Vec<u32> = rest
                .split([' ', ','])
                .filter_map(|word| word.parse().ok())
                .collect();
            (numbers[0], numbers[1], numbers[2], numbers[3])
        })
        .collect()
}

#[tokio::test]
async fn serve_exposes_the_counters_of_real_signed_requests() {
    let served = serve();
    let base = &served.base;
    let marker = uuid::Uuid::new_v4().to_string();
    let bodies: Vec<String> = (0..3)
        .map(|n| format!(r#"{{"type":"order.created","ref":"{marker}-{n}"}}"#))
        .collect();
    let mut signatures = Vec::new();
    for body in &bodies {
        let headers = signature(body);
        assert_eq!(post(base, "demo", body, &headers).await, 202);
        signatures.push(headers[0].1.clone());
    }
    assert_eq!(
        post(base, "demo", &bodies[0], &signature(&bodies[0])).await,
        200
    );
    let forged = [(
        "x-signature".to_owned(),
        format!("sha256={}", "ab".repeat(32)),
    )];
    assert_eq!(post(base, "demo", &bodies[1], &forged).await, 401);
    assert_eq!(post(base, "elsewhere", &bodies[2], &[]).await, 404);

    let labels = r#"source="demo",type="order.created""#;
    let (samples, text) = scrape_until(
        base,
        &format!("hookgate_events_processed_total{{{labels}}}"),
        3.0,
    )
    .await;
    let (content_type, _) = scrape(base).await;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let sample = |series: &str| samples.get(series).copied().unwrap_or(0.0);
    assert_eq!(
        sample(&format!("hookgate_events_received_total{{{labels}}}")),
        4.0
    );
    assert_eq!(
        sample(&format!("hookgate_events_enqueued_total{{{labels}}}")),
        3.0
    );
    assert_eq!(
        sample(&format!("hookgate_events_duplicates_total{{{labels}}}")),
        1.0
    );
    assert_eq!(
        sample(
            r#"hookgate_events_rejected_total{source="demo",type="(unverified)",reason="signature_mismatch"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            r#"hookgate_events_rejected_total{source="(unknown)",type="(unverified)",reason="unknown_source"}"#
        ),
        1.0
    );
    for histogram in [
        "hookgate_delivery_latency_seconds",
        "hookgate_receive_to_processed_latency_seconds",
    ] {
        assert_eq!(sample(&format!("{histogram}_count{{{labels}}}")), 3.0);
        assert_eq!(
            sample(&format!("{histogram}_bucket{{{labels},le=\"+Inf\"}}")),
            3.0
        );
    }
    assert_eq!(
        sample(&format!("hookgate_events_retried_total{{{labels}}}")),
        0.0
    );

    // Nothing secret, signed or sent reaches the page.
    for needle in [SECRET, TOKEN, &marker, "ab".repeat(32).as_str()]
        .into_iter()
        .chain(signatures.iter().map(String::as_str))
    {
        assert!(!text.contains(needle), "{needle:?} in /metrics");
    }

    // One summary line per processed batch, accounting for every record.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let summaries = batch_summaries(&served.stderr.lock().unwrap());
        let processed: u32 = summaries.iter().map(|s| s.1).sum();
        if processed == 3 {
            assert!(summaries.iter().all(|s| s.0 == s.1 && s.2 == 0 && s.3 == 0));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no summary of 3 processed records in:\n{}",
            served.stderr.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn failures_are_counted_as_retried_dead_lettered_and_permanently_failed() {
    let config = Config::from_toml(&config_toml()).unwrap();
    let handlers = Handlers::new()
        .on("demo", "flaky", |_e: Envelope| async {
            Err(HandlerError::retry("downstream said no"))
        })
        .on("demo", "bad", |_e: Envelope| async {
            Err(HandlerError::permanent("downstream refused it"))
        });
    let stack = LocalStack::in_memory(config, handlers);
    let registry = stack.metrics();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(stack.serve(listener, async move {
        let _ = stopped.await;
    }));

    for body in [r#"{"type":"flaky"}"#, r#"{"type":"bad"}"#] {
        assert_eq!(post(&base, "demo", body, &signature(body)).await, 202);
    }
    let flaky = r#"source="demo",type="flaky""#;
    let (samples, _) = scrape_until(
        &base,
        &format!("hookgate_events_dead_lettered_total{{{flaky}}}"),
        1.0,
    )
    .await;
    let sample = |series: &str| samples.get(series).copied().unwrap_or(0.0);
    // Receive 1 of 2: retried; receive 2: dead-lettered.
    assert_eq!(
        sample(&format!("hookgate_events_retried_total{{{flaky}}}")),
        1.0
    );
    assert_eq!(
        sample(&format!(
            "hookgate_delivery_latency_seconds_count{{{flaky}}}"
        )),
        2.0
    );
    let bad = r#"source="demo",type="bad""#;
    assert_eq!(
        sample(&format!(
            "hookgate_events_permanently_failed_total{{{bad}}}"
        )),
        1.0
    );
    assert!(
        !samples
            .keys()
            .any(|k| k.starts_with("hookgate_events_processed_total")),
        "nothing was processed"
    );
    assert_eq!(
        registry.total(hookgate_core::metrics::Counter::DeadLettered),
        1
    );

    let _ = stop.send(());
    served.await.unwrap().unwrap();
}
