//! The one list of signature schemes: each `scheme = "…"` name, the weakest secret it accepts,
//! and how it is built from the options every source takes ([`CommonOptions`]) and its own
//! (typed, parsed by serde, unknown ones refused for that scheme).
//!
//! The configuration hands each source's table here once, at load; the receiver and the
//! commands then use the built scheme as it is. Nothing here knows the configuration's shape.

use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::Deserialize;

use super::secret_policy::{self, SecretRule};
use super::{
    GitHub, HmacSha256, HmacSha256Options, SchemeError, Shopify, SignatureScheme, Slack,
    StandardWebhooks, Stripe,
};
use crate::secret::Secret;

/// The replay window of a source that does not set `tolerance_secs`: 300 s either side of now.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// What every scheme is built from, whatever its own options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonOptions {
    /// The signing secrets, in order: every one verifies (rotation), the first one signs.
    pub secrets: Vec<Secret>,
    /// The replay window, in seconds either side of now, of schemes that sign a timestamp.
    pub tolerance_secs: u64,
    /// How long the source's events deduplicate (its own window, else the receiver's): Shopify
    /// refuses a delivery triggered longer ago.
    pub dedup_window: Duration,
}

/// One scheme hookgate knows.
#[derive(Debug)]
pub struct SchemeKind {
    /// The name `scheme = "…"` takes.
    pub name: &'static str,
    /// The weakest secret a configuration may give it (see [`secret_policy`]).
    pub secret_rule: SecretRule,
    /// Builds the scheme from the common options and the scheme's own, still unparsed.
    build: Builder,
}

/// How a scheme is built: from the common options and its own, still unparsed.
type Builder = fn(&CommonOptions, toml::Table) -> Result<Arc<dyn SignatureScheme>, SchemeError>;

/// Every scheme, by the name `scheme = "…"` takes.
pub const SCHEMES: &[SchemeKind] = &[
    SchemeKind {
        name: "standard",
        secret_rule: SecretRule::StandardWebhooks,
        build: |common, options| {
            let NoOptions {} = options_of(options)?;
            Ok(Arc::new(StandardWebhooks::new(common, "webhook")?))
        },
    },
    SchemeKind {
        name: "svix",
        secret_rule: SecretRule::StandardWebhooks,
        build: |common, options| {
            let NoOptions {} = options_of(options)?;
            Ok(Arc::new(StandardWebhooks::new(common, "svix")?))
        },
    },
    SchemeKind {
        name: "stripe",
        secret_rule: SecretRule::Stripe,
        build: |common, options| {
            let NoOptions {} = options_of(options)?;
            Ok(Arc::new(Stripe::new(common)))
        },
    },
    SchemeKind {
        name: "github",
        secret_rule: SecretRule::Hmac,
        build: |common, options| {
            let NoOptions {} = options_of(options)?;
            Ok(Arc::new(GitHub::new(common)))
        },
    },
    SchemeKind {
        name: "shopify",
        secret_rule: SecretRule::Hmac,
        build: |common, options| {
            let NoOptions {} = options_of(options)?;
            Ok(Arc::new(Shopify::new(common)))
        },
    },
    SchemeKind {
        name: "slack",
        secret_rule: SecretRule::Hmac,
        build: |common, options| {
            let NoOptions {} = options_of(options)?;
            Ok(Arc::new(Slack::new(common)))
        },
    },
    SchemeKind {
        name: "hmac-sha256",
        secret_rule: SecretRule::Hmac,
        build: |common, options| {
            let options: HmacSha256Options = options_of(options)?;
            Ok(Arc::new(HmacSha256::new(common, &options)?))
        },
    },
];

/// The scheme called `name`, if there is one.
pub fn kind(name: &str) -> Option<&'static SchemeKind> {
    SCHEMES.iter().find(|kind| kind.name == name)
}

/// Every scheme name, in [`SCHEMES`] order.
pub fn names() -> impl Iterator<Item = &'static str> {
    SCHEMES.iter().map(|kind| kind.name)
}

/// Builds the scheme called `name` from a source's common options and the scheme's own
/// (`options`: every key of the source's table that is not a common one). Refuses an unknown
/// name, secrets below the scheme's minimum, an option the scheme does not take, and option
/// values it cannot use.
pub fn build(
    name: &str,
    common: &CommonOptions,
    options: toml::Table,
) -> Result<Arc<dyn SignatureScheme>, SchemeError> {
    let kind = kind(name).ok_or_else(|| SchemeError::Unknown(name.to_owned()))?;
    secret_policy::check(kind.secret_rule, kind.name, &common.secrets)?;
    (kind.build)(common, options)
}

