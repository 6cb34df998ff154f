//! What `hookgate bench` found: counts, throughput and accept latency, printed as a few lines.

use std::fmt;
use std::time::Duration;

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
