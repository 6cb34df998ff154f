//! The destination gate: the state every processor shares about each destination — how much of
//! its rate limit the current window has used, and its circuit (closed, open, half-open,
//! disabled) — as a port, with the pure decisions built on it.
//!
//! It exists because a rate limit and a circuit breaker only mean something across every
//! concurrent processor invocation: a limit counted per container would let N containers send N
//! times the limit, and a breaker per container would keep calling a dead destination from every
//! fresh one. So the counts live behind this port, in DynamoDB on AWS (one conditional write per
//! decision: `hookgate_aws::destination_gate`) and in a mutex locally
//! ([`crate::memory::MemoryGate`]); one contract suite (`tests/tests/gate_contract.rs`) holds both
//! to the same answers.
//!
//! **Rate limits** are counted in fixed windows of the limit's period, aligned on the epoch
//! (`window start = now − now mod per`): [`DestinationGate::take_rate`] admits while the window's
//! count is below the limit and otherwise answers [`RateDecision::WaitUntil`] the next window's
//! start. A fixed window can admit up to twice the limit across a window boundary (the end of
//! one and the start of the next); it never admits more than the limit within one window.
//!
//! **The breaker**: [`DestinationGate::record_failure`] counts consecutive failures; at
//! [`BreakerOptions::failures`] the circuit opens until `now + cool_down`. After the cool-down,
//! exactly one caller wins [`DestinationGate::take_probe`] (the circuit turns half-open, the
//! probe held for a lease, after which another caller may probe if the first never reported);
//! its success closes the circuit and resets the count, its failure reopens it for another
//! cool-down. **Disabled** (a `410 Gone`, or an operator) holds until [`DestinationGate::enable`];
//! neither success nor failure changes it.
//!
//! The transitions are pure methods of [`DestinationHealth`] (`after_failure`, …), so both
//! implementations compute the same next state; [`admission`] is the pure decision the
//! processor takes from a health reading before a delivery. [`CachedGate`] keeps a container's
//! reads and no-op writes off the hot path, at a bounded staleness.

mod cached;

use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Timestamp;
pub use crate::destination_policy::{BreakerOptions, DestinationName, RateLimit};

pub use cached::{CachedGate, DEFAULT_MAX_AGE};

/// The longest failure reason kept (characters); longer ones are cut, so the health item stays
/// small whatever a destination answers.
pub const MAX_REASON_CHARS: usize = 500;

/// How long a delivery to a disabled destination is held before the processor looks again: a
/// disabled destination has no end time of its own.
pub const DISABLED_RECHECK: Duration = Duration::from_secs(60);

/// What [`DestinationGate::take_rate`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Send now: one send was counted.
    Admit,
    /// The window is full: nothing was counted; try again at this time (the next window).
    WaitUntil(Timestamp),
}

/// A destination's circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Circuit {
    /// Deliveries go.
    Closed,
    /// Too many consecutive failures: deliveries wait, without calling it, until `until`; then
    /// one probe.
    Open {
        /// When the cool-down ends.
        until: Timestamp,
    },
    /// A probe has been taken and is out (see [`DestinationHealth::probe_until`]).
    HalfOpen,
    /// Answered `410 Gone`, or disabled by an operator: deliveries are held until it is enabled.
    Disabled {
        /// When it was disabled.
        since: Timestamp,
        /// Why.
        reason: String,
    },
}

impl Circuit {
    /// The circuit's name: `closed`, `open`, `half_open` or `disabled` (the command line, the
    /// stored form).
    pub fn as_str(&self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open { .. } => "open",
            Circuit::HalfOpen => "half_open",
            Circuit::Disabled { .. } => "disabled",
        }
    }
}

