//! The operator console: server-rendered pages at `/console` over the ledger, the archive, the
//! DLQ and the metrics — in `hookgate serve` next to the stack it runs, and in `hookgate
//! console` over a deployment on AWS, read with the operator's own credentials (no admin route
//! on API Gateway).
//!
//! - [`security`]: who may use it (loopback, or the admin token and a session cookie), CSRF on
//!   every state-changing request, and the headers of every answer (a CSP of `'self'`).
//! - [`views`]: what the pages show, made from records and payloads (never a secret or a
//!   signature value).
//! - [`pages`]: the routes and their askama templates (`templates/console/`); every value is
//!   escaped by the templates, none is marked safe.
//! - [`charts`]: the health page's SVG charts, drawn here; [`depth`]: how deep the queues are.
//! - [`sampler`]: the last hour of the metrics registry, one sample every few seconds.
//! - [`aws`]: `hookgate console`, the same pages over DynamoDB, SQS and S3.
//! - [`assets`]: the CSS and the small script, embedded in the binary (no CDN, no Node).
//!
//! It reuses the core's tools: listings through [`Ledger::list_page`] (the by-status index,
//! never a scan), replays through [`Replayer`], bulk replays through
//! [`hookgate_core::replay::run_bulk`], the DLQ through [`DeadLetters`].

pub mod assets;
pub mod aws;
pub mod charts;
pub mod depth;
pub mod pages;
pub mod sampler;
pub mod security;
pub mod views;

use hookgate_core::destination_gate::DestinationGate;
use hookgate_core::destination_policy::DestinationName;
use hookgate_core::routing::Transport;
use std::sync::Arc;

use axum::Router;
use hookgate_core::dlq::DeadLetters;
use hookgate_core::metrics::MetricsRegistry;
use hookgate_core::replay::Replayer;
use hookgate_core::{Config, Ledger};

pub use security::{login_required, ConsoleAccess};

/// One configured source, as the sources page shows it: never its secrets, only how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// Its name.
    pub name: String,
    /// Its signature scheme.
    pub scheme: String,
    /// How many secrets it has.
    pub secrets: usize,
    /// Its forward destination, without the query, if any.
    pub destination: Option<String>,
}

/// The sources of `config`, by name.
pub fn sources_of(config: &Config) -> Vec<SourceInfo> {
    config
        .sources
        .iter()
        .map(|(name, source)| SourceInfo {
            name: name.to_string(),
            scheme: source.scheme.name().to_owned(),
            secrets: source.secrets.len(),
            destination: source
                .forward
                .as_ref()
                .map(|d| views::url_without_query(d.shown_url()).to_owned()),
        })
        .collect()
}

/// A configured destination, as the Sources page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationInfo {
    /// Its name.
    pub name: DestinationName,
    /// `http`, `eventbridge` or `sqs`.
    pub kind: String,
    /// Where it delivers: the URL without its query, the bus, the queue.
    pub target: String,
    /// Its rate limit, if any (`50/s`).
    pub rate_limit: Option<String>,
}

/// The destinations of `config` (its `[destinations.*]` and `forward` tables), by name.
pub fn destinations_of(config: &Config) -> Vec<DestinationInfo> {
    config
        .routing()
        .destinations()
        .map(|spec| DestinationInfo {
            name: spec.name.clone(),
            kind: spec.transport.kind().to_owned(),
            target: match &spec.transport {
                Transport::Http(d) => views::url_without_query(d.shown_url()).to_owned(),
                Transport::EventBridge { event_bus } => event_bus.clone(),
                Transport::Sqs { queue_url } => views::url_without_query(queue_url).to_owned(),
            },
            rate_limit: spec.rate_limit.map(|r| r.to_string()),
        })
        .collect()
}

/// What the console reads and acts on.
pub struct ConsoleBackend {
    /// The ledger: listings, events, attempts.
    pub ledger: Arc<dyn Ledger>,
    /// Payloads and replays.
    pub replayer: Arc<Replayer>,
    /// The DLQ tools, when there is a DLQ.
    pub dead_letters: Option<Arc<DeadLetters>>,
    /// The last hour of the metrics, when this process counts them (the local stack).
    pub sampler: Option<Arc<sampler::Sampler>>,
    /// How deep the queues are, when the backend can say.
    pub depth: Option<Arc<dyn depth::QueueDepth>>,
    /// The configured sources.
    pub sources: Vec<SourceInfo>,
    /// The configured destinations.
    pub destinations: Vec<DestinationInfo>,
    /// Their circuits, rate windows and disabled flags, when the console can reach them.
    pub gate: Option<Arc<dyn DestinationGate>>,
    /// Where the console looks: `local stack`, `AWS`.
    pub place: String,
}

impl ConsoleBackend {
    /// A backend without DLQ or metrics.
    pub fn new(ledger: Arc<dyn Ledger>, replayer: Arc<Replayer>, config: &Config) -> Self {
        Self {
            ledger,
            replayer,
            dead_letters: None,
            sampler: None,
            depth: None,
            sources: sources_of(config),
            destinations: destinations_of(config),
            gate: None,
            place: "local stack".to_owned(),
        }
    }

    /// The same backend with the DLQ tools.
    pub fn with_dead_letters(mut self, dead_letters: Arc<DeadLetters>) -> Self {
        self.dead_letters = Some(dead_letters);
        self
    }

    /// The same backend sampling `metrics` for the sources and health pages.
    pub fn with_metrics(mut self, metrics: Arc<MetricsRegistry>) -> Self {
        self.sampler = Some(Arc::new(sampler::Sampler::new(metrics)));
        self
    }

    /// The same backend reading the queues' depth from `depth`.
    pub fn with_depth(mut self, depth: Arc<dyn depth::QueueDepth>) -> Self {
        self.depth = Some(depth);
        self
    }

    /// The same backend showing (and enabling, disabling) destinations through `gate`.
    pub fn with_gate(mut self, gate: Arc<dyn DestinationGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The same backend, saying it looks at `place`.
    pub fn with_place(mut self, place: impl Into<String>) -> Self {
        self.place = place.into();
        self
    }
}

/// The console's routes, under `/console`, with `access` deciding who may use them.
pub fn router(backend: Arc<ConsoleBackend>, access: Arc<ConsoleAccess>) -> Router {
    if let Some(sampler) = &backend.sampler {
        sampler.start();
    }
    pages::router(backend, access)
}
