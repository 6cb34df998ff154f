//! The request `hookgate sign` and `send` build: what a provider would send, not only its
//! signature.
//!
//! GitHub and Shopify name the event type in a header (`X-GitHub-Event`, `X-Shopify-Topic`), as
//! the generic `hmac-sha256` scheme does (its `type_header`); a request without it is typed
//! `unknown`, so routes by type could not be tried. `--type` puts the type in that header, a
//! repeatable `--header NAME:VALUE` adds (or replaces) any other, and `--example` takes a
//! realistic sample body of the source's provider, built into the binary, one per scheme.

use hookgate_core::config::SourceConfig;
use hookgate_core::signature::TypeSource;
use hookgate_core::{Config, SourceName, Timestamp};

/// Where a scheme reads the event type from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeCarrier {
    /// This header (lower case).
    Header(String),
    /// The body (its `type`, or Slack's `event.type` / `command`).
    Body,
}

/// Where `source`'s scheme reads the event type from.
pub fn type_carrier(source: &SourceConfig) -> TypeCarrier {
    match source.scheme.type_source() {
        TypeSource::Header(header) | TypeSource::HeaderElseBody(header) => {
            TypeCarrier::Header(header.to_owned())
        }
        TypeSource::Body => TypeCarrier::Body,
    }
}

/// A sample request of one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Example {
    /// The body, byte for byte as sent.
    pub body: &'static str,
    /// The event type a provider that names it in a header would send with this body (`None`
    /// where the body itself says).
    pub header_type: Option<&'static str>,
}

/// The sample request for `scheme` (every scheme of [`hookgate_core::signature::SCHEMES`] has
/// one: a test says so).
pub fn example(scheme: &str) -> Option<Example> {
    let (body, header_type) = match scheme {
        "hmac-sha256" => (include_str!("../examples-bodies/hmac-sha256.json"), None),
        "standard" => (include_str!("../examples-bodies/standard.json"), None),
        "svix" => (include_str!("../examples-bodies/svix.json"), None),
        "stripe" => (include_str!("../examples-bodies/stripe.json"), None),
        "github" => (include_str!("../examples-bodies/github.json"), Some("push")),
        "shopify" => (
            include_str!("../examples-bodies/shopify.json"),
            Some("orders/create"),
        ),
        "slack" => (include_str!("../examples-bodies/slack.json"), None),
        _ => return None,
    };
    Some(Example { body, header_type })
}

/// The body to send.
#[derive(Debug, Clone)]
pub enum Payload {
    /// These bytes (from `--body`).
    Bytes(Vec<u8>),
    /// The source's provider's sample (`--example`).
    Example,
}

/// A request ready to send: its body and every header besides `content-type`, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRequest {
    /// The body.
    pub body: Vec<u8>,
    /// The headers: the signature's, the event type's, then the extra ones.
    pub headers: Vec<(String, String)>,
    /// Things the user should know (a request that will be typed `unknown`, say).
    pub notes: Vec<String>,
}

/// Why the request cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No such source in the configuration.
    #[error("no source named {0:?} in the configuration")]
    UnknownSource(String),
    /// `--type` for a scheme that reads the type from the body.
    #[error("--type: source {source_name} (scheme {scheme}) reads the event type from the body, not from a header: put it in the body's \"type\"")]
    TypeInBody {
        /// The source.
        source_name: String,
        /// Its scheme.
        scheme: String,
    },
    /// A scheme without a sample body (none today).
    #[error("there is no example body for scheme {0}")]
    NoExample(String),
    /// The source has no secret to sign with.
    #[error("source {0} has no secret to sign with")]
    NoSecret(String),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] hookgate_core::config::UnknownSource),
}

/// The request `source`'s provider would send with `payload` at `now`: signed, with the event
/// type's header (`event_type`, else the example's) and `extra` headers, each of which replaces
/// a header of the same name.
pub fn build(
    config: &Config,
    source: &str,
    payload: Payload,
    event_type: Option<&str>,
    extra: &[(String, String)],
    now: Timestamp,
) -> Result<ProviderRequest, RequestError> {
    let unknown = || RequestError::UnknownSource(source.to_owned());
    let name = SourceName::parse(source).map_err(|_| unknown())?;
    let source_config = config.sources.get(&name).ok_or_else(unknown)?;
    let scheme = source_config.scheme.name();
    let (body, example_type) = match payload {
        Payload::Bytes(body) => (body, None),
        Payload::Example => {
            let example =
                example(scheme).ok_or_else(|| RequestError::NoExample(scheme.to_owned()))?;
            (example.body.as_bytes().to_vec(), example.header_type)
        }
    };
    let mut notes = Vec::new();
    let type_header = match (type_carrier(source_config), event_type) {
        (TypeCarrier::Body, Some(_)) => {
            return Err(RequestError::TypeInBody {
                source_name: source.to_owned(),
                scheme: scheme.to_owned(),
            })
        }
        (TypeCarrier::Body, None) => None,
        (TypeCarrier::Header(header), Some(t)) => Some((header, t.to_owned())),
        (TypeCarrier::Header(header), None) => match example_type {
            Some(t) => Some((header, t.to_owned())),
            None => {
                // Without the header a scheme that reads the type only from it types the event
                // unknown (one that falls back to the body does not).
                if matches!(source_config.scheme.type_source(), TypeSource::Header(_)) {
                    notes.push(format!(
                        "no --type: without a {header} header the event is typed unknown"
                    ));
                }
                None
            }
        },
    };
    let mut headers = config.sign(source, &body, now)?;
    if headers.is_empty() {
        return Err(RequestError::NoSecret(source.to_owned()));
    }
    headers.extend(type_header);
    for (name, value) in extra {
        headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        headers.push((name.clone(), value.clone()));
    }
    Ok(ProviderRequest {
        body,
        headers,
        notes,
    })
}

