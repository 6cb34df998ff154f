//! The waiting side of `hookgate bench`: reads accepted events' statuses (from the in-process
//! ledger, or through a running stack's status API) until each is processed or dead-lettered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use hookgate_core::{EventId, EventStatus, Ledger};

use super::BenchError;

/// Reads an event's status: from the in-process ledger, or through the status API.
pub(super) enum StatusReader {
    Ledger(Arc<dyn Ledger>),
    Http {
        client: reqwest::Client,
        base: String,
        token: String,
    },
}

impl StatusReader {
    async fn status(&self, id: &str) -> Result<Option<EventStatus>, BenchError> {
        let failed = |e: String| BenchError::Status(id.to_owned(), e);
        match self {
            StatusReader::Ledger(ledger) => {
                let id = EventId::parse(id).map_err(|e| failed(e.to_string()))?;
                let record = ledger.get(&id).await.map_err(|e| failed(e.to_string()))?;
                Ok(record.map(|r| r.status))
            }
            StatusReader::Http {
                client,
                base,
                token,
            } => {
                let response = client
                    .get(format!("{base}/events/{id}"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                match response.status().as_u16() {
                    404 => Ok(None),
                    200 => {
                        let json: serde_json::Value =
                            response.json().await.map_err(|e| failed(e.to_string()))?;
                        let status = json.get("status").cloned().unwrap_or_default();
                        serde_json::from_value(status)
                            .map(Some)
                            .map_err(|e| failed(e.to_string()))
                    }
                    code => Err(failed(format!("the status API answered {code}"))),
                }
            }
        }
    }
}

/// What waiting found.
#[derive(Default)]
pub(super) struct Finished {
    pub(super) processed: usize,
    pub(super) dead_lettered: usize,
    pub(super) unfinished: usize,
}

/// Waits until every id is processed or dead-lettered, or `deadline` passes. Ids are checked in
/// the order they were accepted, a window at a time from the oldest not yet finished, so each
/// event is read about once however long the wait.
pub(super) async fn wait_processed(
    reader: &StatusReader,
    ids: &[String],
    deadline: Instant,
) -> Result<Finished, BenchError> {
    const WINDOW: usize = 64;
    let mut finished = Finished::default();
    let mut done = 0;
    while done < ids.len() {
        let window = &ids[done..ids.len().min(done + WINDOW)];
        let statuses: Vec<Option<EventStatus>> = stream::iter(window)
            .map(|id| reader.status(id))
            .buffered(16)
            .try_collect()
            .await?;
        let mut advanced = 0;
        for status in statuses {
            match status {
                Some(EventStatus::Processed) => finished.processed += 1,
                Some(EventStatus::DeadLettered) => finished.dead_lettered += 1,
                _ => break,
            }
            advanced += 1;
        }
        done += advanced;
        if advanced < window.len() {
            if Instant::now() >= deadline {
                finished.unfinished = ids.len() - done;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Ok(finished)
}
