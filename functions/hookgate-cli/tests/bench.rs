//! The load tool (`hookgate bench`) on a small load: every count it prints must agree with what
//! the stack did. The figures themselves are measured by hand (README, Performance), never here.

use std::process::Command;
use std::time::Duration;

use hookgate_cli::bench::{self, BenchError, LoadOptions, Target};
use hookgate_cli::local::LocalStack;
use hookgate_core::{Config, Envelope, HandlerError, Handlers};

const TOKEN: &str = "bench-admin-token";

fn config() -> Config {
    Config::from_toml(&format!(
        r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["local-demo-s3cr3t"]

[sources.standard]
scheme = "standard"
secrets = ["whsec_aG9va2dhdGUtbG9jYWwtc3RhbmRhcmQtc2VjcmV0ISE="]

[processor]
wait_time_ms = 100

[admin]
token = "{TOKEN}"
"#
    ))
    .unwrap()
}

fn small(requests: usize, duplicates_pct: u8) -> LoadOptions {
    LoadOptions {
        requests,
        concurrency: 4,
        duplicates_pct,
        timeout: Duration::from_secs(30),
        ..LoadOptions::default()
    }
}

#[tokio::test]
async fn two_hundred_events_are_all_processed_and_the_counts_agree() {
    let report = bench::run(
        &config(),
        Target::InProcess(Handlers::new()),
        &small(200, 10),
    )
    .await
    .unwrap();
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.requests, 200);
    assert_eq!(report.failed, 0);
    // Every repeat was answered as one (a repeat meeting its original mid-way is a 409).
    assert!(report.repeats_sent >= 15, "{report}");
    assert_eq!(report.duplicate + report.in_progress, report.repeats_sent);
    assert_eq!(report.queued, 200 - report.repeats_sent);
    assert_eq!(report.processed, report.queued);
    let l = report.latency;
    assert!(Duration::ZERO < l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max);
    assert!(report.accepted_per_sec() > 0.0 && report.processed_per_sec() > 0.0);
    assert!(report.processed_elapsed >= report.accept_elapsed);
    let printed = report.to_string();
    assert!(
        printed.contains(&format!(
            "answers: {} queued, {} duplicate",
            report.queued, report.duplicate
        )),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("{} of {} queued", report.processed, report.queued)),
        "{printed}"
    );
}

#[tokio::test]
async fn a_running_stack_is_driven_by_url_and_read_through_its_status_api() {
    let config = config();
    let stack = LocalStack::in_memory(config.clone(), Handlers::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(stack.serve(listener, async {
        let _ = stopped.await;
    }));
    let options = LoadOptions {
        source: "standard".into(),
        ..small(100, 0)
    };
    let target = Target::Url {
        base: base.clone(),
        admin_token: TOKEN.into(),
    };
    let report = bench::run(&config, target, &options).await.unwrap();
    assert!(report.is_complete(), "{report}");
    assert_eq!((report.queued, report.processed), (100, 100));
    assert_eq!(report.target, base);

    // The wrong token: the status API refuses, and the tool says so rather than waiting.
    let target = Target::Url {
        base,
        admin_token: "wrong".into(),
    };
    let error = bench::run(&config, target, &options).await.unwrap_err();
    assert!(
        matches!(&error, BenchError::Status(_, e) if e.contains("401")),
        "{error}"
    );
    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn events_that_fail_are_reported_not_waited_for_forever() {
    let handlers = Handlers::new().on("demo", "*", |_e: Envelope| async {
        Err(HandlerError::permanent("refused by the test"))
    });
    let report = bench::run(&config(), Target::InProcess(handlers), &small(20, 0))
        .await
        .unwrap();
    assert!(!report.is_complete());
    assert_eq!(report.queued, 20);
    assert_eq!((report.processed, report.dead_lettered), (0, 20));
}

#[tokio::test]
async fn an_unreachable_stack_fails_every_request() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = Target::Url {
        base: format!("http://127.0.0.1:{port}"),
        admin_token: TOKEN.into(),
    };
    let report = bench::run(&config(), target, &small(10, 0)).await.unwrap();
    assert!(!report.is_complete());
    assert_eq!((report.failed, report.queued), (10, 0));
    assert!(
        report
            .first_failure
            .as_deref()
            .is_some_and(|e| e.starts_with("no answer")),
        "{report}"
    );
}

#[tokio::test]
async fn bad_options_and_unknown_sources_are_refused() {
    let target = || Target::InProcess(Handlers::new());
    let unknown = LoadOptions {
        source: "nope".into(),
        ..small(10, 0)
    };
    assert!(matches!(
        bench::run(&config(), target(), &unknown).await,
        Err(BenchError::Source(..))
    ));
    assert!(matches!(
        bench::run(&config(), target(), &small(10, 101)).await,
        Err(BenchError::Options(_))
    ));
    assert!(matches!(
        bench::run(&config(), target(), &small(0, 0)).await,
        Err(BenchError::Options(_))
    ));
}

#[test]
fn the_command_prints_the_report_and_exits_zero() {
    let path = std::env::temp_dir().join(format!("hookgate-bench-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[sources.demo]\nscheme = \"hmac-sha256\"\nsecrets = [\"local-demo-s3cr3t\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["bench", "--events", "200", "--concurrency", "8", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("answers: 200 queued, 0 duplicate, 0 in progress, 0 failed"),
        "{stdout}"
    );
    assert!(stdout.contains("(200 of 200 queued in"), "{stdout}");
    assert!(stdout.contains("latency p50"), "{stdout}");
}

#[test]
fn the_command_exits_non_zero_when_events_are_not_accepted() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["bench", "--events", "5", "--admin-token", "t", "--url"])
        .arg(format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("5 failed"));
}
