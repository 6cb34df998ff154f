//! `SqsQueue`: the [`Queue`] port on an SQS standard queue.
//!
//! It exists so the receiver and the processor can hand events over durably on AWS with the
//! same semantics `MemoryQueue` gives locally: at-least-once delivery, visibility timeouts,
//! `ApproximateReceiveCount`, and a dead-letter queue. Redrive after `maxReceiveCount` receives
//! is SQS's own (the queue's `RedrivePolicy`, see [`crate::setup::create_queues`]);
//! [`Queue::move_to_dlq`] is the explicit "give up now" path, a send to the DLQ then a delete.
//! A message's X-Ray trace header is its `AWSTraceHeader` message system attribute.
//!
//! Arguments the port rejects (`max` outside 1–10, waits over 20 s, visibility over 12 h,
//! bodies over 1 MiB) are rejected here before any request, with the in-memory queue's errors.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    Message, MessageAttributeValue, MessageSystemAttributeName, MessageSystemAttributeNameForSends,
    MessageSystemAttributeValue, SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use hookgate_core::queue::{
    attributes_size, OutgoingMessage, Queue, QueueError, ReceivedMessage, MAX_SEND_DELAY,
    MAX_VISIBILITY_TIMEOUT, SQS_MAX_MESSAGE_BYTES,
};

/// Most entries in one `SendMessageBatch`.
const BATCH_ENTRIES: usize = 10;

/// Most bytes (bodies and attributes) one `SendMessageBatch` carries here: SQS's historical
/// batch payload limit, whatever the queue's own message limit.
const BATCH_BYTES: usize = 256 * 1024;

/// One message as a batch entry, its id its index in the batch.
fn batch_entry(
    index: usize,
    message: OutgoingMessage,
) -> Result<SendMessageBatchRequestEntry, QueueError> {
    let mut entry = SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(message.body);
    if let Some(delay) = message.delay.filter(|d| !d.is_zero()) {
        if delay > MAX_SEND_DELAY {
            return Err(QueueError::Invalid(
                "a message's delay is at most 15 minutes".into(),
            ));
        }
        entry = entry.delay_seconds(whole_secs(delay));
    }
    for (name, value) in &message.attributes {
        let value = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|e| QueueError::Invalid(format!("message attribute {name}: {e}")))?;
        entry = entry.message_attributes(name, value);
    }
    if let Some(header) = &message.trace_header {
        let value = MessageSystemAttributeValue::builder()
            .data_type("String")
            .string_value(header)
            .build()
            .map_err(|e| QueueError::Invalid(format!("AWSTraceHeader: {e}")))?;
        entry = entry
            .message_system_attributes(MessageSystemAttributeNameForSends::AwsTraceHeader, value);
    }
    entry
        .build()
        .map_err(|e| QueueError::Invalid(format!("batch entry: {e}")))
}

/// Longest long-poll SQS allows.
const MAX_WAIT: Duration = Duration::from_secs(20);

/// The hookgate queue on SQS, with an optional dead-letter queue for [`Queue::move_to_dlq`].
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dlq_url: Option<String>,
}