/// Parses `--header NAME:VALUE` (the value may hold colons; spaces around it are dropped).
pub fn parse_header(arg: &str) -> Result<(String, String), String> {
    let (name, value) = arg
        .split_once(':')
        .ok_or_else(|| format!("{arg:?} is not NAME:VALUE"))?;
    let name = http::HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a header name", name.trim()))?;
    let value = value.trim();
    http::HeaderValue::from_str(value).map_err(|_| format!("{value:?} is not a header value"))?;
    Ok((name.as_str().to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use hookgate_core::config::EXAMPLE_CONFIG;
    use hookgate_core::memory::{MemoryLedger, MemoryQueue};
    use hookgate_core::signature;
    use hookgate_core::{IncomingRequest, Queue, Receiver};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_secs(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        )
    }

    /// What the receiver makes of `request` for `source`: the answer's status and the event
    /// type it queued.
    async fn receive(config: &Config, source: &str, request: &ProviderRequest) -> (u16, String) {
        let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
        let receiver = Receiver::new(config, Arc::new(MemoryLedger::new()), queue.clone());
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        for (name, value) in &request.headers {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        let reply = receiver
            .handle(IncomingRequest {
                method: http::Method::POST,
                source: source.to_owned(),
                headers,
                body: Bytes::from(request.body.clone()),
                trace_header: None,
            })
            .await;
        let queued = queue.receive(1, Duration::ZERO).await.unwrap();
        let event_type = queued
            .first()
            .and_then(|m| {
                m.attributes
                    .get(hookgate_core::queue::attr::EVENT_TYPE)
                    .cloned()
            })
            .unwrap_or_default();
        (reply.status.as_u16(), event_type)
    }

    #[test]
    fn every_scheme_has_a_json_example() {
        for scheme in signature::names() {
            let example = example(scheme).unwrap_or_else(|| panic!("no example for {scheme}"));
            serde_json::from_str::<serde_json::Value>(example.body)
                .unwrap_or_else(|e| panic!("{scheme}: {e}"));
        }
    }

    #[tokio::test]
    async fn every_example_is_accepted_with_a_known_type() {
        let config = Config::from_toml(EXAMPLE_CONFIG).unwrap();
        let mut schemes: Vec<&str> = Vec::new();
        for (name, source) in &config.sources {
            let request =
                build(&config, name.as_str(), Payload::Example, None, &[], now()).unwrap();
            let (status, event_type) = receive(&config, name.as_str(), &request).await;
            assert_eq!(status, 202, "{name}");
            assert_ne!(event_type, "unknown", "{name}");
            assert!(request.notes.is_empty(), "{name}: {:?}", request.notes);
            schemes.push(source.scheme.name());
        }
        for scheme in signature::names() {
            assert!(
                schemes.contains(&scheme),
                "the bundled example has no {scheme} source"
            );
        }
    }

    #[tokio::test]
    async fn the_type_goes_in_the_header_the_scheme_reads() {
        let config = Config::from_toml(EXAMPLE_CONFIG).unwrap();
        let body = br#"{"action":"opened"}"#.to_vec();
        for (source, header, event_type) in [
            ("github", "x-github-event", "issues"),
            ("shopify", "x-shopify-topic", "orders/paid"),
            ("demo", "x-event-type", "order.cancelled"),
        ] {
            let request = build(
                &config,
                source,
                Payload::Bytes(body.clone()),
                Some(event_type),
                &[],
                now(),
            )
            .unwrap();
            assert!(
                request
                    .headers
                    .contains(&(header.to_owned(), event_type.to_owned())),
                "{source}: {:?}",
                request.headers
            );
            assert_eq!(
                receive(&config, source, &request).await,
                (202, event_type.into())
            );
        }
        // Without --type, GitHub's event is unknown, and the user is told.
        let request = build(&config, "github", Payload::Bytes(body), None, &[], now()).unwrap();
        assert!(
            request.notes[0].contains("x-github-event"),
            "{:?}",
            request.notes
        );
        // A scheme that reads the body refuses --type, saying where the type goes.
        let e = build(
            &config,
            "stripe",
            Payload::Example,
            Some("charge.failed"),
            &[],
            now(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("body"), "{e}");
    }

    #[test]
    fn extra_headers_are_added_or_replace_ours() {
        let config = Config::from_toml(EXAMPLE_CONFIG).unwrap();
        let extra = [
            ("x-github-event".to_owned(), "ping".to_owned()),
            ("x-github-hook-id".to_owned(), "42".to_owned()),
        ];
        let request = build(&config, "github", Payload::Example, None, &extra, now()).unwrap();
        let values = |name: &str| -> Vec<&str> {
            request
                .headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(values("x-github-event"), ["ping"]);
        assert_eq!(values("x-github-hook-id"), ["42"]);
        assert_eq!(values("x-hub-signature-256").len(), 1);
    }

    #[test]
    fn header_arguments_are_checked() {
        assert_eq!(
            parse_header("X-Custom:  a value: with colons "),
            Ok(("x-custom".into(), "a value: with colons".into()))
        );
        assert_eq!(
            parse_header("x-empty:"),
            Ok(("x-empty".into(), String::new()))
        );
        for bad in ["novalue", ":v", "bad name:v", "x:\u{7f}"] {
            assert!(parse_header(bad).is_err(), "{bad:?}");
        }
    }
}
