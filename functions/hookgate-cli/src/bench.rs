//! `hookgate bench`: a load generator for the local stack, end to end over loopback HTTP.
//!
//! It exists to hold the performance budget of the whole path — signed request → receiver →
//! queue → processor → `processed` in the ledger — which no in-process benchmark covers. By
//! default it starts a local stack in this process on the in-memory backends on 127.0.0.1;
//! with `--url` it drives a stack already running (and reads statuses through its status API
//! with the admin token).
//!
//! Every request is signed before the clock starts (the load generator's signing is not the
//! stack's cost). `concurrency` connections send one request after another; a share of the
//! requests may repeat an event sent earlier (`--duplicates`), which the stack must answer
//! `200 duplicate`. Then the tool waits until every accepted event is `processed` (or
//! `dead_lettered`, or the timeout passes) and reports throughput and accept latency.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use hookgate_core::memory::{MemoryLedger, MemoryQueue};
use hookgate_core::signature::{self, SignatureScheme};
use hookgate_core::{
    Clock, Config, EventId, EventStatus, Handlers, Ledger, SourceName, SystemClock,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use tokio::sync::oneshot;

use crate::local::{LocalStack, StackError};

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Requests to send, duplicates included.
    pub requests: usize,
    /// Connections sending at once.
    pub concurrency: usize,
    /// Share of the requests (0–100) that repeat an event sent earlier.
    pub duplicates_pct: u8,
    /// The configured source to sign for.
    pub source: String,
    /// Size of each body, in bytes (a JSON object; at least 64).
    pub body_bytes: usize,
    /// How long to wait for every accepted event to be processed.
    pub timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            requests: 20_000,
            concurrency: 64,
            duplicates_pct: 0,
            source: "demo".into(),
            body_bytes: 1024,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Where the load goes.
pub enum Target {
    /// A local stack started in this process on the in-memory backends, running `handlers`.
    InProcess(Handlers),
    /// A stack already running at this base URL; statuses are read with the admin token.
    Url {
        /// Base URL, e.g. `http://127.0.0.1:3000`.
        base: String,
        /// The stack's `[admin] token`.
        admin_token: String,
    },
}

/// Why the load could not be run (an event that did not get processed is not an error: the
/// report says so).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An option that cannot work.
    #[error("{0}")]
    Options(String),
    /// The source is not configured, or cannot sign.
    #[error("source {0:?}: {1}")]
    Source(String, String),
    /// The in-process stack could not be built or started.
    #[error("local stack: {0}")]
    Stack(String),
    /// The HTTP client could not be built, or the stack could not be reached.
    #[error("{0}")]
    Http(String),
    /// The status of an event could not be read.
    #[error("cannot read the status of {0}: {1}")]
    Status(String, String),
}

impl From<StackError> for BenchError {
    fn from(e: StackError) -> Self {
        BenchError::Stack(e.to_string())
    }
}

/// Accept latency percentiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadReport {
    /// Where the load went.
    pub target: String,
    /// Requests sent.
    pub requests: usize,
    /// Of which repeats of an event sent earlier.
    pub repeats_sent: usize,
    /// Connections sending at once.
    pub concurrency: usize,
    /// Body size.
    pub body_bytes: usize,
    /// Answered `202 queued`.
    pub queued: usize,
    /// Answered `200 duplicate`.
    pub duplicate: usize,
    /// Answered `409 event_in_progress` (a repeat that met its original mid-way).
    pub in_progress: usize,
    /// Any other answer, or no answer.
    pub failed: usize,
    /// The first failure, as an example.
    pub first_failure: Option<String>,
    /// From the first request to the last answer.
    pub accept_elapsed: Duration,
    /// Accept latency, request sent → answer read.
    pub latency: Latency,
    /// Accepted events seen `processed`.
    pub processed: usize,
    /// Accepted events seen `dead_lettered`.
    pub dead_lettered: usize,
    /// Accepted events neither, when the timeout passed.
    pub unfinished: usize,
    /// From the first request until every accepted event was seen processed (or dead-lettered).
    pub processed_elapsed: Duration,
}

impl LoadReport {
    /// Requests answered per second.
    pub fn accepted_per_sec(&self) -> f64 {
        per_sec(self.requests, self.accept_elapsed)
    }

    /// Events processed per second, end to end.
    pub fn processed_per_sec(&self) -> f64 {
        per_sec(self.processed, self.processed_elapsed)
    }

    /// Every request answered as expected and every accepted event processed.
    pub fn is_complete(&self) -> bool {
        self.failed == 0
            && self.queued + self.duplicate + self.in_progress == self.requests
            && self.processed == self.queued
            && self.dead_lettered == 0
            && self.unfinished == 0
    }
}

