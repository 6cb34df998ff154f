//! The local stack's metrics: counters and latency histograms in memory, rendered in the
//! Prometheus text exposition format (version 0.0.4) at `GET /metrics`.
//!
//! Hand-written rather than built on a client crate: the whole format needed here is
//! `# HELP`, `# TYPE`, counters and fixed-bucket histograms, a few dozen lines, and
//! `prometheus-client` renders OpenMetrics instead (`# EOF`, counters typed without their
//! `_total`), which is not what `text/plain; version=0.0.4` promises.
//!
//! Every series is labelled by `source` and `type` (and `reason` for rejections), whatever
//! `[metrics] dimensions` says: locally a label costs nothing, but memory and the scraper's
//! storage do, so types are bounded as on AWS ([`SeriesLimits`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use super::{label_value, Counter, Latency, Metrics, Observation, SeriesLimits};

/// Upper bounds of the latency buckets, in milliseconds (rendered in seconds).
const BUCKETS_MS: [u64; 16] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000,
    3_600_000,
];

/// Upper bounds of the latency buckets of [`SourceTotals::latency_buckets`], in milliseconds;
/// the last bucket holds what is over the last bound.
pub const LATENCY_BUCKETS_MS: [u64; 16] = BUCKETS_MS;

/// One source's counts, summed over its types ([`MetricsRegistry::snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceTotals {
    /// Each counter, indexed as [`Counter::ALL`].
    pub counts: [u64; Counter::ALL.len()],
    /// Rejections by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Each latency's observations per bucket (not cumulative), indexed as [`Latency::ALL`];
    /// one more bucket than [`LATENCY_BUCKETS_MS`] for those over its last bound.
    pub latency_buckets: [[u64; BUCKETS_MS.len() + 1]; Latency::ALL.len()],
}

impl SourceTotals {
    /// How many times `counter` was counted.
    pub fn count(&self, counter: Counter) -> u64 {
        self.counts[counter.index()]
    }
}

/// Counters and histograms by source and type.
#[derive(Debug, Default)]
pub struct MetricsRegistry {
    series: Mutex<BTreeMap<String, BTreeMap<String, Series>>>,
    limits: SeriesLimits,
}

#[derive(Debug, Default)]
struct Series {
    counts: [u64; Counter::ALL.len()],
    rejected: BTreeMap<&'static str, u64>,
    latencies: [Histogram; Latency::ALL.len()],
}

#[derive(Debug, Default, Clone, Copy)]
struct Histogram {
    /// Observations per bucket (not cumulative); those over the last bound only in `count`.
    buckets: [u64; BUCKETS_MS.len()],
    sum_ms: u64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, ms: u64) {
        if let Some(i) = BUCKETS_MS.iter().position(|bound| ms <= *bound) {
            self.buckets[i] += 1;
        }
        self.sum_ms = self.sum_ms.saturating_add(ms);
        self.count += 1;
    }
}

impl MetricsRegistry {
    /// An empty registry, with the default limits on types (no `metric_types`, the default
    /// cap).
    pub fn new() -> Self {
        Self::default()
    }

    /// The same registry, bounding types by `limits` (see [`SeriesLimits::from_config`]).
    pub fn with_limits(mut self, limits: SeriesLimits) -> Self {
        self.limits = limits;
        self
    }

    /// How many times `counter` was counted for `source` and `event_type` (for `Rejected`: for
    /// every reason).
    pub fn count(&self, counter: Counter, source: &str, event_type: &str) -> u64 {
        self.with_series(source, event_type, |s| s.counts[counter.index()])
    }

    /// How many requests for `source` and `event_type` were refused with `reason`.
    pub fn rejected(&self, source: &str, event_type: &str, reason: &str) -> u64 {
        self.with_series(source, event_type, |s| {
            s.rejected.get(reason).copied().unwrap_or(0)
        })
    }

    /// How many `latency` observations were made for `source` and `event_type`, and their sum
    /// in milliseconds.
    pub fn latency(&self, latency: Latency, source: &str, event_type: &str) -> (u64, u64) {
        self.with_series(source, event_type, |s| {
            let h = &s.latencies[latency.index()];
            (h.count, h.sum_ms)
        })
    }

    /// Sum of `counter` over every source and type.
    pub fn total(&self, counter: Counter) -> u64 {
        self.lock()
            .values()
            .flat_map(BTreeMap::values)
            .map(|s| s.counts[counter.index()])
            .sum()
    }

