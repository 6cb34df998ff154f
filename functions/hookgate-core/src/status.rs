//! The status API for operators, behind a bearer token on the local stack (behind IAM on API
//! Gateway):
//!
//! - `GET /events/{id}`: one event, with its attempts.
//! - `GET /events?status=…&source=…&type=…&since=…&until=…&limit=…&cursor=…`: the newest
//!   events, newest first, without their attempts, a page at a time (see
//!   [`StatusApi::list_events`]); `destination=NAME` lists the deliveries to one destination.
//!
//! An event fanned out to several destinations shows them under `deliveries` (each delivery
//! is an event of its own, `<event id>@<destination>`), and its `status` is their aggregate:
//! `processed` when every delivery is, `dead_lettered` or `failed` (with
//! `failed_deliveries` naming them) when any is, `processing` while they are on their way.
//! - `GET /events/{id}/payload`: the payload as the provider sent it, with its content type.
//! - `POST /events/{id}/replay`: run it again (see [`crate::replay`]).

use std::sync::Arc;

use http::StatusCode;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use bytes::Bytes;

use crate::clock::Timestamp;
use crate::destination_policy::DestinationName;
use crate::envelope::{EventId, SourceName};
use crate::ledger::{
    newest_first, Cursor, EventRecord, EventStatus, Ledger, LedgerError, ListQuery, PageQuery,
    DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT,
};
use crate::replay::{Origin, Replayer};
use crate::reply::Reply;
use crate::secret::Secret;

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
    replayer: Option<Arc<Replayer>>,
    /// How the replays this API starts say they were asked for (`API`, `console`).
    via: String,
}

/// A payload as `GET /events/{id}/payload` serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadBody {
    /// The provider's `content-type`, or `application/octet-stream`.
    pub content_type: String,
    /// The body, byte for byte.
    pub body: Bytes,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
}

impl StatusApi {
    /// A status API over `ledger`, open to callers `access` allows.
    pub fn new(ledger: Arc<dyn Ledger>, access: Access) -> Self {
        Self {
            ledger,
            access,
            replayer: None,
            via: "API".to_owned(),
        }
    }

    /// The same API serving payloads and replays through `replayer`.
    pub fn with_replayer(mut self, replayer: Arc<Replayer>) -> Self {
        self.replayer = Some(replayer);
        self
    }

    /// `GET /events/{id}/payload`: the body as accepted, or the error reply.
    pub async fn get_payload(
        &self,
        authorization: Option<&str>,
        id: &str,
    ) -> Result<PayloadBody, Reply> {
        if !self.authorized(authorization) {
            return Err(self.unauthorized());
        }
        let id = event_id(id).ok_or_else(invalid_event_id)?;
        let replayer = self.replayer.as_ref().ok_or_else(no_archive)?;
        let envelope = replayer.payload(&id).await.map_err(Reply::from)?;
        Ok(PayloadBody {
            content_type: envelope
                .headers
                .get("content-type")
                .cloned()
                .unwrap_or_else(|| "application/octet-stream".to_owned()),
            sha256: crate::archive::sha256_hex(&envelope.body),
            body: envelope.body,
        })
    }

