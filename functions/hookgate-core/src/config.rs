//! Configuration: which sources exist, how each one is verified, and how the processor and the
//! local stack behave.
//!
//! One TOML document configures everything. The local stack reads it from a file; the Lambda
//! functions read it from `HOOKGATE_CONFIG` (the document itself) or `HOOKGATE_CONFIG_FILE`.
//!
//! Loading compiles the document in one step: it is parsed, every value checked, and every
//! source's signature scheme and forward destination built. A bad config fails at start-up, not
//! at the first request, and the receiver and processor take the built parts as they are: a
//! [`Config`] exists only through [`Config::from_toml`], [`Config::from_file`] or
//! [`Config::from_env`], so an unchecked one cannot reach them.
//!
//! A scheme's own options belong to [`crate::signature`] (each scheme refuses, by name, an
//! option it does not take) and a destination's to [`crate::delivery`]; neither knows this
//! module. What is here: the document's shape, the options every source takes, and the rules
//! that span sections.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::backoff::{Backoff, RetryPolicy};
use crate::clock::Timestamp;
use crate::delivery::{Destination, ForwardOptions};
use crate::envelope::SourceName;
use crate::queue::QUEUE_RETENTION;
use crate::routing::table::{LegacyForward, RoutingTables};
use crate::routing::{DestinationDocument, RouteDocument, Routing, RoutingOptions};
pub use crate::secret::Secret;
use crate::signature::{self, CommonOptions, SchemeError, SignatureScheme};

/// The whole configuration, loaded: every value checked, every scheme and destination built.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Sources by name: `[sources.NAME]`.
    pub sources: BTreeMap<SourceName, SourceConfig>,
    /// `[receiver]`: limits of the ingress path.
    pub receiver: ReceiverConfig,
    /// `[processor]`: retries, batching, concurrency.
    pub processor: ProcessorConfig,
    /// `[admin]`: access to the status routes.
    pub admin: AdminConfig,
    /// `[metrics]`: the CloudWatch namespace and dimensions of the functions' metrics.
    pub metrics: MetricsConfig,
    /// `[archive]`: every payload kept for reading and replay; the claim check for large ones.
    pub archive: ArchiveConfig,
    /// `[destinations.NAME]`, `[[routes]]`, `[routing]` and the sources' `forward` tables,
    /// compiled (see [`Config::routing`]).
    routing: Arc<Routing>,
}

/// One provider endpoint, `POST /webhooks/{name}`, loaded: its scheme built, its destination
/// checked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SourceConfig {
    /// The signature scheme `scheme = "…"` names, built from its options.
    pub scheme: Arc<dyn SignatureScheme>,
    /// `[sources.NAME.forward]`: where the processor delivers every event of this source.
    pub forward: Option<Destination>,
    /// Signing secrets; every one is tried, so a secret can be rotated without downtime.
    pub secrets: Vec<Secret>,
    /// Replay window, in seconds either side of now, for schemes that sign a timestamp.
    pub tolerance_secs: u64,
    /// The event types this source's metrics are split by; any other type counts as `other`.
    /// Without it, a type taken from signed content is used as it is and one taken from an
    /// unsigned header (GitHub's `X-GitHub-Event`, Shopify's `X-Shopify-Topic`, the generic
    /// `type_header`) counts as `other` (see [`crate::metrics`]).
    pub metric_types: Option<Vec<String>>,
    /// This source's dedup window as configured: its own `dedup_window_secs`, else
    /// `[receiver]`'s. See [`SourceConfig::dedup_window`] for the one that applies.
    pub dedup_window_secs: u64,
}

impl SourceConfig {
    /// How long a claim of this source's events deduplicates: `dedup_window_secs`. For a scheme
    /// that signs a timestamp it is at least twice `tolerance_secs` (a request may arrive up to
    /// `tolerance_secs` before its signed time and be replayed up to `tolerance_secs` after), so
    /// a replay the timestamp still admits always finds its claim.
    pub fn dedup_window(&self) -> Duration {
        let window = if self.scheme.signs_timestamp() {
            self.dedup_window_secs
                .max(self.tolerance_secs.saturating_mul(2))
        } else {
            self.dedup_window_secs
        };
        Duration::from_secs(window)
    }
}

/// The document as written: what serde reads, before anything is checked or built.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    sources: BTreeMap<SourceName, SourceDocument>,
    #[serde(default)]
    receiver: ReceiverConfig,
    #[serde(default)]
    processor: ProcessorConfig,
    #[serde(default)]
    admin: AdminConfig,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    archive: ArchiveConfig,
    #[serde(default)]
    destinations: BTreeMap<String, DestinationDocument>,
    #[serde(default)]
    routes: Vec<RouteDocument>,
    #[serde(default)]
    routing: RoutingOptions,
}

/// `[sources.NAME]` as written: the options every source takes, and the rest, which are the
/// scheme's own (it parses them, and refuses by name one it does not take).
#[derive(Deserialize)]
struct SourceDocument {
    /// Signature scheme name, e.g. `hmac-sha256` (see [`signature::SCHEMES`]).
    scheme: String,
    secrets: Vec<Secret>,
    #[serde(default = "default_tolerance_secs")]
    tolerance_secs: u64,
    #[serde(default)]
    forward: Option<ForwardOptions>,
    #[serde(default)]
    metric_types: Option<Vec<String>>,
    /// How long this source's events deduplicate, overriding `[receiver] dedup_window_secs`:
    /// longer for schemes that sign no timestamp (GitHub, Shopify, `hmac-sha256` without
    /// `{timestamp}`), whose captured requests are accepted again once the window is over.
    #[serde(default)]
    dedup_window_secs: Option<u64>,
    /// Every other key: the scheme's own options.
    #[serde(flatten)]
    scheme_options: toml::Table,
}

