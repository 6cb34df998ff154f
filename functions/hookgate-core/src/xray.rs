//! The X-Ray trace header, carried from the receiver to the processor so that one trace spans
//! both: the receiver puts its invocation's header on the queue message (SQS's `AWSTraceHeader`
//! message system attribute), SQS hands it to the processor's invocation in the record's
//! `attributes`, and the processor records it on the event's span.
//!
//! The receiver only passes on a well-formed header ([`trace_header`]): a malformed one would
//! make SQS refuse the message, and an event must never be refused over its trace.

/// The SQS message system attribute, and the Lambda SQS record attribute, holding the header.
pub const AWS_TRACE_HEADER: &str = "AWSTraceHeader";

/// Longest header passed on.
const MAX_LEN: usize = 1024;

/// `value` if it is a well-formed X-Ray trace header, `None` otherwise.
///
/// Well-formed: `;`-separated `Key=value` fields (`Root=1-5759e988-bd862e3fe1be46a994272793;
/// Parent=53995c3f42cd8ad8;Sampled=1`, maybe with `Lineage=…`), no whitespace or control
/// characters, at most 1 KiB, and a `Root` trace id `1-<8 hex digits>-<24 hex digits>`.
pub fn trace_header(value: &str) -> Option<&str> {
    if value.is_empty() || value.len() > MAX_LEN {
        return None;
    }
    let mut root = None;
    for field in value.split(';') {
        let (key, val) = field.split_once('=')?;
        let key_ok = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric());
        let val_ok = !val.is_empty() && val.bytes().all(|b| b.is_ascii_graphic() && b != b'=');
        if !key_ok || !val_ok {
            return None;
        }
        if key == "Root" {
            root = Some(val);
        }
    }
    root.filter(|r| is_trace_id(r)).map(|_| value)
}

/// `1-<8 hex digits>-<24 hex digits>`.
fn is_trace_id(id: &str) -> bool {
    let mut parts = id.split('-');
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("1"), Some(time), Some(unique), None) if hex(time, 8) && hex(unique, 24)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_lambda_and_x_ray_write_are_passed_on() {
        for header in [
            "Root=1-5759e988-bd862e3fe1be46a994272793",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0;Lineage=a87bd80c:1|68fd508a:5",
            "Parent=53995c3f42cd8ad8;Root=1-5759E988-BD862E3FE1BE46A994272793;Sampled=?",
        ] {
            assert_eq!(trace_header(header), Some(header), "{header}");
        }
    }

    #[test]
    fn malformed_headers_are_dropped() {
        let too_long = format!(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Self={}",
            "a".repeat(MAX_LEN)
        );
        for header in [
            "",
            "Root=1-5759e988-bd862e3fe1be46a994272793;",
            "Parent=53995c3f42cd8ad8;Sampled=1",
            "Root=2-5759e988-bd862e3fe1be46a994272793",
            "Root=1-5759e98-bd862e3fe1be46a994272793",
            "Root=1-5759e988-bd862e3fe1be46a99427279",
            "Root=1-5759e988-bd862e3fe1be46a99427279g",
            "Root=1-5759e988-bd862e3fe1be46a994272793-00",
            "Root=1-5759e988-bd862e3fe1be46a994272793; Parent=53995c3f42cd8ad8",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=5399\n5c3f42cd8ad8",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent",
            "Root=1-5759e988-bd862e3fe1be46a994272793;=x",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=a=b",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Note=caf\u{e9}",
            too_long.as_str(),
        ] {
            assert_eq!(trace_header(header), None, "{header:?}");
        }
    }
}
