//! What the console's pages show, made from ledger records and payloads: pure functions, so
//! what an operator may see (never a secret or a signature value) is tested without a browser.
//!
//! Nothing here escapes HTML: the templates do, for every value (askama escapes `{{ … }}` in
//! `.html` templates), and none of them marks an event's value as safe.

use std::collections::BTreeMap;

use hookgate_core::ledger::{Attempt, EventRecord, EventSummary};
use hookgate_core::Timestamp;

/// Longest payload the event page shows (the download has it all).
pub const MAX_SHOWN_PAYLOAD: usize = 256 * 1024;
/// Longest binary payload the hex view shows.
pub const MAX_HEX_BYTES: usize = 4096;

/// A time as the console shows it: `2026-12-01 14:00:00.123Z`.
pub fn time(t: Timestamp) -> String {
    t.to_rfc3339().replacen('T', " ", 1)
}

/// How long ago `t` was, relative to `now`, in a few characters: `4s`, `12m`, `3h`, `2d`.
pub fn ago(t: Timestamp, now: Timestamp) -> String {
    let secs = (now.as_millis() - t.as_millis()).max(0) / 1000;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// A URL without its query string or fragment: what the attempts timeline shows.
pub fn url_without_query(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

/// Whether a header's value could be a credential or a signature, so the console hides it.
pub fn is_sensitive_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "signature",
        "authorization",
        "cookie",
        "secret",
        "token",
        "hmac",
        "api-key",
        "apikey",
        "password",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// The headers an event kept, as the event page lists them: sensitive values replaced.
pub fn shown_headers(headers: &BTreeMap<String, String>) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = if is_sensitive_header(name) {
                "(hidden)".to_owned()
            } else {
                value.clone()
            };
            (name.clone(), value)
        })
        .collect()
}

/// A payload as the event page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadView {
    /// JSON, pretty-printed.
    Json(String),
    /// UTF-8 text, as it is.
    Text(String),
    /// Anything else: a hex dump of the first [`MAX_HEX_BYTES`].
    Hex(String),
}

impl PayloadView {
    /// How the page names the view.
    pub fn kind(&self) -> &'static str {
        match self {
            PayloadView::Json(_) => "JSON",
            PayloadView::Text(_) => "text",
            PayloadView::Hex(_) => "binary (hex)",
        }
    }

    /// What the page shows.
    pub fn text(&self) -> &str {
        match self {
            PayloadView::Json(s) | PayloadView::Text(s) | PayloadView::Hex(s) => s,
        }
    }
}

/// Chooses the view of `body`: JSON when it parses as JSON, text when it is UTF-8 without
/// control characters other than white space, a hex dump otherwise.
pub fn payload_view(body: &[u8]) -> PayloadView {
    let shown = &body[..body.len().min(MAX_SHOWN_PAYLOAD)];
    if shown.len() == body.len() {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
            if let Ok(pretty) = serde_json::to_string_pretty(&value) {
                return PayloadView::Json(pretty);
            }
        }
    }
    match std::str::from_utf8(shown) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
        {
            PayloadView::Text(text.to_owned())
        }
        _ => PayloadView::Hex(hex_dump(&body[..body.len().min(MAX_HEX_BYTES)])),
    }
}

/// `offset  16 bytes in hex  |printable|`, one line per 16 bytes.
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!(
            "{:08x}  {:<47}  |{ascii}|\n",
            i * 16,
            hex.join(" ")
        ));
    }
    out
}

/// One row of the events table.
#[derive(Debug, Clone)]
pub struct EventRow {
    /// The event id.
    pub id: String,
    /// Its source.
    pub source: String,
    /// Its type.
    pub event_type: String,
    /// Its status.
    pub status: &'static str,
    /// When it was received.
    pub received: String,
    /// How long ago.
    pub ago: String,
    /// Attempts started.
    pub attempts: u32,
    /// The last error, if any.
    pub last_error: String,
}

impl EventRow {
    /// The row of `summary`, at `now`.
    pub fn new(summary: &EventSummary, now: Timestamp) -> Self {
        Self {
            id: summary.event_id.to_string(),
            source: summary.source.to_string(),
            event_type: summary.event_type.clone(),
            status: summary.status.as_str(),
            received: time(summary.received_at),
            ago: ago(summary.received_at, now),
            attempts: summary.attempt_count,
            last_error: summary.last_error.clone().unwrap_or_default(),
        }
    }
}

