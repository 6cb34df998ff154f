//! The receiver Lambda's adapter: API Gateway (HTTP API payload v2 or REST v1) ↔ the receiver
//! core.
//!
//! `POST /webhooks/{source}` goes to the [`Receiver`]; `GET /events/{id}`,
//! `GET /events?status=…&source=…&limit=…`, `GET /events/{id}/payload` and
//! `POST /events/{id}/replay` to the status API, which API Gateway guards with IAM. `lambda_http` has already undone API Gateway's base64
//! body encoding, so the signature is checked over the bytes the provider sent. The
//! invocation's X-Ray trace header (Lambda's context) goes to the queue with the event.

use std::sync::Arc;

mod base64_body;

use hookgate_core::metrics::{Emf, Metrics, SeriesLimits};
use hookgate_core::replay::Replayer;
use hookgate_core::status::{Access, StatusApi};
use hookgate_core::{Archive, Config, IncomingRequest, Ledger, Queue, Receiver, Reply};
use lambda_http::http::{Method, StatusCode};
use lambda_http::request::LambdaRequest;
use lambda_http::{service_fn, Body, Error, LambdaEvent, Request, RequestExt, Response, Service};

/// The receiver function: built once per cold start, then shared by every invocation.
pub struct App {
    receiver: Receiver,
    status: StatusApi,
}

impl App {
    /// The function over the given ports.
    pub fn new(
        config: &Config,
        ledger: Arc<dyn Ledger>,
        queue: Arc<dyn Queue>,
    ) -> Result<Self, Error> {
        Self::with_archive(config, ledger, queue, None)
    }

    /// [`App::new`] with the payload archive: bodies over the claim-check size go through it,
    /// and the payload and replay routes read it.
    pub fn with_archive(
        config: &Config,
        ledger: Arc<dyn Ledger>,
        queue: Arc<dyn Queue>,
        archive: Option<Arc<dyn Archive>>,
    ) -> Result<Self, Error> {
        let mut receiver = Receiver::new(config, ledger.clone(), queue.clone());
        if let Some(archive) = &archive {
            receiver = receiver.with_archive(archive.clone());
        }
        let replayer = Replayer::new(config, ledger.clone(), queue, archive);
        Ok(Self {
            receiver,
            status: StatusApi::new(ledger, Access::AuthorizedUpstream)
                .with_replayer(Arc::new(replayer)),
        })
    }

    /// The same function reporting each request's outcome to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn Metrics>) -> Self {
        self.receiver = self.receiver.with_metrics(metrics);
        self
    }

    /// The function as deployed: configuration (Secrets Manager, `HOOKGATE_CONFIG_SECRET_ID`)
    /// and AWS clients from the environment, loaded once per cold start; metrics as
    /// Embedded Metric Format lines on stdout. Fails the cold start with a message naming what
    /// is missing.
    pub async fn from_env() -> Result<Self, Error> {
        let sdk = hookgate_aws::sdk_config().await;
        let config = hookgate_aws::load_config(&sdk).await?;
        let metrics = Arc::new(
            Emf::from_env(&config.metrics)?.with_limits(SeriesLimits::from_config(&config)),
        );
        let backend = hookgate_aws::AwsBackend::from_env_with(&sdk).await?;
        let archive = backend.archive.map(|a| a as Arc<dyn Archive>);
        Ok(
            Self::with_archive(&config, backend.ledger, backend.queue, archive)?
                .with_metrics(metrics),
        )
    }

    /// Handles one invocation as the Lambda runtime hands it over. A body API Gateway marks
    /// `isBase64Encoded` that is not base64 is answered `400 malformed_body` (lambda_http's
    /// conversion would panic on it); everything else goes to [`App::handle`]. The answer is
    /// lambda_http's response for the event's origin (payload v2 or v1).
    pub async fn handle_event(
        &self,
        event: LambdaEvent<LambdaRequest>,
    ) -> Result<impl serde::Serialize + Send, Error> {
        let (event, body) = base64_body::check(event);
        let mut adapter = lambda_http::Adapter::from(service_fn(|request: Request| {
            self.handle_with(request, body)
        }));
        adapter.call(event).await
    }

    /// Handles one API Gateway request.
    pub async fn handle(&self, request: Request) -> Result<Response<Body>, Error> {
        self.handle_with(request, base64_body::BodyEncoding::Readable)
            .await
    }

    async fn handle_with(
        &self,
        request: Request,
        body: base64_body::BodyEncoding,
    ) -> Result<Response<Body>, Error> {
        let reply = match route(&request) {
            Route::Webhook(_) if body == base64_body::BodyEncoding::NotBase64 => Reply::error(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                "the body is marked base64-encoded but is not valid base64",
            ),
            Route::Webhook(source) => {
                // This invocation's X-Ray trace header, passed on to the queue message so the
                // processor's invocation joins the same trace.
                let trace_header = request
                    .lambda_context_ref()
                    .and_then(|context| context.xray_trace_id.clone());
                let (parts, body) = request.into_parts();
                let incoming = IncomingRequest {
                    method: parts.method,
                    source,
                    headers: parts.headers,
                    body: bytes::Bytes::copy_from_slice(body.as_ref()),
                    trace_header,
                };
                self.receiver.handle(incoming).await
            }
            Route::Status(id) if request.method() == Method::GET => {
                self.status.get_event(None, &id).await
            }
            Route::Payload(id) if request.method() == Method::GET => {
                return Ok(match self.status.get_payload(None, &id).await {
                    Ok(payload) => payload_response(payload),
                    Err(reply) => to_response(&reply),
                });
            }
            Route::Replay(id) if request.method() == Method::POST => {
                let run = request
                    .query_string_parameters()
                    .first("run")
                    .map(str::to_owned);
                self.status.replay(None, &id, run.as_deref()).await
            }
            Route::Payload(_) => Reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "only GET is accepted",
            ),
            Route::Replay(_) => Reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "only POST is accepted",
            ),
            Route::List if request.method() == Method::GET => {
                let query = request.query_string_parameters();
                let params: Vec<(&str, &str)> = query.iter().collect();
                self.status.list_events(None, &params).await
            }
            Route::Status(_) | Route::List => Reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "only GET is accepted",
            ),
            Route::Unknown => Reply::error(StatusCode::NOT_FOUND, "not_found", "no such route"),
        };
        Ok(to_response(&reply))
    }
}

