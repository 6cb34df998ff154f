//! Forwarding: the built-in handler that delivers each event of a source to a downstream
//! service, signed with Standard Webhooks, retried through the processor's backoff.
//!
//! A `[sources.NAME.forward]` table is [`ForwardOptions`], made a [`Destination`] once, when the
//! configuration is loaded. A source with one gets a [`Forwarder`] for all its event types
//! (routes you register yourself for that source win). Each attempt POSTs the original body,
//! with its original `content-type`, and three signature headers:
//!
//! - `webhook-id`: the hookgate event id — the same on every attempt, so the destination can
//!   deduplicate;
//! - `webhook-timestamp`: the attempt's time, Unix seconds;
//! - `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, under the
//!   destination's `whsec_` secret — what every Standard Webhooks library verifies; or, when
//!   the `secret` is an ed25519 private key `whsk_<base64>`, `v1a,<base64 ed25519 signature>` of
//!   the same content, which the destination verifies with the `whpk_` public key alone. The
//!   private key is taken as its 32-byte seed or as the 64-byte seed followed by its public key
//!   (libsodium's and Go's form; libraries differ), whose public half must match the seed:
//!   see [`crate::signature::StandardWebhooks::for_signing`].
//!
//! Safety, because the URL is configuration but what it reaches is decided at run time:
//! `https` only unless `allow_http`; only public addresses unless `allow_private_networks`
//! (see [`address`]); no proxies, no redirects; at most `max_response_bytes` of a response read;
//! the whole exchange bounded by `timeout_ms`. The URL recorded in the ledger drops its query
//! string, which may carry a credential.
//!
//! The answer's meaning is decided in [`outcome`]; the processor then acknowledges the message,
//! backs it off (honouring `Retry-After`) or moves it to the DLQ.

pub mod address;
pub mod outcome;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{redirect, Client, Url};
use serde::Deserialize;
use tracing::{debug, warn};

use crate::clock::{Clock, SystemClock};
use crate::envelope::{Envelope, SourceName};
use crate::handler::{Context, Delivery, Handled, Handler, HandlerError, Handlers};
use crate::secret::Secret;
use crate::signature::StandardWebhooks;
use address::{GuardedResolver, RefusedAddress};
use outcome::Outcome;

/// Headers hookgate sets itself; a `forward.headers` entry may not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Longest `timeout_ms` allowed: the longest a processor Lambda can run.
const MAX_TIMEOUT_MS: u64 = 15 * 60 * 1000;

/// `[sources.NAME.forward]`: the destination the processor POSTs each event to, signed with
/// Standard Webhooks. Unknown keys are refused, named.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardOptions {
    /// Where to POST: `https://…` (or `http://…` with `allow_http`).
    pub url: String,
    /// The Standard Webhooks signing key: a `whsec_<base64>` secret shared with the
    /// destination (`v1`), or an ed25519 private key `whsk_<base64>` whose `whpk_` public key
    /// the destination holds (`v1a`).
    pub secret: Secret,
    /// How long one delivery may take, connection to last byte (default 10 s).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Extra static headers (an API key, say). Values are secret: never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// What decides success: the status code (default) or a Celery HTTP-callback answer.
    #[serde(default)]
    pub mode: ForwardMode,
    /// Allow a plain `http://` destination (default false: `https` only).
    #[serde(default)]
    pub allow_http: bool,
    /// Allow destinations on loopback, private, link-local (the EC2 metadata address
    /// 169.254.169.254 among them) or otherwise non-public addresses (default false).
    #[serde(default)]
    pub allow_private_networks: bool,
    /// Most response-body bytes read (for error messages and `celery-http`; default 64 KiB).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

/// What decides a delivery's outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardMode {
    /// `2xx` delivered; `408`, `429`, `5xx` and network failures retried; other statuses
    /// permanent.
    #[default]
    StatusCode,
    /// The Celery HTTP-callback convention: a `2xx` answer must also say
    /// `{"status": "success", …}`; `{"status": "failure", "reason": …}` is retried.
    CeleryHttp,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_max_response_bytes() -> usize {
    64 * 1024
}

/// A `[sources.NAME.forward]` table that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// The URL does not parse, has no host, or uses another scheme.
    #[error("url: {0}")]
    Url(String),
    /// The secret is not a Standard Webhooks secret (`whsec_<base64>`, the prefix optional) of
    /// 24 bytes or more, nor an ed25519 private key (`whsk_`, 32 or 64 bytes with a matching
    /// public half). The message never shows the secret.
    #[error("{0}")]
    Secret(String),
    /// A header name or value cannot be sent, or would replace one hookgate sets.
    #[error("headers: {0}")]
    Header(String),
    /// An option is out of range.
    #[error("{0}")]
    Option(String),
    /// The HTTP client could not be built (no trusted root certificates, …).
    #[error("http client: {0}")]
    Client(String),
}

