//! Routing: which destinations an event goes to, and with what body.
//!
//! `[destinations.NAME]` tables name where deliveries go (an HTTP endpoint signed with
//! Standard Webhooks, an EventBridge bus, an SQS queue) with each one's timeout, rate limit and
//! circuit-breaker options; `[[routes]]` say which events of a source go to which of them, by
//! event type ([`glob`]), by a jq `filter`, with an optional jq `transform` of the body; the
//! `[routing]` table sets the budgets of those programs. A legacy `[sources.NAME.forward]` is a
//! destination named NAME and a route from NAME to it. All of it is checked and compiled once,
//! at load ([`table`]); [`Routing::plan`] then turns an event into its deliveries, one per
//! destination. Sending them is the processor's business, not this module's.
//!
//! # jq, and what a runaway program does
//!
//! Programs are compiled with the `jaq` crates ([`jq`]). What we found running jaq 3 on
//! runaway programs, unguarded:
//!
//! - `def f: f; f`, `until(false; .)`, `[repeat(1)]`, `reduce range(1e9) as $i (0; .+$i)`:
//!   run for ever (jaq turns the tail call into a loop; the collections grow memory);
//! - `def f: 1 + f; f`, `def f: [f]; f`: overflow the thread's stack — a stack overflow
//!   aborts the whole process, it cannot be caught;
//! - `[range(1e12)]`, `last(range(1e12))`: jaq's `range` is a native loop, so no jq step
//!   happens while it runs;
//! - `"x" * 1e9` (with an integer count), `tojson` of a value nested 100,000 deep: one native
//!   operation, seconds long, hundreds of MB (or a stack overflow for the deep value);
//! - `halt`, `halt_error`: exit the process; `env` reads its environment (credentials);
//! - `fromjson` of `"[" * 1000000`: jaq's parser recurses without limit (stack overflow).
//!
//! The guard ([`jq`]): a hook jaq calls on every step of an evaluation checks the deadline
//! (every 16 steps) and the stack used by jq's recursion (16 MiB, on a 64 MiB thread), and
//! unwinds the evaluation when either is past; `range` is replaced by a definition so its
//! outputs are steps too; `fromjson` is replaced by one limited to 128 levels; `halt`, `env`,
//! `debug` and `stderr` are withheld. Evaluations run on worker threads ([`runner`]) and the
//! caller waits until the deadline and no longer. So the first three kinds above end with
//! `Err` at the budget (the stack kind in less than a millisecond more), and their thread is
//! reused. The fourth kind cannot be interrupted: its caller still gets `Err` at the deadline,
//! its thread is abandoned until the operation ends, and at most four abandoned threads exist at
//! once (further evaluations fail at once). What such a thread allocates meanwhile is not
//! bounded: a program that multiplies a string by a billion can still exhaust memory. Input
//! bodies are parsed only when they are JSON nested at most 128 deep; a transform's output is
//! measured without recursion before it is written, and refused past
//! `jq_max_output_bytes` or 128 levels.

pub mod glob;
pub mod jq;
pub mod runner;
pub mod table;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::delivery::Destination;
use crate::destination_policy::{BreakerOptions, DestinationName, RateLimit};
use crate::envelope::{Envelope, SourceName};
use glob::TypeGlob;
use jq::{Answer, JqInput, JqProgram, Want};
use runner::Runner;

pub use table::{DestinationDocument, DestinationKind, RouteDocument, RoutingOptions};

/// How a destination is reached.
// Built once per configuration and read by reference: the size of the HTTP variant costs
// nothing, and the processor matches on the destination itself.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Transport {
    /// An HTTP endpoint: POST, signed with Standard Webhooks.
    Http(Destination),
    /// An EventBridge bus, by name or ARN: `PutEvents`.
    EventBridge {
        /// The bus's name or ARN.
        event_bus: String,
    },
    /// An SQS queue: `SendMessage`.
    Sqs {
        /// The queue's URL.
        queue_url: String,
    },
}

impl Transport {
    /// `http`, `eventbridge` or `sqs`: the `kind` this transport is configured with.
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Http(_) => "http",
            Transport::EventBridge { .. } => "eventbridge",
            Transport::Sqs { .. } => "sqs",
        }
    }
}

/// A destination, configured and checked.
#[derive(Debug, Clone)]
pub struct DestinationSpec {
    /// Its name: `[destinations.NAME]`, or the source's name for a legacy `forward`.
    pub name: DestinationName,
    /// How it is reached.
    pub transport: Transport,
    /// At most this many sends per second, minute or hour, if set.
    pub rate_limit: Option<RateLimit>,
    /// When its circuit opens, and for how long.
    pub breaker: BreakerOptions,
    /// How long one send may take (`timeout_ms`, default 10 s).
    pub timeout: Duration,
}

/// One delivery an event makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDelivery {
    /// Where it goes.
    pub destination: DestinationName,
    /// Ok(None): send the original body. Ok(Some(json)): the transform's output, compact JSON.
    /// Err: the route's filter or transform failed (error, budget) — this delivery fails
    /// permanently with this reason.
    pub body: Result<Option<Bytes>, RouteFailure>,
}

