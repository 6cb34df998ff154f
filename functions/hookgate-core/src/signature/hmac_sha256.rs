//! `hmac-sha256`: the generic scheme — an HMAC-SHA256 in one header, over the raw body and,
//! optionally, a signed timestamp and a signed event id.
//!
//! Default wire form: `X-Signature: sha256=<hex HMAC-SHA256 of the raw body>`. Header name,
//! prefix and encoding (hex or base64) are configurable, for providers that sign this way under
//! other names. Three more options describe providers that sign more than the body:
//!
//! - `timestamp_header`: a header carrying the signing time in Unix seconds. When set it is
//!   required, `{timestamp}` must be part of `signed_content` (an unsigned timestamp protects
//!   nothing: anyone could rewrite it), and requests signed more than `tolerance_secs` before or
//!   after now are refused.
//! - `id_header`: a header carrying the provider's event id.
//! - `signed_content`: what the HMAC covers, as a template (default `"{body}"`). Placeholders:
//!   `{body}` (exactly once), `{timestamp}` (needs `timestamp_header`) and `{id}` (needs
//!   `id_header`), at most once each; any other text is signed literally, e.g.
//!   `"v0:{timestamp}:{body}"` or `"{id}.{timestamp}.{body}"`. The template is parsed once, when
//!   the source is built; at verify time its pieces are fed to the HMAC one after the other, so
//!   the body is never copied.
//!
//! The pieces are concatenated, so the template must say where each one ends, or a captured
//! request could be replayed with a boundary moved — `X-Id: evt-42:{"order"` and the body
//! shortened by the same bytes, under `"{id}:{body}"` — and pass as a new event under the same
//! valid MAC. A template is therefore accepted only when the signed bytes split back into their
//! pieces one way only ([`SignedContent::parse`]):
//!
//! - every two placeholders are separated by literal text (`"{id}{body}"` is refused);
//! - the body may hold anything, so a placeholder before `{body}` is delimited by the first
//!   character of the text after it, and one after `{body}` by the last character of the text
//!   before it;
//! - a timestamp is digits, so its delimiter must not be a digit (refused at load otherwise);
//! - an id may hold almost anything, so an id that contains its delimiter (a `:` under
//!   `"{id}:{body}"`) is refused at verify time (`signature_malformed`): its boundary would be
//!   ambiguous.
//!
//! Dedup key: only signed content may name the event, so an unsigned header can neither split one
//! event into two nor merge two into one.
//! - When `{id}` is signed, the provider's id is the key ([`EventId::from_provider`]).
//! - Otherwise, without a signed timestamp, the key is the verified MAC itself
//!   ([`EventId::from_body_mac`], a keyed hash of exactly the signed content: no second pass over
//!   the body): the same body sent twice is the same event.
//! - With a signed timestamp and no id, the key is derived from the body ([`EventId::derive`]).
//!   The timestamp is deliberately left out of the key: a provider that retries re-signs with a
//!   fresh timestamp, and that retry must still dedupe. (An `id_header` that is not in the signed
//!   content is unsigned, so it is not part of the key either.)

use hmac::Mac;
use serde::Deserialize;

use super::common::{
    clean_event_type, decode_mac, encode_mac, event_type_header, Encoding, SigningKeys,
};
use super::{
    any_signature_matches, check_tolerance, header_str, hmac_sha256, parse_unix_secs,
    CommonOptions, SchemeError, SignatureError, SignatureScheme, SignedRequest, TypeSource,
    Verified,
};
use crate::clock::Timestamp;
use crate::envelope::{EventId, SourceName};

/// The options of `hmac-sha256`, beside those every source takes. Any other key of the source's
/// table is refused, named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacSha256Options {
    /// The header that carries the signature (default `x-signature`).
    #[serde(default)]
    pub header: Option<String>,
    /// Text before the signature in that header (default `sha256=`; `""` for none).
    #[serde(default)]
    pub prefix: Option<String>,
    /// `hex` (default) or `base64`.
    #[serde(default)]
    pub encoding: Option<String>,
    /// A header carrying the signing time in Unix seconds; when set, requests outside
    /// `tolerance_secs` are refused and `{timestamp}` must appear in `signed_content`.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// A header carrying the provider's event id; `{id}` may appear in `signed_content`, and
    /// only then is it used as the dedup key.
    #[serde(default)]
    pub id_header: Option<String>,
    /// What is signed, e.g. `"{timestamp}.{body}"` (default `"{body}"`). Placeholders: `{body}`
    /// (exactly once), `{timestamp}`, `{id}`.
    #[serde(default)]
    pub signed_content: Option<String>,
    /// The header naming the event type (default `x-event-type`; when absent, a top-level
    /// `"type"` string in a JSON body is used, else `unknown`).
    #[serde(default)]
    pub type_header: Option<String>,
}

/// One piece of the signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Text signed as written.
    Literal(Box<[u8]>),
    /// The raw body.
    Body,
    /// The timestamp header's value.
    Timestamp,
    /// The id header's value.
    Id,
}

