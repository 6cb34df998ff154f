//! How many messages wait in the queue and its DLQ, for the health page: the `Queue` port does
//! not say, so each backend answers here — the in-memory queue counts its messages, SQS gives
//! its approximate attributes.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use hookgate_core::memory::MemoryQueue;

/// Messages in the queues now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Depth {
    /// Messages waiting to be received (on SQS: `ApproximateNumberOfMessages`; in memory:
    /// every message held, in flight included).
    pub waiting: u64,
    /// Messages received and not yet deleted (SQS's `ApproximateNumberOfMessagesNotVisible`),
    /// when known apart.
    pub in_flight: Option<u64>,
    /// Messages in the DLQ, when there is one.
    pub dead_letters: Option<u64>,
}

/// Something that can say how deep the queues are.
#[async_trait]
pub trait QueueDepth: Send + Sync {
    /// The depth now, or why it could not be read.
    async fn depth(&self) -> Result<Depth, String>;
}

/// The in-memory queue and its DLQ.
pub struct MemoryDepth {
    /// The queue.
    pub queue: Arc<MemoryQueue>,
    /// Its DLQ.
    pub dlq: Option<Arc<MemoryQueue>>,
}

#[async_trait]
impl QueueDepth for MemoryDepth {
    async fn depth(&self) -> Result<Depth, String> {
        Ok(Depth {
            waiting: self.queue.len() as u64,
            in_flight: None,
            dead_letters: self.dlq.as_ref().map(|d| d.len() as u64),
        })
    }
}

/// An SQS queue and its DLQ, by URL.
pub struct SqsDepth {
    /// An SQS client.
    pub client: aws_sdk_sqs::Client,
    /// The queue's URL.
    pub queue_url: String,
    /// The DLQ's URL.
    pub dlq_url: Option<String>,
}

impl SqsDepth {
    async fn attributes(&self, url: &str) -> Result<(u64, u64), String> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "GetQueueAttributes: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )
            })?;
        let attributes = out.attributes.unwrap_or_default();
        let number = |name: &QueueAttributeName| {
            attributes
                .get(name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok((
            number(&QueueAttributeName::ApproximateNumberOfMessages),
            number(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }
}

#[async_trait]
impl QueueDepth for SqsDepth {
    async fn depth(&self) -> Result<Depth, String> {
        let (waiting, in_flight) = self.attributes(&self.queue_url).await?;
        let dead_letters = match &self.dlq_url {
            Some(url) => {
                let (visible, hidden) = self.attributes(url).await?;
                Some(visible + hidden)
            }
            None => None,
        };
        Ok(Depth {
            waiting,
            in_flight: Some(in_flight),
            dead_letters,
        })
    }
}
