//! Unit-test your handlers: build an event as the processor would hand it over — synthetic, or
//! from a request signed the provider's way and accepted by the real receiver core — and run one
//! handler or your whole [`Handlers`] routing on it, with no AWS and no HTTP.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use hookgate_core::handler::{Context, Handlers, HandlerError};
//! use hookgate_core::testing;
//!
//! #[derive(serde::Deserialize)]
//! struct Invoice { id: String, amount_due: u64 }
//!
//! let handlers = Handlers::new().on_json(
//!     "stripe",
//!     "invoice.paid",
//!     |invoice: Invoice, _cx: Context| async move {
//!         if invoice.amount_due == 0 {
//!             return Err(HandlerError::permanent("nothing to bill"));
//!         }
//!         Ok(())
//!     },
//! );
//! let paid = testing::event("stripe", "invoice.paid")
//!     .json(&serde_json::json!({"id": "in_1", "amount_due": 1200}));
//! assert!(paid.run(&handlers).await.is_ok());
//!
//! let free = testing::event("stripe", "invoice.paid")
//!     .json(&serde_json::json!({"id": "in_2", "amount_due": 0}));
//! assert!(free.run(&handlers).await.unwrap_err().permanent);
//!
//! // A body that is not an `Invoice` fails for good, with the reason; it never panics.
//! let odd = testing::event("stripe", "invoice.paid").body("not json");
//! assert!(odd.run(&handlers).await.unwrap_err().message.contains("Invoice"));
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::envelope::{Envelope, EventId, SourceName};
use crate::handler::{invoke, Context, Handled, HandlerError, Handlers};
use crate::memory::{MemoryLedger, MemoryQueue};
use crate::queue::Queue;
use crate::receiver::{IncomingRequest, Receiver};

/// The default time a test handler may run (the processor's default `handler_timeout_secs`).
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(25);

/// An event to run handlers on, and the attempt it is.
#[derive(Debug, Clone)]
pub struct TestEvent {
    /// The event.
    pub envelope: Envelope,
    /// Its context.
    pub context: Context,
}

/// A synthetic event of `source` and `event_type`, with an empty body, on its first attempt.
///
/// # Panics
/// If `source` is not a valid source name (`[a-z0-9_-]{1,64}`): a mistake in the test.
pub fn event(source: &str, event_type: &str) -> TestEvent {
    let source = SourceName::parse(source).expect("a valid source name");
    let envelope = Envelope {
        event_id: EventId::parse(&format!("{source}:test-{}", crate::token::uuid().simple()))
            .expect("a valid id"),
        source,
        event_type: event_type.to_owned(),
        received_at: SystemClock.now(),
        headers: BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]),
        body: Bytes::new(),
    };
    TestEvent::from_envelope(envelope)
}

