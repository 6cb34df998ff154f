//! What the processor tells the metrics about a record: its outcome in the words of
//! [`crate::metrics`], under its source and type, with the handler's duration.
//!
//! The metrics module knows nothing of envelopes or record outcomes; the processor describes
//! what happened ([`Ran`]: the outcome, how long the handler ran) and translates it here, in one
//! place.

use super::RecordOutcome;
use crate::clock::Timestamp;
use crate::envelope::{Envelope, SourceName};
use crate::metrics::{EventType, Observation, RecordResult};

/// What became of one record: its outcome, and how long its handler ran if it ran.
#[derive(Debug)]
pub(super) struct Ran {
    pub(super) outcome: RecordOutcome,
    /// Milliseconds, when the handler was called (whether it succeeded or not).
    pub(super) handler_ms: Option<u64>,
}

impl From<RecordOutcome> for Ran {
    /// An outcome reached without calling the handler.
    fn from(outcome: RecordOutcome) -> Self {
        Ran {
            outcome,
            handler_ms: None,
        }
    }
}

impl RecordOutcome {
    /// What the metrics count for this outcome.
    pub(super) fn counted(&self) -> RecordResult {
        match self {
            RecordOutcome::Processed => RecordResult::Processed,
            RecordOutcome::AlreadyProcessed
            | RecordOutcome::Superseded { .. }
            | RecordOutcome::Stale
            | RecordOutcome::Rescheduled { error: None, .. } => RecordResult::Acknowledged,
            RecordOutcome::Rescheduled { error: Some(_), .. } => RecordResult::Retried,
            RecordOutcome::MovedToDlq { .. } => RecordResult::PermanentlyFailed,
            RecordOutcome::Held { .. } => RecordResult::Held,
            RecordOutcome::Failed {
                dead_lettered: true,
                ..
            } => RecordResult::DeadLettered,
            RecordOutcome::Failed { .. } => RecordResult::Retried,
        }
    }
}

/// Which series a record is counted in: its envelope's source and type, taken before the
/// envelope goes to the handler.
#[derive(Debug, Clone)]
pub(super) struct Counted {
    source: SourceName,
    event_type: String,
    type_signed: bool,
    received_at: Timestamp,
}

impl Counted {
    /// The series of `envelope`.
    pub(super) fn of(envelope: &Envelope) -> Self {
        Self {
            source: envelope.source.clone(),
            event_type: envelope.event_type.clone(),
            type_signed: !type_from_kept_header(envelope),
            received_at: envelope.received_at,
        }
    }
}

/// The observation of a record that `ran` so, settled at `now`: in `counted`'s series, or as a
/// record that is not an envelope when `counted` is `None`.
pub(super) fn observation<'a>(
    counted: Option<&'a Counted>,
    ran: &Ran,
    now: Timestamp,
) -> Observation<'a> {
    let result = ran.outcome.counted();
    let Some(counted) = counted else {
        return Observation::unknown_record(result);
    };
    let event_type = EventType {
        name: &counted.event_type,
        signed: counted.type_signed,
    };
    Observation::record(counted.source.as_str(), event_type, result)
        .with_delivery_ms(ran.handler_ms)
        .with_time_since_received(now.since(counted.received_at))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::EventId;
    use crate::metrics::{Counter, UNKNOWN_SOURCE, UNKNOWN_TYPE};
    use std::time::Duration;

    fn envelope(headers: &[(&str, &str)]) -> Envelope {
        Envelope {
            event_id: EventId::parse("github:1").unwrap(),
            source: SourceName::parse("github").unwrap(),
            event_type: "push".into(),
            received_at: Timestamp::from_secs(1_000),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: bytes::Bytes::new(),
        }
    }

    fn failed(dead_lettered: bool) -> RecordOutcome {
        RecordOutcome::Failed {
            error: "boom".into(),
            retry_in: None,
            dead_lettered,
        }
    }

    #[test]
    fn each_record_outcome_is_counted_as_its_result() {
        let moved = RecordOutcome::MovedToDlq {
            error: "bad".into(),
        };
        let cases = [
            (RecordOutcome::Processed, RecordResult::Processed),
            (RecordOutcome::AlreadyProcessed, RecordResult::Acknowledged),
            (
                RecordOutcome::Superseded { current: 2 },
                RecordResult::Acknowledged,
            ),
            (moved, RecordResult::PermanentlyFailed),
            (failed(true), RecordResult::DeadLettered),
            (failed(false), RecordResult::Retried),
        ];
        for (outcome, result) in cases {
            assert_eq!(outcome.counted(), result, "{outcome:?}");
        }
    }

    #[test]
    fn a_record_is_observed_in_its_series_with_its_latencies() {
        let counted = Counted::of(&envelope(&[("content-type", "application/json")]));
        let now = Timestamp::from_secs(1_000).plus(Duration::from_millis(2_500));
        let processed = Ran {
            outcome: RecordOutcome::Processed,
            handler_ms: Some(12),
        };
        let o = observation(Some(&counted), &processed, now);
        assert_eq!((o.source, o.event_type), ("github", "push"));
        assert!(o.type_signed, "no header names the type");
        assert_eq!(o.counters, [Counter::Processed]);
        assert_eq!(o.delivery_ms, Some(12));
        assert_eq!(o.receive_to_processed_ms, Some(2_500));

        let retried = Ran {
            outcome: failed(false),
            handler_ms: Some(12),
        };
        let o = observation(Some(&counted), &retried, now);
        assert_eq!(o.counters, [Counter::Retried]);
        assert_eq!(o.delivery_ms, Some(12));
        assert_eq!(o.receive_to_processed_ms, None, "not processed");

        let acknowledged = Ran::from(RecordOutcome::AlreadyProcessed);
        assert!(observation(Some(&counted), &acknowledged, now).is_empty());

        let malformed = Ran::from(RecordOutcome::MovedToDlq {
            error: "bad".into(),
        });
        let o = observation(None, &malformed, now);
        assert_eq!((o.source, o.event_type), (UNKNOWN_SOURCE, UNKNOWN_TYPE));
        assert_eq!(o.counters, [Counter::PermanentlyFailed]);
        assert!(o.latencies().next().is_none());
    }

    #[test]
    fn a_type_read_from_a_kept_header_is_unsigned_for_the_processor_too() {
        let from_header = envelope(&[("x-github-event", " push"), ("x-github-delivery", "d")]);
        let ran = Ran::from(RecordOutcome::Processed);
        let counted = Counted::of(&from_header);
        assert!(!observation(Some(&counted), &ran, Timestamp::from_secs(1)).type_signed);
        let from_body = envelope(&[("content-type", "push"), ("webhook-id", "msg_1")]);
        assert!(Counted::of(&from_body).type_signed);
    }
}
