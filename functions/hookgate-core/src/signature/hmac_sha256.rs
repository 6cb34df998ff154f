//! `hmac-sha256`: the generic scheme — an HMAC-SHA256 of the raw body in one header.
//!
//! Default wire form: `X-Signature: sha256=<hex>`. Header name, prefix and encoding (hex or
//! base64) are configurable, for providers that sign this way under other names.
//!
//! Dedup key: the body is the only signed content, so the event id is derived from it
//! ([`EventId::derive`] over the body). The same body sent twice is the same event.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{header_str, SchemeError, SignatureError, SignatureScheme, SignedRequest, Verified};
use crate::clock::Timestamp;
use crate::config::{Secret, SourceConfig};
use crate::envelope::{EventId, SourceName};

type HmacSha256Mac = Hmac<Sha256>;

/// How the MAC is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lower- or upper-case hex.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// The generic HMAC-SHA256 scheme.
#[derive(Debug, Clone)]
pub struct HmacSha256 {
    secrets: Vec<Secret>,
    header: String,
    prefix: String,
    encoding: Encoding,
    type_header: String,
}

impl HmacSha256 {
    /// The scheme as a source's configuration describes it.
    pub fn from_config(config: &SourceConfig) -> Result<Self, SchemeError> {
        let encoding = match config.encoding.as_deref() {
            None | Some("hex") => Encoding::Hex,
            Some("base64") => Encoding::Base64,
            Some(other) => {
                return Err(SchemeError::Option(format!(
                    "encoding must be \"hex\" or \"base64\", not {other:?}"
                )))
            }
        };
        let header = config
            .header
            .as_deref()
            .unwrap_or("x-signature")
            .to_ascii_lowercase();
        let type_header = config
            .type_header
            .as_deref()
            .unwrap_or("x-event-type")
            .to_ascii_lowercase();
        for h in [&header, &type_header] {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(SchemeError::Option(format!("{h:?} is not a header name")));
            }
        }
        Ok(Self {
            secrets: config.secrets.clone(),
            header,
            prefix: config.prefix.clone().unwrap_or_else(|| "sha256=".into()),
            encoding,
            type_header,
        })
    }

    fn mac(secret: &Secret, body: &[u8]) -> HmacSha256Mac {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <HmacSha256Mac as KeyInit>::new_from_slice(secret.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(body);
        mac
    }

    fn event_type(&self, request: &SignedRequest<'_>) -> String {
        if let Some(t) = request
            .headers
            .get(&self.type_header)
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty() && t.len() <= 200)
        {
            return t.to_owned();
        }
        #[derive(serde::Deserialize)]
        struct Typed {
            #[serde(rename = "type")]
            event_type: String,
        }
        match serde_json::from_slice::<Typed>(request.body) {
            Ok(t) if !t.event_type.is_empty() && t.event_type.len() <= 200 => t.event_type,
            _ => "unknown".to_owned(),
        }
    }
}

