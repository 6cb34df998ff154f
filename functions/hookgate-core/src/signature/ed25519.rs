//! Standard Webhooks' asymmetric keys: ed25519 signatures, written `v1a,<base64>`, over the
//! same `{id}.{timestamp}.{body}` as the `v1` HMAC. A provider signs with its private key and
//! publishes the public one, so a receiver holds nothing that could forge a request.
//!
//! Keys are written as the spec writes them:
//!
//! - `whpk_<base64>`: a public key, 32 bytes — what a source verifies with;
//! - `whsk_<base64>`: a private key — what a destination (or `hookgate sign`) signs with. It is
//!   accepted in both forms libraries hand out: the 32-byte seed (RFC 8032's private key; what
//!   Python's `cryptography`, Go's `ed25519.NewKeyFromSeed` and Svix's `whsk_` keys hold) or the
//!   64-byte seed followed by its public key (libsodium's `crypto_sign` secret key, Go's
//!   `ed25519.PrivateKey`, Node's and Java's raw exports of it). In the 64-byte form the public
//!   half must be the seed's: a key whose halves disagree is refused at load rather than signing
//!   with a key the destination does not hold.
//!
//! The base64 is the standard alphabet, padding optional, as for `whsec_` secrets. Errors name
//! the field (`secrets[1]`, `secret`) and never the key, public or private. The crypto is
//! aws-lc's, the library rustls already links.

use std::fmt;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _, ParsedPublicKey, ED25519};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use super::SchemeError;

/// The prefix of a Standard Webhooks public key.
pub(super) const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// The prefix of a Standard Webhooks private key.
pub(super) const PRIVATE_KEY_PREFIX: &str = "whsk_";

/// Length of an ed25519 signature.
pub(super) const SIGNATURE_LEN: usize = 64;

/// Length of an ed25519 public key, and of a seed.
const KEY_LEN: usize = 32;

/// Base64 for keys: the standard alphabet, with or without padding.
const KEY_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What a Standard Webhooks key string is, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    /// `whsec_…`, or no known prefix: an HMAC secret (`v1`).
    Secret,
    /// `whpk_…`: an ed25519 public key (verifies `v1a`).
    Public,
    /// `whsk_…`: an ed25519 private key (signs `v1a`, and verifies with its public half).
    Private,
}

/// The kind of `value`, by its prefix.
pub(super) fn kind_of(value: &str) -> KeyKind {
    if value.starts_with(PUBLIC_KEY_PREFIX) {
        KeyKind::Public
    } else if value.starts_with(PRIVATE_KEY_PREFIX) {
        KeyKind::Private
    } else {
        KeyKind::Secret
    }
}

/// An ed25519 public key (`whpk_`), parsed once. Never printed.
#[derive(Clone)]
pub(super) struct PublicKey(ParsedPublicKey);

impl PublicKey {
    /// Decodes `whpk_<base64 of 32 bytes>`; the error names `field`.
    pub(super) fn decode(value: &str, field: &str) -> Result<Self, SchemeError> {
        let refused = || {
            SchemeError::Option(format!(
                "{field}: a {PUBLIC_KEY_PREFIX} key must decode to {KEY_LEN} bytes (the base64 \
                 of an ed25519 public key)"
            ))
        };
        let encoded = value.strip_prefix(PUBLIC_KEY_PREFIX).ok_or_else(refused)?;
        let bytes = KEY_B64.decode(encoded).map_err(|_| refused())?;
        if bytes.len() != KEY_LEN {
            return Err(refused());
        }
        ParsedPublicKey::new(&ED25519, &bytes)
            .map(Self)
            .map_err(|_| refused())
    }

    /// Whether `signature` is this key's signature of `message`.
    pub(super) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.0.verify_sig(message, signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(***)")
    }
}

/// An ed25519 private key (`whsk_`). Never printed.
#[derive(Clone)]
pub(super) struct PrivateKey(Ed25519KeyPair);

impl PrivateKey {
    /// Decodes `whsk_<base64>` of a 32-byte seed or a 64-byte seed ‖ public key (whose public
    /// half must be the seed's); the error names `field`, never the key.
    pub(super) fn decode(value: &str, field: &str) -> Result<Self, SchemeError> {
        let refused = |why: &str| SchemeError::Option(format!("{field}: {why}"));
        let wrong_length = || {
            refused(&format!(
                "a {PRIVATE_KEY_PREFIX} key must decode to {KEY_LEN} bytes (an ed25519 seed) or \
                 {} (the seed followed by its public key)",
                2 * KEY_LEN
            ))
        };
        let encoded = value
            .strip_prefix(PRIVATE_KEY_PREFIX)
            .ok_or_else(wrong_length)?;
        let bytes = KEY_B64.decode(encoded).map_err(|_| wrong_length())?;
        let pair = match bytes.len() {
            KEY_LEN => Ed25519KeyPair::from_seed_unchecked(&bytes).map_err(|_| wrong_length())?,
            len if len == 2 * KEY_LEN => {
                let (seed, public) = bytes.split_at(KEY_LEN);
                Ed25519KeyPair::from_seed_and_public_key(seed, public).map_err(|_| {
                    refused(&format!(
                        "the last {KEY_LEN} bytes of this 64-byte {PRIVATE_KEY_PREFIX} key are \
                         not the public key of its first {KEY_LEN} (the seed): a corrupted or \
                         mismatched key"
                    ))
                })?
            }
            _ => return Err(wrong_length()),
        };
        Ok(Self(pair))
    }