    fn with_series<T: Default>(
        &self,
        source: &str,
        event_type: &str,
        f: impl FnOnce(&Series) -> T,
    ) -> T {
        let series = self.lock();
        series
            .get(label_value(source).as_ref())
            .and_then(|types| types.get(label_value(event_type).as_ref()))
            .map(f)
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<String, Series>>> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything counted so far, per source, summed over types: what the operator console
    /// samples to show the last hour.
    pub fn snapshot(&self) -> BTreeMap<String, SourceTotals> {
        let all = self.lock();
        all.iter()
            .map(|(source, types)| {
                let mut totals = SourceTotals::default();
                for s in types.values() {
                    for (total, n) in totals.counts.iter_mut().zip(s.counts) {
                        *total += n;
                    }
                    for (reason, n) in &s.rejected {
                        *totals.rejected.entry((*reason).to_owned()).or_default() += n;
                    }
                    for (total, h) in totals.latency_buckets.iter_mut().zip(&s.latencies) {
                        for (t, n) in total.iter_mut().zip(h.buckets) {
                            *t += n;
                        }
                        total[BUCKETS_MS.len()] += h.count - h.buckets.iter().sum::<u64>();
                    }
                }
                (source.clone(), totals)
            })
            .collect()
    }

    /// Everything counted so far, in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let all = self.lock();
        let mut out = String::new();
        let series = || {
            all.iter().flat_map(|(source, types)| {
                types
                    .iter()
                    .map(move |(event_type, s)| (labels(source, event_type), s))
            })
        };
        for counter in Counter::ALL {
            let name = counter.prometheus_name();
            let _ = writeln!(out, "# HELP {name} {}", counter.help());
            let _ = writeln!(out, "# TYPE {name} counter");
            for (labels, s) in series() {
                if counter == Counter::Rejected {
                    for (reason, n) in &s.rejected {
                        let _ = writeln!(out, "{name}{{{labels},reason=\"{reason}\"}} {n}");
                    }
                } else if s.counts[counter.index()] > 0 {
                    let _ = writeln!(out, "{name}{{{labels}}} {}", s.counts[counter.index()]);
                }
            }
        }
        for latency in Latency::ALL {
            let name = latency.prometheus_name();
            let _ = writeln!(out, "# HELP {name} {}", latency.help());
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (labels, s) in series() {
                let h = &s.latencies[latency.index()];
                if h.count == 0 {
                    continue;
                }
                let mut cumulative = 0;
                for (bound, n) in BUCKETS_MS.iter().zip(h.buckets) {
                    cumulative += n;
                    let le = seconds(*bound);
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
                }
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "{name}_sum{{{labels}}} {}", seconds(h.sum_ms));
                let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
            }
        }
        out
    }
}

impl Metrics for MetricsRegistry {
    fn observe(&self, o: &Observation<'_>) {
        if o.is_empty() {
            return;
        }
        let source = label_value(o.source);
        let cleaned = label_value(o.event_type);
        let event_type = self.limits.type_label(o, &cleaned);
        let mut all = self.lock();
        let types = match all.get_mut(source.as_ref()) {
            Some(types) => types,
            None => all.entry(source.into_owned()).or_default(),
        };
        let s = match types.get_mut(event_type) {
            Some(s) => s,
            None => types.entry(event_type.to_owned()).or_default(),
        };
        for counter in o.counters {
            s.counts[counter.index()] += 1;
            if *counter == Counter::Rejected {
                *s.rejected.entry(o.reason.unwrap_or("unknown")).or_default() += 1;
            }
        }
        for (latency, ms) in o.latencies() {
            s.latencies[latency.index()].observe(ms);
        }
    }
}

