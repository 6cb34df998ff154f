//! The last hour of the metrics registry: a snapshot every [`EVERY`], an hour of them kept, so
//! the sources and health pages can say what happened in the last hour (the registry itself
//! only counts up since the process started).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hookgate_core::metrics::{Counter, MetricsRegistry, SourceTotals, LATENCY_BUCKETS_MS};
use hookgate_core::{Clock, SystemClock, Timestamp};

/// How often the registry is sampled.
pub const EVERY: Duration = Duration::from_secs(10);
/// How far back samples are kept.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// One snapshot of the registry.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was taken.
    pub at: Timestamp,
    /// Per source.
    pub totals: BTreeMap<String, SourceTotals>,
}

/// Samples a registry in the background.
#[derive(Debug)]
pub struct Sampler {
    metrics: Arc<MetricsRegistry>,
    samples: Mutex<VecDeque<Sample>>,
    /// Whether samples older than the window were dropped (the process is older than it):
    /// until then, the baseline of "the last hour" is zero, where the registry started.
    trimmed: AtomicBool,
    started: AtomicBool,
}

impl Sampler {
    /// A sampler of `metrics`, with one sample taken now.
    pub fn new(metrics: Arc<MetricsRegistry>) -> Self {
        let sampler = Self {
            metrics,
            samples: Mutex::new(VecDeque::new()),
            trimmed: AtomicBool::new(false),
            started: AtomicBool::new(false),
        };
        sampler.sample(SystemClock.now());
        sampler
    }

    /// Starts sampling every [`EVERY`] on the current tokio runtime (once; outside a runtime,
    /// nothing: the pages then compare with the process's start).
    pub fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(sampler) = weak.upgrade() else {
                    return;
                };
                sampler.sample(SystemClock.now());
            }
        });
    }

    /// Takes a sample at `at`, dropping those older than the window.
    pub fn sample(&self, at: Timestamp) {
        let totals = self.metrics.snapshot();
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.push_back(Sample { at, totals });
        while samples
            .front()
            .is_some_and(|s| at.as_millis() - s.at.as_millis() > WINDOW.as_millis() as i64)
        {
            samples.pop_front();
            self.trimmed.store(true, Ordering::Relaxed);
        }
    }

    /// Each source's counts over the last hour: now less the oldest sample within it (or less
    /// nothing, while the process is younger than the window).
    pub fn last_hour(&self) -> BTreeMap<String, SourceTotals> {
        let now = self.metrics.snapshot();
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let baseline = if self.trimmed.load(Ordering::Relaxed) {
            samples
                .front()
                .map(|s| s.totals.clone())
                .unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        now.into_iter()
            .map(|(source, totals)| {
                let before = baseline.get(&source).cloned().unwrap_or_default();
                (source, minus(&totals, &before))
            })
            .collect()
    }

    /// The intervals between consecutive samples, and one from the last sample to now, with
    /// what happened in each (every source summed).
    pub fn intervals(&self) -> Vec<Interval> {
        let now = Sample {
            at: SystemClock.now(),
            totals: self.metrics.snapshot(),
        };
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<&Sample> = samples.iter().collect();
        all.push(&now);
        all.windows(2)
            .map(|pair| Interval {
                end: pair[1].at,
                secs: ((pair[1].at.as_millis() - pair[0].at.as_millis()).max(1) as f64) / 1000.0,
                totals: minus(&sum(&pair[1].totals), &sum(&pair[0].totals)),
            })
            .collect()
    }
}

/// What happened between two samples.
#[derive(Debug, Clone)]
pub struct Interval {
    /// When it ended.
    pub end: Timestamp,
    /// How long it was, in seconds.
    pub secs: f64,
    /// The counts in it, every source summed.
    pub totals: SourceTotals,
}

/// Every source's totals added up.
pub fn sum(all: &BTreeMap<String, SourceTotals>) -> SourceTotals {
    let mut out = SourceTotals::default();
    for t in all.values() {
        add(&mut out, t);
    }
    out
}

/// Adds `t` to `into`, counter by counter.
pub fn add(into: &mut SourceTotals, t: &SourceTotals) {
    for (o, n) in into.counts.iter_mut().zip(t.counts) {
        *o += n;
    }
    for (reason, n) in &t.rejected {
        *into.rejected.entry(reason.clone()).or_default() += n;
    }
    for (o, buckets) in into.latency_buckets.iter_mut().zip(&t.latency_buckets) {
        for (o, n) in o.iter_mut().zip(buckets) {
            *o += n;
        }
    }
}

