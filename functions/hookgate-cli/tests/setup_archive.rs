//! `hookgate setup` on moto: the archive bucket beside the table and the queues — created
//! (again, harmlessly, on a second run), named by default after the queue, the account and the
//! region, printed as `export HOOKGATE_ARCHIVE_BUCKET=…`, and a bad name refused clearly.

use std::collections::BTreeMap;
use std::process::{Command, Output};

fn setup(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .arg("setup")
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("HOOKGATE_CONFIG_FILE")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// The `export K=V` lines of a run.
fn exports(out: &Output) -> BTreeMap<String, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn setup_creates_the_archive_bucket_and_prints_it() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto (set HOOKGATE_MOTO_ENDPOINT)");
        return;
    };
    let name = format!(
        "hookgate-cli-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let args = ["--table", name.as_str(), "--queue", name.as_str()];
    let first = setup(&endpoint, &args);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let env = exports(&first);
    // The default name: QUEUE-archive-ACCOUNT-REGION (moto's account is 123456789012).
    let bucket = format!("{name}-archive-123456789012-us-east-1");
    assert_eq!(env.get("HOOKGATE_ARCHIVE_BUCKET"), Some(&bucket), "{env:?}");
    assert!(env.contains_key("HOOKGATE_TABLE") && env.contains_key("HOOKGATE_QUEUE_URL"));

    // Again: the same resources.
    let second = setup(&endpoint, &args);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(exports(&second), env);

    // The bucket is there, expiring objects after the dedup window (the default 7 days).
    let config = hookgate_testkit::moto_sdk_config(&endpoint).await;
    let s3 = hookgate_aws::archive::s3_client(&config);
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(
        lifecycle.rules()[0].expiration().and_then(|e| e.days()),
        Some(7)
    );
    // And the printed environment is one the backend starts from.
    let archive = hookgate_aws::S3Archive::new(s3, &bucket);
    let id = hookgate_core::EventId::parse("test:setup").unwrap();
    assert_eq!(
        hookgate_core::Archive::get(&archive, &id).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn setup_takes_a_bucket_name_and_refuses_a_bad_one() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto (set HOOKGATE_MOTO_ENDPOINT)");
        return;
    };
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("hookgate-cli-{}", &unique[..12]);
    let bucket = format!("my-archive-{}", &unique[..12]);
    let out = setup(
        &endpoint,
        &["--table", &name, "--queue", &name, "--bucket", &bucket],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(exports(&out).get("HOOKGATE_ARCHIVE_BUCKET"), Some(&bucket));

    let out = setup(
        &endpoint,
        &["--table", &name, "--queue", &name, "--bucket", "My_Archive"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("My_Archive") && stderr.contains("lower case"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("HOOKGATE_ARCHIVE_BUCKET"));
}
