//! API Gateway's `isBase64Encoded` bodies, checked before `lambda_http` decodes them.
//!
//! `lambda_http` turns the invocation into an `http::Request` by decoding a body marked
//! base64-encoded, and panics when it is not base64. API Gateway only marks bodies it encoded
//! itself, but the receiver does not take that on trust: such a body is emptied here and the
//! request answered `400 malformed_body`, so no input panics the function.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use lambda_http::request::LambdaRequest;
use lambda_http::LambdaEvent;

/// Whether the body reached the adapter intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    /// As sent (plain, or base64 that decodes).
    Readable,
    /// Marked base64-encoded but not valid base64 (emptied before conversion).
    NotBase64,
}

/// The event with an undecodable base64 body emptied, and what was found.
pub fn check(mut event: LambdaEvent<LambdaRequest>) -> (LambdaEvent<LambdaRequest>, BodyEncoding) {
    let (encoded, body) = match &mut event.payload {
        LambdaRequest::ApiGatewayV2(r) => (&mut r.is_base64_encoded, &mut r.body),
        LambdaRequest::ApiGatewayV1(r) => (&mut r.is_base64_encoded, &mut r.body),
        _ => return (event, BodyEncoding::Readable),
    };
    // The same decoder lambda_http uses (standard alphabet, padded).
    let unreadable = *encoded && body.as_deref().is_some_and(|b| B64.decode(b).is_err());
    if !unreadable {
        return (event, BodyEncoding::Readable);
    }
    *encoded = false;
    *body = None;
    (event, BodyEncoding::NotBase64)
}
