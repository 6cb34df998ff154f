//! How a handler says it did not succeed, and what should happen next.
//!
//! `?` works on any error: an error that is not a [`HandlerError`] becomes a retryable one
//! with its message (and its causes). Make the intent explicit when it is not "try again":
//! [`HandlerError::permanent`] (or `.permanent()` on a `Result`) goes to the DLQ at once,
//! [`HandlerError::retry_after`] (or `.retry_after(d)`) waits at least `d`.
//!
//! `HandlerError` deliberately does not implement `std::error::Error`: that is what lets every
//! error convert into it with `?` (as `anyhow::Error` does).

use std::fmt;
use std::time::Duration;

use super::Delivery;

/// Why a handler did not succeed, and what should happen next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    /// What went wrong (recorded in the ledger, truncated).
    pub message: String,
    /// Retrying cannot help (bad payload, a 4xx from downstream): dead-letter at once.
    pub permanent: bool,
    /// Retry no sooner than this.
    pub retry_after: Option<Duration>,
    /// The delivery attempted, if the handler called out.
    pub delivery: Option<Delivery>,
}

impl HandlerError {
    /// A transient failure: the message will be delivered again.
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
            retry_after: None,
            delivery: None,
        }
    }

    /// A transient failure that should be retried after `delay`.
    pub fn retry_after(message: impl Into<String>, delay: Duration) -> Self {
        Self {
            retry_after: Some(delay),
            ..Self::retry(message)
        }
    }

    /// A failure retrying cannot fix.
    pub fn permanent(message: impl fmt::Display) -> Self {
        Self {
            permanent: true,
            ..Self::retry(message.to_string())
        }
    }

    /// The same error, recording the delivery that was attempted.
    pub fn with_delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = Some(delivery);
        self
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Any error converts with `?`: retryable, its message followed by its causes.
impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut cause = error.source();
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        Self::retry(message)
    }
}

/// Says what a failed `Result` means for the event, in place: `call().await.permanent()?`.
pub trait ResultExt<T> {
    /// On error: a permanent failure (straight to the DLQ).
    fn permanent(self) -> Result<T, HandlerError>;
    /// On error: retried no sooner than `delay`.
    fn retry_after(self, delay: Duration) -> Result<T, HandlerError>;
}

impl<T, E: fmt::Display> ResultExt<T> for Result<T, E> {
    fn permanent(self) -> Result<T, HandlerError> {
        self.map_err(HandlerError::permanent)
    }

    fn retry_after(self, delay: Duration) -> Result<T, HandlerError> {
        self.map_err(|e| HandlerError::retry_after(e.to_string(), delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("billing said no")]
    struct Billing(#[source] std::io::Error);

    fn call() -> Result<(), Billing> {
        Err(Billing(std::io::Error::other("connection reset")))
    }

    fn handler() -> Result<(), HandlerError> {
        call()?;
        Ok(())
    }

    #[test]
    fn any_error_converts_with_question_mark_keeping_its_causes() {
        let e = handler().unwrap_err();
        assert!(!e.permanent);
        assert_eq!(e.message, "billing said no: connection reset");
        assert_eq!(e.retry_after, None);
    }

    #[test]
    fn intent_is_explicit() {
        let e = call().permanent().unwrap_err();
        assert!(e.permanent);
        assert_eq!(e.message, "billing said no");
        let e = call().retry_after(Duration::from_secs(3)).unwrap_err();
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
        assert!(!HandlerError::retry("x").permanent);
        assert!(HandlerError::permanent("x").permanent);
    }
}
