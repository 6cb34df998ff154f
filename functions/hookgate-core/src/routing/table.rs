//! The `[destinations.NAME]`, `[[routes]]` and `[routing]` tables as written, and their
//! compilation into a [`Routing`]: every field checked, every error naming its field
//! (`destinations.billing.url`, `routes[1].to[0]`), every jq program compiled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::glob::TypeGlob;
use super::jq::JqProgram;
use super::runner::Runner;
use super::{DestinationSpec, JqBudget, Route, Routing, Transport};
use crate::delivery::{Destination, ForwardMode, ForwardOptions};
use crate::destination_policy::{BreakerOptions, DestinationName, RateLimit};
use crate::envelope::SourceName;
use crate::secret::Secret;

/// Default `timeout_ms` of a destination.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Longest `timeout_ms`: the longest a processor Lambda runs.
const MAX_TIMEOUT_MS: u64 = 15 * 60 * 1000;
/// Default `max_response_bytes` of an http destination (as a `forward` table's).
const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Default and largest `[routing] jq_timeout_ms`.
pub const DEFAULT_JQ_TIMEOUT_MS: u64 = 50;
const MAX_JQ_TIMEOUT_MS: u64 = 1000;
/// Default and largest `[routing] jq_max_output_bytes`.
pub const DEFAULT_JQ_MAX_OUTPUT_BYTES: usize = 1 << 20;
const MAX_JQ_MAX_OUTPUT_BYTES: usize = 6 << 20;

/// `kind` of a destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKind {
    /// An HTTP endpoint (default).
    #[default]
    Http,
    /// An EventBridge bus.
    EventBridge,
    /// An SQS queue.
    Sqs,
}

impl DestinationKind {
    fn name(self) -> &'static str {
        match self {
            DestinationKind::Http => "http",
            DestinationKind::EventBridge => "eventbridge",
            DestinationKind::Sqs => "sqs",
        }
    }
}

/// `[destinations.NAME]` as written. Which fields apply depends on `kind`; a field of another
/// kind is refused, named.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationDocument {
    /// `http` (default), `eventbridge` or `sqs`.
    #[serde(default)]
    pub kind: DestinationKind,
    /// http: where to POST.
    pub url: Option<String>,
    /// http: the signing secret.
    pub secret: Option<Secret>,
    /// http: static headers.
    pub headers: Option<BTreeMap<String, Secret>>,
    /// http: what decides success.
    pub mode: Option<ForwardMode>,
    /// http: allow plain `http://`.
    pub allow_http: Option<bool>,
    /// http: allow non-public addresses.
    pub allow_private_networks: Option<bool>,
    /// http: most response bytes read.
    pub max_response_bytes: Option<usize>,
    /// eventbridge: the bus's name or ARN.
    pub event_bus: Option<String>,
    /// sqs: the queue's URL.
    pub queue_url: Option<String>,
    /// Every kind: how long one send may take (default 10 s).
    pub timeout_ms: Option<u64>,
    /// Every kind: `"50/s"`, `"600/m"`, `"1000/h"`.
    pub rate_limit: Option<RateLimit>,
    /// Every kind: consecutive failures that open the circuit (default 5).
    pub breaker_failures: Option<u32>,
    /// Every kind: how long an open circuit waits before a probe (default 60 s).
    pub breaker_cool_down_secs: Option<u64>,
}

/// `[[routes]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDocument {
    /// The source whose events the route takes.
    pub source: Option<String>,
    /// Event-type patterns (`*` any run of characters); absent: every type.
    pub types: Option<Vec<String>>,
    /// jq: the event goes when its first output is truthy.
    pub filter: Option<String>,
    /// jq: its one output replaces the body sent.
    pub transform: Option<String>,
    /// The destinations the route delivers to.
    pub to: Option<Vec<String>>,
}

/// `[routing]`: the budgets of jq programs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingOptions {
    /// How long one filter or transform may run, in milliseconds (default 50, at most 1000).
    pub jq_timeout_ms: u64,
    /// The largest transform output, in bytes (default 1 MiB, at most 6 MiB).
    pub jq_max_output_bytes: usize,
}

