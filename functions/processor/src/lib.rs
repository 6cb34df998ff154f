//! The processor Lambda's adapter: an SQS event source batch ↔ the processor core.
//!
//! Your handlers come from the `handlers` crate (`functions/handlers`); everything else is
//! configuration.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use hookgate_core::metrics::{Emf, Metrics, SeriesLimits};
use hookgate_core::{Config, Handlers, Ledger, Processor, Queue, Timestamp};
use lambda_runtime::{Error, LambdaEvent};

/// The processor function: built once per cold start.
pub struct App {
    processor: Processor,
}

impl App {
    /// The function over the given ledger, queue (for visibility changes and DLQ moves) and
    /// handlers.
    pub fn new(
        config: &Config,
        ledger: Arc<dyn Ledger>,
        queue: Arc<dyn Queue>,
        handlers: Handlers,
    ) -> Self {
        Self {
            processor: Processor::new(config, ledger, queue, handlers),
        }
    }

    /// The same function keeping payloads in `archive` and reading claim-checked bodies from it.
    pub fn with_archive(mut self, archive: Arc<dyn hookgate_core::Archive>) -> Self {
        self.processor = self.processor.with_archive(archive);
        self
    }

    /// The same function reporting each record's outcome to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn Metrics>) -> Self {
        self.processor = self.processor.with_metrics(metrics);
        self
    }

    /// The function as deployed: configuration (Secrets Manager, `HOOKGATE_CONFIG_SECRET_ID`)
    /// and AWS clients from the environment, loaded once per cold start; metrics as Embedded
    /// Metric Format lines on stdout.
    /// `HOOKGATE_MAX_RECEIVE_COUNT` (the queue's redrive `maxReceiveCount`) overrides the
    /// config file's, so the two cannot disagree.
    pub async fn from_env(handlers: Handlers) -> Result<Self, Error> {
        let sdk = hookgate_aws::sdk_config().await;
        let mut config = hookgate_aws::load_config(&sdk).await?;
        if let Ok(n) = std::env::var("HOOKGATE_MAX_RECEIVE_COUNT") {
            config.processor.max_receive_count = n.parse().map_err(|_| {
                format!("HOOKGATE_MAX_RECEIVE_COUNT must be a positive integer, not {n:?}")
            })?;
            // A retry schedule needs the receives the queue allows.
            config
                .processor
                .check_retry_schedule(config.receiver.dedup_window_secs)
                .map_err(|e| format!("with HOOKGATE_MAX_RECEIVE_COUNT={n}: {e}"))?;
        }
        let metrics = Arc::new(
            Emf::from_env(&config.metrics)?
                .with_limits(SeriesLimits::from_config(&config))
                .batched(),
        );
        let backend = hookgate_aws::AwsBackend::from_env_with(&sdk).await?;
        // `[[routes]]` and `[sources.NAME.forward]` deliver to their destinations (a handler
        // registered in code for an event's source and type wins).
        let destinations = if config.routing().destinations().next().is_some() {
            Some(hookgate_aws::targets::destinations(
                config.routing().clone(),
                &sdk,
                backend.ledger.table(),
                backend.archive.as_ref(),
            )?)
        } else {
            None
        };
        let mut app =
            Self::new(&config, backend.ledger, backend.queue, handlers).with_metrics(metrics);
        if let Some(archive) = backend.archive {
            app = app.with_archive(archive);
        }
        if let Some(destinations) = destinations {
            app.processor = app.processor.with_destinations(Arc::new(destinations));
        }
        Ok(app)
    }

    /// Handles one batch. Record failures are reported in `batchItemFailures`; an
    /// invocation error is returned only for a batch that cannot be reported record by record.
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
        let deadline = i64::try_from(event.context.deadline)
            .ok()
            .map(Timestamp::from_millis);
        let outcome = self
            .processor
            .process_batch(&event.payload, deadline)
            .await?;
        Ok(outcome.to_response())
    }
}
