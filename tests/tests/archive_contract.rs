//! The `Archive` contract: one suite, run against `MemoryArchive` and against `S3Archive` on
//! moto's S3, so the local stack and AWS cannot drift apart.
//!
//! Each test takes the archive and a way to overwrite the raw object stored under an event's
//! key ([`RawWriter`]): `MemoryArchive::overwrite_raw` in memory, a plain `PutObject` on S3 —
//! so damaged and foreign objects are read back through the archive's own checks.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use hookgate_core::archive::{encode_object, key_for, sha256_hex, Archive, ArchiveError};
use hookgate_core::clock::Timestamp;
use hookgate_core::envelope::{Envelope, EventId, SourceName};
use hookgate_core::memory::MemoryArchive;

/// Writes raw bytes as the object of an event, behind the archive's back.
#[async_trait]
trait RawWriter: Send + Sync {
    async fn overwrite_raw(&self, event_id: &EventId, object: Bytes);
}

struct MemoryRaw(Arc<MemoryArchive>);

#[async_trait]
impl RawWriter for MemoryRaw {
    async fn overwrite_raw(&self, event_id: &EventId, object: Bytes) {
        self.0.overwrite_raw(event_id, object);
    }
}

struct S3Raw {
    client: aws_sdk_s3::Client,
    bucket: String,
}

#[async_trait]
impl RawWriter for S3Raw {
    async fn overwrite_raw(&self, event_id: &EventId, object: Bytes) {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key_for(event_id))
            .body(object.into())
            .send()
            .await
            .expect("a raw PutObject on moto");
    }
}

type Rig = (Arc<dyn Archive>, Arc<dyn RawWriter>);

fn memory_rig() -> Rig {
    let archive = Arc::new(MemoryArchive::new());
    (archive.clone(), Arc::new(MemoryRaw(archive)))
}

