//! The console's routes and pages: askama templates under `templates/console/`, each filled
//! from the core's tools (the ledger's paged listing, the replayer, the DLQ tools, the metrics
//! sampler). Every state-changing route is a plain form `POST` (so it works without the
//! script); the replay route also answers JSON to the script (`Accept: application/json`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use askama::Template;
use async_trait::async_trait;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use hookgate_core::destination_gate::Circuit;
use hookgate_core::dlq::Selection;
use hookgate_core::ledger::{EventStatus, ListQuery, Page, PageQuery, MAX_LIST_LIMIT};
use hookgate_core::metrics::{Counter, Latency};
use hookgate_core::replay::{
    run_bulk, BulkFilter, BulkOptions, BulkSummary, Origin, ReplayError, ReplayTarget, Replayed,
    Replayer,
};
use hookgate_core::{Clock, EventId, SourceName, SystemClock, Timestamp};
use serde::{Deserialize, Serialize};

use super::charts::LineChart;
use super::sampler::{failed, per_minute, quantile_ms, sum};
use super::security::{
    cleared_cookie_header, json_error, require_csrf, security_headers, session_cookie,
    session_cookie_header, ConsoleAccess, Visitor,
};
use super::views::{self, EventRow, PayloadView, TimelineEntry};
use super::{assets, ConsoleBackend};

/// Events per page of the events list.
pub const PAGE_SIZE: usize = 50;
/// Up to how many events each status's count on the events page counts (one index page).
pub const COUNT_CAP: usize = MAX_LIST_LIMIT;
/// How the console's replays say they were asked for, in the event's history.
pub const VIA: &str = "console";

#[derive(Clone)]
struct Pages {
    backend: Arc<ConsoleBackend>,
    access: Arc<ConsoleAccess>,
    runs: Arc<Mutex<HashMap<String, BulkRun>>>,
}

/// A bulk replay started by the script, and how far it got.
#[derive(Debug, Clone, Serialize)]
struct BulkRun {
    #[serde(flatten)]
    summary: BulkSummary,
    done: bool,
}

/// The routes, every one behind the security headers, the state-changing ones behind the
/// CSRF check, all but the login and the assets behind the login (when one is required).
pub fn router(backend: Arc<ConsoleBackend>, access: Arc<ConsoleAccess>) -> Router {
    let pages = Pages {
        backend,
        access: access.clone(),
        runs: Arc::default(),
    };
    Router::new()
        .route("/console", get(events_page))
        .route("/console/", get(events_page))
        .route("/console/events/{id}", get(event_page))
        .route("/console/events/{id}/payload", get(payload_download))
        .route("/console/events/{id}/replay", post(replay_one))
        .route("/console/replay", get(bulk_page).post(bulk_run))
        .route("/console/replay/runs/{run}", get(bulk_progress))
        .route("/console/dlq", get(dlq_page))
        .route("/console/dlq/redrive", post(dlq_redrive))
        .route("/console/dlq/purge", post(dlq_purge))
        .route("/console/sources", get(sources_page))
        .route(
            "/console/destinations/{name}/enable",
            post(destination_enable),
        )
        .route(
            "/console/destinations/{name}/disable",
            post(destination_disable),
        )
        .route("/console/health", get(health_page))
        .route("/console/logout", post(logout))
        .layer(from_fn_with_state(pages.clone(), require_visitor))
        .route("/console/login", get(login_page).post(login))
        .route("/console/assets/console.css", get(assets::css))
        .route("/console/assets/console.js", get(assets::js))
        .layer(from_fn_with_state(access, require_csrf))
        .layer(from_fn(security_headers))
        .with_state(pages)
}

/// Lets a visitor in (and hands the handlers who it is), or answers the login form (`401`;
/// JSON for anything but a `GET`).
async fn require_visitor(State(pages): State<Pages>, mut request: Request, next: Next) -> Response {
    match pages.access.check(request.headers()) {
        Some(visitor) => {
            request.extensions_mut().insert(visitor);
            next.run(request).await
        }
        None if request.method() == axum::http::Method::GET => {
            login_form(&pages.access, StatusCode::UNAUTHORIZED, None)
        }
        None => json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "log in to the console with the admin token first",
        ),
    }
}

/// What every page's header needs.
struct Nav {
    csrf: String,
    logged_in: bool,
    place: String,
    current: &'static str,
}

impl Nav {
    fn new(pages: &Pages, visitor: &Visitor, current: &'static str) -> Self {
        Self {
            csrf: visitor.csrf.clone(),
            logged_in: visitor.session.is_some(),
            place: pages.backend.place.clone(),
            current,
        }
    }
}

fn render(template: &impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "render_failed",
                "the page could not be drawn",
            )
        }
    }
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage {
    nav: Nav,
    heading: String,
    text: String,
    back: String,
}

fn message(
    pages: &Pages,
    visitor: &Visitor,
    status: StatusCode,
    heading: &str,
    text: &str,
) -> Response {
    render(
        &MessagePage {
            nav: Nav::new(pages, visitor, ""),
            heading: heading.to_owned(),
            text: text.to_owned(),
            back: "/console".to_owned(),
        },
        status,
    )
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    csrf: String,
    has_token: bool,
    error: Option<String>,
}

