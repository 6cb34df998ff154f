//! `MemoryGate`: the destination gate in a mutex — the local stack's, and the tests'.
//!
//! Every decision is taken under one lock with the same pure transitions the DynamoDB gate
//! applies ([`DestinationHealth::after_failure`] and its siblings), and rate windows are keyed
//! by the `now` each call passes (no clock of its own), so it answers as DynamoDB does in the
//! gate's contract suite. Windows that have ended are dropped as new ones are counted, as
//! DynamoDB's TTL drops their items.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::destination_gate::{
    rate_window, BreakerOptions, Circuit, DestinationGate, DestinationHealth, DestinationName,
    GateError, RateDecision, RateLimit,
};

/// Rate windows kept before the ended ones are swept.
const SWEEP_ABOVE: usize = 1024;

#[derive(Debug, Default)]
struct State {
    /// Sends counted per destination and window start, with the window's end.
    windows: HashMap<(DestinationName, Timestamp), (u32, Timestamp)>,
    health: HashMap<DestinationName, DestinationHealth>,
}

/// The destination gate in this process.
#[derive(Debug, Default)]
pub struct MemoryGate {
    state: Mutex<State>,
}

impl MemoryGate {
    /// An empty gate: every destination closed, no window counted.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change is one assignment after its checks: a panic leaves no half-made state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change` to `d`'s health under the lock and keeps the result.
    fn update<T>(
        &self,
        d: &DestinationName,
        change: impl FnOnce(&DestinationHealth) -> (Option<DestinationHealth>, T),
    ) -> T {
        let mut state = self.state();
        let current = state
            .health
            .get(d)
            .cloned()
            .unwrap_or_else(|| DestinationHealth::new(d.clone()));
        let (next, answer) = change(&current);
        if let Some(next) = next {
            state.health.insert(d.clone(), next);
        }
        answer
    }
}

#[async_trait]
impl DestinationGate for MemoryGate {
    async fn take_rate(
        &self,
        d: &DestinationName,
        limit: RateLimit,
        now: Timestamp,
    ) -> Result<RateDecision, GateError> {
        let (start, end) = rate_window(limit, now);
        let mut state = self.state();
        if state.windows.len() > SWEEP_ABOVE {
            state.windows.retain(|_, (_, window_end)| *window_end > now);
        }
        let (count, _) = state.windows.entry((d.clone(), start)).or_insert((0, end));
        if *count < limit.count {
            *count += 1;
            Ok(RateDecision::Admit)
        } else {
            Ok(RateDecision::WaitUntil(end))
        }
    }

    async fn health(&self, d: &DestinationName) -> Result<DestinationHealth, GateError> {
        Ok(self.update(d, |h| (None, h.clone())))
    }

    async fn take_probe(
        &self,
        d: &DestinationName,
        now: Timestamp,
        lease: Duration,
    ) -> Result<bool, GateError> {
        Ok(self.update(d, |h| {
            let next = h.after_probe_taken(now, lease);
            let won = next.is_some();
            (next, won)
        }))
    }

    async fn record_success(&self, d: &DestinationName, now: Timestamp) -> Result<(), GateError> {
        self.update(d, |h| (Some(h.after_success(now)), ()));
        Ok(())
    }

    async fn record_failure(
        &self,
        d: &DestinationName,
        reason: &str,
        breaker: BreakerOptions,
        now: Timestamp,
    ) -> Result<Circuit, GateError> {
        Ok(self.update(d, |h| {
            let next = h.after_failure(reason, breaker, now);
            let circuit = next.circuit.clone();
            (Some(next), circuit)
        }))
    }

    async fn disable(
        &self,
        d: &DestinationName,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), GateError> {
        self.update(d, |h| (Some(h.after_disable(reason, now)), ()));
        Ok(())
    }

    async fn enable(&self, d: &DestinationName, now: Timestamp) -> Result<(), GateError> {
        self.update(d, |h| (Some(h.after_enable(now)), ()));
        Ok(())
    }

    async fn list(&self, names: &[DestinationName]) -> Result<Vec<DestinationHealth>, GateError> {
        let state = self.state();
        Ok(names
            .iter()
            .map(|d| {
                state
                    .health
                    .get(d)
                    .cloned()
                    .unwrap_or_else(|| DestinationHealth::new(d.clone()))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ended_windows_are_swept() {
        let gate = MemoryGate::new();
        let limit: RateLimit = "1/s".parse().unwrap();
        let d = DestinationName::parse("a").unwrap();
        for second in 0..(SWEEP_ABOVE as i64 + 10) {
            gate.take_rate(&d, limit, Timestamp::from_secs(second))
                .await
                .unwrap();
        }
        assert!(gate.state().windows.len() <= SWEEP_ABOVE + 1);
    }
}
