//! `CachedGate`: a container's memory of the gate, so a healthy destination costs no gate read
//! and no gate write per delivery beyond one rate take.
//!
//! It exists because every AWS request costs the processor CPU (about 0.2 ms each, see
//! `docs/cost.md`) and latency: reading a destination's health before every delivery and
//! writing a success after it would add two DynamoDB requests per delivery to a destination
//! that has been fine all along.
//!
//! What it keeps, and what that costs:
//! - **Health, for at most `max_age`** (default [`DEFAULT_MAX_AGE`], 1 s) after it was read.
//!   *Trade-off:* a circuit another container opened, or an operator disabled, is seen here up to
//!   `max_age` late, so up to `max_age` of this container's deliveries may still go to it. Any
//!   change this container makes itself (a failure, a probe, disable, enable) drops its entry,
//!   so its own next reading is fresh.
//! - **One reading at a time**: while a stale reading is being refreshed, the container's other
//!   deliveries to that destination use the stale one (a batch of ten concurrent deliveries
//!   makes one read a second, not ten).
//! - **Successes that change nothing are not written**: when the last reading (however old: a
//!   reading is refreshed before every delivery that is not within `max_age` of it) is already
//!   closed with no failures. *Trade-off:* failures another container
//!   recorded less than `max_age` ago may not be reset by this container's success, so
//!   "consecutive" failures are counted across containers with that blur (the breaker may open a
//!   little early, never late).
//! - **A full rate window**: once the gate answered `WaitUntil(t)` for a limit, further takes
//!   with the same limit before `t` answer the same without asking. This one is exact: a window's
//!   count never goes down.
//!
//! Rate takes that may admit always go to the shared gate: the limit holds across containers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    BreakerOptions, Circuit, DestinationGate, DestinationHealth, DestinationName, GateError,
    RateDecision, RateLimit,
};
use crate::clock::{Clock, Timestamp};

/// How long a health reading is trusted by default: 1 s.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Entry {
    /// The last reading and when it was read (by the cache's clock).
    health: Option<(DestinationHealth, Timestamp)>,
    /// A full window: the limit it was full for, and when the next window starts.
    full_until: Option<(RateLimit, Timestamp)>,
    /// A refresh of `health` is in flight: others use the stale reading meanwhile.
    refreshing: bool,
}

/// A [`DestinationGate`] in front of another, shared one; see the module's doc for what it
/// keeps and the staleness that costs.
pub struct CachedGate {
    inner: Arc<dyn DestinationGate>,
    clock: Arc<dyn Clock>,
    max_age: Duration,
    entries: Mutex<HashMap<DestinationName, Entry>>,
}

