//! Routes and destinations in the processor: which work a record is, the gate before a
//! delivery, the gate's feedback after it, and the fan-out of one event into deliveries.
//!
//! ## How delivery works
//!
//! An event whose source has `[[routes]]` (and no handler registered in code for its type) is
//! planned: each matching route's filter runs, and every destination it names gets one
//! delivery, its body the route's transform (or the event's body).
//!
//! - **One delivery** (the common case, and every `[sources.NAME.forward]`): the event's own
//!   message delivers it — the lease, the attempt and the retries are the event's, and the
//!   ledger records the destination on it. No extra message, no extra ledger write.
//! - **Several** (or a body too large to plan before it is read): the event *fans out*. Each
//!   delivery becomes an event of its own, `<event id>@<destination>`, claimed in the ledger
//!   and sent as a message of its own; the event's attempt succeeds once every delivery is
//!   claimed and on the queue, and records their names. From then on each delivery has its own
//!   attempts, backoff, status and DLQ outcome: a destination that fails is retried alone,
//!   and the others are never called again. `GET /events/{id}` shows the deliveries and their
//!   aggregate.
//!
//! Before a delivery's attempt, the destination's gate (see [`crate::destination_gate`]) is
//! asked: a destination whose circuit is open or that is disabled, or one over its rate
//! limit, **holds** the delivery — handed to a delayed copy of its message, no attempt, no
//! receive counted — until the circuit's cool-down ends, the next rate window opens, or (for a
//! disabled destination) the next check. After the attempt, the outcome goes back to the gate:
//! a success closes the circuit, a retryable failure counts towards opening it, and `410 Gone`
//! disables the destination until an operator enables it again.
//!
//! A route's filter or transform that fails (an error, or over its time or output budget)
//! fails that delivery permanently: it is recorded `dead_lettered` with the reason, without a
//! message, and the event's other deliveries go on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::{info, warn};

use super::{receives_before, PassOn, Processor, RecordOutcome};
use crate::clock::Timestamp;
use crate::delivery::{DestinationError, Forwarder};
use crate::destination_gate::{
    admission, Admission, DestinationGate, HoldReason, RateDecision, DISABLED_RECHECK,
};
use crate::destination_policy::DestinationName;
use crate::envelope::{Envelope, QueuedEvent};
use crate::handler::{Handled, Handler, HandlerError};
use crate::ledger::{
    truncate_error, Attempt, AttemptEnd, AttemptStart, Claim, ClaimOutcome, EventStatus,
    HistoryEntry, LedgerError, ReplayOutcome, ReplayStart, StartOutcome,
};
use crate::queue::{attr, attributes_size, OutgoingMessage, ReceivedMessage};
use crate::routing::{PlannedDelivery, Routing, Transport};

/// How long a delivery waits when another delivery holds the probe of an open circuit.
const PROBE_WAIT: Duration = Duration::from_secs(5);

/// What the processor needs to deliver to destinations: the routes, a sender per destination,
/// and the gate they share with every other processor.
pub struct Destinations {
    routing: Arc<Routing>,
    senders: BTreeMap<DestinationName, Arc<dyn Handler>>,
    gate: Arc<dyn DestinationGate>,
    /// How long a delivery to a disabled destination waits before it looks again.
    disabled_recheck: Duration,
}

