//! The receiver core: one webhook request in, one decision out.
//!
//! `POST /webhooks/{source}` → known source → size → signature → event id → ledger claim →
//! enqueue → `202`. A repeat of an enqueued event answers `200 duplicate` and enqueues nothing;
//! a repeat of one this receiver queued itself a moment ago is answered from memory, without
//! the claim the ledger would refuse (see [`crate::settled`]).
//! If enqueueing fails after the claim, the claim is released (and, should that fail too, it
//! times out), so the provider's retry is accepted rather than dropped as a duplicate. A claim
//! whose answer was lost is recognised by its token when the call is retried (see
//! [`Ledger`]), and one that failed outright is released too, in case it was applied.
//!
//! Adapters (the Lambda function, the local stack) only translate HTTP to [`IncomingRequest`]
//! and [`Reply`] back.
//!
//! Logs: a rejected request is one line with its source and error code; every line about an
//! accepted, duplicate or in-progress event is inside an `event` span (`event_id`, `source`,
//! `type`, `xray_trace_id`). No header value, secret or body is logged.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use tracing::{debug, info, warn, Instrument};

use crate::archive::Archive;
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::config::{ArchiveConfig, Config, ReceiverConfig};
use crate::envelope::{Envelope, EventId, SourceName};
use crate::ledger::{Claim, ClaimOutcome, Ledger};
use crate::metrics::{self, EventType, Metrics, Observation, RequestResult};
use crate::queue::{attr, attributes_size, OutgoingMessage, Queue};
use crate::reply::Reply;
use crate::settled::RecentlySettled;
use crate::signature::{SignatureError, SignatureScheme, SignedRequest, Verified};
use crate::xray;

/// A webhook request as the adapters hand it over.
#[derive(Debug, Clone)]
pub struct IncomingRequest {
    /// The HTTP method.
    pub method: Method,
    /// The `{source}` path segment, as sent (not yet validated).
    pub source: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The raw body (base64 already undone by the adapter).
    pub body: Bytes,
    /// The X-Ray trace header of this request (on Lambda, the invocation's), passed on with
    /// the queue message when well-formed (see [`crate::xray`]).
    pub trace_header: Option<String>,
}

/// Why a request was not accepted; each maps to one status and one stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Anything but POST.
    #[error("only POST is accepted")]
    MethodNotAllowed,
    /// No source of that name is configured.
    #[error("no source named {0:?} is configured")]
    UnknownSource(String),
    /// Body over `max_body_bytes`, or its queue message over the queue's limit.
    #[error("body exceeds the limit of {0} bytes")]
    BodyTooLarge(usize),
    /// Body empty, or not decodable as the adapter received it.
    #[error("{0}")]
    MalformedBody(String),
    /// The signature check failed.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// Another request is enqueueing this very event right now.
    #[error("this event is being accepted by another request; retry shortly")]
    InProgress,
    /// The ledger could not be reached.
    #[error("event ledger unavailable; retry later")]
    LedgerUnavailable,
    /// The queue could not be reached; the claim was released.
    #[error("event queue unavailable; retry later")]
    QueueUnavailable,
    /// A body for the claim check could not be archived; the claim was released.
    #[error("payload archive unavailable; retry later")]
    ArchiveUnavailable,
}

impl Rejection {
    /// The HTTP status of this rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::UnknownSource(_) => StatusCode::NOT_FOUND,
            Rejection::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::MalformedBody(_) => StatusCode::BAD_REQUEST,
            Rejection::Signature(_) => StatusCode::UNAUTHORIZED,
            Rejection::InProgress => StatusCode::CONFLICT,
            Rejection::LedgerUnavailable
            | Rejection::QueueUnavailable
            | Rejection::ArchiveUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable `error` code of this rejection.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::UnknownSource(_) => "unknown_source",
            Rejection::BodyTooLarge(_) => "body_too_large",
            Rejection::MalformedBody(_) => "malformed_body",
            Rejection::Signature(e) => e.code(),
            Rejection::InProgress => "event_in_progress",
            Rejection::LedgerUnavailable => "ledger_unavailable",
            Rejection::QueueUnavailable => "queue_unavailable",
            Rejection::ArchiveUnavailable => "archive_unavailable",
        }
    }
}

impl From<Rejection> for Reply {
    fn from(r: Rejection) -> Self {
        Reply::error(r.status(), r.code(), r.to_string())
    }
}

