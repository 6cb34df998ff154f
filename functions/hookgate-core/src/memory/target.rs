//! The local stand-in for an AWS destination (`kind = "eventbridge"` or `"sqs"`) when the
//! stack runs without AWS: it keeps what it was sent, so the local stack and tests can show
//! it, and logs each delivery.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tracing::info;

use crate::envelope::Envelope;
use crate::handler::{Context, Delivery, Handled, Handler, HandlerError};

/// Keeps every event delivered to it, in order.
#[derive(Debug, Clone, Default)]
pub struct RecordingTarget {
    url: String,
    delivered: Arc<Mutex<Vec<Envelope>>>,
}

impl RecordingTarget {
    /// A stand-in recorded as delivering to `url` (`eventbridge://bus`, `sqs://…`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            delivered: Arc::default(),
        }
    }

    /// What it was sent.
    pub fn delivered(&self) -> Vec<Envelope> {
        self.delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Handler for RecordingTarget {
    async fn handle(&self, event: Envelope, _cx: &Context) -> Result<Handled, HandlerError> {
        info!(url = %self.url, bytes = event.body.len(), "delivered to the local stand-in");
        self.delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
        Ok(Handled {
            delivery: Some(Delivery {
                url: self.url.clone(),
                status_code: None,
            }),
        })
    }
}
