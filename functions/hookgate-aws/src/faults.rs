//! SDK-level fault injection (feature `fault-injection`, for tests): chosen calls answered
//! with an AWS error (throttling, `503`, `500`) or never answered, in place of the service —
//! or sent to the service, applied there, and their answer then lost (`AppliedThenLost`), as
//! on a connection dropped after the request went out.
//!
//! Why at this level: `hookgate_core::faults` fails a port call as a whole, which shows what
//! the cores do with an error; this shows what the *SDK* does first. The SDK's retry
//! classifiers, retry policy and timeouts (see [`crate::budget`]) and error mapping all run as
//! they would on AWS, against a real endpoint (moto) for the calls left alone.
//!
//! Two parts: an interceptor that picks the attempts to fail (by operation name, counting
//! every attempt) and marks their request; and an HTTP client that answers a marked request
//! itself — without sending it, as a throttled request is never executed — and sends every
//! other one with the SDK's default client.
//!
//! ```ignore
//! let faults = SdkFaults::new();
//! faults.fail_next("PutItem", 2, SdkFault::Throttling);   // two throttled answers
//! let dynamodb = faults.dynamodb_client(&sdk_config);
//! // … PutItem now takes three attempts: faults.attempts("PutItem") == 3
//! ```
//!
//! Operations are named as the SDK names them (`PutItem`, `UpdateItem`, `SendMessage`,
//! `PutObject`, …). An error answer is in the protocol of the service called: JSON for DynamoDB
//! and SQS, XML for S3 ([`SdkFaults::s3_client`]), so the SDK reads its code as it reads the
//! service's own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use aws_config::SdkConfig;
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse, Metadata};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;

/// An AWS error answer to put in place of the real one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SdkFault {
    /// `400 ThrottlingException`.
    Throttling,
    /// `400 ProvisionedThroughputExceededException` (DynamoDB).
    ProvisionedThroughputExceeded,
    /// `503 ServiceUnavailable`.
    ServiceUnavailable,
    /// `503 SlowDown`: S3's answer to too high a request rate.
    SlowDown,
    /// `500 InternalServerError`.
    InternalServerError,
    /// No answer at all: the attempt runs into its timeout.
    Stall,
    /// Sent to the service, which applies it; its answer is then lost (the connection drops:
    /// an I/O error), so the SDK retries a request that has already taken effect.
    AppliedThenLost,
}

/// The header marking a request the HTTP client must answer itself (never sent).
const MARK: &str = "x-hookgate-injected-fault";
/// The header marking a request to a service whose errors are XML (S3).
const MARK_XML: &str = "x-hookgate-injected-fault-xml";

const ALL: [SdkFault; 7] = [
    SdkFault::Throttling,
    SdkFault::ProvisionedThroughputExceeded,
    SdkFault::ServiceUnavailable,
    SdkFault::SlowDown,
    SdkFault::InternalServerError,
    SdkFault::Stall,
    SdkFault::AppliedThenLost,
];