fn login_form(access: &ConsoleAccess, status: StatusCode, error: Option<String>) -> Response {
    render(
        &LoginPage {
            csrf: access.csrf_for(None),
            has_token: access.has_token(),
            error,
        },
        status,
    )
}

async fn login_page(State(pages): State<Pages>, headers: HeaderMap) -> Response {
    if pages.access.check(&headers).is_some() {
        return Redirect::to("/console").into_response();
    }
    login_form(&pages.access, StatusCode::OK, None)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

async fn login(
    State(pages): State<Pages>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let token = form.ok().map(|Form(f)| f.token).unwrap_or_default();
    if !pages.access.token_matches(&token) {
        tracing::warn!("console login refused: wrong admin token");
        return login_form(
            &pages.access,
            StatusCode::UNAUTHORIZED,
            Some("That is not the admin token.".to_owned()),
        );
    }
    let session = pages.access.open_session();
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, session_cookie_header(&session)),
            (header::LOCATION, "/console".to_owned()),
        ],
    )
        .into_response()
}

async fn logout(State(pages): State<Pages>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        pages.access.close_session(&id);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cleared_cookie_header()),
            (header::LOCATION, "/console/login".to_owned()),
        ],
    )
        .into_response()
}

/// An `<option>` of a filter.
struct Opt {
    value: String,
    selected: bool,
}

fn options<'a>(values: impl IntoIterator<Item = &'a str>, current: &str) -> Vec<Opt> {
    values
        .into_iter()
        .map(|v| Opt {
            value: v.to_owned(),
            selected: v == current,
        })
        .collect()
}

/// The events page's filters, as typed (empty: not given).
#[derive(Debug, Default, Clone, Deserialize)]
struct Filters {
    #[serde(default)]
    id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    source: String,
    #[serde(default, rename = "type")]
    event_type: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    cursor: String,
}

impl Filters {
    /// The query string of these filters (without the id), with `status` and `cursor` as
    /// given.
    fn href(&self, status: &str, cursor: &str) -> String {
        let pairs: Vec<(&str, &str)> = [
            ("status", status),
            ("source", self.source.as_str()),
            ("type", self.event_type.as_str()),
            ("since", self.since.as_str()),
            ("until", self.until.as_str()),
            ("cursor", cursor),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
        let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
        if query.is_empty() {
            "/console".to_owned()
        } else {
            format!("/console?{query}")
        }
    }
}

/// A time typed in a filter: `datetime-local` (`2026-12-01T14:00`, read as UTC), RFC 3339 or
/// epoch milliseconds.
pub fn parse_filter_time(raw: &str) -> Option<Timestamp> {
    let raw = raw.trim();
    let local = raw.len() >= 16 && raw.as_bytes().get(10) == Some(&b'T') && !raw.ends_with('Z');
    if local && !raw[11..].contains(['+', '-']) {
        let with_secs = if raw.len() == 16 {
            format!("{raw}:00Z")
        } else {
            format!("{raw}Z")
        };
        return Timestamp::parse_rfc3339(&with_secs);
    }
    hookgate_core::status::parse_time(raw)
}

/// The parts of the filters the ledger takes, or what is wrong with them.
struct Checked {
    status: Option<EventStatus>,
    source: Option<SourceName>,
    event_type: Option<String>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
}

fn check(f: &Filters) -> Result<Checked, String> {
    let status = match f.status.as_str() {
        "" => None,
        s => Some(EventStatus::parse(s).ok_or_else(|| format!("no status is called {s:?}"))?),
    };
    let source = match f.source.as_str() {
        "" => None,
        s => Some(SourceName::parse(s).map_err(|_| format!("{s:?} is not a source name"))?),
    };
    let event_type = match f.event_type.trim() {
        "" => None,
        t if t.len() <= 200 && !t.chars().any(char::is_control) => Some(t.to_owned()),
        _ => return Err("a type is 1 to 200 printable characters".to_owned()),
    };
    let time = |raw: &str, name: &str| match raw {
        "" => Ok(None),
        raw => parse_filter_time(raw)
            .map(Some)
            .ok_or_else(|| format!("{name} is not a time (2026-12-01T14:00, UTC)")),
    };
    Ok(Checked {
        status,
        source,
        event_type,
        since: time(&f.since, "from")?,
        until: time(&f.until, "before")?,
    })
}

struct CountLink {
    status: &'static str,
    count: String,
    href: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "console/events.html")]
struct EventsPage {
    nav: Nav,
    f: Filters,
    counts: Vec<CountLink>,
    rows: Vec<EventRow>,
    message: Option<String>,
    next_href: Option<String>,
    first_href: Option<String>,
    paged: bool,
    source_label: Option<String>,
    status_options: Vec<Opt>,
    source_options: Vec<Opt>,
}

