//! The SDK's retry and timeout budget: how long one DynamoDB or SQS call may take, retries
//! included, so that the receiver always answers inside API Gateway's 30 s.
//!
//! The SDK's defaults bound neither an attempt nor an operation: a stalled connection, or a
//! throttled table, could hold a webhook request until API Gateway gives up with a bare `504`
//! — and the claim would stay `received` for `claim_timeout_secs`, answering the provider's
//! retries `409`. With this budget a call that cannot succeed fails in time, and the receiver
//! answers `503 ledger_unavailable` / `queue_unavailable` itself.
//!
//! | setting | value | why |
//! |---|---|---|
//! | retry mode | standard | retries throttling, 5xx, timeouts and connection errors, with a retry quota (token bucket) that stops retry storms |
//! | attempts | 3 | the first try and two retries: enough to ride out a throttled partition or a dropped connection |
//! | backoff | full jitter, 250 ms, then 500 ms at most | short: the provider retries anyway; the request must not wait long |
//! | connect timeout | 1 s | endpoints in the same region connect in milliseconds |
//! | attempt timeout | 2 s | single-item writes and `SendMessage` answer in tens of milliseconds |
//! | operation timeout | 7 s | ≥ 3 × 2 s + 0.75 s of backoff: the bound on one call, retries included |
//!
//! One call takes at most 3 × 2 s + 0.75 s = 6.75 s ([`worst_case_call`]). The receiver
//! makes at most [`RECEIVER_CALLS_PER_REQUEST`] calls in a row (claim, archive the body of a
//! claim-checked event, enqueue, then release the claim if the enqueue failed), so a warm request has
//! its answer within 27 s; a cold start adds the configuration read, on a budget of its own
//! ([`config_read_timeouts`]: 2 attempts of 0.6 s, 1.5 s in all): 28.5 s, inside API Gateway's
//! 30 s. The receiver function's timeout (the template's `ReceiverTimeout`, 29 s by default)
//! must stay above the warm figure, or Lambda cuts the receiver off before its own `503`.
//! [`worst_case_request`] computes it; unit tests hold both bounds.
//!
//! SQS `ReceiveMessage` (the local stack's poller) long-polls for up to 20 s: its attempt
//! timeout is the wait plus [`ATTEMPT_TIMEOUT`] ([`long_poll_timeouts`]).

use std::time::Duration;

use aws_config::retry::{RetryConfig, RetryMode};
use aws_config::timeout::TimeoutConfig;

/// Tries of one call, the first included.
pub const MAX_ATTEMPTS: u32 = 3;
/// Ceiling of the first retry's (jittered) backoff; each later one doubles, up to
/// [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Ceiling of any retry's backoff.
pub const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait for a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for one attempt, connecting included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for one call, every attempt and backoff included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(7);

/// AWS calls the receiver makes, one after another, for one request at most: `PutItem`
/// (claim), `PutObject` (a body over the claim-check size), `SendMessage`, then `DeleteItem`
/// (release) if the enqueue failed.
pub const RECEIVER_CALLS_PER_REQUEST: u32 = 4;
/// Tries of the cold start's configuration read.
pub const CONFIG_READ_ATTEMPTS: u32 = 2;
/// Longest wait for one try of the configuration read (Secrets Manager answers in tens of
/// milliseconds in-region; a cold start that cannot read it fails, and the provider retries).
pub const CONFIG_READ_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(600);
/// Longest wait for the configuration read, both tries and the backoff included.
pub const CONFIG_READ_TIMEOUT: Duration = Duration::from_millis(1_500);
/// API Gateway's longest integration timeout (HTTP API).
pub const API_GATEWAY_TIMEOUT: Duration = Duration::from_secs(30);

/// The retry policy: standard mode, [`MAX_ATTEMPTS`], jittered backoff up to
/// [`MAX_BACKOFF`].
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_retry_mode(RetryMode::Standard)
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF)
}

/// The timeouts: connect, attempt and operation.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// The timeouts of a long poll waiting up to `wait`: each attempt may take the wait on top of
/// [`ATTEMPT_TIMEOUT`].
pub fn long_poll_timeouts(wait: Duration) -> TimeoutConfig {
    let attempt = wait + ATTEMPT_TIMEOUT;
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(attempt)
        .operation_timeout(attempt * MAX_ATTEMPTS + backoff_ceiling())
        .build()
}

/// Applies the budget to an SDK configuration being loaded.
pub fn apply(loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
    loader
        .retry_config(retry_config())
        .timeout_config(timeout_config())
}

