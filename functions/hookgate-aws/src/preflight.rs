//! Checks an operator command makes before it relies on AWS: a region, credentials, and a
//! queue whose redrive policy matches the configuration.
//!
//! Without a region or credentials the SDK only fails at the first request, with a long chain
//! of causes; `hookgate setup`, `serve --backend aws` and the `dlq` commands check both first
//! and say in one sentence what to set. (The Lambda functions skip this: Lambda always gives
//! them both.) `serve --backend aws` also reads the queue's `RedrivePolicy`: the processor marks
//! an event `dead_lettered` on the receive it counts as the last, so a queue that moves messages
//! to the DLQ after another number of receives would make the ledger say what did not happen.

use aws_config::SdkConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_sqs::config::ProvideCredentials;

use crate::error_text::one_line;
use crate::SqsQueue;

/// What `AWS_ENDPOINT_URL` is for, said wherever a missing setting is.
const LOCAL_HINT: &str = "for a local stand-in such as moto, also set \
                          AWS_ENDPOINT_URL=http://127.0.0.1:5000 (any credentials will do)";

/// Why an operator command cannot use AWS as set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    /// No region in the environment or the profile.
    #[error("no AWS region is set: set AWS_REGION (for example AWS_REGION=us-east-1) or a region in your AWS profile; {LOCAL_HINT}")]
    NoRegion,
    /// No credentials anywhere the default chain looks.
    #[error("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; {LOCAL_HINT}")]
    NoCredentials,
    /// A credential provider was found but failed (an expired SSO session, a bad profile).
    #[error("the AWS credentials could not be loaded: {0}")]
    Credentials(String),
    /// The queue has no redrive policy, so nothing would ever reach the DLQ.
    #[error("the queue {queue} has no RedrivePolicy: run `hookgate setup` (it sets one from the configuration's processor.max_receive_count)")]
    NoRedrivePolicy {
        /// The queue's URL.
        queue: String,
    },
    /// The queue moves messages to the DLQ after another number of receives than the
    /// configuration says.
    #[error("the queue {queue} moves messages to its DLQ after {queue_count} receives, but processor.max_receive_count is {configured}: make them equal (edit the configuration, or run `hookgate setup --config FILE` to set the queue's)")]
    MaxReceiveCountMismatch {
        /// The queue's URL.
        queue: String,
        /// Its `RedrivePolicy`'s `maxReceiveCount`.
        queue_count: u32,
        /// The configuration's `processor.max_receive_count`.
        configured: u32,
    },
    /// The queue's attributes could not be read.
    #[error("cannot read the queue's RedrivePolicy: {0}")]
    Queue(String),
}

/// The SDK configuration from the environment (see [`crate::sdk_config`]), once it is known to
/// have a region and credentials.
pub async fn checked_sdk_config() -> Result<SdkConfig, PreflightError> {
    let sdk = crate::sdk_config().await;
    check_region_and_credentials(&sdk).await?;
    Ok(sdk)
}

/// Whether `sdk` has a region and can load credentials (the region first: without one, no
/// credentials are looked for).
pub async fn check_region_and_credentials(sdk: &SdkConfig) -> Result<(), PreflightError> {
    if sdk.region().is_none() {
        return Err(PreflightError::NoRegion);
    }
    let Some(provider) = sdk.credentials_provider() else {
        return Err(PreflightError::NoCredentials);
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(CredentialsError::CredentialsNotLoaded(_)) => Err(PreflightError::NoCredentials),
        Err(e) => Err(PreflightError::Credentials(one_line(&e))),
    }
}

/// Whether `queue`'s `RedrivePolicy` moves a message to the DLQ after `configured` receives.
pub async fn check_max_receive_count(
    queue: &SqsQueue,
    configured: u32,
) -> Result<(), PreflightError> {
    match queue.max_receive_count().await {
        Err(e) => Err(PreflightError::Queue(e.to_string())),
        Ok(None) => Err(PreflightError::NoRedrivePolicy {
            queue: queue.queue_url().to_owned(),
        }),
        Ok(Some(queue_count)) if queue_count != configured => {
            Err(PreflightError::MaxReceiveCountMismatch {
                queue: queue.queue_url().to_owned(),
                queue_count,
                configured,
            })
        }
        Ok(Some(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use aws_config::{BehaviorVersion, Region};
    use aws_sdk_sqs::config::{Credentials, SharedCredentialsProvider};

    use super::*;

    /// A credential provider that fails as the default chain does when it finds nothing, or
    /// as a broken provider does.
    #[derive(Debug)]
    struct Failing(bool);

    impl ProvideCredentials for Failing {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let error = if self.0 {
                CredentialsError::not_loaded("no providers in chain provided credentials")
            } else {
                CredentialsError::provider_error("the SSO session has expired")
            };
            aws_credential_types::provider::future::ProvideCredentials::ready(Err(error))
        }
    }

    fn sdk(region: bool, credentials: Option<SharedCredentialsProvider>) -> SdkConfig {
        let mut builder = SdkConfig::builder().behavior_version(BehaviorVersion::latest());
        if region {
            builder = builder.region(Region::new("us-east-1"));
        }
        if let Some(credentials) = credentials {
            builder = builder.credentials_provider(credentials);
        }
        builder.build()
    }

    #[tokio::test]
    async fn region_and_credentials_are_checked_with_one_sentence_each() {
        let good = SharedCredentialsProvider::new(Credentials::new("a", "b", None, None, "t"));
        assert_eq!(
            check_region_and_credentials(&sdk(true, Some(good.clone()))).await,
            Ok(())
        );

        let e = check_region_and_credentials(&sdk(false, Some(good)))
            .await
            .unwrap_err();
        assert_eq!(e, PreflightError::NoRegion);
        let text = e.to_string();
        assert!(
            text.contains("AWS_REGION") && text.contains("AWS_ENDPOINT_URL"),
            "{text}"
        );

        for none in [None, Some(SharedCredentialsProvider::new(Failing(true)))] {
            let e = check_region_and_credentials(&sdk(true, none))
                .await
                .unwrap_err();
            assert_eq!(e, PreflightError::NoCredentials);
            let text = e.to_string();
            assert!(
                text.contains("AWS_ACCESS_KEY_ID") && text.contains("AWS_ENDPOINT_URL"),
                "{text}"
            );
        }
        let broken = SharedCredentialsProvider::new(Failing(false));
        let e = check_region_and_credentials(&sdk(true, Some(broken)))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("the SSO session has expired") && !e.to_string().contains('\n'),
            "{e}"
        );
    }
}