/// The events list: one page of one status through the by-status index (or, without a
/// status, the newest of every status), with the count of each status (up to [`COUNT_CAP`]).
async fn events_page(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    query: Result<Query<Filters>, QueryRejection>,
) -> Response {
    let f = match query {
        Ok(Query(f)) => f,
        Err(_) => {
            return message(
                &pages,
                &visitor,
                StatusCode::BAD_REQUEST,
                "Events",
                "The filters could not be read (each may be given once).",
            )
        }
    };
    let ledger = &pages.backend.ledger;
    let id = f.id.trim();
    if !id.is_empty() {
        if let Ok(event_id) = EventId::parse(id) {
            if let Ok(Some(_)) = ledger.get(&event_id).await {
                let encoded: String = url_path_segment(id);
                return Redirect::to(&format!("/console/events/{encoded}")).into_response();
            }
        }
    }
    let mut message_text = (!id.is_empty()).then(|| format!("No event has the id {id:?}."));
    let checked = match check(&f) {
        Ok(c) => c,
        Err(e) => {
            message_text = Some(e);
            Checked {
                status: None,
                source: None,
                event_type: None,
                since: None,
                until: None,
            }
        }
    };
    let now = SystemClock.now();
    let mut rows = Vec::new();
    let mut next_href = None;
    let paged = checked.status.is_some();
    if let Some(status) = checked.status {
        let cursor = match f.cursor.as_str() {
            "" => None,
            raw => hookgate_core::ledger::Cursor::parse(raw),
        };
        let query = PageQuery {
            destination: None,
            status,
            source: checked.source.clone(),
            event_type: checked.event_type.clone(),
            since: checked.since,
            until: checked.until,
            limit: PAGE_SIZE,
            cursor,
        };
        match ledger.list_page(&query).await {
            Ok(Page { events, next }) => {
                rows = events.iter().map(|e| EventRow::new(e, now)).collect();
                next_href = next.map(|c| f.href(status.as_str(), &c.encode()));
            }
            Err(e) => message_text = Some(format!("The ledger could not be read: {e}")),
        }
    } else {
        if checked.event_type.is_some() || checked.since.is_some() || checked.until.is_some() {
            message_text.get_or_insert_with(|| {
                "Choose a status to filter by type or time: a page walks one status's index."
                    .to_owned()
            });
        }
        let query = ListQuery {
            status: None,
            source: checked.source.clone(),
            limit: PAGE_SIZE,
        };
        match ledger.list(&query).await {
            Ok(events) => rows = events.iter().map(|e| EventRow::new(e, now)).collect(),
            Err(e) => message_text = Some(format!("The ledger could not be read: {e}")),
        }
    }
    let counts = status_counts(&pages, &f, &checked).await;
    let first_href = (!f.cursor.is_empty()).then(|| f.href(&f.status, ""));
    let source_names: Vec<&str> = pages
        .backend
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    render(
        &EventsPage {
            nav: Nav::new(&pages, &visitor, "events"),
            counts,
            rows,
            message: message_text,
            next_href,
            first_href,
            paged,
            source_label: checked.source.as_ref().map(|s| s.to_string()),
            status_options: options(EventStatus::ALL.iter().map(|s| s.as_str()), &f.status),
            source_options: options(source_names, &f.source),
            f,
        },
        StatusCode::OK,
    )
}

/// Each status's count (of the source filtered by, if any), from one index page each:
/// `100+` past [`COUNT_CAP`].
async fn status_counts(pages: &Pages, f: &Filters, checked: &Checked) -> Vec<CountLink> {
    let mut counts = Vec::new();
    for status in EventStatus::ALL {
        let query = PageQuery {
            destination: None,
            status,
            source: checked.source.clone(),
            event_type: None,
            since: None,
            until: None,
            limit: COUNT_CAP,
            cursor: None,
        };
        let count = match pages.backend.ledger.list_page(&query).await {
            Ok(page) if page.next.is_some() => format!("{}+", page.events.len()),
            Ok(page) => page.events.len().to_string(),
            Err(_) => "?".to_owned(),
        };
        let href = {
            let only = Filters {
                source: f.source.clone(),
                ..Filters::default()
            };
            only.href(status.as_str(), "")
        };
        counts.push(CountLink {
            status: status.as_str(),
            count,
            href,
            current: checked.status == Some(status),
        });
    }
    counts
}

/// `id` percent-encoded for one path segment.
fn url_path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "console/event.html")]
struct EventPage {
    nav: Nav,
    id: String,
    status: &'static str,
    source: String,
    event_type: String,
    received: String,
    updated: String,
    attempts: u32,
    replays: u32,
    generation: u64,
    last_error: String,
    timeline: Vec<TimelineEntry>,
    headers: Vec<(String, String)>,
    payload_kind: &'static str,
    payload_bytes: usize,
    payload_text: Option<String>,
    payload_error: Option<String>,
    flash: Option<String>,
    /// The destination this record delivers to, if it is a delivery.
    destination: String,
    /// An event fanned out: `(destination, delivery id, its status)`.
    deliveries: Vec<(String, String, String)>,
}

#[derive(Deserialize, Default)]
struct EventParams {
    #[serde(default)]
    replayed: Option<u64>,
}