fn per_sec(n: usize, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        return 0.0;
    }
    n as f64 / elapsed.as_secs_f64()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "target: {}; {} requests ({} repeats of earlier events), {} connections, {} B bodies",
            self.target, self.requests, self.repeats_sent, self.concurrency, self.body_bytes
        )?;
        writeln!(
            f,
            "answers: {} queued, {} duplicate, {} in progress, {} failed{}",
            self.queued,
            self.duplicate,
            self.in_progress,
            self.failed,
            self.first_failure
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        )?;
        writeln!(
            f,
            "accepted: {:.0} requests/s ({} in {:.3} s); latency p50 {}, p90 {}, p99 {}, max {}",
            self.accepted_per_sec(),
            self.requests,
            self.accept_elapsed.as_secs_f64(),
            ms(self.latency.p50),
            ms(self.latency.p90),
            ms(self.latency.p99),
            ms(self.latency.max)
        )?;
        write!(
            f,
            "processed: {:.0} events/s end to end ({} of {} queued in {:.3} s; {} dead-lettered, {} unfinished)",
            self.processed_per_sec(),
            self.processed,
            self.queued,
            self.processed_elapsed.as_secs_f64(),
            self.dead_lettered,
            self.unfinished
        )
    }
}

/// One signed request, ready to send.
struct Prepared {
    body: Bytes,
    headers: HeaderMap,
}