impl std::fmt::Debug for CachedGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedGate")
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl CachedGate {
    /// `inner` behind a cache whose readings are trusted for `max_age` by `clock`.
    pub fn new(inner: Arc<dyn DestinationGate>, clock: Arc<dyn Clock>, max_age: Duration) -> Self {
        Self {
            inner,
            clock,
            max_age,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<DestinationName, Entry>> {
        // A panic while holding the lock leaves only a cache behind: still usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached health of `d`, if read no longer than `max_age` ago.
    fn fresh(&self, d: &DestinationName) -> Option<DestinationHealth> {
        let now = self.clock.now();
        let entries = self.entries();
        let (health, read_at) = entries.get(d)?.health.as_ref()?;
        (now.since(*read_at) <= self.max_age && *read_at <= now).then(|| health.clone())
    }

    /// The last reading of `d`, however old.
    fn last(&self, d: &DestinationName) -> Option<DestinationHealth> {
        let entries = self.entries();
        entries.get(d)?.health.as_ref().map(|(h, _)| h.clone())
    }

    fn forget_health(&self, d: &DestinationName) {
        if let Some(entry) = self.entries().get_mut(d) {
            entry.health = None;
        }
    }
}

#[async_trait]
impl DestinationGate for CachedGate {
    async fn take_rate(
        &self,
        d: &DestinationName,
        limit: RateLimit,
        now: Timestamp,
    ) -> Result<RateDecision, GateError> {
        if let Some((full_limit, until)) = self.entries().get(d).and_then(|e| e.full_until) {
            if full_limit == limit && now < until {
                return Ok(RateDecision::WaitUntil(until));
            }
        }
        let decision = self.inner.take_rate(d, limit, now).await?;
        let mut entries = self.entries();
        let entry = entries.entry(d.clone()).or_default();
        entry.full_until = match decision {
            RateDecision::WaitUntil(until) => Some((limit, until)),
            RateDecision::Admit => None,
        };
        Ok(decision)
    }

    async fn health(&self, d: &DestinationName) -> Result<DestinationHealth, GateError> {
        if let Some(health) = self.fresh(d) {
            return Ok(health);
        }
        {
            // One refresh at a time; the others take the stale reading meanwhile.
            let mut entries = self.entries();
            let entry = entries.entry(d.clone()).or_default();
            match (&entry.health, entry.refreshing) {
                (Some((stale, _)), true) => return Ok(stale.clone()),
                _ => entry.refreshing = true,
            }
        }
        let read_at = self.clock.now();
        let read = self.inner.health(d).await;
        let mut entries = self.entries();
        let entry = entries.entry(d.clone()).or_default();
        entry.refreshing = false;
        let health = read?;
        entry.health = Some((health.clone(), read_at));
        Ok(health)
    }

    async fn take_probe(
        &self,
        d: &DestinationName,
        now: Timestamp,
        lease: Duration,
    ) -> Result<bool, GateError> {
        self.forget_health(d);
        self.inner.take_probe(d, now, lease).await
    }

    async fn record_success(&self, d: &DestinationName, now: Timestamp) -> Result<(), GateError> {
        if self.last(d).is_some_and(|h| h.is_clean()) {
            return Ok(());
        }
        self.inner.record_success(d, now).await?;
        // What this container wrote is what it reads next, no older than the reading it had.
        if let Some(entry) = self.entries().get_mut(d) {
            if let Some((health, _)) = entry.health.as_mut() {
                *health = health.after_success(now);
            }
        }
        Ok(())
    }

    async fn record_failure(
        &self,
        d: &DestinationName,
        reason: &str,
        breaker: BreakerOptions,
        now: Timestamp,
    ) -> Result<Circuit, GateError> {
        self.forget_health(d);
        self.inner.record_failure(d, reason, breaker, now).await
    }

    async fn disable(
        &self,
        d: &DestinationName,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), GateError> {
        self.forget_health(d);
        self.inner.disable(d, reason, now).await
    }

    async fn enable(&self, d: &DestinationName, now: Timestamp) -> Result<(), GateError> {
        self.forget_health(d);
        self.inner.enable(d, now).await
    }

    async fn list(&self, names: &[DestinationName]) -> Result<Vec<DestinationHealth>, GateError> {
        self.inner.list(names).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::clock::ManualClock;
    use crate::memory::MemoryGate;

    /// The memory gate, counting the calls that reach it.
    #[derive(Default)]
    struct Counting {
        gate: MemoryGate,
        health: AtomicUsize,
        successes: AtomicUsize,
        rates: AtomicUsize,
    }

    #[async_trait]
    impl DestinationGate for Counting {
        async fn take_rate(
            &self,
            d: &DestinationName,
            limit: RateLimit,
            now: Timestamp,
        ) -> Result<RateDecision, GateError> {
            self.rates.fetch_add(1, Ordering::SeqCst);
            self.gate.take_rate(d, limit, now).await
        }
        async fn health(&self, d: &DestinationName) -> Result<DestinationHealth, GateError> {
            self.health.fetch_add(1, Ordering::SeqCst);
            // A real read waits on the network: let concurrent callers run meanwhile.
            tokio::task::yield_now().await;
            self.gate.health(d).await
        }
        async fn take_probe(
            &self,
            d: &DestinationName,
            now: Timestamp,
            lease: Duration,
        ) -> Result<bool, GateError> {
            self.gate.take_probe(d, now, lease).await
        }
        async fn record_success(
            &self,
            d: &DestinationName,
            now: Timestamp,
        ) -> Result<(), GateError> {
            self.successes.fetch_add(1, Ordering::SeqCst);
            self.gate.record_success(d, now).await
        }
        async fn record_failure(
            &self,
            d: &DestinationName,
            reason: &str,
            breaker: BreakerOptions,
            now: Timestamp,
        ) -> Result<Circuit, GateError> {
            self.gate.record_failure(d, reason, breaker, now).await
        }
        async fn disable(
            &self,
            d: &DestinationName,
            reason: &str,
            now: Timestamp,
        ) -> Result<(), GateError> {
            self.gate.disable(d, reason, now).await
        }
        async fn enable(&self, d: &DestinationName, now: Timestamp) -> Result<(), GateError> {
            self.gate.enable(d, now).await
        }
        async fn list(
            &self,
            names: &[DestinationName],
        ) -> Result<Vec<DestinationHealth>, GateError> {
            self.gate.list(names).await
        }
    }

    fn rig() -> (Arc<Counting>, Arc<ManualClock>, CachedGate) {
        let inner = Arc::new(Counting::default());
        let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_000)));
        let cached = CachedGate::new(inner.clone(), clock.clone(), Duration::from_secs(1));
        (inner, clock, cached)
    }

    fn billing() -> DestinationName {
        DestinationName::parse("billing").unwrap()
    }

    #[tokio::test]
    async fn a_healthy_destination_is_read_once_per_max_age_and_its_successes_not_written() {
        let (inner, clock, gate) = rig();
        let d = billing();
        for _ in 0..50 {
            assert!(gate.health(&d).await.unwrap().is_clean());
            gate.record_success(&d, clock.now()).await.unwrap();
            clock.advance(Duration::from_millis(10));
        }
        // 500 ms: one read, no write.
        assert_eq!(inner.health.load(Ordering::SeqCst), 1);
        assert_eq!(inner.successes.load(Ordering::SeqCst), 0);
        clock.advance(Duration::from_millis(600));
        gate.health(&d).await.unwrap();
        assert_eq!(
            inner.health.load(Ordering::SeqCst),
            2,
            "read again after max_age"
        );
    }

    #[tokio::test]
    async fn a_success_after_a_failure_is_written_and_a_stale_reading_is_not_trusted() {
        let (inner, clock, gate) = rig();
        let d = billing();
        let breaker = BreakerOptions::default();
        gate.health(&d).await.unwrap();
        gate.record_failure(&d, "500", breaker, clock.now())
            .await
            .unwrap();
        // The failure dropped the cached reading: the next one sees it.
        assert_eq!(gate.health(&d).await.unwrap().consecutive_failures, 1);
        gate.record_success(&d, clock.now()).await.unwrap();
        assert_eq!(inner.successes.load(Ordering::SeqCst), 1);
        assert_eq!(inner.gate.health(&d).await.unwrap().consecutive_failures, 0);
        // Another container's failure is seen once the reading is older than max_age.
        inner
            .gate
            .record_failure(&d, "503", breaker, clock.now())
            .await
            .unwrap();
        assert_eq!(gate.health(&d).await.unwrap().consecutive_failures, 0);
        clock.advance(Duration::from_millis(1_001));
        // The processor reads the health before each delivery: past max_age, afresh.
        assert_eq!(gate.health(&d).await.unwrap().consecutive_failures, 1);
        gate.record_success(&d, clock.now()).await.unwrap();
        assert_eq!(
            inner.successes.load(Ordering::SeqCst),
            2,
            "failures seen: written"
        );
    }

    #[tokio::test]
    async fn concurrent_deliveries_refresh_a_stale_reading_once() {
        let (inner, clock, gate) = rig();
        let d = billing();
        gate.health(&d).await.unwrap();
        assert_eq!(inner.health.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_millis(1_001));
        let readings = futures::future::join_all((0..10).map(|_| gate.health(&d))).await;
        assert!(readings.iter().all(Result::is_ok));
        assert_eq!(
            inner.health.load(Ordering::SeqCst),
            2,
            "one refresh for ten concurrent deliveries"
        );
    }

    #[tokio::test]
    async fn a_full_window_is_remembered_until_it_ends() {
        let (inner, clock, gate) = rig();
        let d = billing();
        let limit: RateLimit = "2/s".parse().unwrap();
        let now = clock.now();
        for _ in 0..2 {
            assert_eq!(
                gate.take_rate(&d, limit, now).await.unwrap(),
                RateDecision::Admit
            );
        }
        let next = now.plus(Duration::from_secs(1));
        for _ in 0..5 {
            assert_eq!(
                gate.take_rate(&d, limit, now).await.unwrap(),
                RateDecision::WaitUntil(next)
            );
        }
        assert_eq!(inner.rates.load(Ordering::SeqCst), 3);
        // Another limit is not the full one; the next window admits again.
        let other: RateLimit = "3/s".parse().unwrap();
        assert_eq!(
            gate.take_rate(&d, other, now).await.unwrap(),
            RateDecision::Admit
        );
        assert_eq!(
            gate.take_rate(&d, limit, next).await.unwrap(),
            RateDecision::Admit
        );
        assert_eq!(inner.rates.load(Ordering::SeqCst), 5);
    }
}