async fn event_page(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    Path(raw): Path<String>,
    params: Result<Query<EventParams>, QueryRejection>,
) -> Response {
    let Ok(id) = EventId::parse(&raw) else {
        return message(
            &pages,
            &visitor,
            StatusCode::BAD_REQUEST,
            "Event",
            "That is not an event id (event ids are <source>:<id>).",
        );
    };
    let record = match pages.backend.ledger.get(&id).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            return message(
                &pages,
                &visitor,
                StatusCode::NOT_FOUND,
                "Event",
                "No such event (never seen, or forgotten with its dedup window).",
            )
        }
        Err(e) => {
            return message(
                &pages,
                &visitor,
                StatusCode::SERVICE_UNAVAILABLE,
                "Event",
                &format!("The ledger could not be read: {e}"),
            )
        }
    };
    let (headers, payload_kind, payload_bytes, payload_text, payload_error) =
        match pages.backend.replayer.payload(&id).await {
            Ok(envelope) => {
                let view = views::payload_view(&envelope.body);
                (
                    views::shown_headers(&envelope.headers),
                    view.kind(),
                    envelope.body.len(),
                    Some(match view {
                        PayloadView::Json(s) | PayloadView::Text(s) | PayloadView::Hex(s) => s,
                    }),
                    None,
                )
            }
            Err(e) => (Vec::new(), "", 0, None, Some(e.to_string())),
        };
    let flash = params
        .ok()
        .and_then(|Query(p)| p.replayed)
        .map(|generation| format!("Replayed: queued as generation {generation}."));
    let mut deliveries = Vec::new();
    for destination in &record.deliveries {
        let delivery = id.delivery(destination);
        let status = match pages.backend.ledger.get(&delivery).await {
            Ok(Some(r)) => r.status.as_str().to_owned(),
            Ok(None) => "received".to_owned(),
            Err(_) => "unknown".to_owned(),
        };
        deliveries.push((destination.to_string(), delivery.to_string(), status));
    }
    render(
        &EventPage {
            nav: Nav::new(&pages, &visitor, "events"),
            id: id.to_string(),
            status: record.status.as_str(),
            source: record.source.to_string(),
            event_type: record.event_type.clone(),
            received: views::time(record.received_at),
            updated: views::time(record.updated_at),
            attempts: record.attempt_count,
            replays: record.replays,
            generation: record.generation,
            last_error: record.last_error.clone().unwrap_or_default(),
            timeline: views::timeline(&record),
            headers,
            payload_kind,
            payload_bytes,
            payload_text,
            payload_error,
            flash,
            destination: record
                .destination
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            deliveries,
        },
        StatusCode::OK,
    )
}

async fn payload_download(State(pages): State<Pages>, Path(raw): Path<String>) -> Response {
    let Ok(id) = EventId::parse(&raw) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_event_id",
            "not an event id (event ids are <source>:<id>)",
        );
    };
    match pages.backend.replayer.payload(&id).await {
        Ok(envelope) => {
            let name: String = raw
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(100)
                .collect();
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}.payload\""),
                    ),
                ],
                envelope.body,
            )
                .into_response()
        }
        Err(e) => json_error(e.status(), e.code(), &e.to_string()),
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

#[derive(Deserialize, Default)]
struct ConfirmForm {
    #[serde(default)]
    confirm: String,
}

/// `POST /console/events/{id}/replay`: JSON for the script, a redirect back to the event (or
/// a message page) for a plain form.
async fn replay_one(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ConfirmForm>, FormRejection>,
) -> Response {
    let json = wants_json(&headers);
    let fail = |status: StatusCode, code: &str, text: &str| {
        if json {
            json_error(status, code, text)
        } else {
            message(&pages, &visitor, status, "Replay", text)
        }
    };
    let Ok(id) = EventId::parse(&raw) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_event_id",
            "not an event id (event ids are <source>:<id>)",
        );
    };
    let confirmed = form.is_ok_and(|Form(f)| f.confirm == "yes");
    if !confirmed {
        return fail(
            StatusCode::BAD_REQUEST,
            "confirmation_required",
            "tick the confirmation box to replay the event",
        );
    }
    match pages
        .backend
        .replayer
        .replay(&id, &Origin::single(VIA))
        .await
    {
        Ok(replayed) if json => (
            StatusCode::ACCEPTED,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&replayed).unwrap_or_default(),
        )
            .into_response(),
        Ok(replayed) => Redirect::to(&format!(
            "/console/events/{}?replayed={}",
            url_path_segment(&raw),
            replayed.generation
        ))
        .into_response(),
        Err(e) => fail(e.status(), e.code(), &e.to_string()),
    }
}

/// The bulk replay form: the events page's filters (the same fields, read and checked the same
/// way), and what to do with the events they select.
#[derive(Debug, Default, Clone, Deserialize)]
struct BulkForm {
    #[serde(flatten)]
    filters: Filters,
    #[serde(default)]
    action: String,
    #[serde(default)]
    confirm: String,
}

#[derive(Template)]
#[template(path = "console/bulk.html")]
struct BulkPage {
    nav: Nav,
    f: BulkForm,
    summary: Option<BulkSummary>,
    message: Option<String>,
    status_options: Vec<Opt>,
    source_options: Vec<Opt>,
}

/// The statuses a bulk replay takes.
const BULK_STATUSES: [&str; 3] = ["failed", "dead_lettered", "processed"];