/// One line of an event's timeline: an attempt, or something else that happened to it.
#[derive(Debug, Clone)]
pub struct TimelineEntry {
    /// When.
    pub at: String,
    /// `attempt 2`, `replayed`, …
    pub what: String,
    /// `ok`, `failed` or `note`.
    pub outcome: &'static str,
    /// The attempt's duration.
    pub duration: String,
    /// Where it delivered to, without the query.
    pub url: String,
    /// The destination's status code.
    pub status_code: String,
    /// Its error, or the entry's note.
    pub detail: String,
    sort_key: i64,
}

/// The timeline of `record`: its attempts and its history, oldest first.
pub fn timeline(record: &EventRecord) -> Vec<TimelineEntry> {
    let mut entries: Vec<TimelineEntry> = record.attempts.iter().map(attempt_entry).collect();
    entries.extend(record.history.iter().map(|h| TimelineEntry {
        at: time(h.at),
        what: h.kind.clone(),
        outcome: "note",
        duration: String::new(),
        url: String::new(),
        status_code: String::new(),
        detail: h.note.clone(),
        sort_key: h.at.as_millis(),
    }));
    entries.sort_by_key(|e| e.sort_key);
    entries
}

fn attempt_entry(a: &Attempt) -> TimelineEntry {
    let mut detail = a.error.clone().unwrap_or_default();
    if let Some(note) = &a.note {
        if !detail.is_empty() {
            detail.push_str(" — ");
        }
        detail.push_str(note);
    }
    TimelineEntry {
        at: time(a.at),
        what: format!("attempt {}", a.attempt),
        outcome: if a.success { "ok" } else { "failed" },
        duration: format!("{} ms", a.duration_ms),
        url: a
            .url
            .as_deref()
            .map(url_without_query)
            .unwrap_or("")
            .to_owned(),
        status_code: a.status_code.map(|c| c.to_string()).unwrap_or_default(),
        detail,
        sort_key: a.at.as_millis(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_and_credentials_are_hidden_other_headers_shown() {
        let headers: BTreeMap<String, String> = [
            ("content-type", "application/json"),
            ("stripe-signature", "t=1,v1=abc"),
            ("x-hub-signature-256", "sha256=abc"),
            ("authorization", "Bearer x"),
            ("x-shopify-hmac-sha256", "abc"),
            ("x-github-event", "push"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let shown: BTreeMap<String, String> = shown_headers(&headers).into_iter().collect();
        assert_eq!(shown["content-type"], "application/json");
        assert_eq!(shown["x-github-event"], "push");
        for hidden in [
            "stripe-signature",
            "x-hub-signature-256",
            "authorization",
            "x-shopify-hmac-sha256",
        ] {
            assert_eq!(shown[hidden], "(hidden)", "{hidden}");
        }
    }

    #[test]
    fn payloads_are_json_text_or_hex() {
        assert_eq!(
            payload_view(br#"{"a":[1,2]}"#),
            PayloadView::Json("{\n  \"a\": [\n    1,\n    2\n  ]\n}".into())
        );
        assert_eq!(
            payload_view(b"a=1&b=2\n"),
            PayloadView::Text("a=1&b=2\n".into())
        );
        let PayloadView::Hex(dump) = payload_view(&[0u8, 159, 146, 150, b'A']) else {
            panic!("binary is shown as hex");
        };
        assert!(dump.starts_with("00000000  00 9f 92 96 41"), "{dump}");
        assert!(dump.trim_end().ends_with("|....A|"), "{dump}");
    }

    #[test]
    fn destination_urls_lose_their_query() {
        assert_eq!(
            url_without_query("https://b.example/hook?token=s3cret#x"),
            "https://b.example/hook"
        );
        assert_eq!(
            url_without_query("https://b.example/h"),
            "https://b.example/h"
        );
    }

    #[test]
    fn ages_are_short() {
        let now = Timestamp::from_secs(100_000);
        assert_eq!(ago(Timestamp::from_secs(99_990), now), "10s");
        assert_eq!(ago(Timestamp::from_secs(100_000 - 7200), now), "2h");
        assert_eq!(ago(Timestamp::from_secs(200_000), now), "0s");
    }
}