impl Default for RoutingOptions {
    fn default() -> Self {
        Self {
            jq_timeout_ms: DEFAULT_JQ_TIMEOUT_MS,
            jq_max_output_bytes: DEFAULT_JQ_MAX_OUTPUT_BYTES,
        }
    }
}

/// A `[sources.NAME.forward]` table, already built by the configuration.
#[derive(Debug, Clone)]
pub struct LegacyForward {
    /// The source, which also names the destination.
    pub source: SourceName,
    /// The destination built from the table.
    pub destination: Destination,
    /// Its `timeout_ms`.
    pub timeout: Duration,
}

/// Everything [`Routing::compile`] takes.
#[derive(Debug)]
pub struct RoutingTables<'a> {
    /// `[destinations.NAME]`, by name as written.
    pub destinations: BTreeMap<String, DestinationDocument>,
    /// `[[routes]]`, in order.
    pub routes: Vec<RouteDocument>,
    /// `[routing]`.
    pub options: RoutingOptions,
    /// The configured sources.
    pub sources: &'a BTreeSet<SourceName>,
    /// The sources' `forward` tables.
    pub forwards: Vec<LegacyForward>,
    /// A send must be shorter than this (`processor.handler_timeout_secs`).
    pub handler_timeout: Duration,
}

impl Routing {
    /// Checks and compiles the tables; `Err` names the field at fault.
    pub fn compile(tables: RoutingTables<'_>) -> Result<Self, String> {
        let budget = compile_options(&tables.options)?;
        let mut destinations = BTreeMap::new();
        for (name, document) in tables.destinations {
            let spec = compile_destination(&name, document, tables.handler_timeout)?;
            destinations.insert(name, spec);
        }
        let mut legacy = Vec::new();
        for forward in tables.forwards {
            let source = forward.source.as_str();
            let name = DestinationName::parse(source).map_err(|e| {
                format!(
                    "sources.{source}.forward: this source's name cannot name its destination ({e}); \
                     move the table to [destinations.NAME] with a valid name and add a route"
                )
            })?;
            if destinations.contains_key(source) {
                return Err(format!(
                    "sources.{source}.forward and [destinations.{source}] both define the destination \
                     {source:?}: keep one (move the forward table to [destinations.{source}] and add \
                     a route {{ source = {source:?}, to = [{source:?}] }})"
                ));
            }
            destinations.insert(
                source.to_owned(),
                DestinationSpec {
                    name: name.clone(),
                    transport: Transport::Http(forward.destination),
                    rate_limit: None,
                    breaker: BreakerOptions::default(),
                    timeout: forward.timeout,
                },
            );
            legacy.push(Route {
                label: format!("sources.{source}.forward"),
                source: forward.source,
                types: None,
                filter: None,
                transform: None,
                to: vec![name],
            });
        }
        let mut routes = Vec::new();
        for (i, document) in tables.routes.into_iter().enumerate() {
            routes.push(compile_route(i, document, tables.sources, &destinations)?);
        }
        routes.extend(legacy);
        for name in destinations.keys() {
            if !routes
                .iter()
                .any(|r| r.to.iter().any(|d| d.as_str() == name))
            {
                tracing::warn!(destination = %name, "destination {name:?} is configured but no route delivers to it");
            }
        }
        Ok(Self {
            destinations,
            routes,
            budget,
            runner: Runner::default(),
        })
    }

    /// No destinations, no routes.
    pub fn empty() -> Self {
        Self {
            destinations: BTreeMap::new(),
            routes: Vec::new(),
            budget: JqBudget {
                timeout: Duration::from_millis(DEFAULT_JQ_TIMEOUT_MS),
                max_output_bytes: DEFAULT_JQ_MAX_OUTPUT_BYTES,
            },
            runner: Runner::default(),
        }
    }
}

