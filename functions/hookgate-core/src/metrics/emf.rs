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
//!
//! A [`batched`](Emf::batched) writer (the processor's) keeps a batch's observations until
//! [`Metrics::flush`] and writes one line per shape (dimension values, reason, counters), each
//! metric an array of its samples — what ten lines said, in one: CloudWatch Logs bills every
//! byte ingested, and the lines were a third of the processor's log bytes per record. Every
//! sample is kept (a count is an array of ones), so `Sum`, `SampleCount` and percentiles are
//! what the separate lines gave. A shape is written early when it reaches
//! [`MAX_VALUES`], EMF's limit per array; a lone observation is written as a plain line.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::{label_value, Counter, Dimension, Latency, Metrics, Observation, SeriesLimits};
use crate::clock::{Clock, SystemClock};

/// Writes each observation as one Embedded Metric Format line.
pub struct Emf {
    namespace: String,
    dimensions: Vec<Dimension>,
    /// Which types become dimension values ([`SeriesLimits`]).
    limits: SeriesLimits,
    clock: Arc<dyn Clock>,
    out: Mutex<Box<dyn Write + Send>>,
    /// The observations kept until [`Metrics::flush`], by shape; `None`: written one by one.
    pending: Option<Mutex<Vec<Pending>>>,
}

/// Values of one metric in one line at most (EMF's limit).
pub const MAX_VALUES: usize = 100;

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
            pending: None,
        }
    }

    /// The same writer keeping observations until [`Metrics::flush`], then writing one line per
    /// shape with every sample in it (see the module's documentation).
    pub fn batched(mut self) -> Self {
        self.pending = Some(Mutex::default());
        self
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
        let shape = self.shape(observation);
        let document = Document {
            emf: self,
            shape: &shape,
            samples: 1,
            delivery: observation.delivery_ms.as_slice(),
            receive_to_processed: observation.receive_to_processed_ms.as_slice(),
            timestamp: self.clock.now().as_millis(),
        };
        serde_json::to_string(&document).ok()
    }

    /// What `observation` is counted under: its labels (types bounded) and counters.
    fn shape(&self, observation: &Observation<'_>) -> Shape {
        let cleaned = label_value(observation.event_type);
        let event_type = if self.dimensions.contains(&Dimension::Type) {
            self.limits.type_label(observation, &cleaned)
        } else {
            &cleaned
        };
        Shape {
            source: label_value(observation.source).into_owned(),
            event_type: event_type.to_owned(),
            reason: observation.reason,
            counters: observation.counters,
        }
    }

    /// Keeps `observation` with the others of its shape; returns the shape's samples when they
    /// are full.
    fn keep(
        &self,
        pending: &Mutex<Vec<Pending>>,
        observation: &Observation<'_>,
    ) -> Option<Pending> {
        let shape = self.shape(observation);
        let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
        let at = match pending.iter().position(|p| p.shape == shape) {
            Some(at) => at,
            None => {
                pending.push(Pending {
                    shape,
                    samples: 0,
                    delivery: Vec::new(),
                    receive_to_processed: Vec::new(),
                });
                pending.len() - 1
            }
        };
        let kept = &mut pending[at];
        kept.samples += 1;
        kept.delivery.extend(observation.delivery_ms);
        kept.receive_to_processed
            .extend(observation.receive_to_processed_ms);
        (kept.samples >= MAX_VALUES).then(|| pending.swap_remove(at))
    }

    /// Writes `batches`, a line each, in one write.
    fn write(&self, batches: &[Pending]) {
        let timestamp = self.clock.now().as_millis();
        let mut text = String::new();
        for kept in batches {
            let document = Document {
                emf: self,
                shape: &kept.shape,
                samples: kept.samples,
                delivery: &kept.delivery,
                receive_to_processed: &kept.receive_to_processed,
                timestamp,
            };
            if let Ok(line) = serde_json::to_string(&document) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        self.write_text(&text);
    }

    fn write_text(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        // A metric is never worth a request: write errors (a closed stdout) are ignored.
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

impl Metrics for Emf {
    fn observe(&self, observation: &Observation<'_>) {
        match &self.pending {
            Some(pending) if !observation.is_empty() => {
                if let Some(full) = self.keep(pending, observation) {
                    self.write(&[full]);
                }
            }
            _ => {
                if let Some(mut line) = self.line(observation) {
                    line.push('\n');
                    self.write_text(&line);
                }
            }
        }
    }

    fn flush(&self) {
        if let Some(pending) = &self.pending {
            let batches =
                std::mem::take(&mut *pending.lock().unwrap_or_else(PoisonError::into_inner));
            self.write(&batches);
        }
    }
}

impl Drop for Emf {
    /// What a batched writer still keeps is written on the way out.
    fn drop(&mut self) {
        self.flush();
    }
}

/// The labels and counters of an observation: observations of one shape share a line.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    source: String,
    /// The `type` label, bounded.
    event_type: String,
    reason: Option<&'static str>,
    counters: &'static [Counter],
}

/// Observations of one shape, kept until the batch ends.
struct Pending {
    shape: Shape,
    samples: usize,
    delivery: Vec<u64>,
    receive_to_processed: Vec<u64>,
}

/// One line: `_aws` metadata, the dimension values, then the metric values — one sample of
/// each, or arrays of `samples` observations of one shape.
struct Document<'a> {
    emf: &'a Emf,
    shape: &'a Shape,
    /// Observations the line reports: each counter is counted once per observation.
    samples: usize,
    delivery: &'a [u64],
    receive_to_processed: &'a [u64],
    timestamp: i64,
}

