//! Your handlers: the routes from `(source, event type)` to your code.
//!
//! This crate is yours to edit. The processor Lambda (`functions/processor`) and the local
//! stack (`hookgate serve`) both run exactly what [`handlers`] returns, so what you see working
//! locally is what you deploy. Two example routes are below — a typed Stripe charge and a
//! GitHub push — that only log; replace them with your own.
//!
//! Events no route matches go to the built-in log handler (which logs and succeeds). Sources
//! with a `[sources.NAME.forward]` table are delivered to their destination unless a route here
//! matches them first. In a handler, `?` on any error retries the event with backoff;
//! `HandlerError::permanent` (or `.permanent()`) sends it to the DLQ at once;
//! `HandlerError::retry_after` (or `.retry_after(d)`) waits at least that long. See the
//! README's Handlers guide.

use std::sync::Arc;
use std::time::Duration;

use hookgate_core::handler::{Context, HandlerError, Handlers};
use serde::Deserialize;
use tracing::info;

/// The handlers this deployment runs.
pub fn handlers() -> Handlers {
    Handlers::with_state(App::default())
        .on_json("stripe", "charge.succeeded", charge_succeeded)
        .timeout(Duration::from_secs(10))
        .into_handlers()
        .on_json("github", "push", push)
}

/// What your handlers share (clients, pools, configuration): built once per container.
#[derive(Debug, Default)]
pub struct App {
    /// Where pushes deploy from.
    pub deploy_branch: Option<String>,
}

/// A Stripe event whose `data.object` is a `T`.
#[derive(Debug, Deserialize)]
pub struct StripeEvent<T> {
    /// `evt_…`: Stripe's own id (hookgate's event id is `<source>:evt_…`).
    pub id: String,
    /// The event's data.
    pub data: StripeData<T>,
}

/// `data` of a Stripe event.
#[derive(Debug, Deserialize)]
pub struct StripeData<T> {
    /// The object the event is about.
    pub object: T,
}

/// The fields of a Stripe charge this example uses.
#[derive(Debug, Deserialize)]
pub struct Charge {
    /// `ch_…`.
    pub id: String,
    /// In the currency's smallest unit.
    pub amount: u64,
    /// ISO code, lower case.
    pub currency: String,
    /// `cus_…`, if any.
    #[serde(default)]
    pub customer: Option<String>,
}

/// A Stripe `charge.succeeded`, typed.
async fn charge_succeeded(
    _app: Arc<App>,
    event: StripeEvent<Charge>,
    cx: Context,
) -> Result<(), HandlerError> {
    let charge = event.data.object;
    if charge.amount == 0 {
        // Nothing to do for a zero charge, and retrying will not change that.
        return Err(HandlerError::permanent("a charge of 0"));
    }
    info!(
        event_id = %cx.event_id,
        attempt = cx.attempt,
        charge = %charge.id,
        amount = charge.amount,
        currency = %charge.currency,
        "charge succeeded"
    );
    Ok(())
}

/// The fields of a GitHub `push` this example uses.
#[derive(Debug, Deserialize)]
pub struct Push {
    /// `refs/heads/main`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The repository pushed to.
    pub repository: Repository,
    /// The commits pushed.
    #[serde(default)]
    pub commits: Vec<serde_json::Value>,
}

/// A GitHub repository.
#[derive(Debug, Deserialize)]
pub struct Repository {
    /// `owner/name`.
    pub full_name: String,
}

/// A GitHub `push` (the type comes from `X-GitHub-Event`), typed.
async fn push(push: Push, cx: Context) -> Result<(), HandlerError> {
    info!(
        event_id = %cx.event_id,
        repository = %push.repository.full_name,
        git_ref = %push.git_ref,
        commits = push.commits.len(),
        "push"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use hookgate_core::testing;
    use hookgate_core::Config;

    use super::*;

    fn config() -> Config {
        Config::from_toml(
            "[sources.github]\nscheme = 'github'\nsecrets = ['handlers-test-github']\n\
             [sources.stripe]\nscheme = 'stripe'\nsecrets = ['whsec_handlers_test_stripe']\n",
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_signed_github_push_runs_the_push_handler() {
        let body =
            r#"{"ref":"refs/heads/main","repository":{"full_name":"acme/shop"},"commits":[{}]}"#;
        let event = testing::signed(&config(), "github", body, &[("X-GitHub-Event", "push")])
            .await
            .unwrap();
        assert_eq!(event.envelope.event_type, "push");
        assert!(event.run(&handlers()).await.is_ok());
    }

    #[tokio::test]
    async fn a_charge_is_typed_and_a_zero_charge_is_permanent() {
        let charge = |amount: u64| {
            serde_json::json!({
                "id": "evt_1", "type": "charge.succeeded",
                "data": {"object": {"id": "ch_1", "amount": amount, "currency": "eur"}}
            })
        };
        let ok = testing::event("stripe", "charge.succeeded").json(&charge(4200));
        assert!(ok.run(&handlers()).await.is_ok());
        let zero = testing::event("stripe", "charge.succeeded").json(&charge(0));
        assert!(zero.run(&handlers()).await.unwrap_err().permanent);
        // Not a charge at all: permanent, and the reason names the type it expected.
        let odd = testing::event("stripe", "charge.succeeded").body(r#"{"id":"evt_2"}"#);
        let err = odd.run(&handlers()).await.unwrap_err();
        assert!(
            err.permanent && err.message.contains("Charge"),
            "{}",
            err.message
        );
    }
}
