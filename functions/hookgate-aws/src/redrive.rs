//! `hookgate dlq redrive` on SQS: hookgate's own move of chosen messages, or SQS's move task
//! for all of them.
//!
//! SQS's `StartMessageMoveTask` moves every message of a DLQ back to its source queue; it cannot
//! be told which ones, and it answers at once, before anything has moved. So it may only run
//! when every message was asked for: [`RedriveMethod`] has no way to say "these ids, natively",
//! and [`redrive`] reaches the move task only through [`RedriveMethod::NativeAll`]. Named ids
//! always go through [`DeadLetters::redrive`], one message at a time, which also marks each
//! redriven message so the event's history says so.

use hookgate_core::dlq::{DeadLetters, RedriveReport, Selection};
use hookgate_core::QueueError;

use crate::SqsQueue;

/// How to redrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveMethod {
    /// Every message, with SQS's `StartMessageMoveTask` (fast; the events' history does not
    /// show the redrive). Where the endpoint does not implement it (moto), every message is
    /// moved one by one instead.
    NativeAll,
    /// The selected messages, moved one by one by hookgate.
    OneByOne(Selection),
}

/// What [`redrive`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveOutcome {
    /// SQS accepted a move task, which runs on after this returns.
    MoveTask {
        /// The task's handle (for `ListMessageMoveTasks` / `CancelMessageMoveTask`).
        task_handle: String,
    },
    /// hookgate moved the messages itself.
    Moved {
        /// What moved, what stayed, which ids were not found.
        report: RedriveReport,
        /// Why the move task was not used, when it was asked for.
        native_unavailable: Option<String>,
    },
}

