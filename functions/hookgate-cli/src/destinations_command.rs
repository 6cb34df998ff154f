//! `hookgate destinations list | enable NAME | disable NAME`: the destination gate's state, read
//! and changed by an operator, on DynamoDB (the ledger's table: `--table` or `HOOKGATE_TABLE`;
//! `AWS_ENDPOINT_URL` for moto or LocalStack).
//!
//! It exists because a destination disabled by a `410 Gone` stays disabled until someone enables
//! it, and because "is billing's circuit open, since when, why" is the first question in an
//! incident. The list names every configured destination (for now the sources'
//! `[sources.NAME.forward]` tables, each named after its source), or the names given.

use std::io::Write;

use anyhow::Context;
use hookgate_aws::DynamoDbGate;
use hookgate_core::clock::{Clock, SystemClock, Timestamp};
use hookgate_core::destination_gate::{Circuit, DestinationGate, DestinationHealth};
use hookgate_core::destination_policy::DestinationName;
use hookgate_core::Config;

use crate::cli::DestinationsCommand;

/// `s` as a destination name, or the rule it breaks (for clap).
pub fn parse_name(s: &str) -> Result<DestinationName, String> {
    DestinationName::parse(s).map_err(|e| format!("{s:?}: {e}"))
}

/// The destinations `config` configures (`[destinations.NAME]` tables, and each source's
/// `forward` table under the source's name), in name order.
pub fn configured(config: &Config) -> Vec<DestinationName> {
    config
        .routing()
        .destinations()
        .map(|spec| spec.name.clone())
        .collect()
}

/// One line of the list: the circuit in words, with its time and reason.
fn circuit_text(health: &DestinationHealth) -> String {
    match &health.circuit {
        Circuit::Closed => "closed".to_owned(),
        Circuit::Open { until } => format!("open until {until}"),
        Circuit::HalfOpen => match health.probe_until {
            Some(until) => format!("half-open, probe out until {until}"),
            None => "half-open".to_owned(),
        },
        Circuit::Disabled { since, reason } => format!("disabled since {since}: {reason}"),
    }
}