/// The keys of [`SourceDocument`] every source takes, named when a scheme refuses another.
const COMMON_SOURCE_OPTIONS: &str =
    "scheme, secrets, tolerance_secs, dedup_window_secs, metric_types, forward";

fn default_tolerance_secs() -> u64 {
    signature::DEFAULT_TOLERANCE_SECS
}

/// `[archive]`: where payloads are kept, and for how long (see [`crate::payload`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Keep every payload (default true). Off, only bodies too large for the queue go to the
    /// archive (they must), and replay answers `payload_not_archived` for the others.
    pub enabled: bool,
    /// Bodies larger than this (default 256 KiB) are written to the archive by the receiver
    /// and travel as a pointer; smaller ones travel in the message.
    pub claim_check_bytes: usize,
    /// A payload whose compressed envelope is at most this many bytes (default 3 KiB) is kept
    /// inline in the ledger item, in the write the processor makes anyway; a larger one is an
    /// archive object. See the README's cost table for why.
    pub inline_max_bytes: usize,
    /// How long payloads are kept, in days; at most the dedup window (an event stays
    /// replayable as long as it is remembered). Default: the dedup window.
    pub retention_days: Option<u64>,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            claim_check_bytes: 256 * 1024,
            inline_max_bytes: 3072,
            retention_days: None,
        }
    }
}

/// The default largest body: 6 MiB, what Lambda accepts in one request.
pub const DEFAULT_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// `[receiver]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiverConfig {
    /// Largest body accepted, in bytes (default 6 MiB, Lambda's request payload limit; bodies
    /// over `[archive] claim_check_bytes` travel through the archive).
    pub max_body_bytes: usize,
    /// How long a claimed event id keeps deduplicating (default 7 days: longer than any
    /// provider's retry horizon).
    pub dedup_window_secs: u64,
    /// How long a claim may stay `received` (claimed, not yet enqueued) before a retry of the
    /// same event may take it over. Covers a receiver that died between claim and enqueue.
    pub claim_timeout_secs: u64,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            dedup_window_secs: 7 * 24 * 3600,
            claim_timeout_secs: 60,
        }
    }
}

/// `[processor]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    /// Receives before a message moves to the DLQ (the queue's redrive policy).
    pub max_receive_count: u32,
    /// How long a received message stays invisible to other consumers.
    pub visibility_timeout_secs: u64,
    /// Messages per batch (1–10, as SQS allows).
    pub batch_size: usize,
    /// Records of one batch run at once.
    pub concurrency: usize,
    /// Local stack only: batches polled and processed at once.
    pub pollers: usize,
    /// Local stack only: long-poll wait of one receive, in milliseconds.
    pub wait_time_ms: u64,
    /// Local stack only: how long a poller keeps gathering a batch once its first message
    /// arrived (Lambda's `MaximumBatchingWindowInSeconds`).
    pub batch_window_ms: u64,
    /// Longest one handler may run before its record fails.
    pub handler_timeout_secs: u64,
    /// First retry delay; doubles on each receive (full jitter).
    pub backoff_base_ms: u64,
    /// Longest retry delay.
    pub backoff_cap_secs: u64,
    /// Records not started when less than this remains before the invocation's deadline are
    /// handed back (visibility reset) instead of started.
    pub deadline_margin_ms: u64,
    /// The delays between attempts, as `["5s", "5m", "30m", "2h"]` (units `ms`, `s`, `m`, `h`,
    /// `d`): the delay after the n-th receive is the n-th entry, the last one for any later
    /// receive. Replaces `backoff_base_ms`/`backoff_cap_secs` when set. The whole schedule must
    /// fit the queue's retention (4 days) and the dedup window, and `max_receive_count` must
    /// allow every entry (at least its length + 1).
    pub retry_schedule: Option<Vec<String>>,
    /// Retries due within this many seconds wait on the queue in flight (a visibility change);
    /// later ones are re-sent as a delayed copy and leave the in-flight set (see
    /// `docs/reliability.md`). At most 43200.
    pub retry_hold_max_secs: u64,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            max_receive_count: 5,
            visibility_timeout_secs: 30,
            batch_size: 10,
            concurrency: 10,
            pollers: 2,
            wait_time_ms: 1000,
            batch_window_ms: 0,
            handler_timeout_secs: 25,
            backoff_base_ms: 1000,
            backoff_cap_secs: 900,
            deadline_margin_ms: 1000,
            retry_schedule: None,
            retry_hold_max_secs: DEFAULT_RETRY_HOLD_MAX_SECS,
        }
    }
}

/// Retries due within 30 s are held in flight by default: at most 30 s × the failing rate
/// messages in flight (4,000 failing events/s before SQS's 120,000), while each retry costs one
/// request instead of a send and a ledger write.
pub const DEFAULT_RETRY_HOLD_MAX_SECS: u64 = 30;

/// Parses a delay of a retry schedule: a whole number and a unit, `ms`, `s`, `m`, `h` or `d`
/// (`"500ms"`, `"5s"`, `"30m"`, `"2h"`, `"1d"`).
pub fn parse_delay(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (ms, s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let scale = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "{text:?} has an unknown unit {other:?} (ms, s, m, h or d)"
            ))
        }
    };
    number
        .checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

