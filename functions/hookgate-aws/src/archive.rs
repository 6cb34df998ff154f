//! `S3Archive`: the [`Archive`] port on an S3 bucket.
//!
//! It exists so an event's payload outlives its queue message on AWS, with what
//! `MemoryArchive` gives locally: each event's object is the bytes of
//! [`encode_object`] under [`key_for`] its id, read back through [`decode_object`] and
//! [`check_owner`] — the format and its checks live in `hookgate-core`, never here. One port
//! call is one S3 request: `PutObject`, `GetObject`, `HeadObject` or `DeleteObject`.
//!
//! - **Objects.** `Content-Type: application/vnd.hookgate.envelope` ([`CONTENT_TYPE`]) and the
//!   user metadata `x-amz-meta-sha256`: the body's SHA-256 (the payload's, as
//!   [`PayloadRef::sha256`], not the object's), so `aws s3api head-object` shows which payload
//!   an object holds without reading it.
//! - **Copies and passes.** A put sends the one buffer `encode_object` builds (the SDK's body
//!   is that buffer, shared, also across retries); a get collects the response into one
//!   `Bytes` and the decoded body is a slice of it. A put's payload is not signed
//!   (`UNSIGNED-PAYLOAD`): SigV4 would otherwise hash the whole object once more with SHA-256.
//!   Its integrity rests on TLS — the bucket policy refuses requests without it — on the
//!   CRC32 checksum the SDK sends and S3 checks, and on the SHA-256 in the object's head line,
//!   checked on every read.
//! - **Not found.** S3 answers `404 NoSuchKey` for a missing object only to a caller allowed
//!   `s3:ListBucket` on the bucket; to any other it answers `403 AccessDenied`, which this
//!   archive must report as [`ArchiveError::Unavailable`] (it cannot tell "missing" from "not
//!   allowed"). The functions' roles therefore hold `s3:ListBucket` (template.yaml).
//! - **Errors.** `get` of a missing object is `Ok(None)`, `exists` of one `false`, `delete` of
//!   one `Ok(())`. (`HeadObject` answers carry no body, so no error code: `exists` cannot tell
//!   a missing bucket from a missing object and answers `false` for both; `get` and `put` name
//!   the missing bucket.) Anything else S3 or the SDK answers — throttling (`503 SlowDown`), 5xx,
//!   timeouts, a refused request, a missing bucket — is `Unavailable`, its message the HTTP
//!   status, S3's error code and message, or the chain of the SDK's error messages
//!   ([`describe`]) — never the SDK's `Debug` dump, which `DisplayErrorContext` appends and
//!   which holds the whole raw response. An object that is not an archived envelope, or not
//!   this event's, is [`ArchiveError::Corrupt`]. Retries (throttling, 5xx, timeouts) are the
//!   SDK's, within `crate::budget`.
//! - **Addressing.** Virtual-hosted style on AWS (what S3 recommends); path style when the
//!   configuration names a custom endpoint (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`: moto,
//!   MinIO), where `<bucket>.127.0.0.1` would not resolve. See [`s3_config`].

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::primitives::ByteStream;
use hookgate_core::archive::{
    check_owner, decode_object, encode_object_and_ref, key_for, Archive, ArchiveError, PayloadRef,
};
use hookgate_core::envelope::{Envelope, EventId};

/// The `Content-Type` of an archived object.
pub const CONTENT_TYPE: &str = "application/vnd.hookgate.envelope";

/// The user metadata key holding the body's SHA-256 (sent as `x-amz-meta-sha256`).
pub const SHA256_METADATA: &str = "sha256";

/// Environment variable naming an endpoint for S3 alone (the SDK's own).
const ENV_S3_ENDPOINT: &str = "AWS_ENDPOINT_URL_S3";

/// The S3 client configuration hookgate uses on `config`: path-style addressing when a custom
/// endpoint is configured (for everything, or for S3 alone), virtual-hosted style otherwise.
pub fn s3_config(config: &SdkConfig) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::from(config).force_path_style(custom_endpoint(config).is_some())
}

/// The endpoint S3 requests on `config` go to instead of AWS's, if any: `AWS_ENDPOINT_URL_S3`,
/// else the configuration's (`AWS_ENDPOINT_URL`).
fn custom_endpoint(config: &SdkConfig) -> Option<String> {
    std::env::var(ENV_S3_ENDPOINT)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| config.endpoint_url().map(str::to_owned))
}

/// Whether S3 requests on `config` go to a plain-HTTP endpoint (a local stand-in such as
/// moto): there a bucket policy refusing requests without TLS would refuse every request.
pub fn plain_http_endpoint(config: &SdkConfig) -> bool {
    custom_endpoint(config).is_some_and(|e| e.trim().to_ascii_lowercase().starts_with("http://"))
}

