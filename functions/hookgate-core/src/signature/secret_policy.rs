//! The weakest signing secret each scheme accepts, checked when a source is built from the
//! configuration — so a one-byte key fails the start, naming the field, instead of signing
//! (or failing to protect) every request.
//!
//! | scheme | minimum | why |
//! |---|---|---|
//! | `standard`, `svix`, a `forward` secret | the base64 decodes to 24 bytes | the Standard Webhooks spec: 24–64 random bytes (`whsec_` + 32 base64 characters from Svix) |
//! | the same, ed25519 keys | `whpk_`: 32 bytes; `whsk_`: 32 (seed) or 64 (seed and its public key) | an ed25519 key has one size; the two private forms are what libraries export (see `signature/ed25519.rs`) |
//! | `stripe` | 16 bytes after the `whsec_` prefix | Stripe issues `whsec_` + 32 characters; the whole string is the key, its prefix is not secret |
//! | `github`, `shopify`, `slack`, `hmac-sha256` | 16 bytes | Slack issues 32 hex digits, Shopify a 32-hex-digit client secret (`shpss_…`); GitHub takes what you choose, and 16 bytes (128 bits) is the least an HMAC key should carry |
//!
//! **The `whsec_` prefix** of a Standard Webhooks secret is optional everywhere — on `standard`
//! and `svix` sources and on `forward` secrets alike — as in the official libraries, which strip
//! it when present: `whsec_MfKQ…` and `MfKQ…` are the same key.
//!
//! Scheme constructors themselves do not apply these minimums, so the published test vectors
//! (RFC 4231's key `"key"`, stripe-dotnet's `"webhook_secret"`) can still be checked against
//! them; everything built from a configuration goes through [`check`].

use super::ed25519::{self, KeyKind, PrivateKey, PublicKey};
use super::standard::decode_secret;
use super::SchemeError;
use crate::secret::Secret;

/// Fewest bytes of an HMAC secret used as is (`github`, `shopify`, `slack`, `hmac-sha256`, and
/// Stripe's after its prefix).
pub const MIN_HMAC_SECRET_BYTES: usize = 16;

/// Fewest bytes a Standard Webhooks secret decodes to.
pub const MIN_STANDARD_SECRET_BYTES: usize = 24;

/// Stripe's secret prefix: constant, so it adds nothing to the key's strength.
const STRIPE_PREFIX: &str = "whsec_";

/// Which minimum a scheme's secrets are held to (each scheme names its own in
/// [`super::SCHEMES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretRule {
    /// `whsec_<base64>` (the prefix optional) decoding to [`MIN_STANDARD_SECRET_BYTES`].
    StandardWebhooks,
    /// [`MIN_HMAC_SECRET_BYTES`] after Stripe's `whsec_` prefix.
    Stripe,
    /// [`MIN_HMAC_SECRET_BYTES`], the secret used as is.
    Hmac,
}

