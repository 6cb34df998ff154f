//! Faults below the `Archive` port, on moto's S3: `hookgate_aws::faults` answers chosen S3
//! calls (`PutObject`, `GetObject`, `HeadObject`) with S3's own errors — `503 SlowDown`, `503`,
//! `500`, throttling, in S3's XML — or drops their answer, before the SDK reads it, so the
//! SDK's retry policy (hookgate's budget, `hookgate_aws::budget`) runs for real; the calls left
//! alone reach moto.
//!
//! Every assertion is on what happened (attempts made, errors given, objects stored), never on
//! how long it took.

use std::sync::Arc;

use bytes::Bytes;
use hookgate_aws::budget::MAX_ATTEMPTS;
use hookgate_aws::faults::{SdkFault, SdkFaults};
use hookgate_aws::S3Archive;
use hookgate_core::archive::{Archive, ArchiveError};
use hookgate_core::{Envelope, EventId, SourceName, Timestamp};
use hookgate_testkit::{budgeted_sdk_config, fresh_resources, moto_endpoint, MotoResources};

struct Rig {
    faults: Arc<SdkFaults>,
    /// The archive through the faulty client.
    archive: S3Archive,
    /// The same bucket through a plain client, to see what was stored.
    plain: S3Archive,
}

async fn rig() -> Option<Rig> {
    let endpoint = moto_endpoint()?;
    let resources: MotoResources = fresh_resources(&endpoint, 3, 30).await;
    let sdk = budgeted_sdk_config(&endpoint).await;
    let faults = SdkFaults::new();
    Some(Rig {
        archive: S3Archive::new(faults.s3_client(&sdk), &resources.bucket),
        plain: resources.archive(),
        faults,
    })
}

fn envelope(body: impl Into<Bytes>) -> Envelope {
    Envelope {
        event_id: EventId::parse(&format!("test:{}", uuid::Uuid::new_v4().simple())).unwrap(),
        source: SourceName::parse("github").unwrap(),
        event_type: "push".into(),
        received_at: Timestamp::from_millis(1_700_000_000_000),
        headers: [("content-type".to_owned(), "application/json".to_owned())].into(),
        body: body.into(),
    }
}

#[tokio::test]
async fn a_throttled_or_failing_put_is_retried_by_the_sdk_within_the_budget() {
    let Some(rig) = rig().await else {
        eprintln!("skipped: no moto");
        return;
    };
    for fault in [
        SdkFault::SlowDown,
        SdkFault::Throttling,
        SdkFault::ServiceUnavailable,
        SdkFault::InternalServerError,
    ] {
        rig.faults.reset_counts();
        // A 5 MB body: the SDK sends the same buffer again on each retry.
        let e = envelope(vec![b'x'; 5 * 1024 * 1024]);
        rig.faults.fail_next("PutObject", MAX_ATTEMPTS - 1, fault);
        let reference = rig.archive.put(&e).await;
        assert!(reference.is_ok(), "{fault:?}: {reference:?}");
        assert_eq!(rig.faults.attempts("PutObject"), MAX_ATTEMPTS, "{fault:?}");
        assert_eq!(rig.faults.injected("PutObject"), MAX_ATTEMPTS - 1);
        let stored = rig.plain.get(&e.event_id).await.unwrap().unwrap();
        assert!(stored.body == e.body, "{fault:?}: the body differs");
    }
}

#[tokio::test]
async fn a_put_failing_every_attempt_is_unavailable_and_stores_nothing() {
    let Some(rig) = rig().await else {
        eprintln!("skipped: no moto");
        return;
    };
    for fault in [SdkFault::SlowDown, SdkFault::InternalServerError] {
        rig.faults.reset_counts();
        rig.faults.fail_always("PutObject", fault);
        let e = envelope(&b"{\"n\":1}"[..]);
        let got = rig.archive.put(&e).await;
        let (status, code) = fault.status_and_code();
        match &got {
            Err(ArchiveError::Unavailable(message)) => {
                assert!(
                    message.contains(&format!("HTTP {status} {code}")),
                    "{message}"
                );
                assert!(message.contains("PutObject"), "{message}");
                // No dump of the raw response.
                assert!(!message.contains("headers"), "{message}");
            }
            other => panic!("{fault:?}: {other:?}"),
        }
        assert_eq!(rig.faults.attempts("PutObject"), MAX_ATTEMPTS, "{fault:?}");
        rig.faults.clear("PutObject");
        assert_eq!(rig.plain.get(&e.event_id).await.unwrap(), None);
    }
}

#[tokio::test]
async fn reads_are_retried_and_a_read_that_keeps_failing_is_never_taken_for_missing() {
    let Some(rig) = rig().await else {
        eprintln!("skipped: no moto");
        return;
    };
    let e = envelope(&b"{\"n\":2}"[..]);
    rig.plain.put(&e).await.unwrap();

    rig.faults.fail_next("GetObject", 1, SdkFault::SlowDown);
    assert_eq!(rig.archive.get(&e.event_id).await.unwrap(), Some(e.clone()));
    assert_eq!(rig.faults.attempts("GetObject"), 2);
    rig.faults
        .fail_next("HeadObject", 1, SdkFault::ServiceUnavailable);
    assert!(rig.archive.exists(&e.event_id).await.unwrap());
    assert_eq!(rig.faults.attempts("HeadObject"), 2);

    // Every attempt failing: an error, not "no such payload" — for an object that is there
    // and for one that is not.
    rig.faults
        .fail_always("GetObject", SdkFault::InternalServerError);
    rig.faults
        .fail_always("HeadObject", SdkFault::ServiceUnavailable);
    for id in [e.event_id.clone(), envelope(Bytes::new()).event_id] {
        let got = rig.archive.get(&id).await;
        assert!(matches!(got, Err(ArchiveError::Unavailable(_))), "{got:?}");
        let got = rig.archive.exists(&id).await;
        assert!(matches!(got, Err(ArchiveError::Unavailable(_))), "{got:?}");
    }
}

#[tokio::test]
async fn a_put_applied_with_its_answer_lost_is_sent_again_harmlessly() {
    let Some(rig) = rig().await else {
        eprintln!("skipped: no moto");
        return;
    };
    let e = envelope(&b"{\"n\":3}"[..]);
    rig.faults
        .fail_next("PutObject", 1, SdkFault::AppliedThenLost);
    let reference = rig.archive.put(&e).await.unwrap();
    assert_eq!(rig.faults.attempts("PutObject"), 2);
    let stored = rig.plain.get(&e.event_id).await.unwrap().unwrap();
    assert_eq!(stored, e);
    assert!(reference.matches(&stored.body));
}

#[tokio::test]
async fn a_stalled_put_times_out_into_unavailable() {
    let Some(rig) = rig().await else {
        eprintln!("skipped: no moto");
        return;
    };
    rig.faults.fail_always("PutObject", SdkFault::Stall);
    let got = rig.archive.put(&envelope(&b"{}"[..])).await;
    assert!(
        matches!(got, Err(ArchiveError::Unavailable(ref m)) if m.contains("timed out")),
        "{got:?}"
    );
    assert_eq!(rig.faults.attempts("PutObject"), MAX_ATTEMPTS);
}