/// Redrives `dlq`'s messages back to `queue` as `method` says, at most `rate` per second;
/// `tools` are the DLQ tools over the same two queues.
pub async fn redrive(
    method: &RedriveMethod,
    rate: Option<u32>,
    queue: &SqsQueue,
    dlq: &SqsQueue,
    tools: &DeadLetters,
) -> Result<RedriveOutcome, QueueError> {
    let (selection, native_unavailable) = match method {
        RedriveMethod::OneByOne(selection) => (selection, None),
        RedriveMethod::NativeAll => match dlq.start_message_move_task(queue, rate).await {
            Ok(task_handle) => return Ok(RedriveOutcome::MoveTask { task_handle }),
            Err(e) => (&Selection::All, Some(e.to_string())),
        },
    };
    let report = tools.redrive(selection, rate).await?;
    Ok(RedriveOutcome::Moved {
        report,
        native_unavailable,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_sqs::operation::change_message_visibility::ChangeMessageVisibilityOutput;
    use aws_sdk_sqs::operation::delete_message::DeleteMessageOutput;
    use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
    use aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput;
    use aws_sdk_sqs::operation::send_message::SendMessageOutput;
    use aws_sdk_sqs::operation::start_message_move_task::{
        StartMessageMoveTaskError, StartMessageMoveTaskOutput,
    };
    use aws_sdk_sqs::types::error::UnsupportedOperation;
    use aws_sdk_sqs::types::{
        Message, MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    };
    use aws_sdk_sqs::Client;
    use aws_smithy_mocks::{
        create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode,
    };
    use hookgate_core::memory::MemoryLedger;
    use hookgate_core::queue::attr;

    use super::*;

    const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/events";
    const DLQ: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/events-dlq";

    /// An SQS client whose every call is answered by `rules` (an unexpected call panics).
    fn stub_client(rules: &[&Rule]) -> Client {
        let interceptor = rules.iter().fold(
            MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny),
            |interceptor, rule| interceptor.with_rule(rule),
        );
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "stub"))
            .http_client(create_mock_http_client())
            .interceptor(interceptor)
            .build();
        Client::from_conf(config)
    }

    fn dead_letter(event_id: &str) -> Message {
        Message::builder()
            .message_id(format!("m-{event_id}"))
            .receipt_handle(format!("r-{event_id}"))
            .body("{}")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "1")
            .message_attributes(
                attr::EVENT_ID,
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(event_id)
                    .build()
                    .expect("a valid attribute"),
            )
            .build()
    }

    /// The DLQ holds `demo:a` and `demo:b`, then is empty.
    fn receive_rule() -> Rule {
        mock!(Client::receive_message)
            .match_requests(|r| r.queue_url() == Some(DLQ))
            .sequence()
            .output(|| {
                ReceiveMessageOutput::builder()
                    .messages(dead_letter("demo:a"))
                    .messages(dead_letter("demo:b"))
                    .build()
            })
            .output(|| ReceiveMessageOutput::builder().build())
            .repeatedly()
            .build()
    }

    struct Stubs {
        receive: Rule,
        hold: Rule,
        send: Rule,
        delete: Rule,
        arn: Rule,
        move_task: Rule,
    }

    impl Stubs {
        fn new(move_task: Rule) -> Self {
            Stubs {
                receive: receive_rule(),
                hold: mock!(Client::change_message_visibility)
                    .then_output(|| ChangeMessageVisibilityOutput::builder().build()),
                send: mock!(Client::send_message)
                    .match_requests(|r| r.queue_url() == Some(QUEUE))
                    .then_output(|| SendMessageOutput::builder().message_id("new").build()),
                delete: mock!(Client::delete_message)
                    .match_requests(|r| r.queue_url() == Some(DLQ))
                    .then_output(|| DeleteMessageOutput::builder().build()),
                arn: mock!(Client::get_queue_attributes).then_output(|| {
                    GetQueueAttributesOutput::builder()
                        .attributes(
                            QueueAttributeName::QueueArn,
                            "arn:aws:sqs:us-east-1:123456789012:q",
                        )
                        .build()
                }),
                move_task,
            }
        }

        async fn redrive(&self, method: RedriveMethod) -> RedriveOutcome {
            let client = stub_client(&[
                &self.receive,
                &self.hold,
                &self.send,
                &self.delete,
                &self.arn,
                &self.move_task,
            ]);
            let queue = Arc::new(SqsQueue::new(client.clone(), QUEUE, Some(DLQ.into())));
            let dlq = Arc::new(SqsQueue::new(client, DLQ, None));
            let tools = DeadLetters::new(queue.clone(), dlq.clone(), Arc::new(MemoryLedger::new()));
            redrive(&method, None, &queue, &dlq, &tools).await.unwrap()
        }
    }

    fn move_task_accepted() -> Rule {
        mock!(Client::start_message_move_task).then_output(|| {
            StartMessageMoveTaskOutput::builder()
                .task_handle("task-1")
                .build()
        })
    }

    #[tokio::test]
    async fn named_ids_never_start_a_move_task() {
        let stubs = Stubs::new(move_task_accepted());
        let only_a = Selection::Ids(["demo:a".to_owned()].into());
        let outcome = stubs.redrive(RedriveMethod::OneByOne(only_a)).await;
        let RedriveOutcome::Moved {
            report,
            native_unavailable,
        } = outcome
        else {
            panic!("expected a one-by-one move, got {outcome:?}");
        };
        assert_eq!((report.moved, report.left), (1, 1));
        assert_eq!(native_unavailable, None);
        assert_eq!(
            stubs.move_task.num_calls(),
            0,
            "StartMessageMoveTask was called"
        );
        assert_eq!(stubs.arn.num_calls(), 0);
        assert_eq!((stubs.send.num_calls(), stubs.delete.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn everything_natively_starts_the_move_task_and_moves_nothing_itself() {
        let stubs = Stubs::new(move_task_accepted());
        let outcome = stubs.redrive(RedriveMethod::NativeAll).await;
        assert_eq!(
            outcome,
            RedriveOutcome::MoveTask {
                task_handle: "task-1".into()
            }
        );
        assert_eq!(stubs.move_task.num_calls(), 1);
        assert_eq!(stubs.receive.num_calls(), 0);
        assert_eq!(stubs.send.num_calls(), 0);
    }

    #[tokio::test]
    async fn without_the_move_task_everything_is_moved_one_by_one() {
        let unsupported = mock!(Client::start_message_move_task).then_error(|| {
            StartMessageMoveTaskError::UnsupportedOperation(
                UnsupportedOperation::builder()
                    .message("not implemented here")
                    .build(),
            )
        });
        let stubs = Stubs::new(unsupported);
        let outcome = stubs.redrive(RedriveMethod::NativeAll).await;
        let RedriveOutcome::Moved {
            report,
            native_unavailable,
        } = outcome
        else {
            panic!("expected the fallback, got {outcome:?}");
        };
        assert_eq!((report.moved, report.left), (2, 0));
        assert!(
            native_unavailable.is_some_and(|why| why.contains("StartMessageMoveTask")),
            "the fallback says why"
        );
        assert_eq!(stubs.move_task.num_calls(), 1);
    }
}