/// `source="…",type="…"`, escaped as the format requires.
fn labels(source: &str, event_type: &str) -> String {
    format!(
        "source=\"{}\",type=\"{}\"",
        escape(source),
        escape(event_type)
    )
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Milliseconds as seconds, without a float's rounding noise (`1250` → `1.25`).
fn seconds(ms: u64) -> String {
    let (whole, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:03}")
            .trim_end_matches('0')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::UNVERIFIED_TYPE;

    fn observation(counters: &'static [Counter]) -> Observation<'static> {
        Observation {
            source: "demo",
            event_type: "push",
            type_signed: true,
            adds_series: true,
            counters,
            reason: None,
            delivery_ms: None,
            receive_to_processed_ms: None,
        }
    }

    #[test]
    fn counters_render_with_help_type_and_labels() {
        let r = MetricsRegistry::new();
        r.observe(&observation(&[Counter::Received, Counter::Enqueued]));
        r.observe(&observation(&[Counter::Received, Counter::Duplicates]));
        r.observe(&Observation {
            event_type: UNVERIFIED_TYPE,
            reason: Some("signature_mismatch"),
            ..observation(&[Counter::Received, Counter::Rejected])
        });
        let text = r.render();
        assert!(text.contains(
            "# HELP hookgate_events_received_total Webhook requests received, whatever their outcome.\n\
             # TYPE hookgate_events_received_total counter\n\
             hookgate_events_received_total{source=\"demo\",type=\"(unverified)\"} 1\n\
             hookgate_events_received_total{source=\"demo\",type=\"push\"} 2\n"
        ), "{text}");
        assert!(text.contains(
            "hookgate_events_rejected_total{source=\"demo\",type=\"(unverified)\",reason=\"signature_mismatch\"} 1\n"
        ));
        assert!(text.contains("hookgate_events_enqueued_total{source=\"demo\",type=\"push\"} 1\n"));
        assert!(
            text.contains("hookgate_events_duplicates_total{source=\"demo\",type=\"push\"} 1\n")
        );
        assert!(
            !text.contains("hookgate_events_processed_total{"),
            "no series for what never happened"
        );
        assert_eq!(r.count(Counter::Received, "demo", "push"), 2);
        assert_eq!(r.rejected("demo", UNVERIFIED_TYPE, "signature_mismatch"), 1);
        assert_eq!(r.total(Counter::Received), 3);
    }

    #[test]
    fn latencies_render_as_cumulative_histograms_in_seconds() {
        let r = MetricsRegistry::new();
        for ms in [3, 40, 1_250, 4_000_000] {
            r.observe(&Observation {
                delivery_ms: Some(ms),
                ..observation(&[Counter::Processed])
            });
        }
        let text = r.render();
        let name = "hookgate_delivery_latency_seconds";
        let labels = "source=\"demo\",type=\"push\"";
        for (le, n) in [
            ("0.005", 1),
            ("0.05", 2),
            ("1", 2),
            ("2.5", 3),
            ("3600", 3),
            ("+Inf", 4),
        ] {
            let line = format!("{name}_bucket{{{labels},le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(text.contains(&format!("{name}_sum{{{labels}}} 4001.293\n")));
        assert!(text.contains(&format!("{name}_count{{{labels}}} 4\n")));
        assert_eq!(r.latency(Latency::Delivery, "demo", "push"), (4, 4_001_293));
        assert_eq!(
            r.latency(Latency::ReceiveToProcessed, "demo", "push"),
            (0, 0)
        );
    }

    #[test]
    fn a_snapshot_sums_each_source_over_its_types() {
        let r = MetricsRegistry::new();
        r.observe(&observation(&[Counter::Received, Counter::Enqueued]));
        r.observe(&Observation {
            event_type: "pull_request",
            delivery_ms: Some(40),
            ..observation(&[Counter::Processed])
        });
        r.observe(&Observation {
            event_type: UNVERIFIED_TYPE,
            reason: Some("signature_mismatch"),
            delivery_ms: Some(4_000_000),
            ..observation(&[Counter::Received, Counter::Rejected])
        });
        let snapshot = r.snapshot();
        let demo = &snapshot["demo"];
        assert_eq!(demo.count(Counter::Received), 2);
        assert_eq!(demo.count(Counter::Processed), 1);
        assert_eq!(demo.rejected["signature_mismatch"], 1);
        let delivery = &demo.latency_buckets[0];
        assert_eq!(delivery[3], 1, "40 ms is in the 50 ms bucket");
        assert_eq!(delivery[LATENCY_BUCKETS_MS.len()], 1, "over the last bound");
        assert_eq!(delivery.iter().sum::<u64>(), 2);
    }

    #[test]
    fn label_values_are_escaped() {
        let r = MetricsRegistry::new();
        r.observe(&Observation {
            event_type: "a\\b\"c",
            ..observation(&[Counter::Processed])
        });
        assert!(r
            .render()
            .contains("hookgate_events_processed_total{source=\"demo\",type=\"a\\\\b\\\"c\"} 1\n"));
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(5), "0.005");
        assert_eq!(seconds(250), "0.25");
        assert_eq!(seconds(1_000), "1");
        assert_eq!(seconds(1_250), "1.25");
    }
}