/// What the receiver did with an accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Claimed and enqueued: `202`.
    Queued(EventId),
    /// Seen before: `200`, nothing enqueued.
    Duplicate(EventId),
    /// A provider handshake (Slack `url_verification`, GitHub `ping`): `200` with this body,
    /// nothing enqueued.
    Handshake(serde_json::Value),
}

impl From<Accepted> for Reply {
    fn from(a: Accepted) -> Self {
        match a {
            Accepted::Queued(id) => Reply::ok(
                StatusCode::ACCEPTED,
                json!({
                    "status": "queued",
                    "event_id": id,
                    "status_url": format!("/events/{id}"),
                }),
            ),
            Accepted::Duplicate(id) => Reply::ok(
                StatusCode::OK,
                json!({ "status": "duplicate", "event_id": id }),
            ),
            Accepted::Handshake(body) => Reply::ok(StatusCode::OK, body),
        }
    }
}

#[derive(Debug)]
struct Source {
    /// The scheme the configuration built (shared with it, not built again).
    scheme: Arc<dyn SignatureScheme>,
    /// How long a claim of this source's events deduplicates.
    dedup_window: Duration,
}

/// The receiver: verifies, deduplicates and enqueues webhook requests.
pub struct Receiver {
    sources: HashMap<SourceName, Source>,
    limits: ReceiverConfig,
    ledger: Arc<dyn Ledger>,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn Metrics>,
    /// Where bodies over the claim-check size go, if anywhere.
    archive: Option<Arc<dyn Archive>>,
    archive_config: ArchiveConfig,
    /// Events this receiver queued a moment ago: their repeats are duplicates, known here.
    recent: RecentlySettled,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// A receiver for the sources in `config`, writing to `ledger` and `queue`. It takes each
    /// source's scheme as the configuration built it.
    pub fn new(config: &Config, ledger: Arc<dyn Ledger>, queue: Arc<dyn Queue>) -> Self {
        let sources: HashMap<SourceName, Source> = config
            .sources
            .iter()
            .map(|(name, source)| {
                let source = Source {
                    scheme: source.scheme.clone(),
                    dedup_window: source.dedup_window(),
                };
                (name.clone(), source)
            })
            .collect();
        // Remembered for at most half the shortest window, so never past a claim's.
        let shortest_window = sources
            .values()
            .map(|source| source.dedup_window)
            .min()
            .unwrap_or(Duration::ZERO);
        Self {
            sources,
            recent: RecentlySettled::for_dedup_window(shortest_window),
            limits: config.receiver.clone(),
            ledger,
            queue,
            clock: Arc::new(SystemClock),
            metrics: metrics::noop(),
            archive: None,
            archive_config: config.archive.clone(),
        }
    }

    /// The same receiver putting bodies over `[archive] claim_check_bytes` in `archive` and
    /// enqueueing a pointer to them (the claim check). Without an archive, every body must fit
    /// the queue's message (1 MiB on SQS) or is refused `413`.
    pub fn with_archive(mut self, archive: Arc<dyn Archive>) -> Self {
        self.archive = Some(archive);
        self
    }

    /// The same receiver reading time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same receiver reporting each request's outcome to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Largest body accepted; adapters may refuse larger bodies before reading them whole.
    pub fn max_body_bytes(&self) -> usize {
        self.limits.max_body_bytes
    }

    /// The signature headers `source`'s provider would send with `body` now.
    pub fn sign(&self, source: &str, body: &[u8]) -> Option<Vec<(String, String)>> {
        let name = SourceName::parse(source).ok()?;
        let source = self.sources.get(&name)?;
        Some(source.scheme.sign(body, self.clock.now()))
    }

    /// Handles one request; never panics, always answers.
    pub async fn handle(&self, request: IncomingRequest) -> Reply {
        match self.accept(request).await {
            Ok(accepted) => accepted.into(),
            Err(rejection) => rejection.into(),
        }
    }