/// The last hour in [`MINUTES`] one-minute slots, oldest first, the last one ending at `now`:
/// what the intervals ending in each slot counted (nothing where the process was not running).
pub fn per_minute(intervals: &[Interval], now: Timestamp) -> Vec<SourceTotals> {
    let mut slots = vec![SourceTotals::default(); MINUTES];
    for interval in intervals {
        let age_ms = now.as_millis() - interval.end.as_millis();
        if age_ms < 0 {
            continue;
        }
        let back = (age_ms / 60_000) as usize;
        if back < MINUTES {
            add(&mut slots[MINUTES - 1 - back], &interval.totals);
        }
    }
    slots
}

/// Slots of [`per_minute`].
pub const MINUTES: usize = 60;

/// `a - b`, counter by counter (never below zero).
pub fn minus(a: &SourceTotals, b: &SourceTotals) -> SourceTotals {
    let mut out = a.clone();
    for (o, n) in out.counts.iter_mut().zip(b.counts) {
        *o = o.saturating_sub(n);
    }
    for (reason, n) in &b.rejected {
        if let Some(o) = out.rejected.get_mut(reason) {
            *o = o.saturating_sub(*n);
        }
    }
    out.rejected.retain(|_, n| *n > 0);
    for (o, buckets) in out.latency_buckets.iter_mut().zip(&b.latency_buckets) {
        for (o, n) in o.iter_mut().zip(buckets) {
            *o = o.saturating_sub(*n);
        }
    }
    out
}

/// Failed records: retried, failed for good, or dead-lettered.
pub fn failed(t: &SourceTotals) -> u64 {
    t.count(Counter::Retried) + t.count(Counter::PermanentlyFailed) + t.count(Counter::DeadLettered)
}

/// The `q` quantile (0 to 1) of a histogram's buckets, as the bucket's upper bound in
/// milliseconds (`None` without observations; over the last bound: the last bound).
pub fn quantile_ms(buckets: &[u64], q: f64) -> Option<u64> {
    let count: u64 = buckets.iter().sum();
    if count == 0 {
        return None;
    }
    let rank = ((count as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(
                LATENCY_BUCKETS_MS
                    .get(i)
                    .copied()
                    .unwrap_or(LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.len() - 1]),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_fall_in_the_minute_they_ended() {
        let now = Timestamp::from_secs(10_000);
        let mut totals = SourceTotals::default();
        totals.counts[Counter::Processed as usize] = 3;
        let at = |secs_ago: i64| Interval {
            end: Timestamp::from_secs(10_000 - secs_ago),
            secs: 10.0,
            totals: totals.clone(),
        };
        let slots = per_minute(&[at(5), at(30), at(61), at(3600), at(-1)], now);
        assert_eq!(slots.len(), MINUTES);
        assert_eq!(slots[MINUTES - 1].count(Counter::Processed), 6);
        assert_eq!(slots[MINUTES - 2].count(Counter::Processed), 3);
        let all: u64 = slots.iter().map(|s| s.count(Counter::Processed)).sum();
        assert_eq!(all, 9, "an hour ago and the future are out");
    }

    #[test]
    fn quantiles_are_bucket_bounds() {
        let mut buckets = [0u64; LATENCY_BUCKETS_MS.len() + 1];
        assert_eq!(quantile_ms(&buckets, 0.5), None);
        buckets[0] = 98; // ≤ 5 ms
        buckets[6] = 2; // ≤ 500 ms
        assert_eq!(quantile_ms(&buckets, 0.5), Some(5));
        assert_eq!(quantile_ms(&buckets, 0.99), Some(500));
        buckets[LATENCY_BUCKETS_MS.len()] = 100;
        assert_eq!(quantile_ms(&buckets, 0.99), Some(3_600_000));
    }

    #[test]
    fn the_last_hour_is_counted_from_the_start_until_samples_are_dropped() {
        use hookgate_core::metrics::{Metrics, Observation, RecordResult};
        let metrics = Arc::new(MetricsRegistry::new());
        let processed = Observation::record(
            "demo",
            hookgate_core::metrics::EventType {
                name: "push",
                signed: true,
            },
            RecordResult::Processed,
        );
        metrics.observe(&processed);
        let sampler = Sampler::new(metrics.clone());
        metrics.observe(&processed);
        assert_eq!(sampler.last_hour()["demo"].count(Counter::Processed), 2);
        let t0 = SystemClock.now();
        sampler.sample(t0.plus(Duration::from_secs(10)));
        metrics.observe(&processed);
        sampler.sample(t0.plus(WINDOW + Duration::from_secs(1)));
        // The first sample (1 processed) is dropped; the next one (2) is the baseline.
        assert_eq!(sampler.last_hour()["demo"].count(Counter::Processed), 1);
    }
}