impl ArchiveConfig {
    /// How long payloads are kept: `retention_days`, else the dedup window.
    pub fn retention(&self, receiver: &ReceiverConfig) -> Duration {
        match self.retention_days {
            Some(days) => Duration::from_secs(days.saturating_mul(86_400)),
            None => Duration::from_secs(receiver.dedup_window_secs),
        }
    }
}

impl ProcessorConfig {
    /// The visibility timeout as a duration.
    pub fn visibility_timeout(&self) -> Duration {
        Duration::from_secs(self.visibility_timeout_secs)
    }

    /// The retry schedule's delays, if one is set (`Err` names the entry that does not parse).
    pub fn retry_delays(&self) -> Result<Option<Vec<Duration>>, String> {
        let Some(entries) = &self.retry_schedule else {
            return Ok(None);
        };
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                parse_delay(e).map_err(|why| format!("processor.retry_schedule[{i}]: {why}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// How retries are spaced: the schedule if one is set, else the backoff.
    pub fn retry_policy(&self) -> RetryPolicy {
        match self.retry_delays() {
            Ok(Some(delays)) if !delays.is_empty() => RetryPolicy::Schedule(delays),
            _ => RetryPolicy::Backoff(Backoff {
                base: Duration::from_millis(self.backoff_base_ms),
                cap: Duration::from_secs(self.backoff_cap_secs),
            }),
        }
    }

    /// The longest retry delay held in flight (see `retry_hold_max_secs`).
    pub fn retry_hold_max(&self) -> Duration {
        Duration::from_secs(self.retry_hold_max_secs)
    }

    /// Checks `retry_schedule` against the queue's retention, the dedup window and
    /// `max_receive_count` (done at load; again by whoever overrides `max_receive_count`).
    pub fn check_retry_schedule(&self, dedup_window_secs: u64) -> Result<(), String> {
        let Some(delays) = self.retry_delays()? else {
            return Ok(());
        };
        if delays.is_empty() {
            return Err(
                "processor.retry_schedule must not be empty (leave it out for the backoff)".into(),
            );
        }
        let total: Duration = delays.iter().sum();
        let limit = QUEUE_RETENTION.min(Duration::from_secs(dedup_window_secs));
        if total > limit {
            return Err(format!(
                "processor.retry_schedule adds up to {} s, more than the {} s an event can wait \
                 (the queue keeps a message 4 days; receiver.dedup_window_secs is {dedup_window_secs})",
                total.as_secs(),
                limit.as_secs()
            ));
        }
        let needed = u32::try_from(delays.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        if self.max_receive_count < needed {
            return Err(format!(
                "processor.retry_schedule has {} delays but max_receive_count {} allows only {} \
                 retries: set max_receive_count (and the queue's maxReceiveCount) to at least {needed}",
                delays.len(),
                self.max_receive_count,
                self.max_receive_count - 1
            ));
        }
        Ok(())
    }
}

/// `[admin]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token for the status routes on the local stack. Without one they answer 401.
    #[serde(default)]
    pub token: Option<Secret>,
}

/// `[metrics]`: how the Lambda functions name their CloudWatch metrics (Embedded Metric
/// Format; see [`crate::metrics`]). The local stack's `/metrics` always labels by source and
/// type.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// The CloudWatch namespace (default `hookgate`). On AWS the template's `MetricsNamespace`
    /// parameter (`HOOKGATE_METRICS_NAMESPACE`) wins, so its dashboard reads what is written.
    pub namespace: String,
    /// The dimensions every metric is split by, from `source` and `type` (default both; `[]`
    /// for totals only). Totals without dimensions are written in any case.
    pub dimensions: Vec<MetricDimension>,
    /// Most distinct event types one source's metrics are split by (default 50); further types
    /// count as `other`. Each is a CloudWatch custom metric per metric name, billed monthly.
    pub max_types_per_source: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            namespace: "hookgate".to_owned(),
            dimensions: vec![MetricDimension::Source, MetricDimension::Type],
            max_types_per_source: DEFAULT_MAX_TYPES_PER_SOURCE,
        }
    }
}

/// The default `[metrics] max_types_per_source`.
pub const DEFAULT_MAX_TYPES_PER_SOURCE: usize = 50;

/// A dimension metrics may be split by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricDimension {
    /// The source name (`(unknown)` for a request to no configured source).
    Source,
    /// The event type (`(unverified)` for a request refused before its signature was checked).
    Type,
}

impl MetricDimension {
    /// The dimension's name, as written in metrics.
    pub fn name(self) -> &'static str {
        match self {
            MetricDimension::Source => "source",
            MetricDimension::Type => "type",
        }
    }
}

/// Why `namespace` cannot be a CloudWatch namespace, if it cannot: 1–255 characters from
/// `[0-9A-Za-z.\-_/#: ]`, not starting with `AWS/` (reserved for AWS services).
pub fn check_metrics_namespace(namespace: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c);
    if namespace.trim().is_empty() || namespace.len() > 255 {
        return Err("metrics.namespace must be 1-255 characters".into());
    }
    if let Some(c) = namespace.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "metrics.namespace may not contain {c:?} (allowed: letters, digits, . - _ / # : and space)"
        ));
    }
    if namespace.starts_with("AWS/") {
        return Err("metrics.namespace may not start with AWS/ (reserved for AWS services)".into());
    }
    Ok(())
}