/// The list as a table: name, circuit, consecutive failures, last failure.
pub fn render_table(list: &[DestinationHealth]) -> String {
    let rows: Vec<[String; 4]> = list
        .iter()
        .map(|h| {
            [
                h.name.to_string(),
                circuit_text(h),
                h.consecutive_failures.to_string(),
                h.last_failure.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    let header = ["DESTINATION", "CIRCUIT", "FAILURES", "LAST FAILURE"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The list as JSON, one object per destination.
pub fn health_json(h: &DestinationHealth) -> serde_json::Value {
    let mut v = serde_json::json!({
        "destination": h.name.as_str(),
        "circuit": h.circuit.as_str(),
        "consecutive_failures": h.consecutive_failures,
        "last_failure": h.last_failure,
        "updated_at": h.updated_at,
    });
    match &h.circuit {
        Circuit::Open { until } => v["open_until"] = serde_json::json!(until),
        Circuit::HalfOpen => v["probe_until"] = serde_json::json!(h.probe_until),
        Circuit::Disabled { since, reason } => {
            v["disabled_since"] = serde_json::json!(since);
            v["disabled_reason"] = serde_json::json!(reason);
        }
        Circuit::Closed => {}
    }
    v
}

/// Runs one `destinations` subcommand against `gate`, with `config`'s destinations, at `now`,
/// writing to `out` (notes and warnings to standard error).
pub async fn run_with(
    command: &DestinationsCommand,
    gate: &dyn DestinationGate,
    config: &Config,
    now: Timestamp,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let configured = configured(config);
    match command {
        DestinationsCommand::List { names, json, .. } => {
            let names = if names.is_empty() {
                configured
            } else {
                names.clone()
            };
            if names.is_empty() {
                eprintln!(
                    "hookgate: note: no destination is configured; name the ones to show \
                     (hookgate destinations list NAME…)"
                );
                return Ok(());
            }
            let list = gate.list(&names).await?;
            if *json {
                for h in &list {
                    writeln!(out, "{}", health_json(h))?;
                }
            } else {
                write!(out, "{}", render_table(&list))?;
            }
        }
        DestinationsCommand::Enable { name, .. } => {
            warn_unless_configured(name, &configured);
            gate.enable(name, now).await?;
            writeln!(out, "{name}: enabled (closed, failures reset)")?;
        }
        DestinationsCommand::Disable { name, reason, .. } => {
            warn_unless_configured(name, &configured);
            gate.disable(name, reason, now).await?;
            let health = gate.health(name).await?;
            writeln!(out, "{name}: {}", circuit_text(&health))?;
        }
    }
    Ok(())
}

fn warn_unless_configured(name: &DestinationName, configured: &[DestinationName]) {
    if !configured.contains(name) {
        eprintln!("hookgate: warning: {name} is not a destination of this configuration");
    }
}

/// Runs one `destinations` subcommand on the DynamoDB table the command names, now.
pub async fn run(command: &DestinationsCommand, config: &Config) -> anyhow::Result<()> {
    let sdk = hookgate_aws::preflight::checked_sdk_config().await?;
    let table = &command.gate_args().table;
    let gate = DynamoDbGate::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    run_with(
        command,
        &gate,
        config,
        SystemClock.now(),
        &mut std::io::stdout().lock(),
    )
    .await
    .with_context(|| format!("destinations on table {table}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hookgate_core::destination_gate::BreakerOptions;
    use hookgate_core::memory::MemoryGate;

    use super::*;
    use crate::cli::GateArgs;

    const CONFIG: &str = r#"
[sources.billing]
scheme = "github"
secrets = ["s3cr3t-github-billing"]
forward = { url = "https://billing.example/hooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }

[sources.audit]
scheme = "github"
secrets = ["s3cr3t-github-audit"]
forward = { url = "https://audit.example/hooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }

[sources.quiet]
scheme = "github"
secrets = ["s3cr3t-github-quiet"]
"#;

    fn name(s: &str) -> DestinationName {
        DestinationName::parse(s).unwrap()
    }

    fn gate_args() -> GateArgs {
        GateArgs {
            table: "t".into(),
            config: crate::cli::ConfigArg { config: None },
        }
    }

    async fn run_text(command: DestinationsCommand, gate: &MemoryGate, config: &Config) -> String {
        let mut out = Vec::new();
        run_with(
            &command,
            gate,
            config,
            Timestamp::from_secs(1_000),
            &mut out,
        )
        .await
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn list_shows_the_configured_destinations_and_disable_enable_change_them() {
        let config = Config::from_toml(CONFIG).unwrap();
        let gate = MemoryGate::new();
        let breaker = BreakerOptions {
            failures: 2,
            cool_down: Duration::from_secs(60),
        };
        for _ in 0..2 {
            gate.record_failure(
                &name("audit"),
                "503 Service Unavailable",
                breaker,
                Timestamp::from_secs(10),
            )
            .await
            .unwrap();
        }
        let list = || DestinationsCommand::List {
            names: vec![],
            json: false,
            gate: gate_args(),
        };
        let text = run_text(list(), &gate, &config).await;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("DESTINATION"), "{text}");
        // In the configuration's order (sources sorted by name); `quiet` forwards nowhere.
        assert!(
            lines[1].starts_with("audit")
                && lines[1].contains("open until 1970-01-01T00:01:10.000Z"),
            "{text}"
        );
        assert!(lines[1].contains(" 2  503 Service Unavailable"), "{text}");
        assert!(
            lines[2].starts_with("billing")
                && lines[2].contains("closed")
                && lines[2].ends_with('-'),
            "{text}"
        );

        let said = run_text(
            DestinationsCommand::Disable {
                name: name("billing"),
                reason: "maintenance".into(),
                gate: gate_args(),
            },
            &gate,
            &config,
        )
        .await;
        assert_eq!(
            said,
            "billing: disabled since 1970-01-01T00:16:40.000Z: maintenance\n"
        );
        assert!(run_text(list(), &gate, &config)
            .await
            .contains("disabled since"));
        let said = run_text(
            DestinationsCommand::Enable {
                name: name("billing"),
                gate: gate_args(),
            },
            &gate,
            &config,
        )
        .await;
        assert!(said.contains("enabled"));
        assert!(gate.health(&name("billing")).await.unwrap().is_clean());
    }

    #[tokio::test]
    async fn names_given_are_listed_instead_and_json_says_everything() {
        let config = Config::from_toml(CONFIG).unwrap();
        let gate = MemoryGate::new();
        gate.disable(&name("elsewhere"), "410 Gone", Timestamp::from_secs(5))
            .await
            .unwrap();
        let text = run_text(
            DestinationsCommand::List {
                names: vec![name("elsewhere")],
                json: true,
                gate: gate_args(),
            },
            &gate,
            &config,
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["destination"], "elsewhere");
        assert_eq!(v["circuit"], "disabled");
        assert_eq!(v["disabled_reason"], "410 Gone");
        assert_eq!(v["disabled_since"], "1970-01-01T00:00:05.000Z");
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn bad_names_are_refused_with_the_rule() {
        let e = parse_name("Billing").unwrap_err();
        assert!(e.contains("Billing") && e.contains("[a-z0-9_-]"), "{e}");
    }
}