/// A metric's value: a number for one sample, an array for several.
struct Value<'a>(&'a [u64]);

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            [one] => serializer.serialize_u64(*one),
            many => many.serialize(serializer),
        }
    }
}

impl Document<'_> {
    /// The latencies with their samples, those with any.
    fn latencies(&self) -> impl Iterator<Item = (Latency, &[u64])> {
        [
            (Latency::Delivery, self.delivery),
            (Latency::ReceiveToProcessed, self.receive_to_processed),
        ]
        .into_iter()
        .filter(|(_, samples)| !samples.is_empty())
    }
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let shape = self.shape;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("_aws", &self.metadata())?;
        for dimension in &self.emf.dimensions {
            match dimension {
                Dimension::Source => map.serialize_entry(dimension.name(), &shape.source)?,
                Dimension::Type => map.serialize_entry(dimension.name(), &shape.event_type)?,
            }
        }
        if let Some(reason) = shape.reason {
            map.serialize_entry(REASON, reason)?;
        }
        let ones = vec![1; self.samples];
        for counter in shape.counters {
            map.serialize_entry(counter.emf_name(), &Value(&ones))?;
        }
        for (latency, samples) in self.latencies() {
            map.serialize_entry(latency.emf_name(), &Value(samples))?;
        }
        map.end()
    }
}

const REASON: &str = "reason";

