//! Metrics: what the receiver and the processor count and time, behind one port.
//!
//! Operators must see what happened to every event without reading code or logs. The receiver
//! reports one [`Observation`] per webhook request, the processor one per queue record, to a
//! [`Metrics`] port:
//! - [`Emf`]: CloudWatch Embedded Metric Format lines on stdout, which the Lambda functions
//!   write and CloudWatch Logs turns into metrics (no API call, no extra permission);
//! - [`MetricsRegistry`]: counters and histograms in memory, in the Prometheus text format at
//!   the local stack's `GET /metrics`;
//! - [`NoMetrics`]: the default, for cores built without a port.
//!
//! An observation names the source, the event type and, for a refusal, its stable error code:
//! never an event id, a header, a secret or a payload. Which types become series is bounded
//! ([`series`]): only signed types or a source's listed `metric_types`, never a new series for a
//! duplicate, and a cap per source.

mod emf;
mod registry;
mod series;

use std::borrow::Cow;
use std::sync::Arc;

pub use emf::{Emf, ENV_METRICS_NAMESPACE};
pub use registry::MetricsRegistry;
pub use series::{SeriesLimits, OTHER_TYPE};

use crate::clock::Timestamp;
use crate::envelope::{Envelope, SourceName};
use crate::processor::RecordOutcome;
use crate::receiver::{Accepted, Rejection};

/// The `source` of a request to no configured source, and of a record that is not an envelope.
pub const UNKNOWN_SOURCE: &str = "(unknown)";
/// The `type` of a request refused before its signature was verified: an unsigned type is not
/// worth a metric, and an attacker could make up any number of them.
pub const UNVERIFIED_TYPE: &str = "(unverified)";
/// The `type` of a record that is not a hookgate envelope.
pub const UNKNOWN_TYPE: &str = "(unknown)";

/// Where observations go. Implementations never fail and never block for long: a metric is
/// not worth a request.
pub trait Metrics: Send + Sync {
    /// Counts and times what `observation` reports.
    fn observe(&self, observation: &Observation<'_>);
}

/// Metrics that go nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn observe(&self, _: &Observation<'_>) {}
}

/// The default port: [`NoMetrics`].
pub fn noop() -> Arc<dyn Metrics> {
    Arc::new(NoMetrics)
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    /// A webhook request reached the receiver, whatever became of it.
    Received,
    /// A request was refused (with a reason: the stable error code).
    Rejected,
    /// A request repeated an event already accepted; nothing was enqueued.
    Duplicates,
    /// An event was claimed and enqueued.
    Enqueued,
    /// A record's handler succeeded and the ledger recorded it.
    Processed,
    /// A record failed and stays on the queue for another receive.
    Retried,
    /// A record failed for good and was moved to the DLQ at once.
    PermanentlyFailed,
    /// A record failed on its last allowed receive; the redrive policy moves it to the DLQ.
    DeadLettered,
}

impl Counter {
    /// Every counter, in the order they are written.
    pub const ALL: [Counter; 8] = [
        Counter::Received,
        Counter::Rejected,
        Counter::Duplicates,
        Counter::Enqueued,
        Counter::Processed,
        Counter::Retried,
        Counter::PermanentlyFailed,
        Counter::DeadLettered,
    ];

