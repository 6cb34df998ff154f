//! Handlers: your code that does something with an event, and the registry that routes each
//! event to one by `(source, type)`.
//!
//! A handler gets the event — its body as a type of yours, parsed from JSON, or the raw
//! [`Envelope`] — and a [`Context`] (event id, attempt, receive count, time left…), and
//! returns `Ok(())`, or an error that says what comes next: `?` on any error retries (with
//! backoff), [`HandlerError::permanent`] sends the event to the DLQ at once,
//! [`HandlerError::retry_after`] waits at least that long. A body that does not parse as the
//! route's type is a permanent failure with the parse error recorded, never a panic.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use hookgate_core::handler::{Context, HandlerError, Handlers, ResultExt};
//!
//! #[derive(serde::Deserialize)]
//! struct Push {
//!     #[serde(rename = "ref")]
//!     git_ref: String,
//! }
//!
//! struct Deployer {
//!     branch: String,
//! }
//!
//! async fn deploy(app: Arc<Deployer>, push: Push, cx: Context) -> Result<(), HandlerError> {
//!     if push.git_ref != format!("refs/heads/{}", app.branch) {
//!         return Ok(()); // not ours: done
//!     }
//!     // `?` retries on any error; `.permanent()` says retrying cannot help.
//!     let delay: u64 = "5".parse().permanent()?;
//!     tracing::info!(event_id = %cx.event_id, attempt = cx.attempt, delay, "deploying");
//!     Ok(())
//! }
//!
//! let handlers = Handlers::with_state(Deployer { branch: "main".into() })
//!     .on_json("github", "push", deploy)
//!     .timeout(Duration::from_secs(10))
//!     .into_handlers()
//!     .on_json("stripe", "invoice.*", |invoice: serde_json::Value, cx: Context| async move {
//!         tracing::info!(event_id = %cx.event_id, id = %invoice["id"], "invoice");
//!         Ok(())
//!     });
//! ```
//!
//! Patterns are an exact name, a prefix ending in `*`, or `*` alone. The most specific match
//! wins (source before type; the first registered of equals); an event nothing matches goes
//! to the built-in [`LogHandler`]. Unit-test handlers with [`crate::testing`].

mod context;
mod error;
mod typed;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::info;

pub use context::Context;
pub use error::{HandlerError, ResultExt};

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

/// Something that processes events.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Processes one event. May be called more than once for the same event only if an earlier
    /// call did not succeed (or the event was replayed).
    async fn handle(&self, event: Envelope, cx: &Context) -> Result<Handled, HandlerError>;
}

/// Any `async` closure taking the raw event and returning `Result<(), HandlerError>` is a
/// handler (it does not see the [`Context`]; [`Handlers::on_event`] gives it).
#[async_trait]
impl<F, Fut> Handler for F
where
    F: Fn(Envelope) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    async fn handle(&self, event: Envelope, _cx: &Context) -> Result<Handled, HandlerError> {
        self(event).await.map(Into::into)
    }
}

/// Runs `handler` on `event` as the processor does: under `budget` (a handler that overruns is
/// cancelled) and with its panic caught — either fails this event only, to be retried.
///
/// No task per call: the handler runs in the caller's own future (spawning a task cost about
/// as much as the rest of a record's work together, see `benches/processor.rs`).
pub async fn invoke(
    handler: &dyn Handler,
    event: Envelope,
    cx: &Context,
    budget: Duration,
) -> Result<Handled, HandlerError> {
    use futures::FutureExt;
    let call = std::panic::AssertUnwindSafe(handler.handle(event, cx)).catch_unwind();
    match tokio::time::timeout(budget, call).await {
        Ok(Ok(result)) => result,
        Ok(Err(_panic)) => Err(HandlerError::retry("handler panicked")),
        Err(_) => Err(HandlerError::retry(format!(
            "handler timed out after {} ms",
            budget.as_millis()
        ))),
    }
}

/// The built-in handler: logs the event and succeeds.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogHandler;