    /// Handles one request, with the outcome as a typed result.
    pub async fn accept(&self, request: IncomingRequest) -> Result<Accepted, Rejection> {
        let now = self.clock.now();
        let (name, source, verified) = match self.verify(&request, now) {
            Ok(verified) => verified,
            Err(rejection) => {
                // The path segment as sent: bounded, and escaped so it cannot forge a log line.
                let shown: String = request.source.chars().take(64).collect();
                info!(source = %shown.escape_debug(), error_code = rejection.code(), "request rejected");
                // A POST to a configured source is counted under its name, even when it is
                // refused.
                let configured = SourceName::parse(&request.source)
                    .ok()
                    .filter(|_| request.method == Method::POST)
                    .and_then(|name| self.sources.get_key_value(&name))
                    .map(|(name, _)| name);
                let result = Err(rejection);
                self.observe(configured, None, &result);
                return result;
            }
        };
        let event_type = verified.event_type.clone();
        let signed = verified.type_signed;
        let result = self
            .take(request, name.clone(), source, verified, now)
            .await;
        let event_type = EventType {
            name: &event_type,
            signed,
        };
        self.observe(Some(&name), Some(event_type), &result);
        result
    }

    /// Reports a request to the metrics: posted to `source` (if a configured one), of
    /// `event_type` (once verified), which came to `result`.
    fn observe(
        &self,
        source: Option<&SourceName>,
        event_type: Option<EventType<'_>>,
        result: &Result<Accepted, Rejection>,
    ) {
        let counted = match result {
            Ok(Accepted::Queued(_)) => RequestResult::Enqueued,
            Ok(Accepted::Duplicate(_)) => RequestResult::Duplicate,
            Ok(Accepted::Handshake(_)) => RequestResult::Handshake,
            Err(rejection) => RequestResult::Rejected(rejection.code()),
        };
        let source = source.map(SourceName::as_str);
        self.metrics
            .observe(&Observation::request(source, event_type, counted));
    }

