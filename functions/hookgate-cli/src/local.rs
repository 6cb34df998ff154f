//! The local stack: the receiver routes over HTTP, plus the processor fed by a local event
//! source, sharing one ledger and one queue.
//!
//! Routes:
//! - `POST /webhooks/{source}`: the receiver (any other method: 405).
//! - `GET /events/{id}`: the event's status and attempts, with `Authorization: Bearer <token>`.
//! - `GET /events?status=…&source=…&type=…&since=…&until=…&limit=…&cursor=…`: the newest
//!   events, newest first, a page at a time, with the same bearer token.
//! - `GET /events/{id}/payload`: the payload as received, with its content type; `POST
//!   /events/{id}/replay` (`?run=ID` for a bulk run): run it again. Same bearer token.
//! - `GET /dlq`, `POST /dlq/redrive` (`{"ids": […]}` or `{}` for all, optional `"rate"`;
//!   `404 not_in_dlq` when none of the ids is in the DLQ), `POST /dlq/purge` (body
//!   `{"confirm": "purge"}`, else `400 confirmation_required`; answers `{"purged": N,
//!   "event_ids": […]}`): the DLQ tools, with the same bearer token. Without an `[admin] token`
//!   these routes and the status routes are closed: the stack says so when it starts, and so does
//!   each `401`.
//! - `GET /metrics`: the receiver's and processor's counters and latency histograms, in the
//!   Prometheus text format. Open, like `/healthz`: scrapers rarely send a token, the stack
//!   listens on 127.0.0.1 by default, and the counters name sources and event types only —
//!   never an event id, a header, a secret or a payload.
//! - `GET /healthz`: liveness.
//! - `/console`: the operator console (see [`crate::console`]); on a non-loopback address it
//!   asks for the `[admin] token`.
//!
//! Every route: a request over the header limits of [`crate::header_limits`] is answered
//! `431 headers_too_large` in JSON; the server's timeouts and connection cap are
//! [`crate::http_server::ServerLimits`].
//!
//! The local event source logs one summary line per processed batch.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use hookgate_core::destination_gate::DestinationGate;
use hookgate_core::dlq::{DeadLetters, Selection};
use hookgate_core::event_source::EventSource;
use hookgate_core::memory::{
    MemoryArchive, MemoryGate, MemoryLedger, MemoryQueue, RecordingTarget,
};
use hookgate_core::metrics::{MetricsRegistry, SeriesLimits};
use hookgate_core::processor::Destinations;
use hookgate_core::replay::Replayer;
use hookgate_core::routing::Transport;
use hookgate_core::status::{Access, StatusApi};
use hookgate_core::Archive;
use hookgate_core::{Config, Handlers, IncomingRequest, Ledger, Processor, Queue, Receiver, Reply};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::console::depth::{MemoryDepth, QueueDepth};
use crate::console::{login_required, ConsoleAccess, ConsoleBackend};
use crate::http_server::{is_body_read_timeout, ServerLimits};

/// The configuration's destinations on the local stack: HTTP ones for real, AWS ones
/// (EventBridge, SQS) by recording stand-ins, the gate (rate limits, breakers) in memory.
fn local_destinations(
    config: &Config,
    gate: Arc<dyn DestinationGate>,
) -> Result<Option<Destinations>, hookgate_core::delivery::DestinationError> {
    let routing = config.routing();
    if routing.destinations().next().is_none() {
        return Ok(None);
    }
    let mut destinations = Destinations::new(routing.clone(), gate)?;
    for spec in routing.destinations() {
        let url = match &spec.transport {
            Transport::Http(_) => continue,
            Transport::EventBridge { event_bus } => format!("eventbridge://{event_bus}"),
            Transport::Sqs { queue_url } => format!("sqs://{queue_url}"),
        };
        warn!(destination = %spec.name, %url, "an AWS destination on the local stack: delivered to an in-memory stand-in");
        destinations = destinations.with_sender(&spec.name, Arc::new(RecordingTarget::new(url)));
    }
    Ok(Some(destinations))
}

/// The receiver, the processor and the status API over one pair of ports.
pub struct LocalStack {
    receiver: Arc<Receiver>,
    status: Arc<StatusApi>,
    processor: Arc<Processor>,
    queue: Arc<dyn Queue>,
    ledger: Arc<dyn Ledger>,
    dead_letters: Option<Arc<DeadLetters>>,
    metrics: Arc<MetricsRegistry>,
    server_limits: ServerLimits,
    console: Arc<ConsoleBackend>,
    admin_token: Option<hookgate_core::Secret>,
    /// Whether the console asks for the admin token (see [`LocalStack::with_console_login`]).
    console_login: bool,
}