    /// `POST /events/{id}/replay`: `202` with the event's new status and generation.
    pub async fn replay(&self, authorization: Option<&str>, id: &str, run: Option<&str>) -> Reply {
        if !self.authorized(authorization) {
            return self.unauthorized();
        }
        let Some(id) = event_id(id) else {
            return invalid_event_id();
        };
        let Some(replayer) = &self.replayer else {
            return no_archive();
        };
        let run = match run {
            None => None,
            Some(r)
                if !r.is_empty()
                    && r.len() <= 64
                    && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
            {
                Some(r.to_owned())
            }
            Some(_) => {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    "invalid_run",
                    "run ids are 1-64 characters from [A-Za-z0-9-]",
                )
            }
        };
        let origin = Origin {
            via: self.via.clone(),
            run,
        };
        match replayer.replay(&id, &origin).await {
            Ok(replayed) => Reply::ok(
                StatusCode::ACCEPTED,
                serde_json::to_value(&replayed).unwrap_or_default(),
            ),
            Err(e) => e.into(),
        }
    }

    /// Whether no caller can ever be let in: the local stack has no `[admin] token`.
    pub fn is_closed(&self) -> bool {
        matches!(self.access, Access::Closed)
    }

    /// The `401 unauthorized` answer for a caller [`authorized`](Self::authorized) refused. It
    /// says which token to send, or, when none is configured, that the routes are closed (no
    /// token would do).
    pub fn unauthorized(&self) -> Reply {
        let message = if self.is_closed() {
            "the operator routes are closed: no [admin] token is configured; set one in the \
             configuration and send Authorization: Bearer <that token>"
        } else {
            "send Authorization: Bearer <admin token>"
        };
        Reply::error(StatusCode::UNAUTHORIZED, "unauthorized", message)
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
            return self.unauthorized();
        }
        let Some(id) = event_id(id) else {
            return invalid_event_id();
        };
        match self.ledger.get(&id).await {
            Ok(Some(record)) => {
                let mut body = serde_json::to_value(&record).unwrap_or_default();
                if let Some(fields) = body.as_object_mut() {
                    let payload = record.payload.as_ref();
                    fields.insert("payload_archived".into(), payload.is_some().into());
                    fields.insert("payload_bytes".into(), payload.map(|p| p.bytes).into());
                    fields.insert(
                        "payload_sha256".into(),
                        payload.map(|p| p.sha256.clone()).into(),
                    );
                    if !record.deliveries.is_empty() {
                        match self.deliveries(&record).await {
                            Ok(view) => view.merge_into(fields),
                            Err(e) => {
                                return Reply::error(
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    "ledger_unavailable",
                                    e.to_string(),
                                )
                            }
                        }
                    }
                }
                Reply::ok(StatusCode::OK, body)
            }
            Ok(None) => Reply::error(StatusCode::NOT_FOUND, "event_not_found", "no such event"),
            Err(e) => Reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ledger_unavailable",
                e.to_string(),
            ),
        }
    }

    /// The deliveries of an event that was fanned out, read from the ledger.
    async fn deliveries(&self, record: &EventRecord) -> Result<DeliveriesView, LedgerError> {
        let reads = record.deliveries.iter().map(|d| {
            let id = record.event_id.delivery(d);
            async move { (d.clone(), id.clone(), self.ledger.get(&id).await) }
        });
        let mut rows = Vec::new();
        for (destination, id, read) in futures::future::join_all(reads).await {
            rows.push((destination, id, read?));
        }
        Ok(DeliveriesView {
            own_status: record.status,
            rows,
        })
    }

    /// `GET /events?status=…&source=…&limit=…`: `200 {"events": [summary, …]}`, newest first.
    ///
    /// `params` are the decoded query parameters, in any order. `status` (one of the
    /// [`EventStatus`] names) and `source` narrow the listing; `limit` is 1 to
    /// [`MAX_LIST_LIMIT`] (default [`DEFAULT_LIST_LIMIT`]). A parameter given twice, empty or
    /// out of range answers `400` (`invalid_status`, `invalid_source`, `invalid_limit`);
    /// other parameters are ignored. The caller is checked first, as for
    /// [`get_event`](Self::get_event).
    pub async fn list_events(&self, authorization: Option<&str>, params: &[(&str, &str)]) -> Reply {
        if !self.authorized(authorization) {
            return self.unauthorized();
        }
        let query = match parse_list_query(params) {
            Ok(query) => query,
            Err(reply) => return reply,
        };
        let paged = match parse_page_params(params, &query) {
            Ok(paged) => paged,
            Err(reply) => return reply,
        };
        let unavailable = |e: crate::ledger::LedgerError| {
            Reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ledger_unavailable",
                e.to_string(),
            )
        };
        if let (Some(page_query), None) = (&paged, query.status) {
            // Deliveries to one destination, every status: a page of each, merged.
            let mut all = Vec::new();
            for status in EventStatus::ALL {
                let q = PageQuery {
                    status,
                    ..page_query.clone()
                };
                match self.ledger.list_page(&q).await {
                    Ok(page) => all.extend(page.events),
                    Err(e) => return unavailable(e),
                }
            }
            let events = newest_first(all, query.limit);
            return Reply::ok(StatusCode::OK, serde_json::json!({ "events": events }));
        }
        if let Some(page_query) = paged {
            return match self.ledger.list_page(&page_query).await {
                Ok(page) => {
                    // `next_cursor` only when there may be more: the answer of a listing that
                    // fits one page is what it always was.
                    let mut body = serde_json::json!({ "events": page.events });
                    if let Some(next) = page.next {
                        body["next_cursor"] = next.encode().into();
                    }
                    Reply::ok(StatusCode::OK, body)
                }
                Err(e) => unavailable(e),
            };
        }
        match self.ledger.list(&query).await {
            Ok(events) => Reply::ok(StatusCode::OK, serde_json::json!({ "events": events })),
            Err(e) => unavailable(e),
        }
    }
}

