//! `hookgate`: run the local stack, sign and send requests, set up AWS resources.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use hookgate_cli::bench;
use hookgate_cli::local::LocalStack;
use hookgate_core::config::EXAMPLE_CONFIG;
use hookgate_core::dlq::{DeadLetters, Selection};
use hookgate_core::telemetry;
use hookgate_core::{Clock, Config, Handlers, SystemClock};

#[derive(Parser)]
#[command(
    name = "hookgate",
    version,
    about = "Webhook ingestion: local stack and operator tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run receiver and processor together on this machine.
    Serve {
        /// Configuration file (TOML). Default: the bundled example (source `demo`).
        #[arg(long, env = "HOOKGATE_CONFIG_FILE")]
        config: Option<PathBuf>,
        /// Address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
        /// Where events are kept: in this process, or on SQS/DynamoDB (HOOKGATE_TABLE,
        /// HOOKGATE_QUEUE_URL, HOOKGATE_DLQ_URL; AWS_ENDPOINT_URL for moto or LocalStack).
        #[arg(long, value_enum, default_value_t = Backend::Memory)]
        backend: Backend,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Print the signature headers a source's provider would send with a body.
    Sign {
        /// The source, as configured.
        #[arg(long)]
        source: String,
        /// File holding the body ("-": standard input).
        #[arg(long)]
        body: PathBuf,
        /// Configuration file (TOML). Default: the bundled example.
        #[arg(long, env = "HOOKGATE_CONFIG_FILE")]
        config: Option<PathBuf>,
    },
    /// Sign a body as a source's provider would and POST it to a running stack.
    Send {
        /// The source, as configured.
        #[arg(long)]
        source: String,
        /// File holding the body ("-": standard input).
        #[arg(long)]
        body: PathBuf,
        /// Base URL of the stack (plain http: the local stack).
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// Content type of the body.
        #[arg(long, default_value = "application/json")]
        content_type: String,
        /// Configuration file (TOML). Default: the bundled example.
        #[arg(long, env = "HOOKGATE_CONFIG_FILE")]
        config: Option<PathBuf>,
    },
    /// Dead-letter queue tools, on SQS/DynamoDB (HOOKGATE_TABLE, HOOKGATE_QUEUE_URL,
    /// HOOKGATE_DLQ_URL; AWS_ENDPOINT_URL for moto or LocalStack). On the local stack's in-memory
    /// backend, use its /dlq routes.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Write the sample Lambda events (events/*.json and env.json), signed now with the sample
    /// configuration, for `sam local invoke` and `cargo lambda invoke`.
    Events {
        /// The sample configuration.
        #[arg(long, default_value = "events/sample-config.toml")]
        config: PathBuf,
        /// Where to write.
        #[arg(long, default_value = "events")]
        out: PathBuf,
    },
    /// Load test: send signed events over loopback HTTP, wait until every one is processed, and
    /// print throughput and accept latency. By default against a local stack started in this
    /// process on the in-memory backends; build with --release for figures that mean anything.
    Bench {
        /// Configuration file (TOML). Default: the bundled example (source `demo`).
        #[arg(long, env = "HOOKGATE_CONFIG_FILE")]
        config: Option<PathBuf>,
        /// Drive a stack already running at this base URL instead (statuses are read through
        /// its status API with --admin-token).
        #[arg(long)]
        url: Option<String>,
        /// Bearer token of the running stack's status API (default: the config's [admin] token).
        #[arg(long, env = "HOOKGATE_ADMIN_TOKEN", requires = "url")]
        admin_token: Option<String>,
        /// Requests to send, duplicates included.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Connections sending at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Percentage of the requests that repeat an event sent earlier (answered `duplicate`).
        #[arg(long, default_value_t = 0)]
        duplicates: u8,
        /// The source to sign for.
        #[arg(long, default_value = "demo")]
        source: String,
        /// Body size in bytes.
        #[arg(long, default_value_t = 1024)]
        body_bytes: usize,
        /// Seconds to wait for every accepted event to be processed.
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
    /// Create the DynamoDB table, the SQS queue + DLQ and the S3 archive bucket (idempotent),
    /// and print the environment the functions and `serve --backend aws` need.
    Setup {
        /// Table name.
        #[arg(long, default_value = "hookgate-events")]
        table: String,
        /// Queue name (the DLQ is NAME-dlq).
        #[arg(long, default_value = "hookgate-events")]
        queue: String,
        /// Archive bucket name (S3 names are global: 3-63 lower case letters, digits, hyphens).
        /// Default: QUEUE-archive-ACCOUNT-REGION, the account read from the queue's URL.
        #[arg(long)]
        bucket: Option<String>,
        /// Configuration file, for max_receive_count and visibility_timeout_secs.
        #[arg(long, env = "HOOKGATE_CONFIG_FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List dead-lettered messages (id, source, type, attempts, last error); nothing is removed.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Send messages back to the main queue to be processed again.
    Redrive {
        /// Every message.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Event ids or message ids.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// At most this many messages per second.
        #[arg(long)]
        rate: Option<u32>,
        /// With --all: use SQS's own StartMessageMoveTask (fast, but the events' history will
        /// not show the redrive); falls back to hookgate's move where unsupported.
        #[arg(long, requires = "all")]
        native: bool,
    },
    /// Delete every message in the DLQ.
    Purge {
        /// Confirm.
        #[arg(long, required = true)]
        yes: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    Memory,
    Aws,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(path) => Config::from_file(path)?,
        None => Config::from_toml(EXAMPLE_CONFIG)?,
    })
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

fn read_body(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

fn sign(config: &Config, source: &str, body: &[u8]) -> anyhow::Result<Vec<(String, String)>> {
    let headers = hookgate_core::signature::sign(config, source, body, SystemClock.now())?;
    if headers.is_empty() {
        bail!("source {source} has no secret to sign with");
    }
    Ok(headers)
}

async fn dlq(command: DlqCommand) -> anyhow::Result<()> {
    let aws = hookgate_aws::AwsBackend::from_env().await?;
    let Some(dlq) = aws.dlq.clone() else {
        bail!("set HOOKGATE_DLQ_URL to the dead-letter queue's URL");
    };
    let tools = DeadLetters::new(aws.queue.clone(), dlq.clone(), aws.ledger.clone());
    match command {
        DlqCommand::List { limit } => {
            for m in tools.list(limit).await? {
                println!("{}", serde_json::to_string(&m)?);
            }
        }
        DlqCommand::Redrive {
            all,
            ids,
            rate,
            native,
        } => {
            if native {
                match dlq.start_message_move_task(&aws.queue, rate).await {
                    Ok(handle) => {
                        println!("{}", serde_json::json!({ "move_task": handle }));
                        return Ok(());
                    }
                    Err(e) => eprintln!(
                        "StartMessageMoveTask unavailable ({e}); moving message by message"
                    ),
                }
            }
            let selection = if all {
                Selection::All
            } else {
                Selection::Ids(ids.into_iter().collect())
            };
            let report = tools.redrive(&selection, rate).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        DlqCommand::Purge { yes: _ } => {
            tools.purge().await?;
            println!("{}", serde_json::json!({ "purged": true }));
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve {
            config,
            addr,
            backend,
            log_format,
        } => {
            init_logs(log_format, "info")?;
            let config = load_config(config.as_ref())?;
            let stack = match backend {
                Backend::Memory => LocalStack::in_memory(config, Handlers::new()),
                Backend::Aws => {
                    let aws = hookgate_aws::AwsBackend::from_env().await?;
                    let stack = LocalStack::new(&config, aws.ledger, aws.queue, Handlers::new())?;
                    match aws.dlq {
                        Some(dlq) => stack.with_dlq(dlq),
                        None => stack,
                    }
                }
            };
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let bound = listener.local_addr()?;
            // The first line on stdout, for people and for scripts that start the stack.
            println!("hookgate listening on http://{bound}");
            stack.serve(listener, shutdown_signal()).await?;
        }
        Command::Sign {
            source,
            body,
            config,
        } => {
            let config = load_config(config.as_ref())?;
            let body = read_body(&body)?;
            for (name, value) in sign(&config, &source, &body)? {
                println!("{name}: {value}");
            }
        }
        Command::Send {
            source,
            body,
            url,
            content_type,
            config,
        } => {
            let config = load_config(config.as_ref())?;
            let body = read_body(&body)?;
            let mut request = hookgate_core::delivery::client_builder()
                .build()?
                .post(format!("{}/webhooks/{source}", url.trim_end_matches('/')))
                .header("content-type", content_type)
                .body(body.clone());
            for (name, value) in sign(&config, &source, &body)? {
                request = request.header(name, value);
            }
            let response = request
                .send()
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            let status = response.status();
            println!("{} {}", status.as_u16(), response.text().await?);
            if !status.is_success() {
                std::process::exit(1);
            }
        }
        Command::Dlq { command } => dlq(command).await?,
        Command::Events { config, out } => {
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
            let config = load_config(config.as_ref())?;
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
        Command::Setup {
            table,
            queue,
            bucket,
            config,
        } => {
            let config = load_config(config.as_ref())?;
            let sdk = hookgate_aws::sdk_config().await;
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
            // The archive keeps payloads as long as the ledger dedups them.
            let retention = hookgate_aws::setup::retention_days(config.receiver.dedup_window_secs);
            let bucket = hookgate_aws::setup::setup_archive_bucket(
                &sdk,
                bucket,
                &queue,
                &urls.queue_url,
                retention,
            )
            .await?;
            println!("export HOOKGATE_TABLE={table}");
            println!("export HOOKGATE_QUEUE_URL={}", urls.queue_url);
            println!("export HOOKGATE_DLQ_URL={}", urls.dlq_url);
            println!("export {}={bucket}", hookgate_aws::ENV_ARCHIVE_BUCKET);
        }
    }
    Ok(())
}