impl SignatureScheme for HmacSha256 {
    fn name(&self) -> &'static str {
        "hmac-sha256"
    }

    fn verify(
        &self,
        source: &SourceName,
        request: &SignedRequest<'_>,
        _now: Timestamp,
    ) -> Result<Verified, SignatureError> {
        let value = header_str(request.headers, &self.header)?;
        let malformed = || SignatureError::Malformed(self.header.clone());
        let encoded = value
            .trim()
            .strip_prefix(&self.prefix)
            .ok_or_else(malformed)?;
        let given = match self.encoding {
            Encoding::Hex => hex::decode(encoded).map_err(|_| malformed())?,
            Encoding::Base64 => B64.decode(encoded).map_err(|_| malformed())?,
        };
        if given.len() != 32 {
            return Err(malformed());
        }
        let matched = self
            .secrets
            .iter()
            .any(|secret| Self::mac(secret, request.body).verify_slice(&given).is_ok());
        if !matched {
            return Err(SignatureError::Mismatch);
        }
        Ok(Verified {
            event_id: EventId::derive(source, &[request.body]),
            event_type: self.event_type(request),
        })
    }

    fn sign(&self, body: &[u8], _now: Timestamp) -> Vec<(String, String)> {
        let Some(secret) = self.secrets.first() else {
            return Vec::new();
        };
        let tag = Self::mac(secret, body).finalize().into_bytes();
        let encoded = match self.encoding {
            Encoding::Hex => hex::encode(tag),
            Encoding::Base64 => B64.encode(tag),
        };
        vec![(self.header.clone(), format!("{}{}", self.prefix, encoded))]
    }

    fn kept_headers(&self) -> &[String] {
        std::slice::from_ref(&self.type_header)
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    fn scheme(extra: &str) -> HmacSha256 {
        let doc = format!("scheme='hmac-sha256'\nsecrets=['key', 'old-key']\n{extra}");
        HmacSha256::from_config(&toml::from_str(&doc).unwrap()).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const FOX: &[u8] = b"The quick brown fox jumps over the lazy dog";
    // RFC 4231-style published vector: HMAC-SHA256(key = "key", FOX).
    const FOX_HEX: &str = "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8";

    fn verify(s: &HmacSha256, h: &HeaderMap, body: &[u8]) -> Result<Verified, SignatureError> {
        let source = SourceName::parse("demo").unwrap();
        s.verify(
            &source,
            &SignedRequest { headers: h, body },
            Timestamp::from_secs(0),
        )
    }

    #[test]
    fn accepts_the_published_vector() {
        let h = headers(&[("x-signature", &format!("sha256={FOX_HEX}"))]);
        let v = verify(&scheme(""), &h, FOX).unwrap();
        assert_eq!(v.event_type, "unknown");
        assert!(v.event_id.as_str().starts_with("demo:"));
        assert_eq!(
            scheme("").sign(FOX, Timestamp::from_secs(0)),
            vec![("x-signature".into(), format!("sha256={FOX_HEX}"))]
        );
    }

    #[test]
    fn any_configured_secret_verifies() {
        let old = scheme("");
        let mut rotated = old.clone();
        rotated.secrets.reverse();
        let signed = rotated.sign(b"{}", Timestamp::from_secs(0));
        let h = headers(&[(&signed[0].0, &signed[0].1)]);
        assert!(verify(&old, &h, b"{}").is_ok());
    }

    #[test]
    fn rejections_have_distinct_reasons() {
        let s = scheme("");
        let good = format!("sha256={FOX_HEX}");
        let cases: Vec<(HeaderMap, &[u8], &str)> = vec![
            (headers(&[]), FOX, "signature_missing"),
            (
                headers(&[("x-signature", FOX_HEX)]),
                FOX,
                "signature_malformed",
            ),
            (
                headers(&[("x-signature", "sha256=zz")]),
                FOX,
                "signature_malformed",
            ),
            (
                headers(&[("x-signature", "sha256=abcd")]),
                FOX,
                "signature_malformed",
            ),
            (
                headers(&[("x-signature", &format!("sha1={FOX_HEX}"))]),
                FOX,
                "signature_malformed",
            ),
            (
                headers(&[("x-signature", &"a".repeat(5000))]),
                FOX,
                "signature_malformed",
            ),
            (
                headers(&[("x-signature", &good)]),
                b"The quick brown fox jumps over the lazy cog",
                "signature_mismatch",
            ),
            (
                headers(&[("x-signature", &good.replace('f', "e"))]),
                FOX,
                "signature_mismatch",
            ),
        ];
        for (h, body, code) in cases {
            assert_eq!(verify(&s, &h, body).unwrap_err().code(), code, "{h:?}");
        }
    }

    #[test]
    fn configurable_header_prefix_and_encoding() {
        let s = scheme("header='X-Hub-Sig'\nprefix=''\nencoding='base64'\ntype_header='X-Kind'");
        let signed = s.sign(FOX, Timestamp::from_secs(0));
        assert_eq!(signed[0].0, "x-hub-sig");
        assert_eq!(signed[0].1, "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg=");
        let h = headers(&[("x-hub-sig", &signed[0].1), ("x-kind", "order.paid")]);
        assert_eq!(verify(&s, &h, FOX).unwrap().event_type, "order.paid");
    }

    #[test]
    fn type_falls_back_to_the_json_body() {
        let s = scheme("");
        let body = br#"{"type":"invoice.paid","id":1}"#;
        let signed = s.sign(body, Timestamp::from_secs(0));
        let h = headers(&[(&signed[0].0, &signed[0].1)]);
        assert_eq!(verify(&s, &h, body).unwrap().event_type, "invoice.paid");
    }
}
