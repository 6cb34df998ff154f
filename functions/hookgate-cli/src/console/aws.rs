//! `hookgate console`: the console over a deployment on AWS, from the operator's machine.
//!
//! It reads the ledger (DynamoDB), the archive (S3) and the queues (SQS) through the same
//! adapters the functions use, with the credentials and region of the environment (the usual
//! `AWS_PROFILE` chain; `AWS_ENDPOINT_URL` for moto or LocalStack), so nothing admin-facing has
//! to be exposed through API Gateway. It runs no receiver and no processor.

use std::future::Future;
use std::sync::Arc;

use anyhow::{bail, Context};
use axum::http::StatusCode;
use axum::response::Redirect;
use axum::routing::get;
use axum::Router;
use hookgate_aws::AwsBackend;
use hookgate_core::dlq::DeadLetters;
use hookgate_core::replay::Replayer;
use hookgate_core::{Archive, Config, Secret};
use tracing::{info, warn};

use super::depth::SqsDepth;
use super::security::{json_error, security_headers};
use super::{login_required, ConsoleAccess, ConsoleBackend};
use crate::cli::ConsoleArgs;

/// The console's backend over `aws`, with `config`'s sources and archive settings.
pub fn backend(aws: &AwsBackend, config: &Config, place: &str) -> ConsoleBackend {
    let archive = aws.archive.clone().map(|a| a as Arc<dyn Archive>);
    let replayer = Arc::new(Replayer::new(
        config,
        aws.ledger.clone(),
        aws.queue.clone(),
        archive,
    ));
    let mut backend = ConsoleBackend::new(aws.ledger.clone(), replayer, config)
        .with_place(place.to_owned())
        .with_gate(aws.gate.clone());
    if let Some(dlq) = &aws.dlq {
        backend = backend.with_dead_letters(Arc::new(DeadLetters::new(
            aws.queue.clone(),
            dlq.clone(),
            aws.ledger.clone(),
        )));
    }
    backend
}

/// The routes `hookgate console` serves: the console, `/` sending there, and a JSON `404`
/// for anything else — every answer with the console's security headers.
pub fn router(backend: Arc<ConsoleBackend>, access: Arc<ConsoleAccess>) -> Router {
    super::router(backend, access)
        .route("/", get(|| async { Redirect::to("/console") }))
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(axum::middleware::from_fn(security_headers))
}

/// Runs `hookgate console` until `shutdown`.
pub async fn run(
    args: &ConsoleArgs,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let login = login_required(args.addr.ip(), args.require_login);
    let token = args
        .admin_token
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .map(|t| Secret::new(t.to_owned()));
    if login && token.is_none() {
        bail!(
            "{} is not a loopback address: the console needs an admin token there (--admin-token or HOOKGATE_ADMIN_TOKEN)",
            args.addr
        );
    }
    let sdk = hookgate_aws::preflight::checked_sdk_config().await?;
    let bucket = args
        .bucket
        .as_deref()
        .filter(|b| !b.trim().is_empty())
        .map(|b| {
            hookgate_aws::setup::expand_bucket_name(
                b,
                &args.queue_url,
                sdk.region().map(|r| r.as_ref()),
            )
            .map_err(|why| anyhow::anyhow!("--bucket: {why}"))
        })
        .transpose()?;
    if bucket.is_none() {
        warn!("no archive bucket (--bucket, HOOKGATE_ARCHIVE_BUCKET): only payloads kept inline in the ledger can be shown and replayed");
    }
    let aws = AwsBackend::from_parts(
        &sdk,
        args.table.clone(),
        args.queue_url.clone(),
        args.dlq_url.clone().filter(|u| !u.trim().is_empty()),
        bucket,
    );
    let place = format!("AWS · {}", args.table);
    let depth = SqsDepth {
        client: aws_sdk_sqs::Client::new(&sdk),
        queue_url: args.queue_url.clone(),
        dlq_url: aws.dlq.as_ref().map(|d| d.queue_url().to_owned()),
    };
    let backend = Arc::new(backend(&aws, config, &place).with_depth(Arc::new(depth)));
    let access = Arc::new(ConsoleAccess::new(token, login));
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let bound = listener.local_addr()?;
    println!("hookgate listening on http://{bound}");
    info!(table = %args.table, login_required = login, "operator console on http://{bound}/console");
    crate::http_server::serve(listener, router(backend, access), shutdown).await?;
    Ok(())
}