/// A configuration the local stack cannot run.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The receiver cannot be built from it.
    #[error(transparent)]
    Config(#[from] hookgate_core::ConfigError),
    /// A `forward` destination cannot be reached as configured.
    #[error("forward destination: {0}")]
    Destination(#[from] hookgate_core::delivery::DestinationError),
}

impl LocalStack {
    /// A stack over the given ports. Sources with a `forward` table deliver to their
    /// destination unless `handlers` routes them first.
    pub fn new(
        config: &Config,
        ledger: Arc<dyn Ledger>,
        queue: Arc<dyn Queue>,
        handlers: Handlers,
    ) -> Result<Self, StackError> {
        Self::with_archive(config, ledger, queue, None, handlers)
    }

    /// [`LocalStack::new`], keeping payloads in `archive` (and claim-checking large bodies
    /// through it), which the payload and replay routes read.
    pub fn with_archive(
        config: &Config,
        ledger: Arc<dyn Ledger>,
        queue: Arc<dyn Queue>,
        archive: Option<Arc<dyn Archive>>,
        handlers: Handlers,
    ) -> Result<Self, StackError> {
        let metrics =
            Arc::new(MetricsRegistry::new().with_limits(SeriesLimits::from_config(config)));
        let mut receiver =
            Receiver::new(config, ledger.clone(), queue.clone()).with_metrics(metrics.clone());
        if let Some(archive) = &archive {
            receiver = receiver.with_archive(archive.clone());
        }
        let access = match &config.admin.token {
            Some(token) => Access::Bearer(token.clone()),
            None => Access::Closed,
        };
        let replayer = Arc::new(Replayer::new(
            config,
            ledger.clone(),
            queue.clone(),
            archive.clone(),
        ));
        let mut processor = Processor::new(config, ledger.clone(), queue.clone(), handlers)
            .with_metrics(metrics.clone());
        if let Some(archive) = archive {
            processor = processor.with_archive(archive);
        }
        let gate: Arc<dyn DestinationGate> = Arc::new(MemoryGate::new());
        if let Some(destinations) = local_destinations(config, gate.clone())? {
            processor = processor.with_destinations(Arc::new(destinations));
        }
        let console = ConsoleBackend::new(ledger.clone(), replayer.clone(), config)
            .with_gate(gate)
            .with_metrics(metrics.clone());
        Ok(Self {
            receiver: Arc::new(receiver),
            status: Arc::new(StatusApi::new(ledger.clone(), access).with_replayer(replayer)),
            processor: Arc::new(processor),
            queue,
            ledger,
            dead_letters: None,
            metrics,
            server_limits: ServerLimits::default(),
            console: Arc::new(console),
            admin_token: config.admin.token.clone(),
            console_login: false,
        })
    }

    /// The same stack with its console asking for the admin token even on loopback (it always
    /// does on any other address: [`LocalStack::serve`] decides from the listener).
    pub fn with_console_login(mut self, required: bool) -> Self {
        self.console_login = required;
        self
    }

    /// The same stack with its HTTP server's timeouts and connection cap set to `limits`.
    pub fn with_server_limits(mut self, limits: ServerLimits) -> Self {
        self.server_limits = limits;
        self
    }

    /// The counters and histograms served at `GET /metrics`.
    pub fn metrics(&self) -> Arc<MetricsRegistry> {
        self.metrics.clone()
    }

    /// The same stack with DLQ tools over `dlq` (the queue's dead-letter queue).
    pub fn with_dlq(mut self, dlq: Arc<dyn Queue>) -> Self {
        let tools = Arc::new(DeadLetters::new(
            self.queue.clone(),
            dlq,
            self.ledger.clone(),
        ));
        if let Some(console) = Arc::get_mut(&mut self.console) {
            console.dead_letters = Some(tools.clone());
        }
        self.dead_letters = Some(tools);
        self
    }

    /// A stack on in-memory backends: a queue with a DLQ after `max_receive_count` receives.
    ///
    /// # Panics
    /// Never for a `Config` that loaded: loading validated it.
    pub fn in_memory(config: Config, handlers: Handlers) -> Self {
        let (queue, dlq) = MemoryQueue::with_dlq(
            config.processor.visibility_timeout(),
            config.processor.max_receive_count,
        );
        let archive = Arc::new(MemoryArchive::with_retention(
            config.archive.retention(&config.receiver),
        ));
        Self::with_archive(
            &config,
            Arc::new(MemoryLedger::new()),
            queue.clone(),
            Some(archive),
            handlers,
        )
        .unwrap_or_else(|e| panic!("a loaded config is valid: {e}"))
        .with_dlq(dlq.clone())
        .with_console_depth(Arc::new(MemoryDepth {
            queue: queue.clone(),
            dlq: Some(dlq),
        }))
    }

    /// The same stack with its console reading the queues' depth from `depth`.
    pub fn with_console_depth(mut self, depth: Arc<dyn QueueDepth>) -> Self {
        if let Some(console) = Arc::get_mut(&mut self.console) {
            console.depth = Some(depth);
        }
        self
    }

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        let state = Routes {
            receiver: self.receiver.clone(),
            status: self.status.clone(),
            dead_letters: self.dead_letters.clone(),
            metrics: self.metrics.clone(),
        };
        Router::new()
            .route("/webhooks/{source}", any(webhook))
            .route("/events", get(event_list))
            .route("/events/{id}", get(event_status))
            .route("/events/{id}/payload", get(event_payload))
            .route("/events/{id}/replay", post(event_replay))
            .route("/dlq", get(dlq_list))
            .route("/dlq/redrive", post(dlq_redrive))
            .route("/dlq/purge", post(dlq_purge))
            .route("/metrics", get(prometheus_metrics))
            .route(
                "/healthz",
                get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
            )
            .fallback(|| async {
                json(Reply::error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such route",
                ))
            })
            .method_not_allowed_fallback(|| async {
                json(Reply::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "method not allowed",
                ))
            })
            .with_state(state)
            .merge(crate::console::router(
                self.console.clone(),
                Arc::new(ConsoleAccess::new(
                    self.admin_token.clone(),
                    self.console_login,
                )),
            ))
            .layer(axum::middleware::from_fn(
                crate::header_limits::refuse_oversized_headers,
            ))
    }

    /// Serves HTTP on `listener` and runs the processor until `shutdown` completes.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if self.status.is_closed() {
            warn!(
                "no [admin] token is configured: the operator routes (GET /events, \
                 GET /events/{{id}}, /dlq) are closed and answer 401"
            );
        }
        let addr = listener.local_addr()?;
        self.console_login = login_required(addr.ip(), self.console_login);
        info!("operator console on http://{addr}/console");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let events = EventSource::new(self.queue.clone(), self.processor.clone());
        let mut stopped = stop_rx.clone();
        let processor = tokio::spawn(events.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        let mut stopped = stop_rx;
        let http = crate::http_server::serve_with(
            listener,
            self.router(),
            self.server_limits,
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        );
        let http = tokio::spawn(http);
        shutdown.await;
        info!("shutting down");
        let _ = stop_tx.send(true);
        let served = http.await.map_err(std::io::Error::other)?;
        let _ = tokio::time::timeout(Duration::from_secs(10), processor).await;
        served
    }
}