/// Why a source's `metric_types` cannot be used, if it cannot: each 1-128 characters without
/// control characters, none twice, at most `max` of them.
fn check_metric_types(types: &[String], max: usize) -> Result<(), String> {
    if types.len() > max {
        return Err(format!(
            "lists {} types, more than metrics.max_types_per_source ({max})",
            types.len()
        ));
    }
    for (i, t) in types.iter().enumerate() {
        if t.trim().is_empty() || t.chars().count() > 128 || t.chars().any(char::is_control) {
            return Err(format!(
                "entry {i} must be 1-128 characters without control characters"
            ));
        }
        if types[..i].contains(t) {
            return Err(format!("lists {t:?} twice"));
        }
    }
    Ok(())
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither `HOOKGATE_CONFIG` nor `HOOKGATE_CONFIG_FILE` is set.
    #[error("no configuration: set HOOKGATE_CONFIG (the TOML document) or HOOKGATE_CONFIG_FILE (its path)")]
    Missing,
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path tried.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Not valid TOML, or not the expected shape.
    #[error("invalid config: {0}")]
    Parse(#[from] toml::de::Error),
    /// Valid TOML with a value that cannot work.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// No source of that name is configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no source named {0:?} is configured")]
pub struct UnknownSource(pub String);

impl Config {
    /// Parses, checks and builds a TOML document.
    pub fn from_toml(s: &str) -> Result<Self, ConfigError> {
        toml::from_str::<Document>(s)?.compile()
    }

    /// Reads, parses, checks and builds a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Loads the configuration the Lambda functions use: `HOOKGATE_CONFIG` or
    /// `HOOKGATE_CONFIG_FILE`.
    pub fn from_env() -> Result<Self, ConfigError> {
        if let Ok(doc) = std::env::var("HOOKGATE_CONFIG") {
            return Self::from_toml(&doc);
        }
        match std::env::var("HOOKGATE_CONFIG_FILE") {
            Ok(path) => Self::from_file(Path::new(&path)),
            Err(_) => Err(ConfigError::Missing),
        }
    }

    /// Every destination and route, compiled: `[destinations.NAME]`, `[[routes]]`,
    /// `[routing]`, and each `[sources.NAME.forward]` as a destination NAME with a route from
    /// NAME to it.
    pub fn routing(&self) -> &Arc<Routing> {
        &self.routing
    }

    /// Every source with a `forward` table, and its destination: what
    /// [`crate::handler::Handlers::with_forwarding`] takes. (The legacy form; see
    /// [`Config::routing`] for every destination.)
    pub fn destinations(&self) -> impl Iterator<Item = (&SourceName, &Destination)> {
        self.sources
            .iter()
            .filter_map(|(name, source)| Some((name, source.forward.as_ref()?)))
    }

    /// The headers `source`'s provider would send with `body` at `now`, signed with its first
    /// secret: `hookgate sign`, the tests and the examples.
    pub fn sign(
        &self,
        source: &str,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Vec<(String, String)>, UnknownSource> {
        let unknown = || UnknownSource(source.to_owned());
        let name = SourceName::parse(source).map_err(|_| unknown())?;
        let source = self.sources.get(&name).ok_or_else(unknown)?;
        Ok(source.scheme.sign(body, now))
    }
}

impl Document {
    /// Checks every value and builds every source: the one step from the document to a
    /// [`Config`].
    fn compile(mut self) -> Result<Config, ConfigError> {
        let mut sources = BTreeMap::new();
        let mut forwards = Vec::new();
        for (name, source) in std::mem::take(&mut self.sources) {
            let timeout_ms = source.forward.as_ref().map(|f| f.timeout_ms);
            let source = self.compile_source(&name, source)?;
            if let (Some(destination), Some(timeout_ms)) = (&source.forward, timeout_ms) {
                forwards.push(LegacyForward {
                    source: name.clone(),
                    destination: destination.clone(),
                    timeout: Duration::from_millis(timeout_ms),
                });
            }
            sources.insert(name, source);
        }
        self.check_sections()?;
        let names: BTreeSet<SourceName> = sources.keys().cloned().collect();
        let routing = Routing::compile(RoutingTables {
            destinations: std::mem::take(&mut self.destinations),
            routes: std::mem::take(&mut self.routes),
            options: self.routing.clone(),
            sources: &names,
            forwards,
            handler_timeout: Duration::from_secs(self.processor.handler_timeout_secs),
        })
        .map_err(ConfigError::Invalid)?;
        Ok(Config {
            routing: Arc::new(routing),
            sources,
            receiver: self.receiver,
            processor: self.processor,
            admin: self.admin,
            metrics: self.metrics,
            archive: self.archive,
        })
    }

    /// Checks a source's common options and builds its scheme and destination.
    fn compile_source(
        &self,
        name: &SourceName,
        source: SourceDocument,
    ) -> Result<SourceConfig, ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if source.secrets.is_empty() || source.secrets.iter().any(|s| s.expose().is_empty()) {
            return bad(format!(
                "sources.{name}: give at least one non-empty secret"
            ));
        }
        if source.tolerance_secs == 0 {
            return bad(format!(
                "sources.{name}: tolerance_secs must be positive (the replay check cannot be switched off)"
            ));
        }
        let dedup_window_secs = source
            .dedup_window_secs
            .unwrap_or(self.receiver.dedup_window_secs);
        let common = CommonOptions {
            secrets: source.secrets,
            tolerance_secs: source.tolerance_secs,
            dedup_window: Duration::from_secs(dedup_window_secs),
        };
        let scheme = signature::build(&source.scheme, &common, source.scheme_options).map_err(
            |e| match e {
                SchemeError::OptionsRefused(reason) => ConfigError::Invalid(format!(
                    "sources.{name}: {reason} (scheme {}; every source takes {COMMON_SOURCE_OPTIONS})",
                    source.scheme
                )),
                other => ConfigError::Invalid(format!("sources.{name}: {other}")),
            },
        )?;
        if source.dedup_window_secs == Some(0) {
            return bad(format!("sources.{name}.dedup_window_secs must be positive"));
        }
        if let Some(types) = &source.metric_types {
            check_metric_types(types, self.metrics.max_types_per_source)
                .map_err(|e| ConfigError::Invalid(format!("sources.{name}.metric_types: {e}")))?;
        }
        let forward = match &source.forward {
            Some(options) => {
                let destination = Destination::new(options)
                    .map_err(|e| ConfigError::Invalid(format!("sources.{name}.forward: {e}")))?;
                if options.timeout_ms >= self.processor.handler_timeout_secs.saturating_mul(1000) {
                    return bad(format!(
                        "sources.{name}.forward.timeout_ms must be shorter than processor.handler_timeout_secs"
                    ));
                }
                Some(destination)
            }
            None => None,
        };
        Ok(SourceConfig {
            scheme,
            forward,
            secrets: common.secrets,
            tolerance_secs: common.tolerance_secs,
            metric_types: source.metric_types,
            dedup_window_secs,
        })
    }

    /// Checks `[processor]`, `[receiver]`, `[admin]`, `[archive]` and `[metrics]`.
    fn check_sections(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let p = &self.processor;
        if !(1..=10).contains(&p.batch_size) {
            return bad("processor.batch_size must be 1-10".into());
        }
        if p.max_receive_count == 0 || p.concurrency == 0 || p.pollers == 0 {
            return bad(
                "processor.max_receive_count, concurrency and pollers must be positive".into(),
            );
        }
        if p.visibility_timeout_secs > 12 * 3600 || p.backoff_cap_secs > 12 * 3600 {
            return bad(
                "processor.visibility_timeout_secs and backoff_cap_secs are at most 43200 (12 h, the SQS limit)"
                    .into(),
            );
        }
        if p.handler_timeout_secs == 0 {
            return bad("processor.handler_timeout_secs must be positive".into());
        }
        if p.retry_hold_max_secs > 12 * 3600 {
            return bad(
                "processor.retry_hold_max_secs is at most 43200 (12 h, the SQS visibility limit)"
                    .into(),
            );
        }
        p.check_retry_schedule(self.receiver.dedup_window_secs)
            .map_err(ConfigError::Invalid)?;
        if self.receiver.max_body_bytes == 0 || self.receiver.dedup_window_secs == 0 {
            return bad("receiver.max_body_bytes and dedup_window_secs must be positive".into());
        }
        if self
            .admin
            .token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            return bad(
                "admin.token must not be empty (leave it out to keep the status routes closed)"
                    .into(),
            );
        }
        let archive = &self.archive;
        if archive.claim_check_bytes == 0 || archive.claim_check_bytes > 512 * 1024 {
            return bad(
                "archive.claim_check_bytes must be 1-524288 (bodies above it go to the archive; the queue takes 1 MiB)"
                    .into(),
            );
        }
        if archive.inline_max_bytes > 64 * 1024 {
            return bad(
                "archive.inline_max_bytes is at most 65536 (a ledger item holds 400 KB)".into(),
            );
        }
        if let Some(days) = archive.retention_days {
            if days == 0 || days.saturating_mul(86_400) > self.receiver.dedup_window_secs {
                return bad(format!(
                    "archive.retention_days must be 1 to receiver.dedup_window_secs in days ({}): an event stays replayable as long as it is remembered",
                    self.receiver.dedup_window_secs / 86_400
                ));
            }
        }
        check_metrics_namespace(&self.metrics.namespace).map_err(ConfigError::Invalid)?;
        if self.metrics.max_types_per_source == 0 {
            return bad("metrics.max_types_per_source must be positive".into());
        }
        let dimensions = &self.metrics.dimensions;
        if (1..dimensions.len()).any(|i| dimensions[..i].contains(&dimensions[i])) {
            return bad("metrics.dimensions lists a dimension twice".into());
        }
        Ok(())
    }
}

/// The example configuration bundled with the local stack (`hookgate serve` with no `--config`).
pub const EXAMPLE_CONFIG: &str = include_str!("../example-config.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_loads() {
        let c = Config::from_toml(EXAMPLE_CONFIG).unwrap();
        assert!(c.sources.contains_key(&SourceName::parse("demo").unwrap()));
        assert!(c.admin.token.is_some());
    }

    #[test]
    fn defaults_apply() {
        let c =
            Config::from_toml("[sources.a]\nscheme='hmac-sha256'\nsecrets=['a-16-byte-secret']")
                .unwrap();
        assert_eq!(c.receiver.max_body_bytes, 6 << 20);
        assert!(c.archive.enabled);
        assert_eq!(c.archive.claim_check_bytes, 256 << 10);
        assert_eq!(
            c.archive.retention(&c.receiver),
            Duration::from_secs(604_800)
        );
        assert_eq!(c.receiver.dedup_window_secs, 604_800);
        assert_eq!(c.processor.max_receive_count, 5);
        assert_eq!(c.sources.values().next().unwrap().tolerance_secs, 300);
        assert_eq!(c.metrics.namespace, "hookgate");
        assert_eq!(
            c.metrics.dimensions,
            [MetricDimension::Source, MetricDimension::Type]
        );
    }

    #[test]
    fn metrics_table_sets_namespace_and_dimensions() {
        let c =
            Config::from_toml("[metrics]\nnamespace='Shop/Webhooks'\ndimensions=['type']").unwrap();
        assert_eq!(c.metrics.namespace, "Shop/Webhooks");
        assert_eq!(c.metrics.dimensions, [MetricDimension::Type]);
        let none = Config::from_toml("[metrics]\ndimensions=[]").unwrap();
        assert!(none.metrics.dimensions.is_empty());
    }

    #[test]
    fn a_retry_schedule_parses_into_the_policy() {
        let c = Config::from_toml(
            "[processor]\nmax_receive_count=8\nretry_schedule=['5s','5m','30m','2h','5h','10h','10h']",
        )
        .unwrap();
        let secs = Duration::from_secs;
        assert_eq!(
            c.processor.retry_policy(),
            RetryPolicy::Schedule(vec![
                secs(5),
                secs(300),
                secs(1800),
                secs(7200),
                secs(18_000),
                secs(36_000),
                secs(36_000)
            ])
        );
        assert_eq!(
            c.processor.retry_hold_max(),
            secs(DEFAULT_RETRY_HOLD_MAX_SECS)
        );
        let plain = Config::from_toml("").unwrap();
        assert!(matches!(
            plain.processor.retry_policy(),
            RetryPolicy::Backoff(_)
        ));
        assert_eq!(parse_delay("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_delay("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_delay("1d"), Ok(secs(86_400)));
        assert!(parse_delay("5").unwrap_err().contains("no unit"));
        assert!(parse_delay("-5s").is_err());
        assert!(parse_delay("99999999999999999999d").is_err());
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        let cases = [
            ("[sources.a]\nscheme='hmac-sha256'\nsecrets=[]", "secret"),
            (
                "[sources.a]\nscheme='nope'\nsecrets=['a-16-byte-secret']",
                "unknown signature scheme",
            ),
            (
                "[sources.a]\nscheme='hmac-sha256'\nsecrets=['a-16-byte-secret']\ntolerance_secs=0",
                "tolerance",
            ),
            (
                "[sources.A]\nscheme='hmac-sha256'\nsecrets=['a-16-byte-secret']",
                "source names",
            ),
            (
                "[sources.a]\nscheme='hmac-sha256'\nsecrets=['a-16-byte-secret']\nsecret='typo'",
                "unknown field",
            ),
            ("[processor]\nbatch_size=11", "batch_size"),
            (
                "[processor]\nmax_receive_count=9\nretry_schedule=['5s','5 m']",
                "processor.retry_schedule[1]",
            ),
            (
                "[processor]\nmax_receive_count=9\nretry_schedule=['5s','10x']",
                "unknown unit",
            ),
            (
                "[processor]\nretry_schedule=['5s','m']",
                "processor.retry_schedule[1]",
            ),
            ("[processor]\nretry_schedule=[]", "must not be empty"),
            (
                "[processor]\nmax_receive_count=9\nretry_schedule=['3d','2d']",
                "processor.retry_schedule adds up to 432000 s",
            ),
            (
                "[receiver]\ndedup_window_secs=3600\n[processor]\nretry_schedule=['2h']",
                "receiver.dedup_window_secs is 3600",
            ),
            (
                "[processor]\nretry_schedule=['5s','5m','30m','2h','5h','10h','10h']",
                "set max_receive_count (and the queue's maxReceiveCount) to at least 8",
            ),
            (
                "[processor]\nretry_hold_max_secs=43201",
                "retry_hold_max_secs",
            ),
            ("[archive]\nclaim_check_bytes=0", "claim_check_bytes"),
            ("[archive]\nclaim_check_bytes=1048576", "claim_check_bytes"),
            ("[archive]\ninline_max_bytes=100000", "inline_max_bytes"),
            ("[archive]\nretention_days=8", "retention_days"),
            ("[archive]\nretention_days=0", "retention_days"),
            ("[archive]\nretain=1", "unknown field"),
            ("[metrics]\nnamespace=''", "metrics.namespace"),
            ("[metrics]\nnamespace='AWS/Lambda'", "AWS/"),
            ("[metrics]\nnamespace='hook{gate}'", "'{'"),
            ("[metrics]\ndimensions=['source','source']", "twice"),
            ("[metrics]\ndimensions=['reason']", "unknown variant"),
            ("[metrics]\nnamspace='x'", "unknown field"),
            (
                "[sources.a]\nscheme='hmac-sha256'\nsecrets=['a-16-byte-secret']\nencoding='hax'",
                "encoding",
            ),
        ];
        for (doc, want) in cases {
            let err = Config::from_toml(doc).unwrap_err().to_string();
            assert!(err.contains(want), "{doc:?} gave {err:?}");
        }
    }

    #[test]
    fn bad_forward_tables_are_refused_with_a_reason() {
        let base = "[sources.a]\nscheme='hmac-sha256'\nsecrets=['a-16-byte-secret']\n[sources.a.forward]\n";
        let secret = "secret='whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'\n";
        let cases = [
            ("url='http://b.example/'", "allow_http"),
            ("url='ftp://b.example/'", "not http(s)"),
            ("url='not a url'", "url"),
            ("url='https://user:pw@b.example/'", "credentials"),
            ("url='https://b.example/'\ntimeout_ms=0", "timeout_ms"),
            (
                "url='https://b.example/'\ntimeout_ms=30000",
                "handler_timeout_secs",
            ),
            ("url='https://b.example/'\nmode='celery'", "mode"),
            (
                "url='https://b.example/'\nheaders={webhook-id='x'}",
                "webhook-id",
            ),
            (
                "url='https://b.example/'\nheaders={'bad header'='x'}",
                "header name",
            ),
            ("url='https://b.example/'\nredirects=true", "unknown field"),
        ];
        for (forward, want) in cases {
            let doc = format!("{base}{secret}{forward}");
            let err = Config::from_toml(&doc).unwrap_err().to_string();
            assert!(err.contains(want), "{forward:?} gave {err:?}");
        }
        let err = Config::from_toml(&format!("{base}url='https://b.example/'\nsecret='s3cr3t!'"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("whsec_") && !err.contains("s3cr3t"), "{err}");
        let ok = format!(
            "{base}{secret}url='http://127.0.0.1:4000/h'\nallow_http=true\nheaders={{x-api-key='k3y'}}"
        );
        let c = Config::from_toml(&ok).unwrap();
        assert!(
            !format!("{c:?}").contains("k3y"),
            "header values are secret"
        );
    }

    #[test]
    fn weak_secrets_and_an_empty_admin_token_are_refused_naming_the_field() {
        let cases = [
            (
                "[sources.gh]\nscheme='github'\nsecrets=['s3cr3t']",
                "sources.gh: secrets[0] is shorter than 16 bytes",
            ),
            (
                "[sources.a]\nscheme='hmac-sha256'\nsecrets=['a-16-byte-secret', 'x']",
                "sources.a: secrets[1] is shorter than 16 bytes",
            ),
            (
                "[sources.std]\nscheme='standard'\nsecrets=['whsec_YQ==']",
                "sources.std: secrets[0] decodes to fewer than 24 bytes",
            ),
            ("[admin]\ntoken=''", "admin.token must not be empty"),
            ("[admin]\ntoken='  '", "admin.token must not be empty"),
        ];
        for (doc, want) in cases {
            let err = Config::from_toml(doc).unwrap_err().to_string();
            assert!(err.contains(want), "{doc:?} gave {err:?}");
            assert!(!err.contains("s3cr3t") && !err.contains("YQ=="), "{err}");
        }
        // A forward secret follows the Standard Webhooks rule, with or without its prefix.
        let forward = |secret: &str| {
            Config::from_toml(&format!(
                "[sources.a]\nscheme='hmac-sha256'\nsecrets=['a-16-byte-secret']\n\
                 [sources.a.forward]\nurl='https://b.example/'\nsecret='{secret}'"
            ))
        };
        let err = forward("whsec_YQ==").unwrap_err().to_string();
        assert!(
            err.contains("sources.a.forward: secret decodes to fewer than 24 bytes"),
            "{err}"
        );
        assert!(forward("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(forward("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        // So does a standard source's.
        for secret in [
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            let doc = format!("[sources.std]\nscheme='standard'\nsecrets=['{secret}']");
            assert!(Config::from_toml(&doc).is_ok(), "{secret}");
        }
    }

    #[test]
    fn metric_types_and_source_windows_are_checked() {
        let source = "[sources.gh]\nscheme='github'\nsecrets=['It is a Secret to Everybody']\n";
        let ok = Config::from_toml(&format!(
            "{source}metric_types=['push','pull_request']\ndedup_window_secs=31536000"
        ))
        .unwrap();
        let gh = ok.sources.values().next().unwrap();
        assert_eq!(
            gh.metric_types.as_deref().unwrap(),
            ["push", "pull_request"]
        );
        assert_eq!(gh.dedup_window(), Duration::from_secs(31_536_000));
        for (extra, want) in [
            (
                "metric_types=['push','push']",
                "sources.gh.metric_types: lists \"push\" twice",
            ),
            ("metric_types=['']", "sources.gh.metric_types: entry 0"),
            (
                "dedup_window_secs=0",
                "sources.gh.dedup_window_secs must be positive",
            ),
        ] {
            let err = Config::from_toml(&format!("{source}{extra}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{extra:?} gave {err:?}");
        }
        let err = Config::from_toml(&format!(
            "{source}metric_types=['a','b','c']\n[metrics]\nmax_types_per_source=2"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("more than metrics.max_types_per_source (2)"),
            "{err}"
        );
        let err = Config::from_toml("[metrics]\nmax_types_per_source=0")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_types_per_source must be positive"),
            "{err}"
        );
    }

    #[test]
    fn a_timestamped_source_remembers_at_least_twice_its_tolerance() {
        let doc = "[receiver]\ndedup_window_secs=600\n\
                   [sources.std]\nscheme='standard'\nsecrets=['MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw']\ntolerance_secs=3600\n\
                   [sources.gh]\nscheme='github'\nsecrets=['It is a Secret to Everybody']\ntolerance_secs=3600\n\
                   [sources.own]\nscheme='standard'\nsecrets=['MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw']\ndedup_window_secs=86400";
        let c = Config::from_toml(doc).unwrap();
        let window = |name: &str| c.sources[&SourceName::parse(name).unwrap()].dedup_window();
        assert_eq!(window("std"), Duration::from_secs(7_200));
        assert_eq!(
            window("gh"),
            Duration::from_secs(600),
            "github signs no timestamp"
        );
        assert_eq!(window("own"), Duration::from_secs(86_400));
        // hmac-sha256 signs a timestamp only when its template does.
        let generic = |extra: &str| {
            let doc = format!(
                "[receiver]\ndedup_window_secs=600\n[sources.g]\nscheme='hmac-sha256'\n\
                 secrets=['a-16-byte-secret']\ntolerance_secs=3600\n{extra}"
            );
            Config::from_toml(&doc).unwrap().sources[&SourceName::parse("g").unwrap()]
                .dedup_window()
        };
        assert_eq!(generic(""), Duration::from_secs(600));
        assert_eq!(
            generic("timestamp_header='x-ts'\nsigned_content='{timestamp}.{body}'"),
            Duration::from_secs(7_200)
        );
    }

    #[test]
    fn a_scheme_refuses_an_option_it_does_not_take_naming_the_source_and_the_field() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        for scheme in signature::names().filter(|s| *s != "hmac-sha256") {
            for option in [
                "header",
                "prefix",
                "encoding",
                "type_header",
                "timestamp_header",
                "id_header",
                "signed_content",
            ] {
                let doc =
                    format!("[sources.src]\nscheme='{scheme}'\nsecrets=['{secret}']\n{option}='x'");
                let err = Config::from_toml(&doc).unwrap_err().to_string();
                let want = format!(
                    "sources.src: unknown field `{option}`: this scheme takes no options of its own (scheme {scheme}; every source takes scheme, secrets,"
                );
                assert!(err.contains(&want), "{scheme} {option}: {err}");
            }
        }
        let hmac = "[sources.a]\nscheme='hmac-sha256'\nsecrets=['a-16-byte-secret']\n";
        for (extra, want) in [
            (
                "headr='x-sig'",
                "sources.a: unknown field `headr`, expected one of `header`, `prefix`",
            ),
            (
                "[sources.a.forwad]\nurl='https://b.example/'",
                "sources.a: unknown field `forwad`",
            ),
            (
                "header=5",
                "sources.a: header: invalid type: integer `5`, expected a string (scheme hmac-sha256;",
            ),
        ] {
            let err = Config::from_toml(&format!("{hmac}{extra}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{extra:?} gave {err:?}");
        }
        // Every option of its own, and every common one, is taken.
        let all = format!(
            "{hmac}header='X-Sig'\nprefix=''\nencoding='base64'\ntype_header='X-Kind'\n\
             timestamp_header='X-Ts'\nid_header='X-Id'\nsigned_content='{{id}}.{{timestamp}}.{{body}}'\n\
             tolerance_secs=60\ndedup_window_secs=86400\nmetric_types=['a']\n\
             [sources.a.forward]\nurl='https://b.example/'\nsecret='{secret}'"
        );
        let c = Config::from_toml(&all).unwrap();
        let a = &c.sources[&SourceName::parse("a").unwrap()];
        assert_eq!(a.scheme.name(), "hmac-sha256");
        assert_eq!(
            a.scheme.type_source(),
            signature::TypeSource::HeaderElseBody("x-kind")
        );
        assert_eq!(
            a.forward.as_ref().map(Destination::shown_url),
            Some("https://b.example/")
        );
    }

    #[test]
    fn shopify_refuses_deliveries_triggered_before_the_receivers_window_by_default() {
        let doc = "[receiver]\ndedup_window_secs=86400\n\
                   [sources.shop]\nscheme='shopify'\nsecrets=['0123456789abcdef']";
        let c = Config::from_toml(doc).unwrap();
        let shop = SourceName::parse("shop").unwrap();
        let body = br#"{"id":1}"#;
        let triggered = Timestamp::from_secs(1_700_000_000);
        let at = |late: i64| {
            let mut headers = http::HeaderMap::new();
            for (name, value) in c.sign("shop", body, triggered).unwrap() {
                headers.insert(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            headers.insert(
                "x-shopify-triggered-at",
                triggered.to_rfc3339().parse().unwrap(),
            );
            let request = signature::SignedRequest {
                headers: &headers,
                body,
            };
            let now = Timestamp::from_secs(1_700_000_000 + late);
            c.sources[&shop]
                .scheme
                .verify(&shop, &request, now)
                .map(|_| ())
                .map_err(|e| e.code())
        };
        assert_eq!(at(86_400), Ok(()));
        assert_eq!(at(86_401), Err("timestamp_out_of_tolerance"));
    }

    #[test]
    fn the_receiver_and_forwarding_take_the_parts_as_built() {
        use crate::memory::{MemoryLedger, MemoryQueue};
        let c = Config::from_toml(EXAMPLE_CONFIG).unwrap();
        let counts = |c: &Config| -> Vec<usize> {
            c.sources
                .values()
                .map(|s| Arc::strong_count(&s.scheme))
                .collect()
        };
        let before = counts(&c);
        let _receiver = crate::Receiver::new(
            &c,
            Arc::new(MemoryLedger::new()),
            Arc::new(MemoryQueue::new(Duration::from_secs(30))),
        );
        let shared: Vec<usize> = before.iter().map(|n| n + 1).collect();
        assert_eq!(counts(&c), shared, "each scheme is shared, not built again");

        let forwarded: Vec<&str> = c.destinations().map(|(name, _)| name.as_str()).collect();
        assert_eq!(forwarded, ["relay"]);
        assert!(crate::Handlers::new()
            .with_forwarding(c.destinations())
            .is_ok());
    }

    #[test]
    fn sign_names_an_unknown_source() {
        let c = Config::from_toml(EXAMPLE_CONFIG).unwrap();
        assert_eq!(
            c.sign("nope", b"{}", Timestamp::from_secs(0))
                .unwrap_err()
                .to_string(),
            "no source named \"nope\" is configured"
        );
        let headers = c.sign("github", b"{}", Timestamp::from_secs(0)).unwrap();
        assert_eq!(headers[0].0, "x-hub-signature-256");
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Config::from_toml(
            "[sources.a]\nscheme='hmac-sha256'\nsecrets=['hunter2-hunter2-hunter2']",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