impl std::fmt::Debug for Destinations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destinations")
            .field("senders", &self.senders.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Destinations {
    /// The destinations of `routing`, each HTTP one with its own [`Forwarder`]; AWS targets are
    /// added with [`Destinations::with_sender`].
    pub fn new(
        routing: Arc<Routing>,
        gate: Arc<dyn DestinationGate>,
    ) -> Result<Self, DestinationError> {
        let mut senders: BTreeMap<DestinationName, Arc<dyn Handler>> = BTreeMap::new();
        for spec in routing.destinations() {
            if let Transport::Http(destination) = &spec.transport {
                senders.insert(
                    spec.name.clone(),
                    Arc::new(Forwarder::new(destination.clone())?),
                );
            }
        }
        Ok(Self {
            routing,
            senders,
            gate,
            disabled_recheck: DISABLED_RECHECK,
        })
    }

    /// The same destinations, a delivery to a disabled one looking again after `every` (a
    /// minute by default).
    pub fn with_disabled_recheck(mut self, every: Duration) -> Self {
        self.disabled_recheck = every;
        self
    }

    /// The same destinations, `name` delivered by `sender` (an EventBridge or SQS target, or a
    /// stand-in).
    pub fn with_sender(mut self, name: &DestinationName, sender: Arc<dyn Handler>) -> Self {
        self.senders.insert(name.clone(), sender);
        self
    }

    /// Destinations no sender delivers yet (an AWS target the caller has not built).
    pub fn unserved(&self) -> Vec<DestinationName> {
        self.routing
            .destinations()
            .filter(|spec| !self.senders.contains_key(&spec.name))
            .map(|spec| spec.name.clone())
            .collect()
    }

    /// The routes.
    pub fn routing(&self) -> &Arc<Routing> {
        &self.routing
    }

    /// The gate.
    pub fn gate(&self) -> &Arc<dyn DestinationGate> {
        &self.gate
    }
}

/// What a record asks the processor to do.
#[derive(Debug)]
pub(super) enum Work {
    /// Run the handler its `(source, type)` chooses.
    Handler,
    /// Deliver to one destination: a delivery's own message, or an event one route delivers.
    Deliver {
        destination: DestinationName,
        /// The body to send when a transform made it (else the event's).
        body: Option<Bytes>,
    },
    /// Fan the event out, one delivery per destination: the plan, when the body was at hand
    /// to make it before the lease (else it is made once the body is read).
    FanOut { plan: Option<Vec<PlannedDelivery>> },
}

impl Processor {
    /// Which work `queued` is (a pure reading of its id, the routes and the handlers).
    pub(super) fn work_for(&self, queued: &QueuedEvent) -> Work {
        let Some(destinations) = &self.destinations else {
            return Work::Handler;
        };
        let event = &queued.envelope;
        if let Some((_, destination)) = event.event_id.delivery_of() {
            return Work::Deliver {
                destination,
                body: None,
            };
        }
        if self
            .handlers
            .has_route(event.source.as_str(), &event.event_type)
            || !destinations.routing.has_routes_for(&event.source)
        {
            return Work::Handler;
        }
        if queued.pointer.is_some() {
            return Work::FanOut { plan: None };
        }
        let plan = destinations.routing.plan(event);
        match plan.as_slice() {
            [only] if only.body.is_ok() => Work::Deliver {
                destination: only.destination.clone(),
                body: only.body.clone().ok().flatten(),
            },
            _ => Work::FanOut { plan: Some(plan) },
        }
    }

    /// Before a delivery's attempt: whether the gate lets it go now. `Err` is the record's
    /// outcome: held (or, if the gate cannot be read for a rate limit, backed off).
    pub(super) async fn admit(
        &self,
        destination: &DestinationName,
        message: &ReceivedMessage,
        received_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), RecordOutcome> {
        let Some(destinations) = &self.destinations else {
            return Ok(());
        };
        let Some(spec) = destinations.routing.destination(destination.as_str()) else {
            // Not configured (any more): the attempt fails and says so.
            return Ok(());
        };
        let gate = &destinations.gate;
        let health = match gate.health(destination).await {
            Ok(health) => Some(health),
            Err(e) => {
                // The breaker fails open: a delivery is better than a stall on the gate.
                warn!(destination = %destination, error = %e, "cannot read the destination's health; delivering");
                None
            }
        };
        if let Some(health) = &health {
            match admission(health, now) {
                Admission::Go => {}
                Admission::Probe => {
                    let lease = spec.timeout + Duration::from_secs(5);
                    match gate.take_probe(destination, now, lease).await {
                        Ok(true) => {
                            info!(destination = %destination, "circuit open: this delivery is the probe")
                        }
                        Ok(false) => {
                            let why = format!(
                                "destination {destination} is open; another delivery is probing it"
                            );
                            return Err(self.hold(message, now.plus(PROBE_WAIT), why).await);
                        }
                        Err(e) => {
                            warn!(destination = %destination, error = %e, "cannot take the probe; delivering");
                        }
                    }
                }
                Admission::Hold { until, why } => {
                    let until = match why {
                        HoldReason::Disabled => now.plus(destinations.disabled_recheck),
                        _ if until <= now => now.plus(PROBE_WAIT),
                        _ => until,
                    };
                    let why = format!("destination {destination} is {}", why.as_str());
                    // Held as long as the event is remembered, then dead-lettered.
                    if now.since(received_at) >= self.hold_limit() {
                        let error = format!("{why}; held past the retention window");
                        warn!(reason = %error, "delivery held too long: to the DLQ");
                        return Err(self
                            .settle(
                                message,
                                error,
                                super::Settle::MoveToDlq,
                                std::time::Instant::now(),
                            )
                            .await);
                    }
                    return Err(self.hold(message, until, why).await);
                }
            }
        }
        if let Some(limit) = spec.rate_limit {
            match gate.take_rate(destination, limit, now).await {
                Ok(RateDecision::Admit) => {}
                Ok(RateDecision::WaitUntil(until)) => {
                    let why = format!("destination {destination} is over its rate limit {limit}");
                    return Err(self.hold(message, until, why).await);
                }
                Err(e) => {
                    warn!(destination = %destination, error = %e, "cannot take from the rate limit; backing off");
                    let delay = self
                        .retry
                        .delay(super::receives(message), None, &mut rand::rng());
                    return Err(self
                        .settle(
                            message,
                            format!("rate limit unavailable: {e}"),
                            super::Settle::Retry(delay),
                            std::time::Instant::now(),
                        )
                        .await);
                }
            }
        }
        Ok(())
    }

    /// How long a delivery may be held: the queue's retention or the dedup window, whichever
    /// is shorter, less an hour.
    fn hold_limit(&self) -> Duration {
        crate::queue::QUEUE_RETENTION
            .min(self.dedup_window)
            .saturating_sub(Duration::from_secs(3600))
    }

    /// Holds a delivery until `until` without an attempt: a delayed copy of its message carries
    /// it, with this receive not counted.
    async fn hold(
        &self,
        message: &ReceivedMessage,
        until: Timestamp,
        why: String,
    ) -> RecordOutcome {
        info!(until = %until, reason = %why, "delivery held");
        let passed = match self
            .pass_on(message, None, until, receives_before(message))
            .await
        {
            // A copy reads as stale when the ledger holds another's ticket — or no row at all
            // (an event never claimed, or forgotten with its dedup window): that one must not
            // be acknowledged away. (The copy already sent then starts the row when it comes;
            // the lease keeps the two from running at once.)
            PassOn::Settled(RecordOutcome::Stale) if self.unknown(message).await => PassOn::Held,
            other => other,
        };
        match passed {
            PassOn::Settled(RecordOutcome::Rescheduled { .. }) => {
                RecordOutcome::Held { why, until }
            }
            PassOn::Settled(other) => other,
            PassOn::Held => {
                // Not re-sent: wait on the visibility timeout instead (this receive counts).
                let wait = until
                    .since(self.clock.now())
                    .min(crate::queue::MAX_VISIBILITY_TIMEOUT / 2);
                let retry_in = self
                    .queue
                    .change_visibility(&message.receipt_handle, wait)
                    .await
                    .ok()
                    .map(|()| wait);
                RecordOutcome::Failed {
                    error: why,
                    retry_in,
                    dead_lettered: false,
                }
            }
        }
    }

    /// Whether the ledger has no row for the event `message` carries.
    async fn unknown(&self, message: &ReceivedMessage) -> bool {
        let Some(id) = message
            .attributes
            .get(attr::EVENT_ID)
            .and_then(|id| crate::envelope::EventId::parse(id).ok())
        else {
            return false;
        };
        matches!(self.ledger.get(&id).await, Ok(None))
    }

    /// Runs one delivery to `destination`: its sender, the transformed body if any, under
    /// `budget`.
    pub(super) async fn deliver(
        &self,
        destination: &DestinationName,
        body: Option<Bytes>,
        mut envelope: Envelope,
        cx: &crate::handler::Context,
        budget: Duration,
    ) -> Result<Handled, HandlerError> {
        let Some(destinations) = &self.destinations else {
            return Err(HandlerError::permanent("no destinations are configured"));
        };
        let Some(sender) = destinations.senders.get(destination) else {
            return Err(HandlerError::permanent(format!(
                "destination {destination} is not configured"
            )));
        };
        if let Some(body) = body {
            envelope.body = body;
            envelope
                .headers
                .insert("content-type".into(), "application/json".into());
        }
        let budget = destinations
            .routing
            .destination(destination.as_str())
            .map_or(budget, |spec| {
                budget.min(spec.timeout + Duration::from_secs(1))
            });
        crate::handler::invoke(&**sender, envelope, cx, budget).await
    }

    /// After a delivery's attempt: its outcome told to the gate. A `410 Gone` disables the
    /// destination and turns the failure into a retry (the delivery then waits, held, until an
    /// operator enables it again).
    pub(super) async fn feedback(
        &self,
        destination: &DestinationName,
        result: Result<Handled, HandlerError>,
        now: Timestamp,
    ) -> Result<Handled, HandlerError> {
        let Some(destinations) = &self.destinations else {
            return result;
        };
        let gate = &destinations.gate;
        let breaker = destinations
            .routing
            .destination(destination.as_str())
            .map(|spec| spec.breaker)
            .unwrap_or_default();
        match result {
            Ok(handled) => {
                if let Err(e) = gate.record_success(destination, now).await {
                    warn!(destination = %destination, error = %e, "cannot record the success on the gate");
                }
                Ok(handled)
            }
            Err(e) if e.delivery.as_ref().and_then(|d| d.status_code) == Some(410) => {
                let reason = "the destination answered 410 Gone";
                warn!(destination = %destination, "410 Gone: destination disabled until an operator enables it");
                if let Err(err) = gate.disable(destination, reason, now).await {
                    warn!(destination = %destination, error = %err, "cannot disable the destination");
                }
                let mut held = HandlerError::retry(format!(
                    "{reason}; destination {destination} disabled (hookgate destinations enable {destination})"
                ));
                held.delivery = e.delivery;
                Err(held)
            }
            Err(e) if !e.permanent => {
                match gate
                    .record_failure(destination, &truncate_error(&e.message), breaker, now)
                    .await
                {
                    Ok(circuit) => {
                        tracing::debug!(destination = %destination, circuit = ?circuit, "failure recorded on the gate");
                    }
                    Err(err) => {
                        warn!(destination = %destination, error = %err, "cannot record the failure on the gate");
                    }
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Fans `envelope` out: one delivery per destination of `plan`, each claimed in the ledger
    /// and sent as a message of its own (a replay of the event, `generation` > 0, replays the
    /// deliveries already made). The attempt succeeds once every delivery is on its way (or
    /// recorded failed, for a route that failed); it is retried if any could not be sent, and
    /// the retry sends only those.
    pub(super) async fn fan_out(
        &self,
        envelope: &Envelope,
        generation: u64,
        plan: Vec<PlannedDelivery>,
        trace_header: Option<String>,
    ) -> (Result<Handled, HandlerError>, Vec<DestinationName>) {
        let names: Vec<DestinationName> = plan.iter().map(|p| p.destination.clone()).collect();
        if plan.is_empty() {
            info!("no route matched; nothing to deliver");
            return (Ok(Handled::default()), names);
        }
        let mut failed = Vec::new();
        let mut outgoing = Vec::new();
        for planned in plan {
            let destination = planned.destination.clone();
            let result = match planned.body {
                Err(failure) => self
                    .record_route_failure(envelope, &destination, &failure.reason)
                    .await
                    .map(|()| None),
                Ok(body) => {
                    self.prepare_delivery(
                        envelope,
                        &destination,
                        body,
                        generation,
                        trace_header.clone(),
                    )
                    .await
                }
            };
            match result {
                Ok(Some(message)) => outgoing.push((destination, message)),
                Ok(None) => {}
                Err(e) => failed.push(format!("{destination}: {e}")),
            }
        }
        // One request for up to ten deliveries (SendMessageBatch).
        let (names_sent, messages): (Vec<_>, Vec<_>) = outgoing.into_iter().unzip();
        for (destination, sent) in names_sent.iter().zip(self.queue.send_batch(messages).await) {
            if let Err(e) = sent {
                failed.push(format!("{destination}: {e}"));
            }
        }
        for f in &failed {
            warn!(delivery = %f, "delivery not sent; the fan-out is retried");
        }
        if failed.is_empty() {
            info!(deliveries = names.len(), "fanned out");
            (Ok(Handled::default()), names)
        } else {
            (
                Err(HandlerError::retry(format!(
                    "fan-out incomplete: {}",
                    failed.join("; ")
                ))),
                names,
            )
        }
    }

    /// Claims the delivery of `envelope` to `destination` (or, for a replayed event, replays a
    /// delivery already made) and returns the message to send; `None` when the delivery needs
    /// none (delivered, or on its way).
    async fn prepare_delivery(
        &self,
        envelope: &Envelope,
        destination: &DestinationName,
        body: Option<Bytes>,
        generation: u64,
        trace_header: Option<String>,
    ) -> Result<Option<OutgoingMessage>, String> {
        let now = self.clock.now();
        let mut delivery = Envelope {
            event_id: envelope.event_id.delivery(destination),
            ..envelope.clone()
        };
        if let Some(body) = body {
            delivery.body = body;
            delivery
                .headers
                .insert("content-type".into(), "application/json".into());
        }
        // The same token on every try of this generation's fan-out: a retried fan-out finds
        // its own claim and sends again (the first send may not have happened).
        let token = format!("fan-out-{generation}");
        let claim = Claim {
            event_id: delivery.event_id.clone(),
            source: delivery.source.clone(),
            event_type: delivery.event_type.clone(),
            now,
            expires_at: now.plus(self.dedup_window).ceil_secs(),
            timeout: Duration::from_secs(30),
            token: token.clone(),
        };
        let send_generation = match self.ledger.claim(&claim).await {
            Ok(ClaimOutcome::Claimed) => 0,
            Ok(ClaimOutcome::Duplicate(
                status @ (EventStatus::Processed | EventStatus::Failed | EventStatus::DeadLettered),
            )) if generation > 0 => {
                let _ = status;
                let replay = ReplayStart {
                    event_id: delivery.event_id.clone(),
                    expected_generation: self
                        .ledger
                        .get(&delivery.event_id)
                        .await
                        .map_err(|e| e.to_string())?
                        .map_or(0, |r| r.generation),
                    token,
                    run: None,
                    now,
                    stale_before: now,
                    entry: HistoryEntry {
                        at: now,
                        kind: "replayed".into(),
                        note: format!("the event was replayed (generation {generation})"),
                    },
                };
                match self.ledger.begin_replay(&replay).await {
                    Ok(ReplayOutcome::Started { generation, .. }) => generation,
                    Ok(ReplayOutcome::InProgress(_) | ReplayOutcome::AlreadyInRun) => {
                        return Ok(None)
                    }
                    Ok(other) => return Err(format!("delivery replay refused: {other:?}")),
                    Err(e) => return Err(e.to_string()),
                }
            }
            // Delivered, or on its way: this delivery needs nothing more.
            Ok(ClaimOutcome::Duplicate(_)) => return Ok(None),
            Ok(ClaimOutcome::InProgress) => {
                return Err("the delivery is being claimed elsewhere".into())
            }
            Err(e) => return Err(e.to_string()),
        };
        let attributes = BTreeMap::from([
            (attr::EVENT_ID.to_owned(), delivery.event_id.to_string()),
            (attr::SOURCE.to_owned(), delivery.source.to_string()),
            (attr::EVENT_TYPE.to_owned(), delivery.event_type.clone()),
            (attr::GENERATION.to_owned(), send_generation.to_string()),
        ]);
        let encoded = delivery.encode_as(send_generation);
        let body = if encoded.len() + attributes_size(&attributes) <= self.queue.max_message_bytes()
        {
            encoded.into_message()
        } else {
            let Some(archive) = &self.archive else {
                return Err("the delivery is too large for the queue and no archive is configured for a claim check".into());
            };
            let pointer = archive.put(&delivery).await.map_err(|e| e.to_string())?;
            delivery.pointer_message(&pointer, send_generation)
        };
        Ok(Some(OutgoingMessage {
            body,
            attributes,
            trace_header,
            delay: None,
        }))
    }

    /// Records the delivery of `envelope` to `destination` failed for good: its route's filter
    /// or transform failed. No message is sent (a replay of the event, once the route is fixed,
    /// plans it again).
    async fn record_route_failure(
        &self,
        envelope: &Envelope,
        destination: &DestinationName,
        reason: &str,
    ) -> Result<(), String> {
        let now = self.clock.now();
        let event_id = envelope.event_id.delivery(destination);
        warn!(destination = %destination, reason, "route failed; delivery not sent");
        let start = AttemptStart {
            event_id: event_id.clone(),
            source: envelope.source.clone(),
            event_type: envelope.event_type.clone(),
            received_at: envelope.received_at,
            expires_at: now.plus(self.dedup_window).ceil_secs(),
            now,
            lease_until: now.plus(Duration::from_secs(30)),
            lease_token: crate::token::uuid().to_string(),
            generation: 0,
            payload: None,
            ticket: None,
            destination: Some(destination.clone()),
        };
        let attempt = match self.ledger.start_attempt(&start).await {
            Ok(StartOutcome::Started { attempt }) => attempt,
            Ok(_) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let end = AttemptEnd {
            event_id,
            attempt: Attempt {
                attempt,
                at: now,
                duration_ms: 0,
                success: false,
                error: Some(truncate_error(reason)),
                note: Some("route failed: not sent, not on the DLQ; replay the event once the route is fixed".into()),
                url: None,
                status_code: None,
            },
            status: EventStatus::DeadLettered,
            now,
            next_attempt_at: None,
            deliveries: Vec::new(),
        };
        match self.ledger.finish_attempt(&end).await {
            Ok(()) | Err(LedgerError::Conflict(_)) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}
