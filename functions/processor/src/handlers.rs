//! Your handlers: route events to code by `(source, type)`.
//!
//! Sources with a `[sources.NAME.forward]` table are delivered to their destination by the
//! built-in forwarder (a route registered here for that source wins). Events no route matches
//! go to the built-in log handler, which logs and succeeds. Return
//! `HandlerError::retry` for a failure worth retrying (the message comes back with backoff),
//! `HandlerError::permanent` for one that is not (straight to the DLQ).

use hookgate_core::Handlers;

/// The handlers this deployment runs.
pub fn handlers() -> Handlers {
    Handlers::new()
    // .on("github", "push", |event: hookgate_core::Envelope| async move {
    //     tracing::info!(event_id = %event.event_id, "a push");
    //     Ok(())
    // })
}