/// An event's deliveries, as `GET /events/{id}` shows them: one entry per destination, and
/// the event's status as their aggregate.
struct DeliveriesView {
    /// The event's own status: `processed` once it was fanned out.
    own_status: EventStatus,
    /// `(destination, delivery id, its record)`; `None` for one not in the ledger (yet).
    rows: Vec<(DestinationName, EventId, Option<EventRecord>)>,
}

impl DeliveriesView {
    /// The event's status as its deliveries have it: `processed` when every one is;
    /// `dead_lettered` when any is; else `failed` when any waits for a retry; else the
    /// deliveries are on their way (`processing`).
    fn aggregate(&self) -> EventStatus {
        let statuses: Vec<EventStatus> = self
            .rows
            .iter()
            .map(|(_, _, r)| r.as_ref().map_or(EventStatus::Received, |r| r.status))
            .collect();
        if statuses.iter().all(|s| *s == EventStatus::Processed) {
            EventStatus::Processed
        } else if statuses.contains(&EventStatus::DeadLettered) {
            EventStatus::DeadLettered
        } else if statuses.contains(&EventStatus::Failed) {
            EventStatus::Failed
        } else {
            EventStatus::Processing
        }
    }

    fn merge_into(self, fields: &mut serde_json::Map<String, serde_json::Value>) {
        let status = self.aggregate();
        let failing: Vec<&str> = self
            .rows
            .iter()
            .filter(|(_, _, r)| {
                r.as_ref().is_some_and(|r| {
                    matches!(r.status, EventStatus::Failed | EventStatus::DeadLettered)
                })
            })
            .map(|(d, _, _)| d.as_str())
            .collect();
        let deliveries: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|(destination, id, record)| match record {
                Some(r) => serde_json::json!({
                    "destination": destination,
                    "event_id": id,
                    "status": r.status,
                    "attempt_count": r.attempt_count,
                    "last_error": r.last_error,
                    "next_attempt_at": r.next_attempt_at,
                    "updated_at": r.updated_at,
                }),
                None => serde_json::json!({
                    "destination": destination,
                    "event_id": id,
                    "status": EventStatus::Received,
                    "attempt_count": 0,
                }),
            })
            .collect();
        fields.insert("fan_out_status".into(), self.own_status.as_str().into());
        fields.insert("status".into(), status.as_str().into());
        fields.insert("failed_deliveries".into(), failing.into());
        fields.insert("deliveries".into(), deliveries.into());
    }
}

fn invalid_event_id() -> Reply {
    Reply::error(
        StatusCode::BAD_REQUEST,
        "invalid_event_id",
        "not an event id (event ids are <source>:<id>)",
    )
}

fn no_archive() -> Reply {
    Reply::error(
        StatusCode::CONFLICT,
        "payload_not_archived",
        "this deployment keeps no payloads (no archive is configured)",
    )
}

/// A time parameter: RFC 3339 (`2026-12-01T14:00:00Z`) or epoch milliseconds.
pub fn parse_time(raw: &str) -> Option<Timestamp> {
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw.parse().ok().map(Timestamp::from_millis);
    }
    Timestamp::parse_rfc3339(raw)
}

