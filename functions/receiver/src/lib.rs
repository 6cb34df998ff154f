//! The receiver Lambda's adapter: API Gateway (HTTP API payload v2 or REST v1) ↔ the receiver
//! core.
//!
//! `POST /webhooks/{source}` goes to the [`Receiver`]; `GET /events/{id}` and
//! `GET /events?status=…&source=…&limit=…` to the status API, which API Gateway guards with IAM. `lambda_http` has already undone API Gateway's base64
//! body encoding, so the signature is checked over the bytes the provider sent. The
//! invocation's X-Ray trace header (Lambda's context) goes to the queue with the event.

use std::sync::Arc;

mod base64_body;

use hookgate_core::metrics::{Emf, Metrics, SeriesLimits};
use hookgate_core::status::{Access, StatusApi};
use hookgate_core::{Config, IncomingRequest, Ledger, Queue, Receiver, Reply};
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
        Ok(Self {
            receiver: Receiver::new(config, ledger.clone(), queue)?,
            status: StatusApi::new(ledger, Access::AuthorizedUpstream),
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
        Ok(Self::new(&config, backend.ledger, backend.queue)?.with_metrics(metrics))
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
    if let Some(id) = params.first("id") {
        return Route::Status(id.to_owned());
    }
    let path = request.uri().path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [.., "webhooks", source] => Route::Webhook((*source).to_owned()),
        [.., "events", id] => Route::Status((*id).to_owned()),
        [.., "events"] => Route::List,
        _ => Route::Unknown,
    }
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
