//! Top-level string fields of a JSON body (`id`, `type`), read without parsing the whole body.
//!
//! The receiver needs two small strings from a body that may be hundreds of KiB: its event type
//! and, for Stripe, its event id. Parsing the whole document for them cost more than the HMAC
//! over it (a 256 KiB provider-shaped body: 285 µs of parsing beside 166 µs of hashing), and
//! the receiver's budget is one hashing pass. So this scanner walks only the top-level object,
//! stops as soon as every wanted key is found (`type` comes first in a Standard Webhooks
//! payload), and skips the values in between by their brackets and quotes alone: brackets are
//! looked for eight bytes at a time, and `memchr` finds the end of each longer string. Stripe
//! puts `type` last, so its whole `data` object is skipped (about 1 GB/s on a pretty-printed
//! body of small fields, against 0.75 GB/s for a full parse).
//!
//! It validates what it reads, not what it skips: the body has already been authenticated, so
//! it is the provider's document, and the fields are only routing metadata. Where the body is
//! not a JSON object, or a wanted value is not a string, that field is `None`. A key repeated at
//! the top level counts on its first occurrence. Escapes in keys and values are decoded as JSON
//! decodes them.

use std::borrow::Cow;

/// The string values of the top-level `keys` of the JSON object `body`, each `None` when the
/// key is absent (before any malformation) or its value is not a JSON string.
pub(crate) fn top_level_strings<const N: usize>(
    body: &[u8],
    keys: [&str; N],
) -> [Option<String>; N] {
    let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
    let mut seen = [false; N];
    // `None` from the walk only means the body ended or broke off: what was read stands.
    let _ = walk(body, &keys, &mut found, &mut seen);
    found
}

/// Reads top-level members until every key is seen; `None` where the body breaks off.
fn walk<const N: usize>(
    body: &[u8],
    keys: &[&str; N],
    found: &mut [Option<String>; N],
    seen: &mut [bool; N],
) -> Option<()> {
    let mut at = skip_ws(body, 0);
    if body.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_ws(body, at + 1);
    if body.get(at) == Some(&b'}') {
        return Some(());
    }
    loop {
        let key_end = string_end(body, at)?;
        let key = decode(&body[at..key_end]);
        at = skip_ws(body, key_end);
        if body.get(at) != Some(&b':') {
            return None;
        }
        at = skip_ws(body, at + 1);
        let wanted = key
            .as_deref()
            .and_then(|k| keys.iter().position(|w| *w == k))
            .filter(|&i| !seen[i]);
        let value_end = value_end(body, at)?;
        if let Some(i) = wanted {
            seen[i] = true;
            if body[at] == b'"' {
                found[i] = decode(&body[at..value_end]).map(Cow::into_owned);
            }
            if seen.iter().all(|s| *s) {
                return Some(());
            }
        }
        at = skip_ws(body, value_end);
        match body.get(at)? {
            b',' => at = skip_ws(body, at + 1),
            b'}' => return Some(()),
            _ => return None,
        }
    }
}

/// The text of a JSON string token (`"…"`, quotes included), unescaped; `None` when it is not
/// valid UTF-8 or its escapes are invalid.
fn decode(token: &[u8]) -> Option<Cow<'_, str>> {
    let inner = &token[1..token.len() - 1];
    if memchr::memchr(b'\\', inner).is_none() {
        return std::str::from_utf8(inner).ok().map(Cow::Borrowed);
    }
    serde_json::from_slice::<String>(token).ok().map(Cow::Owned)
}

/// The index just past the JSON value starting at `at`.
fn value_end(body: &[u8], at: usize) -> Option<usize> {
    match body.get(at)? {
        b'"' => string_end(body, at),
        b'{' | b'[' => container_end(body, at),
        // A number or literal: up to the next delimiter.
        _ => {
            let len = body[at..]
                .iter()
                .position(|&b| matches!(b, b',' | b'}' | b']') || is_ws(b))
                .unwrap_or(body.len() - at);
            (len > 0).then_some(at + len)
        }
    }
}

/// The index just past the string whose opening quote is at `at`.
fn string_end(body: &[u8], at: usize) -> Option<usize> {
    if body.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        // Most keys and values are short: look at a few bytes before setting up `memchr`.
        let rest = body.get(i..)?;
        let near = rest
            .iter()
            .take(SHORT)
            .position(|&b| b == b'"' || b == b'\\');
        i += match near {
            Some(p) => p,
            None => SHORT + memchr::memchr2(b'"', b'\\', rest.get(SHORT..)?)?,
        };
        if body[i] == b'"' {
            return Some(i + 1);
        }
        i += 2; // a backslash and the character it escapes
    }
}

/// How many bytes of a string are looked at one by one before `memchr` takes over.
const SHORT: usize = 16;