/// What the gate knows about one destination. A destination the gate has never heard of is
/// [`DestinationHealth::new`]: closed, no failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationHealth {
    /// The destination.
    pub name: DestinationName,
    /// Its circuit.
    pub circuit: Circuit,
    /// Failures since the last success (or enabling).
    pub consecutive_failures: u32,
    /// The last failure's reason (kept after a success, for the operator).
    pub last_failure: Option<String>,
    /// When the state last changed (`None`: never recorded).
    pub updated_at: Option<Timestamp>,
    /// While [`Circuit::HalfOpen`]: until when the probe taken holds; after it, another caller
    /// may take the probe (the first one's process died, say).
    pub probe_until: Option<Timestamp>,
}

/// Why a delivery is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    /// The circuit is open (or a probe is out).
    Open,
    /// The destination is disabled.
    Disabled,
    /// The rate limit's window is full.
    RateLimited,
}

impl HoldReason {
    /// `open`, `disabled`, `rate_limited`: for logs, metrics and the ledger's notes.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::Open => "open",
            HoldReason::Disabled => "disabled",
            HoldReason::RateLimited => "rate_limited",
        }
    }
}

/// What the processor does with a delivery, from a health reading ([`admission`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Deliver (after taking its rate).
    Go,
    /// The cool-down has passed: [`DestinationGate::take_probe`], deliver if it is won, else
    /// hold briefly (another caller is probing).
    Probe,
    /// Do not call the destination; hold the delivery until `until` (not an attempt, not a
    /// failure).
    Hold {
        /// When to look again.
        until: Timestamp,
        /// Why.
        why: HoldReason,
    },
}

/// The gate could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// The store could not be reached or refused (throttling, a timeout): transient.
    #[error("destination gate unavailable: {0}")]
    Unavailable(String),
    /// The store holds something the gate cannot read.
    #[error("destination gate state is corrupt: {0}")]
    Corrupt(String),
}

/// The shared per-destination state. Every method is one atomic decision across all callers.
#[async_trait]
pub trait DestinationGate: Send + Sync {
    /// One send from the destination's limit in the fixed window containing `now`.
    async fn take_rate(
        &self,
        d: &DestinationName,
        limit: RateLimit,
        now: Timestamp,
    ) -> Result<RateDecision, GateError>;

    /// The destination's state (closed with no failures if never recorded).
    async fn health(&self, d: &DestinationName) -> Result<DestinationHealth, GateError>;

    /// One caller per cool-down wins the probe of an open circuit whose cool-down has passed
    /// (the circuit turns half-open for `lease`); every other caller, and any caller of a
    /// circuit that is not open, gets `false`.
    async fn take_probe(
        &self,
        d: &DestinationName,
        now: Timestamp,
        lease: Duration,
    ) -> Result<bool, GateError>;

    /// A delivery succeeded: the circuit closes and the count resets (a disabled destination
    /// stays disabled).
    async fn record_success(&self, d: &DestinationName, now: Timestamp) -> Result<(), GateError>;

    /// A delivery failed: counted; the circuit opens at `breaker.failures`; a failed probe
    /// reopens it for another cool-down. Returns the circuit after it.
    async fn record_failure(
        &self,
        d: &DestinationName,
        reason: &str,
        breaker: BreakerOptions,
        now: Timestamp,
    ) -> Result<Circuit, GateError>;

    /// Disables the destination (a `410 Gone`, or an operator) until [`DestinationGate::enable`].
    /// Disabling a disabled destination keeps its `since` and takes the new reason.
    async fn disable(
        &self,
        d: &DestinationName,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), GateError>;

    /// Enables the destination: closed, no failures.
    async fn enable(&self, d: &DestinationName, now: Timestamp) -> Result<(), GateError>;

    /// The health of each of `names`, in their order.
    async fn list(&self, names: &[DestinationName]) -> Result<Vec<DestinationHealth>, GateError>;
}

/// The fixed window of `limit` that contains `now`: its start and its end (the next start).
pub fn rate_window(limit: RateLimit, now: Timestamp) -> (Timestamp, Timestamp) {
    let per = i64::try_from(limit.per.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let start = now.as_millis() - now.as_millis().rem_euclid(per);
    (
        Timestamp::from_millis(start),
        Timestamp::from_millis(start.saturating_add(per)),
    )
}

/// `reason` cut to [`MAX_REASON_CHARS`] characters.
pub fn clip_reason(reason: &str) -> String {
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        Some((at, _)) => reason[..at].to_owned(),
        None => reason.to_owned(),
    }
}