/// The parsed `signed_content` template: its pieces, and the character that ends the id where
/// the template signs one (an id containing it is refused, see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SignedContent {
    pieces: Vec<Piece>,
    id_delimiter: Option<char>,
}

impl SignedContent {
    /// Parses `template`; `{timestamp}` and `{id}` are allowed only when their header is set.
    fn parse(template: &str, has_timestamp: bool, has_id: bool) -> Result<Self, SchemeError> {
        let bad = |why: String| {
            SchemeError::Option(format!(
                "signed_content {template:?}: {why} (placeholders: {{body}} exactly once, \
                 {{timestamp}} and {{id}} at most once)"
            ))
        };
        let mut pieces = Vec::new();
        let (mut body, mut timestamp, mut id) = (0, 0, 0);
        let mut rest = template;
        while let Some(at) = rest.find(['{', '}']) {
            let (literal, tail) = rest.split_at(at);
            if !literal.is_empty() {
                pieces.push(Piece::Literal(literal.as_bytes().into()));
            }
            if tail.starts_with('}') {
                return Err(bad("a '}' closes no placeholder".into()));
            }
            let close = tail
                .find('}')
                .ok_or_else(|| bad("a '{' is never closed".into()))?;
            let (piece, count) = match &tail[1..close] {
                "body" => (Piece::Body, &mut body),
                "timestamp" => (Piece::Timestamp, &mut timestamp),
                "id" => (Piece::Id, &mut id),
                other => return Err(bad(format!("unknown placeholder {{{other}}}"))),
            };
            *count += 1;
            pieces.push(piece);
            rest = &tail[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.as_bytes().into()));
        }
        if body != 1 {
            return Err(bad(format!("{{body}} appears {body} times")));
        }
        if timestamp > 1 || id > 1 {
            return Err(bad("a placeholder appears more than once".into()));
        }
        if timestamp == 1 && !has_timestamp {
            return Err(bad("{timestamp} needs timestamp_header".into()));
        }
        if has_timestamp && timestamp == 0 {
            // A replay window over an unsigned header protects nothing: anyone can rewrite it.
            return Err(bad(
                "timestamp_header needs {timestamp} in signed_content (an unsigned timestamp cannot stop replays)".into(),
            ));
        }
        if id == 1 && !has_id {
            return Err(bad("{id} needs id_header".into()));
        }
        let id_delimiter = Self::delimiters(&pieces).map_err(bad)?;
        Ok(Self {
            pieces,
            id_delimiter,
        })
    }

    /// Checks that the signed bytes split back into the pieces one way only, and returns the
    /// character that delimits the id, if the template signs one.
    ///
    /// The body may hold anything, so the pieces before it are read from the left, each ending
    /// at the first occurrence of the next text's first character, and the pieces after it from
    /// the right, each starting after the last occurrence of the previous text's last
    /// character. That is unique when no placeholder touches another and no placeholder can
    /// contain its delimiter: a timestamp is digits, so its delimiter must not be one; an id is
    /// checked at verify time.
    fn delimiters(pieces: &[Piece]) -> Result<Option<char>, String> {
        let body_at = pieces.iter().position(|p| *p == Piece::Body).unwrap_or(0);
        let mut id_delimiter = None;
        for (i, piece) in pieces.iter().enumerate() {
            let name = match piece {
                Piece::Literal(_) => continue,
                Piece::Body => "{body}",
                Piece::Timestamp => "{timestamp}",
                Piece::Id => "{id}",
            };
            let before = i.checked_sub(1).map(|j| &pieces[j]);
            let after = pieces.get(i + 1);
            for neighbour in [before, after].into_iter().flatten() {
                if !matches!(neighbour, Piece::Literal(_)) {
                    return Err(format!(
                        "{name} touches another placeholder, so the boundary between them \
                         could be moved; put literal text between them"
                    ));
                }
            }
            if *piece == Piece::Body {
                continue;
            }
            // Before the body: ended by the next text's first character; after the body:
            // started after the previous text's last character.
            let delimiter = if i < body_at {
                match after {
                    Some(Piece::Literal(text)) => first_char(text),
                    _ => None,
                }
            } else {
                match before {
                    Some(Piece::Literal(text)) => last_char(text),
                    _ => None,
                }
            };
            let Some(delimiter) = delimiter else {
                return Err(format!("{name} needs literal text between it and {{body}}"));
            };
            match piece {
                Piece::Timestamp if delimiter.is_ascii_digit() => {
                    return Err(format!(
                        "{{timestamp}} is delimited by the digit {delimiter:?}, which a timestamp \
                         may contain; use a separator that is not a digit"
                    ))
                }
                Piece::Id => id_delimiter = Some(delimiter),
                _ => {}
            }
        }
        Ok(id_delimiter)
    }

    fn signs_id(&self) -> bool {
        self.pieces.contains(&Piece::Id)
    }

    /// The byte slices the HMAC covers, in order; nothing is copied. A placeholder whose value
    /// is absent (not possible once `parse` has accepted the template) signs as empty.
    fn parts<'a>(&'a self, body: &'a [u8], timestamp: &'a str, id: &'a str) -> Vec<&'a [u8]> {
        self.pieces
            .iter()
            .map(|piece| match piece {
                Piece::Literal(text) => &text[..],
                Piece::Body => body,
                Piece::Timestamp => timestamp.as_bytes(),
                Piece::Id => id.as_bytes(),
            })
            .collect()
    }
}

