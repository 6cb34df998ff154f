//! `hookgate`: run the local stack, sign and send requests, set up AWS resources.
//!
//! Every failure ends the same way: one line on standard error, `hookgate: error: …` with its
//! causes (never an SDK `Debug` dump, never the same cause twice), and exit status 1; usage
//! errors are clap's, with status 2.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use hookgate_cli::bench;
use hookgate_cli::cli::{Backend, Cli, Command, LogFormat, RequestArgs, REPO_EVENTS_DIR};
use hookgate_cli::config_choice::{self, ChosenConfig};
use hookgate_cli::local::LocalStack;
use hookgate_cli::provider_request::{self, Payload, ProviderRequest};
use hookgate_cli::replay_command;
use hookgate_core::telemetry;
use hookgate_core::{Clock, Handlers, SystemClock};
use tracing::{info, warn};

/// The configuration `--config` or the environment gives (see `config_choice`); variables it
/// ignores are said on standard error, unless `quiet_ignored` (the caller logs them).
fn load_config(flag: Option<&Path>, quiet_ignored: bool) -> anyhow::Result<ChosenConfig> {
    let chosen = config_choice::from_environment(flag)?;
    if !quiet_ignored {
        for warning in chosen.ignored_warnings() {
            eprintln!("hookgate: warning: {warning}");
        }
    }
    Ok(chosen)
}

