//! Routing's table tests: the configuration refused field by field, legacy `forward`, route
//! order, globs, and jq — edge cases, errors and runaway programs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::jq::{Answer, JqError, JqInput, JqProgram, Want};
use super::runner::{patience, Runner};
use super::*;
use crate::clock::Timestamp;
use crate::envelope::EventId;
use crate::Config;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SOURCES: &str = "[sources.stripe]\nscheme='hmac-sha256'\nsecrets=['a-16-byte-secret']\n\
                       [sources.github]\nscheme='github'\nsecrets=['It is a Secret to Everybody']\n";

fn event(source: &str, event_type: &str, body: &[u8]) -> Envelope {
    let source = SourceName::parse(source).unwrap();
    Envelope {
        event_id: EventId::from_provider(&source, "evt_1"),
        source,
        event_type: event_type.to_owned(),
        received_at: Timestamp::from_secs(1_700_000_000),
        headers: BTreeMap::from([
            ("content-type".to_owned(), "application/json".to_owned()),
            ("x-request-id".to_owned(), "req-7".to_owned()),
        ]),
        body: Bytes::copy_from_slice(body),
    }
}

fn config(extra: &str) -> Config {
    match Config::from_toml(&format!("{SOURCES}{extra}")) {
        Ok(c) => c,
        Err(e) => panic!("{extra}\n gave {e}"),
    }
}

fn refused(extra: &str) -> String {
    match Config::from_toml(&format!("{SOURCES}{extra}")) {
        Ok(_) => panic!("accepted: {extra}"),
        Err(e) => e.to_string(),
    }
}

/// Runs `code` on `body` as a filter or transform, on a worker thread, with a budget no
/// well-behaved program comes near even on a loaded machine.
fn run(code: &str, body: &[u8], want: Want) -> Result<Answer, JqError> {
    let program = Arc::new(JqProgram::compile(code).unwrap_or_else(|e| panic!("{code}: {e}")));
    let input = Arc::new(JqInput::new(&event("stripe", "charge.succeeded", body)));
    Runner::default().evaluate(&program, &input, want, Duration::from_secs(1))
}

fn verdict(code: &str, body: &[u8]) -> Result<bool, JqError> {
    run(code, body, Want::Verdict).map(|a| a == Answer::Verdict(true))
}

fn transform(code: &str, body: &[u8]) -> Result<String, JqError> {
    let want = Want::OneOutput { max_bytes: 1 << 20 };
    match run(code, body, want)? {
        Answer::Output(json) => Ok(String::from_utf8(json.to_vec()).unwrap()),
        other => panic!("{other:?}"),
    }
}

const CHARGE: &[u8] =
    br#"{"id":"evt_1","type":"charge.succeeded","data":{"object":{"amount":25000,"customer":"cus_9","currency":"eur","big":12345678901234567890123,"price":1.10}}}"#;