/// The generic HMAC-SHA256 scheme.
#[derive(Debug, Clone)]
pub struct HmacSha256 {
    keys: SigningKeys,
    header: String,
    prefix: String,
    encoding: Encoding,
    type_header: String,
    timestamp_header: Option<String>,
    id_header: Option<String>,
    content: SignedContent,
    tolerance_secs: u64,
    kept_headers: Vec<String>,
}

impl HmacSha256 {
    /// The scheme with a source's secrets and `tolerance_secs`, and its own options.
    pub fn new(common: &CommonOptions, options: &HmacSha256Options) -> Result<Self, SchemeError> {
        let encoding = match options.encoding.as_deref() {
            None | Some("hex") => Encoding::Hex,
            Some("base64") => Encoding::Base64,
            Some(other) => {
                return Err(SchemeError::Option(format!(
                    "encoding must be \"hex\" or \"base64\", not {other:?}"
                )))
            }
        };
        let header = header_name(options.header.as_deref().unwrap_or("x-signature"))?;
        let type_header = header_name(options.type_header.as_deref().unwrap_or("x-event-type"))?;
        let timestamp_header = options
            .timestamp_header
            .as_deref()
            .map(header_name)
            .transpose()?;
        let id_header = options.id_header.as_deref().map(header_name).transpose()?;
        for (option, name) in [
            ("timestamp_header", &timestamp_header),
            ("id_header", &id_header),
        ] {
            if let Some(name) = name {
                if *name == header || *name == type_header {
                    return Err(SchemeError::Option(format!(
                        "{option} {name:?} must differ from the signature and type headers"
                    )));
                }
            }
        }
        if timestamp_header.is_some() && timestamp_header == id_header {
            return Err(SchemeError::Option(
                "timestamp_header and id_header must be different headers".into(),
            ));
        }
        let content = SignedContent::parse(
            options.signed_content.as_deref().unwrap_or("{body}"),
            timestamp_header.is_some(),
            id_header.is_some(),
        )?;
        let kept_headers = std::iter::once(type_header.clone())
            .chain(timestamp_header.clone())
            .chain(id_header.clone())
            .collect();
        Ok(Self {
            keys: SigningKeys::new(&common.secrets),
            header,
            prefix: options.prefix.clone().unwrap_or_else(|| "sha256=".into()),
            encoding,
            type_header,
            timestamp_header,
            id_header,
            content,
            tolerance_secs: common.tolerance_secs,
            kept_headers,
        })
    }

    /// The event type, and whether it came from the (unsigned) type header.
    fn event_type(&self, request: &SignedRequest<'_>) -> (String, bool) {
        if let Some(t) = event_type_header(request.headers, &self.type_header) {
            return (t.to_owned(), true);
        }
        let from_body = super::json_type(request.body)
            .as_deref()
            .and_then(clean_event_type)
            .map(str::to_owned)
            .unwrap_or_else(|| "unknown".to_owned());
        (from_body, false)
    }
}

/// The first character of a literal piece (which came from a `&str`, so is UTF-8).
fn first_char(text: &[u8]) -> Option<char> {
    std::str::from_utf8(text).ok()?.chars().next()
}

/// The last character of a literal piece.
fn last_char(text: &[u8]) -> Option<char> {
    std::str::from_utf8(text).ok()?.chars().next_back()
}

/// A configured header name, lower-cased, or why it cannot be one.
fn header_name(name: &str) -> Result<String, SchemeError> {
    let lower = name.to_ascii_lowercase();
    if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
        return Err(SchemeError::Option(format!(
            "{name:?} is not a header name"
        )));
    }
    Ok(lower)
}