impl Document<'_> {
    fn metadata(&self) -> Metadata<'_> {
        let o = self.shape;
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
            .chain(self.latencies().map(|(latency, _)| Definition {
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

    fn processed(event_type: &'static str, delivery_ms: u64) -> Observation<'static> {
        Observation {
            event_type,
            delivery_ms: Some(delivery_ms),
            receive_to_processed_ms: Some(delivery_ms + 1_000),
            ..observation(&[Counter::Processed])
        }
    }

    #[test]
    fn a_batch_is_one_line_per_shape_with_every_sample() {
        let (emf, out) = emf(&[Dimension::Source, Dimension::Type]);
        let emf = emf.batched();
        for ms in [42, 7, 9] {
            emf.observe(&processed("push", ms));
        }
        emf.observe(&processed("issues", 5));
        emf.observe(&Observation {
            reason: Some("handler_failed"),
            ..observation(&[Counter::Retried])
        });
        emf.observe(&observation(&[]));
        assert!(out.lines().is_empty(), "kept until the batch ends");

        emf.flush();
        let lines = out.lines();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        let push = lines.iter().find(|l| l["type"] == "push").unwrap();
        assert_eq!(push["Processed"], json!([1, 1, 1]));
        assert_eq!(push["DeliveryLatency"], json!([42, 7, 9]));
        assert_eq!(
            push["ReceiveToProcessedLatency"],
            json!([1_042, 1_007, 1_009])
        );
        assert_eq!(
            push["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([
                {"Name": "Processed", "Unit": "Count"},
                {"Name": "DeliveryLatency", "Unit": "Milliseconds"},
                {"Name": "ReceiveToProcessedLatency", "Unit": "Milliseconds"},
            ])
        );
        // A shape observed once is the line the unbatched writer would have written.
        let issues = lines.iter().find(|l| l["type"] == "issues").unwrap();
        assert_eq!(*issues, {
            let (alone, out) = self::emf(&[Dimension::Source, Dimension::Type]);
            alone.observe(&processed("issues", 5));
            out.lines().remove(0)
        });
        let retried = lines.iter().find(|l| l.get("Retried").is_some()).unwrap();
        assert_eq!(retried["Retried"], 1);
        assert!(retried.get("DeliveryLatency").is_none());

        emf.flush();
        assert_eq!(
            out.lines().len(),
            3,
            "a flush with nothing kept writes nothing"
        );
    }

    /// What CloudWatch computes from the lines (per metric and dimension values: the sum and the
    /// number of samples) is the same batched or not.
    #[test]
    fn batched_lines_count_what_separate_lines_count() {
        fn totals(lines: &[Value]) -> std::collections::BTreeMap<String, (u64, usize)> {
            let mut totals = std::collections::BTreeMap::new();
            for line in lines {
                for name in ["Processed", "Retried", "DeliveryLatency"] {
                    let samples: Vec<u64> = match &line.get(name) {
                        Some(Value::Array(values)) => {
                            values.iter().map(|v| v.as_u64().unwrap()).collect()
                        }
                        Some(value) => vec![value.as_u64().unwrap()],
                        None => continue,
                    };
                    let key = format!("{name}/{}/{}", line["source"], line["type"]);
                    let entry = totals.entry(key).or_insert((0, 0));
                    entry.0 += samples.iter().sum::<u64>();
                    entry.1 += samples.len();
                }
            }
            totals
        }
        let observations: Vec<Observation<'static>> = (0..37)
            .map(|i| match i % 3 {
                0 => processed("push", i),
                1 => processed("issues", i * 2),
                _ => Observation {
                    reason: Some("handler_failed"),
                    ..observation(&[Counter::Retried])
                },
            })
            .collect();
        let (separate, separate_out) = emf(&[Dimension::Source, Dimension::Type]);
        let (batched, batched_out) = emf(&[Dimension::Source, Dimension::Type]);
        let batched = batched.batched();
        for o in &observations {
            separate.observe(o);
            batched.observe(o);
        }
        batched.flush();
        assert_eq!(separate_out.lines().len(), 37);
        assert_eq!(batched_out.lines().len(), 3);
        assert_eq!(totals(&separate_out.lines()), totals(&batched_out.lines()));
    }

    #[test]
    fn a_shape_is_written_when_it_reaches_the_limit_and_the_rest_at_the_end() {
        let (emf, out) = emf(&[Dimension::Source, Dimension::Type]);
        let emf = emf.batched();
        for ms in 0..(2 * MAX_VALUES as u64 + 50) {
            emf.observe(&processed("push", ms));
        }
        let lines = out.lines();
        assert_eq!(lines.len(), 2, "two full lines, before the end");
        for (n, line) in lines.iter().enumerate() {
            let values = line["DeliveryLatency"].as_array().unwrap();
            assert_eq!(values.len(), MAX_VALUES);
            assert_eq!(values[0], (n * MAX_VALUES) as u64);
        }
        drop(emf);
        let lines = out.lines();
        assert_eq!(lines.len(), 3, "the rest, written when the writer goes");
        assert_eq!(lines[2]["Processed"].as_array().unwrap().len(), 50);
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