    /// The signature of `message`.
    pub(super) fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).as_ref().to_vec()
    }

    /// The public half, for verification.
    pub(super) fn public_key(&self) -> PublicKey {
        // The key pair's own public key always parses.
        PublicKey(
            ParsedPublicKey::new(&ED25519, self.0.public_key().as_ref())
                .unwrap_or_else(|_| unreachable!("a key pair's public key parses")),
        )
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD as B64;

    use super::*;

    /// RFC 8032, section 7.1, TEST 2: secret key (seed), public key, message 0x72, signature.
    const SEED: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
    const PUBLIC: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    const SIGNATURE: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                             085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

    fn b64(h: &str) -> String {
        B64.encode(hex::decode(h).unwrap())
    }

    #[test]
    fn the_rfc_8032_vector_signs_and_verifies_in_both_key_forms() {
        let signature = hex::decode(SIGNATURE).unwrap();
        let seed_only = PrivateKey::decode(&format!("whsk_{}", b64(SEED)), "secret").unwrap();
        let with_public = format!("whsk_{}", b64(&format!("{SEED}{PUBLIC}")));
        let with_public = PrivateKey::decode(&with_public, "secret").unwrap();
        for key in [&seed_only, &with_public] {
            assert_eq!(key.sign(&[0x72]), signature);
            assert!(key.public_key().verifies(&[0x72], &signature));
        }
        let public = PublicKey::decode(&format!("whpk_{}", b64(PUBLIC)), "secrets[0]").unwrap();
        assert!(public.verifies(&[0x72], &signature));
        assert!(!public.verifies(&[0x73], &signature));
        let mut bad = signature.clone();
        bad[0] ^= 1;
        assert!(!public.verifies(&[0x72], &bad));
        assert!(!public.verifies(&[0x72], &signature[..63]));
    }

    #[test]
    fn padding_is_optional() {
        let unpadded = b64(PUBLIC).trim_end_matches('=').to_owned();
        assert!(PublicKey::decode(&format!("whpk_{unpadded}"), "f").is_ok());
    }

    #[test]
    fn malformed_keys_are_refused_naming_the_field_and_not_the_key() {
        let seed = b64(SEED);
        let other_public = b64(&"11".repeat(32));
        let cases = [
            ("whpk_", "secrets[1]: a whpk_ key must decode to 32 bytes"),
            (
                "whpk_%%%",
                "secrets[1]: a whpk_ key must decode to 32 bytes",
            ),
            (&*format!("whpk_{}", b64(&"ab".repeat(31))), "32 bytes"),
            (&*format!("whpk_{}", b64(&"ab".repeat(33))), "32 bytes"),
            ("whsk_", "secrets[1]: a whsk_ key must decode to 32 bytes"),
            ("whsk_!!", "or 64 (the seed followed by its public key)"),
            (&*format!("whsk_{}", b64(&"ab".repeat(48))), "32 bytes"),
            (
                &*format!(
                    "whsk_{}",
                    B64.encode(
                        [
                            B64.decode(&seed).unwrap(),
                            B64.decode(&other_public).unwrap()
                        ]
                        .concat()
                    )
                ),
                "secrets[1]: the last 32 bytes of this 64-byte whsk_ key are not the public key",
            ),
        ];
        for (value, want) in cases {
            let err = if value.starts_with("whpk_") {
                PublicKey::decode(value, "secrets[1]").unwrap_err()
            } else {
                PrivateKey::decode(value, "secrets[1]").unwrap_err()
            };
            let text = err.to_string();
            assert!(text.contains(want), "{value}: {text}");
            let encoded = &value[5..];
            assert!(encoded.len() < 4 || !text.contains(encoded), "{text}");
            assert!(!text.contains(&seed[..12]), "{text}");
        }
    }

    #[test]
    fn keys_never_print() {
        let private = PrivateKey::decode(&format!("whsk_{}", b64(SEED)), "secret").unwrap();
        assert_eq!(format!("{private:?}"), "PrivateKey(***)");
        assert_eq!(format!("{:?}", private.public_key()), "PublicKey(***)");
    }

    #[test]
    fn kinds_go_by_prefix() {
        assert_eq!(kind_of("whpk_x"), KeyKind::Public);
        assert_eq!(kind_of("whsk_x"), KeyKind::Private);
        assert_eq!(kind_of("whsec_x"), KeyKind::Secret);
        assert_eq!(kind_of("MfKQ9r8G"), KeyKind::Secret);
    }
}
