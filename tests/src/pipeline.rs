//! A ledger, a queue and its DLQ — on the in-memory backends or on moto — for suites that run
//! the processor over a real queue on both.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookgate_core::event_source::EventSource;
use hookgate_core::memory::{MemoryArchive, MemoryLedger, MemoryQueue};
use hookgate_core::queue::{attr, OutgoingMessage};
use hookgate_core::{Archive, Envelope, EventId, EventRecord, EventStatus, Ledger, Queue};

/// A ledger, a queue redriving to its DLQ after `max_receive_count` receives, the DLQ, and
/// the payload archive.
pub struct Pipeline {
    /// The ledger.
    pub ledger: Arc<dyn Ledger>,
    /// The event queue.
    pub queue: Arc<dyn Queue>,
    /// Its dead-letter queue.
    pub dlq: Arc<dyn Queue>,
    /// The payload archive.
    pub archive: Arc<dyn Archive>,
    /// The in-memory archive itself, on the memory backends (to damage objects in tests).
    pub memory_archive: Option<Arc<MemoryArchive>>,
    /// The moto resources, on moto.
    pub moto: Option<crate::MotoResources>,
}

impl Pipeline {
    /// On the in-memory backends.
    pub fn memory(max_receive_count: u32, visibility_timeout: Duration) -> Self {
        let (queue, dlq) = MemoryQueue::with_dlq(visibility_timeout, max_receive_count);
        let archive = Arc::new(MemoryArchive::new());
        Self {
            ledger: Arc::new(MemoryLedger::new()),
            queue,
            dlq,
            archive: archive.clone(),
            memory_archive: Some(archive),
            moto: None,
        }
    }

    /// On fresh moto resources, or `None` without moto (see [`crate::moto_endpoint`]).
    pub async fn moto(max_receive_count: u32, visibility_timeout_secs: u64) -> Option<Self> {
        let endpoint = crate::moto_endpoint()?;
        let r = crate::fresh_resources(&endpoint, max_receive_count, visibility_timeout_secs).await;
        let b = r.backend();
        Some(Self {
            ledger: b.ledger,
            queue: b.queue,
            dlq: Arc::new(r.dlq()),
            archive: Arc::new(r.archive()),
            memory_archive: None,
            moto: Some(r),
        })
    }

    /// Puts `event` on the queue as the receiver would (without a ledger claim).
    ///
    /// # Panics
    /// If the queue refuses it (a harness failure).
    pub async fn enqueue(&self, event: &Envelope) {
        let attributes = BTreeMap::from([(attr::EVENT_ID.to_owned(), event.event_id.to_string())]);
        self.queue
            .send(OutgoingMessage {
                delay: None,
                body: event.to_message(),
                attributes,
                trace_header: None,
            })
            .await
            .expect("enqueue");
    }

    /// Polls `events` until event `id` reaches `status`.
    ///
    /// # Panics
    /// If it has not after 30 s.
    pub async fn poll_until(
        &self,
        events: &EventSource,
        id: &EventId,
        status: EventStatus,
    ) -> EventRecord {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(r) = self.ledger.get(id).await.expect("ledger read") {
                if r.status == status {
                    return r;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{id} never became {status}: {:?}",
                self.ledger.get(id).await
            );
            events.poll_once().await.expect("poll");
        }
    }
}