/// Logs to standard error; `RUST_LOG` wins over `default_level`.
fn init_logs(format: LogFormat, default_level: &str) -> anyhow::Result<()> {
    let format = match format {
        LogFormat::Text => telemetry::LogFormat::Text,
        LogFormat::Json => telemetry::LogFormat::Json,
    };
    let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| default_level.to_owned());
    telemetry::LogSettings::local(format, Some(&rust_log)).init(std::io::stderr)?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn read_body(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// The request `sign` / `send` build from their arguments; notes go to standard error.
fn provider_request(args: &RequestArgs) -> anyhow::Result<ProviderRequest> {
    let config = load_config(args.config.config.as_deref(), false)?.config;
    let payload = match &args.body {
        Some(path) => Payload::Bytes(read_body(path)?),
        None => Payload::Example,
    };
    let request = provider_request::build(
        &config,
        &args.source,
        payload,
        args.event_type.as_deref(),
        &args.headers,
        SystemClock.now(),
    )?;
    for note in &request.notes {
        eprintln!("hookgate: note: {note}");
    }
    Ok(request)
}

async fn serve(
    config: Option<PathBuf>,
    addr: std::net::SocketAddr,
    backend: Backend,
    log_format: LogFormat,
    console_login: bool,
) -> anyhow::Result<()> {
    init_logs(log_format, "info")?;
    let chosen = load_config(config.as_deref(), true)?;
    info!("{}", chosen.describe());
    for warning in chosen.ignored_warnings() {
        warn!("{warning}");
    }
    let config = chosen.config;
    let stack = match backend {
        Backend::Memory => LocalStack::in_memory(config, handlers::handlers()),
        Backend::Aws => {
            let sdk = hookgate_aws::preflight::checked_sdk_config().await?;
            let aws = hookgate_aws::AwsBackend::from_env_with(&sdk).await?;
            hookgate_aws::preflight::check_max_receive_count(
                &aws.queue,
                config.processor.max_receive_count,
            )
            .await?;
            let archive = aws
                .archive
                .map(|a| a as std::sync::Arc<dyn hookgate_core::Archive>);
            if archive.is_none() {
                warn!("HOOKGATE_ARCHIVE_BUCKET is not set: payloads over the inline size are not kept, and bodies over [archive] claim_check_bytes must fit the queue");
            }
            let stack = LocalStack::with_archive(
                &config,
                aws.ledger,
                aws.queue,
                archive,
                handlers::handlers(),
            )?;
            match aws.dlq {
                Some(dlq) => stack.with_dlq(dlq),
                None => stack,
            }
        }
    };
    let stack = stack.with_console_login(console_login);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    // The first line on stdout, for people and for scripts that start the stack.
    println!("hookgate listening on http://{bound}");
    stack.serve(listener, shutdown_signal()).await?;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            config,
            addr,
            backend,
            log_format,
            console_login,
        } => serve(config.config, addr, backend, log_format, console_login).await?,
        Command::Console(args) => {
            init_logs(LogFormat::Text, "info")?;
            let config = load_config(args.config.config.as_deref(), false)?.config;
            hookgate_cli::console::aws::run(&args, &config, shutdown_signal()).await?;
        }
        Command::Sign(args) => {
            for (name, value) in provider_request(&args)?.headers {
                println!("{name}: {value}");
            }
        }
        Command::Send {
            request: args,
            url,
            content_type,
        } => {
            let request = provider_request(&args)?;
            let mut post = hookgate_core::delivery::client_builder()
                .build()?
                .post(format!(
                    "{}/webhooks/{}",
                    url.trim_end_matches('/'),
                    args.source
                ))
                .header("content-type", content_type)
                .body(request.body);
            for (name, value) in request.headers {
                post = post.header(name, value);
            }
            let response = post
                .send()
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            let status = response.status();
            println!("{} {}", status.as_u16(), response.text().await?);
            if !status.is_success() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Dlq { command } => hookgate_cli::dlq_command::run(command).await?,
        Command::Destinations { command } => {
            let config = load_config(command.gate_args().config.config.as_deref(), false)?.config;
            hookgate_cli::destinations_command::run(&command, &config).await?;
        }
        Command::Events { config, out } => {
            let repo_events = Path::new(REPO_EVENTS_DIR);
            let config = config.unwrap_or_else(|| repo_events.join("sample-config.toml"));
            let out = out.unwrap_or_else(|| repo_events.to_owned());
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("cannot read {}", config.display()))?;
            for name in hookgate_cli::events::write_sample_events(&out, &text)? {
                println!("{}", out.join(name).display());
            }
        }
        Command::Bench {
            config,
            url,
            admin_token,
            events,
            concurrency,
            duplicates,
            source,
            body_bytes,
            timeout_secs,
        } => {
            // A log line per event would measure the terminal: warnings only, unless RUST_LOG.
            init_logs(LogFormat::Text, "warn")?;
            let config = load_config(config.config.as_deref(), false)?.config;
            let target = match url {
                None => bench::Target::InProcess(Handlers::new()),
                Some(base) => {
                    let admin_token = admin_token
                        .or_else(|| config.admin.token.as_ref().map(|t| t.expose().to_owned()))
                        .context("--url needs --admin-token (or an [admin] token in the config)")?;
                    bench::Target::Url { base, admin_token }
                }
            };
            let options = bench::LoadOptions {
                requests: events,
                concurrency,
                duplicates_pct: duplicates,
                source,
                body_bytes,
                timeout: std::time::Duration::from_secs(timeout_secs),
            };
            let report = bench::run(&config, target, &options).await?;
            println!("{report}");
            if !report.is_complete() {
                bail!("not every request was accepted and processed");
            }
        }
        Command::Replay {
            ids,
            status,
            destination,
            source,
            event_type,
            since,
            until,
            dry_run,
            limit,
            rate,
            url,
            admin_token,
            config,
        } => {
            let config = load_config(config.config.as_deref(), false)?.config;
            let place =
                replay_command::Place::from_args(url.as_deref(), admin_token, &config).await?;
            let ids = replay_command::delivery_ids(ids, destination.as_deref())?;
            let done = match status {
                None => replay_command::replay_ids(&place, &ids).await?,
                Some(status) => {
                    let status: hookgate_core::EventStatus = status.into();
                    let status_text = status.to_string();
                    let table = std::env::var(hookgate_aws::ENV_TABLE).unwrap_or_default();
                    let typed = [
                        status_text.as_str(),
                        source.as_deref().unwrap_or(""),
                        event_type.as_deref().unwrap_or(""),
                        since.as_deref().unwrap_or(""),
                        until.as_deref().unwrap_or(""),
                        url.as_deref().unwrap_or(&table),
                    ];
                    let (filter, resumed, state) = replay_command::bulk_filter_resuming(
                        &typed,
                        || {
                            replay_command::bulk_filter(
                                status,
                                source.as_deref(),
                                event_type.as_deref(),
                                since.as_deref(),
                                until.as_deref(),
                                SystemClock.now(),
                            )
                        },
                        &replay_command::state_dir(),
                    )?;
                    if resumed {
                        eprintln!("hookgate: going on with the run this command started before (it was interrupted)");
                    }
                    let options = hookgate_core::replay::BulkOptions {
                        dry_run,
                        limit,
                        rate,
                        ..Default::default()
                    };
                    replay_command::replay_filtered(&place, &filter, &options, &state).await?
                }
            };
            if !done {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Payload {
            id,
            out,
            url,
            admin_token,
            config,
        } => {
            let config = load_config(config.config.as_deref(), false)?.config;
            let place =
                replay_command::Place::from_args(url.as_deref(), admin_token, &config).await?;
            replay_command::payload(&place, &id, out.as_deref()).await?;
        }
        Command::Simulate { profile, scale } => {
            let profile = hookgate_cli::simulate_command::load(&profile)?;
            hookgate_cli::simulate_command::run(profile, scale, &mut std::io::stdout().lock())
                .await?;
        }
        Command::Setup {
            table,
            queue,
            bucket,
            config,
        } => {
            let config = load_config(config.config.as_deref(), false)?.config;
            let sdk = hookgate_aws::preflight::checked_sdk_config().await?;
            let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            hookgate_aws::setup::create_table(&dynamodb, &table).await?;
            let urls = hookgate_aws::setup::create_queues(
                &sqs,
                &queue,
                config.processor.max_receive_count,
                config.processor.visibility_timeout_secs,
            )
            .await?;
            // The archive keeps payloads for [archive] retention_days (default: the dedup
            // window, as long as the ledger remembers the event).
            let retention = hookgate_aws::setup::retention_days(
                config.archive.retention(&config.receiver).as_secs(),
            );
            let bucket = hookgate_aws::setup::setup_archive_bucket(
                &sdk,
                bucket,
                &queue,
                &urls.queue_url,
                retention,
            )
            .await?;
            // Only once everything exists: `eval "$(hookgate setup)"` gets all or nothing.
            println!("export HOOKGATE_TABLE={table}");
            println!("export HOOKGATE_QUEUE_URL={}", urls.queue_url);
            println!("export HOOKGATE_DLQ_URL={}", urls.dlq_url);
            println!("export {}={bucket}", hookgate_aws::ENV_ARCHIVE_BUCKET);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            let error: &(dyn std::error::Error + 'static) = e.as_ref();
            eprintln!(
                "hookgate: error: {}",
                hookgate_aws::error_text::one_line(error)
            );
            ExitCode::FAILURE
        }
    }
}
