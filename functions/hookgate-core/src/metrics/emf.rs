//! CloudWatch Embedded Metric Format: the Lambda functions' metrics, as JSON lines on stdout.
//!
//! Lambda sends stdout to CloudWatch Logs, which extracts the metrics a line declares under
//! `_aws.CloudWatchMetrics`: no `PutMetricData` call on the request path, no extra permission.
//! One line per request or record, e.g. a request refused for its signature:
//!
//! ```json
//! {"_aws":{"Timestamp":1767225600000,"CloudWatchMetrics":[
//!   {"Namespace":"hookgate","Dimensions":[["source","type"],[]],"Metrics":[{"Name":"Received","Unit":"Count"}]},
//!   {"Namespace":"hookgate","Dimensions":[["source","type","reason"],["reason"]],"Metrics":[{"Name":"Rejected","Unit":"Count"}]}]},
//!  "source":"github","type":"(unverified)","reason":"signature_mismatch","Received":1,"Rejected":1}
//! ```
//!
//! Each metric is written with the configured dimensions and once more without them (the
//! dimension set `[]`), so the stack's totals — which the dashboard shows — exist whatever
//! `[metrics] dimensions` says; `Rejected` is split by `reason` in both. Each `type` value is a
//! custom metric, billed monthly, so the values are bounded ([`SeriesLimits`]): an unsigned or
//! unlisted type, a duplicate's type not seen before and types past the cap are written as
//! `other`.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::{label_value, Counter, Dimension, Metrics, Observation, SeriesLimits};
use crate::clock::{Clock, SystemClock};

/// Writes each observation as one Embedded Metric Format line.
pub struct Emf {
    namespace: String,
    dimensions: Vec<Dimension>,
    /// Which types become dimension values ([`SeriesLimits`]).
    limits: SeriesLimits,
    clock: Arc<dyn Clock>,
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for Emf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emf")
            .field("namespace", &self.namespace)
            .field("dimensions", &self.dimensions)
            .finish_non_exhaustive()
    }
}

impl Emf {
    /// Lines in CloudWatch namespace `namespace` (a valid one: the caller checks it), split by
    /// `dimensions` (and written once more without), with the default limits on types, written
    /// to `out`. From the configuration: [`Emf::from_config`], or [`Emf::from_env`] on AWS.
    pub fn new(
        namespace: impl Into<String>,
        dimensions: &[Dimension],
        out: impl Write + Send + 'static,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            dimensions: dimensions.to_vec(),
            limits: SeriesLimits::default(),
            clock: Arc::new(SystemClock),
            out: Mutex::new(Box::new(out)),
        }
    }

    /// The same writer, bounding types by `limits` (see [`SeriesLimits::from_config`]: the
    /// sources' `metric_types` and the cap).
    pub fn with_limits(mut self, limits: SeriesLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The same writer, stamping lines with `clock`'s time.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The namespace metrics are written to.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The line for `observation` (without its newline), or `None` when it has nothing to
    /// report.
    pub fn line(&self, observation: &Observation<'_>) -> Option<String> {
        if observation.is_empty() {
            return None;
        }
        let cleaned = label_value(observation.event_type);
        let event_type = if self.dimensions.contains(&Dimension::Type) {
            self.limits.type_label(observation, &cleaned)
        } else {
            &cleaned
        };
        let document = Document {
            emf: self,
            observation,
            event_type,
            timestamp: self.clock.now().as_millis(),
        };
        serde_json::to_string(&document).ok()
    }
}

