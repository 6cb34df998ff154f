//! hookgate's core: everything about receiving and processing webhooks that does not depend on
//! AWS.
//!
//! - [`envelope`]: the event as it travels, and its stable id.
//! - [`config`]: the TOML document, loaded in one step into checked values and built schemes
//!   and destinations.
//! - [`signature`]: how a provider's signature is checked; each scheme's own options.
//! - [`delivery`]: forwarding events to a destination; its options.
//! - [`destination_policy`]: a destination's name, rate limit and circuit-breaker options.
//! - [`routing`]: destinations and routes, jq filters and transforms: the deliveries an event makes.
//! - [`destination_gate`]: the state every processor shares about a destination (its rate
//!   window, its circuit, disabled or not), as a port; [`admission`](destination_gate::admission)
//!   decides from it whether a delivery goes, probes or is held.
//! - [`secret`]: a string that never prints.
//! - [`ledger`], [`queue`] and [`archive`]: the ports, with in-memory implementations in
//!   [`memory`].
//! - [`payload`]: where each event's payload is kept (inline, archive, claim check).
//! - [`receiver`]: request → verify → claim → enqueue → reply.
//! - [`processor`] and [`handler`]: batch → handlers → ledger → `batchItemFailures`.
//! - [`event_source`]: the local stand-in for Lambda's SQS event source mapping.
//! - [`replay`]: running an event again from its kept payload, one or many.
//! - [`status`]: `GET /events/{id}` and the listing `GET /events`; [`status_index`]: the
//!   write-sharded key of the index listings read.
//! - [`testing`]: unit-testing handlers on synthetic or signed events, no AWS, no HTTP.
//! - [`telemetry`]: logging set-up (Lambda's log format and level, the local stack's).
//! - [`xray`]: the X-Ray trace header the receiver hands to the processor.
//! - [`metrics`]: what the cores count and time, as CloudWatch EMF lines or Prometheus text (a
//!   leaf: the cores translate their outcomes into its words); [`metrics_setup`] builds its
//!   sinks from the configuration.
//!
//! The Lambda functions and the `hookgate` command are thin adapters over these.

pub mod archive;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod destination_gate;
pub mod destination_policy;
pub mod dlq;
pub mod envelope;
pub mod event_source;
pub mod faults;
pub mod handler;
pub mod ledger;
pub mod memory;
pub mod metrics;
pub mod metrics_setup;
pub mod payload;
pub mod pending;
pub mod processor;
pub mod queue;
pub mod receiver;
pub mod replay;
pub mod reply;
pub mod routing;
pub mod secret;
pub mod settled;
pub mod signature;
pub mod status;
pub mod status_index;
pub mod telemetry;
pub mod testing;
pub mod token;
pub mod xray;

pub use archive::{Archive, ArchiveError, PayloadRef};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp, TokioClock};
pub use config::{Config, ConfigError};
pub use envelope::{Envelope, EventId, SourceName};
pub use handler::{Context, Delivery, Handled, Handler, HandlerError, Handlers, ResultExt};
pub use ledger::{EventRecord, EventStatus, Ledger, LedgerError};
pub use processor::{BatchOutcome, Processor, RecordOutcome};
pub use queue::{Queue, QueueError};
pub use receiver::{IncomingRequest, Receiver};
pub use reply::Reply;
pub use secret::Secret;