impl DestinationHealth {
    /// A destination never recorded: closed, no failures.
    pub fn new(name: DestinationName) -> Self {
        Self {
            name,
            circuit: Circuit::Closed,
            consecutive_failures: 0,
            last_failure: None,
            updated_at: None,
            probe_until: None,
        }
    }

    /// Whether a success would change nothing: closed, no failures (what [`CachedGate`] skips).
    pub fn is_clean(&self) -> bool {
        self.circuit == Circuit::Closed && self.consecutive_failures == 0
    }

    /// The state after a failure at `now`.
    pub fn after_failure(&self, reason: &str, breaker: BreakerOptions, now: Timestamp) -> Self {
        let mut next = self.clone();
        next.consecutive_failures = self.consecutive_failures.saturating_add(1);
        next.last_failure = Some(clip_reason(reason));
        next.updated_at = Some(now);
        let reopen = Circuit::Open {
            until: now.plus(breaker.cool_down),
        };
        match &self.circuit {
            Circuit::Closed if next.consecutive_failures >= breaker.failures.max(1) => {
                next.circuit = reopen;
            }
            // The probe failed: another cool-down.
            Circuit::HalfOpen => {
                next.circuit = reopen;
                next.probe_until = None;
            }
            // A delivery sent before the circuit opened, or disabled: counted, nothing else.
            Circuit::Closed | Circuit::Open { .. } | Circuit::Disabled { .. } => {}
        }
        next
    }

    /// The state after a success at `now`: closed and reset, unless disabled.
    pub fn after_success(&self, now: Timestamp) -> Self {
        if matches!(self.circuit, Circuit::Disabled { .. }) {
            return self.clone();
        }
        Self {
            circuit: Circuit::Closed,
            consecutive_failures: 0,
            probe_until: None,
            updated_at: Some(now),
            ..self.clone()
        }
    }

    /// The state after this caller takes the probe at `now`, or `None` if it may not: only an
    /// open circuit whose cool-down has passed, or a half-open one whose probe lease has run
    /// out.
    pub fn after_probe_taken(&self, now: Timestamp, lease: Duration) -> Option<Self> {
        let may = match &self.circuit {
            Circuit::Open { until } => *until <= now,
            Circuit::HalfOpen => self.probe_until.is_none_or(|t| t <= now),
            Circuit::Closed | Circuit::Disabled { .. } => false,
        };
        may.then(|| Self {
            circuit: Circuit::HalfOpen,
            probe_until: Some(now.plus(lease)),
            updated_at: Some(now),
            ..self.clone()
        })
    }

    /// The state after disabling at `now` for `reason` (an earlier `since` is kept).
    pub fn after_disable(&self, reason: &str, now: Timestamp) -> Self {
        let since = match &self.circuit {
            Circuit::Disabled { since, .. } => *since,
            _ => now,
        };
        Self {
            circuit: Circuit::Disabled {
                since,
                reason: clip_reason(reason),
            },
            probe_until: None,
            updated_at: Some(now),
            ..self.clone()
        }
    }

    /// The state after enabling at `now`: closed, no failures.
    pub fn after_enable(&self, now: Timestamp) -> Self {
        Self {
            circuit: Circuit::Closed,
            consecutive_failures: 0,
            probe_until: None,
            updated_at: Some(now),
            ..self.clone()
        }
    }
}

