//! End to end: the local stack over HTTP on 127.0.0.1, on the in-memory backend and on
//! SQS/DynamoDB served by moto.
//!
//! The `serve_*` tests start the real `hookgate serve` binary; the retry tests embed
//! [`LocalStack`] with handlers that fail on purpose.

mod common;

use common::{client, Served};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookgate_cli::local::LocalStack;
use hookgate_core::{
    Config, Envelope, EventId, HandlerError, Handlers, Ledger, Queue, SourceName, Timestamp,
};
use hookgate_testkit::MotoResources;
use serde_json::Value;

const TOKEN: &str = "test-admin-token";

fn config_toml(max_receive_count: u32) -> String {
    format!(
        r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["local-demo-s3cr3t"]

[processor]
max_receive_count = {max_receive_count}
visibility_timeout_secs = 1
wait_time_ms = 1000

[admin]
token = "{TOKEN}"
"#
    )
}

fn serve(config: &str, aws: Option<&MotoResources>) -> Served {
    common::serve(config, aws)
}

async fn embed(
    config: &str,
    ledger: Arc<dyn Ledger>,
    queue: Arc<dyn Queue>,
    handlers: Handlers,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let config = Config::from_toml(config).unwrap();
    let stack = LocalStack::new(&config, ledger, queue, handlers).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(stack.serve(listener, async move {
        let _ = stopped.await;
    }));
    (base, stop)
}

fn demo_config() -> Config {
    Config::from_toml(&config_toml(5)).unwrap()
}