#[async_trait]
impl Handler for LogHandler {
    async fn handle(&self, event: Envelope, _cx: &Context) -> Result<Handled, HandlerError> {
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
    timeout: Option<Duration>,
}

/// The handler chosen for an event, and how long it may run.
#[derive(Clone)]
pub struct Chosen {
    /// The handler.
    pub handler: Arc<dyn Handler>,
    /// The route's own timeout, if it set one (else the processor's `handler_timeout_secs`).
    pub timeout: Option<Duration>,
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

    /// A registry whose handlers share `state`: each call gets it as an `Arc<S>` (one
    /// reference-count increment, never a copy). See [`Stateful`].
    pub fn with_state<S: Send + Sync + 'static>(state: S) -> Stateful<S> {
        Stateful {
            state: Arc::new(state),
            handlers: Self::new(),
        }
    }

    /// Routes events of `source` and `event_type` (patterns) to `handler`: a closure taking the
    /// raw [`Envelope`], or any [`Handler`].
    pub fn on(self, source: &str, event_type: &str, handler: impl Handler + 'static) -> Self {
        self.route(source, event_type, Arc::new(handler))
    }

    /// Routes events to `handler(event, cx)`: the raw [`Envelope`] and its [`Context`].
    pub fn on_event<F, Fut>(self, source: &str, event_type: &str, handler: F) -> Self
    where
        F: Fn(Envelope, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.route(source, event_type, Arc::new(typed::Raw(handler)))
    }

    /// Routes events to `handler(body, cx)`, the body parsed from JSON as a `T`. A body that
    /// does not parse as `T` fails the event permanently, with the reason recorded.
    pub fn on_json<T, F, Fut>(self, source: &str, event_type: &str, handler: F) -> Self
    where
        T: serde::de::DeserializeOwned + Send + 'static,
        F: Fn(T, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.route(source, event_type, Arc::new(typed::Json::new(handler)))
    }

    /// Gives the route registered last its own timeout (at most the processor's
    /// `handler_timeout_secs`, and the time left before the invocation's deadline).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        if let Some(route) = Arc::make_mut(&mut self.routes).last_mut() {
            route.timeout = Some(timeout);
        }
        self
    }

    fn route(mut self, source: &str, event_type: &str, handler: Arc<dyn Handler>) -> Self {
        let route = Route {
            source: Pattern::parse(source),
            event_type: Pattern::parse(event_type),
            handler,
            timeout: None,
        };
        Arc::make_mut(&mut self.routes).push(route);
        self
    }

    /// The handler for an event of `source` and `event_type`.
    pub fn find(&self, source: &str, event_type: &str) -> Arc<dyn Handler> {
        self.choose(source, event_type).handler
    }

    /// Whether a registered route (not the fallback) takes events of `source` and `event_type`:
    /// such a route wins over the configuration's `[[routes]]` for them.
    pub fn has_route(&self, source: &str, event_type: &str) -> bool {
        self.routes.iter().any(|r| {
            r.source.specificity(source).is_some() && r.event_type.specificity(event_type).is_some()
        })
    }

    /// The handler for an event of `source` and `event_type`, and its route's timeout.
    pub fn choose(&self, source: &str, event_type: &str) -> Chosen {
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
            .map_or_else(
                || Chosen {
                    handler: self.fallback.clone(),
                    timeout: None,
                },
                |(_, r)| Chosen {
                    handler: r.handler.clone(),
                    timeout: r.timeout,
                },
            )
    }
}

/// Routes whose handlers share a state `S` (a client, a connection pool, configuration): the
/// same methods as [`Handlers`], with the state as the handler's first argument. Turn it into
/// [`Handlers`] with [`Stateful::into_handlers`] (or `.into()`); further routes there may use
/// another state.
pub struct Stateful<S> {
    state: Arc<S>,
    handlers: Handlers,
}