    /// The CloudWatch metric name.
    pub fn emf_name(self) -> &'static str {
        match self {
            Counter::Received => "Received",
            Counter::Rejected => "Rejected",
            Counter::Duplicates => "Duplicates",
            Counter::Enqueued => "Enqueued",
            Counter::Processed => "Processed",
            Counter::Retried => "Retried",
            Counter::PermanentlyFailed => "PermanentlyFailed",
            Counter::DeadLettered => "DeadLettered",
        }
    }

    /// The Prometheus metric name.
    pub fn prometheus_name(self) -> &'static str {
        match self {
            Counter::Received => "hookgate_events_received_total",
            Counter::Rejected => "hookgate_events_rejected_total",
            Counter::Duplicates => "hookgate_events_duplicates_total",
            Counter::Enqueued => "hookgate_events_enqueued_total",
            Counter::Processed => "hookgate_events_processed_total",
            Counter::Retried => "hookgate_events_retried_total",
            Counter::PermanentlyFailed => "hookgate_events_permanently_failed_total",
            Counter::DeadLettered => "hookgate_events_dead_lettered_total",
        }
    }

    /// What it counts, in one line.
    pub fn help(self) -> &'static str {
        match self {
            Counter::Received => "Webhook requests received, whatever their outcome.",
            Counter::Rejected => "Webhook requests refused, by reason (the stable error code).",
            Counter::Duplicates => "Webhook requests repeating an accepted event; nothing enqueued.",
            Counter::Enqueued => "Events claimed in the ledger and enqueued.",
            Counter::Processed => "Records whose handler succeeded.",
            Counter::Retried => "Records that failed and come back for another receive.",
            Counter::PermanentlyFailed => "Records that failed for good and were moved to the DLQ.",
            Counter::DeadLettered => {
                "Records that failed on their last receive; the redrive policy moves them to the DLQ."
            }
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What is timed, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Latency {
    /// How long one handler (or forward delivery) attempt took, success or not.
    Delivery,
    /// From the receiver accepting the event to the processor recording it processed.
    ReceiveToProcessed,
}

impl Latency {
    /// Every latency, in the order they are written.
    pub const ALL: [Latency; 2] = [Latency::Delivery, Latency::ReceiveToProcessed];

    /// The CloudWatch metric name (unit: milliseconds).
    pub fn emf_name(self) -> &'static str {
        match self {
            Latency::Delivery => "DeliveryLatency",
            Latency::ReceiveToProcessed => "ReceiveToProcessedLatency",
        }
    }

    /// The Prometheus histogram name (unit: seconds).
    pub fn prometheus_name(self) -> &'static str {
        match self {
            Latency::Delivery => "hookgate_delivery_latency_seconds",
            Latency::ReceiveToProcessed => "hookgate_receive_to_processed_latency_seconds",
        }
    }

    /// What it times, in one line.
    pub fn help(self) -> &'static str {
        match self {
            Latency::Delivery => "Duration of one handler or forward delivery attempt.",
            Latency::ReceiveToProcessed => {
                "From the receiver accepting an event to its being recorded processed."
            }
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One request's or one record's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation<'a> {
    /// The source name, [`UNKNOWN_SOURCE`] when there is none.
    pub source: &'a str,
    /// The event type, [`UNVERIFIED_TYPE`] or [`UNKNOWN_TYPE`] when it is not known.
    pub event_type: &'a str,
    /// Whether `event_type` comes from signed content (or is one of hookgate's own labels),
    /// rather than from an unsigned header the sender may rewrite.
    pub type_signed: bool,
    /// Whether this observation may add a new `(source, type)` series: not for a duplicate.
    pub adds_series: bool,
    /// The counters to add one to.
    pub counters: &'static [Counter],
    /// Why the request was refused (with [`Counter::Rejected`]).
    pub reason: Option<&'static str>,
    /// [`Latency::Delivery`], in milliseconds, when a handler ran.
    pub delivery_ms: Option<u64>,
    /// [`Latency::ReceiveToProcessed`], in milliseconds, when the record was processed.
    pub receive_to_processed_ms: Option<u64>,
}

impl Observation<'_> {
    /// The latencies measured, in milliseconds.
    pub fn latencies(&self) -> impl Iterator<Item = (Latency, u64)> {
        [
            (Latency::Delivery, self.delivery_ms),
            (Latency::ReceiveToProcessed, self.receive_to_processed_ms),
        ]
        .into_iter()
        .filter_map(|(latency, ms)| Some((latency, ms?)))
    }

    /// Whether there is anything to write.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.latencies().next().is_none()
    }
}

/// What the receiver learnt about a request on the way to its answer, for its metrics.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// The configured source it was for, once known.
    pub source: Option<SourceName>,
    /// The verified event type, once the signature checked out.
    pub event_type: Option<String>,
    /// Whether that type comes from signed content ([`crate::signature::Verified::type_signed`]).
    pub type_signed: bool,
}

impl RequestFacts {
    /// The observation of a request that came to `result`.
    pub fn observation(&self, result: &Result<Accepted, Rejection>) -> Observation<'_> {
        let (counters, reason): (&'static [Counter], _) = match result {
            Ok(Accepted::Queued(_)) => (&[Counter::Received, Counter::Enqueued], None),
            Ok(Accepted::Duplicate(_)) => (&[Counter::Received, Counter::Duplicates], None),
            Ok(Accepted::Handshake(_)) => (&[Counter::Received], None),
            Err(rejection) => (
                &[Counter::Received, Counter::Rejected],
                Some(rejection.code()),
            ),
        };
        Observation {
            source: self.source.as_ref().map_or(UNKNOWN_SOURCE, |s| s.as_str()),
            event_type: self.event_type.as_deref().unwrap_or(UNVERIFIED_TYPE),
            type_signed: self.event_type.is_none() || self.type_signed,
            adds_series: !matches!(result, Ok(Accepted::Duplicate(_))),
            counters,
            reason,
            delivery_ms: None,
            receive_to_processed_ms: None,
        }
    }
}

