//! `AwsBackend::from_env`, as the Lambda functions call it. In a test binary of its own, one
//! test at a time, because it changes the process environment.

use hookgate_aws::{AwsBackend, InitError};
use hookgate_core::archive::Archive;
use hookgate_core::envelope::EventId;
use hookgate_core::ledger::Ledger;
use hookgate_core::queue::Queue;

/// The tests of this binary change the process environment: one at a time.
static ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn from_env_names_what_is_missing_and_honours_aws_endpoint_url() {
    let _env = ENV.lock().await;
    for var in [
        "HOOKGATE_TABLE",
        "HOOKGATE_QUEUE_URL",
        "HOOKGATE_DLQ_URL",
        "HOOKGATE_ARCHIVE_BUCKET",
    ] {
        std::env::remove_var(var);
    }
    let err = AwsBackend::from_env().await.unwrap_err();
    assert!(matches!(err, InitError::MissingVar("HOOKGATE_TABLE", _)));
    assert!(err.to_string().contains("HOOKGATE_TABLE"), "{err}");

    std::env::set_var("HOOKGATE_TABLE", "t");
    std::env::set_var("HOOKGATE_QUEUE_URL", "  ");
    let err = AwsBackend::from_env().await.unwrap_err();
    assert_eq!(
        err,
        InitError::MissingVar("HOOKGATE_QUEUE_URL", "SQS queue URL")
    );
    assert!(err.to_string().contains("HOOKGATE_QUEUE_URL"), "{err}");

    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto");
        return;
    };
    let r = hookgate_testkit::fresh_resources(&endpoint, 3, 30).await;
    std::env::set_var("HOOKGATE_TABLE", &r.table);
    std::env::set_var("HOOKGATE_QUEUE_URL", &r.queue_url);
    std::env::set_var("HOOKGATE_DLQ_URL", &r.dlq_url);
    std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let backend = AwsBackend::from_env().await.unwrap();
    assert_eq!(backend.queue.queue_url(), r.queue_url);
    assert_eq!(backend.queue.dlq_url(), Some(r.dlq_url.as_str()));
    assert_eq!(backend.ledger.table(), r.table);
    // No HOOKGATE_ARCHIVE_BUCKET, no archive.
    assert!(backend.archive.is_none());
    // It reaches moto through AWS_ENDPOINT_URL.
    let id = EventId::parse("test:from-env").unwrap();
    assert_eq!(backend.ledger.get(&id).await.unwrap(), None);
    assert!(backend
        .queue
        .receive(1, std::time::Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn queues_may_be_named_instead_of_located() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto");
        return;
    };
    let r = hookgate_testkit::fresh_resources(&endpoint, 3, 30).await;
    let sdk = r.config.clone();
    let _env = ENV.lock().await;
    // As `cargo lambda deploy`'s metadata gives them: names.
    std::env::set_var("HOOKGATE_TABLE", &r.table);
    std::env::set_var("HOOKGATE_QUEUE_URL", &r.queue_name);
    std::env::set_var("HOOKGATE_DLQ_URL", format!("{}-dlq", r.queue_name));
    let backend = AwsBackend::from_env_with(&sdk).await.unwrap();
    assert_eq!(backend.queue.queue_url(), r.queue_url);
    assert_eq!(backend.queue.dlq_url(), Some(r.dlq_url.as_str()));

    std::env::set_var("HOOKGATE_QUEUE_URL", "no-such-queue");
    let err = AwsBackend::from_env_with(&sdk).await.unwrap_err();
    assert!(
        matches!(err, InitError::QueueNotFound(ref name, _) if name == "no-such-queue"),
        "{err}"
    );
}

#[tokio::test]
async fn the_archive_is_the_bucket_hookgate_archive_bucket_names() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto");
        return;
    };
    let r = hookgate_testkit::fresh_resources(&endpoint, 3, 30).await;
    let sdk = r.config.clone();
    let _env = ENV.lock().await;
    std::env::set_var("HOOKGATE_TABLE", &r.table);
    std::env::set_var("HOOKGATE_QUEUE_URL", &r.queue_url);
    std::env::remove_var("HOOKGATE_DLQ_URL");

    std::env::set_var("HOOKGATE_ARCHIVE_BUCKET", format!(" {} ", r.bucket));
    let backend = AwsBackend::from_env_with(&sdk).await.unwrap();
    let archive = backend.archive.expect("an archive");
    assert_eq!(archive.bucket(), r.bucket);
    // It reaches moto's S3 (path-style, as a custom endpoint needs).
    let id = EventId::parse("test:from-env-archive").unwrap();
    let envelope = hookgate_core::Envelope {
        event_id: id.clone(),
        source: hookgate_core::SourceName::parse("demo").unwrap(),
        event_type: "t".into(),
        received_at: hookgate_core::Timestamp::from_millis(1),
        headers: Default::default(),
        body: bytes::Bytes::from_static(b"{}"),
    };
    archive.put(&envelope).await.unwrap();
    assert_eq!(archive.get(&id).await.unwrap(), Some(envelope.clone()));

    // `{account}` and `{region}`, as `cargo lambda deploy`'s metadata names the bucket, with
    // the queue given by name: the account comes from the URL GetQueueUrl answers.
    let unique = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let expanded = format!("hookgate-env-{unique}-123456789012-us-east-1");
    hookgate_aws::create_archive_bucket(&r.s3(), &expanded, 7, false)
        .await
        .unwrap();
    std::env::set_var("HOOKGATE_QUEUE_URL", &r.queue_name);
    std::env::set_var(
        "HOOKGATE_ARCHIVE_BUCKET",
        format!("hookgate-env-{unique}-{{account}}-{{region}}"),
    );
    let backend = AwsBackend::from_env_with(&sdk).await.unwrap();
    let archive = backend.archive.expect("an archive");
    assert_eq!(archive.bucket(), expanded);
    archive.put(&envelope).await.unwrap();
    assert!(archive.exists(&id).await.unwrap());

    std::env::set_var("HOOKGATE_ARCHIVE_BUCKET", "Not_A_Bucket");
    let err = AwsBackend::from_env_with(&sdk).await.unwrap_err();
    assert!(
        matches!(err, InitError::Invalid("HOOKGATE_ARCHIVE_BUCKET", _)),
        "{err}"
    );
    assert!(err.to_string().contains("HOOKGATE_ARCHIVE_BUCKET"), "{err}");

    std::env::set_var("HOOKGATE_ARCHIVE_BUCKET", "");
    let backend = AwsBackend::from_env_with(&sdk).await.unwrap();
    assert!(backend.archive.is_none());
    std::env::remove_var("HOOKGATE_ARCHIVE_BUCKET");
}