impl<S: Send + Sync + 'static> Stateful<S> {
    /// Routes events to `handler(state, event)`: the raw [`Envelope`] and its [`Context`].
    pub fn on_event<F, Fut>(mut self, source: &str, event_type: &str, handler: F) -> Self
    where
        F: Fn(Arc<S>, Envelope, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let state = self.state.clone();
        self.handlers = self.handlers.on_event(source, event_type, move |e, cx| {
            handler(state.clone(), e, cx)
        });
        self
    }

    /// Routes events to `handler(state, body, cx)`, the body parsed from JSON as a `T` (see
    /// [`Handlers::on_json`]).
    pub fn on_json<T, F, Fut>(mut self, source: &str, event_type: &str, handler: F) -> Self
    where
        T: serde::de::DeserializeOwned + Send + 'static,
        F: Fn(Arc<S>, T, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let state = self.state.clone();
        self.handlers = self
            .handlers
            .on_json(source, event_type, move |body: T, cx| {
                handler(state.clone(), body, cx)
            });
        self
    }

    /// Gives the route registered last its own timeout (see [`Handlers::timeout`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.handlers = self.handlers.timeout(timeout);
        self
    }

    /// The routes, as a [`Handlers`].
    pub fn into_handlers(self) -> Handlers {
        self.handlers
    }
}

impl<S> From<Stateful<S>> for Handlers {
    fn from(s: Stateful<S>) -> Self {
        s.handlers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str);

    #[async_trait]
    impl Handler for Named {
        async fn handle(&self, _event: Envelope, _cx: &Context) -> Result<Handled, HandlerError> {
            Err(HandlerError::retry(self.0))
        }
    }

    fn event(body: &[u8]) -> Envelope {
        Envelope {
            event_id: crate::EventId::parse("s:x").unwrap(),
            source: crate::SourceName::parse("s").unwrap(),
            event_type: String::new(),
            received_at: crate::Timestamp::from_secs(0),
            headers: Default::default(),
            body: bytes::Bytes::copy_from_slice(body),
        }
    }

    async fn which(h: &Handlers, source: &str, event_type: &str) -> String {
        let e = event(b"");
        let cx = Context::first_attempt(&e, Duration::from_secs(1));
        match h.find(source, event_type).handle(e, &cx).await {
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

    #[derive(serde::Deserialize)]
    struct Order {
        id: u64,
    }

    #[tokio::test]
    async fn typed_routes_parse_the_body_and_see_the_context() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let h = Handlers::new().on_json("s", "*", move |order: Order, cx: Context| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push((order.id, cx.attempt));
                Ok(())
            }
        });
        let e = event(br#"{"id": 42, "extra": true}"#);
        let mut cx = Context::first_attempt(&e, Duration::from_secs(1));
        cx.attempt = 3;
        assert!(h.find("s", "t").handle(e, &cx).await.is_ok());
        assert_eq!(*seen.lock().unwrap(), [(42, 3)]);

        // A body that is not an `Order`: permanent, the reason recorded; nothing ran.
        for bad in [&br#"{"id": "x"}"#[..], b"not json", b""] {
            let e = event(bad);
            let err = h.find("s", "t").handle(e, &cx).await.unwrap_err();
            assert!(err.permanent, "{err:?}");
            assert!(err.message.contains("Order"), "{}", err.message);
        }
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn state_is_shared_and_timeouts_belong_to_their_route() {
        struct Counter(std::sync::atomic::AtomicU32);
        let h: Handlers = Handlers::with_state(Counter(Default::default()))
            .on_event("s", "a", |c: Arc<Counter>, _e, _cx| async move {
                c.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
            .timeout(Duration::from_secs(2))
            .on_json(
                "s",
                "b",
                |c: Arc<Counter>, _v: serde_json::Value, _cx| async move {
                    Err(HandlerError::retry(format!(
                        "seen {}",
                        c.0.load(std::sync::atomic::Ordering::SeqCst)
                    )))
                },
            )
            .into();
        let e = event(b"{}");
        let cx = Context::first_attempt(&e, Duration::from_secs(1));
        h.find("s", "a").handle(e.clone(), &cx).await.unwrap();
        h.find("s", "a").handle(e.clone(), &cx).await.unwrap();
        let err = h.find("s", "b").handle(e, &cx).await.unwrap_err();
        assert_eq!(err.message, "seen 2");
        assert_eq!(h.choose("s", "a").timeout, Some(Duration::from_secs(2)));
        assert_eq!(h.choose("s", "b").timeout, None);
        assert_eq!(h.choose("x", "y").timeout, None);
    }
}
