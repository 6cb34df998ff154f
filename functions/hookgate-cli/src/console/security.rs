//! Who may use the console, and what every console answer carries.
//!
//! - **Where**: on a loopback address anyone who can reach the port is the operator (as for
//!   `hookgate serve` itself). On any other address, or when asked to
//!   ([`ConsoleAccess::new`]'s `force_login`), the admin token is required: a login form that,
//!   given the token, sets a session cookie (`HttpOnly`, `SameSite=Strict`, path `/console`).
//!   Sessions live in this process only.
//! - **CSRF**: every state-changing request (any method but `GET`/`HEAD`) carries a token, in a
//!   `csrf` form field or an `x-csrf-token` header, derived from a key of this process and the
//!   session (or, without one, a fixed word): another site can neither read it nor guess it.
//!   A request without it is refused `403 {"error":"csrf_invalid"}` before any handler runs.
//! - **Headers**: `Content-Security-Policy: default-src 'self'` (no inline script or style can
//!   run, whatever a payload holds), `X-Frame-Options: DENY`, `nosniff`, no referrer, no cache.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hookgate_core::Secret;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "hookgate_console";
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// The header that carries the CSRF token (the console's script sends it).
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a login lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Largest state-changing request body the console reads.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// The `Content-Security-Policy` of every answer.
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// Whether the console at `addr` requires the admin token: anywhere but loopback, or when
/// `force_login`.
pub fn login_required(addr: IpAddr, force_login: bool) -> bool {
    force_login || !addr.is_loopback()
}

/// The console's access rules and its sessions.
#[derive(Debug)]
pub struct ConsoleAccess {
    token: Option<Secret>,
    login_required: bool,
    key: String,
    sessions: Mutex<HashMap<String, Instant>>,
}

/// Who a request is, once [`ConsoleAccess::check`] let it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visitor {
    /// The session id, if logged in.
    pub session: Option<String>,
    /// The CSRF token its forms carry.
    pub csrf: String,
}

impl ConsoleAccess {
    /// Access with the admin `token` (if any); `login_required` from [`login_required`].
    pub fn new(token: Option<Secret>, login_required: bool) -> Self {
        Self {
            token,
            login_required,
            key: random_hex(),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the token is needed.
    pub fn login_required(&self) -> bool {
        self.login_required
    }

    /// Whether a login can succeed at all (a token is configured).
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The CSRF token for `session` (or for visitors without one).
    pub fn csrf_for(&self, session: Option<&str>) -> String {
        let mut hash = Sha256::new();
        hash.update(self.key.as_bytes());
        hash.update(b"|csrf|");
        hash.update(session.unwrap_or("-").as_bytes());
        hex::encode(hash.finalize())
    }

    /// The visitor `headers` make, if let in: with a live session, or anyone when no login is
    /// required.
    pub fn check(&self, headers: &HeaderMap) -> Option<Visitor> {
        let session = session_cookie(headers).filter(|id| self.session_alive(id));
        if session.is_none() && self.login_required {
            return None;
        }
        Some(Visitor {
            csrf: self.csrf_for(session.as_deref()),
            session,
        })
    }

    /// Whether `given` is the admin token (constant time; hashing both hides the length).
    pub fn token_matches(&self, given: &str) -> bool {
        let Some(token) = &self.token else {
            return false;
        };
        let a = Sha256::digest(token.expose().as_bytes());
        let b = Sha256::digest(given.trim().as_bytes());
        constant_time_eq(&a, &b)
    }

    /// Opens a session; its id goes in the cookie.
    pub fn open_session(&self) -> String {
        let id = random_hex();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        sessions.retain(|_, at| now.duration_since(*at) < SESSION_LIFETIME);
        sessions.insert(id.clone(), now);
        id
    }

    /// Ends a session.
    pub fn close_session(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    fn session_alive(&self, id: &str) -> bool {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .is_some_and(|at| at.elapsed() < SESSION_LIFETIME)
    }
}

/// The `Set-Cookie` value of a new session.
pub fn session_cookie_header(id: &str) -> String {
    format!(
        "{SESSION_COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn cleared_cookie_header() -> String {
    format!("{SESSION_COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session id the request's cookies carry.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

fn random_hex() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Adds the console's security headers to every answer.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A JSON error answer of the console.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": code, "message": message }).to_string(),
    )
        .into_response()
}

/// Refuses a state-changing request without the visitor's CSRF token (`403 csrf_invalid`);
/// passes the request on with its body, read once here, otherwise.
pub async fn require_csrf(
    State(access): State<Arc<ConsoleAccess>>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let session = session_cookie(request.headers()).filter(|id| access.session_alive(id));
    let expected = access.csrf_for(session.as_deref());
    let header_token = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "a console form is at most 64 KiB",
        );
    };
    let given = header_token.or_else(|| url_form_field(&bytes, CSRF_FIELD));
    let valid = given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes()));
    if !valid {
        return json_error(
            StatusCode::FORBIDDEN,
            "csrf_invalid",
            "this action needs the console's CSRF token: reload the page and try again",
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The value of the field `name` in an `application/x-www-form-urlencoded` body.
fn url_form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_alone_goes_without_the_token() {
        assert!(!login_required("127.0.0.1".parse().unwrap(), false));
        assert!(!login_required("::1".parse().unwrap(), false));
        assert!(login_required("0.0.0.0".parse().unwrap(), false));
        assert!(login_required("192.168.1.10".parse().unwrap(), false));
        assert!(login_required("127.0.0.1".parse().unwrap(), true));
    }

    #[test]
    fn a_session_is_let_in_and_its_csrf_differs_from_anyone_elses() {
        let access = ConsoleAccess::new(Some(Secret::new("t0ken".to_owned())), true);
        assert!(access.check(&HeaderMap::new()).is_none());
        assert!(access.token_matches("t0ken") && !access.token_matches("t0ke"));
        let id = access.open_session();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {SESSION_COOKIE}={id}")).unwrap(),
        );
        let visitor = access.check(&headers).expect("logged in");
        assert_eq!(visitor.session.as_deref(), Some(id.as_str()));
        assert_ne!(visitor.csrf, access.csrf_for(None));
        access.close_session(&id);
        assert!(access.check(&headers).is_none());
    }

    #[test]
    fn without_a_token_no_login_succeeds() {
        let access = ConsoleAccess::new(None, true);
        assert!(!access.token_matches(""));
        assert!(!access.has_token());
    }
}