/// The index just past the object or array opening at `at`, counting brackets outside strings.
fn container_end(body: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = at;
    loop {
        i = next_structural(body, i)?;
        match body[i] {
            b'"' => {
                i = string_end(body, i)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            // `}` or `]`; the first byte is `{` or `[`, so depth is at least 1 here.
            _ => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
        }
        i += 1;
    }
}

/// The index of the first `"`, `{`, `}`, `[` or `]` at or after `from`, looked for eight bytes
/// at a time (whitespace and values between them, as in a pretty-printed body, go by at word
/// speed).
fn next_structural(body: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `v` equal to `b`; only the lowest flag is exact, which is
    // the one used.
    let flags = |v: u64, b: u8| {
        let x = v ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    let rest = body.get(from..)?;
    let mut chunks = rest.chunks_exact(8);
    let mut offset = from;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        // Clearing bit 5 turns `{` into `[` and `}` into `]`, and nothing else into either.
        let folded = v & !(ONES * 0x20);
        let found = flags(v, b'"') | flags(folded, b'[') | flags(folded, b']');
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|b| matches!(b, b'"' | b'{' | b'}' | b'[' | b']'))
        .map(|p| offset + p)
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(body: &[u8], at: usize) -> usize {
    at + body
        .get(at..)
        .map_or(0, |rest| rest.iter().take_while(|&&b| is_ws(b)).count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id_and_type(body: &str) -> [Option<String>; 2] {
        top_level_strings(body.as_bytes(), ["id", "type"])
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn reads_top_level_strings_wherever_they_are() {
        assert_eq!(
            id_and_type(r#"{"type":"a.b","id":"evt_1"}"#),
            [some("evt_1"), some("a.b")]
        );
        // Stripe's order: `type` last, after a nested object holding its own `id` and `type`.
        let stripe = r#" { "id" : "evt_2", "object":"event", "created": 1700000000,
            "data": {"object": {"id": "ch_1", "type": "card", "tags": ["}", "{", "\"]"]}},
            "livemode": false, "request": null, "amounts": [1, -2.5e3, true],
            "type": "charge.succeeded" } "#;
        assert_eq!(
            id_and_type(stripe),
            [some("evt_2"), some("charge.succeeded")]
        );
        assert_eq!(id_and_type("{}"), [None, None]);
    }

    #[test]
    fn decodes_escapes_in_keys_and_values() {
        assert_eq!(
            id_and_type(r#"{"typ\u0065":"caf\u00e9 \"x\"","\u0069d":"a\\b"}"#),
            [some("a\\b"), some("café \"x\"")]
        );
        assert_eq!(id_and_type(r#"{"type":"\ud83d\ude00"}"#)[1], some("😀"));
    }

    #[test]
    fn non_strings_and_non_objects_give_none() {
        assert_eq!(id_and_type(r#"{"type":7,"id":{"x":"y"}}"#), [None, None]);
        assert_eq!(id_and_type(r#"{"type":null}"#), [None, None]);
        for body in [
            "",
            "[]",
            r#"["type","x"]"#,
            r#""type""#,
            "null",
            "x=1&type=a",
        ] {
            assert_eq!(id_and_type(body), [None, None], "{body:?}");
        }
        // Invalid UTF-8 or a broken escape in the value.
        assert_eq!(top_level_strings(b"{\"type\":\"\xff\"}", ["type"]), [None]);
        assert_eq!(id_and_type(r#"{"type":"\x"}"#)[1], None);
    }

    #[test]
    fn the_first_of_a_repeated_key_counts() {
        assert_eq!(id_and_type(r#"{"type":"a","type":"b"}"#)[1], some("a"));
        assert_eq!(id_and_type(r#"{"type":1,"type":"b"}"#)[1], None);
    }

    #[test]
    fn nested_fields_are_not_top_level() {
        let body = r#"{"data":{"type":"inner","id":"x"},"list":[{"type":"y"}]}"#;
        assert_eq!(id_and_type(body), [None, None]);
    }

    #[test]
    fn what_was_read_before_a_break_stands() {
        // The scan stops once both are found: what follows is not looked at.
        assert_eq!(
            id_and_type(r#"{"type":"a","id":"b", garbage"#),
            [some("b"), some("a")]
        );
        assert_eq!(id_and_type(r#"{"type":"a", garbage"#), [None, some("a")]);
        for broken in [
            r#"{"type""#,
            r#"{"type":"a"#,
            r#"{"type" "a"}"#,
            r#"{"data":{"x":1}"#,
            r#"{"data":"unterminated\"}"#,
            r#"{"data":[1,2}"#,
            r#"{type:"a"}"#,
            "{\"type\":\"a\\",
        ] {
            assert_eq!(id_and_type(broken), [None, None], "{broken:?}");
        }
    }

    #[test]
    fn structural_bytes_are_found_at_every_offset() {
        for target in [b'"', b'{', b'}', b'[', b']'] {
            for at in 0..20 {
                // Bytes one bit away from the targets, and high bytes, around it.
                let mut body = b"\x02;=\x7f\xfb\xdbzZ ;=\x02\x7f\xfb\xdbzZ ;=\x02\x7f".to_vec();
                body[at] = target;
                assert_eq!(
                    next_structural(&body, 0),
                    Some(at),
                    "{} at {at}",
                    target as char
                );
                assert_eq!(next_structural(&body, at + 1), None);
            }
        }
        assert_eq!(next_structural(b"", 0), None);
        assert_eq!(next_structural(b"ab", 5), None);
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
            prop_oneof![Just("type"), Just("id"), Just("}\"{[\\")].prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![Just("type".to_owned()), Just("id".to_owned()), ".{0,6}"],
                        inner
                    ),
                    0..6
                )
                .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// On any JSON object (compact or pretty), the scan agrees with a full parse.
        #[test]
        fn agrees_with_a_full_parse(value in json_value(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                value.to_string()
            };
            let field = |k: &str| value.as_object()
                .and_then(|o| o.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            prop_assert_eq!(id_and_type(&text), [field("id"), field("type")]);
        }

        /// Any bytes at all: no panic.
        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = top_level_strings(&bytes, ["id", "type"]);
        }
    }
}