/// Signs `unique` new events, each with its own body and body `id` (so every scheme, whatever
/// it derives the event id from, sees a new event).
fn prepare(
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
fn plan(requests: usize, duplicates_pct: u8, concurrency: usize) -> (Vec<usize>, usize) {
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
struct Sent {
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
async fn send_all(
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

/// Reads an event's status: from the in-process ledger, or through the status API.
enum StatusReader {
    Ledger(Arc<dyn Ledger>),
    Http {
        client: reqwest::Client,
        base: String,
        token: String,
    },
}

impl StatusReader {
    async fn status(&self, id: &str) -> Result<Option<EventStatus>, BenchError> {
        let failed = |e: String| BenchError::Status(id.to_owned(), e);
        match self {
            StatusReader::Ledger(ledger) => {
                let id = EventId::parse(id).map_err(|e| failed(e.to_string()))?;
                let record = ledger.get(&id).await.map_err(|e| failed(e.to_string()))?;
                Ok(record.map(|r| r.status))
            }
            StatusReader::Http {
                client,
                base,
                token,
            } => {
                let response = client
                    .get(format!("{base}/events/{id}"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                match response.status().as_u16() {
                    404 => Ok(None),
                    200 => {
                        let json: serde_json::Value =
                            response.json().await.map_err(|e| failed(e.to_string()))?;
                        let status = json.get("status").cloned().unwrap_or_default();
                        serde_json::from_value(status)
                            .map(Some)
                            .map_err(|e| failed(e.to_string()))
                    }
                    code => Err(failed(format!("the status API answered {code}"))),
                }
            }
        }
    }
}

/// What waiting found.
#[derive(Default)]
struct Finished {
    processed: usize,
    dead_lettered: usize,
    unfinished: usize,
}

/// Waits until every id is processed or dead-lettered, or `deadline` passes. Ids are checked in
/// the order they were accepted, a window at a time from the oldest not yet finished, so each
/// event is read about once however long the wait.
async fn wait_processed(
    reader: &StatusReader,
    ids: &[String],
    deadline: Instant,
) -> Result<Finished, BenchError> {
    const WINDOW: usize = 64;
    let mut finished = Finished::default();
    let mut done = 0;
    while done < ids.len() {
        let window = &ids[done..ids.len().min(done + WINDOW)];
        let statuses: Vec<Option<EventStatus>> = stream::iter(window)
            .map(|id| reader.status(id))
            .buffered(16)
            .try_collect()
            .await?;
        let mut advanced = 0;
        for status in statuses {
            match status {
                Some(EventStatus::Processed) => finished.processed += 1,
                Some(EventStatus::DeadLettered) => finished.dead_lettered += 1,
                _ => break,
            }
            advanced += 1;
        }
        done += advanced;
        if advanced < window.len() {
            if Instant::now() >= deadline {
                finished.unfinished = ids.len() - done;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Ok(finished)
}

/// Runs the load against `target`, signing with `config`'s source `options.source`.
pub async fn run(
    config: &Config,
    target: Target,
    options: &LoadOptions,
) -> Result<LoadReport, BenchError> {
    if options.requests == 0 || options.concurrency == 0 {
        return Err(BenchError::Options(
            "--requests and --concurrency must be at least 1".into(),
        ));
    }
    if options.duplicates_pct > 100 {
        return Err(BenchError::Options(
            "--duplicates is a percentage (0-100)".into(),
        ));
    }
    let unknown = || BenchError::Source(options.source.clone(), "is not configured".into());
    let name = SourceName::parse(&options.source).map_err(|_| unknown())?;
    let source = config.sources.get(&name).ok_or_else(unknown)?;
    let scheme = signature::build(&name, source)
        .map_err(|e| BenchError::Source(options.source.clone(), e.to_string()))?;

    let (order, repeats_sent) = plan(
        options.requests,
        options.duplicates_pct,
        options.concurrency,
    );
    let unique = order.len() - repeats_sent;
    let prepared = Arc::new(prepare(
        scheme.as_ref(),
        &options.source,
        unique,
        options.body_bytes.max(64),
    )?);
    let client = hookgate_core::delivery::client_builder()
        .pool_max_idle_per_host(options.concurrency)
        .build()
        .map_err(|e| BenchError::Http(e.to_string()))?;

    // Start the in-process stack, or take the given one.
    let mut stack = None;
    let (base, reader) = match target {
        Target::InProcess(handlers) => {
            let ledger = Arc::new(MemoryLedger::new());
            let (queue, dlq) = MemoryQueue::with_dlq(
                config.processor.visibility_timeout(),
                config.processor.max_receive_count,
            );
            let local = LocalStack::new(config, ledger.clone(), queue, handlers)?.with_dlq(dlq);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| BenchError::Stack(e.to_string()))?;
            let addr = listener
                .local_addr()
                .map_err(|e| BenchError::Stack(e.to_string()))?;
            let (stop, stopped) = oneshot::channel::<()>();
            let serving = tokio::spawn(local.serve(listener, async {
                let _ = stopped.await;
            }));
            stack = Some((stop, serving));
            (
                format!("http://{addr}"),
                StatusReader::Ledger(ledger as Arc<dyn Ledger>),
            )
        }
        Target::Url { base, admin_token } => {
            let base = base.trim_end_matches('/').to_owned();
            let reader = StatusReader::Http {
                client: client.clone(),
                base: base.clone(),
                token: admin_token,
            };
            (base, reader)
        }
    };
    let target_name = match &stack {
        Some(_) => format!("in-process local stack on {base}"),
        None => base.clone(),
    };

    let start = Instant::now();
    let sent = send_all(
        client,
        format!("{base}/webhooks/{}", options.source),
        prepared,
        Arc::new(order),
        options.concurrency,
        start,
    )
    .await;
    let result = match sent {
        Ok(sent) => {
            let mut report = LoadReport {
                target: target_name,
                requests: options.requests,
                repeats_sent,
                concurrency: options.concurrency,
                body_bytes: options.body_bytes.max(64),
                ..LoadReport::default()
            };
            let mut latency = histogram()?;
            let mut queued = Vec::new();
            let mut last_answer = start;
            for s in sent {
                queued.extend(s.queued);
                report.duplicate += s.duplicate;
                report.in_progress += s.in_progress;
                report.failed += s.failed;
                if report.first_failure.is_none() {
                    report.first_failure = s.first_failure;
                }
                latency
                    .add(&s.latency)
                    .map_err(|e| BenchError::Options(e.to_string()))?;
                last_answer = last_answer.max(s.last_answer);
            }
            report.queued = queued.len();
            // Oldest first: about the order the queue hands them out.
            queued.sort_unstable();
            let queued: Vec<String> = queued.into_iter().map(|(_, id)| id).collect();
            report.accept_elapsed = last_answer - start;
            let micros = |q: f64| Duration::from_micros(latency.value_at_quantile(q));
            report.latency = Latency {
                p50: micros(0.50),
                p90: micros(0.90),
                p99: micros(0.99),
                max: Duration::from_micros(latency.max()),
            };
            let finished = wait_processed(&reader, &queued, start + options.timeout).await;
            report.processed_elapsed = start.elapsed();
            finished.map(|f| {
                report.processed = f.processed;
                report.dead_lettered = f.dead_lettered;
                report.unfinished = f.unfinished;
                report
            })
        }
        Err(e) => Err(e),
    };
    if let Some((stop, serving)) = stack {
        let _ = stop.send(());
        if let Ok(Err(e)) = serving.await {
            return Err(BenchError::Stack(e.to_string()));
        }
    }
    result
}