/// What the processor does with a delivery to a destination in `health` at `now`: go, probe
/// (the cool-down has passed), or hold until a time (the cool-down's end, the probe's lease,
/// or [`DISABLED_RECHECK`] from now for a disabled destination).
pub fn admission(health: &DestinationHealth, now: Timestamp) -> Admission {
    match &health.circuit {
        Circuit::Closed => Admission::Go,
        Circuit::Open { until } if now < *until => Admission::Hold {
            until: *until,
            why: HoldReason::Open,
        },
        Circuit::Open { .. } => Admission::Probe,
        Circuit::HalfOpen => match health.probe_until {
            Some(until) if now < until => Admission::Hold {
                until,
                why: HoldReason::Open,
            },
            _ => Admission::Probe,
        },
        Circuit::Disabled { .. } => Admission::Hold {
            until: now.plus(DISABLED_RECHECK),
            why: HoldReason::Disabled,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> DestinationName {
        DestinationName::parse("billing").unwrap()
    }

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    const BREAKER: BreakerOptions = BreakerOptions {
        failures: 3,
        cool_down: Duration::from_secs(60),
    };

    #[test]
    fn windows_are_aligned_on_the_epoch() {
        let per_second: RateLimit = "5/s".parse().unwrap();
        assert_eq!(rate_window(per_second, t(12_345)), (t(12_000), t(13_000)));
        assert_eq!(rate_window(per_second, t(13_000)), (t(13_000), t(14_000)));
        let per_minute: RateLimit = "5/m".parse().unwrap();
        assert_eq!(rate_window(per_minute, t(61_000)), (t(60_000), t(120_000)));
    }

    #[test]
    fn the_breaker_opens_at_the_threshold_and_a_failed_probe_reopens() {
        let mut h = DestinationHealth::new(name());
        for _ in 0..2 {
            h = h.after_failure("500", BREAKER, t(1_000));
            assert_eq!(h.circuit, Circuit::Closed);
        }
        h = h.after_failure("503", BREAKER, t(2_000));
        assert_eq!(h.circuit, Circuit::Open { until: t(62_000) });
        assert_eq!(
            admission(&h, t(61_999)),
            Admission::Hold {
                until: t(62_000),
                why: HoldReason::Open
            }
        );
        assert_eq!(admission(&h, t(62_000)), Admission::Probe);
        assert!(h
            .after_probe_taken(t(61_999), Duration::from_secs(10))
            .is_none());
        let probing = h
            .after_probe_taken(t(62_000), Duration::from_secs(10))
            .unwrap();
        assert_eq!(probing.circuit, Circuit::HalfOpen);
        assert!(probing
            .after_probe_taken(t(71_999), Duration::from_secs(10))
            .is_none());
        assert!(probing
            .after_probe_taken(t(72_000), Duration::from_secs(10))
            .is_some());
        let reopened = probing.after_failure("timeout", BREAKER, t(65_000));
        assert_eq!(reopened.circuit, Circuit::Open { until: t(125_000) });
        let closed = probing.after_success(t(65_000));
        assert!(closed.is_clean());
        assert_eq!(closed.last_failure.as_deref(), Some("503"));
    }

    #[test]
    fn disabled_holds_until_enabled() {
        let h = DestinationHealth::new(name()).after_disable("410 Gone", t(5));
        let again = h.after_disable("operator", t(9));
        assert_eq!(
            again.circuit,
            Circuit::Disabled {
                since: t(5),
                reason: "operator".into()
            }
        );
        assert_eq!(h.after_success(t(10)), h);
        assert!(matches!(
            h.after_failure("x", BREAKER, t(10)).circuit,
            Circuit::Disabled { .. }
        ));
        assert!(h
            .after_probe_taken(t(10_000_000), Duration::from_secs(1))
            .is_none());
        assert_eq!(
            admission(&h, t(10)),
            Admission::Hold {
                until: t(10).plus(DISABLED_RECHECK),
                why: HoldReason::Disabled
            }
        );
        assert!(h.after_enable(t(11)).is_clean());
    }

    #[test]
    fn reasons_are_clipped_on_a_character_boundary() {
        let long = "é".repeat(MAX_REASON_CHARS + 10);
        assert_eq!(clip_reason(&long).chars().count(), MAX_REASON_CHARS);
        assert_eq!(clip_reason("short"), "short");
    }
}