/// The event the receiver makes of `body` sent to `source` of `config`, signed the way that
/// source's provider signs (with `headers` added, e.g. `X-GitHub-Event`): the same id, type and
/// kept headers a deployed receiver would give it.
///
/// # Errors
/// The receiver's answer, if it did not accept the request (a bad configuration, say).
pub async fn signed(
    config: &Config,
    source: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> Result<TestEvent, crate::reply::Reply> {
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let receiver = Receiver::new(config, Arc::new(MemoryLedger::new()), queue.clone());
    let body = body.into();
    let mut map = HeaderMap::new();
    let signature = receiver.sign(source, &body).unwrap_or_default();
    for (name, value) in signature
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(headers.iter().copied())
    {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.insert(name, value);
        }
    }
    if !map.contains_key(http::header::CONTENT_TYPE) {
        map.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    let request = IncomingRequest {
        method: Method::POST,
        source: source.to_owned(),
        headers: map,
        body,
        trace_header: None,
    };
    receiver
        .accept(request)
        .await
        .map_err(crate::reply::Reply::from)?;
    let message = queue
        .receive(1, Duration::ZERO)
        .await
        .ok()
        .and_then(|mut m| m.pop())
        .ok_or_else(|| {
            crate::reply::Reply::error(
                http::StatusCode::OK,
                "not_enqueued",
                "a handshake or duplicate",
            )
        })?;
    let envelope = Envelope::from_message(&message.body).map_err(|e| {
        crate::reply::Reply::error(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "message",
            e.to_string(),
        )
    })?;
    Ok(TestEvent::from_envelope(envelope))
}

impl TestEvent {
    /// `envelope` on its first attempt.
    pub fn from_envelope(envelope: Envelope) -> Self {
        let context = Context::first_attempt(&envelope, DEFAULT_BUDGET);
        Self { envelope, context }
    }

    /// With this body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.envelope.body = body.into();
        self
    }

    /// With `value` as its JSON body.
    pub fn json(self, value: &impl serde::Serialize) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_default();
        self.body(body)
    }

    /// With a kept header (lower case name).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = name.to_ascii_lowercase();
        self.envelope.headers.insert(name.clone(), value.to_owned());
        self.context.headers.insert(name, value.to_owned());
        self
    }

    /// As attempt `attempt`, on the queue's receive `receive_count`.
    pub fn attempt(mut self, attempt: u32, receive_count: u32) -> Self {
        self.context.attempt = attempt;
        self.context.receive_count = receive_count;
        self
    }

    /// As replay number `generation`.
    pub fn replayed(mut self, generation: u64) -> Self {
        self.context.generation = generation;
        self
    }

    /// Runs the handler `handlers` routes this event to, as the processor does: under the
    /// route's timeout (or [`DEFAULT_BUDGET`]), its panic caught.
    pub async fn run(&self, handlers: &Handlers) -> Result<Handled, HandlerError> {
        let chosen = handlers.choose(self.envelope.source.as_str(), &self.envelope.event_type);
        let budget = chosen.timeout.unwrap_or(DEFAULT_BUDGET).min(DEFAULT_BUDGET);
        let mut context = self.context.clone();
        context.deadline = std::time::Instant::now() + budget;
        invoke(&*chosen.handler, self.envelope.clone(), &context, budget).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signed_event_is_the_receivers_and_routes_by_its_type() {
        let config = Config::from_toml(
            "[sources.gh]\nscheme = 'github'\nsecrets = ['testing-module-secret']\n",
        )
        .unwrap();
        let event = signed(
            &config,
            "gh",
            r#"{"ref":"refs/heads/main"}"#,
            &[("X-GitHub-Event", "push")],
        )
        .await
        .unwrap();
        assert_eq!(event.envelope.event_type, "push");
        assert!(event.envelope.event_id.as_str().starts_with("gh:"));
        assert_eq!(event.context.header("x-github-event"), Some("push"));
        let handlers = Handlers::new()
            .on_event("gh", "push", |e: Envelope, cx: Context| async move {
                assert_eq!(e.event_id, cx.event_id);
                Err(HandlerError::retry("push handled"))
            })
            .timeout(Duration::from_millis(50))
            .on_event("gh", "slow", |_e, _cx| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            })
            .timeout(Duration::from_millis(20));
        assert_eq!(
            event.run(&handlers).await.unwrap_err().message,
            "push handled"
        );
        // Under its route's timeout, as the processor runs it.
        let slow = TestEvent {
            envelope: Envelope {
                event_type: "slow".into(),
                ..event.envelope.clone()
            },
            context: event.context.clone(),
        };
        let err = slow.run(&handlers).await.unwrap_err();
        assert!(
            err.message.contains("timed out after 20 ms"),
            "{}",
            err.message
        );
        // A request the receiver refuses is the receiver's answer.
        let refused = signed(&config, "nope", "{}", &[]).await.unwrap_err();
        assert_eq!(refused.error_code(), Some("unknown_source"));
    }

    #[tokio::test]
    async fn a_panicking_handler_fails_its_event_only() {
        let handlers = Handlers::new().on("*", "*", |_e: Envelope| async {
            panic!("boom");
        });
        let err = event("s", "t").run(&handlers).await.unwrap_err();
        assert_eq!(err.message, "handler panicked");
        assert!(!err.permanent);
    }
}
