//! Retry delays: a configured schedule, or exponential in the receive count, capped, with full
//! jitter.
//!
//! Without a schedule a failed message is retried after
//! `random(0, min(cap, base · 2^(receive_count-1)))` (the "full jitter" of AWS's backoff study):
//! retries of many failed messages spread out instead of arriving together; nothing exceeds
//! SQS's 12 h visibility limit. With a schedule (`retry_schedule`), the delay after the n-th
//! receive is the schedule's n-th entry (its last one for any receive beyond it), as exactly as
//! the queue can keep it — the point of a schedule is a horizon the provider's customers can
//! rely on. A handler's own `RetryAfter` wins over either.

use std::time::Duration;

use rand::Rng;

use crate::queue::MAX_VISIBILITY_TIMEOUT;

/// The retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay ceiling after the first receive.
    pub base: Duration,
    /// Largest delay.
    pub cap: Duration,
}

impl Backoff {
    /// The ceiling for a message received `receive_count` times: `min(cap, base · 2^(n-1))`.
    pub fn ceiling(&self, receive_count: u32) -> Duration {
        let exponent = receive_count.saturating_sub(1).min(40);
        let grown = self.base.saturating_mul(1u32 << exponent.min(31));
        let grown = if exponent > 31 { self.cap } else { grown };
        grown.min(self.cap).min(MAX_VISIBILITY_TIMEOUT)
    }

    /// The delay before the next delivery: `retry_after` if the handler asked for one (capped
    /// at 12 h), else a uniformly random delay up to [`Backoff::ceiling`].
    pub fn delay(
        &self,
        receive_count: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        if let Some(d) = retry_after {
            return d.min(MAX_VISIBILITY_TIMEOUT);
        }
        let ceiling = u64::try_from(self.ceiling(receive_count).as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rng.random_range(0..=ceiling))
    }
}

/// How the processor spaces retries: [`Backoff`], or a fixed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryPolicy {
    /// Exponential, capped, full jitter.
    Backoff(Backoff),
    /// The delay after the n-th receive is entry n-1 (the last entry beyond the end). Never
    /// empty (the configuration refuses an empty schedule).
    Schedule(Vec<Duration>),
}

impl RetryPolicy {
    /// The delay before the next delivery of a message received `receive_count` times (counted
    /// across re-sent copies): the handler's `retry_after` if it asked for one (at most 12 h),
    /// else the schedule's entry or the backoff's jittered delay.
    pub fn delay(
        &self,
        receive_count: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        match self {
            RetryPolicy::Backoff(backoff) => backoff.delay(receive_count, retry_after, rng),
            RetryPolicy::Schedule(_) if retry_after.is_some() => {
                retry_after.unwrap_or_default().min(MAX_VISIBILITY_TIMEOUT)
            }
            RetryPolicy::Schedule(delays) => {
                let index = usize::try_from(receive_count.saturating_sub(1)).unwrap_or(usize::MAX);
                delays
                    .get(index)
                    .or(delays.last())
                    .copied()
                    .unwrap_or_default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const B: Backoff = Backoff {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(60),
    };

    #[test]
    fn ceiling_doubles_per_receive_up_to_the_cap() {
        let ceilings: Vec<u64> = (1..=8).map(|n| B.ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(B.ceiling(0), Duration::from_secs(1));
        assert_eq!(B.ceiling(u32::MAX), Duration::from_secs(60));
        let huge = Backoff {
            base: Duration::from_secs(3600),
            cap: Duration::from_secs(86_400),
        };
        assert_eq!(
            huge.ceiling(10),
            MAX_VISIBILITY_TIMEOUT,
            "never beyond SQS's 12 h"
        );
    }

    #[test]
    fn jitter_spreads_delays_over_the_whole_range() {
        let mut rng = StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..2000).map(|_| B.delay(4, None, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(8)));
        let low = delays
            .iter()
            .filter(|d| **d < Duration::from_secs(2))
            .count();
        let high = delays
            .iter()
            .filter(|d| **d > Duration::from_secs(6))
            .count();
        // Uniform over [0, 8 s]: about a quarter in each end.
        assert!((350..650).contains(&low), "{low}");
        assert!((350..650).contains(&high), "{high}");
    }

    #[test]
    fn a_schedule_gives_the_nth_delay_and_repeats_its_last() {
        let secs = |s| Duration::from_secs(s);
        let policy = RetryPolicy::Schedule(vec![secs(5), secs(300), secs(36_000)]);
        let mut rng = StdRng::seed_from_u64(3);
        let delays: Vec<u64> = (1..=5)
            .map(|n| policy.delay(n, None, &mut rng).as_secs())
            .collect();
        assert_eq!(delays, [5, 300, 36_000, 36_000, 36_000]);
        // Receive 0 (never happens) reads as the first.
        assert_eq!(policy.delay(0, None, &mut rng), secs(5));
        // Longer than SQS's visibility limit: a schedule is kept exactly (it is re-sent).
        let long = RetryPolicy::Schedule(vec![secs(100_000)]);
        assert_eq!(long.delay(1, None, &mut rng), secs(100_000));
        assert_eq!(policy.delay(3, Some(secs(7)), &mut rng), secs(7));
        let backoff = RetryPolicy::Backoff(B);
        assert!(backoff.delay(1, None, &mut rng) <= secs(1));
    }

    #[test]
    fn retry_after_wins_and_is_capped() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            B.delay(9, Some(Duration::from_secs(5)), &mut rng),
            Duration::from_secs(5)
        );
        assert_eq!(
            B.delay(1, Some(Duration::from_secs(100_000)), &mut rng),
            MAX_VISIBILITY_TIMEOUT
        );
    }
}
