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

mod report;
mod send;
mod wait;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookgate_core::memory::{MemoryLedger, MemoryQueue};
use hookgate_core::{Config, Handlers, Ledger, SourceName};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::local::{LocalStack, StackError};
pub use report::{Latency, LoadReport};
use wait::StatusReader;

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

/// A local stack serving in this process until stopped.
struct InProcess {
    base: String,
    ledger: Arc<MemoryLedger>,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<std::io::Result<()>>,
}

impl InProcess {
    /// Starts a stack on the in-memory backends on a free port of 127.0.0.1.
    async fn start(config: &Config, handlers: Handlers) -> Result<Self, BenchError> {
        let ledger = Arc::new(MemoryLedger::new());
        let (queue, dlq) = MemoryQueue::with_dlq(
            config.processor.visibility_timeout(),
            config.processor.max_receive_count,
        );
        let stack = LocalStack::new(config, ledger.clone(), queue, handlers)?.with_dlq(dlq);
        let failed = |e: std::io::Error| BenchError::Stack(e.to_string());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(failed)?;
        let addr = listener.local_addr().map_err(failed)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(stack.serve(listener, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            base: format!("http://{addr}"),
            ledger,
            stop,
            serving,
        })
    }

    /// Stops it and waits until it has.
    async fn stop(self) -> Result<(), BenchError> {
        let _ = self.stop.send(());
        match self.serving.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BenchError::Stack(e.to_string())),
            Err(e) => Err(BenchError::Stack(format!("the stack's task failed: {e}"))),
        }
    }
}

/// Runs the load against `target`, signing with `config`'s source `options.source`.
pub async fn run(
    config: &Config,
    target: Target,
    options: &LoadOptions,
) -> Result<LoadReport, BenchError> {
    if options.requests == 0 || options.concurrency == 0 {
        return Err(BenchError::Options(
            "--events and --concurrency must be at least 1".into(),
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
    let scheme = source.scheme.clone();
    let client = hookgate_core::delivery::client_builder()
        .pool_max_idle_per_host(options.concurrency)
        .build()
        .map_err(|e| BenchError::Http(e.to_string()))?;
    let (order, repeats_sent) = send::plan(
        options.requests,
        options.duplicates_pct,
        options.concurrency,
    );
    let load = Load {
        prepared: Arc::new(send::prepare(
            scheme.as_ref(),
            &options.source,
            order.len() - repeats_sent,
            options.body_bytes.max(64),
        )?),
        order: Arc::new(order),
        repeats_sent,
    };
    match target {
        Target::InProcess(handlers) => {
            let stack = InProcess::start(config, handlers).await?;
            let reader = StatusReader::Ledger(stack.ledger.clone() as Arc<dyn Ledger>);
            let target = format!("in-process local stack on {}", stack.base);
            let measured = measure(&client, &stack.base, &reader, target, load, options).await;
            // Stopped whatever the outcome; a measurement's own error comes first.
            let stopped = stack.stop().await;
            let report = measured?;
            stopped.map(|()| report)
        }
        Target::Url { base, admin_token } => {
            let base = base.trim_end_matches('/').to_owned();
            let reader = StatusReader::Http {
                client: client.clone(),
                base: base.clone(),
                token: admin_token,
            };
            measure(&client, &base, &reader, base.clone(), load, options).await
        }
    }
}

/// The requests to send, signed, in their order of sending.
struct Load {
    prepared: Arc<Vec<send::Prepared>>,
    order: Arc<Vec<usize>>,
    repeats_sent: usize,
}

/// Sends `load` to the stack at `base`, then waits for its events through `reader`.
async fn measure(
    client: &reqwest::Client,
    base: &str,
    reader: &StatusReader,
    target: String,
    load: Load,
    options: &LoadOptions,
) -> Result<LoadReport, BenchError> {
    let start = Instant::now();
    let sent = send::send_all(
        client.clone(),
        format!("{base}/webhooks/{}", options.source),
        load.prepared,
        load.order,
        options.concurrency,
        start,
    )
    .await?;
    let answers = send::tally(sent, start)?;
    let finished = wait::wait_processed(reader, &answers.queued, start + options.timeout).await?;
    Ok(LoadReport {
        target,
        requests: options.requests,
        repeats_sent: load.repeats_sent,
        concurrency: options.concurrency,
        body_bytes: options.body_bytes.max(64),
        queued: answers.queued.len(),
        duplicate: answers.duplicate,
        in_progress: answers.in_progress,
        failed: answers.failed,
        first_failure: answers.first_failure,
        accept_elapsed: answers.elapsed,
        latency: answers.latency,
        processed: finished.processed,
        dead_lettered: finished.dead_lettered,
        unfinished: finished.unfinished,
        processed_elapsed: start.elapsed(),
    })
}
