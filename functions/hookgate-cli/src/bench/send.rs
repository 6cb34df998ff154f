//! The sending side of `hookgate bench`: signed requests prepared ahead, the order they go out
//! in (repeats included), and the connections that send them and count the answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hookgate_core::signature::SignatureScheme;
use hookgate_core::{Clock, SystemClock};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};

use super::report::Latency;
use super::BenchError;

/// One signed request, ready to send.
pub(super) struct Prepared {
    body: Bytes,
    headers: HeaderMap,
}

/// Signs `unique` new events, each with its own body and body `id` (so every scheme, whatever
/// it derives the event id from, sees a new event).
pub(super) fn prepare(
    scheme: &dyn SignatureScheme,
    source: &str,
    unique: usize,
    body_bytes: usize,
) -> Result<Vec<Prepared>, BenchError> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let now = SystemClock.now();
    (0..unique)
        .map(|n| {
            let mut body =
                format!(r#"{{"id":"evt_{run}_{n}","type":"bench.event","pad":""#).into_bytes();
            body.resize(body_bytes.saturating_sub(2).max(body.len()), b'x');
            body.extend_from_slice(b"\"}");
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let signed = scheme.sign(&body, now);
            if signed.is_empty() {
                return Err(BenchError::Source(
                    source.to_owned(),
                    "has no secret to sign with".into(),
                ));
            }
            for (name, value) in signed {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| BenchError::Source(source.to_owned(), e.to_string()))?;
                let value = HeaderValue::from_str(&value)
                    .map_err(|e| BenchError::Source(source.to_owned(), e.to_string()))?;
                headers.insert(name, value);
            }
            Ok(Prepared {
                body: Bytes::from(body),
                headers,
            })
        })
        .collect()
}

/// The order of sending: indices into the prepared events. A repeat names an event placed at
/// least `2 × concurrency` requests earlier, so it normally arrives after its original was
/// answered (else the stack rightly answers `409 event_in_progress`).
pub(super) fn plan(requests: usize, duplicates_pct: u8, concurrency: usize) -> (Vec<usize>, usize) {
    let pct = usize::from(duplicates_pct.min(100));
    let gap = 2 * concurrency;
    let mut order = Vec::with_capacity(requests);
    let mut unique = 0;
    let mut repeats = 0;
    for p in 0..requests {
        let repeat_slot = (p + 1) * pct / 100 > p * pct / 100;
        if repeat_slot && unique > gap {
            // Spread the repeats over the events sent so far.
            order.push((p * 7919) % (unique - gap));
            repeats += 1;
        } else {
            order.push(unique);
            unique += 1;
        }
    }
    (order, repeats)
}

/// How an answer counts.
enum Answer {
    Queued(String),
    Duplicate,
    InProgress,
    Failed(String),
}

async fn send(client: &reqwest::Client, url: &str, request: &Prepared) -> Answer {
    let response = match client
        .post(url)
        .headers(request.headers.clone())
        .body(request.body.clone())
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Answer::Failed(format!("no answer: {e}")),
    };
    let status = response.status();
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return Answer::Failed(format!("{status}, body unreadable: {e}")),
    };
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let field = |name: &str| json.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    match (status.as_u16(), field("status").as_deref()) {
        (202, Some("queued")) => match field("event_id") {
            Some(id) => Answer::Queued(id),
            None => Answer::Failed("202 without an event_id".into()),
        },
        (200, Some("duplicate")) => Answer::Duplicate,
        (409, _) => Answer::InProgress,
        _ => Answer::Failed(format!(
            "{status} {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        )),
    }
}

/// What one connection saw.
pub(super) struct Sent {
    /// The accepted event ids, with when each was answered.
    queued: Vec<(Instant, String)>,
    duplicate: usize,
    in_progress: usize,
    failed: usize,
    first_failure: Option<String>,
    latency: Histogram<u64>,
    last_answer: Instant,
}

fn histogram() -> Result<Histogram<u64>, BenchError> {
    // Microseconds, 1 µs to 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).map_err(|e| BenchError::Options(e.to_string()))
}

/// Sends every planned request over `concurrency` connections.
pub(super) async fn send_all(
    client: reqwest::Client,
    url: String,
    prepared: Arc<Vec<Prepared>>,
    order: Arc<Vec<usize>>,
    concurrency: usize,
    start: Instant,
) -> Result<Vec<Sent>, BenchError> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut connections = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, prepared, order, next) = (
            client.clone(),
            url.clone(),
            prepared.clone(),
            order.clone(),
            next.clone(),
        );
        let mut sent = Sent {
            queued: Vec::new(),
            duplicate: 0,
            in_progress: 0,
            failed: 0,
            first_failure: None,
            latency: histogram()?,
            last_answer: start,
        };
        connections.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&event) = order.get(i) else {
                    break;
                };
                let began = Instant::now();
                let answer = send(&client, &url, &prepared[event]).await;
                sent.last_answer = Instant::now();
                let micros =
                    u64::try_from((sent.last_answer - began).as_micros()).unwrap_or(u64::MAX);
                sent.latency.saturating_record(micros.max(1));
                match answer {
                    Answer::Queued(id) => sent.queued.push((sent.last_answer, id)),
                    Answer::Duplicate => sent.duplicate += 1,
                    Answer::InProgress => sent.in_progress += 1,
                    Answer::Failed(e) => {
                        sent.failed += 1;
                        sent.first_failure.get_or_insert(e);
                    }
                }
            }
            sent
        });
    }
    let mut all = Vec::with_capacity(concurrency);
    while let Some(done) = connections.join_next().await {
        all.push(done.map_err(|e| BenchError::Http(format!("a connection task failed: {e}")))?);
    }
    Ok(all)
}

/// Every connection's answers, added up.
pub(super) struct Answers {
    /// Accepted event ids, the first answered first (about the order the queue hands them out).
    pub(super) queued: Vec<String>,
    pub(super) duplicate: usize,
    pub(super) in_progress: usize,
    pub(super) failed: usize,
    pub(super) first_failure: Option<String>,
    pub(super) latency: Latency,
    /// From the first request to the last answer.
    pub(super) elapsed: Duration,
}

/// Adds up what the connections saw, the clock having started at `start`.
pub(super) fn tally(sent: Vec<Sent>, start: Instant) -> Result<Answers, BenchError> {
    let mut latency = histogram()?;
    let mut queued = Vec::new();
    let mut last_answer = start;
    let (mut duplicate, mut in_progress, mut failed) = (0, 0, 0);
    let mut first_failure = None;
    for s in sent {
        queued.extend(s.queued);
        duplicate += s.duplicate;
        in_progress += s.in_progress;
        failed += s.failed;
        first_failure = first_failure.or(s.first_failure);
        latency
            .add(&s.latency)
            .map_err(|e| BenchError::Options(e.to_string()))?;
        last_answer = last_answer.max(s.last_answer);
    }
    queued.sort_unstable();
    let micros = |q: f64| Duration::from_micros(latency.value_at_quantile(q));
    Ok(Answers {
        queued: queued.into_iter().map(|(_, id)| id).collect(),
        duplicate,
        in_progress,
        failed,
        first_failure,
        latency: Latency {
            p50: micros(0.50),
            p90: micros(0.90),
            p99: micros(0.99),
            max: Duration::from_micros(latency.max()),
        },
        elapsed: last_answer - start,
    })
}
