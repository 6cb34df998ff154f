//! Which event types become metric series: a bound on what anyone can make the metrics grow by.
//!
//! Every distinct `(source, type)` is a series: a Prometheus series on the local stack, a
//! CloudWatch custom metric per metric name on AWS — billed per metric per month. A type that
//! the sender controls would let one captured request mint series without end (replay it with
//! a new `X-GitHub-Event` each time: every replay is a duplicate, but it was counted). So both
//! sinks ask [`SeriesLimits::type_label`] for the label of each observation:
//!
//! 1. hookgate's own labels (`(unverified)`, `(unknown)`, `other`) are used as they are;
//! 2. a source with `metric_types` uses those types and counts every other type as `other`;
//! 3. otherwise a type from an unsigned header counts as `other`: only signed content (the
//!    body of a verified request) names a series;
//! 4. a duplicate never adds a series: its type counts only where that series already exists;
//! 5. at most `[metrics] max_types_per_source` types per source; further ones count as `other`
//!    (a warning is logged once per source).
//!
//! On Lambda each container keeps its own record of the series it has written, so the cap holds
//! per container; what any container writes is bounded by rules 2 and 3.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use tracing::warn;

use super::{Observation, UNKNOWN_TYPE, UNVERIFIED_TYPE};

/// The type label of everything a source's limits do not let through.
pub const OTHER_TYPE: &str = "other";

/// The per-source bounds on type labels, and the series created so far.
#[derive(Debug)]
pub struct SeriesLimits {
    /// `metric_types` of the sources that list them.
    allowed: HashMap<String, BTreeSet<String>>,
    max_types_per_source: usize,
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug, Default)]
struct Seen {
    types: HashSet<String>,
    /// Whether the cap was reported for this source already.
    warned: bool,
}

impl Default for SeriesLimits {
    /// No allow-lists, the default cap.
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_TYPES_PER_SOURCE)
    }
}

impl SeriesLimits {
    /// The cap of [`SeriesLimits::default`] (and of `[metrics] max_types_per_source`).
    pub const DEFAULT_MAX_TYPES_PER_SOURCE: usize = 50;

    /// No allow-lists; at most `max_types_per_source` types per source.
    pub fn new(max_types_per_source: usize) -> Self {
        Self {
            allowed: HashMap::new(),
            max_types_per_source,
            seen: Mutex::default(),
        }
    }

    /// The same limits, with `source`'s types split out limited to `types` (a source's
    /// `metric_types`): every other type of it counts as [`OTHER_TYPE`].
    pub fn allowing<T: Into<String>>(
        mut self,
        source: impl Into<String>,
        types: impl IntoIterator<Item = T>,
    ) -> Self {
        self.allowed
            .insert(source.into(), types.into_iter().map(Into::into).collect());
        self
    }

    /// The type label `observation` is counted under (its `event_type` already cleaned into a
    /// label value): the type itself, or [`OTHER_TYPE`].
    pub fn type_label<'a>(&self, observation: &Observation<'_>, event_type: &'a str) -> &'a str {
        if [UNVERIFIED_TYPE, UNKNOWN_TYPE, OTHER_TYPE].contains(&event_type) {
            return event_type;
        }
        let source = observation.source;
        let listed = match self.allowed.get(source) {
            Some(allowed) if allowed.contains(event_type) => true,
            Some(_) => return OTHER_TYPE,
            None if !observation.type_signed => return OTHER_TYPE,
            None => false,
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let types = match seen.get_mut(source) {
            Some(types) => types,
            None => seen.entry(source.to_owned()).or_default(),
        };
        if types.types.contains(event_type) {
            return event_type;
        }
        if !observation.adds_series {
            return OTHER_TYPE;
        }
        // A listed type is always let through: the list is no longer than the cap.
        if !listed && types.types.len() >= self.max_types_per_source {
            if !types.warned {
                types.warned = true;
                warn!(
                    source,
                    max_types_per_source = self.max_types_per_source,
                    "metric series cap reached: further event types of this source count as \"other\""
                );
            }
            return OTHER_TYPE;
        }
        types.types.insert(event_type.to_owned());
        event_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Counter;

    fn observation<'a>(source: &'a str, event_type: &'a str) -> Observation<'a> {
        Observation {
            source,
            event_type,
            type_signed: true,
            adds_series: true,
            counters: &[Counter::Received, Counter::Enqueued],
            reason: None,
            delivery_ms: None,
            receive_to_processed_ms: None,
        }
    }

    fn label<'a>(limits: &SeriesLimits, o: &Observation<'a>) -> &'a str {
        limits.type_label(o, o.event_type)
    }

    #[test]
    fn unsigned_types_count_as_other_unless_listed() {
        let limits = SeriesLimits::default().allowing("gh", ["push"]);
        let unsigned = |source, t| Observation {
            type_signed: false,
            ..observation(source, t)
        };
        assert_eq!(label(&limits, &unsigned("gh", "push")), "push");
        assert_eq!(label(&limits, &unsigned("gh", "made-up")), OTHER_TYPE);
        assert_eq!(
            label(&limits, &observation("gh", "signed-but-unlisted")),
            OTHER_TYPE
        );
        assert_eq!(
            label(&limits, &unsigned("shop", "orders/create")),
            OTHER_TYPE
        );
        assert_eq!(
            label(&limits, &observation("shop", "orders/create")),
            "orders/create"
        );
        assert_eq!(
            label(&limits, &unsigned("shop", UNVERIFIED_TYPE)),
            UNVERIFIED_TYPE
        );
    }

    #[test]
    fn duplicates_never_add_a_series() {
        let limits = SeriesLimits::default();
        let duplicate = |t| Observation {
            adds_series: false,
            ..observation("demo", t)
        };
        assert_eq!(label(&limits, &duplicate("order.created")), OTHER_TYPE);
        assert_eq!(
            label(&limits, &observation("demo", "order.created")),
            "order.created"
        );
        assert_eq!(label(&limits, &duplicate("order.created")), "order.created");
    }

    #[test]
    fn the_cap_holds_per_source_and_lets_listed_types_through() {
        let limits = SeriesLimits::new(3);
        for i in 0..10 {
            let t = format!("type-{i}");
            let want = if i < 3 { t.as_str() } else { OTHER_TYPE };
            assert_eq!(label(&limits, &observation("a", &t)), want);
        }
        // Types counted before the cap still are; another source has a cap of its own.
        assert_eq!(label(&limits, &observation("a", "type-1")), "type-1");
        assert_eq!(label(&limits, &observation("b", "type-9")), "type-9");
    }
}