/// Refuses `secrets` of scheme `scheme` below `rule`'s minimum. The error names the secret by
/// its index, never by its value.
pub fn check(rule: SecretRule, scheme: &str, secrets: &[Secret]) -> Result<(), SchemeError> {
    for (index, secret) in secrets.iter().enumerate() {
        match rule {
            SecretRule::StandardWebhooks => check_standard(secret, &format!("secrets[{index}]"))?,
            SecretRule::Stripe => {
                let value = secret.expose();
                let random = value.strip_prefix(STRIPE_PREFIX).unwrap_or(value);
                if random.len() < MIN_HMAC_SECRET_BYTES {
                    return Err(SchemeError::Option(format!(
                        "secrets[{index}] is shorter than {MIN_HMAC_SECRET_BYTES} bytes after its \
                         whsec_ prefix, the minimum for scheme {scheme} (Stripe issues whsec_ and \
                         32 characters)"
                    )));
                }
            }
            SecretRule::Hmac => {
                if secret.expose().len() < MIN_HMAC_SECRET_BYTES {
                    return Err(SchemeError::Option(format!(
                        "secrets[{index}] is shorter than {MIN_HMAC_SECRET_BYTES} bytes, the \
                         minimum for scheme {scheme}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Refuses a Standard Webhooks secret (`whsec_<base64>` or bare base64) that is not base64 or
/// decodes to fewer than [`MIN_STANDARD_SECRET_BYTES`], and an ed25519 key (`whpk_`, `whsk_`)
/// that is not one; `field` names it in the error.
pub fn check_standard(secret: &Secret, field: &str) -> Result<(), SchemeError> {
    match ed25519::kind_of(secret.expose()) {
        KeyKind::Public => return PublicKey::decode(secret.expose(), field).map(drop),
        KeyKind::Private => return PrivateKey::decode(secret.expose(), field).map(drop),
        KeyKind::Secret => {}
    }
    let key = decode_secret(secret.expose(), field)?;
    if key.len() < MIN_STANDARD_SECRET_BYTES {
        return Err(SchemeError::Option(format!(
            "{field} decodes to fewer than {MIN_STANDARD_SECRET_BYTES} bytes, the Standard \
             Webhooks minimum (whsec_ followed by the base64 of 24-64 random bytes)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `secrets` checked against the rule scheme `scheme` names.
    fn check_scheme(scheme: &str, secrets: &[&str]) -> Result<(), SchemeError> {
        let kind = super::super::kind(scheme).unwrap();
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        check(kind.secret_rule, kind.name, &secrets)
    }

    /// 24 bytes, base64: the Standard Webhooks published test secret.
    const STANDARD_24: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn secrets_below_the_minimum_are_refused_naming_the_field() {
        let cases = [
            (
                "standard",
                vec![STANDARD_24, "whsec_YQ=="],
                "secrets[1] decodes to fewer than 24",
            ),
            // 23 bytes: one short.
            (
                "svix",
                vec!["whsec_MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM="],
                "secrets[0] decodes",
            ),
            (
                "svix",
                vec!["MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM="],
                "fewer than 24",
            ),
            (
                "standard",
                vec!["whsec_%%%"],
                "secrets[0] is not a Standard Webhooks secret",
            ),
            (
                "stripe",
                vec!["whsec_0123456789abcde"],
                "after its whsec_ prefix",
            ),
            (
                "stripe",
                vec!["webhook_secret"],
                "secrets[0] is shorter than 16",
            ),
            (
                "github",
                vec!["x"],
                "secrets[0] is shorter than 16 bytes, the minimum for scheme github",
            ),
            (
                "shopify",
                vec!["0123456789abcdef", "tiny-secret"],
                "secrets[1]",
            ),
            ("slack", vec!["0123456789abcde"], "scheme slack"),
            ("hmac-sha256", vec!["s3cr3t"], "scheme hmac-sha256"),
        ];
        for (scheme, secrets, want) in cases {
            let err = check_scheme(scheme, &secrets).unwrap_err().to_string();
            assert!(err.contains(want), "{scheme} {secrets:?}: {err}");
            for secret in &secrets {
                assert!(!err.contains(secret.trim_start_matches("whsec_")), "{err}");
            }
        }
    }

    #[test]
    fn secrets_as_providers_issue_them_pass() {
        let cases = [
            // The Standard Webhooks test secret, with and without its prefix.
            ("standard", STANDARD_24),
            ("svix", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            // 24 bytes exactly.
            ("standard", "whsec_MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0"),
            // A Stripe dashboard secret's shape, and the Stripe CLI's (64 hex digits).
            ("stripe", "whsec_9sYQlA3vUGeNVqu1gcDmkr4QLVdzmYt6"),
            (
                "stripe",
                "whsec_8b6f10a1b63bb1d5e0a6f9d10a1f5c9e2a6e1d3c5b7a9f0e2d4c6b8a0f1e3d5c",
            ),
            // GitHub's documentation secret; Slack's (32 hex digits); a Shopify client secret.
            ("github", "It's a Secret to Everybody"),
            ("slack", "8f742231b10e8888abcd99yyyzzz85a5"),
            ("shopify", "shpss_0123456789abcdef0123456789abcdef"),
            ("hmac-sha256", "0123456789abcdef"),
        ];
        for (scheme, secret) in cases {
            assert!(check_scheme(scheme, &[secret]).is_ok(), "{scheme} {secret}");
        }
    }
}