impl SdkFault {
    /// The HTTP status and the error code of the answer.
    pub fn status_and_code(self) -> (u16, &'static str) {
        match self {
            SdkFault::Throttling => (400, "ThrottlingException"),
            SdkFault::ProvisionedThroughputExceeded => {
                (400, "ProvisionedThroughputExceededException")
            }
            SdkFault::ServiceUnavailable => (503, "ServiceUnavailable"),
            SdkFault::SlowDown => (503, "SlowDown"),
            SdkFault::InternalServerError => (500, "InternalServerError"),
            SdkFault::Stall => (0, "Stall"),
            SdkFault::AppliedThenLost => (0, "AppliedThenLost"),
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        ALL.into_iter().find(|f| f.status_and_code().1 == code)
    }

    /// The answer as the JSON protocols (DynamoDB's and SQS's) give it, or as S3's REST-XML
    /// protocol does (`xml`).
    fn response(self, xml: bool) -> HttpResponse {
        let (status, code) = self.status_and_code();
        let (body, content_type) = if xml {
            (
                format!(
                    r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>injected by hookgate's tests</Message><RequestId>hookgate-injected</RequestId></Error>"#
                ),
                "application/xml",
            )
        } else {
            (
                format!(r#"{{"__type":"{code}","message":"injected by hookgate's tests"}}"#),
                "application/x-amz-json-1.0",
            )
        };
        let status = StatusCode::try_from(status).unwrap_or_else(|_| {
            // Every status above is a valid one; 500 is the fallback should that change.
            StatusCode::try_from(500).expect("500 is a valid status")
        });
        let mut response = HttpResponse::new(status, SdkBody::from(body));
        response.headers_mut().insert("content-type", content_type);
        response.headers_mut().insert("x-amzn-errortype", code);
        response
            .headers_mut()
            .insert("x-amzn-query-error", format!("{code};Sender"));
        response
    }
}

#[derive(Debug, Clone, Copy)]
enum Times {
    /// Let this many attempts through first.
    Pass(u32),
    Next(u32),
    Always,
}

/// Which calls fail, and how many attempts each operation made.
#[derive(Debug, Default)]
pub struct SdkFaults {
    rules: Mutex<HashMap<String, Vec<(Times, SdkFault)>>>,
    attempts: Mutex<HashMap<String, u32>>,
    injected: Mutex<HashMap<String, u32>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SdkFaults {
    /// A plan with no faults.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Answers the next `times` attempts of `operation` with `fault`.
    pub fn fail_next(&self, operation: &str, times: u32, fault: SdkFault) {
        if times > 0 {
            lock(&self.rules)
                .entry(operation.to_owned())
                .or_default()
                .push((Times::Next(times), fault));
        }
    }

    /// Lets the next `skip` attempts of `operation` through, then answers the one after with
    /// `fault` (to reach, say, the second `UpdateItem` of a record: its attempt's end).
    pub fn fail_after(&self, operation: &str, skip: u32, fault: SdkFault) {
        let mut rules = lock(&self.rules);
        let list = rules.entry(operation.to_owned()).or_default();
        if skip > 0 {
            list.push((Times::Pass(skip), fault));
        }
        list.push((Times::Next(1), fault));
    }

    /// Answers every attempt of `operation` with `fault`, until cleared.
    pub fn fail_always(&self, operation: &str, fault: SdkFault) {
        lock(&self.rules)
            .entry(operation.to_owned())
            .or_default()
            .push((Times::Always, fault));
    }

    /// Lets `operation` through again.
    pub fn clear(&self, operation: &str) {
        lock(&self.rules).remove(operation);
    }

    /// Lets everything through again.
    pub fn clear_all(&self) {
        lock(&self.rules).clear();
    }

    /// Attempts (HTTP requests) `operation` made, retries included.
    pub fn attempts(&self, operation: &str) -> u32 {
        lock(&self.attempts).get(operation).copied().unwrap_or(0)
    }

    /// Answers to `operation` replaced by a fault.
    pub fn injected(&self, operation: &str) -> u32 {
        lock(&self.injected).get(operation).copied().unwrap_or(0)
    }

    /// Answers replaced by a fault, over every operation.
    pub fn injected_total(&self) -> u32 {
        lock(&self.injected).values().sum()
    }

    /// Forgets the counts (not the rules).
    pub fn reset_counts(&self) {
        lock(&self.attempts).clear();
        lock(&self.injected).clear();
    }

    /// The interceptor applying this plan, to add to a client's configuration.
    pub fn interceptor(self: &Arc<Self>) -> FaultInterceptor {
        FaultInterceptor {
            faults: self.clone(),
        }
    }

    /// A DynamoDB client on `config` with this plan.
    pub fn dynamodb_client(self: &Arc<Self>, config: &SdkConfig) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(config)
                .interceptor(self.interceptor())
                .http_client(FaultyHttpClient::over(config))
                .build(),
        )
    }

    /// An SQS client on `config` with this plan.
    pub fn sqs_client(self: &Arc<Self>, config: &SdkConfig) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(config)
                .interceptor(self.interceptor())
                .http_client(FaultyHttpClient::over(config))
                .build(),
        )
    }

    /// An S3 client on `config` with this plan, addressed as
    /// [`crate::archive::s3_client`]'s (path style on a custom endpoint such as moto).
    pub fn s3_client(self: &Arc<Self>, config: &SdkConfig) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            crate::archive::s3_config(config)
                .interceptor(self.interceptor())
                .http_client(FaultyHttpClient::over(config))
                .build(),
        )
    }

    /// The fault for this attempt of `operation`, if any (consuming a `fail_next`).
    fn take(&self, operation: &str) -> Option<SdkFault> {
        let mut rules = lock(&self.rules);
        let list = rules.get_mut(operation)?;
        let first = list.first_mut()?;
        let fault = first.1;
        match &mut first.0 {
            Times::Pass(n) => {
                if *n > 1 {
                    *n -= 1;
                } else {
                    list.remove(0);
                }
                return None;
            }
            Times::Next(n) if *n > 1 => *n -= 1,
            Times::Next(_) => {
                list.remove(0);
            }
            Times::Always => {}
        }
        drop(rules);
        *lock(&self.injected)
            .entry(operation.to_owned())
            .or_default() += 1;
        Some(fault)
    }
}

/// The interceptor: counts every attempt, and marks the requests of the ones the plan fails
/// (the clients of [`SdkFaults::dynamodb_client`], [`SdkFaults::sqs_client`] and
/// [`SdkFaults::s3_client`] answer those).
#[derive(Debug, Clone)]
pub struct FaultInterceptor {
    faults: Arc<SdkFaults>,
}

fn operation(cfg: &ConfigBag) -> Option<String> {
    cfg.load::<Metadata>().map(|m| m.name().to_owned())
}

/// Whether the service called answers errors in XML (S3's REST-XML protocol).
fn xml_errors(cfg: &ConfigBag) -> bool {
    cfg.load::<Metadata>()
        .is_some_and(|m| m.service().eq_ignore_ascii_case("s3"))
}

