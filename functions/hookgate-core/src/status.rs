//! The status API: `GET /events/{id}` for operators, behind a bearer token on the local stack
//! (behind IAM on API Gateway).

use std::sync::Arc;

use http::StatusCode;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::envelope::EventId;
use crate::ledger::Ledger;
use crate::reply::Reply;

/// Who may read event status.
#[derive(Debug, Clone)]
pub enum Access {
    /// Callers presenting `Authorization: Bearer <token>` (the local stack).
    Bearer(Secret),
    /// Everyone who reaches the route: API Gateway has already authorised the caller with IAM.
    AuthorizedUpstream,
    /// No one (no admin token configured).
    Closed,
}

/// Answers status queries from the ledger.
pub struct StatusApi {
    ledger: Arc<dyn Ledger>,
    access: Access,
}

impl StatusApi {
    /// A status API over `ledger`, open to callers `access` allows.
    pub fn new(ledger: Arc<dyn Ledger>, access: Access) -> Self {
        Self { ledger, access }
    }

    /// Whether an `Authorization` header value is enough to read status (constant time).
    pub fn authorized(&self, authorization: Option<&str>) -> bool {
        let token = match &self.access {
            Access::AuthorizedUpstream => return true,
            Access::Closed => return false,
            Access::Bearer(token) => token,
        };
        let Some(given) = authorization else {
            return false;
        };
        let Some(given) = given.strip_prefix("Bearer ") else {
            return false;
        };
        // Hash both so the comparison does not leak the token's length either.
        let a = Sha256::digest(token.expose().as_bytes());
        let b = Sha256::digest(given.trim().as_bytes());
        a.ct_eq(&b).into()
    }

    /// `GET /events/{id}`.
    pub async fn get_event(&self, authorization: Option<&str>, id: &str) -> Reply {
        if !self.authorized(authorization) {
            return Reply::error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <admin token>",
            );
        }
        let Ok(id) = EventId::parse(id) else {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "invalid_event_id",
                "not an event id",
            );
        };
        match self.ledger.get(&id).await {
            Ok(Some(record)) => Reply::ok(
                StatusCode::OK,
                serde_json::to_value(&record).unwrap_or_default(),
            ),
            Ok(None) => Reply::error(StatusCode::NOT_FOUND, "event_not_found", "no such event"),
            Err(e) => Reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ledger_unavailable",
                e.to_string(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryLedger;

    #[tokio::test]
    async fn bearer_token_is_required_and_checked() {
        let api = StatusApi::new(
            Arc::new(MemoryLedger::new()),
            Access::Bearer(Secret::new("t0k")),
        );
        for auth in [
            None,
            Some("Bearer nope"),
            Some("t0k"),
            Some("Basic t0k"),
            Some("Bearer "),
        ] {
            let r = api.get_event(auth, "demo:1").await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(r.error_code(), Some("unauthorized"));
        }
        let r = api.get_event(Some("Bearer t0k"), "demo:1").await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::NOT_FOUND, Some("event_not_found"))
        );
        let r = api.get_event(Some("Bearer t0k"), "../etc").await;
        assert_eq!(r.error_code(), Some("invalid_event_id"));
    }

    #[tokio::test]
    async fn closed_and_upstream_access() {
        let closed = StatusApi::new(Arc::new(MemoryLedger::new()), Access::Closed);
        assert!(!closed.authorized(Some("Bearer anything")));
        let iam = StatusApi::new(Arc::new(MemoryLedger::new()), Access::AuthorizedUpstream);
        assert_eq!(
            iam.get_event(None, "demo:1").await.status,
            StatusCode::NOT_FOUND
        );
    }
}