async fn post(base: &str, source: &str, body: &str) -> (u16, Value) {
    let headers = demo_config()
        .sign("demo", body.as_bytes(), Timestamp::from_secs(0))
        .unwrap();
    let mut request = client()
        .post(format!("{base}/webhooks/{source}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn status(base: &str, id: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = client().get(format!("{base}/events/{id}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn wait_for(base: &str, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = status(base, id, Some(TOKEN)).await;
        if code == 200 && body["status"] == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "event {id} never became {want}: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn signed_event_flow(base: &str) {
    let body = format!(
        r#"{{"type":"order.created","n":"{}"}}"#,
        uuid::Uuid::new_v4()
    );
    let (code, accepted) = post(base, "demo", &body).await;
    assert_eq!(code, 202, "{accepted}");
    assert_eq!(accepted["status"], "queued");
    let id = accepted["event_id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["status_url"], format!("/events/{id}"));

    let record = wait_for(base, &id, "processed").await;
    assert_eq!(record["type"], "order.created");
    assert_eq!(record["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(record["attempts"][0]["success"], true);

    let (code, replay) = post(base, "demo", &body).await;
    assert_eq!((code, replay["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(replay["event_id"], accepted["event_id"]);

    // A bad signature is refused and leaves no trace in the ledger.
    let forged = format!(
        r#"{{"type":"order.created","n":"{}"}}"#,
        uuid::Uuid::new_v4()
    );
    let response = client()
        .post(format!("{base}/webhooks/demo"))
        .header("x-signature", format!("sha256={}", "ab".repeat(32)))
        .body(forged.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let refused: Value = response.json().await.unwrap();
    assert_eq!(refused["error"], "signature_mismatch");
    // The id this body would have had, had it been signed with the real secret.
    let real = demo_config()
        .sign("demo", forged.as_bytes(), Timestamp::from_secs(0))
        .unwrap();
    let mac = hex::decode(real[0].1.trim_start_matches("sha256=")).unwrap();
    let forged_id = EventId::from_body_mac(&SourceName::parse("demo").unwrap(), &mac);
    let (code, missing) = status(base, forged_id.as_str(), Some(TOKEN)).await;
    assert_eq!(
        (code, missing["error"].as_str()),
        (404, Some("event_not_found"))
    );

    // The status route is not public.
    assert_eq!(status(base, &id, None).await.0, 401);
    assert_eq!(status(base, &id, Some("wrong")).await.0, 401);

    let (code, unknown) = post(base, "nope", "{}").await;
    assert_eq!(
        (code, unknown["error"].as_str()),
        (404, Some("unknown_source"))
    );
    let response = client()
        .get(format!("{base}/webhooks/demo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let wrong_method: Value = response.json().await.unwrap();
    assert_eq!(wrong_method["error"], "method_not_allowed");
}

async fn list(base: &str, query: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = client().get(format!("{base}/events{query}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    (response.status().as_u16(), response.json().await.unwrap())
}

fn listed_ids(body: &Value) -> Vec<String> {
    body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {body}"))
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Signed events in, processed, then listed by `GET /events` with the admin token.
async fn listing_flow(base: &str) {
    let mut ids = Vec::new();
    for n in 0..3 {
        let body = format!(
            r#"{{"type":"order.listed","n":{n},"u":"{}"}}"#,
            uuid::Uuid::new_v4()
        );
        let (code, accepted) = post(base, "demo", &body).await;
        assert_eq!(code, 202, "{accepted}");
        ids.push(accepted["event_id"].as_str().unwrap().to_owned());
        // Distinct receive times, so "newest first" has one right answer.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in &ids {
        wait_for(base, id, "processed").await;
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    let (code, body) = list(base, "?status=processed", Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(listed_ids(&body), newest_first, "{body}");
    let first = &body["events"][0];
    assert_eq!(first["status"], "processed");
    assert_eq!(first["source"], "demo");
    assert_eq!(first["type"], "order.listed");
    assert_eq!(first["attempt_count"], 1);
    assert!(first.get("attempts").is_none(), "{first}");

    let (code, body) = list(base, "?status=processed&source=demo&limit=2", Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(listed_ids(&body), newest_first[..2], "{body}");
    // Every status, the default limit.
    let (code, body) = list(base, "", Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(listed_ids(&body), newest_first, "{body}");
    let (code, body) = list(base, "?status=failed", Some(TOKEN)).await;
    assert_eq!((code, listed_ids(&body).len()), (200, 0), "{body}");

    // Not public.
    for token in [None, Some("wrong")] {
        let (code, body) = list(base, "?status=processed", token).await;
        assert_eq!(
            (code, body["error"].as_str()),
            (401, Some("unauthorized")),
            "{token:?}"
        );
    }
    for (query, error) in [
        ("?status=done", "invalid_status"),
        ("?source=Demo", "invalid_source"),
        ("?limit=0", "invalid_limit"),
        ("?limit=1000", "invalid_limit"),
        ("?limit=many", "invalid_limit"),
    ] {
        let (code, body) = list(base, query, Some(TOKEN)).await;
        assert_eq!(
            (code, body["error"].as_str()),
            (400, Some(error)),
            "{query}"
        );
    }
}

#[tokio::test]
async fn serve_memory_backend_lists_events() {
    let served = serve(&config_toml(5), None);
    listing_flow(&served.base).await;
}

#[tokio::test]
async fn serve_aws_backend_on_moto_lists_events() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto (set HOOKGATE_MOTO_ENDPOINT)");
        return;
    };
    let aws = hookgate_testkit::fresh_resources(&endpoint, 5, 1).await;
    let served = serve(&config_toml(5), Some(&aws));
    listing_flow(&served.base).await;
}

#[tokio::test]
async fn serve_memory_backend_end_to_end() {
    let served = serve(&config_toml(5), None);
    signed_event_flow(&served.base).await;
}

#[tokio::test]
async fn serve_aws_backend_on_moto_end_to_end() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto (set HOOKGATE_MOTO_ENDPOINT)");
        return;
    };
    let aws = hookgate_testkit::fresh_resources(&endpoint, 5, 1).await;
    let served = serve(&config_toml(5), Some(&aws));
    signed_event_flow(&served.base).await;
}

/// `hookgate serve` forwards a source's events to its destination: signed, retried after a
/// 503, and logged attempt by attempt in the status API.
#[tokio::test]
async fn serve_forwards_to_a_destination() {
    use hookgate_testkit::sink::{Answer, Sink};
    let sink = Sink::start(vec![Answer::status(503)], Answer::status(204)).await;
    let config = format!(
        "{}\n[sources.demo.forward]\nurl = '{}'\nsecret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'\n\
         allow_http = true\nallow_private_networks = true\n",
        config_toml(5),
        sink.url("/service-b")
    );
    let served = serve(&config, None);
    let body = format!(
        r#"{{"type":"order.created","n":"{}"}}"#,
        uuid::Uuid::new_v4()
    );
    let (code, accepted) = post(&served.base, "demo", &body).await;
    assert_eq!(code, 202, "{accepted}");
    let id = accepted["event_id"].as_str().unwrap();

    let record = wait_for(&served.base, id, "processed").await;
    let attempts = record["attempts"].as_array().unwrap();
    let codes: Vec<_> = attempts.iter().map(|a| a["status_code"].clone()).collect();
    assert_eq!(codes, vec![Value::from(503), Value::from(204)]);
    assert!(attempts
        .iter()
        .all(|a| a["url"] == sink.url("/service-b").as_str()));
    let seen = sink.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen
        .iter()
        .all(|r| r.headers["webhook-id"] == id && r.body == body.as_bytes()));
}

#[tokio::test]
async fn serve_without_arguments_uses_the_bundled_example() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env_remove("HOOKGATE_CONFIG")
        .env_remove("HOOKGATE_CONFIG_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("hookgate listening on http://127.0.0.1:"),
        "{line:?}"
    );
}

#[tokio::test]
async fn serve_logs_json_lines_carrying_the_callers_trace() {
    let config = std::env::temp_dir().join(format!("hookgate-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&config, config_toml(5)).unwrap();
    let log = std::env::temp_dir().join(format!("hookgate-{}.log", uuid::Uuid::new_v4()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--config",
        ])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("hookgate listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    let served = Served {
        child,
        base,
        stderr: Default::default(),
    };

    let trace = "Root=1-6760a1b2-00112233445566778899aabb;Parent=53995c3f42cd8ad8;Sampled=1";
    let body = format!(
        r#"{{"type":"order.created","secret_note":"{}"}}"#,
        uuid::Uuid::new_v4()
    );
    let signature = demo_config()
        .sign("demo", body.as_bytes(), Timestamp::from_secs(0))
        .unwrap();
    let mut request = client()
        .post(format!("{}/webhooks/demo", served.base))
        .header("content-type", "application/json")
        .header("x-amzn-trace-id", trace)
        .body(body.clone());
    for (name, value) in &signature {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let id = response.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(&served.base, &id, "processed").await;

    // The processor logs right after recording the event processed: wait for the line.
    // The innermost span (the last of `spans`) names the event.
    let span = |line: &Value| line["spans"].as_array().and_then(|s| s.last()).cloned();
    let about = |message: &str, line: &Value| {
        line["message"] == message && span(line).is_some_and(|s| s["event_id"] == id.as_str())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines: Vec<Value> = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if lines.iter().any(|l| about("event processed", l)) {
            for secret in [&body, "local-demo-s3cr3t"]
                .into_iter()
                .chain(signature.iter().map(|(_, value)| value.as_str()))
            {
                assert!(!text.contains(secret), "{secret:?} is logged:\n{text}");
            }
            break lines;
        }
        assert!(Instant::now() < deadline, "no processed line:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(served);
    for message in ["event queued", "event processed"] {
        let line = lines.iter().find(|l| about(message, l)).unwrap();
        assert_eq!(span(line).unwrap()["xray_trace_id"], trace, "{line}");
        assert!(
            line.get("span").is_none(),
            "the innermost span once, in spans: {line}"
        );
        assert!(
            line["timestamp"].is_string() && line["level"] == "INFO",
            "{line}"
        );
    }
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&log);
}

/// A handler that fails its first `fail` runs per event, counting every run.
fn flaky(runs: Arc<AtomicU32>, fail: u32) -> impl hookgate_core::Handler {
    move |_e: Envelope| {
        let runs = runs.clone();
        async move {
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= fail {
                Err(HandlerError::retry(format!("downstream said no ({n})")))
            } else {
                Ok(())
            }
        }
    }
}

async fn retried_then_processed_and_poison_dead_lettered(
    ledger: Arc<dyn Ledger>,
    queue: Arc<dyn Queue>,
) {
    let runs = Arc::new(AtomicU32::new(0));
    let handlers = Handlers::new()
        .on("demo", "flaky", flaky(runs.clone(), 2))
        .on("demo", "poison", |_e: Envelope| async {
            Err(HandlerError::retry("always fails"))
        });
    let (base, _stop) = embed(&config_toml(3), ledger, queue, handlers).await;

    let (code, flaky_event) = post(&base, "demo", r#"{"type":"flaky"}"#).await;
    assert_eq!(code, 202);
    let (code, poison_event) = post(&base, "demo", r#"{"type":"poison"}"#).await;
    assert_eq!(code, 202);

    let record = wait_for(
        &base,
        flaky_event["event_id"].as_str().unwrap(),
        "processed",
    )
    .await;
    let attempts = record["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{record}");
    assert_eq!(
        attempts
            .iter()
            .map(|a| a["success"].as_bool().unwrap())
            .collect::<Vec<_>>(),
        vec![false, false, true]
    );
    assert_eq!(attempts[0]["error"], "downstream said no (1)");
    assert_eq!(runs.load(Ordering::SeqCst), 3);

    let record = wait_for(
        &base,
        poison_event["event_id"].as_str().unwrap(),
        "dead_lettered",
    )
    .await;
    assert_eq!(record["attempts"].as_array().unwrap().len(), 3, "{record}");
    assert_eq!(record["last_error"], "always fails");
}

#[tokio::test]
async fn memory_backend_retries_and_dead_letters() {
    let (queue, _dlq) = hookgate_core::memory::MemoryQueue::with_dlq(Duration::from_secs(1), 3);
    retried_then_processed_and_poison_dead_lettered(
        Arc::new(hookgate_core::memory::MemoryLedger::new()),
        queue,
    )
    .await;
}

#[tokio::test]
async fn aws_backend_on_moto_retries_and_dead_letters() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto (set HOOKGATE_MOTO_ENDPOINT)");
        return;
    };
    let aws = hookgate_testkit::fresh_resources(&endpoint, 3, 1).await;
    let backend = aws.backend();
    retried_then_processed_and_poison_dead_lettered(backend.ledger, backend.queue).await;
}

#[tokio::test]
async fn sign_and_send_commands_reach_a_running_stack() {
    let served = serve(&config_toml(5), None);
    let dir = std::env::temp_dir().join(format!("hookgate-send-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config_toml(5)).unwrap();
    let body_path = dir.join("body.json");
    std::fs::write(&body_path, r#"{"type":"sent.by.cli"}"#).unwrap();

    let signed = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["sign", "--source", "demo", "--body"])
        .arg(&body_path)
        .arg("--config")
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(signed.status.success());
    let expected = demo_config()
        .sign(
            "demo",
            br#"{"type":"sent.by.cli"}"#,
            Timestamp::from_secs(0),
        )
        .unwrap();
    assert_eq!(
        String::from_utf8(signed.stdout).unwrap(),
        format!("{}: {}\n", expected[0].0, expected[0].1)
    );

    let send = |url: String| {
        Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["send", "--source", "demo", "--body"])
            .arg(&body_path)
            .arg("--config")
            .arg(&config_path)
            .args(["--url", &url])
            .output()
            .unwrap()
    };
    let sent = send(served.base.clone());
    let out = String::from_utf8(sent.stdout).unwrap();
    assert!(sent.status.success(), "{out}");
    assert!(
        out.starts_with("202 ") && out.contains("\"queued\""),
        "{out}"
    );
    let again = send(served.base.clone());
    assert!(String::from_utf8(again.stdout)
        .unwrap()
        .contains("\"duplicate\""));

    let unknown = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["sign", "--source", "nope", "--body"])
        .arg(&body_path)
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8(unknown.stderr)
        .unwrap()
        .contains("no source named \"nope\""));
}

async fn dead_letter_then_redrive_through(
    base: &str,
    dlq_list: impl Fn() -> Vec<Value>,
    redrive: impl Fn() -> Value,
) {
    let (code, accepted) = post(base, "demo", r#"{"type":"rejected-downstream"}"#).await;
    assert_eq!(code, 202);
    let id = accepted["event_id"].as_str().unwrap().to_owned();
    wait_for(base, &id, "dead_lettered").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let listed = dlq_list();
        if !listed.is_empty() {
            break listed;
        }
        assert!(Instant::now() < deadline, "never listed in the DLQ");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(listed[0]["event_id"], id.as_str());
    assert_eq!(listed[0]["last_error"], "422 from downstream");
    assert_eq!(redrive()["moved"], 1);
    // The handler still refuses it: back to the DLQ, with the redrive in its history.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, record) = status(base, &id, Some(TOKEN)).await;
        let attempts = record["attempts"].as_array().cloned().unwrap_or_default();
        if attempts.len() == 2 && record["status"] == "dead_lettered" {
            assert!(
                attempts[1]["note"]
                    .as_str()
                    .unwrap()
                    .contains("redriven from the DLQ"),
                "{record}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "redriven event not retried: {record}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rejecting() -> Handlers {
    Handlers::new().on("demo", "rejected-downstream", |_e: Envelope| async {
        Err(HandlerError::permanent("422 from downstream"))
    })
}

// Multi-threaded: the admin calls block a worker while the stack serves on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_stack_dlq_routes_list_and_redrive() {
    let config = Config::from_toml(&config_toml(3)).unwrap();
    let stack = LocalStack::in_memory(config, rejecting());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(stack.serve(listener, std::future::pending()));

    let unauthorized = client().get(format!("{base}/dlq")).send().await.unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
    let malformed = client()
        .post(format!("{base}/dlq/redrive"))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    let body: Value = malformed.json().await.unwrap();
    assert_eq!(body["error"], "malformed_body");

    let admin = |method: &str, path: &str, body: Option<&str>| -> Value {
        // A blocking call from the async test: curl on 127.0.0.1, the way an operator would.
        let out = Command::new("curl")
            .args([
                "-sS",
                "-X",
                method,
                "-H",
                &format!("authorization: Bearer {TOKEN}"),
                "-w",
                "\n%{http_code}",
            ])
            .args(body.map(|b| vec!["-d", b]).unwrap_or_default())
            .arg(format!("{base}{path}"))
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (json, code) = text.rsplit_once('\n').unwrap();
        let mut answer: Value = serde_json::from_str(json).unwrap();
        answer["http_status"] = code.parse::<u16>().unwrap().into();
        answer
    };

    // Redriving ids none of which is in the DLQ: 404, naming them; an empty list: 400.
    let missing = admin(
        "POST",
        "/dlq/redrive",
        Some(r#"{"ids":["demo:nope","demo:gone"]}"#),
    );
    assert_eq!(missing["http_status"], 404, "{missing}");
    assert_eq!(missing["error"], "not_in_dlq");
    assert_eq!(
        missing["not_found"],
        serde_json::json!(["demo:gone", "demo:nope"])
    );
    let empty = admin("POST", "/dlq/redrive", Some(r#"{"ids":[]}"#));
    assert_eq!(
        (empty["http_status"].as_u64(), empty["error"].as_str()),
        (Some(400), Some("no_ids"))
    );

    dead_letter_then_redrive_through(
        &base,
        || {
            admin("GET", "/dlq", None)["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        },
        || admin("POST", "/dlq/redrive", None),
    )
    .await;

    // The event is back in the DLQ. Naming it and one that is not there: 200, with the one
    // not found named.
    let listed = admin("GET", "/dlq", None)["messages"].clone();
    let id = listed[0]["event_id"].as_str().unwrap().to_owned();
    let partly = admin(
        "POST",
        "/dlq/redrive",
        Some(&format!(r#"{{"ids":["{id}","demo:nope"]}}"#)),
    );
    assert_eq!(partly["http_status"], 200, "{partly}");
    assert_eq!(
        (partly["moved"].as_u64(), partly["not_found"].clone()),
        (Some(1), serde_json::json!(["demo:nope"]))
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while admin("GET", "/dlq", None)["messages"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(Instant::now() < deadline, "never back in the DLQ");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A purge needs its confirmation, and says what it deleted.
    for body in [
        None,
        Some("{}"),
        Some(r#"{"confirm":"yes"}"#),
        Some("not json"),
    ] {
        let refused = admin("POST", "/dlq/purge", body);
        assert_eq!(refused["http_status"], 400, "{body:?}: {refused}");
        assert_eq!(refused["error"], "confirmation_required");
    }
    assert_eq!(
        admin("GET", "/dlq", None)["messages"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let purged = admin("POST", "/dlq/purge", Some(r#"{"confirm":"purge"}"#));
    assert_eq!(purged["http_status"], 200, "{purged}");
    assert_eq!(purged["purged"], 1);
    assert_eq!(purged["event_ids"], serde_json::json!([id]));
    assert_eq!(
        admin("GET", "/dlq", None)["messages"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_commands_on_moto() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto (set HOOKGATE_MOTO_ENDPOINT)");
        return;
    };
    let aws = hookgate_testkit::fresh_resources(&endpoint, 3, 1).await;
    let backend = aws.backend();
    let (base, _stop) = embed(&config_toml(3), backend.ledger, backend.queue, rejecting()).await;
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(args)
            .envs(aws.env())
            .output()
            .unwrap()
    };
    let lines = |out: &std::process::Output| -> Value {
        let text = String::from_utf8(out.stdout.clone()).unwrap();
        Value::Array(
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        )
    };
    let hookgate = |args: &[&str]| -> Value {
        let out = run(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lines(&out)
    };
    // Ids none of which is in the DLQ: the report names them, and the command fails.
    let out = run(&["dlq", "redrive", "demo:nope", "demo:gone"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        lines(&out)[0],
        serde_json::json!({"moved": 0, "left": 0, "not_found": ["demo:gone", "demo:nope"]})
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "hookgate: error: none of the ids is in the DLQ: demo:gone, demo:nope\n"
    );

    dead_letter_then_redrive_through(
        &base,
        || hookgate(&["dlq", "list"]).as_array().cloned().unwrap(),
        || hookgate(&["dlq", "redrive", "--all", "--native"])[0].clone(),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        if let Some(m) = hookgate(&["dlq", "list"])
            .as_array()
            .and_then(|l| l.first().cloned())
        {
            break m["event_id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "never back in the DLQ");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        hookgate(&["dlq", "purge", "--yes"])[0],
        serde_json::json!({"purged": 1, "event_ids": [id]})
    );
    assert_eq!(hookgate(&["dlq", "list"]).as_array().unwrap().len(), 0);
}