/// A validated destination, made from [`ForwardOptions`] once, when the configuration is loaded.
#[derive(Clone)]
pub struct Destination {
    url: Url,
    /// The URL as recorded and logged: no query string, no fragment.
    shown_url: String,
    signer: StandardWebhooks,
    timeout: Duration,
    headers: HeaderMap,
    mode: ForwardMode,
    allow_private: bool,
    max_response_bytes: usize,
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("url", &self.shown_url)
            .field("timeout", &self.timeout)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("mode", &self.mode)
            .field("allow_private", &self.allow_private)
            .finish_non_exhaustive()
    }
}

impl Destination {
    /// Validates a forward table.
    pub fn new(c: &ForwardOptions) -> Result<Self, DestinationError> {
        let url = Url::parse(&c.url).map_err(|e| DestinationError::Url(e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if c.allow_http => {}
            "http" => {
                return Err(DestinationError::Url(
                    "plain http is refused; use https, or set allow_http = true".into(),
                ))
            }
            other => {
                return Err(DestinationError::Url(format!(
                    "scheme {other:?} is not http(s)"
                )))
            }
        }
        if url.host().is_none() {
            return Err(DestinationError::Url("no host".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DestinationError::Url(
                "credentials in the URL would be recorded in the ledger; send them in headers"
                    .into(),
            ));
        }
        crate::signature::secret_policy::check_standard(&c.secret, "secret")
            .map_err(|e| DestinationError::Secret(e.to_string()))?;
        let signer = StandardWebhooks::for_signing(&c.secret)
            .map_err(|e| DestinationError::Secret(e.to_string()))?;
        if c.timeout_ms == 0 || c.timeout_ms > MAX_TIMEOUT_MS {
            return Err(DestinationError::Option(format!(
                "timeout_ms must be 1-{MAX_TIMEOUT_MS}"
            )));
        }
        if c.max_response_bytes == 0 {
            return Err(DestinationError::Option(
                "max_response_bytes must be positive".into(),
            ));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &c.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| DestinationError::Header(format!("{name:?} is not a header name")))?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(DestinationError::Header(format!(
                    "{name} is set by hookgate and cannot be replaced"
                )));
            }
            let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
                DestinationError::Header(format!("the value of {name} is not a header value"))
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let mut shown = url.clone();
        shown.set_query(None);
        shown.set_fragment(None);
        Ok(Self {
            shown_url: shown.to_string(),
            url,
            signer,
            timeout: Duration::from_millis(c.timeout_ms),
            headers,
            mode: c.mode,
            allow_private: c.allow_private_networks,
            max_response_bytes: c.max_response_bytes,
        })
    }

    /// The URL as recorded: without query string or fragment.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }
}

/// The system's trusted root certificates, loaded once per process (an empty store if none
/// were found: every `https` handshake then fails, and [`Forwarder::new`] says so up front).
fn root_certificates() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            Arc::new(roots)
        })
        .clone()
}

/// An HTTP client builder on hookgate's one TLS stack: rustls on aws-lc (what the AWS SDK
/// already links), trusting the system's root certificates. Every reqwest client in hookgate
/// starts here: reqwest is built without a default crypto provider, so a client built
/// otherwise would panic.
#[allow(clippy::disallowed_methods)] // the one place a client builder is made
pub fn client_builder() -> reqwest::ClientBuilder {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = Client::builder();
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(tls) => builder.use_preconfigured_tls(
            tls.with_root_certificates(root_certificates())
                .with_no_client_auth(),
        ),
        // aws-lc always supports the safe default versions; this arm is unreachable in practice.
        Err(_) => builder,
    }
}