impl Metrics for Emf {
    fn observe(&self, observation: &Observation<'_>) {
        let Some(mut line) = self.line(observation) else {
            return;
        };
        line.push('\n');
        // A metric is never worth a request: write errors (a closed stdout) are ignored.
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

/// One line: `_aws` metadata, the dimension values, then the metric values.
struct Document<'a> {
    emf: &'a Emf,
    observation: &'a Observation<'a>,
    /// The `type` dimension's value, bounded.
    event_type: &'a str,
    timestamp: i64,
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let o = self.observation;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("_aws", &self.metadata())?;
        for dimension in &self.emf.dimensions {
            match dimension {
                Dimension::Source => {
                    map.serialize_entry(dimension.name(), &label_value(o.source))?
                }
                Dimension::Type => map.serialize_entry(dimension.name(), self.event_type)?,
            }
        }
        if let Some(reason) = o.reason {
            map.serialize_entry(REASON, reason)?;
        }
        for counter in o.counters {
            map.serialize_entry(counter.emf_name(), &1)?;
        }
        for (latency, ms) in o.latencies() {
            map.serialize_entry(latency.emf_name(), &ms)?;
        }
        map.end()
    }
}

const REASON: &str = "reason";

impl Document<'_> {
    fn metadata(&self) -> Metadata<'_> {
        let o = self.observation;
        let namespace = self.emf.namespace.as_str();
        let configured: Vec<&'static str> = self.emf.dimensions.iter().map(|d| d.name()).collect();
        let mut directives = Vec::with_capacity(2);
        let metrics: Vec<Definition> = o
            .counters
            .iter()
            .filter(|c| **c != Counter::Rejected)
            .map(|c| Definition {
                name: c.emf_name(),
                unit: "Count",
            })
            .chain(o.latencies().map(|(latency, _)| Definition {
                name: latency.emf_name(),
                unit: "Milliseconds",
            }))
            .collect();
        if !metrics.is_empty() {
            directives.push(Directive {
                namespace,
                dimensions: with_total(configured.clone(), Vec::new()),
                metrics,
            });
        }
        if o.counters.contains(&Counter::Rejected) && o.reason.is_some() {
            let mut by_reason = configured.clone();
            by_reason.push(REASON);
            directives.push(Directive {
                namespace,
                dimensions: with_total(by_reason, vec![REASON]),
                metrics: vec![Definition {
                    name: Counter::Rejected.emf_name(),
                    unit: "Count",
                }],
            });
        }
        Metadata {
            timestamp: self.timestamp,
            directives,
        }
    }
}

/// The dimension sets `[set, total]`, or `[total]` when they are the same.
fn with_total(set: Vec<&'static str>, total: Vec<&'static str>) -> Vec<Vec<&'static str>> {
    if set == total {
        vec![total]
    } else {
        vec![set, total]
    }
}

