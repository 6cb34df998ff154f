//! What a simulation shows: one row per simulated minute, and the run's totals.
//!
//! Rows are plain text, one line each, under a header that names the scale and the limits in
//! force, so the output of a run can be pasted into a note as it is.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// One simulated minute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinuteRow {
    /// Minutes since the start (1 for the first).
    pub minute: u64,
    /// Requests answered `202 queued`.
    pub accepted: u64,
    /// Requests answered `200 duplicate`.
    pub duplicates: u64,
    /// Requests refused (`409` in progress, `503` unavailable); the provider sends them again.
    pub rejected: u64,
    /// Records processed (handler succeeded and recorded).
    pub processed: u64,
    /// Records failed and left for a retry.
    pub retried: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
    /// Messages in flight at the end of the minute.
    pub in_flight: usize,
    /// Most messages in flight during the minute.
    pub peak_in_flight: usize,
    /// Age of the oldest message on the queue at the end of the minute.
    pub oldest_age: Duration,
    /// Most writes to one `by-status` index partition in one index window (see [`Limits`])
    /// seen during the minute: at a scale `s` the window is `1/s` s, so this is the full-scale
    /// figure per second.
    pub peak_index_partition_writes: u32,
    /// That partition.
    pub peak_index_partition: String,
    /// Table writes refused as throttled during the minute.
    pub table_throttles: u64,
    /// Index writes over the per-partition limit during the minute.
    pub index_throttles: u64,
    /// Receives that found the in-flight limit reached during the minute.
    pub receives_at_limit: u64,
}

impl MinuteRow {
    /// The column header of [`MinuteRow`]'s lines.
    pub const HEADER: &'static str = "  min  accepted   dup  rejected  processed  retried  dlq  in_flight(peak)  oldest_s  idx_w/win(partition)  throttles(table/index)  recv_at_limit";
}

impl fmt::Display for MinuteRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let in_flight = format!("{}({})", self.in_flight, self.peak_in_flight);
        let index = format!(
            "{}({})",
            self.peak_index_partition_writes, self.peak_index_partition
        );
        let throttles = format!("{}/{}", self.table_throttles, self.index_throttles);
        write!(
            f,
            "{:>5}  {:>8}  {:>4}  {:>8}  {:>9}  {:>7}  {:>3}  {:>15}  {:>8}  {:>20}  {:>22}  {:>13}",
            self.minute,
            self.accepted,
            self.duplicates,
            self.rejected,
            self.processed,
            self.retried,
            self.dead_lettered,
            in_flight,
            self.oldest_age.as_secs(),
            index,
            throttles,
            self.receives_at_limit
        )
    }
}

/// Time from acceptance to successful processing, per source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    /// Events processed.
    pub count: usize,
    /// The 99th percentile.
    pub p99: Duration,
    /// The longest.
    pub max: Duration,
}

impl Latency {
    /// The latency of these samples (milliseconds).
    pub fn of(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let at = (samples.len() * 99).div_ceil(100).saturating_sub(1);
        let (_, p99, _) = samples.select_nth_unstable(at);
        let p99 = Duration::from_millis(*p99);
        let max = Duration::from_millis(samples.iter().copied().max().unwrap_or(0));
        Self {
            count: samples.len(),
            p99,
            max,
        }
    }
}

/// The limits a run was held to, at its scale.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// The scale.
    pub scale: f64,
    /// SQS in-flight messages (scaled).
    pub max_in_flight: usize,
    /// Writes per `by-status` index partition in one index window (not scaled: the window is).
    pub index_partition_writes: u32,
    /// The index window: a second divided by the scale.
    pub index_window: Duration,
    /// Writes per second per table partition key (not scaled).
    pub table_key_writes_per_sec: u32,
    /// Batches processed at once.
    pub processor_concurrency: u32,
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scale {} (rates, in-flight limit and concurrency x{}): in-flight limit {}, index partition {} writes per {} s window, table key {} writes/s, {} batches at once",
            self.scale,
            self.scale,
            self.max_in_flight,
            self.index_partition_writes,
            self.index_window.as_secs_f64(),
            self.table_key_writes_per_sec,
            self.processor_concurrency
        )
    }
}

/// A whole run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// The profile's name.
    pub profile: String,
    /// The limits in force.
    pub limits: Limits,
    /// One row per simulated minute.
    pub minutes: Vec<MinuteRow>,
    /// Time to process, per source.
    pub latency: BTreeMap<String, Latency>,
    /// Distinct events accepted (claimed and enqueued).
    pub events_accepted: u64,
    /// Messages sent to the queue (by the receiver, and any re-sends).
    pub messages_sent: u64,
    /// Distinct events whose handler succeeded.
    pub events_delivered: u64,
    /// Events whose handler succeeded more than once.
    pub delivered_more_than_once: u64,
    /// Accepted events never delivered, per source.
    pub undelivered: BTreeMap<String, u64>,
    /// Messages on the dead-letter queue at the end.
    pub dlq_messages: usize,
    /// Most messages in flight at once over the run.
    pub peak_in_flight: usize,
    /// Most writes to one index partition in one index window over the run.
    pub peak_index_partition_writes: u32,
    /// Most writes to the table in one second over the run.
    pub peak_table_writes: u64,
    /// Table writes refused as throttled over the run.
    pub table_throttles: u64,
    /// Index writes over the per-partition limit over the run.
    pub index_throttles: u64,
    /// Receives that found the in-flight limit reached over the run.
    pub receives_at_limit: u64,
    /// Requests refused over the run.
    pub rejected: u64,
    /// Simulated time run.
    pub simulated: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "profile {}: {}", self.profile, self.limits)?;
        writeln!(f, "{}", MinuteRow::HEADER)?;
        for row in &self.minutes {
            writeln!(f, "{row}")?;
        }
        write!(f, "{}", self.summary())
    }
}

impl Report {
    /// The totals, a few lines.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "simulated {} s: {} events accepted, {} messages sent, {} delivered ({} more than once), {} on the DLQ, {} requests refused\n\
             peak in flight {} (limit {}), peak table {} writes/s, peak index partition {} writes per window (limit {}), throttles: table {}, index {}; receives at the in-flight limit {}\n",
            self.simulated.as_secs(),
            self.events_accepted,
            self.messages_sent,
            self.events_delivered,
            self.delivered_more_than_once,
            self.dlq_messages,
            self.rejected,
            self.peak_in_flight,
            self.limits.max_in_flight,
            self.peak_table_writes,
            self.peak_index_partition_writes,
            self.limits.index_partition_writes,
            self.table_throttles,
            self.index_throttles,
            self.receives_at_limit,
        );
        for (source, latency) in &self.latency {
            let undelivered = self.undelivered.get(source).copied().unwrap_or(0);
            out.push_str(&format!(
                "source {source}: {} processed, time to process p99 {} ms, max {} ms, {undelivered} undelivered\n",
                latency.count,
                latency.p99.as_millis(),
                latency.max.as_millis()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_the_value_ninety_nine_percent_stay_at_or_under() {
        let mut samples: Vec<u64> = (1..=100).collect();
        let l = Latency::of(&mut samples);
        assert_eq!(
            (l.count, l.p99.as_millis(), l.max.as_millis()),
            (100, 99, 100)
        );
        let mut one = vec![7];
        assert_eq!(Latency::of(&mut one).p99, Duration::from_millis(7));
        assert_eq!(Latency::of(&mut []), Latency::default());
    }
}
