//! What the receiver tests need of the processor: taking an event off the receiver's hands.

use std::time::Duration;

use hookgate_core::ledger::{AttemptStart, StartOutcome};
use hookgate_core::{EventId, Ledger};

/// Takes `id` as the processor's first attempt does (a lease). Until then a repeat of the
/// provider's request is refused as in progress (the receiver cannot tell a claim whose
/// enqueue is still under way from one that is waiting in the queue); from then on it is a
/// duplicate.
pub async fn taken(ledger: &dyn Ledger, id: &EventId) {
    let record = ledger.get(id).await.unwrap().expect("a claimed event");
    let start = AttemptStart {
        destination: None,
        event_id: id.clone(),
        source: record.source.clone(),
        event_type: record.event_type.clone(),
        received_at: record.received_at,
        expires_at: record.expires_at,
        now: record.received_at,
        lease_until: record.received_at.plus(Duration::from_secs(60)),
        lease_token: "taken-by-the-test".into(),
        generation: 0,
        payload: None,
        ticket: None,
    };
    let outcome = ledger.start_attempt(&start).await.unwrap();
    assert_eq!(outcome, StartOutcome::Started { attempt: 1 });
}