fn compile_options(options: &RoutingOptions) -> Result<JqBudget, String> {
    if !(1..=MAX_JQ_TIMEOUT_MS).contains(&options.jq_timeout_ms) {
        return Err(format!(
            "routing.jq_timeout_ms must be 1-{MAX_JQ_TIMEOUT_MS}"
        ));
    }
    if !(1..=MAX_JQ_MAX_OUTPUT_BYTES).contains(&options.jq_max_output_bytes) {
        return Err(format!(
            "routing.jq_max_output_bytes must be 1-{MAX_JQ_MAX_OUTPUT_BYTES}"
        ));
    }
    Ok(JqBudget {
        timeout: Duration::from_millis(options.jq_timeout_ms),
        max_output_bytes: options.jq_max_output_bytes,
    })
}

fn compile_destination(
    name: &str,
    d: DestinationDocument,
    handler_timeout: Duration,
) -> Result<DestinationSpec, String> {
    let at = format!("destinations.{name}");
    let parsed = DestinationName::parse(name).map_err(|e| format!("{at}: {e}"))?;
    let kind = d.kind;
    let http_fields = [
        ("url", d.url.is_some()),
        ("secret", d.secret.is_some()),
        ("headers", d.headers.is_some()),
        ("mode", d.mode.is_some()),
        ("allow_http", d.allow_http.is_some()),
        ("allow_private_networks", d.allow_private_networks.is_some()),
        ("max_response_bytes", d.max_response_bytes.is_some()),
    ];
    let own_fields: &[(&str, DestinationKind)] = &[
        ("event_bus", DestinationKind::EventBridge),
        ("queue_url", DestinationKind::Sqs),
    ];
    let set = |field: &str| match field {
        "event_bus" => d.event_bus.is_some(),
        "queue_url" => d.queue_url.is_some(),
        _ => false,
    };
    let refuse = |field: &str, belongs: &str| {
        Err(format!(
            "{at}.{field} belongs to kind = \"{belongs}\" destinations; this one is kind = \"{}\"",
            kind.name()
        ))
    };
    if kind != DestinationKind::Http {
        if let Some((field, _)) = http_fields.iter().find(|(_, set)| *set) {
            return refuse(field, "http");
        }
    }
    for (field, owner) in own_fields {
        if *owner != kind && set(field) {
            return refuse(field, owner.name());
        }
    }
    let timeout_ms = d.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
        return Err(format!("{at}.timeout_ms must be 1-{MAX_TIMEOUT_MS}"));
    }
    if u128::from(timeout_ms) >= handler_timeout.as_millis() {
        return Err(format!(
            "{at}.timeout_ms must be shorter than processor.handler_timeout_secs"
        ));
    }
    let mut breaker = BreakerOptions::default();
    if let Some(failures) = d.breaker_failures {
        if !(1..=1000).contains(&failures) {
            return Err(format!("{at}.breaker_failures must be 1-1000"));
        }
        breaker.failures = failures;
    }
    if let Some(secs) = d.breaker_cool_down_secs {
        if !(1..=86_400).contains(&secs) {
            return Err(format!("{at}.breaker_cool_down_secs must be 1-86400"));
        }
        breaker.cool_down = Duration::from_secs(secs);
    }
    let missing = |field: &str, needs: &str| {
        format!(
            "{at}.{field} is missing (a kind = \"{}\" destination needs {needs})",
            kind.name()
        )
    };
    let transport = match kind {
        DestinationKind::Http => {
            let url = d.url.ok_or_else(|| missing("url", "url and secret"))?;
            let secret = d
                .secret
                .ok_or_else(|| missing("secret", "url and secret"))?;
            let options = ForwardOptions {
                url,
                secret,
                timeout_ms,
                headers: d.headers.unwrap_or_default(),
                mode: d.mode.unwrap_or_default(),
                allow_http: d.allow_http.unwrap_or(false),
                allow_private_networks: d.allow_private_networks.unwrap_or(false),
                max_response_bytes: d.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
            };
            Transport::Http(Destination::new(&options).map_err(|e| format!("{at}: {e}"))?)
        }
        DestinationKind::EventBridge => {
            let bus = d
                .event_bus
                .ok_or_else(|| missing("event_bus", "event_bus"))?;
            check_event_bus(&bus).map_err(|why| format!("{at}.event_bus: {why}"))?;
            Transport::EventBridge { event_bus: bus }
        }
        DestinationKind::Sqs => {
            let queue_url = d
                .queue_url
                .ok_or_else(|| missing("queue_url", "queue_url"))?;
            check_queue_url(&queue_url).map_err(|why| format!("{at}.queue_url: {why}"))?;
            Transport::Sqs { queue_url }
        }
    };
    Ok(DestinationSpec {
        name: parsed,
        transport,
        rate_limit: d.rate_limit,
        breaker,
        timeout: Duration::from_millis(timeout_ms),
    })
}