async fn moto_rig() -> Option<Rig> {
    let endpoint = hookgate_testkit::moto_endpoint()?;
    let resources = hookgate_testkit::fresh_resources(&endpoint, 3, 30).await;
    let raw = S3Raw {
        client: resources.s3(),
        bucket: resources.bucket.clone(),
    };
    Some((Arc::new(resources.archive()), Arc::new(raw)))
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn new_id() -> EventId {
    EventId::parse(&format!("test:{}", uuid::Uuid::new_v4().simple())).unwrap()
}

fn envelope_with(id: &EventId, body: impl Into<Bytes>) -> Envelope {
    Envelope {
        event_id: id.clone(),
        source: SourceName::parse("github").unwrap(),
        event_type: "push".into(),
        received_at: Timestamp::from_millis(1_700_000_000_123),
        headers: BTreeMap::from([
            ("content-type".to_owned(), "application/json".to_owned()),
            ("x-github-event".to_owned(), "push".to_owned()),
            (
                "x-github-delivery".to_owned(),
                "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned(),
            ),
        ]),
        body: body.into(),
    }
}

/// Puts `envelope`, checks the reference, reads it back and compares everything.
async fn round_trip(archive: &dyn Archive, envelope: &Envelope) {
    let reference = archive.put(envelope).await.unwrap();
    assert_eq!(reference.key, key_for(&envelope.event_id));
    assert_eq!(reference.size, envelope.body.len() as u64);
    assert_eq!(reference.sha256, sha256_hex(&envelope.body));
    let got = archive
        .get(&envelope.event_id)
        .await
        .unwrap()
        .expect("the envelope just put");
    assert_eq!(got.body.len(), envelope.body.len());
    // Compared without printing megabytes on a failure.
    assert!(got.body == envelope.body, "the body differs");
    assert_eq!(got.event_id, envelope.event_id);
    assert_eq!(got.source, envelope.source);
    assert_eq!(got.event_type, envelope.event_type);
    assert_eq!(got.received_at, envelope.received_at);
    assert_eq!(got.headers, envelope.headers);
}

fn assert_corrupt(got: Result<Option<Envelope>, ArchiveError>, what: &str) {
    assert!(
        matches!(got, Err(ArchiveError::Corrupt(_))),
        "{what}: {:?}",
        got.map(|e| e.map(|e| e.event_id))
    );
}

// ---------------------------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------------------------

async fn text_round_trips((archive, _): Rig) {
    let id = new_id();
    round_trip(
        &*archive,
        &envelope_with(
            &id,
            &br#"{"ref":"refs/heads/main","note":"caf\xc3\xa9 \xe2\x9c\x93"}"#[..],
        ),
    )
    .await;
    // Newlines and carriage returns in the body do not confuse the object's head line.
    round_trip(
        &*archive,
        &envelope_with(&new_id(), &b"line one\nline two\r\n\n{\"v\":1}\n"[..]),
    )
    .await;
}

async fn binary_round_trips_byte_for_byte((archive, _): Rig) {
    // Every byte value, NULs, and sequences that are not UTF-8.
    let mut body: Vec<u8> = (0..=255u8).collect();
    body.extend_from_slice(&[
        0, 0, 0, 0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1,
    ]);
    body.extend((0..=255u8).rev());
    assert!(std::str::from_utf8(&body).is_err());
    round_trip(&*archive, &envelope_with(&new_id(), body)).await;
}

async fn tiny_and_empty_bodies_round_trip((archive, _): Rig) {
    for body in [&b""[..], b"\n", b"\0", b"x"] {
        round_trip(&*archive, &envelope_with(&new_id(), body)).await;
    }
}

async fn a_5_mb_body_round_trips((archive, _): Rig) {
    // Pseudo-random bytes (no compression or pattern could hide a dropped or shifted chunk).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let body: Vec<u8> = (0..5 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    round_trip(&*archive, &envelope_with(&new_id(), body)).await;
}

async fn headers_and_metadata_are_kept((archive, _): Rig) {
    let id = new_id();
    let mut envelope = envelope_with(&id, &b"{}"[..]);
    envelope.source = SourceName::parse("stripe").unwrap();
    envelope.event_type = "invoice.paid".into();
    envelope.received_at = Timestamp::from_millis(1_234_567_890_123);
    envelope.headers = BTreeMap::from([
        (
            "content-type".to_owned(),
            "application/json; charset=utf-8".to_owned(),
        ),
        ("stripe-signature".to_owned(), "t=1,v1=abc".to_owned()),
        ("x-unicode".to_owned(), "café ✓".to_owned()),
        ("x-empty".to_owned(), String::new()),
    ]);
    round_trip(&*archive, &envelope).await;
    // And none at all.
    envelope.event_id = new_id();
    envelope.headers.clear();
    round_trip(&*archive, &envelope).await;
}

async fn exists_before_and_after((archive, _): Rig) {
    let id = new_id();
    assert!(!archive.exists(&id).await.unwrap());
    assert_eq!(archive.get(&id).await.unwrap(), None);
    archive.put(&envelope_with(&id, &b"{}"[..])).await.unwrap();
    assert!(archive.exists(&id).await.unwrap());
    // Another id is still absent.
    assert!(!archive.exists(&new_id()).await.unwrap());
}

async fn a_second_put_replaces_the_first((archive, _): Rig) {
    let id = new_id();
    archive
        .put(&envelope_with(&id, &b"first"[..]))
        .await
        .unwrap();
    let second = envelope_with(&id, &b"second, longer"[..]);
    let reference = archive.put(&second).await.unwrap();
    assert_eq!(reference.size, 14);
    let got = archive.get(&id).await.unwrap().unwrap();
    assert_eq!(got.body, second.body);
    assert!(reference.matches(&got.body));
}

async fn delete_forgets_and_deleting_nothing_is_fine((archive, _): Rig) {
    let id = new_id();
    archive.put(&envelope_with(&id, &b"{}"[..])).await.unwrap();
    archive.delete(&id).await.unwrap();
    assert_eq!(archive.get(&id).await.unwrap(), None);
    assert!(!archive.exists(&id).await.unwrap());
    // Again, and an id never stored.
    archive.delete(&id).await.unwrap();
    archive.delete(&new_id()).await.unwrap();
}

async fn a_damaged_object_is_corrupt((archive, raw): Rig) {
    let id = new_id();
    let envelope = envelope_with(&id, &b"0123456789abcdef"[..]);
    archive.put(&envelope).await.unwrap();
    let object = encode_object(&envelope);

    // One bit of the body flipped: its SHA-256 no longer matches.
    let mut flipped = object.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    raw.overwrite_raw(&id, Bytes::from(flipped)).await;
    assert_corrupt(archive.get(&id).await, "flipped bit");

    // Not an archived envelope at all.
    raw.overwrite_raw(&id, Bytes::from_static(b"<html>not an envelope</html>"))
        .await;
    assert_corrupt(archive.get(&id).await, "foreign bytes");
    raw.overwrite_raw(&id, Bytes::new()).await;
    assert_corrupt(archive.get(&id).await, "empty object");

    // The object is there, even if unreadable.
    assert!(archive.exists(&id).await.unwrap());
}

async fn a_truncated_object_is_corrupt((archive, raw): Rig) {
    let id = new_id();
    let envelope = envelope_with(&id, vec![7u8; 4096]);
    let object = encode_object(&envelope);
    let head_line = object.iter().position(|b| *b == b'\n').unwrap();
    // Cut in the body, right after the head line, and in the head line itself.
    for cut in [
        object.len() - 1,
        object.len() / 2,
        head_line + 1,
        head_line / 2,
    ] {
        raw.overwrite_raw(&id, Bytes::copy_from_slice(&object[..cut]))
            .await;
        assert_corrupt(archive.get(&id).await, &format!("cut at {cut}"));
    }
}

async fn an_object_holding_another_event_is_corrupt((archive, raw): Rig) {
    let id = new_id();
    let other = envelope_with(&new_id(), &b"{\"other\":true}"[..]);
    // A well-formed object, but another event's, under this id's key.
    raw.overwrite_raw(&id, Bytes::from(encode_object(&other)))
        .await;
    assert_corrupt(archive.get(&id).await, "another event's object");
    // The other event's own key holds nothing.
    assert_eq!(archive.get(&other.event_id).await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// Both implementations
// ---------------------------------------------------------------------------------------------

macro_rules! archive_contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::memory_rig()).await;
                }
            )*
        }

        mod moto {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(rig) = super::moto_rig().await else {
                        eprintln!("skipped: no moto");
                        return;
                    };
                    super::$name(rig).await;
                }
            )*
        }
    };
}