impl Intercept for FaultInterceptor {
    fn name(&self) -> &'static str {
        "hookgate-fault-injection"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(op) = operation(cfg) {
            *lock(&self.faults.attempts).entry(op).or_default() += 1;
        }
        Ok(())
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(fault) = operation(cfg).and_then(|op| self.faults.take(&op)) {
            let headers = context.request_mut().headers_mut();
            headers.insert(MARK, fault.status_and_code().1);
            if xml_errors(cfg) {
                headers.insert(MARK_XML, "1");
            }
        }
        Ok(())
    }
}

/// An HTTP client that answers marked requests with their fault, and sends the others with
/// the configuration's client (or the SDK's default HTTPS client).
#[derive(Debug, Clone)]
struct FaultyHttpClient {
    inner: SharedHttpClient,
}

impl FaultyHttpClient {
    fn over(config: &SdkConfig) -> SharedHttpClient {
        let inner = config.http_client().unwrap_or_else(|| {
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .build_https()
        });
        SharedHttpClient::new(FaultyHttpClient { inner })
    }
}

impl HttpClient for FaultyHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(FaultyConnector {
            inner: self.inner.http_connector(settings, components),
        })
    }
}

#[derive(Debug)]
struct FaultyConnector {
    inner: SharedHttpConnector,
}

impl HttpConnector for FaultyConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let xml = request.headers().get(MARK_XML).is_some();
        match request.headers().get(MARK).and_then(SdkFault::from_code) {
            None => self.inner.call(request),
            Some(SdkFault::Stall) => HttpConnectorFuture::new(std::future::pending()),
            Some(SdkFault::AppliedThenLost) => {
                let mut request = request;
                request.headers_mut().remove(MARK);
                request.headers_mut().remove(MARK_XML);
                let sent = self.inner.call(request);
                HttpConnectorFuture::new(async move {
                    // The service answers, and so has applied the request; the answer is lost.
                    let _lost = sent.await;
                    Err(ConnectorError::io(
                        "connection reset after the request was sent (injected: applied, answer lost)"
                            .into(),
                    ))
                })
            }
            Some(fault) => HttpConnectorFuture::ready(Ok(fault.response(xml))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_in_order_and_are_counted() {
        let f = SdkFaults::new();
        f.fail_next("PutItem", 2, SdkFault::Throttling);
        f.fail_always("PutItem", SdkFault::ServiceUnavailable);
        assert_eq!(f.take("PutItem"), Some(SdkFault::Throttling));
        assert_eq!(f.take("PutItem"), Some(SdkFault::Throttling));
        assert_eq!(f.take("PutItem"), Some(SdkFault::ServiceUnavailable));
        assert_eq!(f.take("PutItem"), Some(SdkFault::ServiceUnavailable));
        assert_eq!(f.take("SendMessage"), None);
        f.clear("PutItem");
        assert_eq!(f.take("PutItem"), None);
        assert_eq!((f.injected("PutItem"), f.injected_total()), (4, 4));
    }

    #[test]
    fn fail_after_lets_attempts_through_first() {
        let f = SdkFaults::new();
        f.fail_after("UpdateItem", 2, SdkFault::AppliedThenLost);
        assert_eq!(f.take("UpdateItem"), None);
        assert_eq!(f.take("UpdateItem"), None);
        assert_eq!(f.take("UpdateItem"), Some(SdkFault::AppliedThenLost));
        assert_eq!(f.take("UpdateItem"), None);
        assert_eq!(f.injected("UpdateItem"), 1);
        f.fail_after("PutItem", 0, SdkFault::Throttling);
        assert_eq!(f.take("PutItem"), Some(SdkFault::Throttling));
        assert_eq!(f.take("PutItem"), None);
    }

    #[test]
    fn answers_carry_the_status_and_code() {
        let r = SdkFault::Throttling.response(false);
        assert_eq!(r.status().as_u16(), 400);
        assert_eq!(
            r.headers().get("x-amzn-errortype"),
            Some("ThrottlingException")
        );
        let r = SdkFault::ServiceUnavailable.response(false);
        assert_eq!(r.status().as_u16(), 503);
        let body = std::str::from_utf8(r.body().bytes().unwrap_or_default()).unwrap_or("");
        assert!(body.contains(r#""__type":"ServiceUnavailable""#), "{body}");
        // S3's errors are XML.
        let r = SdkFault::SlowDown.response(true);
        assert_eq!(r.status().as_u16(), 503);
        assert_eq!(r.headers().get("content-type"), Some("application/xml"));
        let body = std::str::from_utf8(r.body().bytes().unwrap_or_default()).unwrap_or("");
        assert!(body.contains("<Code>SlowDown</Code>"), "{body}");
        for fault in ALL {
            assert_eq!(SdkFault::from_code(fault.status_and_code().1), Some(fault));
        }
        assert_eq!(SdkFault::from_code("Nope"), None);
    }
}
