//! A new user's first hour, run as they would run it: the `hookgate` binary from a clean
//! environment (no AWS or HOOKGATE variable unless the test sets one), on 127.0.0.1.
//!
//! Which configuration `serve` runs with and says it runs with; `sign` and `send` with the
//! headers that carry the event type and the built-in example bodies; AWS commands without a
//! region or credentials; an absent admin token; and the small mismatches between the README
//! and the binary.

mod common;

use std::time::Duration;

use common::{client, hookgate_clean, output_within, start};
use hookgate_core::config::EXAMPLE_CONFIG;
use hookgate_core::Config;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn config_doc(source: &str, admin: Option<&str>) -> String {
    let admin = admin
        .map(|t| format!("[admin]\ntoken = \"{t}\"\n"))
        .unwrap_or_default();
    format!("[sources.{source}]\nscheme = \"hmac-sha256\"\nsecrets = [\"first-run-s3cr3t-1\"]\n\n{admin}")
}

/// What `served` has written to stderr once it holds every one of `needles` (its reader thread
/// may lag behind the line on stdout that says it started), or after 10 s, whatever it holds.
fn stderr_once(served: &common::Served, needles: &[&str]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stderr = served.stderr.lock().unwrap().clone();
        if needles.iter().all(|n| stderr.contains(n)) || std::time::Instant::now() > deadline {
            return stderr;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hookgate-first-run-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = client().get(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or_default(),
    )
}

/// The error of a failed command: exactly one line `hookgate: error: …` on stderr (`serve`
/// may have logged before it), with no SDK `Debug` dump anywhere, and exit status 1.
fn one_error_line(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("hookgate: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "not one error line: {stderr}");
    for dump in [
        "Unhandled(",
        "DispatchFailure {",
        "ErrorMetadata",
        "source: Some(",
    ] {
        assert!(!stderr.contains(dump), "a Debug dump ({dump}): {stderr}");
    }
    let text = errors[0].trim_start_matches("hookgate: error: ");
    assert_eq!(stderr.matches(text).count(), 1, "said twice: {stderr}");
    errors[0].to_owned()
}

// Item 4: HOOKGATE_CONFIG is honoured, the origin is logged, and nothing is silently replaced.
#[tokio::test]
async fn serve_runs_with_hookgate_config_and_says_where_it_came_from() {
    let document = config_doc("fromenv", Some("env-token"));
    let mut command = hookgate_clean();
    command
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("HOOKGATE_CONFIG", &document)
        .env("HOOKGATE_CONFIG_FILE", "/nonexistent/ignored.toml");
    let served = start(command);
    let config = Config::from_toml(&document).unwrap();
    let (code, body) = common::post_signed(
        &client(),
        &config,
        &served.base,
        "fromenv",
        r#"{"type":"x"}"#,
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let (code, _) = get(&served.base, "/events?limit=1", Some("env-token")).await;
    assert_eq!(code, 200);
    let stderr = stderr_once(
        &served,
        &[
            "configuration from HOOKGATE_CONFIG (the document in the environment) (sources fromenv)",
            "HOOKGATE_CONFIG_FILE is set but ignored",
        ],
    );
    assert!(
        stderr.contains("configuration from HOOKGATE_CONFIG (the document in the environment) (sources fromenv)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("HOOKGATE_CONFIG_FILE is set but ignored"),
        "{stderr}"
    );
    drop(served);

    // --config wins over both variables, and says so.
    let flag = temp_path("flag.toml");
    std::fs::write(&flag, config_doc("fromflag", None)).unwrap();
    let mut command = hookgate_clean();
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--config"])
        .arg(&flag)
        .env("HOOKGATE_CONFIG", &document);
    let served = start(command);
    let from_flag = format!("configuration from --config {}", flag.display());
    let stderr = stderr_once(
        &served,
        &[from_flag.as_str(), "HOOKGATE_CONFIG is set but ignored"],
    );
    assert!(
        stderr.contains(&format!("configuration from --config {}", flag.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("HOOKGATE_CONFIG is set but ignored"),
        "{stderr}"
    );
    drop(served);

    // A document that is not valid stops the start: no fallback to the bundled example.
    let out = output_within(
        hookgate_clean()
            .args(["serve", "--addr", "127.0.0.1:0"])
            .env("HOOKGATE_CONFIG", "[sources.x]\nscheme = 1\n"),
        LIMIT,
    );
    let line = one_error_line(&out);
    assert!(
        line.contains("configuration from HOOKGATE_CONFIG"),
        "{line}"
    );
    assert!(out.stdout.is_empty());
}

// Item 7: without an [admin] token the stack warns, and each 401 says the routes are closed.
#[tokio::test]
async fn without_an_admin_token_the_stack_warns_and_its_401_says_why() {
    let mut command = hookgate_clean();
    command
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("HOOKGATE_CONFIG", config_doc("demo", None));
    let served = start(command);
    for path in ["/events/demo:1", "/events", "/dlq"] {
        let (code, body) = get(&served.base, path, Some("guess")).await;
        assert_eq!(
            (code, body["error"].as_str()),
            (401, Some("unauthorized")),
            "{path}"
        );
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("no [admin] token is configured"),
            "{path}: {message}"
        );
    }
    let stderr = stderr_once(
        &served,
        &["no [admin] token is configured: the operator routes"],
    );
    assert!(
        stderr.contains("no [admin] token is configured: the operator routes"),
        "{stderr}"
    );
}

// Item 5: every scheme of the bundled example can be tried with --example, typed; --type and
// --header reach the stack. Item 8: an id that can never be valid is a 400.
#[tokio::test]
async fn send_tries_every_scheme_with_its_example_and_the_type_headers() {
    let mut command = hookgate_clean();
    command.args(["serve", "--addr", "127.0.0.1:0"]);
    let served = start(command);
    let base = served.base.clone();
    let token = Some("local-admin-token");
    let send = |args: &[&str]| {
        let out = output_within(
            hookgate_clean()
                .arg("send")
                .args(args)
                .args(["--url", base.as_str()]),
            LIMIT,
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (code, json) = stdout.trim().split_once(' ').unwrap();
        (
            code.to_owned(),
            serde_json::from_str::<Value>(json).unwrap(),
        )
    };
    let config = Config::from_toml(EXAMPLE_CONFIG).unwrap();
    let mut schemes = Vec::new();
    for (name, source) in &config.sources {
        // The relay source forwards to 127.0.0.1:4000, which may be someone else's.
        if source.forward.is_some() {
            continue;
        }
        let (code, answer) = send(&["--source", name.as_str(), "--example"]);
        assert_eq!(code, "202", "{name}: {answer}");
        let id = answer["event_id"].as_str().unwrap();
        let (_, record) = get(&base, &format!("/events/{id}"), token).await;
        let event_type = record["type"].as_str().unwrap_or_default().to_owned();
        assert!(
            !event_type.is_empty() && event_type != "unknown",
            "{name}: {record}"
        );
        if name.as_str() == "github" {
            assert_eq!(event_type, "push");
        }
        schemes.push(source.scheme.name());
    }
    for scheme in hookgate_core::signature::names() {
        assert!(schemes.contains(&scheme), "{scheme} not tried");
    }

    // --type and --header on a body of one's own.
    let body = temp_path("issue.json");
    std::fs::write(&body, r#"{"action":"opened","issue":{"number":7}}"#).unwrap();
    let body = body.to_str().unwrap();
    let (code, answer) = send(&[
        "--source",
        "github",
        "--body",
        body,
        "--type",
        "issues",
        "--header",
        "X-GitHub-Hook-ID: 42",
    ]);
    assert_eq!(code, "202", "{answer}");
    let id = answer["event_id"].as_str().unwrap();
    let (_, record) = get(&base, &format!("/events/{id}"), token).await;
    assert_eq!(record["type"], "issues", "{record}");

    // `sign` prints the same headers.
    let out = output_within(
        hookgate_clean().args([
            "sign",
            "--source",
            "shopify",
            "--example",
            "--type",
            "orders/paid",
            "--header",
            "x-shopify-shop-domain:acme.myshopify.com",
        ]),
        LIMIT,
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{printed}");
    for line in [
        "x-shopify-topic: orders/paid",
        "x-shopify-shop-domain: acme.myshopify.com",
    ] {
        assert!(
            printed.lines().any(|l| l == line),
            "{line} not in {printed}"
        );
    }
    assert!(printed.starts_with("x-shopify-hmac-sha256: "), "{printed}");

    // A scheme that reads the type from the body refuses --type, in one line.
    let out = output_within(
        hookgate_clean().args(["sign", "--source", "stripe", "--example", "--type", "x"]),
        LIMIT,
    );
    assert!(one_error_line(&out).contains("reads the event type from the body"));

    // Item 8: `GET /events/nocolon` is a bad request, as the README says.
    let (code, body) = get(&base, "/events/nocolon", token).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (400, Some("invalid_event_id"))
    );
}

// Item 6: AWS commands without a region or credentials say in one line what to set, and
// `setup` prints nothing on stdout when it fails.
#[test]
fn aws_commands_without_region_or_credentials_say_what_to_set() {
    let resources = [
        ("HOOKGATE_TABLE", "t"),
        ("HOOKGATE_QUEUE_URL", "http://127.0.0.1:9/q"),
        ("HOOKGATE_DLQ_URL", "http://127.0.0.1:9/q-dlq"),
    ];
    let commands: [&[&str]; 4] = [
        &["setup"],
        &["serve", "--backend", "aws", "--addr", "127.0.0.1:0"],
        &["dlq", "list"],
        &["dlq", "redrive", "--all"],
    ];
    for args in commands {
        let out = output_within(hookgate_clean().args(args).envs(resources), LIMIT);
        let line = one_error_line(&out);
        assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
        assert!(
            line.contains("no AWS region is set: set AWS_REGION")
                && line.contains("AWS_ENDPOINT_URL"),
            "{args:?}: {line}"
        );

        let out = output_within(
            hookgate_clean()
                .args(args)
                .envs(resources)
                .env("AWS_REGION", "us-east-1"),
            LIMIT,
        );
        let line = one_error_line(&out);
        assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
        assert!(
            line.contains(
                "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) && line.contains("AWS_ENDPOINT_URL"),
            "{args:?}: {line}"
        );
    }
}

// Item 6: an SDK failure (nothing listens at the endpoint) is one readable line too.
#[test]
fn an_unreachable_endpoint_is_one_readable_line() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let aws = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ];
    let out = output_within(hookgate_clean().arg("setup").envs(aws), LIMIT);
    let line = one_error_line(&out);
    assert!(out.stdout.is_empty());
    assert!(
        line.contains("DynamoDB CreateTable on hookgate-events failed"),
        "{line}"
    );
    let out = output_within(
        hookgate_clean()
            .args(["dlq", "list"])
            .envs(aws)
            .env("HOOKGATE_TABLE", "t")
            .env("HOOKGATE_QUEUE_URL", format!("{endpoint}/123456789012/q"))
            .env("HOOKGATE_DLQ_URL", format!("{endpoint}/123456789012/q-dlq")),
        LIMIT,
    );
    let line = one_error_line(&out);
    assert!(line.contains("SQS ReceiveMessage"), "{line}");
}

// Item 8: `hookgate events` works from any directory.
#[test]
fn the_events_command_works_from_any_directory() {
    let elsewhere = temp_path("out");
    let cwd = elsewhere.parent().unwrap().to_owned();
    let out = output_within(
        hookgate_clean()
            .current_dir(&cwd)
            .args(["events", "--out"])
            .arg(&elsewhere),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(elsewhere.join("webhook-stripe.json").is_file());
    assert!(elsewhere.join("env.json").is_file());
}

// Items 1 and 8: the redrive's arguments, refused by the binary before anything runs.
#[test]
fn redrive_arguments_are_refused_before_anything_runs() {
    let out = output_within(hookgate_clean().args(["dlq", "redrive"]), LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--all"), "{stderr}");
    let out = output_within(
        hookgate_clean().args(["dlq", "redrive", "--native", "demo:1"]),
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--native"), "{stderr}");
}

// Item 8: `serve --backend aws` refuses a queue whose redrive policy disagrees with the
// configuration (moto).
#[tokio::test]
async fn serve_on_aws_refuses_a_queue_with_another_max_receive_count() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto (set HOOKGATE_MOTO_ENDPOINT)");
        return;
    };
    let aws = hookgate_testkit::fresh_resources(&endpoint, 3, 1).await;
    let config = temp_path("five.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[processor]\nmax_receive_count = 5\n",
            config_doc("demo", None)
        ),
    )
    .unwrap();
    let out = output_within(
        hookgate_clean()
            .args([
                "serve",
                "--backend",
                "aws",
                "--addr",
                "127.0.0.1:0",
                "--config",
            ])
            .arg(&config)
            .envs(aws.env()),
        LIMIT,
    );
    let line = one_error_line(&out);
    assert!(out.stdout.is_empty());
    assert!(
        line.contains(
            "moves messages to its DLQ after 3 receives, but processor.max_receive_count is 5"
        ),
        "{line}"
    );
}
