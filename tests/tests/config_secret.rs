//! The functions' configuration read from AWS Secrets Manager (on moto): read once, validated,
//! and refused with a clear error when missing or invalid.

use hookgate_aws::config_source::{load_from_secret, ConfigSourceError};
use hookgate_core::SourceName;

async fn with_secret(value: Option<&str>) -> Option<(aws_config::SdkConfig, String)> {
    let endpoint = hookgate_testkit::moto_endpoint()?;
    let sdk = hookgate_testkit::moto_sdk_config(&endpoint).await;
    let name = format!("hookgate-config-{}", uuid::Uuid::new_v4());
    if let Some(value) = value {
        aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(&name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }
    Some((sdk, name))
}

#[tokio::test]
async fn configuration_comes_from_the_secret() {
    let doc = "[sources.github]\nscheme = \"github\"\nsecrets = [\"from-secrets-manager\"]\n";
    let Some((sdk, name)) = with_secret(Some(doc)).await else {
        eprintln!("skipped: no moto");
        return;
    };
    let config = load_from_secret(&sdk, &name).await.unwrap();
    let github = &config.sources[&SourceName::parse("github").unwrap()];
    assert_eq!(github.secrets[0].expose(), "from-secrets-manager");
}

#[tokio::test]
async fn a_missing_or_invalid_secret_fails_clearly_without_echoing_it() {
    let Some((sdk, missing)) = with_secret(None).await else {
        eprintln!("skipped: no moto");
        return;
    };
    let err = load_from_secret(&sdk, &missing).await.unwrap_err();
    assert!(matches!(err, ConfigSourceError::Fetch { .. }), "{err}");
    assert!(err.to_string().contains(&missing));

    let (sdk, invalid) = with_secret(Some(
        "[sources.x]\nscheme = \"nope\"\nsecrets = [\"hunter2\"]\n",
    ))
    .await
    .unwrap();
    let err = load_from_secret(&sdk, &invalid)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown signature scheme"), "{err}");
    assert!(!err.contains("hunter2"), "the secret is not echoed: {err}");
}