/// Why a route's filter or transform gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct RouteFailure {
    /// Names the route and the program, e.g. `routes[1].transform: exceeded its time budget`.
    pub reason: String,
}

/// The budgets of every jq evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JqBudget {
    /// How long one evaluation may run.
    pub timeout: Duration,
    /// The largest transform output, in bytes.
    pub max_output_bytes: usize,
}

/// A route, compiled.
#[derive(Debug)]
struct Route {
    /// How errors name it: `routes[3]`, or `sources.NAME.forward` for a legacy forward.
    label: String,
    source: SourceName,
    types: Option<Vec<TypeGlob>>,
    filter: Option<Arc<JqProgram>>,
    transform: Option<Arc<JqProgram>>,
    to: Vec<DestinationName>,
}

impl Route {
    fn takes(&self, event: &Envelope) -> bool {
        self.source == event.source
            && self
                .types
                .as_ref()
                .is_none_or(|globs| globs.iter().any(|g| g.matches(&event.event_type)))
    }
}

/// Every destination and route, compiled: what [`crate::Config::routing`] gives.
pub struct Routing {
    destinations: BTreeMap<String, DestinationSpec>,
    routes: Vec<Route>,
    budget: JqBudget,
    runner: Runner,
}

impl fmt::Debug for Routing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routing")
            .field("destinations", &self.destinations)
            .field("routes", &self.routes)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Routing {
    /// Every destination, by name.
    pub fn destinations(&self) -> impl Iterator<Item = &DestinationSpec> {
        self.destinations.values()
    }

    /// The destination named `name`.
    pub fn destination(&self, name: &str) -> Option<&DestinationSpec> {
        self.destinations.get(name)
    }

    /// Whether any route takes events of `source`.
    pub fn has_routes_for(&self, source: &SourceName) -> bool {
        self.routes.iter().any(|r| &r.source == source)
    }

    /// The budgets jq programs run under.
    pub fn budget(&self) -> JqBudget {
        self.budget
    }

    /// jq evaluations that overran their budget inside one native operation and whose thread
    /// is still running (at most [`runner::MAX_RUNAWAYS`]).
    pub fn runaway_evaluations(&self) -> usize {
        self.runner.runaways()
    }

    /// The deliveries `event` makes, one per destination, in route order; when two matching
    /// routes name the same destination the first wins (its transform).
    ///
    /// A route matches when its source and types take the event and its filter's first
    /// output is truthy; a route whose filter fails matches with the failure (its
    /// destinations get `Err`, and later routes do not replace it). A route whose every
    /// destination is already planned is not evaluated.
    ///
    /// Without jq programs this is a few comparisons. With them it blocks: each program runs
    /// on a worker thread and is waited for up to its budget (`[routing] jq_timeout_ms`), so
    /// call it where blocking is allowed (`spawn_blocking` in async code) when routes have
    /// programs.
    pub fn plan(&self, event: &Envelope) -> Vec<PlannedDelivery> {
        let mut planned: Vec<PlannedDelivery> = Vec::new();
        let mut input: Option<Arc<JqInput>> = None;
        let is_planned = |planned: &[PlannedDelivery], d: &DestinationName| {
            planned.iter().any(|p| &p.destination == d)
        };
        for route in self.routes.iter().filter(|r| r.takes(event)) {
            if route.to.iter().all(|d| is_planned(&planned, d)) {
                continue;
            }
            let Some(body) = self.body_of(route, event, &mut input) else {
                continue;
            };
            for destination in &route.to {
                if !is_planned(&planned, destination) {
                    planned.push(PlannedDelivery {
                        destination: destination.clone(),
                        body: body.clone(),
                    });
                }
            }
        }
        planned
    }

    /// What `route` sends for `event`: `None` when its filter excludes the event.
    fn body_of(
        &self,
        route: &Route,
        event: &Envelope,
        input: &mut Option<Arc<JqInput>>,
    ) -> Option<Result<Option<Bytes>, RouteFailure>> {
        let mut input_of =
            || Arc::clone(input.get_or_insert_with(|| Arc::new(JqInput::new(event))));
        let fail = |program: &str, why: jq::JqError| RouteFailure {
            reason: format!("{}.{program}: {why}", route.label),
        };
        if let Some(filter) = &route.filter {
            let verdict =
                self.runner
                    .evaluate(filter, &input_of(), Want::Verdict, self.budget.timeout);
            match verdict {
                Ok(Answer::Verdict(true)) => {}
                Ok(_) => return None,
                Err(why) => return Some(Err(fail("filter", why))),
            }
        }
        let Some(transform) = &route.transform else {
            return Some(Ok(None));
        };
        let want = Want::OneOutput {
            max_bytes: self.budget.max_output_bytes,
        };
        Some(
            match self
                .runner
                .evaluate(transform, &input_of(), want, self.budget.timeout)
            {
                Ok(Answer::Output(json)) => Ok(Some(json)),
                Ok(Answer::Verdict(_)) => Err(fail(
                    "transform",
                    jq::JqError::Unavailable("gave a verdict, not an output".into()),
                )),
                Err(why) => Err(fail("transform", why)),
            },
        )
    }
}

#[cfg(test)]
mod tests;