/// What the processor learnt about a record on the way to its outcome, for its metrics.
#[derive(Debug, Clone)]
pub struct RecordFacts {
    source: SourceName,
    event_type: String,
    type_signed: bool,
    received_at: Timestamp,
    /// How long the handler ran, once it has.
    pub delivery_ms: Option<u64>,
}

impl RecordFacts {
    /// The facts of `envelope`, before its handler runs.
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            source: envelope.source.clone(),
            event_type: envelope.event_type.clone(),
            type_signed: !type_from_kept_header(envelope),
            received_at: envelope.received_at,
            delivery_ms: None,
        }
    }

    /// The observation of a record that came to `outcome`, settled at `now`.
    pub fn observation(&self, outcome: &RecordOutcome, now: Timestamp) -> Observation<'_> {
        let processed = matches!(outcome, RecordOutcome::Processed);
        let elapsed = now.since(self.received_at).as_millis();
        Observation {
            source: self.source.as_str(),
            event_type: &self.event_type,
            type_signed: self.type_signed,
            receive_to_processed_ms: processed.then(|| u64::try_from(elapsed).unwrap_or(u64::MAX)),
            ..record_observation(outcome, self.delivery_ms)
        }
    }

    /// The observation of a record that is not a hookgate envelope, which came to `outcome`.
    pub fn malformed(outcome: &RecordOutcome) -> Observation<'static> {
        record_observation(outcome, None)
    }
}

fn record_observation(outcome: &RecordOutcome, delivery_ms: Option<u64>) -> Observation<'static> {
    let counters: &'static [Counter] = match outcome {
        RecordOutcome::Processed => &[Counter::Processed],
        // Acknowledged without running anything: counted when it was processed.
        RecordOutcome::AlreadyProcessed | RecordOutcome::Superseded { .. } => &[],
        RecordOutcome::MovedToDlq { .. } => &[Counter::PermanentlyFailed],
        RecordOutcome::Failed {
            dead_lettered: true,
            ..
        } => &[Counter::DeadLettered],
        RecordOutcome::Failed { .. } => &[Counter::Retried],
    };
    Observation {
        source: UNKNOWN_SOURCE,
        event_type: UNKNOWN_TYPE,
        type_signed: true,
        adds_series: true,
        counters,
        reason: None,
        delivery_ms,
        receive_to_processed_ms: None,
    }
}

/// Whether the envelope's type was read from one of its headers rather than its body: the
/// value of a kept header other than `content-type`. Every scheme that reads a type from an
/// unsigned header keeps that header in the envelope (`X-GitHub-Event`, `X-Shopify-Topic`, the
/// generic `type_header`), so the processor tells such a type as the receiver did, without the
/// scheme at hand. A signed type that happens to equal a kept header's value counts as unsigned:
/// the safe side.
fn type_from_kept_header(envelope: &Envelope) -> bool {
    envelope
        .headers
        .iter()
        .any(|(name, value)| name != "content-type" && value.trim() == envelope.event_type)
}

/// Longest label (dimension) value written; event types are short, and CloudWatch refuses
/// dimension values over 1,024 characters.
const MAX_LABEL_CHARS: usize = 128;