impl SignatureScheme for HmacSha256 {
    fn name(&self) -> &'static str {
        "hmac-sha256"
    }

    fn verify(
        &self,
        source: &SourceName,
        request: &SignedRequest<'_>,
        now: Timestamp,
    ) -> Result<Verified, SignatureError> {
        let value = header_str(request.headers, &self.header)?;
        let given = decode_mac(value, &self.prefix, self.encoding, &self.header)?;
        let timestamp = match &self.timestamp_header {
            Some(name) => {
                let value = header_str(request.headers, name)?.trim();
                Some((value, parse_unix_secs(value, name)?))
            }
            None => None,
        };
        // The id is read only when it is signed: an unsigned id is never trusted.
        let id = match &self.id_header {
            Some(name) if self.content.signs_id() => {
                let value = header_str(request.headers, name)?.trim();
                // An id holding its own delimiter could be split elsewhere under the same MAC.
                let ambiguous = self.content.id_delimiter.is_some_and(|d| value.contains(d));
                if value.is_empty() || ambiguous {
                    return Err(SignatureError::Malformed(name.clone()));
                }
                Some(value)
            }
            _ => None,
        };
        let parts = self.content.parts(
            request.body,
            timestamp.map_or("", |(text, _)| text),
            id.unwrap_or(""),
        );
        if !any_signature_matches(self.keys.all(), &parts, std::slice::from_ref(&given)) {
            return Err(SignatureError::Mismatch);
        }
        if let Some((_, signed_at)) = timestamp {
            check_tolerance(signed_at, now, self.tolerance_secs)?;
        }
        let event_id = match id {
            Some(id) => EventId::from_provider(source, id),
            // The MAC covers only the body (and literals): it keys the event with no second
            // pass over the body. A signed timestamp changes on every retry, so then the body
            // itself is hashed.
            None if timestamp.is_none() => EventId::from_body_mac(source, &given),
            None => EventId::derive(source, &[request.body]),
        };
        let (event_type, from_header) = self.event_type(request);
        let header = from_header.then_some(self.type_header.as_str());
        Ok(Verified::event_typed_by(event_id, event_type, header))
    }

    fn sign(&self, body: &[u8], now: Timestamp) -> Vec<(String, String)> {
        let Some(key) = self.keys.signing() else {
            return Vec::new();
        };
        let timestamp = now.as_secs().to_string();
        // An id the template can delimit: without its delimiter character.
        let id: String = format!("msg_{}", crate::token::uuid().simple())
            .chars()
            .filter(|c| Some(*c) != self.content.id_delimiter)
            .collect();
        let parts = self.content.parts(body, &timestamp, &id);
        let tag = hmac_sha256(key, &parts).finalize().into_bytes();
        let mut headers = vec![(
            self.header.clone(),
            format!("{}{}", self.prefix, encode_mac(&tag, self.encoding)),
        )];
        if let Some(name) = &self.timestamp_header {
            headers.push((name.clone(), timestamp));
        }
        if let Some(name) = &self.id_header {
            headers.push((name.clone(), id));
        }
        headers
    }

    fn kept_headers(&self) -> &[String] {
        &self.kept_headers
    }

    fn signs_timestamp(&self) -> bool {
        self.timestamp_header.is_some()
    }

    fn type_source(&self) -> TypeSource<'_> {
        TypeSource::HeaderElseBody(&self.type_header)
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    /// The scheme with secrets `key` and `old-key` and `extra`, a TOML table of its options
    /// and `tolerance_secs`.
    fn try_scheme(extra: &str) -> Result<HmacSha256, SchemeError> {
        with_secrets(&["key", "old-key"], extra)
    }

    fn with_secrets(secrets: &[&str], extra: &str) -> Result<HmacSha256, SchemeError> {
        let mut options: toml::Table = toml::from_str(extra).unwrap();
        options.remove("tolerance_secs");
        let options = HmacSha256Options::deserialize(toml::Value::Table(options)).unwrap();
        HmacSha256::new(&CommonOptions::for_test_with(secrets, extra), &options)
    }

    fn scheme(extra: &str) -> HmacSha256 {
        try_scheme(extra).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn signed_headers(signed: &[(String, String)]) -> HeaderMap {
        let pairs: Vec<(&str, &str)> = signed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        headers(&pairs)
    }

    const FOX: &[u8] = b"The quick brown fox jumps over the lazy dog";
    // RFC 4231-style published vector: HMAC-SHA256(key = "key", FOX).
    const FOX_HEX: &str = "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8";

    fn verify_at(
        s: &HmacSha256,
        h: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, SignatureError> {
        let source = SourceName::parse("demo").unwrap();
        s.verify(
            &source,
            &SignedRequest { headers: h, body },
            Timestamp::from_secs(now),
        )
    }

    fn verify(s: &HmacSha256, h: &HeaderMap, body: &[u8]) -> Result<Verified, SignatureError> {
        verify_at(s, h, body, 0)
    }

    #[test]
    fn accepts_the_published_vector() {
        let h = headers(&[("x-signature", &format!("sha256={FOX_HEX}"))]);
        let v = verify(&scheme(""), &h, FOX).unwrap();
        assert_eq!(v.event_type, "unknown");
        assert!(v.event_id.as_str().starts_with("demo:"));
        assert_eq!(
            scheme("").sign(FOX, Timestamp::from_secs(0)),
            vec![("x-signature".into(), format!("sha256={FOX_HEX}"))]
        );
    }

    #[test]
    fn any_configured_secret_verifies() {
        let old = scheme("");
        let mut rotated = old.clone();
        rotated.keys.0.reverse();
        let signed = rotated.sign(b"{}", Timestamp::from_secs(0));
        let h = headers(&[(&signed[0].0, &signed[0].1)]);
        assert!(verify(&old, &h, b"{}").is_ok());
    }

    #[test]
    fn rejections_have_distinct_reasons() {
        let s = scheme("");
        let good = format!("sha256={FOX_HEX}");
        let cases: Vec<(HeaderMap, &[u8], &str)> = vec![
            (headers(&[]), FOX, "signature_missing"),
            (
                headers(&[("x-signature", FOX_HEX)]),
                FOX,
                "signature_malformed",
            ),
            (
                headers(&[("x-signature", "sha256=zz")]),
                FOX,
                "signature_malformed",
            ),
            (
                headers(&[("x-signature", "sha256=abcd")]),
                FOX,
                "signature_malformed",
            ),
            (
                headers(&[("x-signature", &format!("sha1={FOX_HEX}"))]),
                FOX,
                "signature_malformed",
            ),
            (
                headers(&[("x-signature", &"a".repeat(5000))]),
                FOX,
                "signature_malformed",
            ),
            (
                headers(&[("x-signature", &good)]),
                b"The quick brown fox jumps over the lazy cog",
                "signature_mismatch",
            ),
            (
                headers(&[("x-signature", &good.replace('f', "e"))]),
                FOX,
                "signature_mismatch",
            ),
        ];
        for (h, body, code) in cases {
            assert_eq!(verify(&s, &h, body).unwrap_err().code(), code, "{h:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            "x-signature",
            HeaderValue::from_bytes(b"sha256=\xff\xfe").unwrap(),
        );
        assert_eq!(
            verify(&s, &h, FOX).unwrap_err().code(),
            "signature_malformed"
        );
    }

    #[test]
    fn configurable_header_prefix_and_encoding() {
        let s = scheme("header='X-Hub-Sig'\nprefix=''\nencoding='base64'\ntype_header='X-Kind'");
        let signed = s.sign(FOX, Timestamp::from_secs(0));
        assert_eq!(signed[0].0, "x-hub-sig");
        assert_eq!(signed[0].1, "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg=");
        let h = headers(&[("x-hub-sig", &signed[0].1), ("x-kind", "order.paid")]);
        let v = verify(&s, &h, FOX).unwrap();
        assert_eq!(v.event_type, "order.paid");
        assert!(!v.type_signed, "a type header is unsigned");
    }

    #[test]
    fn type_falls_back_to_the_json_body() {
        let s = scheme("");
        let body = br#"{"type":"invoice.paid","id":1}"#;
        let signed = s.sign(body, Timestamp::from_secs(0));
        let h = headers(&[(&signed[0].0, &signed[0].1)]);
        let v = verify(&s, &h, body).unwrap();
        assert_eq!(v.event_type, "invoice.paid");
        assert!(v.type_signed, "the body is signed");
    }

    // Slack's published example ("Verifying requests from Slack",
    // https://api.slack.com/authentication/verifying-requests-from-slack, also the test vector of
    // slackapi/python-slack-sdk tests/signature/test_signature_verifier.py), checked through the
    // generic scheme configured as Slack: the `v0:{timestamp}:{body}` template form.
    const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const SLACK_TIMESTAMP: i64 = 1_531_420_618;
    const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SLACK_SIGNATURE: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn slack_like() -> HmacSha256 {
        with_secrets(
            &[SLACK_SECRET],
            "header='X-Slack-Signature'\nprefix='v0='\n\
             timestamp_header='X-Slack-Request-Timestamp'\n\
             signed_content='v0:{timestamp}:{body}'",
        )
        .unwrap()
    }

    #[test]
    fn timestamp_template_verifies_slacks_published_example() {
        let s = slack_like();
        let ts = SLACK_TIMESTAMP.to_string();
        let h = headers(&[
            ("x-slack-signature", SLACK_SIGNATURE),
            ("x-slack-request-timestamp", &ts),
        ]);
        let v = verify_at(&s, &h, SLACK_BODY, SLACK_TIMESTAMP).unwrap();
        assert_eq!(
            v.event_id,
            EventId::derive(&SourceName::parse("demo").unwrap(), &[SLACK_BODY])
        );
        assert_eq!(
            s.sign(SLACK_BODY, Timestamp::from_secs(SLACK_TIMESTAMP)),
            vec![
                ("x-slack-signature".to_owned(), SLACK_SIGNATURE.to_owned()),
                ("x-slack-request-timestamp".to_owned(), ts.clone()),
            ]
        );
        // The timestamp is signed: the same signature under another timestamp does not verify.
        let h = headers(&[
            ("x-slack-signature", SLACK_SIGNATURE),
            ("x-slack-request-timestamp", "1531420619"),
        ]);
        assert_eq!(
            verify_at(&s, &h, SLACK_BODY, SLACK_TIMESTAMP)
                .unwrap_err()
                .code(),
            "signature_mismatch"
        );
    }

    // Vectors for the other template forms, computed with Python's hmac module
    // (`hmac.new(b"key", message, hashlib.sha256)`), as no provider publishes these exact ones.
    #[test]
    fn timestamp_and_id_template_forms() {
        let body = FOX;
        // "{timestamp}.{body}"
        let s = scheme("timestamp_header='X-Ts'\nsigned_content='{timestamp}.{body}'");
        let h = headers(&[
            (
                "x-signature",
                "sha256=2f658d6aef4f246e91cd741bbcded7479e9605f9d41c9e248122a117e0e1765b",
            ),
            ("x-ts", "1700000000"),
        ]);
        assert!(verify_at(&s, &h, body, 1_700_000_000).is_ok());

        // "{id}.{timestamp}.{body}", base64 (the Standard Webhooks layout)
        let s = scheme(
            "encoding='base64'\nprefix='v1,'\ntimestamp_header='X-Ts'\nid_header='X-Id'\n\
             signed_content='{id}.{timestamp}.{body}'",
        );
        let h = headers(&[
            (
                "x-signature",
                "v1,X4j+gW2SUd2AmBQaTFpxpQnq5wLO7Dzg7NJo8QB7etU=",
            ),
            ("x-ts", "1700000000"),
            ("x-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"),
        ]);
        let v = verify_at(&s, &h, body, 1_700_000_000).unwrap();
        assert_eq!(v.event_id.as_str(), "demo:msg_2KWPBgLlAfxdpx2AI54pPJ85f4W");

        // "{id}:{body}", no timestamp
        let s = scheme("id_header='X-Id'\nsigned_content='{id}:{body}'");
        let h = headers(&[
            (
                "x-signature",
                "sha256=71d0bf10e6a1d0540b0f6e24d4d8e153e27c48d9d12e9573b3403d754167a350",
            ),
            ("x-id", "evt-42"),
        ]);
        assert_eq!(
            verify(&s, &h, body).unwrap().event_id.as_str(),
            "demo:evt-42"
        );
        // The id is signed: another id with the same signature is refused.
        let h = headers(&[
            (
                "x-signature",
                "sha256=71d0bf10e6a1d0540b0f6e24d4d8e153e27c48d9d12e9573b3403d754167a350",
            ),
            ("x-id", "evt-43"),
        ]);
        assert_eq!(
            verify(&s, &h, body).unwrap_err().code(),
            "signature_mismatch"
        );
    }

    #[test]
    fn invalid_templates_are_refused_when_the_source_is_built() {
        let cases = [
            ("signed_content=''", "{body} appears 0 times"),
            (
                "signed_content='{timestamp}'\ntimestamp_header='x-ts'",
                "{body} appears 0 times",
            ),
            ("signed_content='{body}.{body}'", "{body} appears 2 times"),
            (
                "signed_content='{timestamp}.{body}'",
                "{timestamp} needs timestamp_header",
            ),
            ("signed_content='{id}.{body}'", "{id} needs id_header"),
            (
                "timestamp_header='x-ts'",
                "timestamp_header needs {timestamp}",
            ),
            (
                "signed_content='{id}.{id}.{body}'\nid_header='x-id'",
                "more than once",
            ),
            (
                "signed_content='{timestamp}{timestamp}{body}'\ntimestamp_header='x-ts'",
                "more than once",
            ),
            ("signed_content='{bodyy}'", "unknown placeholder {bodyy}"),
            ("signed_content='{Body}'", "unknown placeholder {Body}"),
            ("signed_content='{}{body}'", "unknown placeholder {}"),
            ("signed_content='{body'", "never closed"),
            ("signed_content='body}'", "closes no placeholder"),
            ("signed_content='{bo{dy}'", "unknown placeholder"),
            // Ambiguous templates: a boundary that could move under the same MAC.
            (
                "signed_content='{id}{body}'\nid_header='x-id'",
                "{id} touches another placeholder",
            ),
            (
                "signed_content='{body}{id}'\nid_header='x-id'",
                "{body} touches another placeholder",
            ),
            (
                "signed_content='{timestamp}{body}'\ntimestamp_header='x-ts'",
                "{timestamp} touches another placeholder",
            ),
            (
                "signed_content='{id}{timestamp}.{body}'\nid_header='x-id'\ntimestamp_header='x-ts'",
                "{id} touches another placeholder",
            ),
            (
                "signed_content='{timestamp}0{body}'\ntimestamp_header='x-ts'",
                "delimited by the digit '0'",
            ),
            (
                "signed_content='{body}.7{timestamp}'\ntimestamp_header='x-ts'",
                "delimited by the digit '7'",
            ),
            ("timestamp_header='bad header'", "not a header name"),
            ("id_header='x-signature'", "must differ"),
            (
                "timestamp_header='x-a'\nid_header='X-A'",
                "different headers",
            ),
        ];
        for (extra, want) in cases {
            let err = try_scheme(extra).unwrap_err().to_string();
            assert!(err.contains(want), "{extra:?} gave {err:?}");
        }
        // The accepted forms, with literal text around the placeholders.
        for (extra, pieces) in [
            ("", 1),
            ("signed_content='{body}'", 1),
            ("signed_content='v0:{timestamp}:{body}'\ntimestamp_header='x-ts'", 4),
            (
                "signed_content='{id}.{timestamp}.{body}'\ntimestamp_header='x-ts'\nid_header='x-id'",
                5,
            ),
            ("signed_content='<{body}>'", 3),
            ("signed_content='{id}:{body}'\nid_header='x-id'", 3),
            (
                "signed_content='{timestamp}.{id}.{body}'\ntimestamp_header='x-ts'\nid_header='x-id'",
                5,
            ),
            (
                "signed_content='{body}|{id}|{timestamp}'\ntimestamp_header='x-ts'\nid_header='x-id'",
                5,
            ),
            ("signed_content='{timestamp}a1{body}'\ntimestamp_header='x-ts'", 3),
        ] {
            assert_eq!(scheme(extra).content.pieces.len(), pieces, "{extra:?}");
        }
    }

    #[test]
    fn timestamp_window_applies_both_ways() {
        let s = scheme(
            "timestamp_header='X-Ts'\nsigned_content='{timestamp}.{body}'\ntolerance_secs=300",
        );
        let at = 1_700_000_000;
        let signed = s.sign(FOX, Timestamp::from_secs(at));
        let h = signed_headers(&signed);
        for (now, code) in [
            (at, None),
            (at + 300, None),
            (at - 300, None),
            (at + 301, Some("timestamp_out_of_tolerance")),
            (at - 301, Some("timestamp_out_of_tolerance")),
        ] {
            assert_eq!(
                verify_at(&s, &h, FOX, now).err().map(|e| e.code()),
                code,
                "now = at{:+}",
                now - at
            );
        }
        let sig = &signed[0].1;
        for (ts, code) in [
            (None, "signature_missing"),
            (Some("soon"), "signature_malformed"),
            (Some("-1700000000"), "signature_malformed"),
            (Some("1700000000.5"), "signature_malformed"),
            (Some("1234567890123"), "signature_malformed"),
            (Some(""), "signature_malformed"),
        ] {
            let mut pairs = vec![("x-signature", sig.as_str())];
            pairs.extend(ts.map(|t| ("x-ts", t)));
            assert_eq!(
                verify_at(&s, &headers(&pairs), FOX, at).unwrap_err().code(),
                code,
                "{ts:?}"
            );
        }
    }

    #[test]
    fn a_signed_id_is_the_dedup_key_and_a_timestamp_is_not() {
        let source = SourceName::parse("demo").unwrap();
        // With {id} signed, the provider's id names the event.
        let s = scheme(
            "id_header='X-Id'\ntimestamp_header='X-Ts'\nsigned_content='{id}.{timestamp}.{body}'",
        );
        let first = s.sign(FOX, Timestamp::from_secs(1000));
        let second = s.sign(FOX, Timestamp::from_secs(1000));
        assert_ne!(first[2].1, second[2].1, "sign() makes a fresh id each time");
        let id = verify_at(&s, &signed_headers(&first), FOX, 1000)
            .unwrap()
            .event_id;
        assert_eq!(id, EventId::from_provider(&source, &first[2].1));
        assert_ne!(
            id,
            verify_at(&s, &signed_headers(&second), FOX, 1000)
                .unwrap()
                .event_id
        );
        // A missing or empty signed id is refused.
        let no_id: Vec<_> = first.iter().take(2).cloned().collect();
        assert_eq!(
            verify_at(&s, &signed_headers(&no_id), FOX, 1000)
                .unwrap_err()
                .code(),
            "signature_missing"
        );
        let mut empty_id = first.clone();
        empty_id[2].1 = String::new();
        assert_eq!(
            verify_at(&s, &signed_headers(&empty_id), FOX, 1000)
                .unwrap_err()
                .code(),
            "signature_malformed"
        );

        // Without {id}, the key is the body alone: a retry re-signed with a new timestamp
        // dedupes, and an unsigned id header neither splits nor is required.
        let s = scheme(
            "id_header='X-Id'\ntimestamp_header='X-Ts'\nsigned_content='{timestamp}.{body}'",
        );
        let retry_a = s.sign(FOX, Timestamp::from_secs(1000));
        let retry_b = s.sign(FOX, Timestamp::from_secs(1060));
        assert_ne!(retry_a[0].1, retry_b[0].1);
        let a = verify_at(&s, &signed_headers(&retry_a), FOX, 1060).unwrap();
        let b = verify_at(&s, &signed_headers(&retry_b), FOX, 1060).unwrap();
        assert_eq!(a.event_id, b.event_id);
        assert_eq!(a.event_id, EventId::derive(&source, &[FOX]));
        let without_id: Vec<_> = retry_a.iter().take(2).cloned().collect();
        assert!(verify_at(&s, &signed_headers(&without_id), FOX, 1060).is_ok());
    }

    #[test]
    fn sign_emits_every_header_the_config_needs() {
        let s = scheme(
            "id_header='X-Id'\ntimestamp_header='X-Ts'\nsigned_content='{id}.{timestamp}.{body}'",
        );
        let signed = s.sign(b"{}", Timestamp::from_secs(1_700_000_000));
        let names: Vec<&str> = signed.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["x-signature", "x-ts", "x-id"]);
        assert_eq!(signed[1].1, "1700000000");
        assert!(verify_at(&s, &signed_headers(&signed), b"{}", 1_700_000_000).is_ok());
        assert_eq!(s.kept_headers(), ["x-event-type", "x-ts", "x-id"]);
        assert_eq!(scheme("").kept_headers(), ["x-event-type"]);
    }

    /// The headers of a request signed under `template` by hand: `(id, timestamp)` as sent.
    fn hand_signed(s: &HmacSha256, id: &str, timestamp: Option<&str>, body: &[u8]) -> HeaderMap {
        let parts = s.content.parts(body, timestamp.unwrap_or(""), id);
        let tag = hmac_sha256(b"key", &parts).finalize().into_bytes();
        let sig = format!("sha256={}", encode_mac(&tag, Encoding::Hex));
        let mut pairs = vec![("x-signature", sig.as_str()), ("x-id", id)];
        pairs.extend(timestamp.map(|t| ("x-ts", t)));
        headers(&pairs)
    }

    #[test]
    fn a_replay_with_the_id_body_boundary_moved_is_refused() {
        // The attack: a captured `{id}:{body}` request, replayed with part of the body moved into
        // the id header. The signed bytes are the same, so the MAC still matches; read naively
        // it is a new event (a new id) with a body the provider never sent.
        let s = scheme("id_header='X-Id'\nsigned_content='{id}:{body}'");
        let body = br#"{"order":1}"#;
        let captured = hand_signed(&s, "evt-42", None, body);
        let genuine = verify(&s, &captured, body).unwrap();
        assert_eq!(genuine.event_id.as_str(), "demo:evt-42");

        let mut moved = captured.clone();
        moved.insert("x-id", HeaderValue::from_static(r#"evt-42:{"order""#));
        assert_eq!(
            verify(&s, &moved, b"1}").unwrap_err(),
            SignatureError::Malformed("x-id".into()),
            "the moved boundary must not pass as event evt-42:{{\"order\""
        );
        // The other way: the id shortened, its tail moved into the body.
        let s_dash = scheme("id_header='X-Id'\nsigned_content='{id}-{body}'");
        let captured = hand_signed(&s_dash, "evt-42", None, body);
        assert!(
            verify(&s_dash, &captured, body).is_err(),
            "ids with '-' are ambiguous here"
        );
        let captured = hand_signed(&s_dash, "evt42", None, br#"{"a":"b-c"}"#);
        assert!(verify(&s_dash, &captured, br#"{"a":"b-c"}"#).is_ok());
        let mut moved = captured.clone();
        moved.insert("x-id", HeaderValue::from_static(r#"evt42-{"a":"b"#));
        assert_eq!(
            verify(&s_dash, &moved, br#"c"}"#).unwrap_err().code(),
            "signature_malformed"
        );
    }

    #[test]
    fn a_replay_with_the_timestamp_id_body_boundary_moved_is_refused() {
        let s = scheme(
            "id_header='X-Id'\ntimestamp_header='X-Ts'\nsigned_content='{timestamp}.{id}.{body}'",
        );
        let body = br#"{"total":"42.00"}"#;
        let at = 1_700_000_000;
        let captured = hand_signed(&s, "evt-42", Some("1700000000"), body);
        assert!(verify_at(&s, &captured, body, at).is_ok());
        let mut moved = captured.clone();
        moved.insert("x-id", HeaderValue::from_static(r#"evt-42.{"total":"42"#));
        assert_eq!(
            verify_at(&s, &moved, br#"00"}"#, at).unwrap_err().code(),
            "signature_malformed"
        );
        // After the body, an id is read from the right: it may not hold the text's last
        // character either.
        let s = scheme("id_header='X-Id'\nsigned_content='{body}#{id}'");
        let captured = hand_signed(&s, "evt-42", None, b"a#b");
        assert!(verify(&s, &captured, b"a#b").is_ok());
        let mut moved = captured.clone();
        moved.insert("x-id", HeaderValue::from_static("b#evt-42"));
        assert_eq!(
            verify(&s, &moved, b"a").unwrap_err().code(),
            "signature_malformed"
        );
    }

    #[test]
    fn sign_makes_ids_the_template_can_delimit() {
        for template in ["{id}_{body}", "{id}g{body}", "{id}m{body}"] {
            let s = scheme(&format!("id_header='X-Id'\nsigned_content='{template}'"));
            for _ in 0..20 {
                let signed = s.sign(FOX, Timestamp::from_secs(0));
                assert!(
                    verify(&s, &signed_headers(&signed), FOX).is_ok(),
                    "{template}: {signed:?}"
                );
            }
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = scheme("");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("old-key") && !shown.contains("107, 101, 121"),
            "{shown}"
        );
        assert!(shown.contains("***"));
        let h = headers(&[(
            "x-signature",
            &format!("sha256={}", FOX_HEX.replace('f', "e")),
        )]);
        let err = verify(&s, &h, FOX).unwrap_err();
        assert_eq!(err, SignatureError::Mismatch);
        let shown = format!("{err:?} {err}");
        assert!(
            !shown.contains(FOX_HEX) && !shown.contains("key"),
            "{shown}"
        );
    }
}
