//! Payloads and replay over HTTP and through the `hookgate` command, against a real
//! `hookgate serve` on the in-memory backends and on moto (`--backend aws`, SQS, DynamoDB and
//! S3): `GET /events/{id}/payload`, `POST /events/{id}/replay`, the paged listing,
//! `hookgate replay ID…`, `hookgate replay --status … --url …` (bulk, run twice),
//! `hookgate payload ID`, and the hostile cases: no token, traversal and over-long ids.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{client, Served};
use hookgate_core::{Config, Timestamp};
use hookgate_testkit::MotoResources;
use serde_json::Value;

const TOKEN: &str = "replay-admin-token";

fn config_toml() -> String {
    format!(
        r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["local-demo-s3cr3t"]

[processor]
max_receive_count = 3
visibility_timeout_secs = 2
wait_time_ms = 500

[archive]
claim_check_bytes = 65536

[admin]
token = "{TOKEN}"
"#
    )
}

async fn post(base: &str, body: &[u8]) -> (u16, Value) {
    let config = Config::from_toml(&config_toml()).unwrap();
    let headers = config.sign("demo", body, Timestamp::from_secs(0)).unwrap();
    let mut request = client()
        .post(format!("{base}/webhooks/demo"))
        .header("content-type", "application/vnd.example+json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn get(base: &str, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = client().get(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn replay(base: &str, id: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = client().post(format!("{base}/events/{id}/replay"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn wait_for(base: &str, id: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let response = get(base, &format!("/events/{id}"), Some(TOKEN)).await;
        let body: Value = response.json().await.unwrap();
        if check(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{id}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where these tests' `hookgate replay` runs keep their unfinished runs.
fn state_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("hookgate-replay-state-{}", std::process::id()))
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookgate"));
    command
        .args(args)
        .env("HOOKGATE_ADMIN_TOKEN", TOKEN)
        .env("HOOKGATE_STATE_DIR", state_dir())
        .env_remove("HOOKGATE_CONFIG")
        .env_remove("HOOKGATE_CONFIG_FILE");
    command
}

fn hookgate(args: &[&str]) -> (bool, String, String) {
    let out = command(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn body(n: usize) -> Vec<u8> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut s = format!(r#"{{"type":"order.created","tag":"{tag}","pad":""#);
    while s.len() < n - 2 {
        s.push_str(&hookgate_core::archive::sha256_hex(s.as_bytes())[..8]);
    }
    s.truncate(n - 2);
    s.push_str("\"}");
    s.into_bytes()
}

async fn payload_and_replay_over_http(served: &Served) {
    let base = &served.base;
    // One small (inline), one over the claim-check size (a pointer message).
    for size in [900, 70_000] {
        let sent = body(size);
        let (code, accepted) = post(base, &sent).await;
        assert_eq!(code, 202, "{accepted}");
        let id = accepted["event_id"].as_str().unwrap().to_owned();
        let record = wait_for(base, &id, |r| r["status"] == "processed").await;
        assert_eq!(record["payload_archived"], true, "{record}");
        assert_eq!(record["payload_bytes"], size as u64);
        assert_eq!(
            record["payload_sha256"],
            hookgate_core::archive::sha256_hex(&sent)
        );

        let response = get(base, &format!("/events/{id}/payload"), Some(TOKEN)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/vnd.example+json"
        );
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.bytes().await.unwrap(), sent, "byte for byte");

        let (code, replayed) = replay(base, &id, Some(TOKEN)).await;
        assert_eq!(code, 202, "{replayed}");
        assert_eq!(
            (replayed["status"].as_str(), replayed["generation"].as_u64()),
            (Some("queued"), Some(1))
        );
        let record = wait_for(base, &id, |r| {
            r["status"] == "processed" && r["attempts"].as_array().is_some_and(|a| a.len() == 2)
        })
        .await;
        assert_eq!(record["replays"], 1);
        assert_eq!(record["history"][0]["kind"], "replayed");

        // The CLI reads the same bytes.
        let out = std::env::temp_dir().join(format!("payload-{}", uuid::Uuid::new_v4()));
        let (ok, _, stderr) = hookgate(&[
            "payload",
            &id,
            "--url",
            base,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{stderr}");
        assert_eq!(std::fs::read(&out).unwrap(), sent);
    }

    // Errors: no token, unknown, in progress, hostile ids.
    let (code, e) = replay(base, "demo:nope", None).await;
    assert_eq!((code, e["error"].as_str()), (401, Some("unauthorized")));
    let (code, e) = replay(base, "demo:nope", Some(TOKEN)).await;
    assert_eq!((code, e["error"].as_str()), (404, Some("event_not_found")));
    for hostile in [
        "..%2F..%2Fetc%2Fpasswd",
        "demo:..%2Fx",
        &format!("demo:{}", "x".repeat(300)),
    ] {
        let (code, e) = replay(base, hostile, Some(TOKEN)).await;
        assert!(code == 400 || code == 404, "{hostile}: {code} {e}");
        assert!(
            ["invalid_event_id", "not_found"].contains(&e["error"].as_str().unwrap_or("")),
            "{hostile}: {e}"
        );
        let response = get(base, &format!("/events/{hostile}/payload"), Some(TOKEN)).await;
        assert!(matches!(response.status().as_u16(), 400 | 404), "{hostile}");
    }
    let response = get(base, "/events/demo:nope/payload", None).await;
    assert_eq!(response.status(), 401);
}

async fn bulk_replay_through_the_command(served: &Served) {
    let base = &served.base;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (code, accepted) = post(base, &body(600)).await;
        assert_eq!(code, 202);
        ids.push(accepted["event_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        wait_for(base, id, |r| r["status"] == "processed").await;
    }
    // The paged listing: two at a time, with a cursor.
    let response = get(
        base,
        "/events?status=processed&source=demo&limit=2",
        Some(TOKEN),
    )
    .await;
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 2, "{page}");
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next cursor")
        .to_owned();
    let response = get(
        base,
        &format!("/events?status=processed&source=demo&limit=2&cursor={cursor}"),
        Some(TOKEN),
    )
    .await;
    let next: Value = response.json().await.unwrap();
    assert_ne!(next["events"][0]["event_id"], page["events"][0]["event_id"]);
    let response = get(base, "/events?type=x", Some(TOKEN)).await;
    assert_eq!(response.status(), 400, "a paged listing needs a status");

    let until = (hookgate_core::Clock::now(&hookgate_core::SystemClock)
        .plus(Duration::from_secs(1)))
    .to_rfc3339();
    let args = [
        "replay",
        "--status",
        "processed",
        "--source",
        "demo",
        "--since",
        "10m",
        "--until",
        &until,
        "--url",
        base,
    ];
    let (ok, stdout, stderr) = hookgate(&[&args[..], &["--dry-run"]].concat());
    assert!(ok, "{stderr}");
    let dry: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(dry["matched"].as_u64().unwrap() >= 5, "{dry}");
    assert_eq!(dry["dry_run"], true);

    // Interrupted (Ctrl-C) part-way at 2 replays a second, then the same command again: it goes
    // on with the same run, and every event is replayed exactly once.
    let slow = command(&[&args[..], &["--rate", "2"]].concat())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let sent = Command::new("kill")
        .args(["-INT", &slow.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = slow.wait_with_output().unwrap();
    let first: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!out.status.success(), "an interrupted run exits non-zero");
    assert_eq!(first["stopped"], "interrupted", "{first}");
    let replayed = first["replayed"].as_u64().unwrap();
    assert!((1..5).contains(&replayed), "{first}");
    let (ok, stdout, stderr) = hookgate(&args);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("going on with the run"), "{stderr}");
    let second: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(second["run"], first["run"], "the same run");
    assert!(second["stopped"].is_null(), "{second}");
    for id in &ids {
        let record = wait_for(base, id, |r| {
            r["status"] == "processed" && r["replays"] == 1
        })
        .await;
        assert_eq!(record["replays"], 1, "{id}");
    }
    // One by id.
    let (ok, stdout, stderr) = hookgate(&["replay", &ids[0], "--url", base]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(r#""generation":2"#), "{stdout}");
    let (ok, stdout, _) = hookgate(&["replay", "demo:not-there", "--url", base]);
    assert!(!ok);
    assert!(stdout.contains("event_not_found"), "{stdout}");
}

#[tokio::test]
async fn memory_backend() {
    let served = common::serve(&config_toml(), None);
    payload_and_replay_over_http(&served).await;
    bulk_replay_through_the_command(&served).await;
}

#[tokio::test]
async fn aws_backend_on_moto() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto");
        return;
    };
    let resources: MotoResources = hookgate_testkit::fresh_resources(&endpoint, 3, 2).await;
    let served = common::serve(&config_toml(), Some(&resources));
    payload_and_replay_over_http(&served).await;
    bulk_replay_through_the_command(&served).await;
}
