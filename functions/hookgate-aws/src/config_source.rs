//! Where the deployed functions read their configuration: AWS Secrets Manager.
//!
//! The configuration names every source's signing secrets, so on AWS it lives in one Secrets
//! Manager secret (`HOOKGATE_CONFIG_SECRET_ID`), never in the template or in plain environment
//! variables. It is read once, at cold start, and kept for the life of the execution
//! environment; rotating a provider secret is `put-secret-value` with both secrets listed, then
//! (after the provider switched) with the new one only — new execution environments pick it up.
//! Without that variable, `HOOKGATE_CONFIG` / `HOOKGATE_CONFIG_FILE` are used (local runs,
//! `sam local invoke`, `cargo lambda watch`).

use aws_config::SdkConfig;
use hookgate_core::{Config, ConfigError};

/// Environment variable naming the Secrets Manager secret (name or ARN) holding the TOML
/// configuration document.
pub const ENV_CONFIG_SECRET_ID: &str = "HOOKGATE_CONFIG_SECRET_ID";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigSourceError {
    /// Secrets Manager did not return the secret.
    #[error("cannot read the configuration secret {secret_id}: {message}")]
    Fetch {
        /// The secret asked for.
        secret_id: String,
        /// Why (the SDK's error, which never contains the secret's value).
        message: String,
    },
    /// The secret holds binary data, not a TOML document.
    #[error("the configuration secret {0} has no SecretString")]
    NotText(String),
    /// The document is not a valid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The configuration for a deployed function: from Secrets Manager when
/// `HOOKGATE_CONFIG_SECRET_ID` is set, else from `HOOKGATE_CONFIG` / `HOOKGATE_CONFIG_FILE`.
pub async fn load_config(sdk: &SdkConfig) -> Result<Config, ConfigSourceError> {
    match std::env::var(ENV_CONFIG_SECRET_ID) {
        Ok(secret_id) if !secret_id.is_empty() => load_from_secret(sdk, &secret_id).await,
        _ => Ok(Config::from_env()?),
    }
}

/// Reads and validates the configuration document stored in the secret `secret_id`.
pub async fn load_from_secret(
    sdk: &SdkConfig,
    secret_id: &str,
) -> Result<Config, ConfigSourceError> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    // A cold start is on the first request's clock: this read has a budget of its own.
    let (retry, timeouts) = crate::budget::config_read_timeouts();
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .customize()
        .config_override(
            aws_sdk_secretsmanager::config::Builder::default()
                .retry_config(retry)
                .timeout_config(timeouts),
        )
        .send()
        .await
        .map_err(|e| ConfigSourceError::Fetch {
            secret_id: secret_id.to_owned(),
            message: crate::error_text::one_line(&e),
        })?;
    let document = out
        .secret_string()
        .ok_or_else(|| ConfigSourceError::NotText(secret_id.to_owned()))?;
    Ok(Config::from_toml(document)?)
}