impl SqsQueue {
    /// A queue at `queue_url`; `dlq_url` is where [`Queue::move_to_dlq`] sends messages.
    pub fn new(client: Client, queue_url: impl Into<String>, dlq_url: Option<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dlq_url,
        }
    }

    /// The queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// The dead-letter queue's URL, if one is configured.
    pub fn dlq_url(&self) -> Option<&str> {
        self.dlq_url.as_deref()
    }

    /// One `SendMessageBatch` of `group` (2-10 messages that fit one): each message's result,
    /// by its index.
    async fn send_group(
        &self,
        group: Vec<(usize, OutgoingMessage)>,
    ) -> Vec<(usize, Result<String, QueueError>)> {
        let indexes: Vec<usize> = group.iter().map(|(i, _)| *i).collect();
        let all = |e: QueueError| indexes.iter().map(|i| (*i, Err(e.clone()))).collect();
        let mut entries = Vec::with_capacity(group.len());
        for (index, message) in group {
            match batch_entry(index, message) {
                Ok(entry) => entries.push(entry),
                Err(e) => return all(e),
            }
        }
        let out = match self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => return all(queue_error("SendMessageBatch", e)),
        };
        let mut results = Vec::with_capacity(indexes.len());
        for ok in out.successful() {
            if let Ok(index) = ok.id().parse::<usize>() {
                results.push((index, Ok(ok.message_id().to_owned())));
            }
        }
        for failed in out.failed() {
            if let Ok(index) = failed.id().parse::<usize>() {
                let message = format!(
                    "SQS SendMessageBatch entry: {} {}",
                    failed.code(),
                    failed.message().unwrap_or_default()
                );
                let error = if failed.sender_fault() {
                    QueueError::Invalid(message)
                } else {
                    QueueError::Unavailable(message)
                };
                results.push((index, Err(error)));
            }
        }
        for index in &indexes {
            if !results.iter().any(|(i, _)| i == index) {
                results.push((
                    *index,
                    Err(QueueError::Unavailable(
                        "SendMessageBatch answered nothing for this entry".into(),
                    )),
                ));
            }
        }
        results
    }

    async fn send_to(
        &self,
        url: &str,
        body: String,
        attributes: &BTreeMap<String, String>,
        trace_header: Option<&str>,
        delay: Option<Duration>,
    ) -> Result<String, QueueError> {
        let size = body.len() + attributes_size(attributes);
        if size > SQS_MAX_MESSAGE_BYTES {
            return Err(QueueError::TooLarge(size));
        }
        let mut request = self.client.send_message().queue_url(url).message_body(body);
        if let Some(delay) = delay.filter(|d| !d.is_zero()) {
            if delay > MAX_SEND_DELAY {
                return Err(QueueError::Invalid(
                    "a message's delay is at most 15 minutes".into(),
                ));
            }
            // SQS takes whole seconds: round up, so a copy is never visible before it is due.
            request = request.delay_seconds(whole_secs(delay));
        }
        for (name, value) in attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| QueueError::Invalid(format!("message attribute {name}: {e}")))?;
            request = request.message_attributes(name, value);
        }
        if let Some(header) = trace_header {
            let value = MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(header)
                .build()
                .map_err(|e| QueueError::Invalid(format!("AWSTraceHeader: {e}")))?;
            request = request.message_system_attributes(
                MessageSystemAttributeNameForSends::AwsTraceHeader,
                value,
            );
        }
        let out = request
            .send()
            .await
            .map_err(|e| queue_error("SendMessage", e))?;
        out.message_id
            .ok_or_else(|| QueueError::Unavailable("SendMessage returned no message id".into()))
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, message: OutgoingMessage) -> Result<String, QueueError> {
        self.send_to(
            &self.queue_url,
            message.body,
            &message.attributes,
            message.trace_header.as_deref(),
            message.delay,
        )
        .await
    }

    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Vec<Result<String, QueueError>> {
        let mut results: Vec<Option<Result<String, QueueError>>> =
            (0..messages.len()).map(|_| None).collect();
        // Groups of at most ten that fit a batch; a message too big to share one goes alone.
        let mut groups: Vec<Vec<(usize, OutgoingMessage)>> = Vec::new();
        let mut bytes = 0;
        for (index, message) in messages.into_iter().enumerate() {
            let size = message.size();
            let fits = groups
                .last()
                .is_some_and(|g| g.len() < BATCH_ENTRIES && bytes + size <= BATCH_BYTES);
            if !fits {
                groups.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            if let Some(group) = groups.last_mut() {
                group.push((index, message));
            }
        }
        for group in groups {
            if group.len() == 1 {
                for (index, message) in group {
                    results[index] = Some(self.send(message).await);
                }
                continue;
            }
            for (index, result) in self.send_group(group).await {
                results[index] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(QueueError::Unavailable("not sent".into()))))
            .collect()
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        if !(1..=10).contains(&max) || wait > MAX_WAIT {
            return Err(QueueError::Invalid(
                "receive takes 1-10 messages and waits at most 20 s".into(),
            ));
        }
        let max = i32::try_from(max).unwrap_or(10);
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max)
            .wait_time_seconds(whole_secs(wait))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
            .message_attribute_names("All")
            .customize()
            // A long poll waits up to `wait` before SQS answers: the attempt budget adds it.
            .config_override(aws_sdk_sqs::config::Builder::default().timeout_config(
                crate::budget::long_poll_timeouts(Duration::from_secs(
                    u64::try_from(whole_secs(wait)).unwrap_or(20),
                )),
            ))
            .send()
            .await
            .map_err(|e| queue_error("ReceiveMessage", e))?;
        out.messages
            .unwrap_or_default()
            .into_iter()
            .map(received_from_sqs)
            .collect()
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        if timeout > MAX_VISIBILITY_TIMEOUT {
            return Err(QueueError::Invalid(
                "visibility timeout is at most 12 h".into(),
            ));
        }
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(whole_secs(timeout))
            .send()
            .await
            .map_err(|e| match queue_error("ChangeMessageVisibility", e) {
                QueueError::InvalidReceipt(_) => QueueError::InvalidReceipt(receipt_handle.into()),
                other => other,
            })?;
        Ok(())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        let result = self
            .client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match queue_error("DeleteMessage", e) {
                // The message is gone already (deleted, or moved to the DLQ by redrive): the
                // port's delete is idempotent, as MemoryQueue's is.
                QueueError::InvalidReceipt(msg) => {
                    tracing::debug!(%msg, "delete of a message no longer in the queue");
                    Ok(())
                }
                other => Err(other),
            },
        }
    }

    async fn move_to_dlq(&self, message: &ReceivedMessage) -> Result<(), QueueError> {
        let dlq = self
            .dlq_url
            .as_deref()
            .ok_or(QueueError::NoDeadLetterQueue)?;
        self.send_to(
            dlq,
            message.body.clone(),
            &message.attributes,
            message.trace_header.as_deref(),
            None,
        )
        .await?;
        self.delete(&message.receipt_handle).await
    }

    async fn purge(&self) -> Result<(), QueueError> {
        self.client
            .purge_queue()
            .queue_url(&self.queue_url)
            .send()
            .await
            .map_err(|e| queue_error("PurgeQueue", e))?;
        Ok(())
    }
}