#[derive(Clone)]
struct Routes {
    receiver: Arc<Receiver>,
    status: Arc<StatusApi>,
    dead_letters: Option<Arc<DeadLetters>>,
    metrics: Arc<MetricsRegistry>,
}

impl Routes {
    /// The DLQ tools, for a caller with the admin token.
    fn dead_letters(&self, headers: &HeaderMap) -> Result<Arc<DeadLetters>, Reply> {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !self.status.authorized(authorization) {
            return Err(self.status.unauthorized());
        }
        self.dead_letters.clone().ok_or_else(|| {
            Reply::error(
                StatusCode::NOT_FOUND,
                "no_dlq",
                "this stack has no dead-letter queue",
            )
        })
    }
}

/// The content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn prometheus_metrics(State(routes): State<Routes>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        routes.metrics.render(),
    )
        .into_response()
}

fn queue_failure(e: hookgate_core::QueueError) -> Response {
    json(Reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "queue_unavailable",
        e.to_string(),
    ))
}

async fn dlq_list(State(routes): State<Routes>, headers: HeaderMap) -> Response {
    let tools = match routes.dead_letters(&headers) {
        Ok(tools) => tools,
        Err(reply) => return json(reply),
    };
    match tools.list(1000).await {
        Ok(list) => json(Reply::ok(
            StatusCode::OK,
            serde_json::json!({ "messages": list }),
        )),
        Err(e) => queue_failure(e),
    }
}

#[derive(serde::Deserialize, Default)]
struct RedriveRequest {
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    rate: Option<u32>,
}

async fn dlq_redrive(
    State(routes): State<Routes>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let tools = match routes.dead_letters(&headers) {
        Ok(tools) => tools,
        Err(reply) => return json(reply),
    };
    let request: RedriveRequest = if body.is_empty() {
        RedriveRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return json(Reply::error(
                    StatusCode::BAD_REQUEST,
                    "malformed_body",
                    e.to_string(),
                ))
            }
        }
    };
    let selection =
        match request.ids {
            Some(ids) if ids.is_empty() => return json(Reply::error(
                StatusCode::BAD_REQUEST,
                "no_ids",
                "\"ids\" is empty: list event or message ids, or send {} to redrive every message",
            )),
            Some(ids) => Selection::Ids(ids.into_iter().collect()),
            None => Selection::All,
        };
    match tools.redrive(&selection, request.rate).await {
        Ok(report) if report.found_none() => {
            let mut reply = Reply::error(
                StatusCode::NOT_FOUND,
                "not_in_dlq",
                format!(
                    "none of the ids is in the DLQ: {}",
                    report.not_found.join(", ")
                ),
            );
            reply.body["not_found"] = serde_json::json!(report.not_found);
            json(reply)
        }
        Ok(report) => json(Reply::ok(
            StatusCode::OK,
            serde_json::to_value(report).unwrap_or_default(),
        )),
        Err(e) => queue_failure(e),
    }
}

