//! Replies to HTTP callers, shaped once for every adapter (Lambda, local stack).
//!
//! Every answer is JSON; every error is `{"error": "<stable_code>", "message": "…"}`.

use http::StatusCode;
use serde_json::{json, Value};

/// An HTTP answer with a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The status code.
    pub status: StatusCode,
    /// The JSON body.
    pub body: Value,
}

impl Reply {
    /// A success answer.
    pub fn ok(status: StatusCode, body: Value) -> Self {
        Self { status, body }
    }

    /// An error answer with a stable `code` and a human `message`.
    pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": code, "message": message.into() }),
        }
    }

    /// The `error` code, if this is an error answer.
    pub fn error_code(&self) -> Option<&str> {
        self.body.get("error").and_then(Value::as_str)
    }

    /// The body serialised.
    pub fn body_string(&self) -> String {
        self.body.to_string()
    }
}