archive_contract!(
    text_round_trips,
    binary_round_trips_byte_for_byte,
    tiny_and_empty_bodies_round_trip,
    a_5_mb_body_round_trips,
    headers_and_metadata_are_kept,
    exists_before_and_after,
    a_second_put_replaces_the_first,
    delete_forgets_and_deleting_nothing_is_fine,
    a_damaged_object_is_corrupt,
    a_truncated_object_is_corrupt,
    an_object_holding_another_event_is_corrupt,
);

// ---------------------------------------------------------------------------------------------
// S3 only: what the object looks like, and what a missing bucket is
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn s3_objects_are_the_encoded_envelope_with_its_type_and_sha256() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto");
        return;
    };
    let r = hookgate_testkit::fresh_resources(&endpoint, 3, 30).await;
    let archive = r.archive();
    let envelope = envelope_with(&new_id(), &b"\x00binary\xff"[..]);
    let reference = archive.put(&envelope).await.unwrap();

    let s3 = r.s3();
    let head = s3
        .head_object()
        .bucket(&r.bucket)
        .key(&reference.key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.content_type(),
        Some(hookgate_aws::archive::CONTENT_TYPE)
    );
    assert_eq!(
        head.metadata().and_then(|m| m.get("sha256")),
        Some(&reference.sha256)
    );
    let stored = s3
        .get_object()
        .bucket(&r.bucket)
        .key(&reference.key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(stored, Bytes::from(encode_object(&envelope)));
}

#[tokio::test]
async fn s3_a_missing_bucket_is_unavailable_not_an_empty_archive() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto");
        return;
    };
    let r = hookgate_testkit::fresh_resources(&endpoint, 3, 30).await;
    let archive =
        hookgate_aws::S3Archive::new(r.s3(), format!("{}-never-created", &r.bucket[..40]));
    let id = new_id();
    let got = archive.get(&id).await;
    assert!(matches!(got, Err(ArchiveError::Unavailable(_))), "{got:?}");
    let message = got.unwrap_err().to_string();
    assert!(message.contains("GetObject"), "{message}");
    assert!(message.contains("NoSuchBucket"), "{message}");
    // A HEAD answer has no body, so no error code: S3's 404 for a missing bucket reads as
    // a missing object (documented on `S3Archive`). `get` and `put` tell them apart.
    assert!(!archive.exists(&id).await.unwrap());
    let put = archive.put(&envelope_with(&id, &b"{}"[..])).await;
    assert!(matches!(put, Err(ArchiveError::Unavailable(_))), "{put:?}");
}

#[tokio::test]
async fn s3_puts_are_path_style_checksummed_and_not_hashed_again_for_signing() {
    // A listener on 127.0.0.1 reads the request head of one PutObject and answers 200: what the
    // SDK sends, without moto.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 8192];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the connection closed before the request head ended");
            head.extend_from_slice(&buf[..n]);
        }
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&head).to_ascii_lowercase()
    });
    let config = hookgate_testkit::moto_sdk_config(&endpoint).await;
    let archive =
        hookgate_aws::S3Archive::new(hookgate_aws::archive::s3_client(&config), "b-capture");
    let envelope = envelope_with(&new_id(), vec![b'x'; 300_000]);
    let reference = archive.put(&envelope).await.unwrap();
    let head = server.await.unwrap();

    // Path style on a custom endpoint: the bucket in the path, not in the host name.
    let request_line = format!("put /b-capture/{}", reference.key.replace(':', "%3a"));
    assert!(head.starts_with(&request_line), "{head}");
    assert!(
        head.contains("content-type: application/vnd.hookgate.envelope\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("x-amz-meta-sha256: {}\r\n", reference.sha256)),
        "{head}"
    );
    // No second SHA-256 pass over the object for SigV4; S3 checks a CRC32 instead.
    assert!(
        head.contains("x-amz-content-sha256: unsigned-payload\r\n"),
        "{head}"
    );
    assert!(head.contains("x-amz-checksum-crc32: "), "{head}");
}