/// With a status, the listing is paged: `type`, `since`, `until` and `cursor` narrow it and
/// the answer carries `next_cursor`. Without one, those are refused (`invalid_status`): a
/// page walks one status's index partition.
fn parse_page_params(
    params: &[(&str, &str)],
    query: &ListQuery,
) -> Result<Option<PageQuery>, Reply> {
    let bad = |code: &str, message: &str| Reply::error(StatusCode::BAD_REQUEST, code, message);
    let one = |name: &str, code: &str| {
        single(params, name).map_err(|()| bad(code, &format!("give {name} at most once")))
    };
    let event_type = match one("type", "invalid_type")? {
        None => None,
        Some(t) if !t.is_empty() && t.len() <= 200 && !t.chars().any(char::is_control) => {
            Some(t.to_owned())
        }
        Some(_) => return Err(bad("invalid_type", "type is 1 to 200 printable characters")),
    };
    let time = |name: &str| -> Result<Option<Timestamp>, Reply> {
        match one(name, "invalid_time")? {
            None => Ok(None),
            Some(raw) => parse_time(raw).map(Some).ok_or_else(|| {
                bad(
                    "invalid_time",
                    &format!(
                        "{name} is an RFC 3339 time (2026-12-01T14:00:00Z) or epoch milliseconds"
                    ),
                )
            }),
        }
    };
    let (since, until) = (time("since")?, time("until")?);
    let destination = match one("destination", "invalid_destination")? {
        None => None,
        Some(raw) => Some(
            DestinationName::parse(raw).map_err(|e| bad("invalid_destination", &e.to_string()))?,
        ),
    };
    let cursor = match one("cursor", "invalid_cursor")? {
        None => None,
        Some(raw) => Some(
            Cursor::parse(raw)
                .ok_or_else(|| bad("invalid_cursor", "not a cursor this listing gave out"))?,
        ),
    };
    let Some(status) = query.status else {
        if let Some(destination) = destination {
            if event_type.is_some() || since.is_some() || until.is_some() || cursor.is_some() {
                return Err(bad(
                    "invalid_status",
                    "a listing by type, time or cursor needs a status",
                ));
            }
            // Every status's deliveries to `destination`, merged (see `list_events`).
            return Ok(Some(PageQuery {
                destination: Some(destination),
                status: EventStatus::Received,
                source: query.source.clone(),
                event_type: None,
                since: None,
                until: None,
                limit: query.limit,
                cursor: None,
            }));
        }
        if event_type.is_some() || since.is_some() || until.is_some() || cursor.is_some() {
            return Err(bad(
                "invalid_status",
                "a listing by type, time or cursor needs a status",
            ));
        }
        return Ok(None);
    };
    Ok(Some(PageQuery {
        destination,
        status,
        source: query.source.clone(),
        event_type,
        since,
        until,
        limit: query.limit,
        cursor,
    }))
}

/// `raw` as an event id, if it can be one: every id hookgate gives out is
/// `<source name>:<the source's id>`, so an id without a valid source name before a `:` (or
/// with nothing after it) can never name an event — a `400`, not a `404`.
fn event_id(raw: &str) -> Option<EventId> {
    let (source, rest) = raw.split_once(':')?;
    if rest.is_empty() || SourceName::parse(source).is_err() {
        return None;
    }
    EventId::parse(raw).ok()
}

/// The value of the parameter `name`, if given exactly once; `Err` if given more than once.
fn single<'a>(params: &[(&str, &'a str)], name: &str) -> Result<Option<&'a str>, ()> {
    let mut values = params.iter().filter(|(k, _)| *k == name).map(|(_, v)| *v);
    let first = values.next();
    match values.next() {
        Some(_) => Err(()),
        None => Ok(first),
    }
}