impl SqsQueue {
    /// Asks SQS to move every message of this queue (a DLQ) back to `destination` with
    /// `StartMessageMoveTask`, at most `rate` messages per second. Returns the task handle.
    /// Endpoints that do not implement it (moto) answer an error: callers fall back to
    /// `hookgate_core::dlq::DeadLetters::redrive`.
    pub async fn start_message_move_task(
        &self,
        destination: &SqsQueue,
        rate: Option<u32>,
    ) -> Result<String, QueueError> {
        let source_arn = self.queue_arn().await?;
        let destination_arn = destination.queue_arn().await?;
        let mut request = self
            .client
            .start_message_move_task()
            .source_arn(source_arn)
            .destination_arn(destination_arn);
        if let Some(rate) = rate {
            request =
                request.max_number_of_messages_per_second(i32::try_from(rate).unwrap_or(i32::MAX));
        }
        let out = request
            .send()
            .await
            .map_err(|e| queue_error("StartMessageMoveTask", e))?;
        Ok(out.task_handle.unwrap_or_default())
    }

    /// The `maxReceiveCount` of this queue's `RedrivePolicy`: after how many receives SQS moves
    /// a message to the DLQ; `None` for a queue without a redrive policy.
    pub async fn max_receive_count(&self) -> Result<Option<u32>, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| queue_error("GetQueueAttributes", e))?;
        let Some(policy) = out
            .attributes
            .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy))
        else {
            return Ok(None);
        };
        parse_max_receive_count(&policy).map(Some)
    }

    async fn queue_arn(&self) -> Result<String, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| queue_error("GetQueueAttributes", e))?;
        out.attributes
            .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .ok_or_else(|| QueueError::Unavailable("the queue has no QueueArn attribute".into()))
    }
}

/// `maxReceiveCount` from a `RedrivePolicy` document (SQS gives it as a number or, in older
/// answers, as a string).
fn parse_max_receive_count(policy: &str) -> Result<u32, QueueError> {
    let bad = || QueueError::Invalid(format!("RedrivePolicy without a maxReceiveCount: {policy}"));
    let value: serde_json::Value = serde_json::from_str(policy).map_err(|_| bad())?;
    match &value["maxReceiveCount"] {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(bad)
}

/// `d` in whole seconds, rounded up (SQS counts in seconds; never wait or hide less than asked).
fn whole_secs(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

fn received_from_sqs(m: Message) -> Result<ReceivedMessage, QueueError> {
    let trace_header = m
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::AwsTraceHeader))
        .cloned();
    let receive_count = m
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| {
            QueueError::Unavailable("received a message without ApproximateReceiveCount".into())
        })?;
    let attributes = m
        .message_attributes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, value)| value.string_value.map(|v| (name, v)))
        .collect();
    Ok(ReceivedMessage {
        message_id: m
            .message_id
            .ok_or_else(|| QueueError::Unavailable("received a message without an id".into()))?,
        receipt_handle: m.receipt_handle.ok_or_else(|| {
            QueueError::Unavailable("received a message without a receipt handle".into())
        })?,
        body: m.body.unwrap_or_default(),
        receive_count,
        attributes,
        trace_header,
    })
}