/// The most the retries of one call can sleep: each backoff is at most
/// `min(INITIAL_BACKOFF × 2^(retry − 1), MAX_BACKOFF)` (full jitter only shortens it).
pub fn backoff_ceiling() -> Duration {
    (1..MAX_ATTEMPTS)
        .map(|retry| (INITIAL_BACKOFF * 2u32.pow(retry - 1)).min(MAX_BACKOFF))
        .sum()
}

/// The longest one call can take: every attempt timing out and every backoff at its ceiling,
/// cut by the operation timeout.
pub fn worst_case_call() -> Duration {
    (ATTEMPT_TIMEOUT * MAX_ATTEMPTS + backoff_ceiling()).min(OPERATION_TIMEOUT)
}

/// The longest a webhook request can wait on AWS: the receiver's calls in a row, plus a cold
/// start's.
pub fn worst_case_request() -> Duration {
    worst_case_call() * RECEIVER_CALLS_PER_REQUEST + CONFIG_READ_TIMEOUT
}

/// The configuration read's own, shorter budget: a cold start is on the request's clock.
pub fn config_read_timeouts() -> (RetryConfig, TimeoutConfig) {
    (
        retry_config().with_max_attempts(CONFIG_READ_ATTEMPTS),
        TimeoutConfig::builder()
            .connect_timeout(CONFIG_READ_ATTEMPT_TIMEOUT)
            .operation_attempt_timeout(CONFIG_READ_ATTEMPT_TIMEOUT)
            .operation_timeout(CONFIG_READ_TIMEOUT)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_case_request_answers_inside_api_gateways_30_seconds() {
        assert_eq!(backoff_ceiling(), Duration::from_millis(750));
        // Every attempt fits in the operation timeout: it cuts nothing the policy allows.
        assert!(ATTEMPT_TIMEOUT * MAX_ATTEMPTS + backoff_ceiling() <= OPERATION_TIMEOUT);
        assert_eq!(worst_case_call(), Duration::from_millis(6_750));
        assert_eq!(worst_case_request(), Duration::from_millis(28_500));
        assert!(worst_case_request() < API_GATEWAY_TIMEOUT);
        // Even with the operation timeouts as the only bound.
        assert!(
            OPERATION_TIMEOUT * RECEIVER_CALLS_PER_REQUEST + CONFIG_READ_TIMEOUT
                < API_GATEWAY_TIMEOUT
        );
        // The configuration read's tries fit its own bound.
        assert!(
            CONFIG_READ_ATTEMPT_TIMEOUT * CONFIG_READ_ATTEMPTS + INITIAL_BACKOFF
                <= CONFIG_READ_TIMEOUT
        );
    }

    #[test]
    fn the_receiver_function_outlives_its_worst_case_request() {
        // The function's timeout (the template's ReceiverTimeout default) must not cut the
        // receiver off before its own 503: a timed-out invocation leaves its claim behind.
        let template = include_str!("../../../template.yaml");
        let default = template
            .split("\n  ReceiverTimeout:")
            .nth(1)
            .and_then(|rest| {
                rest.lines()
                    .find(|l| l.trim_start().starts_with("Default:"))
            })
            .and_then(|l| {
                l.trim()
                    .trim_start_matches("Default:")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .expect("template.yaml has a ReceiverTimeout parameter with a Default");
        // And the same for `cargo lambda deploy` (the receiver crate's deploy metadata).
        let deploy = include_str!("../../receiver/Cargo.toml")
            .lines()
            .find_map(|l| l.strip_prefix("timeout = "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("the receiver crate has a deploy timeout");
        let warm = worst_case_call() * RECEIVER_CALLS_PER_REQUEST;
        for secs in [default, deploy] {
            let timeout = Duration::from_secs(secs);
            assert!(
                timeout > warm,
                "receiver timeout {secs} s < worst case {warm:?}"
            );
            assert!(timeout < API_GATEWAY_TIMEOUT);
        }
    }

    #[test]
    fn the_configs_carry_the_budget() {
        let retry = retry_config();
        assert_eq!(retry.mode(), RetryMode::Standard);
        assert_eq!(retry.max_attempts(), MAX_ATTEMPTS);
        assert_eq!(retry.initial_backoff(), INITIAL_BACKOFF);
        assert_eq!(retry.max_backoff(), MAX_BACKOFF);
        let timeouts = timeout_config();
        assert_eq!(timeouts.connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(timeouts.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
        assert_eq!(timeouts.operation_timeout(), Some(OPERATION_TIMEOUT));
        let poll = long_poll_timeouts(Duration::from_secs(20));
        assert_eq!(
            poll.operation_attempt_timeout(),
            Some(Duration::from_secs(22))
        );
        assert_eq!(
            poll.operation_timeout(),
            Some(Duration::from_millis(66_750))
        );
    }
}