fn bulk_page_with(
    pages: &Pages,
    visitor: &Visitor,
    f: BulkForm,
    summary: Option<BulkSummary>,
    message: Option<String>,
    status: StatusCode,
) -> Response {
    let source_names: Vec<&str> = pages
        .backend
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    render(
        &BulkPage {
            nav: Nav::new(pages, visitor, "replay"),
            summary,
            message,
            status_options: options(BULK_STATUSES, &f.filters.status),
            source_options: options(source_names, &f.filters.source),
            f,
        },
        status,
    )
}

async fn bulk_page(State(pages): State<Pages>, Extension(visitor): Extension<Visitor>) -> Response {
    bulk_page_with(
        &pages,
        &visitor,
        BulkForm::default(),
        None,
        None,
        StatusCode::OK,
    )
}

/// Replays under the console's name, one bulk run's id each.
struct ConsoleReplays<'a>(&'a Replayer);

#[async_trait]
impl ReplayTarget for ConsoleReplays<'_> {
    async fn page(&self, query: &PageQuery) -> Result<Page, ReplayError> {
        ReplayTarget::page(self.0, query).await
    }

    async fn replay(&self, event_id: &EventId, run: &str) -> Result<Replayed, ReplayError> {
        let origin = Origin {
            via: VIA.to_owned(),
            run: Some(run.to_owned()),
        };
        self.0.replay(event_id, &origin).await
    }
}

async fn bulk_run(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    headers: HeaderMap,
    form: Result<Form<BulkForm>, FormRejection>,
) -> Response {
    let json = wants_json(&headers);
    let f = form.ok().map(|Form(f)| f).unwrap_or_default();
    let bad = |f: BulkForm, text: String| {
        if json {
            return json_error(StatusCode::BAD_REQUEST, "invalid_bulk_replay", &text);
        }
        bulk_page_with(
            &pages,
            &visitor,
            f,
            None,
            Some(text),
            StatusCode::BAD_REQUEST,
        )
    };
    let filters = Filters {
        id: String::new(),
        cursor: String::new(),
        ..f.filters.clone()
    };
    let checked = match check(&filters) {
        Ok(c) => c,
        Err(e) => return bad(f, e),
    };
    let Some(status) = checked
        .status
        .filter(|s| BULK_STATUSES.contains(&s.as_str()))
    else {
        return bad(f, "choose failed, dead_lettered or processed".to_owned());
    };
    let dry_run = f.action != "replay";
    if !dry_run && f.confirm != "yes" {
        return bad(
            f,
            "tick the confirmation box to replay (or count with a dry run first)".to_owned(),
        );
    }
    let filter = BulkFilter {
        status,
        source: checked.source,
        event_type: checked.event_type,
        since: checked.since,
        until: checked.until.unwrap_or_else(|| SystemClock.now()),
    };
    let options = BulkOptions {
        dry_run,
        ..BulkOptions::default()
    };
    if json && !dry_run {
        return start_bulk_run(&pages, filter, options);
    }
    let summary = run_bulk(
        &ConsoleReplays(&pages.backend.replayer),
        &filter,
        &options,
        &|| false,
        &mut |_| {},
    )
    .await;
    bulk_page_with(&pages, &visitor, f, Some(summary), None, StatusCode::OK)
}

/// Starts a bulk replay in the background (the script follows it at
/// `/console/replay/runs/{run}`): `202 {"run": …, "progress_url": …}`. The run's id comes from
/// its filter, so the same filter while a run is going joins it rather than starting another.
fn start_bulk_run(pages: &Pages, filter: BulkFilter, options: BulkOptions) -> Response {
    let run = filter.run_id();
    let answer = (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "run": run, "progress_url": format!("/console/replay/runs/{run}") })
            .to_string(),
    )
        .into_response();
    {
        let mut runs = pages.runs.lock().unwrap_or_else(PoisonError::into_inner);
        if runs.get(&run).is_some_and(|r| !r.done) {
            return answer;
        }
        runs.insert(
            run.clone(),
            BulkRun {
                summary: BulkSummary {
                    run: run.clone(),
                    ..BulkSummary::default()
                },
                done: false,
            },
        );
    }
    let backend = pages.backend.clone();
    let runs = pages.runs.clone();
    tokio::spawn(async move {
        let record = |summary: &BulkSummary, done: bool| {
            runs.lock().unwrap_or_else(PoisonError::into_inner).insert(
                summary.run.clone(),
                BulkRun {
                    summary: summary.clone(),
                    done,
                },
            );
        };
        let summary = run_bulk(
            &ConsoleReplays(&backend.replayer),
            &filter,
            &options,
            &|| false,
            &mut |progress| record(progress, false),
        )
        .await;
        tracing::info!(run = %summary.run, replayed = summary.replayed, "console bulk replay done");
        record(&summary, true);
    });
    answer
}

/// `GET /console/replay/runs/{run}`: how far a bulk replay got.
async fn bulk_progress(State(pages): State<Pages>, Path(run): Path<String>) -> Response {
    let runs = pages.runs.lock().unwrap_or_else(PoisonError::into_inner);
    match runs.get(&run) {
        Some(state) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(state).unwrap_or_default(),
        )
            .into_response(),
        None => json_error(
            StatusCode::NOT_FOUND,
            "run_not_found",
            "no such bulk replay",
        ),
    }
}