/// An EventBridge bus: a name (1-256 of `[A-Za-z0-9._/-]`) or an event-bus ARN.
fn check_event_bus(bus: &str) -> Result<(), String> {
    if let Some(rest) = bus.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let ok = parts.len() == 5
            && parts[1] == "events"
            && parts[4]
                .strip_prefix("event-bus/")
                .is_some_and(|n| !n.is_empty() && n.len() <= 256);
        return if ok && bus.len() <= 1600 {
            Ok(())
        } else {
            Err(format!(
                "{bus:?} is not an event-bus ARN (arn:aws:events:REGION:ACCOUNT:event-bus/NAME)"
            ))
        };
    }
    let ok = !bus.is_empty()
        && bus.len() <= 256
        && bus
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{bus:?} is not an event bus name (1-256 of letters, digits, . _ - /) or ARN"
        ))
    }
}

/// An SQS queue URL: http(s), a host, a path naming the account and the queue.
fn check_queue_url(queue_url: &str) -> Result<(), String> {
    let url = url::Url::parse(queue_url).map_err(|e| format!("{queue_url:?}: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(format!("{queue_url:?} is not an http(s) URL with a host"));
    }
    let segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    if segments.len() != 2 {
        return Err(format!(
            "{queue_url:?} is not a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE)"
        ));
    }
    Ok(())
}

fn compile_route(
    i: usize,
    r: RouteDocument,
    sources: &BTreeSet<SourceName>,
    destinations: &BTreeMap<String, DestinationSpec>,
) -> Result<Route, String> {
    let at = format!("routes[{i}]");
    let source = r.source.ok_or_else(|| format!("{at}.source is missing"))?;
    let source = SourceName::parse(&source)
        .ok()
        .filter(|s| sources.contains(s))
        .ok_or_else(|| format!("{at}.source: no source named {source:?} is configured"))?;
    let types = match r.types {
        None => None,
        Some(types) if types.is_empty() => {
            return Err(format!(
                "{at}.types must not be empty (leave it out for every type)"
            ))
        }
        Some(types) => Some(
            types
                .iter()
                .enumerate()
                .map(|(j, t)| TypeGlob::parse(t).map_err(|e| format!("{at}.types[{j}]: {e}")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let program = |field: &str, code: Option<String>| -> Result<Option<Arc<JqProgram>>, String> {
        match code {
            None => Ok(None),
            Some(code) if code.trim().is_empty() => {
                Err(format!("{at}.{field} must not be empty (leave it out)"))
            }
            Some(code) => JqProgram::compile(&code)
                .map(|p| Some(Arc::new(p)))
                .map_err(|why| format!("{at}.{field}: jq: {why}")),
        }
    };
    let filter = program("filter", r.filter)?;
    let transform = program("transform", r.transform)?;
    let to = r.to.unwrap_or_default();
    if to.is_empty() {
        return Err(format!("{at}.to must name at least one destination"));
    }
    let mut names = Vec::with_capacity(to.len());
    for (j, name) in to.iter().enumerate() {
        let Some(spec) = destinations.get(name) else {
            let known: Vec<&str> = destinations.keys().map(String::as_str).collect();
            return Err(format!(
                "{at}.to[{j}]: no destination named {name:?} is configured (configured: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        if names.contains(&spec.name) {
            return Err(format!("{at}.to lists {name:?} twice"));
        }
        names.push(spec.name.clone());
    }
    Ok(Route {
        label: at,
        source,
        types,
        filter,
        transform,
        to: names,
    })
}