/// The listing's query parameters as a [`ListQuery`], or the `400` that says which is wrong.
pub fn parse_list_query(params: &[(&str, &str)]) -> Result<ListQuery, Reply> {
    let bad = |code: &str, message: String| Reply::error(StatusCode::BAD_REQUEST, code, message);
    let statuses = || {
        EventStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let status = match single(params, "status") {
        Err(()) => return Err(bad("invalid_status", "give status at most once".into())),
        Ok(None) => None,
        Ok(Some(raw)) => match EventStatus::parse(raw) {
            Some(status) => Some(status),
            None => {
                return Err(bad(
                    "invalid_status",
                    format!("status must be one of {}", statuses()),
                ))
            }
        },
    };
    let source = match single(params, "source") {
        Err(()) => return Err(bad("invalid_source", "give source at most once".into())),
        Ok(None) => None,
        Ok(Some(raw)) => match SourceName::parse(raw) {
            Ok(source) => Some(source),
            Err(_) => {
                return Err(bad(
                    "invalid_source",
                    "a source name is 1 to 64 characters from [a-z0-9_-]".into(),
                ))
            }
        },
    };
    let limit = match single(params, "limit") {
        Err(()) => return Err(bad("invalid_limit", "give limit at most once".into())),
        Ok(None) => DEFAULT_LIST_LIMIT,
        Ok(Some(raw)) => match raw.parse::<usize>() {
            Ok(n)
                if (1..=MAX_LIST_LIMIT).contains(&n) && raw.bytes().all(|b| b.is_ascii_digit()) =>
            {
                n
            }
            _ => {
                return Err(bad(
                    "invalid_limit",
                    format!("limit must be a whole number from 1 to {MAX_LIST_LIMIT}"),
                ))
            }
        },
    };
    Ok(ListQuery {
        status,
        source,
        limit,
    })
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
    async fn an_id_that_can_never_be_an_event_id_is_a_bad_request() {
        let api = StatusApi::new(Arc::new(MemoryLedger::new()), Access::AuthorizedUpstream);
        for id in [
            "nocolon",
            "demo:",
            ":abc",
            "Demo:abc",
            "de mo:abc",
            "",
            "a/b:c",
        ] {
            let r = api.get_event(None, id).await;
            assert_eq!(
                (r.status, r.error_code()),
                (StatusCode::BAD_REQUEST, Some("invalid_event_id")),
                "{id:?}"
            );
        }
        // Well-formed ids that name no event are not found.
        for id in ["demo:1", "github:0123abcd", "shop:evt_1:part"] {
            let r = api.get_event(None, id).await;
            assert_eq!(
                (r.status, r.error_code()),
                (StatusCode::NOT_FOUND, Some("event_not_found")),
                "{id:?}"
            );
        }
    }

    #[tokio::test]
    async fn without_an_admin_token_the_401_says_the_routes_are_closed() {
        let closed = StatusApi::new(Arc::new(MemoryLedger::new()), Access::Closed);
        assert!(closed.is_closed());
        for reply in [
            closed.get_event(Some("Bearer anything"), "demo:1").await,
            closed.list_events(None, &[]).await,
        ] {
            assert_eq!(
                (reply.status, reply.error_code()),
                (StatusCode::UNAUTHORIZED, Some("unauthorized"))
            );
            let message = reply.body["message"].as_str().unwrap();
            assert!(
                message.contains("closed") && message.contains("no [admin] token"),
                "{message}"
            );
        }
        let open = StatusApi::new(
            Arc::new(MemoryLedger::new()),
            Access::Bearer(Secret::new("t0k")),
        );
        assert!(!open.is_closed());
        let message = open.get_event(None, "demo:1").await.body["message"].clone();
        assert_eq!(message, "send Authorization: Bearer <admin token>");
    }

    use std::time::Duration;

    use crate::clock::Timestamp;
    use crate::faults::{Faults, FaultyLedger};
    use crate::ledger::{Attempt, AttemptEnd, AttemptStart, Claim};

    /// Claims `id` from `source` at second `at`, and takes it to `status` (`received` as the
    /// receiver leaves it, or through one attempt to `failed`/`processed`).
    async fn put(ledger: &MemoryLedger, id: &str, source: &str, at: i64, status: EventStatus) {
        put_with(ledger, id, source, at, status, &[]).await;
    }

    async fn put_with(
        ledger: &MemoryLedger,
        id: &str,
        source: &str,
        at: i64,
        status: EventStatus,
        deliveries: &[DestinationName],
    ) {
        let now = Timestamp::from_secs(at);
        let event_id = EventId::parse(id).unwrap();
        let source = SourceName::parse(source).unwrap();
        let claim = Claim {
            event_id: event_id.clone(),
            source: source.clone(),
            event_type: "order.created".into(),
            now,
            expires_at: now.plus(Duration::from_secs(3600)),
            timeout: Duration::from_secs(30),
            token: "tok".into(),
        };
        ledger.claim(&claim).await.unwrap();
        if status == EventStatus::Received {
            return;
        }
        let start = AttemptStart {
            destination: None,
            ticket: None,
            event_id: event_id.clone(),
            source,
            event_type: "order.created".into(),
            received_at: now,
            expires_at: now.plus(Duration::from_secs(3600)),
            now,
            lease_until: now.plus(Duration::from_secs(60)),
            lease_token: crate::token::uuid().to_string(),
            generation: 0,
            payload: None,
        };
        ledger.start_attempt(&start).await.unwrap();
        let error = (status != EventStatus::Processed).then(|| "boom".to_owned());
        let end = AttemptEnd {
            deliveries: deliveries.to_vec(),
            next_attempt_at: None,
            event_id,
            attempt: Attempt {
                attempt: 1,
                at: now,
                duration_ms: 5,
                success: error.is_none(),
                error,
                note: None,
                url: None,
                status_code: None,
            },
            status,
            now,
        };
        ledger.finish_attempt(&end).await.unwrap();
    }

    fn ids(reply: &Reply) -> Vec<&str> {
        reply.body["events"]
            .as_array()
            .unwrap_or_else(|| panic!("no events in {}", reply.body))
            .iter()
            .map(|e| e["event_id"].as_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn listing_requires_the_bearer_token() {
        let api = StatusApi::new(
            Arc::new(MemoryLedger::new()),
            Access::Bearer(Secret::new("t0k")),
        );
        for auth in [None, Some("Bearer nope"), Some("t0k"), Some("Basic t0k")] {
            let r = api.list_events(auth, &[]).await;
            assert_eq!(
                (r.status, r.error_code()),
                (StatusCode::UNAUTHORIZED, Some("unauthorized")),
                "{auth:?}"
            );
            // The caller is checked before the parameters: a stranger learns nothing from a 400.
            let r = api.list_events(auth, &[("status", "bogus")]).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        }
        let r = api.list_events(Some("Bearer t0k"), &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, serde_json::json!({ "events": [] }));

        let closed = StatusApi::new(Arc::new(MemoryLedger::new()), Access::Closed);
        let r = closed.list_events(Some("Bearer t0k"), &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn listing_rejects_bad_parameters_with_stable_codes() {
        let api = StatusApi::new(Arc::new(MemoryLedger::new()), Access::AuthorizedUpstream);
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("status", "bogus")], "invalid_status"),
            (&[("status", "")], "invalid_status"),
            (&[("status", "Failed")], "invalid_status"),
            (
                &[("status", "failed"), ("status", "queued")],
                "invalid_status",
            ),
            (&[("source", "Demo")], "invalid_source"),
            (&[("source", "")], "invalid_source"),
            (&[("source", "../etc")], "invalid_source"),
            (&[("source", "a"), ("source", "b")], "invalid_source"),
            (&[("limit", "abc")], "invalid_limit"),
            (&[("limit", "")], "invalid_limit"),
            (&[("limit", "0")], "invalid_limit"),
            (&[("limit", "101")], "invalid_limit"),
            (&[("limit", "-1")], "invalid_limit"),
            (&[("limit", "+5")], "invalid_limit"),
            (&[("limit", "2.5")], "invalid_limit"),
            (&[("limit", "99999999999999999999999")], "invalid_limit"),
            (&[("limit", "5"), ("limit", "6")], "invalid_limit"),
        ];
        for (params, code) in cases {
            let r = api.list_events(None, params).await;
            assert_eq!(
                (r.status, r.error_code()),
                (StatusCode::BAD_REQUEST, Some(*code)),
                "{params:?}: {}",
                r.body
            );
            assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        // The bounds themselves, and parameters the listing does not know, are fine.
        for params in [
            &[("limit", "1")][..],
            &[("limit", "100")],
            &[
                ("status", "dead_lettered"),
                ("source", "demo"),
                ("limit", "7"),
            ],
            &[("page", "whatever")],
            &[
                ("status", "failed"),
                ("type", "order.created"),
                ("since", "2026-12-01T14:00:00Z"),
                ("until", "1796127039399"),
                ("cursor", "1796127039399.demo:abc"),
            ],
        ] {
            let r = api.list_events(None, params).await;
            assert_eq!(r.status, StatusCode::OK, "{params:?}: {}", r.body);
        }
        // The paged listing's parameters: each bad, or without a status.
        for (params, code) in [
            (
                &[("status", "failed"), ("cursor", "whatever")][..],
                "invalid_cursor",
            ),
            (
                &[("status", "failed"), ("since", "yesterday")],
                "invalid_time",
            ),
            (&[("status", "failed"), ("until", "")], "invalid_time"),
            (&[("status", "failed"), ("type", "")], "invalid_type"),
            (
                &[("status", "failed"), ("type", "a"), ("type", "b")],
                "invalid_type",
            ),
            (&[("cursor", "1796127039399.demo:abc")], "invalid_status"),
            (&[("type", "order.created")], "invalid_status"),
        ] {
            let r = api.list_events(None, params).await;
            assert_eq!(
                (r.status, r.error_code()),
                (StatusCode::BAD_REQUEST, Some(code)),
                "{params:?}: {}",
                r.body
            );
        }
    }

    #[tokio::test]
    async fn listing_filters_and_limits_newest_first() {
        let ledger = Arc::new(MemoryLedger::new());
        put(&ledger, "demo:1", "demo", 10, EventStatus::Processed).await;
        put(&ledger, "demo:2", "demo", 20, EventStatus::Failed).await;
        put(&ledger, "other:3", "other", 30, EventStatus::Processed).await;
        put(&ledger, "demo:4", "demo", 40, EventStatus::Processed).await;
        put(&ledger, "demo:5", "demo", 50, EventStatus::Received).await;
        let api = StatusApi::new(ledger, Access::AuthorizedUpstream);

        let all = api.list_events(None, &[]).await;
        assert_eq!(all.status, StatusCode::OK);
        assert_eq!(
            ids(&all),
            ["demo:5", "demo:4", "other:3", "demo:2", "demo:1"]
        );
        let processed = api.list_events(None, &[("status", "processed")]).await;
        assert_eq!(ids(&processed), ["demo:4", "other:3", "demo:1"]);
        let demo = api
            .list_events(None, &[("source", "demo"), ("status", "processed")])
            .await;
        assert_eq!(ids(&demo), ["demo:4", "demo:1"]);
        let two = api.list_events(None, &[("limit", "2")]).await;
        assert_eq!(ids(&two), ["demo:5", "demo:4"]);
        let none = api.list_events(None, &[("source", "nobody")]).await;
        assert_eq!(ids(&none), Vec::<&str>::new());

        // A summary: the record's fields under their JSON names, without the attempts.
        let failed = api.list_events(None, &[("status", "failed")]).await;
        let event = &failed.body["events"][0];
        assert_eq!(event["event_id"], "demo:2");
        assert_eq!(event["source"], "demo");
        assert_eq!(event["type"], "order.created");
        assert_eq!(event["status"], "failed");
        assert_eq!(event["attempt_count"], 1);
        assert_eq!(event["last_error"], "boom");
        assert_eq!(event["received_at"], "1970-01-01T00:00:20.000Z");
        assert!(event.get("attempts").is_none(), "{event}");
    }

    #[tokio::test]
    async fn an_event_fanned_out_shows_its_deliveries_and_their_aggregate() {
        let ledger = Arc::new(MemoryLedger::new());
        put(
            &ledger,
            "demo:1@billing",
            "demo",
            10,
            EventStatus::Processed,
        )
        .await;
        put(&ledger, "demo:1@audit", "demo", 10, EventStatus::Processed).await;
        put(&ledger, "demo:1@crm", "demo", 10, EventStatus::Failed).await;
        put(
            &ledger,
            "demo:9@billing",
            "demo",
            20,
            EventStatus::Processed,
        )
        .await;
        let names = ["billing", "audit", "crm"].map(|d| DestinationName::parse(d).unwrap());
        put_with(
            &ledger,
            "demo:1",
            "demo",
            10,
            EventStatus::Processed,
            &names,
        )
        .await;
        let api = StatusApi::new(ledger.clone(), Access::AuthorizedUpstream);

        let reply = api.get_event(None, "demo:1").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["status"], "failed", "{}", reply.body);
        assert_eq!(reply.body["fan_out_status"], "processed");
        assert_eq!(reply.body["failed_deliveries"], serde_json::json!(["crm"]));
        let listed: Vec<(&str, &str)> = reply.body["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["destination"].as_str().unwrap(),
                    d["status"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("billing", "processed"),
                ("audit", "processed"),
                ("crm", "failed")
            ]
        );
        // One delivery read on its own names its destination.
        let one = api.get_event(None, "demo:1@crm").await;
        assert_eq!(one.body["destination"], "crm");

        // Listing by destination: that destination's deliveries only, any status or one.
        let billing = api.list_events(None, &[("destination", "billing")]).await;
        assert_eq!(ids(&billing), ["demo:9@billing", "demo:1@billing"]);
        let crm = api
            .list_events(None, &[("destination", "crm"), ("status", "failed")])
            .await;
        assert_eq!(ids(&crm), ["demo:1@crm"]);
        let bad = api
            .list_events(None, &[("destination", "Not A Name")])
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.body["error"], "invalid_destination");
    }

    #[test]
    fn the_aggregate_of_deliveries() {
        let row = |status| {
            let id = EventId::parse("demo:1@a").unwrap();
            let r: EventRecord = serde_json::from_value(serde_json::json!({
                "event_id": id, "source": "demo", "type": "t", "status": status,
                "received_at": Timestamp::from_millis(0), "updated_at": Timestamp::from_millis(0),
                "expires_at": Timestamp::from_millis(0), "attempt_count": 1, "attempts": [],
            }))
            .unwrap();
            (DestinationName::parse("a").unwrap(), id, Some(r))
        };
        let view = |statuses: &[EventStatus]| DeliveriesView {
            own_status: EventStatus::Processed,
            rows: statuses.iter().map(|s| row(*s)).collect(),
        };
        use EventStatus::*;
        assert_eq!(view(&[Processed, Processed]).aggregate(), Processed);
        assert_eq!(view(&[Processed, Failed]).aggregate(), Failed);
        assert_eq!(view(&[Failed, DeadLettered]).aggregate(), DeadLettered);
        assert_eq!(view(&[Processed, Received]).aggregate(), Processing);
        assert_eq!(view(&[Processing, Queued]).aggregate(), Processing);
    }

    #[tokio::test]
    async fn listing_when_the_ledger_fails_is_503() {
        let faults = Faults::new();
        let ledger = FaultyLedger::new(Arc::new(MemoryLedger::new()), faults.clone());
        let api = StatusApi::new(Arc::new(ledger), Access::AuthorizedUpstream);
        faults.fail_next("list", 1);
        let r = api.list_events(None, &[]).await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("ledger_unavailable"))
        );
        // With a status the listing pages (`list_page`): the same answer when that fails.
        faults.fail_next("list_page", 1);
        let r = api.list_events(None, &[("status", "failed")]).await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("ledger_unavailable"))
        );
        // Invalid parameters never reach the ledger.
        let r = api.list_events(None, &[("limit", "0")]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(faults.calls("list"), 1);
        // The fault was one-off.
        assert_eq!(api.list_events(None, &[]).await.status, StatusCode::OK);
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