/// The forwarding handler of one destination.
pub struct Forwarder {
    destination: Destination,
    client: Client,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forwarder")
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// A forwarder to `destination`, with its own HTTP client (connections are reused across
    /// events).
    pub fn new(destination: Destination) -> Result<Self, DestinationError> {
        if destination.url.scheme() == "https" && root_certificates().is_empty() {
            return Err(DestinationError::Client(
                "no trusted root certificates found on this system; https cannot be verified"
                    .into(),
            ));
        }
        let client = client_builder()
            .redirect(redirect::Policy::none())
            .no_proxy()
            .timeout(destination.timeout)
            .connect_timeout(destination.timeout.min(Duration::from_secs(5)))
            .dns_resolver(
                GuardedResolver {
                    allow_private: destination.allow_private,
                }
                .shared(),
            )
            .user_agent(concat!("hookgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DestinationError::Client(e.to_string()))?;
        Ok(Self {
            destination,
            client,
            clock: Arc::new(SystemClock),
        })
    }

    /// The same forwarder signing with time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Delivers `event` once.
    pub async fn deliver(&self, event: &Envelope) -> Result<Handled, HandlerError> {
        let d = &self.destination;
        let delivery = |status_code| Delivery {
            url: d.shown_url.clone(),
            status_code,
        };
        // An address written in the URL is never resolved, so the resolver cannot check it.
        if let Some(ip) = literal_ip(&d.url) {
            let host = d.url.host_str().unwrap_or_default();
            if let Err(refused) = address::check(host, ip, d.allow_private) {
                warn!(url = %d.shown_url, error = %refused, "destination refused");
                return Err(
                    HandlerError::permanent(refused.to_string()).with_delivery(delivery(None))
                );
            }
        }

        let mut request = self
            .client
            .post(d.url.clone())
            .headers(d.headers.clone())
            .header(CONTENT_TYPE, content_type(event))
            .body(event.body.clone());
        for (name, value) in
            self.signer()
                .sign_message(event.event_id.as_str(), &event.body, self.clock.now())
        {
            request = request.header(name, value);
        }
        for (name, value) in [
            ("x-hookgate-source", event.source.as_str()),
            ("x-hookgate-event-type", event.event_type.as_str()),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                request = request.header(name, value);
            }
        }

        let started = Instant::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let (message, permanent) = describe_send_error(e, d.timeout);
                warn!(url = %d.shown_url, error = %message, "delivery failed");
                let error = if permanent {
                    HandlerError::permanent(message)
                } else {
                    HandlerError::retry(message)
                };
                return Err(error.with_delivery(delivery(None)));
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let needs_body = !(response.status().is_success() && d.mode == ForwardMode::StatusCode);
        let body = if needs_body {
            match read_bounded(response, d.max_response_bytes).await {
                Ok(b) => b,
                Err(e) => {
                    let message = format!(
                        "destination answered {status}, then the response failed: {}",
                        chain(&e.without_url())
                    );
                    return Err(HandlerError::retry(message).with_delivery(delivery(Some(status))));
                }
            }
        } else {
            Vec::new()
        };
        let duration_ms = started.elapsed().as_millis();
        match outcome::classify(
            d.mode,
            status,
            retry_after.as_deref(),
            &body,
            SystemTime::now(),
        ) {
            Outcome::Delivered => {
                // The attempt's end ("event processed", and the ledger) says so: one line less
                // per delivery (docs/cost.md).
                debug!(url = %d.shown_url, status, duration_ms, "delivered");
                Ok(Handled {
                    delivery: Some(delivery(Some(status))),
                })
            }
            Outcome::Retry {
                reason,
                retry_after,
            } => {
                warn!(url = %d.shown_url, status, duration_ms, retry_after_ms = retry_after.map(|d| d.as_millis()), "delivery failed; will retry");
                let error = match retry_after {
                    Some(after) => HandlerError::retry_after(reason, after),
                    None => HandlerError::retry(reason),
                };
                Err(error.with_delivery(delivery(Some(status))))
            }
            Outcome::Permanent { reason } => {
                warn!(url = %d.shown_url, status, duration_ms, "delivery refused by the destination; not retried");
                Err(HandlerError::permanent(reason).with_delivery(delivery(Some(status))))
            }
        }
    }

    fn signer(&self) -> &StandardWebhooks {
        &self.destination.signer
    }
}

#[async_trait]
impl Handler for Forwarder {
    async fn handle(&self, event: Envelope, _cx: &Context) -> Result<Handled, HandlerError> {
        self.deliver(&event).await
    }
}

impl Handlers {
    /// These handlers plus a [`Forwarder`] for every `(source, destination)` of
    /// `destinations` (a loaded configuration's: [`crate::config::Config::destinations`]),
    /// routed as `(source, "*")`: a route registered before for that source and all types
    /// (or a more specific one) wins. Fails only if an HTTP client cannot be made.
    pub fn with_forwarding<'a>(
        mut self,
        destinations: impl IntoIterator<Item = (&'a SourceName, &'a Destination)>,
    ) -> Result<Self, DestinationError> {
        for (name, destination) in destinations {
            let forwarder = Forwarder::new(destination.clone())?;
            self = self.on(name.as_str(), "*", forwarder);
        }
        Ok(self)
    }
}

/// The IP address written in the URL, if its host is one.
fn literal_ip(url: &Url) -> Option<std::net::IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(v4.into()),
        url::Host::Ipv6(v6) => Some(v6.into()),
        url::Host::Domain(_) => None,
    }
}

/// The event's original `content-type`, or `application/octet-stream`.
fn content_type(event: &Envelope) -> HeaderValue {
    event
        .headers
        .get("content-type")
        .and_then(|v| HeaderValue::from_str(v).ok())
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"))
}

/// What went wrong sending a request, without its URL; and whether it is permanent (a refused
/// address is; timeouts, refused connections and failed lookups are not).
fn describe_send_error(e: reqwest::Error, timeout: Duration) -> (String, bool) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<RefusedAddress>() {
            return (refused.to_string(), true);
        }
        source = err.source();
    }
    let message = if e.is_timeout() {
        format!("no answer within {} ms", timeout.as_millis())
    } else if e.is_connect() {
        format!("could not connect: {}", chain(&e.without_url()))
    } else {
        format!("request failed: {}", chain(&e.without_url()))
    };
    (message, false)
}

/// An error and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        let next = err.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = err.source();
    }
    text
}

/// Reads at most `max` bytes of a response body.
async fn read_bounded(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < max {
        match response.chunk().await? {
            Some(chunk) => {
                let room = max - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            None => break,
        }
    }
    Ok(body)
}
