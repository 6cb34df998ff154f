//! The adapters behind [`Handlers::on_event`](super::Handlers::on_event) and
//! [`Handlers::on_json`](super::Handlers::on_json): a closure of the user's, as a [`Handler`].

use std::future::Future;
use std::marker::PhantomData;

use async_trait::async_trait;

use super::{Context, Handled, Handler, HandlerError};
use crate::envelope::Envelope;

/// `handler(event, cx)`.
pub(super) struct Raw<F>(pub(super) F);

#[async_trait]
impl<F, Fut> Handler for Raw<F>
where
    F: Fn(Envelope, Context) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    async fn handle(&self, event: Envelope, cx: &Context) -> Result<Handled, HandlerError> {
        (self.0)(event, cx.clone()).await.map(Into::into)
    }
}

/// `handler(body as T, cx)`.
pub(super) struct Json<T, F> {
    handler: F,
    body: PhantomData<fn() -> T>,
}

impl<T, F> Json<T, F> {
    pub(super) fn new(handler: F) -> Self {
        Self {
            handler,
            body: PhantomData,
        }
    }
}

#[async_trait]
impl<T, F, Fut> Handler for Json<T, F>
where
    T: serde::de::DeserializeOwned + Send,
    F: Fn(T, Context) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    async fn handle(&self, event: Envelope, cx: &Context) -> Result<Handled, HandlerError> {
        let body: T = serde_json::from_slice(&event.body).map_err(|e| {
            HandlerError::permanent(format!(
                "the body is not a {}: {e}",
                std::any::type_name::<T>()
            ))
        })?;
        (self.handler)(body, cx.clone()).await.map(Into::into)
    }
}