/// The body `POST /dlq/purge` needs: the word, typed out.
#[derive(serde::Deserialize)]
struct PurgeRequest {
    confirm: String,
}

/// What `POST /dlq/purge` must be sent to go ahead.
const PURGE_CONFIRMATION: &str = "purge";

async fn dlq_purge(
    State(routes): State<Routes>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let tools = match routes.dead_letters(&headers) {
        Ok(tools) => tools,
        Err(reply) => return json(reply),
    };
    let confirmed = serde_json::from_slice::<PurgeRequest>(&body)
        .is_ok_and(|r| r.confirm == PURGE_CONFIRMATION);
    if !confirmed {
        return json(Reply::error(
            StatusCode::BAD_REQUEST,
            "confirmation_required",
            "a purge deletes every message in the DLQ: send {\"confirm\":\"purge\"} to go ahead",
        ));
    }
    match tools.purge().await {
        Ok(report) => json(Reply::ok(
            StatusCode::OK,
            serde_json::to_value(report).unwrap_or_default(),
        )),
        Err(e) => queue_failure(e),
    }
}

fn json(reply: Reply) -> Response {
    (
        reply.status,
        [(header::CONTENT_TYPE, "application/json")],
        reply.body_string(),
    )
        .into_response()
}

async fn webhook(
    State(routes): State<Routes>,
    source: Result<Path<String>, PathRejection>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(Path(source)) = source else {
        return json(Reply::error(
            StatusCode::NOT_FOUND,
            "unknown_source",
            "the source name is not valid",
        ));
    };
    let limit = routes.receiver.max_body_bytes();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return json(too_large(limit));
    }
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(e) if is_body_read_timeout(&e) => {
            return json(Reply::error(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            ))
        }
        Err(_) => return json(too_large(limit)),
    };
    // The caller's X-Ray trace header, as API Gateway would continue it.
    let trace_header = headers
        .get("x-amzn-trace-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let request = IncomingRequest {
        method,
        source,
        headers,
        body,
        trace_header,
    };
    json(routes.receiver.handle(request).await)
}

fn too_large(limit: usize) -> Reply {
    Reply::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("body exceeds the limit of {limit} bytes"),
    )
}

async fn event_status(
    State(routes): State<Routes>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(id)) = id else {
        return json(Reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_event_id",
            "not an event id (event ids are <source>:<id>)",
        ));
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    json(routes.status.get_event(authorization, &id).await)
}

async fn event_list(
    State(routes): State<Routes>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Ok(Query(params)) = query else {
        // Decoding is lossy, so this does not happen; answer in JSON all the same.
        return json(Reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the query string could not be read",
        ));
    };
    let params: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    json(routes.status.list_events(authorization, &params).await)
}

async fn event_payload(
    State(routes): State<Routes>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(id)) = id else {
        return json(Reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_event_id",
            "not an event id (event ids are <source>:<id>)",
        ));
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match routes.status.get_payload(authorization, &id).await {
        Ok(payload) => {
            let content_type = axum::http::HeaderValue::from_str(&payload.content_type)
                .unwrap_or_else(|_| {
                    axum::http::HeaderValue::from_static("application/octet-stream")
                });
            let mut response = Response::new(Body::from(payload.body));
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, content_type);
            // A payload is the provider's bytes: never rendered or sniffed as a page.
            h.insert(
                header::CONTENT_DISPOSITION,
                axum::http::HeaderValue::from_static("attachment"),
            );
            h.insert(
                "x-content-type-options",
                axum::http::HeaderValue::from_static("nosniff"),
            );
            if let Ok(sha) = axum::http::HeaderValue::from_str(&payload.sha256) {
                h.insert("x-hookgate-payload-sha256", sha);
            }
            response
        }
        Err(reply) => json(reply),
    }
}

#[derive(serde::Deserialize)]
struct ReplayParams {
    run: Option<String>,
}

async fn event_replay(
    State(routes): State<Routes>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<ReplayParams>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(id)) = id else {
        return json(Reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_event_id",
            "not an event id (event ids are <source>:<id>)",
        ));
    };
    let run = match params {
        Ok(Query(p)) => p.run,
        Err(e) => {
            return json(Reply::error(
                StatusCode::BAD_REQUEST,
                "invalid_run",
                e.body_text(),
            ))
        }
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    json(
        routes
            .status
            .replay(authorization, &id, run.as_deref())
            .await,
    )
}