/// One DLQ row.
struct DlqRow {
    key: String,
    message_id: String,
    event_id: Option<String>,
    source: String,
    event_type: String,
    attempts: String,
    last_error: String,
}

#[derive(Template)]
#[template(path = "console/dlq.html")]
struct DlqPage {
    nav: Nav,
    available: bool,
    messages: Vec<DlqRow>,
    flash: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize, Default)]
struct DlqParams {
    #[serde(default)]
    redriven: Option<usize>,
    #[serde(default)]
    purged: Option<usize>,
    #[serde(default)]
    missing: Option<String>,
}

/// How many DLQ messages the page lists.
const DLQ_LIMIT: usize = 200;

async fn dlq_page(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    params: Result<Query<DlqParams>, QueryRejection>,
) -> Response {
    let params = params.ok().map(|Query(p)| p).unwrap_or_default();
    let mut flash = None;
    if let Some(n) = params.redriven {
        flash = Some(format!(
            "Redriven {n} message{} to the queue.",
            if n == 1 { "" } else { "s" }
        ));
    }
    if let Some(n) = params.purged {
        flash = Some(format!(
            "Purged {n} message{}.",
            if n == 1 { "" } else { "s" }
        ));
    }
    let mut message_text = params
        .missing
        .map(|id| format!("{id:?} is not in the DLQ (any more)."));
    let Some(tools) = &pages.backend.dead_letters else {
        return render(
            &DlqPage {
                nav: Nav::new(&pages, &visitor, "dlq"),
                available: false,
                messages: Vec::new(),
                flash,
                message: Some(
                    "No dead-letter queue is configured (set HOOKGATE_DLQ_URL).".to_owned(),
                ),
            },
            StatusCode::OK,
        );
    };
    let messages = match tools.list(DLQ_LIMIT).await {
        Ok(list) => list
            .into_iter()
            .map(|m| DlqRow {
                key: m.event_id.clone().unwrap_or_else(|| m.message_id.clone()),
                message_id: m.message_id,
                event_id: m.event_id,
                source: m.source.unwrap_or_default(),
                event_type: m.event_type.unwrap_or_default(),
                attempts: m.attempts.map(|a| a.to_string()).unwrap_or_default(),
                last_error: m.last_error.unwrap_or_default(),
            })
            .collect(),
        Err(e) => {
            message_text = Some(format!("The DLQ could not be read: {e}"));
            Vec::new()
        }
    };
    render(
        &DlqPage {
            nav: Nav::new(&pages, &visitor, "dlq"),
            available: true,
            messages,
            flash,
            message: message_text,
        },
        StatusCode::OK,
    )
}

#[derive(Deserialize, Default)]
struct RedriveForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    all: String,
}

async fn dlq_redrive(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    form: Result<Form<RedriveForm>, FormRejection>,
) -> Response {
    let f = form.ok().map(|Form(f)| f).unwrap_or_default();
    let Some(tools) = &pages.backend.dead_letters else {
        return message(
            &pages,
            &visitor,
            StatusCode::NOT_FOUND,
            "Dead letters",
            "No dead-letter queue is configured.",
        );
    };
    let selection = if f.all == "yes" {
        Selection::All
    } else if !f.id.trim().is_empty() {
        Selection::Ids([f.id.trim().to_owned()].into_iter().collect())
    } else {
        return message(
            &pages,
            &visitor,
            StatusCode::BAD_REQUEST,
            "Dead letters",
            "Name a message to redrive, or redrive all.",
        );
    };
    match tools.redrive(&selection, None).await {
        Ok(report) if report.found_none() => {
            let query = serde_urlencoded::to_string([("missing", f.id.trim())]).unwrap_or_default();
            Redirect::to(&format!("/console/dlq?{query}")).into_response()
        }
        Ok(report) => {
            Redirect::to(&format!("/console/dlq?redriven={}", report.moved)).into_response()
        }
        Err(e) => message(
            &pages,
            &visitor,
            StatusCode::SERVICE_UNAVAILABLE,
            "Dead letters",
            &format!("The queue could not be reached: {e}"),
        ),
    }
}

async fn dlq_purge(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    form: Result<Form<ConfirmForm>, FormRejection>,
) -> Response {
    let Some(tools) = &pages.backend.dead_letters else {
        return message(
            &pages,
            &visitor,
            StatusCode::NOT_FOUND,
            "Dead letters",
            "No dead-letter queue is configured.",
        );
    };
    if !form.is_ok_and(|Form(f)| f.confirm.trim() == "purge") {
        return message(
            &pages,
            &visitor,
            StatusCode::BAD_REQUEST,
            "Dead letters",
            "A purge deletes every message in the DLQ: type purge to confirm.",
        );
    }
    match tools.purge().await {
        Ok(report) => {
            Redirect::to(&format!("/console/dlq?purged={}", report.purged)).into_response()
        }
        Err(e) => message(
            &pages,
            &visitor,
            StatusCode::SERVICE_UNAVAILABLE,
            "Dead letters",
            &format!("The queue could not be reached: {e}"),
        ),
    }
}