/// A one-line account of an SDK error: for an answer from S3, its HTTP status, error code and
/// message (HEAD answers have no body: the status alone); otherwise the chain of error
/// messages (`dispatch failure: io error: …`, `request has timed out: …`).
pub fn describe<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let e = se.err();
            match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("HTTP {status} {code}: {message}"),
                (Some(code), None) => format!("HTTP {status} {code}"),
                (None, _) => format!("HTTP {status} without an error code"),
            }
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

/// An S3 client on `config`, addressed as [`s3_config`] says.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(s3_config(config).build())
}

/// The hookgate archive in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Archive {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Archive {
    /// The archive in `bucket`, through `client` (see [`s3_client`]).
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `Unavailable`, naming the operation, the object and what S3 or the SDK said.
    fn unavailable<E>(&self, op: &str, key: &str, err: SdkError<E, HttpResponse>) -> ArchiveError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        ArchiveError::Unavailable(format!(
            "S3 {op} s3://{}/{key}: {}",
            self.bucket,
            describe(&err)
        ))
    }
}

#[async_trait]
impl Archive for S3Archive {
    async fn put(&self, envelope: &Envelope) -> Result<PayloadRef, ArchiveError> {
        // One SHA-256 pass serves the object's head and the reference.
        let (object, reference) = encode_object_and_ref(envelope);
        let length = i64::try_from(object.len()).unwrap_or(i64::MAX);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&reference.key)
            .content_type(CONTENT_TYPE)
            .content_length(length)
            .metadata(SHA256_METADATA, &reference.sha256)
            .body(ByteStream::from(object))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| self.unavailable("PutObject", &reference.key, e))?;
        Ok(reference)
    }

    async fn get(&self, event_id: &EventId) -> Result<Option<Envelope>, ArchiveError> {
        let key = key_for(event_id);
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(SdkError::ServiceError(se)) if matches!(se.err(), GetObjectError::NoSuchKey(_)) => {
                return Ok(None)
            }
            Err(e) => return Err(self.unavailable("GetObject", &key, e)),
        };
        // One contiguous buffer; `decode_object` slices the body out of it.
        let object = out
            .body
            .collect()
            .await
            .map_err(|e| {
                ArchiveError::Unavailable(format!(
                    "S3 GetObject s3://{}/{key}: reading the body: {e}",
                    self.bucket
                ))
            })?
            .into_bytes();
        decode_object(object)
            .and_then(|envelope| check_owner(envelope, event_id))
            .map(Some)
    }

    async fn exists(&self, event_id: &EventId) -> Result<bool, ArchiveError> {
        let key = key_for(event_id);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(se)) if matches!(se.err(), HeadObjectError::NotFound(_)) => {
                Ok(false)
            }
            Err(e) => Err(self.unavailable("HeadObject", &key, e)),
        }
    }

    async fn delete(&self, event_id: &EventId) -> Result<(), ArchiveError> {
        let key = key_for(event_id);
        // S3 answers 204 whether or not the object was there.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.unavailable("DeleteObject", &key, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::{BehaviorVersion, Region};

    fn sdk(endpoint: Option<&str>) -> SdkConfig {
        let mut builder = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"));
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        builder.build()
    }

    #[test]
    fn path_style_only_with_a_custom_endpoint() {
        // The variable would turn path style on for both; this test needs it unset.
        if std::env::var_os(ENV_S3_ENDPOINT).is_some() {
            return;
        }
        assert_eq!(custom_endpoint(&sdk(None)), None);
        assert!(!plain_http_endpoint(&sdk(None)));
        let moto = sdk(Some("http://127.0.0.1:5123"));
        assert_eq!(
            custom_endpoint(&moto).as_deref(),
            Some("http://127.0.0.1:5123")
        );
        assert!(plain_http_endpoint(&moto));
        assert!(!plain_http_endpoint(&sdk(Some("https://s3.example.test"))));
    }

    #[test]
    fn errors_are_described_without_the_raw_response() {
        use aws_sdk_s3::error::ErrorMetadata;
        use aws_sdk_s3::operation::put_object::PutObjectError;
        use aws_sdk_s3::primitives::SdkBody;

        let answer = |status: u16| {
            let mut raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::from("<Error/>"));
            raw.headers_mut().insert("x-amz-request-id", "REQ123");
            raw
        };
        let coded = PutObjectError::generic(
            ErrorMetadata::builder()
                .code("SlowDown")
                .message("Please reduce your request rate.")
                .build(),
        );
        let text = describe(&SdkError::service_error(coded, answer(503)));
        assert_eq!(text, "HTTP 503 SlowDown: Please reduce your request rate.");
        let bare = PutObjectError::generic(ErrorMetadata::builder().build());
        let text = describe(&SdkError::service_error(bare, answer(403)));
        assert_eq!(text, "HTTP 403 without an error code");
        assert!(!text.contains("REQ123") && !text.contains("headers"));
        let timeout: SdkError<PutObjectError, HttpResponse> =
            SdkError::timeout_error("attempt took longer than 2s");
        assert_eq!(
            describe(&timeout),
            "request has timed out: attempt took longer than 2s"
        );
    }
}