    /// [`Receiver::accept`] once the request is verified: the handshake answered, or the event
    /// claimed and enqueued.
    async fn take(
        &self,
        request: IncomingRequest,
        name: SourceName,
        source: &Source,
        verified: Verified,
        now: Timestamp,
    ) -> Result<Accepted, Rejection> {
        if let Some(body) = verified.respond_now {
            info!(source = %name, r#type = %verified.event_type, "provider handshake answered");
            return Ok(Accepted::Handshake(body));
        }
        let trace_header = request.trace_header.as_deref().and_then(|h| {
            let valid = xray::trace_header(h);
            if valid.is_none() {
                debug!(source = %name, "malformed X-Ray trace header not passed on");
            }
            valid.map(str::to_owned)
        });
        let envelope = Envelope {
            event_id: verified.event_id,
            source: name,
            event_type: verified.event_type,
            received_at: now,
            headers: kept_headers(&request.headers, source.scheme.kept_headers()),
            body: request.body,
        };
        let span = tracing::info_span!(
            "event",
            event_id = %envelope.event_id,
            source = %envelope.source,
            r#type = %envelope.event_type,
            xray_trace_id = trace_header.as_deref(),
        );
        self.enqueue_once(envelope, trace_header, now, source.dedup_window)
            .instrument(span)
            .await
    }

    /// The checks made before anything is kept: method, source, size, signature.
    fn verify(
        &self,
        request: &IncomingRequest,
        now: Timestamp,
    ) -> Result<(SourceName, &Source, Verified), Rejection> {
        if request.method != Method::POST {
            return Err(Rejection::MethodNotAllowed);
        }
        let unknown = || Rejection::UnknownSource(request.source.chars().take(64).collect());
        let name = SourceName::parse(&request.source).map_err(|_| unknown())?;
        let source = self.sources.get(&name).ok_or_else(unknown)?;
        if request.body.len() > self.limits.max_body_bytes {
            return Err(Rejection::BodyTooLarge(self.limits.max_body_bytes));
        }
        if request.body.is_empty() {
            return Err(Rejection::MalformedBody("the request body is empty".into()));
        }
        let signed = SignedRequest {
            headers: &request.headers,
            body: &request.body,
        };
        let verified = source.scheme.verify(&name, &signed, now)?;
        Ok((name, source, verified))
    }

    async fn enqueue_once(
        &self,
        envelope: Envelope,
        trace_header: Option<String>,
        now: Timestamp,
        dedup_window: Duration,
    ) -> Result<Accepted, Rejection> {
        if self.recent.covers(&envelope.event_id, 0, now) {
            info!(status = "queued", remembered = true, "duplicate event");
            return Ok(Accepted::Duplicate(envelope.event_id));
        }
        let attributes = BTreeMap::from([
            (attr::EVENT_ID.to_owned(), envelope.event_id.to_string()),
            (attr::SOURCE.to_owned(), envelope.source.to_string()),
            (attr::EVENT_TYPE.to_owned(), envelope.event_type.clone()),
        ]);
        // A large body goes to the archive and the message carries a pointer (the claim
        // check); any other travels in the message. The message's size is known before the
        // body is copied, and the copy is made only for an event this request claims: a
        // duplicate pays for neither the copy nor the archive.
        let claim_check = self.archive.as_ref().filter(|_| {
            crate::payload::needs_claim_check(envelope.body.len(), &self.archive_config)
        });
        let encoded = match claim_check {
            Some(_) => None,
            None => {
                let encoded = envelope.encode();
                let size = encoded.len() + attributes_size(&attributes);
                if size > self.queue.max_message_bytes() {
                    warn!(size, "event too large for the queue once encoded");
                    return Err(Rejection::BodyTooLarge(self.queue.max_message_bytes()));
                }
                Some(encoded)
            }
        };
        let claim = Claim {
            event_id: envelope.event_id.clone(),
            source: envelope.source.clone(),
            event_type: envelope.event_type.clone(),
            now,
            expires_at: now.plus(dedup_window).ceil_secs(),
            timeout: Duration::from_secs(self.limits.claim_timeout_secs),
            token: crate::token::uuid().to_string(),
        };
        match self.ledger.claim(&claim).await {
            Ok(ClaimOutcome::Claimed) => {}
            Ok(ClaimOutcome::Duplicate(status)) => {
                info!(status = %status, "duplicate event");
                return Ok(Accepted::Duplicate(envelope.event_id));
            }
            Ok(ClaimOutcome::InProgress) => {
                info!("event is being accepted by another request");
                return Err(Rejection::InProgress);
            }
            Err(e) => {
                warn!(error = %e, "claim failed");
                // The put may have been applied all the same, its answer lost on every try:
                // take it back, or the provider's retry would be refused as in progress until
                // the claim times out. (Without a claim of ours in place, this does nothing.)
                if let Err(e) = self.ledger.release(&claim.event_id, &claim.token).await {
                    debug!(reason = %e, "no claim of this request to release");
                }
                return Err(Rejection::LedgerUnavailable);
            }
        }
        let body = match (encoded, claim_check) {
            (Some(encoded), _) => encoded.into_message(),
            (None, Some(archive)) => match archive.put(&envelope).await {
                Ok(pointer) => {
                    debug!(bytes = pointer.size, key = %pointer.key, "body archived (claim check)");
                    envelope.pointer_message(&pointer, 0)
                }
                Err(e) => {
                    warn!(error = %e, "archiving the body failed; releasing the claim");
                    self.release_claim(&claim).await;
                    return Err(Rejection::ArchiveUnavailable);
                }
            },
            // `claim_check` is set exactly when `encoded` is not.
            (None, None) => return Err(Rejection::ArchiveUnavailable),
        };
        let message = OutgoingMessage {
            delay: None,
            body,
            attributes,
            trace_header,
        };
        if let Err(e) = self.queue.send(message).await {
            warn!(error = %e, "enqueue failed; releasing the claim");
            self.release_claim(&claim).await;
            return Err(Rejection::QueueUnavailable);
        }
        // No ledger write after the enqueue: the claim stays `received` (on its way to the
        // queue, or waiting in it) until the processor's lease moves it on. A crash before
        // this point leaves a `received` claim that a retry takes over after
        // `claim_timeout_secs`; a retry before then is refused as in progress (409), never
        // taken for a duplicate.
        self.recent.remember(&envelope.event_id, 0, now);
        info!("event queued");
        Ok(Accepted::Queued(envelope.event_id))
    }
}

impl Receiver {
    /// Forgets this request's claim so the provider's retry is accepted, not a duplicate; should
    /// that fail too, the claim times out after `claim_timeout_secs`.
    async fn release_claim(&self, claim: &Claim) {
        if let Err(e) = self.ledger.release(&claim.event_id, &claim.token).await {
            warn!(error = %e, timeout_secs = self.limits.claim_timeout_secs,
                "release failed; the claim expires on its own");
        }
    }
}

/// Headers kept in the envelope: `content-type` and the scheme's event metadata.
fn kept_headers(headers: &HeaderMap, scheme_headers: &[String]) -> BTreeMap<String, String> {
    std::iter::once("content-type")
        .chain(scheme_headers.iter().map(String::as_str))
        .filter_map(|name| {
            let value = headers.get(name)?.to_str().ok()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}