/// `value` as a dimension or label value: control characters replaced, at most 128
/// characters, never empty or blank (CloudWatch drops a metric with such a dimension).
pub(crate) fn label_value(value: &str) -> Cow<'_, str> {
    let clean = !value.trim().is_empty()
        && value.chars().nth(MAX_LABEL_CHARS).is_none()
        && !value.chars().any(char::is_control);
    if clean {
        return Cow::Borrowed(value);
    }
    let cleaned: String = value
        .chars()
        .take(MAX_LABEL_CHARS)
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    if cleaned.trim().is_empty() {
        Cow::Borrowed("(empty)")
    } else {
        Cow::Owned(cleaned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::EventId;
    use crate::signature::SignatureError;
    use std::time::Duration;

    fn facts(source: Option<&str>, event_type: Option<&str>) -> RequestFacts {
        RequestFacts {
            source: source.map(|s| SourceName::parse(s).unwrap()),
            event_type: event_type.map(str::to_owned),
            type_signed: true,
        }
    }

    #[test]
    fn each_request_outcome_counts_received_and_one_more() {
        let id = EventId::parse("demo:1").unwrap();
        let known = facts(Some("demo"), Some("push"));
        let queued = known.observation(&Ok(Accepted::Queued(id.clone())));
        assert_eq!(queued.counters, [Counter::Received, Counter::Enqueued]);
        assert_eq!((queued.source, queued.event_type), ("demo", "push"));
        assert!(queued.adds_series && queued.type_signed);
        let duplicate = known.observation(&Ok(Accepted::Duplicate(id)));
        assert_eq!(duplicate.counters, [Counter::Received, Counter::Duplicates]);
        assert!(!duplicate.adds_series, "a duplicate never adds a series");
        let from_header = RequestFacts {
            type_signed: false,
            ..facts(Some("github"), Some("push"))
        };
        assert!(
            !from_header
                .observation(&Ok(Accepted::Queued(EventId::parse("github:1").unwrap())))
                .type_signed
        );
        let handshake = known.observation(&Ok(Accepted::Handshake(serde_json::json!({}))));
        assert_eq!(handshake.counters, [Counter::Received]);

        let unverified = facts(Some("demo"), None);
        let refused = unverified.observation(&Err(Rejection::Signature(SignatureError::Mismatch)));
        assert_eq!(refused.counters, [Counter::Received, Counter::Rejected]);
        assert_eq!(refused.reason, Some("signature_mismatch"));
        assert_eq!(refused.event_type, UNVERIFIED_TYPE);
        assert!(refused.type_signed, "(unverified) is hookgate's own label");
        let nothing = RequestFacts::default();
        let unknown = nothing.observation(&Err(Rejection::UnknownSource("nope".into())));
        assert_eq!(unknown.source, UNKNOWN_SOURCE);
        assert_eq!(unknown.reason, Some("unknown_source"));
    }

    #[test]
    fn each_record_outcome_maps_to_its_counter() {
        let envelope = Envelope {
            event_id: EventId::parse("demo:1").unwrap(),
            source: SourceName::parse("demo").unwrap(),
            event_type: "push".into(),
            received_at: Timestamp::from_secs(1_000),
            headers: Default::default(),
            body: bytes::Bytes::new(),
        };
        let mut facts = RecordFacts::of(&envelope);
        assert!(facts.type_signed, "no header names the type");
        facts.delivery_ms = Some(12);
        let now = Timestamp::from_secs(1_000).plus(Duration::from_millis(2_500));

        let processed = facts.observation(&RecordOutcome::Processed, now);
        assert_eq!(processed.counters, [Counter::Processed]);
        assert_eq!(processed.delivery_ms, Some(12));
        assert_eq!(processed.receive_to_processed_ms, Some(2_500));

        let failed = |dead_lettered| RecordOutcome::Failed {
            error: "boom".into(),
            retry_in: None,
            dead_lettered,
        };
        let retried = facts.observation(&failed(false), now);
        assert_eq!(retried.counters, [Counter::Retried]);
        assert_eq!(retried.receive_to_processed_ms, None, "not processed");
        assert_eq!(retried.delivery_ms, Some(12));
        assert_eq!(
            facts.observation(&failed(true), now).counters,
            [Counter::DeadLettered]
        );
        let moved = RecordOutcome::MovedToDlq {
            error: "bad".into(),
        };
        assert_eq!(
            facts.observation(&moved, now).counters,
            [Counter::PermanentlyFailed]
        );
        assert!(facts
            .observation(&RecordOutcome::AlreadyProcessed, now)
            .counters
            .is_empty());

        let malformed = RecordFacts::malformed(&moved);
        assert_eq!(
            (malformed.source, malformed.event_type),
            (UNKNOWN_SOURCE, UNKNOWN_TYPE)
        );
        assert_eq!(malformed.counters, [Counter::PermanentlyFailed]);
        assert!(malformed.latencies().next().is_none());
    }

    #[test]
    fn a_type_read_from_a_kept_header_is_unsigned_for_the_processor_too() {
        let envelope = |headers: &[(&str, &str)]| Envelope {
            event_id: EventId::parse("github:1").unwrap(),
            source: SourceName::parse("github").unwrap(),
            event_type: "push".into(),
            received_at: Timestamp::from_secs(1_000),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: bytes::Bytes::new(),
        };
        let from_header = envelope(&[("x-github-event", " push"), ("x-github-delivery", "d")]);
        let observed = RecordFacts::of(&from_header);
        assert!(
            !observed
                .observation(&RecordOutcome::Processed, Timestamp::from_secs(1))
                .type_signed
        );
        let from_body = envelope(&[("content-type", "push"), ("webhook-id", "msg_1")]);
        assert!(RecordFacts::of(&from_body).type_signed);
    }

    #[test]
    fn label_values_are_never_blank_long_or_control() {
        assert!(matches!(label_value("order.created"), Cow::Borrowed(_)));
        assert_eq!(label_value(""), "(empty)");
        assert_eq!(label_value("  "), "(empty)");
        assert_eq!(label_value("a\nb\"c"), "a_b\"c");
        assert_eq!(label_value(&"é".repeat(300)).chars().count(), 128);
    }
}
