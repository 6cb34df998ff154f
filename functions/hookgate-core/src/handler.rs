//! Handlers: user code that does something with an event, and the registry that routes each
//! event to one by `(source, type)`.
//!
//! ```
//! use hookgate_core::handler::{Handlers, HandlerError};
//! use hookgate_core::Envelope;
//!
//! let handlers = Handlers::new()
//!     .on("github", "push", |event: Envelope| async move {
//!         if event.body.is_empty() {
//!             return Err(HandlerError::permanent("empty push"));
//!         }
//!         Ok(())
//!     })
//!     .on("stripe", "charge.*", |_event: Envelope| async { Ok(()) });
//! ```
//!
//! Patterns are an exact name, a prefix ending in `*`, or `*` alone. The most specific match
//! wins (source before type); an event nothing matches goes to the built-in [`LogHandler`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::info;

use crate::envelope::Envelope;

/// Where a handler delivered an event, recorded with the attempt (the forwarding handler sets
/// it; the status API shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The destination, without its query string (which may carry credentials).
    pub url: String,
    /// The HTTP status the destination answered, if it answered.
    pub status_code: Option<u16>,
}

/// A handler's success, and what it did that is worth recording.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handled {
    /// The delivery the handler made, if it called out.
    pub delivery: Option<Delivery>,
}

impl From<()> for Handled {
    fn from((): ()) -> Self {
        Self::default()
    }
}

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
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            ..Self::retry(message)
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

impl std::error::Error for HandlerError {}

/// Something that processes events.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Processes one event. May be called more than once for the same event only if an earlier
    /// call did not succeed.
    async fn handle(&self, event: Envelope) -> Result<Handled, HandlerError>;
}

/// Any `async` closure taking the event and returning `Result<(), HandlerError>` is a handler.
#[async_trait]
impl<F, Fut> Handler for F
where
    F: Fn(Envelope) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    async fn handle(&self, event: Envelope) -> Result<Handled, HandlerError> {
        self(event).await.map(Into::into)
    }
}

/// The built-in handler: logs the event and succeeds.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogHandler;

#[async_trait]
impl Handler for LogHandler {
    async fn handle(&self, event: Envelope) -> Result<Handled, HandlerError> {
        info!(
            event_id = %event.event_id,
            source = %event.source,
            r#type = %event.event_type,
            bytes = event.body.len(),
            "event processed by the log handler"
        );
        Ok(Handled::default())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Any,
    Prefix(String),
    Exact(String),
}

impl Pattern {
    fn parse(s: &str) -> Self {
        match s.strip_suffix('*') {
            Some("") => Pattern::Any,
            Some(prefix) => Pattern::Prefix(prefix.to_owned()),
            None => Pattern::Exact(s.to_owned()),
        }
    }

    /// `None` if it does not match; otherwise how specific the match is.
    fn specificity(&self, s: &str) -> Option<usize> {
        match self {
            Pattern::Any => Some(0),
            Pattern::Prefix(p) => s.starts_with(p.as_str()).then_some(1 + p.len()),
            Pattern::Exact(e) => (e == s).then_some(usize::MAX),
        }
    }
}

#[derive(Clone)]
struct Route {
    source: Pattern,
    event_type: Pattern,
    handler: Arc<dyn Handler>,
}

/// The handler registry.
#[derive(Clone)]
pub struct Handlers {
    routes: Arc<Vec<Route>>,
    fallback: Arc<dyn Handler>,
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.routes.iter().map(|r| (&r.source, &r.event_type)))
            .finish()
    }
}

impl Default for Handlers {
    fn default() -> Self {
        Self::new()
    }
}

impl Handlers {
    /// A registry with no routes: everything goes to [`LogHandler`].
    pub fn new() -> Self {
        Self {
            routes: Arc::new(Vec::new()),
            fallback: Arc::new(LogHandler),
        }
    }

    /// Routes events of `source` and `event_type` (patterns) to `handler`.
    pub fn on(mut self, source: &str, event_type: &str, handler: impl Handler + 'static) -> Self {
        let route = Route {
            source: Pattern::parse(source),
            event_type: Pattern::parse(event_type),
            handler: Arc::new(handler),
        };
        Arc::make_mut(&mut self.routes).push(route);
        self
    }

    /// The handler for an event of `source` and `event_type`.
    pub fn find(&self, source: &str, event_type: &str) -> Arc<dyn Handler> {
        self.routes
            .iter()
            .filter_map(|r| {
                let s = r.source.specificity(source)?;
                let t = r.event_type.specificity(event_type)?;
                Some(((s, t), r))
            })
            // Later routes lose ties: the first registered wins.
            .rev()
            .max_by_key(|(score, _)| *score)
            .map_or_else(|| self.fallback.clone(), |(_, r)| r.handler.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str);

    #[async_trait]
    impl Handler for Named {
        async fn handle(&self, _event: Envelope) -> Result<Handled, HandlerError> {
            Err(HandlerError::retry(self.0))
        }
    }

    async fn which(h: &Handlers, source: &str, event_type: &str) -> String {
        let event = Envelope {
            event_id: crate::EventId::parse("x").unwrap(),
            source: crate::SourceName::parse("s").unwrap(),
            event_type: String::new(),
            received_at: crate::Timestamp::from_secs(0),
            headers: Default::default(),
            body: Default::default(),
        };
        match h.find(source, event_type).handle(event).await {
            Ok(_) => "log".into(),
            Err(e) => e.message,
        }
    }

    #[tokio::test]
    async fn most_specific_route_wins() {
        let h = Handlers::new()
            .on("*", "*", Named("any"))
            .on("github", "*", Named("github-any"))
            .on("github", "push", Named("github-push"))
            .on("*", "push", Named("any-push"))
            .on("stripe", "charge.*", Named("stripe-charge"))
            .on("stripe", "charge.refund*", Named("stripe-refund"))
            .on("github", "push", Named("github-push-again"));
        assert_eq!(which(&h, "github", "push").await, "github-push");
        assert_eq!(which(&h, "github", "issues").await, "github-any");
        assert_eq!(which(&h, "gitlab", "push").await, "any-push");
        assert_eq!(
            which(&h, "stripe", "charge.succeeded").await,
            "stripe-charge"
        );
        assert_eq!(
            which(&h, "stripe", "charge.refunded").await,
            "stripe-refund"
        );
        assert_eq!(which(&h, "stripe", "invoice.paid").await, "any");
        assert_eq!(which(&Handlers::new(), "x", "y").await, "log");
    }

    #[test]
    fn handler_errors_say_what_comes_next() {
        assert!(!HandlerError::retry("x").permanent);
        assert!(HandlerError::permanent("x").permanent);
        assert_eq!(
            HandlerError::retry_after("x", Duration::from_secs(3)).retry_after,
            Some(Duration::from_secs(3))
        );
    }
}
