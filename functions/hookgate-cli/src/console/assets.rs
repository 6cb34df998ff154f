//! The console's stylesheet and script, embedded in the binary: it works offline, from any
//! directory, with nothing but `hookgate`.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The stylesheet.
pub const CSS: &str = include_str!("../../assets/console.css");
/// The script (progressive enhancement only).
pub const JS: &str = include_str!("../../assets/console.js");

/// `GET /console/assets/console.css`.
pub async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

/// `GET /console/assets/console.js`.
pub async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}
