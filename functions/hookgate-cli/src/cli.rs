//! The `hookgate` command line: every subcommand and argument, and nothing else.
//!
//! It lives in the library, not in `main.rs`, so the rules between arguments (which ones go
//! together, which ones exclude each other) are tested by parsing, without running anything.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use hookgate_core::destination_policy::DestinationName;

/// The repository's `events/` directory, as this binary was built from it: `hookgate events`
/// reads and writes there whatever the current directory.
pub const REPO_EVENTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events");

/// `hookgate`.
#[derive(Debug, Parser)]
#[command(
    name = "hookgate",
    version,
    about = "Webhook ingestion: local stack and operator tools"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where a command's configuration comes from.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// Configuration file (TOML). Without it: HOOKGATE_CONFIG (the document itself), else
    /// HOOKGATE_CONFIG_FILE (its path), else the bundled example (source `demo`, and one source
    /// per scheme).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// What `sign` and `send` build: a body, signed as a source's provider would, with the headers
/// that provider sends.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("payload").required(true).args(["body", "example"])))]
pub struct RequestArgs {
    /// The source, as configured.
    #[arg(long)]
    pub source: String,
    /// File holding the body ("-": standard input).
    #[arg(long, value_name = "FILE")]
    pub body: Option<PathBuf>,
    /// Use a realistic sample body of the source's provider (built in, one per scheme), with
    /// its event type.
    #[arg(long)]
    pub example: bool,
    /// The event type, in the header the source's scheme reads it from (X-GitHub-Event,
    /// X-Shopify-Topic, the type_header of hmac-sha256). Schemes that read it from the body
    /// (standard, svix, stripe, slack) refuse it: put it in the body.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// An extra header (repeatable); it replaces a header of the same name hookgate would send.
    #[arg(long = "header", value_name = "NAME:VALUE", value_parser = crate::provider_request::parse_header)]
    pub headers: Vec<(String, String)>,
    #[command(flatten)]
    pub config: ConfigArg,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run receiver and processor together on this machine.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
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
        /// Ask for the admin token at /console on loopback too (it always does elsewhere).
        #[arg(long)]
        console_login: bool,
    },
    /// Print the headers a source's provider would send with a body: its signature, the event
    /// type's header (--type) and any --header.
    Sign(RequestArgs),
    /// Sign a body as a source's provider would and POST it to a running stack.
    Send {
        #[command(flatten)]
        request: RequestArgs,
        /// Base URL of the stack (plain http: the local stack).
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// Content type of the body.
        #[arg(long, default_value = "application/json")]
        content_type: String,
    },
    /// Dead-letter queue tools, on SQS/DynamoDB (HOOKGATE_TABLE, HOOKGATE_QUEUE_URL,
    /// HOOKGATE_DLQ_URL; AWS_ENDPOINT_URL for moto or LocalStack). On the local stack's in-memory
    /// backend, use its /dlq routes.
    Dlq {
        /// The DLQ tool.
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Destinations' circuits and rate state, shared by every processor (on the ledger's
    /// DynamoDB table: --table or HOOKGATE_TABLE; AWS_ENDPOINT_URL for moto or LocalStack):
    /// list them, enable one a `410 Gone` or an operator disabled, or disable one.
    Destinations {
        /// The destinations tool.
        #[command(subcommand)]
        command: DestinationsCommand,
    },
    /// Write the sample Lambda events (events/*.json and env.json), signed now with the sample
    /// configuration, for `sam local invoke` and `cargo lambda invoke`. Works from any
    /// directory: the defaults are the repository's events/ directory this binary was built in.
    Events {
        /// The sample configuration [default: <repository>/events/sample-config.toml].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Where to write [default: <repository>/events].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Load test: send signed events over loopback HTTP, wait until every one is processed, and
    /// print throughput and accept latency. By default against a local stack started in this
    /// process on the in-memory backends; build with --release for figures that mean anything.
    Bench {
        #[command(flatten)]
        config: ConfigArg,
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
    /// Run events again from their kept payloads, under the same event id: the ids given, or
    /// every event of a status a filter matches (paged through the by-status index). Against a
    /// running stack with --url, else against AWS (HOOKGATE_TABLE, HOOKGATE_QUEUE_URL,
    /// HOOKGATE_ARCHIVE_BUCKET). A bulk run interrupted (Ctrl-C) and started again with the
    /// command it prints replays nothing twice.
    #[command(group(ArgGroup::new("which").required(true).args(["ids", "status"])))]
    Replay {
        /// Event ids.
        ids: Vec<String>,
        /// Replay every event with this status.
        #[arg(long, value_enum, conflicts_with = "ids")]
        status: Option<ReplayStatus>,
        /// Replay only the events' delivery to this destination (`<id>@<destination>`): the
        /// other destinations are not called again. Without it, a replay runs the event's
        /// routes again, every destination they match.
        #[arg(long, requires = "ids", conflicts_with = "status")]
        destination: Option<String>,
        /// Only events of this source.
        #[arg(long, requires = "status")]
        source: Option<String>,
        /// Only events of this type.
        #[arg(long = "type", requires = "status")]
        event_type: Option<String>,
        /// Received at or after: a duration back from now (30m, 2h, 7d), an RFC 3339 time, or
        /// epoch milliseconds.
        #[arg(long, requires = "status")]
        since: Option<String>,
        /// Received before (as --since) [default: now, fixed when the run starts].
        #[arg(long, requires = "status")]
        until: Option<String>,
        /// Count what would be replayed; replay nothing.
        #[arg(long, requires = "status")]
        dry_run: bool,
        /// Replay at most this many.
        #[arg(long, requires = "status")]
        limit: Option<u64>,
        /// At most this many replays per second.
        #[arg(long)]
        rate: Option<u32>,
        /// A running stack's base URL (its admin token in --admin-token).
        #[arg(long)]
        url: Option<String>,
        /// The running stack's admin token.
        #[arg(long, env = "HOOKGATE_ADMIN_TOKEN", requires = "url")]
        admin_token: Option<String>,
        /// For the archive settings and the claim timeout (AWS).
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Write an event's payload as the provider sent it (to standard output, or --out FILE).
    Payload {
        /// The event id.
        id: String,
        /// Where to write it [default: standard output].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// A running stack's base URL (its admin token in --admin-token).
        #[arg(long)]
        url: Option<String>,
        /// The running stack's admin token.
        #[arg(long, env = "HOOKGATE_ADMIN_TOKEN", requires = "url")]
        admin_token: Option<String>,
        /// For the archive settings (AWS).
        #[command(flatten)]
        config: ConfigArg,
    },
    /// The operator console in the browser, over a deployment on AWS (or moto, with
    /// AWS_ENDPOINT_URL), read with your own credentials and region: no admin route is exposed
    /// through API Gateway. Resource names as `hookgate setup` prints them.
    Console(ConsoleArgs),
    /// Create the DynamoDB table, the SQS queue + DLQ and the S3 archive bucket (idempotent),
    /// and print the environment the functions and `serve --backend aws` need (nothing, and a
    /// non-zero exit, on failure).
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
        /// For max_receive_count and visibility_timeout_secs.
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run a load profile on the virtual-time simulation of the real receiver and processor
    /// (in-memory backends holding AWS's limits, a simulated clock) and print, per simulated
    /// minute, what was accepted, processed, retried and dead-lettered, messages in flight, the
    /// oldest message's age, the busiest index partition's writes/s and the throttles. See
    /// docs/scale.md.
    Simulate {
        /// A built-in profile (healthy-10k, outage-6h, retry-storm) or a TOML file.
        #[arg(long, value_name = "NAME|FILE")]
        profile: String,
        /// Scale rates and aggregate limits alike by this factor, in (0, 1] (default: the
        /// profile's; 1 is full scale: build with --release).
        #[arg(long)]
        scale: Option<f64>,
    },
}

/// `hookgate console`.
#[derive(Debug, Clone, Args)]
pub struct ConsoleArgs {
    /// Address to listen on. On anything but loopback the admin token is required.
    #[arg(long, default_value = "127.0.0.1:3001")]
    pub addr: SocketAddr,
    /// The DynamoDB ledger table.
    #[arg(long, env = "HOOKGATE_TABLE")]
    pub table: String,
    /// The SQS queue's URL.
    #[arg(long, env = "HOOKGATE_QUEUE_URL")]
    pub queue_url: String,
    /// The dead-letter queue's URL (for the dead letters page).
    #[arg(long, env = "HOOKGATE_DLQ_URL")]
    pub dlq_url: Option<String>,
    /// The payload archive bucket (for payloads and replays of archived events).
    #[arg(long, env = "HOOKGATE_ARCHIVE_BUCKET")]
    pub bucket: Option<String>,
    /// The admin token the console's login form asks for (required off loopback).
    #[arg(long, env = "HOOKGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Ask for the admin token on loopback too.
    #[arg(long)]
    pub require_login: bool,
    /// For the sources, the archive settings and the claim timeout.
    #[command(flatten)]
    pub config: ConfigArg,
}

/// The `dlq` tools.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead-lettered messages (id, source, type, attempts, last error); nothing is removed.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Send messages back to the main queue to be processed again: every message (--all) or
    /// the ones named. Exits non-zero when none of the named ids is in the DLQ.
    #[command(group(ArgGroup::new("which").required(true).args(["all", "ids"])))]
    Redrive {
        /// Every message.
        #[arg(long)]
        all: bool,
        /// Event ids or message ids.
        ids: Vec<String>,
        /// At most this many messages per second.
        #[arg(long)]
        rate: Option<u32>,
        /// Only with --all: use SQS's own StartMessageMoveTask, which moves the whole DLQ (fast,
        /// but the events' history will not show the redrive); falls back to hookgate's move
        /// where unsupported.
        #[arg(long, requires = "all", conflicts_with = "ids")]
        native: bool,
    },
    /// Delete every message in the DLQ; prints how many, and their event ids.
    Purge {
        /// Confirm.
        #[arg(long, required = true)]
        yes: bool,
    },
}

/// Where the `destinations` tools find the gate and the configured destinations.
#[derive(Debug, Clone, Args)]
pub struct GateArgs {
    /// The DynamoDB ledger table (the gate keeps its items there).
    #[arg(long, env = "HOOKGATE_TABLE")]
    pub table: String,
    /// For the configured destinations.
    #[command(flatten)]
    pub config: ConfigArg,
}

/// The `destinations` tools.
#[derive(Debug, Subcommand)]
pub enum DestinationsCommand {
    /// Each destination's circuit (closed, open until…, half-open, disabled since…: why),
    /// consecutive failures and last failure: every configured destination, or the ones named.
    List {
        /// Only these destinations (configured or not).
        #[arg(value_parser = crate::destinations_command::parse_name)]
        names: Vec<DestinationName>,
        /// One JSON object per destination instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Enable a destination: its circuit closes, its failures are forgotten, held deliveries go.
    Enable {
        /// The destination.
        #[arg(value_parser = crate::destinations_command::parse_name)]
        name: DestinationName,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Disable a destination: its deliveries are held (not failed, not dead-lettered) until it
    /// is enabled.
    Disable {
        /// The destination.
        #[arg(value_parser = crate::destinations_command::parse_name)]
        name: DestinationName,
        /// Why (shown by `list`).
        #[arg(long, default_value = "disabled by an operator")]
        reason: String,
        #[command(flatten)]
        gate: GateArgs,
    },
}

impl DestinationsCommand {
    /// The table and configuration the command was given.
    pub fn gate_args(&self) -> &GateArgs {
        match self {
            DestinationsCommand::List { gate, .. }
            | DestinationsCommand::Enable { gate, .. }
            | DestinationsCommand::Disable { gate, .. } => gate,
        }
    }
}

/// The statuses a bulk replay takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum ReplayStatus {
    /// The last attempt failed; a retry is pending.
    Failed,
    /// Out of attempts, or failed permanently.
    DeadLettered,
    /// Processed.
    Processed,
}

impl From<ReplayStatus> for hookgate_core::EventStatus {
    fn from(s: ReplayStatus) -> Self {
        match s {
            ReplayStatus::Failed => hookgate_core::EventStatus::Failed,
            ReplayStatus::DeadLettered => hookgate_core::EventStatus::DeadLettered,
            ReplayStatus::Processed => hookgate_core::EventStatus::Processed,
        }
    }
}

/// Where the local stack keeps events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// In this process.
    Memory,
    /// On SQS and DynamoDB.
    Aws,
}

/// The local stack's log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, as on Lambda.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("hookgate").chain(args.iter().copied()))
    }

    fn redrive(args: &[&str]) -> Result<(bool, Vec<String>, bool), clap::Error> {
        let mut all_args = vec!["dlq", "redrive"];
        all_args.extend_from_slice(args);
        match parse(&all_args)?.command {
            Command::Dlq {
                command:
                    DlqCommand::Redrive {
                        all, ids, native, ..
                    },
            } => Ok((all, ids, native)),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn simulate_takes_a_profile_and_an_optional_scale() {
        match parse(&["simulate", "--profile", "outage-6h", "--scale", "1"])
            .unwrap()
            .command
        {
            Command::Simulate { profile, scale } => {
                assert_eq!((profile.as_str(), scale), ("outage-6h", Some(1.0)));
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(parse(&["simulate"]).is_err(), "a profile is required");
    }

    #[test]
    fn native_redrive_goes_with_all_only() {
        assert_eq!(
            redrive(&["--all", "--native"]).unwrap(),
            (true, vec![], true)
        );
        assert_eq!(
            redrive(&["demo:1", "demo:2"]).unwrap(),
            (false, vec!["demo:1".into(), "demo:2".into()], false)
        );
        for refused in [
            &["--native", "demo:1"][..],
            &["demo:1", "--native"],
            &["--native"],
            &["--all", "demo:1"],
            &["--all", "--native", "demo:1"],
        ] {
            let e = redrive(refused).expect_err(&format!("{refused:?} was accepted"));
            assert_eq!(e.exit_code(), 2, "{refused:?}: {e}");
        }
    }

    #[test]
    fn the_console_listens_on_loopback_by_default() {
        let Command::Console(args) = parse(&["console", "--table", "t", "--queue-url", "u"])
            .unwrap()
            .command
        else {
            panic!("not console");
        };
        assert_eq!(args.addr, "127.0.0.1:3001".parse().unwrap());
        assert!(!args.require_login);
        let Command::Serve {
            addr,
            console_login,
            ..
        } = parse(&["serve"]).unwrap().command
        else {
            panic!("not serve");
        };
        assert!(addr.ip().is_loopback() && !console_login);
    }

    #[test]
    fn destinations_take_a_valid_name_a_reason_and_a_table() {
        let Command::Destinations {
            command: DestinationsCommand::Disable { name, reason, gate },
        } = parse(&[
            "destinations",
            "disable",
            "billing",
            "--reason",
            "moving house",
            "--table",
            "t1",
        ])
        .unwrap()
        .command
        else {
            panic!("not destinations disable");
        };
        assert_eq!(
            (name.as_str(), reason.as_str()),
            ("billing", "moving house")
        );
        assert_eq!(gate.table, "t1");
        let Command::Destinations {
            command: DestinationsCommand::List { names, json, .. },
        } = parse(&["destinations", "list", "a", "b", "--json", "--table", "t"])
            .unwrap()
            .command
        else {
            panic!("not destinations list");
        };
        assert_eq!(names.len(), 2);
        assert!(json);
        let e = parse(&["destinations", "enable", "Billing!", "--table", "t"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("[a-z0-9_-]"), "{e}");
        assert!(
            parse(&["destinations", "enable", "--table", "t"]).is_err(),
            "a name is required"
        );
    }

    #[test]
    fn redrive_without_arguments_names_all() {
        let e = redrive(&[]).unwrap_err();
        assert!(e.to_string().contains("--all"), "{e}");
    }

    #[test]
    fn sign_and_send_take_a_body_or_the_example_and_repeated_headers() {
        let Command::Send { request, .. } = parse(&[
            "send",
            "--source",
            "github",
            "--example",
            "--type",
            "issues",
            "--header",
            "X-GitHub-Hook-ID: 42",
            "--header",
            "x-trace:a:b",
        ])
        .unwrap()
        .command
        else {
            panic!("not send");
        };
        assert!(request.example && request.body.is_none());
        assert_eq!(request.event_type.as_deref(), Some("issues"));
        assert_eq!(
            request.headers,
            [
                ("x-github-hook-id".to_owned(), "42".to_owned()),
                ("x-trace".to_owned(), "a:b".to_owned())
            ]
        );
        for refused in [
            &["sign", "--source", "demo"][..],
            &["sign", "--source", "demo", "--body", "f", "--example"],
            &[
                "sign",
                "--source",
                "demo",
                "--example",
                "--header",
                "novalue",
            ],
            &[
                "sign",
                "--source",
                "demo",
                "--example",
                "--header",
                "bad name:1",
            ],
        ] {
            assert!(parse(refused).is_err(), "{refused:?} was accepted");
        }
    }
}
