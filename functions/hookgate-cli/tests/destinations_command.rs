//! `hookgate destinations list | enable | disable` on moto: the command reads and changes the
//! same items the processors' `DynamoDbGate` does, on the ledger's table (`--table` or
//! `HOOKGATE_TABLE`), and refuses a bad name, a missing table and an unknown one clearly.

mod common;

use std::process::Output;
use std::time::Duration;

use hookgate_core::destination_gate::{BreakerOptions, Circuit, DestinationGate};
use hookgate_core::destination_policy::DestinationName;
use hookgate_core::{Clock, SystemClock};

const CONFIG: &str = r#"
[sources.billing]
scheme = "github"
secrets = ["s3cr3t-github-billing"]
forward = { url = "https://billing.example/hooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }

[sources.audit]
scheme = "github"
secrets = ["s3cr3t-github-audit"]
forward = { url = "https://audit.example/hooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }
"#;

/// `hookgate destinations ARGS` against moto at `endpoint`, with the config above and, if
/// given, `HOOKGATE_TABLE`.
fn destinations(endpoint: &str, table: Option<&str>, args: &[&str]) -> Output {
    let config = std::env::temp_dir().join(format!(
        "hookgate-destinations-{}.toml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&config, CONFIG).unwrap();
    let mut command = common::hookgate_clean();
    command
        .arg("destinations")
        .args(args)
        .arg("--config")
        .arg(&config)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("RUST_LOG", "warn");
    if let Some(table) = table {
        command.env("HOOKGATE_TABLE", table);
    }
    let out = common::output_within(&mut command, Duration::from_secs(60));
    let _ = std::fs::remove_file(&config);
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn name(s: &str) -> DestinationName {
    DestinationName::parse(s).unwrap()
}

#[tokio::test]
async fn list_disable_and_enable_on_the_ledger_table() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto (set HOOKGATE_MOTO_ENDPOINT)");
        return;
    };
    let config = hookgate_testkit::moto_sdk_config(&endpoint).await;
    let table = format!("hookgate-dest-{}", uuid::Uuid::new_v4().simple());
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    hookgate_aws::create_table(&dynamodb, &table).await.unwrap();
    // What a processor's gate would have recorded: audit failing until its circuit opened.
    let gate = hookgate_aws::DynamoDbGate::new(dynamodb, &table);
    let breaker = BreakerOptions {
        failures: 2,
        cool_down: Duration::from_secs(600),
    };
    for _ in 0..2 {
        gate.record_failure(
            &name("audit"),
            "503 Service Unavailable",
            breaker,
            SystemClock.now(),
        )
        .await
        .unwrap();
    }

    let out = destinations(&endpoint, Some(&table), &["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(lines[0].starts_with("DESTINATION") && lines[0].contains("LAST FAILURE"));
    assert!(
        lines[1].starts_with("audit")
            && lines[1].contains("open until")
            && lines[1].contains("2  503 Service Unavailable"),
        "{listed}"
    );
    assert!(
        lines[2].starts_with("billing") && lines[2].contains("closed"),
        "{listed}"
    );

    // Disable billing (--table this time), as an operator would.
    let out = destinations(
        &endpoint,
        None,
        &[
            "disable",
            "billing",
            "--reason",
            "moving house",
            "--table",
            &table,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("billing: disabled since "),
        "{}",
        text(&out.stdout)
    );
    let health = gate.health(&name("billing")).await.unwrap();
    assert!(
        matches!(&health.circuit, Circuit::Disabled { reason, .. } if reason == "moving house"),
        "{health:?}"
    );

    // JSON, for one destination named (configured or not).
    let out = destinations(
        &endpoint,
        Some(&table),
        &["list", "billing", "elsewhere", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let objects: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0]["circuit"], "disabled");
    assert_eq!(objects[0]["disabled_reason"], "moving house");
    assert_eq!(
        (
            objects[1]["destination"].as_str(),
            objects[1]["circuit"].as_str()
        ),
        (Some("elsewhere"), Some("closed"))
    );

    // Enable: closed, failures forgotten.
    let out = destinations(&endpoint, Some(&table), &["enable", "billing"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(gate.health(&name("billing")).await.unwrap().is_clean());
    let out = destinations(&endpoint, Some(&table), &["enable", "audit"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(gate.health(&name("audit")).await.unwrap().is_clean());
    // A name the configuration does not have works, with a warning.
    let out = destinations(&endpoint, Some(&table), &["disable", "elsewhere"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("elsewhere is not a destination of this configuration"));
}

#[tokio::test]
async fn a_bad_name_a_missing_table_and_an_unknown_table_are_refused() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto (set HOOKGATE_MOTO_ENDPOINT)");
        return;
    };
    let out = destinations(&endpoint, Some("t"), &["disable", "Billing!"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("[a-z0-9_-]"),
        "{}",
        text(&out.stderr)
    );

    let out = destinations(&endpoint, None, &["list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--table"),
        "{}",
        text(&out.stderr)
    );

    let missing = format!("hookgate-missing-{}", uuid::Uuid::new_v4().simple());
    let out = destinations(&endpoint, Some(&missing), &["enable", "billing"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("hookgate: error: ")
            && stderr.contains(&missing)
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    // A sentence, not the SDK's `Debug` dump of the response.
    assert!(
        stderr.contains("ResourceNotFoundException")
            && !stderr.contains("ServiceError {")
            && !stderr.contains("SdkBody"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