#[test]
fn filters_follow_jq_truthiness_and_missing_fields_are_null() {
    let cases: &[(&str, &[u8], bool)] = &[
        (".data.object.amount > 10000", CHARGE, true),
        (".data.object.amount > 30000", CHARGE, false),
        // A missing field is null, and null sorts below every number.
        (".data.object.missing > 10000", CHARGE, false),
        (".data.object.missing < 10000", CHARGE, true),
        (".nope.deeper == null", CHARGE, true),
        (".data.object.customer", CHARGE, true),
        (".data.object.missing", CHARGE, false),
        ("false", CHARGE, false),
        ("0", CHARGE, true),
        ("\"\"", CHARGE, true),
        ("empty", CHARGE, false),
        // Only the first output counts.
        ("false, true", CHARGE, false),
        ("true, error(\"never reached\")", CHARGE, true),
        // Variables.
        ("$type | startswith(\"charge.\")", CHARGE, true),
        ("$source == \"stripe\"", CHARGE, true),
        ("$event_id | length > 0", CHARGE, true),
        ("$headers[\"x-request-id\"] == \"req-7\"", CHARGE, true),
        ("$headers.\"content-type\" | test(\"json\")", CHARGE, true),
        ("$headers.missing == null", CHARGE, true),
        // Numbers: integers, big integers and decimals compare as numbers.
        (".data.object.big > 1e22", CHARGE, true),
        (".data.object.price == 1.1", CHARGE, true),
        // Unicode.
        (
            ".name == \"Zoë ✓\"",
            "{\"name\":\"Zoë ✓\"}".as_bytes(),
            true,
        ),
        (
            ".name | length == 5",
            "{\"name\":\"Zoë ✓\"}".as_bytes(),
            true,
        ),
        // A body that is not JSON is a string when it is UTF-8 …
        (
            "type == \"string\" and startswith(\"a=1\")",
            b"a=1&b=2",
            true,
        ),
        ("type == \"string\"", "naïve".as_bytes(), true),
        // … and null when it is not.
        (". == null", b"\xff\xfe\x00binary", true),
        // JSON nested deeper than 128 levels is not parsed: it arrives as a string.
        ("type == \"string\"", &[b'['; 200], true),
    ];
    for (code, body, want) in cases {
        assert_eq!(
            verdict(code, body),
            Ok(*want),
            "{code} on {}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn transforms_produce_compact_json_and_exactly_one_output() {
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "{id: .id, amount: .data.object.amount, customer: .data.object.customer}",
            CHARGE,
            r#"{"id":"evt_1","amount":25000,"customer":"cus_9"}"#,
        ),
        // Numbers keep their written form.
        (
            "[.data.object.big, .data.object.price]",
            CHARGE,
            "[12345678901234567890123,1.10]",
        ),
        (".missing", CHARGE, "null"),
        (
            "{t: $type, s: $source, h: $headers}",
            b"{}",
            r#"{"t":"charge.succeeded","s":"stripe","h":{"content-type":"application/json","x-request-id":"req-7"}}"#,
        ),
        ("{raw: .}", b"not json", r#"{"raw":"not json"}"#),
        (
            "{s: .}",
            "ünïcødé \u{1F600}".as_bytes(),
            "{\"s\":\"ünïcødé \u{1F600}\"}",
        ),
        ("\"line\\nbreak\\u0001\"", b"{}", r#""line\nbreak\u0001""#),
        (". | fromjson | .a", br#""{\"a\":[1,2]}""#, "[1,2]"),
        ("[range(3)]", b"null", "[0,1,2]"),
        ("[range(5; 0; -2)]", b"null", "[5,3,1]"),
        ("[limit(3; range(1e12))]", b"null", "[0,1,2]"),
        ("first(range(10; 20))", b"null", "10"),
    ];
    for (code, body, want) in cases {
        assert_eq!(transform(code, body).as_deref(), Ok(*want), "{code}");
    }
    assert_eq!(transform("empty", CHARGE), Err(JqError::NoOutput));
    assert_eq!(transform("1, 2", CHARGE), Err(JqError::SeveralOutputs));
    assert!(
        matches!(transform("error(\"boom\")", CHARGE), Err(JqError::Raised(m)) if m.contains("boom"))
    );
    assert!(matches!(transform(".a.b", b"[1]"), Err(JqError::Raised(_))));
    // Values JSON cannot hold (infinity, NaN, byte strings) are refused, not sent.
    assert!(matches!(
        transform("1 / 0", b"{}"),
        Err(JqError::NotJson(_))
    ));
    assert!(matches!(transform("nan", b"{}"), Err(JqError::NotJson(_))));
    assert!(
        matches!(
            transform("\"x\" | tobytes", b"{}"),
            Err(JqError::NotJson(_))
        ),
        "{:?}",
        transform("\"x\" | tobytes", b"{}")
    );
    assert!(matches!(
        transform("reduce range(200) as $i (0; [.])", b"{}"),
        Err(JqError::NotJson(m)) if m.contains("128")
    ));
    // fromjson refuses what is nested deeper than 128 levels.
    assert!(matches!(
        transform("\"[\" * 100000 | fromjson", b"{}"),
        Err(JqError::Raised(m)) if m.contains("128")
    ));
}

#[test]
fn a_transform_output_over_the_budget_is_refused() {
    let program = Arc::new(JqProgram::compile("[range(1000)] | tostring").unwrap());
    let input = Arc::new(JqInput::new(&event("stripe", "t", b"{}")));
    let runner = Runner::default();
    let small = Want::OneOutput { max_bytes: 100 };
    assert_eq!(
        runner.evaluate(&program, &input, small, Duration::from_millis(200)),
        Err(JqError::OutputTooLarge(100))
    );
    // A widely shared value (2^40 leaves) is measured, not written, and refused quickly.
    let shared = Arc::new(JqProgram::compile("reduce range(40) as $i (0; [., .])").unwrap());
    assert_eq!(
        runner.evaluate(&shared, &input, small, Duration::from_millis(200)),
        Err(JqError::OutputTooLarge(100))
    );
    let big = Want::OneOutput { max_bytes: 1 << 20 };
    assert!(runner
        .evaluate(&program, &input, big, Duration::from_millis(200))
        .is_ok());
}

#[test]
fn withheld_builtins_do_not_compile() {
    for code in [
        "halt",
        "halt_error",
        "env.HOME",
        "$ENV.HOME",
        "input",
        "inputs",
        "debug",
        "stderr",
    ] {
        let err = JqProgram::compile(code).map(|_| ()).unwrap_err();
        assert!(err.contains("undefined"), "{code}: {err}");
    }
}

#[test]
fn compile_errors_say_what_and_where() {
    let cases = [
        (".a |", "expected term"),
        ("{a: }", "column"),
        ("foo(1)", "undefined filter `foo/1`"),
        ("$nope", "undefined variable `$nope`"),
        ("\"unterminated", "closing quote"),
        ("[1, 2", "expected"),
    ];
    for (code, want) in cases {
        let err = JqProgram::compile(code).map(|_| ()).unwrap_err();
        assert!(err.contains(want), "{code}: {err}");
    }
}

/// Every runaway ends with `Err` at its budget, the caller never waits much past it, and the
/// process survives (a stack overflow would abort the test binary).
#[test]
fn runaway_programs_end_at_their_budget() {
    let runner = Runner::default();
    let input = Arc::new(JqInput::new(&event("stripe", "t", CHARGE)));
    let budget = Duration::from_millis(50);
    type Expected = fn(&JqError) -> bool;
    let cases: &[(&str, Expected)] = &[
        ("def f: f; f", |e| matches!(e, JqError::Deadline(_))),
        ("until(false; .)", |e| matches!(e, JqError::Deadline(_))),
        ("[repeat(1)]", |e| matches!(e, JqError::Deadline(_))),
        ("[range(1e12)]", |e| matches!(e, JqError::Deadline(_))),
        ("last(range(1e12))", |e| matches!(e, JqError::Deadline(_))),
        ("reduce range(1e12) as $i (0; . + $i)", |e| {
            matches!(e, JqError::Deadline(_))
        }),
        ("def f: 1 + f; f", |e| {
            matches!(e, JqError::Stack | JqError::Deadline(_))
        }),
        ("def f: [f]; f", |e| {
            matches!(e, JqError::Stack | JqError::Deadline(_))
        }),
        ("last(range(0; 1; 0))", |e| {
            matches!(e, JqError::Deadline(_))
        }),
    ];
    for want in [Want::Verdict, Want::OneOutput { max_bytes: 1 << 20 }] {
        for (code, expected) in cases {
            let program = Arc::new(JqProgram::compile(code).unwrap());
            let started = Instant::now();
            let result = runner.evaluate(&program, &input, want, budget);
            let waited = started.elapsed();
            match &result {
                Err(e) if expected(e) => {}
                other => panic!("{code}: {other:?}"),
            }
            // Only the verdict of a stream that never outputs waits; `repeat` answers at once.
            assert!(
                waited < patience(budget) + SLACK,
                "{code} kept the caller {waited:?}"
            );
        }
    }
    // The guard stopped each of them itself: no thread is left running.
    wait_for_no_runaways(&runner);
    // A stream without end is fine when only its first output is needed.
    let program = Arc::new(JqProgram::compile("repeat(1)").unwrap());
    assert_eq!(
        runner.evaluate(&program, &input, Want::Verdict, budget),
        Ok(Answer::Verdict(true))
    );
    assert_eq!(
        runner.evaluate(&program, &input, Want::OneOutput { max_bytes: 100 }, budget),
        Err(JqError::SeveralOutputs)
    );
}

/// Scheduling slack allowed on a loaded machine: far below what an unguarded runaway takes
/// (for ever, or until the process dies).
const SLACK: Duration = Duration::from_millis(500);

fn wait_for_no_runaways(runner: &Runner) {
    let until = Instant::now() + Duration::from_secs(60);
    while runner.runaways() > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(runner.runaways(), 0);
}

/// One native operation the guard cannot interrupt: the caller gets `Err` at the deadline, the
/// thread is abandoned and counted, and at most `MAX_RUNAWAYS` exist.
#[test]
fn a_long_native_operation_is_abandoned_at_the_deadline_and_runaways_are_bounded() {
    let runner = Runner::default();
    let input = Arc::new(JqInput::new(&event("stripe", "t", b"{}")));
    // `"x" * n` is one native operation: 500 MB written in one call, a hundred milliseconds or more.
    let repeat = Arc::new(JqProgram::compile("\"x\" * 500000000 | length").unwrap());
    let (mut abandoned, mut refused) = (0, 0);
    for _ in 0..super::runner::MAX_RUNAWAYS + 2 {
        let started = Instant::now();
        let result = runner.evaluate(&repeat, &input, Want::Verdict, Duration::from_millis(1));
        assert!(started.elapsed() < patience(Duration::from_millis(1)) + SLACK);
        match result {
            Err(JqError::Deadline(_)) => abandoned += 1,
            Err(JqError::Unavailable(m)) if m.contains("still running") => refused += 1,
            other => panic!("{other:?}"),
        }
        assert!(runner.runaways() <= super::runner::MAX_RUNAWAYS);
    }
    assert!(
        (1..=super::runner::MAX_RUNAWAYS).contains(&abandoned),
        "{abandoned}"
    );
    assert_eq!(abandoned + refused, super::runner::MAX_RUNAWAYS + 2);
    // The abandoned threads finish and are no longer counted.
    wait_for_no_runaways(&runner);
    // And the pool works again.
    let quick = Arc::new(JqProgram::compile(".a").unwrap());
    let input = Arc::new(JqInput::new(&event("stripe", "t", br#"{"a":1}"#)));
    assert_eq!(
        runner.evaluate(&quick, &input, Want::Verdict, Duration::from_millis(50)),
        Ok(Answer::Verdict(true))
    );
}

#[test]
fn destinations_and_routes_load_with_defaults() {
    let c = config(&format!(
        "[destinations.billing]\nurl='https://billing.example/hooks'\nsecret='{SECRET}'\n\
         rate_limit='50/s'\ntimeout_ms=5000\nbreaker_failures=3\nbreaker_cool_down_secs=30\n\
         [destinations.audit]\nkind='eventbridge'\nevent_bus='default'\n\
         [destinations.copy]\nkind='sqs'\nqueue_url='https://sqs.us-east-1.amazonaws.com/123456789012/copy'\n\
         [destinations.arn]\nkind='eventbridge'\nevent_bus='arn:aws:events:us-east-1:123456789012:event-bus/orders'\ntimeout_ms=2000\n\
         [[routes]]\nsource='stripe'\ntypes=['charge.*','invoice.paid']\n\
         filter='.data.object.amount > 10000'\ntransform='{{id: .id}}'\nto=['billing','audit']\n\
         [[routes]]\nsource='github'\nto=['copy', 'arn']\n\
         [routing]\njq_timeout_ms=100\njq_max_output_bytes=4096"
    ));
    let r = c.routing();
    let names: Vec<&str> = r.destinations().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["arn", "audit", "billing", "copy"]);
    let billing = r.destination("billing").unwrap();
    assert_eq!(billing.transport.kind(), "http");
    assert_eq!(
        billing.rate_limit.map(|l| l.to_string()).as_deref(),
        Some("50/s")
    );
    assert_eq!(billing.breaker.failures, 3);
    assert_eq!(billing.breaker.cool_down, Duration::from_secs(30));
    assert_eq!(billing.timeout, Duration::from_millis(5000));
    let audit = r.destination("audit").unwrap();
    assert!(
        matches!(&audit.transport, Transport::EventBridge { event_bus } if event_bus == "default")
    );
    assert_eq!(audit.breaker, BreakerOptions::default());
    assert_eq!(audit.timeout, Duration::from_secs(10));
    assert_eq!(audit.rate_limit, None);
    assert!(
        matches!(&r.destination("copy").unwrap().transport, Transport::Sqs { queue_url } if queue_url.ends_with("/copy"))
    );
    assert!(r.destination("nope").is_none());
    assert!(r.has_routes_for(&SourceName::parse("stripe").unwrap()));
    assert!(r.has_routes_for(&SourceName::parse("github").unwrap()));
    assert_eq!(
        r.budget(),
        JqBudget {
            timeout: Duration::from_millis(100),
            max_output_bytes: 4096
        }
    );
    let plain = config("");
    assert_eq!(plain.routing().destinations().count(), 0);
    assert!(!plain
        .routing()
        .has_routes_for(&SourceName::parse("stripe").unwrap()));
    assert_eq!(plain.routing().budget().timeout, Duration::from_millis(50));
    assert_eq!(plain.routing().budget().max_output_bytes, 1 << 20);
}

#[test]
fn plans_follow_types_filters_and_route_order() {
    let c = config(&format!(
        "[destinations.billing]\nurl='https://billing.example/hooks'\nsecret='{SECRET}'\n\
         [destinations.audit]\nkind='eventbridge'\nevent_bus='default'\n\
         [destinations.copy]\nkind='sqs'\nqueue_url='https://sqs.us-east-1.amazonaws.com/123456789012/copy'\n\
         [[routes]]\nsource='stripe'\ntypes=['charge.*','invoice.paid']\n\
         filter='.data.object.amount > 10000'\ntransform='{{id: .id, amount: .data.object.amount}}'\nto=['billing','audit']\n\
         [[routes]]\nsource='stripe'\nto=['audit','copy']\n\
         [[routes]]\nsource='stripe'\ntypes=['customer.*']\ntransform='error(\"no customers\")'\nto=['copy']\n\
         [routing]\njq_timeout_ms=1000\n"
    ));
    let plan = |t: &str, body: &[u8]| {
        c.routing()
            .plan(&event("stripe", t, body))
            .into_iter()
            .map(|p| {
                let body = match p.body {
                    Ok(None) => "original".to_owned(),
                    Ok(Some(json)) => String::from_utf8(json.to_vec()).unwrap(),
                    Err(f) => format!("ERR {}", f.reason),
                };
                (p.destination.to_string(), body)
            })
            .collect::<Vec<_>>()
    };
    let owned = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    };
    // The first route wins "audit" (its transform); the second adds "copy" with the original.
    assert_eq!(
        plan("charge.succeeded", CHARGE),
        owned(&[
            ("billing", r#"{"id":"evt_1","amount":25000}"#),
            ("audit", r#"{"id":"evt_1","amount":25000}"#),
            ("copy", "original"),
        ])
    );
    // Filtered out by the first route: the second still takes it.
    assert_eq!(
        plan("charge.succeeded", br#"{"data":{"object":{"amount":5}}}"#),
        owned(&[("audit", "original"), ("copy", "original")])
    );
    // Type not taken by the first route.
    assert_eq!(
        plan("charge", CHARGE),
        owned(&[("audit", "original"), ("copy", "original")])
    );
    // A later route naming an already planned destination does not replace it (its failing
    // transform is not even run).
    assert_eq!(
        plan("customer.created", CHARGE),
        owned(&[("audit", "original"), ("copy", "original")])
    );
    // Other sources: nothing.
    assert!(c.routing().plan(&event("github", "push", b"{}")).is_empty());
}

#[test]
fn a_failing_filter_or_transform_fails_its_deliveries_with_the_route_named() {
    let c = config(&format!(
        "[destinations.billing]\nurl='https://billing.example/hooks'\nsecret='{SECRET}'\n\
         [destinations.audit]\nkind='eventbridge'\nevent_bus='default'\n\
         [[routes]]\nsource='stripe'\ntypes=['a']\nfilter='error(\"bad filter\")'\nto=['billing']\n\
         [[routes]]\nsource='stripe'\ntypes=['a','b']\ntransform='def f: f; f'\nto=['billing','audit']\n\
         [routing]\njq_timeout_ms=20"
    ));
    let a = c.routing().plan(&event("stripe", "a", b"{}"));
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].destination.as_str(), "billing");
    let reason = a[0].body.as_ref().unwrap_err().reason.clone();
    assert!(
        reason.starts_with("routes[0].filter: error: bad filter"),
        "{reason}"
    );
    let reason = a[1].body.as_ref().unwrap_err().reason.clone();
    assert_eq!(
        reason,
        "routes[1].transform: exceeded its time budget of 20 ms"
    );
    let b = c.routing().plan(&event("stripe", "b", b"{}"));
    assert_eq!(b.len(), 2);
    assert!(b.iter().all(|p| p.body.is_err()));
}

#[test]
fn a_legacy_forward_is_a_destination_and_a_route() {
    let forward = format!(
        "[sources.relay]\nscheme='hmac-sha256'\nsecrets=['a-16-byte-secret']\n\
         [sources.relay.forward]\nurl='https://relay.example/in?key=k'\nsecret='{SECRET}'\ntimeout_ms=3000\n"
    );
    let c = config(&forward);
    let spec = c.routing().destination("relay").unwrap();
    let Transport::Http(destination) = &spec.transport else {
        panic!("{spec:?}")
    };
    assert_eq!(destination.shown_url(), "https://relay.example/in");
    assert_eq!(spec.timeout, Duration::from_millis(3000));
    assert_eq!(spec.rate_limit, None);
    assert_eq!(spec.breaker, BreakerOptions::default());
    // The same as the new form.
    let new_form = config(&format!(
        "[sources.relay]\nscheme='hmac-sha256'\nsecrets=['a-16-byte-secret']\n\
         [destinations.relay]\nurl='https://relay.example/in?key=k'\nsecret='{SECRET}'\ntimeout_ms=3000\n\
         [[routes]]\nsource='relay'\nto=['relay']\n"
    ));
    let again = new_form.routing().destination("relay").unwrap();
    assert_eq!(format!("{spec:?}"), format!("{again:?}"));
    for c in [&c, &new_form] {
        let plan = c.routing().plan(&event("relay", "anything", b"raw"));
        assert_eq!(
            plan,
            [PlannedDelivery {
                destination: DestinationName::parse("relay").unwrap(),
                body: Ok(None)
            }]
        );
    }
    // `destinations()` (the forward tables) still lists it.
    let legacy: Vec<&str> = c.destinations().map(|(n, _)| n.as_str()).collect();
    assert_eq!(legacy, ["relay"]);
    // A route may name the legacy destination; coming first, its transform wins.
    let both = config(&format!(
        "{forward}[[routes]]\nsource='relay'\ntransform='{{wrapped: .}}'\nto=['relay']\n"
    ));
    let plan = both.routing().plan(&event("relay", "x", b"raw"));
    assert_eq!(plan.len(), 1);
    assert_eq!(
        plan[0].body,
        Ok(Some(Bytes::from_static(br#"{"wrapped":"raw"}"#)))
    );
    // Defining it twice is refused.
    let err = refused(&format!(
        "{forward}[destinations.relay]\nkind='sqs'\nqueue_url='https://sqs.us-east-1.amazonaws.com/1/q'\n"
    ));
    assert!(
        err.contains("sources.relay.forward and [destinations.relay] both define the destination"),
        "{err}"
    );
}

#[test]
fn bad_destination_tables_are_refused_naming_the_field() {
    let http = format!("url='https://b.example/'\nsecret='{SECRET}'\n");
    let cases: Vec<(String, &str)> = vec![
        ("[destinations.Billing]\nkind='sqs'\nqueue_url='https://sqs.x/1/q'".into(), "destinations.Billing: a destination name"),
        (format!("[destinations.b]\nsecret='{SECRET}'"), "destinations.b.url is missing"),
        ("[destinations.b]\nurl='https://b.example/'".into(), "destinations.b.secret is missing"),
        (format!("[destinations.b]\n{http}event_bus='default'"), "destinations.b.event_bus belongs to kind = \"eventbridge\""),
        (format!("[destinations.b]\n{http}queue_url='https://sqs.x/1/q'"), "destinations.b.queue_url belongs to kind = \"sqs\""),
        ("[destinations.b]\nkind='eventbridge'".into(), "destinations.b.event_bus is missing"),
        ("[destinations.b]\nkind='eventbridge'\nevent_bus='default'\nurl='https://b.example/'".into(), "destinations.b.url belongs to kind = \"http\""),
        (format!("[destinations.b]\nkind='eventbridge'\nevent_bus='default'\nsecret='{SECRET}'"), "destinations.b.secret belongs to kind = \"http\""),
        ("[destinations.b]\nkind='eventbridge'\nevent_bus='default'\nqueue_url='https://sqs.x/1/q'".into(), "destinations.b.queue_url belongs to kind = \"sqs\""),
        ("[destinations.b]\nkind='eventbridge'\nevent_bus='has space'".into(), "destinations.b.event_bus"),
        ("[destinations.b]\nkind='eventbridge'\nevent_bus='arn:aws:sqs:us-east-1:1:q'".into(), "destinations.b.event_bus"),
        ("[destinations.b]\nkind='sqs'".into(), "destinations.b.queue_url is missing"),
        ("[destinations.b]\nkind='sqs'\nqueue_url='not a url'".into(), "destinations.b.queue_url"),
        ("[destinations.b]\nkind='sqs'\nqueue_url='https://sqs.x/only-one'".into(), "destinations.b.queue_url"),
        ("[destinations.b]\nkind='sqs'\nqueue_url='https://sqs.x/1/q'\nevent_bus='x'".into(), "destinations.b.event_bus belongs to kind = \"eventbridge\""),
        ("[destinations.b]\nkind='sqs'\nqueue_url='https://sqs.x/1/q'\nallow_http=true".into(), "destinations.b.allow_http belongs to kind = \"http\""),
        ("[destinations.b]\nkind='kafka'".into(), "unknown variant `kafka`"),
        (format!("[destinations.b]\n{http}retries=3"), "unknown field `retries`"),
        (format!("[destinations.b]\n{http}rate_limit='50/d'"), "rate limit"),
        (format!("[destinations.b]\n{http}timeout_ms=0"), "destinations.b.timeout_ms must be 1-"),
        (format!("[destinations.b]\n{http}timeout_ms=30000"), "destinations.b.timeout_ms must be shorter than processor.handler_timeout_secs"),
        ("[destinations.b]\nkind='sqs'\nqueue_url='https://sqs.x/1/q'\ntimeout_ms=25000".into(), "destinations.b.timeout_ms must be shorter"),
        (format!("[destinations.b]\n{http}breaker_failures=0"), "destinations.b.breaker_failures must be 1-1000"),
        (format!("[destinations.b]\n{http}breaker_cool_down_secs=0"), "destinations.b.breaker_cool_down_secs must be 1-86400"),
        ("[destinations.b]\nurl='http://b.example/'\nsecret='whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'".into(), "destinations.b: url: plain http is refused"),
        ("[destinations.b]\nurl='https://b.example/'\nsecret='s3cr3t!'".into(), "destinations.b: "),
        (format!("[destinations.b]\n{http}headers={{webhook-id='x'}}"), "destinations.b: headers: webhook-id"),
        ("[routing]\njq_timeout_ms=0".into(), "routing.jq_timeout_ms must be 1-1000"),
        ("[routing]\njq_timeout_ms=1001".into(), "routing.jq_timeout_ms must be 1-1000"),
        ("[routing]\njq_max_output_bytes=0".into(), "routing.jq_max_output_bytes must be 1-"),
        ("[routing]\njq_budget=1".into(), "unknown field `jq_budget`"),
    ];
    for (doc, want) in cases {
        let err = refused(&doc);
        assert!(err.contains(want), "{doc:?} gave {err:?}");
        assert!(!err.contains("s3cr3t") && !err.contains("MfKQ9r8"), "{err}");
    }
}

#[test]
fn bad_route_tables_are_refused_naming_the_field() {
    let dests = format!(
        "[destinations.billing]\nurl='https://b.example/'\nsecret='{SECRET}'\n\
         [destinations.audit]\nkind='eventbridge'\nevent_bus='default'\n"
    );
    let cases = [
        ("to=['billing']", "routes[1].source is missing"),
        ("source='nope'\nto=['billing']", "routes[1].source: no source named \"nope\" is configured"),
        ("source='Stripe'\nto=['billing']", "routes[1].source: no source named \"Stripe\""),
        ("source='stripe'", "routes[1].to must name at least one destination"),
        ("source='stripe'\nto=[]", "routes[1].to must name at least one destination"),
        ("source='stripe'\nto=['billing','nope']", "routes[1].to[1]: no destination named \"nope\" is configured (configured: audit, billing)"),
        ("source='stripe'\nto=['billing','billing']", "routes[1].to lists \"billing\" twice"),
        ("source='stripe'\ntypes=[]\nto=['billing']", "routes[1].types must not be empty"),
        ("source='stripe'\ntypes=['ok','has space']\nto=['billing']", "routes[1].types[1]"),
        ("source='stripe'\ntypes=['']\nto=['billing']", "routes[1].types[0]"),
        ("source='stripe'\nfilter='.a >'\nto=['billing']", "routes[1].filter: jq: expected"),
        ("source='stripe'\nfilter='nosuch(1)'\nto=['billing']", "routes[1].filter: jq: undefined filter `nosuch/1`"),
        ("source='stripe'\ntransform='{a: }'\nto=['billing']", "routes[1].transform: jq: "),
        ("source='stripe'\ntransform='env'\nto=['billing']", "routes[1].transform: jq: undefined filter `env/0`"),
        ("source='stripe'\nfilter='  '\nto=['billing']", "routes[1].filter must not be empty"),
        ("source='stripe'\nto=['billing']\nfliter='.a'", "unknown field `fliter`"),
    ];
    for (route, want) in cases {
        let doc =
            format!("{dests}[[routes]]\nsource='github'\nto=['audit']\n[[routes]]\n{route}\n");
        let err = refused(&doc);
        assert!(err.contains(want), "{route:?} gave {err:?}");
    }
    // No destinations at all.
    let err = refused("[[routes]]\nsource='stripe'\nto=['x']");
    assert!(err.contains("(configured: none)"), "{err}");
}

#[test]
fn an_unused_destination_is_accepted() {
    let c = config("[destinations.spare]\nkind='sqs'\nqueue_url='https://sqs.us-east-1.amazonaws.com/1/spare'\n");
    assert!(c.routing().destination("spare").is_some());
    assert!(c.routing().plan(&event("stripe", "x", b"{}")).is_empty());
}

#[test]
fn filters_and_transforms_are_compiled_once_and_evaluated_only_when_needed() {
    // A route without programs plans without threads and without parsing the body.
    let c = config(&format!(
        "[destinations.b]\nurl='https://b.example/'\nsecret='{SECRET}'\n[[routes]]\nsource='stripe'\nto=['b']\n"
    ));
    let plan = c.routing().plan(&event("stripe", "x", b"{not json"));
    assert_eq!(plan[0].body, Ok(None));
    // The compiled programs are shared by clones of the configuration.
    let clone = c.clone();
    assert!(Arc::ptr_eq(c.routing(), clone.routing()));
}