#[derive(Serialize)]
struct Metadata<'a> {
    #[serde(rename = "Timestamp")]
    timestamp: i64,
    #[serde(rename = "CloudWatchMetrics")]
    directives: Vec<Directive<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    namespace: &'a str,
    dimensions: Vec<Vec<&'static str>>,
    metrics: Vec<Definition>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Definition {
    name: &'static str,
    unit: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, Timestamp};
    use crate::metrics::{UNKNOWN_SOURCE, UNVERIFIED_TYPE};
    use serde_json::{json, Value};

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<Value> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).expect("every line is one JSON object"))
                .collect()
        }
    }

    fn emf(dimensions: &[Dimension]) -> (Emf, Captured) {
        let out = Captured::default();
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_767_225_600_123)));
        let emf = Emf::new("Shop/Webhooks", dimensions, out.clone()).with_clock(clock);
        (emf, out)
    }

    fn observation(counters: &'static [Counter]) -> Observation<'static> {
        Observation {
            source: "github",
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
    fn an_enqueued_request_is_one_line_with_both_counters() {
        let (emf, out) = emf(&[Dimension::Source, Dimension::Type]);
        emf.observe(&observation(&[Counter::Received, Counter::Enqueued]));
        let lines = out.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0],
            json!({
                "_aws": {
                    "Timestamp": 1_767_225_600_123_i64,
                    "CloudWatchMetrics": [{
                        "Namespace": "Shop/Webhooks",
                        "Dimensions": [["source", "type"], []],
                        "Metrics": [
                            {"Name": "Received", "Unit": "Count"},
                            {"Name": "Enqueued", "Unit": "Count"},
                        ],
                    }],
                },
                "source": "github",
                "type": "push",
                "Received": 1,
                "Enqueued": 1,
            })
        );
    }

    #[test]
    fn a_rejection_is_split_by_reason_in_a_directive_of_its_own() {
        let (emf, out) = emf(&[Dimension::Source]);
        emf.observe(&Observation {
            event_type: UNVERIFIED_TYPE,
            reason: Some("signature_mismatch"),
            ..observation(&[Counter::Received, Counter::Rejected])
        });
        let line = &out.lines()[0];
        let directives = &line["_aws"]["CloudWatchMetrics"];
        assert_eq!(directives[0]["Dimensions"], json!([["source"], []]));
        assert_eq!(
            directives[0]["Metrics"],
            json!([{"Name": "Received", "Unit": "Count"}])
        );
        assert_eq!(
            directives[1]["Dimensions"],
            json!([["source", "reason"], ["reason"]])
        );
        assert_eq!(
            directives[1]["Metrics"],
            json!([{"Name": "Rejected", "Unit": "Count"}])
        );
        assert_eq!(line["reason"], "signature_mismatch");
        assert_eq!(line["Rejected"], 1);
        assert!(
            line.get("type").is_none(),
            "type is not a configured dimension"
        );
        // Every dimension of every directive is a member of the line (CloudWatch drops it
        // otherwise).
        for directive in directives.as_array().unwrap() {
            for set in directive["Dimensions"].as_array().unwrap() {
                for key in set.as_array().unwrap() {
                    assert!(line.get(key.as_str().unwrap()).is_some(), "{key}");
                }
            }
            for metric in directive["Metrics"].as_array().unwrap() {
                assert!(line[metric["Name"].as_str().unwrap()].is_number());
            }
        }
    }

    #[test]
    fn without_dimensions_only_totals_are_written() {
        let (emf, out) = emf(&[]);
        emf.observe(&Observation {
            reason: Some("unknown_source"),
            source: UNKNOWN_SOURCE,
            ..observation(&[Counter::Received, Counter::Rejected])
        });
        let line = &out.lines()[0];
        let directives = &line["_aws"]["CloudWatchMetrics"];
        assert_eq!(directives[0]["Dimensions"], json!([[]]));
        assert_eq!(directives[1]["Dimensions"], json!([["reason"]]));
        assert!(line.get("source").is_none());
    }

    #[test]
    fn a_processed_record_carries_its_latencies_in_milliseconds() {
        let (emf, out) = emf(&[Dimension::Source, Dimension::Type]);
        emf.observe(&Observation {
            delivery_ms: Some(42),
            receive_to_processed_ms: Some(1_250),
            ..observation(&[Counter::Processed])
        });
        let line = &out.lines()[0];
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([
                {"Name": "Processed", "Unit": "Count"},
                {"Name": "DeliveryLatency", "Unit": "Milliseconds"},
                {"Name": "ReceiveToProcessedLatency", "Unit": "Milliseconds"},
            ])
        );
        assert_eq!(line["Processed"], 1);
        assert_eq!(line["DeliveryLatency"], 42);
        assert_eq!(line["ReceiveToProcessedLatency"], 1_250);
    }

    #[test]
    fn nothing_to_report_writes_nothing() {
        let (emf, out) = emf(&[Dimension::Source]);
        emf.observe(&observation(&[]));
        assert!(out.lines().is_empty());
    }

    #[test]
    fn dimension_values_are_cleaned_and_escaped() {
        let (emf, out) = emf(&[Dimension::Type]);
        emf.observe(&Observation {
            event_type: "a\"b\nc",
            ..observation(&[Counter::Processed])
        });
        assert_eq!(out.lines()[0]["type"], "a\"b_c");
    }

    #[test]
    fn a_failing_writer_fails_nothing() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("stdout closed"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(std::io::Error::other("stdout closed"))
            }
        }
        let emf = Emf::new("hookgate", &[Dimension::Source, Dimension::Type], Broken);
        emf.observe(&observation(&[Counter::Processed]));
    }
}
