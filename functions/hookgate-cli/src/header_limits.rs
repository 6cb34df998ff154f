//! The local stack's limits on request headers, answered in JSON like every other error.
//!
//! hyper refuses a header section it will not parse (more header lines than its table holds,
//! more bytes than its read buffer) with a bare `431` and no body, before any route runs. The
//! local stack sets hyper's own limits a little above these (see [`crate::http_server`]) and
//! refuses here instead, so a client gets `431 {"error":"headers_too_large",…}`. The limits follow API
//! Gateway's (about 10 KiB of request line and headers), so what the local stack accepts, API
//! Gateway would too; on AWS it is API Gateway that answers an over-large request, before the
//! receiver function runs.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hookgate_core::Reply;

/// Most header lines a request may carry.
pub const MAX_HEADER_COUNT: usize = 100;

/// Most bytes of header names and values (with `": "` and CRLF per line) a request may carry.
pub const MAX_HEADER_BYTES: usize = 10 * 1024;

/// hyper's own limit on header lines: above [`MAX_HEADER_COUNT`], so this layer answers a
/// request a little over it; hyper refuses more (a bare `431`).
pub const HYPER_MAX_HEADERS: usize = 200;

/// hyper's own read buffer per connection (request line and headers): above
/// [`MAX_HEADER_BYTES`], so this layer answers a request a little over it, and small, so that a
/// connection costs little memory; hyper refuses a longer head (a bare `431`).
pub const HYPER_MAX_BUF_SIZE: usize = 16 * 1024;

/// Refuses a request over [`MAX_HEADER_COUNT`] header lines or [`MAX_HEADER_BYTES`] bytes of
/// headers with `431 headers_too_large`.
pub async fn refuse_oversized_headers(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers.len() > MAX_HEADER_COUNT || bytes > MAX_HEADER_BYTES {
        let reply = Reply::error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("request headers exceed {MAX_HEADER_COUNT} lines or {MAX_HEADER_BYTES} bytes"),
        );
        return (
            reply.status,
            [(header::CONTENT_TYPE, "application/json")],
            reply.body_string(),
        )
            .into_response();
    }
    next.run(request).await
}
