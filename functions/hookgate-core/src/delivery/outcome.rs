//! What a destination's answer means: delivered, worth retrying, or never going to work.
//!
//! Kept apart from the HTTP client so that every rule is a plain function tested on its own:
//!
//! | answer | outcome |
//! |---|---|
//! | `2xx` | delivered (in `celery-http` mode, only with `{"status": "success"}`) |
//! | `408`, `429`, `5xx` | retried, after `Retry-After` if the answer has one |
//! | any other status (`3xx` — redirects are not followed — and other `4xx`) | permanent |
//! | timeout, connection refused or reset, failed DNS lookup | retried (decided by the caller) |

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::ForwardMode;

/// The meaning of one delivery's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The destination has the event.
    Delivered,
    /// Try again later (no sooner than `retry_after` when the destination said so).
    Retry {
        /// What happened, for the ledger.
        reason: String,
        /// The destination's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: dead-letter the event.
    Permanent {
        /// What happened, for the ledger.
        reason: String,
    },
}

/// Longest part of a response body quoted in an error.
const QUOTED_BODY: usize = 200;

/// Classifies an answer: its `status`, its `Retry-After` header and the start of its `body`.
pub fn classify(
    mode: ForwardMode,
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    now: SystemTime,
) -> Outcome {
    let said = |what: &str| {
        let quoted = quote(body);
        if quoted.is_empty() {
            format!("destination answered {status}{what}")
        } else {
            format!("destination answered {status}{what}: {quoted}")
        }
    };
    match status {
        200..=299 => match mode {
            ForwardMode::StatusCode => Outcome::Delivered,
            ForwardMode::CeleryHttp => celery(status, body),
        },
        408 | 429 | 500..=599 => Outcome::Retry {
            reason: said(""),
            retry_after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        300..=399 => Outcome::Permanent {
            reason: said(" (a redirect; redirects are not followed: configure the final URL)"),
        },
        _ => Outcome::Permanent { reason: said("") },
    }
}

/// The Celery HTTP-callback answer.
#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum CeleryAnswer {
    Success {
        #[allow(dead_code)]
        #[serde(default)]
        retval: serde_json::Value,
    },
    Failure {
        #[serde(default)]
        reason: serde_json::Value,
    },
}

fn celery(status: u16, body: &[u8]) -> Outcome {
    match serde_json::from_slice::<CeleryAnswer>(body) {
        Ok(CeleryAnswer::Success { .. }) => Outcome::Delivered,
        Ok(CeleryAnswer::Failure { reason }) => {
            let reason = match reason {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => "no reason given".to_owned(),
                other => other.to_string(),
            };
            Outcome::Retry {
                reason: format!("destination reported failure: {}", cut(&reason)),
                retry_after: None,
            }
        }
        Err(_) => Outcome::Retry {
            reason: format!(
                "destination answered {status} without a celery-http answer \
                 ({{\"status\": \"success\"|\"failure\", …}}): {}",
                quote(body)
            ),
            retry_after: None,
        },
    }
}

/// `Retry-After`: delta-seconds, or an HTTP date (a date in the past means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The start of a body as text fit for the ledger: lossy UTF-8, one line, bounded.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(QUOTED_BODY * 4)]);
    cut(text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .as_str())
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(QUOTED_BODY) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn plain(status: u16) -> Outcome {
        classify(ForwardMode::StatusCode, status, None, b"", at(0))
    }

    #[test]
    fn status_codes_map_to_outcomes() {
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(plain(s), Outcome::Delivered, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(matches!(plain(s), Outcome::Retry { .. }), "{s}");
        }
        for s in [
            301, 302, 307, 308, 400, 401, 403, 404, 405, 409, 410, 413, 422, 451,
        ] {
            assert!(matches!(plain(s), Outcome::Permanent { .. }), "{s}");
        }
        match plain(302) {
            Outcome::Permanent { reason } => assert!(reason.contains("redirect"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = at(1_700_000_000);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        let date = httpdate::fmt_http_date(at(1_700_000_090));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(at(1_600_000_000));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);

        let o = classify(ForwardMode::StatusCode, 429, Some("7"), b"slow down", now);
        assert_eq!(
            o,
            Outcome::Retry {
                reason: "destination answered 429: slow down".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        // A Retry-After on a permanent answer does not make it retryable.
        assert!(matches!(
            classify(ForwardMode::StatusCode, 400, Some("7"), b"", now),
            Outcome::Permanent { .. }
        ));
    }

    #[test]
    fn celery_http_answers_decide() {
        let celery = |status, body: &str| {
            classify(
                ForwardMode::CeleryHttp,
                status,
                None,
                body.as_bytes(),
                at(0),
            )
        };
        assert_eq!(
            celery(200, r#"{"status":"success","retval":42}"#),
            Outcome::Delivered
        );
        assert_eq!(celery(200, r#"{"status":"success"}"#), Outcome::Delivered);
        match celery(200, r#"{"status":"failure","reason":"KeyError: 'user'"}"#) {
            Outcome::Retry { reason, .. } => {
                assert_eq!(reason, "destination reported failure: KeyError: 'user'")
            }
            other => panic!("{other:?}"),
        }
        match celery(200, "<html>ok</html>") {
            Outcome::Retry { reason, .. } => assert!(reason.contains("celery-http"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            celery(200, r#"{"status":"pending"}"#),
            Outcome::Retry { .. }
        ));
        // Status codes still count first.
        assert!(matches!(
            celery(404, r#"{"status":"success"}"#),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            celery(503, r#"{"status":"success"}"#),
            Outcome::Retry { .. }
        ));
    }

    #[test]
    fn quoted_bodies_are_one_bounded_line() {
        let body = format!("line one\n\tline two {}", "x".repeat(10_000));
        match classify(ForwardMode::StatusCode, 500, None, body.as_bytes(), at(0)) {
            Outcome::Retry { reason, .. } => {
                assert!(reason.starts_with("destination answered 500: line one line two x"));
                assert!(reason.chars().count() < 260, "{}", reason.len());
                assert!(!reason.contains('\n'));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            classify(ForwardMode::StatusCode, 500, None, &[0xff, 0xfe], at(0)),
            Outcome::Retry {
                reason: "destination answered 500: \u{fffd}\u{fffd}".into(),
                retry_after: None
            }
        );
    }
}