/// A scheme's own options, parsed from what the source's table holds besides the common ones.
/// serde names an unknown option in its message; one of the wrong type is named here.
fn options_of<T: DeserializeOwned>(options: toml::Table) -> Result<T, SchemeError> {
    serde_path_to_error::deserialize(toml::Value::Table(options)).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.into_inner().message().to_owned();
        let named = path == "." || reason.contains(&format!("`{path}`"));
        SchemeError::OptionsRefused(if named {
            reason
        } else {
            format!("{path}: {reason}")
        })
    })
}

/// The options of a scheme that takes none of its own: any key is refused, named.
struct NoOptions {}

impl<'de> Deserialize<'de> for NoOptions {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Refuse;
        impl<'de> Visitor<'de> for Refuse {
            type Value = NoOptions;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("no options")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoOptions, A::Error> {
                match map.next_key::<String>()? {
                    Some(key) => Err(de::Error::custom(format_args!(
                        "unknown field `{key}`: this scheme takes no options of its own"
                    ))),
                    None => Ok(NoOptions {}),
                }
            }
        }
        deserializer.deserialize_map(Refuse)
    }
}

#[cfg(test)]
impl CommonOptions {
    /// `secrets` with the default tolerance and a 7-day dedup window.
    pub(crate) fn for_test(secrets: &[&str]) -> Self {
        Self::for_test_with(secrets, "")
    }

    /// [`CommonOptions::for_test`], with `tolerance_secs` and `dedup_window_secs` taken from
    /// `extra` (TOML) where it sets them.
    pub(crate) fn for_test_with(secrets: &[&str], extra: &str) -> Self {
        let extra: toml::Table = toml::from_str(extra).expect("test options");
        let number = |key: &str, default: u64| {
            extra
                .get(key)
                .and_then(toml::Value::as_integer)
                .map_or(default, |n| u64::try_from(n).expect("positive"))
        };
        Self {
            secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            tolerance_secs: number("tolerance_secs", DEFAULT_TOLERANCE_SECS),
            dedup_window: Duration::from_secs(number("dedup_window_secs", 7 * 86_400)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(secret: &str) -> CommonOptions {
        CommonOptions::for_test(&[secret])
    }

    fn table(doc: &str) -> toml::Table {
        toml::from_str(doc).unwrap()
    }

    /// A secret every scheme accepts: base64 of 24+ bytes, and 16+ bytes after `whsec_`.
    const ANY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn every_name_is_listed_once_and_builds_under_it() {
        let names: Vec<&str> = names().collect();
        for (i, name) in names.iter().enumerate() {
            assert!(!names[..i].contains(name), "{name} twice");
            let scheme = build(name, &common(ANY), toml::Table::new()).unwrap();
            assert_eq!(scheme.name(), *name);
        }
        let err = build("nope", &common(ANY), toml::Table::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown signature scheme \"nope\" (known: standard, svix, stripe, github, shopify, \
             slack, hmac-sha256)"
        );
    }

    #[test]
    fn an_option_the_scheme_does_not_take_is_refused_by_name() {
        for name in names().filter(|n| *n != "hmac-sha256") {
            let err = build(name, &common(ANY), table("prefix = ''"))
                .unwrap_err()
                .to_string();
            assert_eq!(
                err, "unknown field `prefix`: this scheme takes no options of its own",
                "{name}"
            );
        }
        let err = build("hmac-sha256", &common(ANY), table("secret = 'typo'"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("unknown field `secret`, expected one of `header`"),
            "{err}"
        );
        let err = build("hmac-sha256", &common(ANY), table("header = 5"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "header: invalid type: integer `5`, expected a string");
        let hub = build("hmac-sha256", &common(ANY), table("header = 'X-Hub'")).unwrap();
        assert!(hub.sign(b"{}", crate::clock::Timestamp::from_secs(0))[0].0 == "x-hub");
    }

    #[test]
    fn secrets_are_held_to_the_schemes_minimum_before_anything_else() {
        let err = build("github", &common("short"), table("prefix = ''"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("secrets[0] is shorter than 16 bytes"), "{err}");
    }
}
