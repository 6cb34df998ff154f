//! `hookgate dlq …` on SQS/DynamoDB: list, redrive, purge, each printing JSON on stdout.
//!
//! Region and credentials are checked before anything else (see `hookgate_aws::preflight`).
//! A redrive of ids none of which is in the DLQ prints its report and fails; SQS's move task
//! is reached only through `--all --native` (see `hookgate_aws::redrive`).

use anyhow::bail;
use hookgate_aws::redrive::{redrive, RedriveMethod, RedriveOutcome};
use hookgate_core::dlq::{DeadLetters, Selection};

use crate::cli::DlqCommand;

/// What `dlq redrive` was asked to do, as the redrive module takes it: `--native` only ever
/// with `--all` (the command line refuses it with ids; this never passes it on with them).
pub fn redrive_method(all: bool, ids: Vec<String>, native: bool) -> RedriveMethod {
    match (all, native) {
        (true, true) => RedriveMethod::NativeAll,
        (true, false) => RedriveMethod::OneByOne(Selection::All),
        (false, _) => RedriveMethod::OneByOne(Selection::Ids(ids.into_iter().collect())),
    }
}

/// Runs one `dlq` subcommand.
pub async fn run(command: DlqCommand) -> anyhow::Result<()> {
    let sdk = hookgate_aws::preflight::checked_sdk_config().await?;
    let aws = hookgate_aws::AwsBackend::from_env_with(&sdk).await?;
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
            let method = redrive_method(all, ids, native);
            match redrive(&method, rate, &aws.queue, &dlq, &tools).await? {
                RedriveOutcome::MoveTask { task_handle } => {
                    println!("{}", serde_json::json!({ "move_task": task_handle }));
                }
                RedriveOutcome::Moved {
                    report,
                    native_unavailable,
                } => {
                    if let Some(why) = native_unavailable {
                        eprintln!(
                            "hookgate: StartMessageMoveTask unavailable ({why}); moved message by message"
                        );
                    }
                    println!("{}", serde_json::to_string(&report)?);
                    if report.found_none() {
                        bail!(
                            "none of the ids is in the DLQ: {}",
                            report.not_found.join(", ")
                        );
                    }
                    if !report.not_found.is_empty() {
                        eprintln!("hookgate: not in the DLQ: {}", report.not_found.join(", "));
                    }
                }
            }
        }
        DlqCommand::Purge { yes: _ } => {
            println!("{}", serde_json::to_string(&tools.purge().await?)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_all_with_native_is_the_move_task() {
        assert_eq!(redrive_method(true, vec![], true), RedriveMethod::NativeAll);
        assert_eq!(
            redrive_method(true, vec![], false),
            RedriveMethod::OneByOne(Selection::All)
        );
        // Should ids and --native ever arrive together, the ids win: never the whole DLQ.
        assert_eq!(
            redrive_method(false, vec!["demo:1".into()], true),
            RedriveMethod::OneByOne(Selection::Ids(["demo:1".to_owned()].into()))
        );
    }
}