/// Maps an SQS error to the port's: a receipt that names no in-flight message is
/// `InvalidReceipt`, a request SQS rejects as malformed is `Invalid`, anything else (network,
/// throttling, 5xx, a missing queue) is `Unavailable`.
fn queue_error<E, R>(op: &str, err: SdkError<E, R>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + 'static,
{
    let message = format!("SQS {op}: {}", crate::error_text::one_line(&err));
    let code = match &err {
        SdkError::ServiceError(se) => se.err().code().unwrap_or_default().to_owned(),
        _ => return QueueError::Unavailable(message),
    };
    // SQS's JSON protocol may prefix codes (`AWS.SimpleQueueService.…`) or suffix them
    // (`…Exception`); compare the bare name.
    let bare = code.rsplit(['.', '#']).next().unwrap_or_default();
    let bare = bare.strip_suffix("Exception").unwrap_or(bare);
    match bare {
        "ReceiptHandleIsInvalid" | "MessageNotInflight" => QueueError::InvalidReceipt(message),
        "InvalidParameterValue"
        | "InvalidMessageContents"
        | "InvalidAttributeName"
        | "InvalidAttributeValue"
        | "MissingParameter" => QueueError::Invalid(message),
        _ => QueueError::Unavailable(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_entry_carries_the_message_its_delay_attributes_and_trace_header() {
        let message = OutgoingMessage {
            body: "hello".into(),
            attributes: BTreeMap::from([("event_id".to_owned(), "a:1".to_owned())]),
            trace_header: Some("Root=1-abc".into()),
            delay: Some(Duration::from_millis(1_500)),
        };
        let entry = batch_entry(3, message).unwrap();
        assert_eq!(entry.id(), "3");
        assert_eq!(entry.message_body(), "hello");
        assert_eq!(entry.delay_seconds(), Some(2), "rounded up");
        assert_eq!(
            entry.message_attributes().unwrap()["event_id"].string_value(),
            Some("a:1")
        );
        assert_eq!(
            entry.message_system_attributes().unwrap()
                [&MessageSystemAttributeNameForSends::AwsTraceHeader]
                .string_value(),
            Some("Root=1-abc")
        );
        let too_late = OutgoingMessage {
            delay: Some(Duration::from_secs(16 * 60)),
            ..OutgoingMessage {
                body: String::new(),
                attributes: BTreeMap::new(),
                trace_header: None,
                delay: None,
            }
        };
        assert!(matches!(
            batch_entry(0, too_late),
            Err(QueueError::Invalid(_))
        ));
    }

    #[test]
    fn durations_round_up_to_seconds() {
        assert_eq!(whole_secs(Duration::ZERO), 0);
        assert_eq!(whole_secs(Duration::from_millis(1)), 1);
        assert_eq!(whole_secs(Duration::from_secs(20)), 20);
        assert_eq!(whole_secs(Duration::from_millis(1_500)), 2);
    }

    #[test]
    fn redrive_policies_give_their_max_receive_count() {
        let arn = "arn:aws:sqs:us-east-1:123456789012:q-dlq";
        for policy in [
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":5}}"#),
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"5"}}"#),
        ] {
            assert_eq!(parse_max_receive_count(&policy), Ok(5), "{policy}");
        }
        for policy in [
            "",
            "{}",
            r#"{"maxReceiveCount":-1}"#,
            r#"{"maxReceiveCount":"x"}"#,
        ] {
            assert!(
                matches!(parse_max_receive_count(policy), Err(QueueError::Invalid(_))),
                "{policy}"
            );
        }
    }

    #[test]
    fn messages_without_receive_count_are_refused() {
        let m = Message::builder()
            .message_id("m")
            .receipt_handle("r")
            .body("b")
            .build();
        assert!(matches!(
            received_from_sqs(m),
            Err(QueueError::Unavailable(_))
        ));
        let m = Message::builder()
            .message_id("m")
            .receipt_handle("r")
            .body("b")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
            .message_attributes(
                "k",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("v")
                    .build()
                    .expect("valid attribute"),
            )
            .build();
        let r = received_from_sqs(m).expect("valid message");
        assert_eq!(r.receive_count, 3);
        assert_eq!(r.attributes.get("k").map(String::as_str), Some("v"));
    }
}