struct SourceRow {
    name: String,
    scheme: String,
    secrets: usize,
    destination: String,
    received: String,
    rejected: String,
    processed: String,
    failed: String,
}

#[derive(Template)]
#[template(path = "console/sources.html")]
struct SourcesPage {
    nav: Nav,
    measured: bool,
    rows: Vec<SourceRow>,
    destinations: Vec<DestinationRow>,
    gate_error: Option<String>,
}

/// A destination on the Sources page: where it delivers and its circuit.
struct DestinationRow {
    name: String,
    kind: String,
    target: String,
    rate_limit: String,
    /// `closed`, `open`, `half_open`, `disabled`, or `–` when the gate is not reachable.
    circuit: String,
    /// The circuit in words (until when, since when, why).
    detail: String,
    failures: String,
    last_failure: String,
    disabled: bool,
}

/// The destinations with their health, or why the health could not be read.
async fn destination_rows(backend: &ConsoleBackend) -> (Vec<DestinationRow>, Option<String>) {
    let names: Vec<_> = backend
        .destinations
        .iter()
        .map(|d| d.name.clone())
        .collect();
    let (health, error) = match &backend.gate {
        None => (Vec::new(), None),
        Some(gate) if !names.is_empty() => match gate.list(&names).await {
            Ok(list) => (list, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        },
        Some(_) => (Vec::new(), None),
    };
    let rows = backend
        .destinations
        .iter()
        .map(|d| {
            let h = health.iter().find(|h| h.name == d.name);
            let (circuit, detail, disabled) = match h.map(|h| &h.circuit) {
                None => ("–".to_owned(), String::new(), false),
                Some(Circuit::Closed) => ("closed".to_owned(), String::new(), false),
                Some(Circuit::Open { until }) => {
                    ("open".to_owned(), format!("until {until}"), false)
                }
                Some(Circuit::HalfOpen) => ("half_open".to_owned(), "probing".to_owned(), false),
                Some(Circuit::Disabled { since, reason }) => (
                    "disabled".to_owned(),
                    format!("since {since}: {reason}"),
                    true,
                ),
            };
            DestinationRow {
                name: d.name.to_string(),
                kind: d.kind.clone(),
                target: d.target.clone(),
                rate_limit: d.rate_limit.clone().unwrap_or_else(|| "–".to_owned()),
                circuit,
                detail,
                failures: h.map_or_else(|| "–".to_owned(), |h| h.consecutive_failures.to_string()),
                last_failure: h.and_then(|h| h.last_failure.clone()).unwrap_or_default(),
                disabled,
            }
        })
        .collect();
    (rows, error)
}

async fn destination_enable(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    Path(name): Path<String>,
) -> Response {
    destination_switch(&pages, &visitor, &name, true).await
}

async fn destination_disable(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
    Path(name): Path<String>,
) -> Response {
    destination_switch(&pages, &visitor, &name, false).await
}

/// Enables or disables a configured destination, then back to the Sources page.
async fn destination_switch(
    pages: &Pages,
    visitor: &Visitor,
    name: &str,
    enable: bool,
) -> Response {
    let title = "Destinations";
    let Some(info) = pages
        .backend
        .destinations
        .iter()
        .find(|d| d.name.as_str() == name)
    else {
        return message(
            pages,
            visitor,
            StatusCode::NOT_FOUND,
            title,
            "No such destination is configured.",
        );
    };
    let Some(gate) = &pages.backend.gate else {
        return message(
            pages,
            visitor,
            StatusCode::NOT_FOUND,
            title,
            "This console cannot reach the destinations' state.",
        );
    };
    let now = SystemClock.now();
    let result = if enable {
        gate.enable(&info.name, now).await
    } else {
        gate.disable(&info.name, "disabled by an operator (console)", now)
            .await
    };
    match result {
        Ok(()) => Redirect::to("/console/sources").into_response(),
        Err(e) => message(
            pages,
            visitor,
            StatusCode::SERVICE_UNAVAILABLE,
            title,
            &format!("The destinations' state could not be written: {e}"),
        ),
    }
}

async fn sources_page(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
) -> Response {
    let last_hour = pages.backend.sampler.as_ref().map(|s| s.last_hour());
    let rows = pages
        .backend
        .sources
        .iter()
        .map(|s| {
            let totals = last_hour
                .as_ref()
                .map(|all| all.get(&s.name).cloned().unwrap_or_default());
            let shown = |f: &dyn Fn(&hookgate_core::metrics::SourceTotals) -> u64| {
                totals
                    .as_ref()
                    .map_or_else(|| "–".to_owned(), |t| f(t).to_string())
            };
            SourceRow {
                name: s.name.clone(),
                scheme: s.scheme.clone(),
                secrets: s.secrets,
                destination: s.destination.clone().unwrap_or_default(),
                received: shown(&|t| t.count(Counter::Received)),
                rejected: totals.as_ref().map_or_else(
                    || "–".to_owned(),
                    |t| {
                        if t.rejected.is_empty() {
                            "0".to_owned()
                        } else {
                            t.rejected
                                .iter()
                                .map(|(reason, n)| format!("{reason}: {n}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    },
                ),
                processed: shown(&|t| t.count(Counter::Processed)),
                failed: shown(&failed),
            }
        })
        .collect();
    let (destinations, gate_error) = destination_rows(&pages.backend).await;
    render(
        &SourcesPage {
            nav: Nav::new(&pages, &visitor, "sources"),
            measured: last_hour.is_some(),
            rows,
            destinations,
            gate_error,
        },
        StatusCode::OK,
    )
}

#[derive(Template)]
#[template(path = "console/health.html")]
struct HealthPage {
    nav: Nav,
    queues: Vec<(&'static str, String)>,
    queues_error: Option<String>,
    measured: bool,
    charts: Vec<LineChart>,
    rejections: Vec<(String, u64)>,
}

async fn health_page(
    State(pages): State<Pages>,
    Extension(visitor): Extension<Visitor>,
) -> Response {
    let (queues, queues_error) = match &pages.backend.depth {
        None => (
            Vec::new(),
            Some("this backend does not say how deep its queues are".to_owned()),
        ),
        Some(depth) => match depth.depth().await {
            Ok(d) => {
                let mut rows = vec![("waiting", d.waiting.to_string())];
                if let Some(n) = d.in_flight {
                    rows.push(("in flight", n.to_string()));
                }
                if let Some(n) = d.dead_letters {
                    rows.push(("dead letters", n.to_string()));
                }
                (rows, None)
            }
            Err(e) => (
                Vec::new(),
                Some(format!("the queues could not be read: {e}")),
            ),
        },
    };
    let Some(sampler) = &pages.backend.sampler else {
        return render(
            &HealthPage {
                nav: Nav::new(&pages, &visitor, "health"),
                queues,
                queues_error,
                measured: false,
                charts: Vec::new(),
                rejections: Vec::new(),
            },
            StatusCode::OK,
        );
    };
    let minutes = per_minute(&sampler.intervals(), SystemClock.now());
    let count = |c: Counter| -> Vec<f64> { minutes.iter().map(|m| m.count(c) as f64).collect() };
    let latency = |q: f64| -> Vec<f64> {
        minutes
            .iter()
            .map(|m| {
                quantile_ms(&m.latency_buckets[Latency::Delivery as usize], q).unwrap_or(0) as f64
            })
            .collect()
    };
    let charts = vec![
        LineChart::new("Processed", "events/min", &count(Counter::Processed)),
        LineChart::new("Received", "requests/min", &count(Counter::Received)),
        LineChart::new("Rejected", "requests/min", &count(Counter::Rejected)),
        LineChart::new("Delivery latency p50", "ms", &latency(0.5)),
        LineChart::new("Delivery latency p99", "ms", &latency(0.99)),
    ];
    let rejections: BTreeMap<String, u64> = sum(&sampler.last_hour()).rejected;
    render(
        &HealthPage {
            nav: Nav::new(&pages, &visitor, "health"),
            queues,
            queues_error,
            measured: true,
            charts,
            rejections: rejections.into_iter().collect(),
        },
        StatusCode::OK,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bulk_form_reads_the_filters_and_its_action() {
        let f: BulkForm = serde_urlencoded::from_str(
            "csrf=t0k&status=failed&source=stripe&type=charge.failed&since=2026-12-01T14%3A00\
             &until=&action=replay&confirm=yes",
        )
        .unwrap();
        assert_eq!(
            (
                f.filters.status.as_str(),
                f.filters.source.as_str(),
                f.filters.event_type.as_str(),
                f.filters.since.as_str(),
                f.filters.until.as_str(),
            ),
            ("failed", "stripe", "charge.failed", "2026-12-01T14:00", "")
        );
        assert_eq!((f.action.as_str(), f.confirm.as_str()), ("replay", "yes"));
        let empty: BulkForm = serde_urlencoded::from_str("").unwrap();
        assert_eq!(empty.filters.status, "");
    }

    #[test]
    fn filter_times_read_datetime_local_as_utc() {
        assert_eq!(
            parse_filter_time("2026-12-01T14:00"),
            Timestamp::parse_rfc3339("2026-12-01T14:00:00Z")
        );
        assert_eq!(
            parse_filter_time("2026-12-01T14:00:05"),
            Timestamp::parse_rfc3339("2026-12-01T14:00:05Z")
        );
        assert_eq!(
            parse_filter_time("2026-12-01T14:00:00Z"),
            Timestamp::parse_rfc3339("2026-12-01T14:00:00Z")
        );
        assert_eq!(
            parse_filter_time("1000"),
            Some(Timestamp::from_millis(1000))
        );
        assert_eq!(parse_filter_time("yesterday"), None);
    }

    #[test]
    fn paging_links_keep_the_filters_and_encode_them() {
        let f = Filters {
            source: "demo".into(),
            event_type: "a&b".into(),
            ..Filters::default()
        };
        assert_eq!(
            f.href("processed", "5.demo:x"),
            "/console?status=processed&source=demo&type=a%26b&cursor=5.demo%3Ax"
        );
        assert_eq!(Filters::default().href("", ""), "/console");
    }

    #[test]
    fn ids_are_encoded_for_a_path_segment() {
        assert_eq!(
            url_path_segment("demo:a/b?c#\"<"),
            "demo:a%2Fb%3Fc%23%22%3C"
        );
    }
}