enum Route {
    Webhook(String),
    Status(String),
    Payload(String),
    Replay(String),
    List,
    Unknown,
}

/// Path parameters when API Gateway gives them; the path itself otherwise (e.g. `$default`
/// routes or a proxy resource).
fn route(request: &Request) -> Route {
    let params = request.path_parameters();
    if let Some(source) = params.first("source") {
        return Route::Webhook(source.to_owned());
    }
    let path = request.uri().path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if let Some(id) = params.first("id") {
        // `/events/{id}`, `/events/{id}/payload` and `/events/{id}/replay` share the parameter.
        return match segments.last() {
            Some(&"payload") => Route::Payload(id.to_owned()),
            Some(&"replay") => Route::Replay(id.to_owned()),
            _ => Route::Status(id.to_owned()),
        };
    }
    match segments.as_slice() {
        [.., "webhooks", source] => Route::Webhook((*source).to_owned()),
        [.., "events", id, "payload"] => Route::Payload((*id).to_owned()),
        [.., "events", id, "replay"] => Route::Replay((*id).to_owned()),
        [.., "events", id] => Route::Status((*id).to_owned()),
        [.., "events"] => Route::List,
        _ => Route::Unknown,
    }
}

/// Most payload bytes one Lambda answer carries: API Gateway receives the body base64-encoded
/// inside Lambda's 6 MB response limit.
const MAX_PAYLOAD_RESPONSE: usize = 4 * 1024 * 1024;

/// A payload as the answer: the provider's bytes, their content type, never rendered.
fn payload_response(payload: hookgate_core::status::PayloadBody) -> Response<Body> {
    if payload.body.len() > MAX_PAYLOAD_RESPONSE {
        return to_response(&Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the payload is {} bytes, more than a Lambda answer carries; read it with `hookgate payload ID` (SHA-256 {})",
                payload.body.len(),
                payload.sha256
            ),
        ));
    }
    let mut response = Response::new(Body::Binary(payload.body.to_vec()));
    let headers = response.headers_mut();
    let content_type = lambda_http::http::HeaderValue::from_str(&payload.content_type)
        .unwrap_or_else(|_| {
            lambda_http::http::HeaderValue::from_static("application/octet-stream")
        });
    headers.insert(lambda_http::http::header::CONTENT_TYPE, content_type);
    headers.insert(
        lambda_http::http::header::CONTENT_DISPOSITION,
        lambda_http::http::HeaderValue::from_static("attachment"),
    );
    headers.insert(
        "x-content-type-options",
        lambda_http::http::HeaderValue::from_static("nosniff"),
    );
    if let Ok(sha) = lambda_http::http::HeaderValue::from_str(&payload.sha256) {
        headers.insert("x-hookgate-payload-sha256", sha);
    }
    response
}

fn to_response(reply: &Reply) -> Response<Body> {
    let mut response = Response::new(Body::Text(reply.body_string()));
    *response.status_mut() = reply.status;
    response.headers_mut().insert(
        lambda_http::http::header::CONTENT_TYPE,
        lambda_http::http::HeaderValue::from_static("application/json"),
    );
    response
}
