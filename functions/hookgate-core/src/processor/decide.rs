//! The processor's one decision: what a handler's result means for the event and its message.
//!
//! Pure — a function of the result, the message's receive counts and the configured maximum —
//! so every case is a row of a table test, and the stages around it (start, invoke, record,
//! settle) only carry it out.

use std::time::Duration;

use crate::handler::HandlerError;
use crate::ledger::EventStatus;

/// What the handler's call came to, as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// It succeeded.
    Succeeded,
    /// It failed: for good (`permanent`), or to be retried (no sooner than `retry_after`).
    Failed {
        /// Retrying cannot help.
        permanent: bool,
        /// The handler asked for at least this long.
        retry_after: Option<Duration>,
    },
}

impl<T> From<&Result<T, HandlerError>> for Verdict {
    fn from(result: &Result<T, HandlerError>) -> Self {
        match result {
            Ok(_) => Verdict::Succeeded,
            Err(e) => Verdict::Failed {
                permanent: e.permanent,
                retry_after: e.retry_after,
            },
        }
    }
}

/// What happens to the event and its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// `processed`; the message is acknowledged.
    Done,
    /// `failed`; the message comes back after a backoff (at least `retry_after` if the handler
    /// asked for it).
    Retry {
        /// The handler's own minimum delay.
        retry_after: Option<Duration>,
    },
    /// `dead_lettered` on its last allowed receive (counted across re-sent copies): the message
    /// is made visible at once and the queue's redrive policy moves it to the DLQ
    /// (`by_queue`), or — when SQS's own count of this copy is short of the maximum, so the
    /// policy would not — the processor moves it there now.
    Redrive {
        /// This receive.
        receive: u32,
        /// The last one allowed.
        of: u32,
        /// The queue's redrive policy moves it (this copy's own count reached the maximum).
        by_queue: bool,
    },
    /// `dead_lettered` for good: the message is moved to the DLQ now.
    MoveToDlq,
}

/// The decision for `verdict` on receive `receive_count` (counted across re-sent copies) of at
/// most `max_receive_count`, SQS having counted `own_count` receives of this copy.
pub(super) fn decide(
    verdict: Verdict,
    receive_count: u32,
    own_count: u32,
    max_receive_count: u32,
) -> Decision {
    match verdict {
        Verdict::Succeeded => Decision::Done,
        Verdict::Failed {
            permanent: true, ..
        } => Decision::MoveToDlq,
        Verdict::Failed { .. } if receive_count >= max_receive_count => Decision::Redrive {
            receive: receive_count,
            of: max_receive_count,
            by_queue: own_count >= max_receive_count,
        },
        Verdict::Failed { retry_after, .. } => Decision::Retry { retry_after },
    }
}

impl Decision {
    /// The event's status after it.
    pub(super) fn status(self) -> EventStatus {
        match self {
            Decision::Done => EventStatus::Processed,
            Decision::Retry { .. } => EventStatus::Failed,
            Decision::Redrive { .. } | Decision::MoveToDlq => EventStatus::DeadLettered,
        }
    }

    /// What the attempt's history entry says about it, if anything.
    pub(super) fn note(self) -> Option<String> {
        match self {
            Decision::Done | Decision::Retry { .. } => None,
            Decision::MoveToDlq => Some("permanent failure: moved to the DLQ".to_owned()),
            Decision::Redrive {
                receive,
                of,
                by_queue: true,
            } => Some(format!(
                "receive {receive} of {of}: the redrive policy moves it to the DLQ"
            )),
            Decision::Redrive {
                receive,
                of,
                by_queue: false,
            } => Some(format!("receive {receive} of {of}: moved to the DLQ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Verdict = Verdict::Succeeded;
    const RETRY: Verdict = Verdict::Failed {
        permanent: false,
        retry_after: None,
    };
    const RETRY_5S: Verdict = Verdict::Failed {
        permanent: false,
        retry_after: Some(Duration::from_secs(5)),
    };
    const PERMANENT: Verdict = Verdict::Failed {
        permanent: true,
        retry_after: None,
    };
    const PERMANENT_5S: Verdict = Verdict::Failed {
        permanent: true,
        retry_after: Some(Duration::from_secs(5)),
    };

    #[test]
    fn every_case() {
        let redrive = |receive, of| Decision::Redrive {
            receive,
            of,
            by_queue: true,
        };
        let dead_letter = |receive, of| Decision::Redrive {
            receive,
            of,
            by_queue: false,
        };
        let retry = |retry_after| Decision::Retry { retry_after };
        #[rustfmt::skip]
        let table = [
            // verdict,     receive, own, max,  decision
            (OK,            1,       1,   5,    Decision::Done),
            (OK,            5,       5,   5,    Decision::Done),
            (OK,            9,       9,   5,    Decision::Done),
            (RETRY,         1,       1,   5,    retry(None)),
            (RETRY,         4,       4,   5,    retry(None)),
            (RETRY,         5,       5,   5,    redrive(5, 5)),
            // A redriven message's count goes on past the maximum: still the last receive.
            (RETRY,         7,       7,   5,    redrive(7, 5)),
            (RETRY,         1,       1,   1,    redrive(1, 1)),
            // A re-sent copy: SQS's count restarted, the receives before count.
            (RETRY,         4,       1,   5,    retry(None)),
            (RETRY,         5,       1,   5,    dead_letter(5, 5)),
            (RETRY,         8,       2,   8,    dead_letter(8, 8)),
            (RETRY_5S,      1,       1,   5,    retry(Some(Duration::from_secs(5)))),
            // The last receive wins over a retry_after.
            (RETRY_5S,      5,       5,   5,    redrive(5, 5)),
            // Permanent wins over everything, on any receive.
            (PERMANENT,     1,       1,   5,    Decision::MoveToDlq),
            (PERMANENT,     5,       5,   5,    Decision::MoveToDlq),
            (PERMANENT_5S,  2,       1,   5,    Decision::MoveToDlq),
        ];
        for (verdict, receive, own, max, want) in table {
            assert_eq!(
                decide(verdict, receive, own, max),
                want,
                "{verdict:?} {receive} ({own} own)/{max}"
            );
        }
    }

    #[test]
    fn statuses_and_notes() {
        assert_eq!(Decision::Done.status(), EventStatus::Processed);
        assert_eq!(Decision::Done.note(), None);
        let retry = Decision::Retry { retry_after: None };
        assert_eq!((retry.status(), retry.note()), (EventStatus::Failed, None));
        assert_eq!(Decision::MoveToDlq.status(), EventStatus::DeadLettered);
        assert_eq!(
            Decision::MoveToDlq.note().as_deref(),
            Some("permanent failure: moved to the DLQ")
        );
        let redrive = Decision::Redrive {
            receive: 5,
            of: 5,
            by_queue: true,
        };
        assert_eq!(redrive.status(), EventStatus::DeadLettered);
        assert_eq!(
            redrive.note().as_deref(),
            Some("receive 5 of 5: the redrive policy moves it to the DLQ")
        );
        let moved = Decision::Redrive {
            receive: 6,
            of: 6,
            by_queue: false,
        };
        assert_eq!(moved.status(), EventStatus::DeadLettered);
        assert_eq!(
            moved.note().as_deref(),
            Some("receive 6 of 6: moved to the DLQ")
        );
    }

    #[test]
    fn a_handler_result_is_its_verdict() {
        let ok: Result<(), HandlerError> = Ok(());
        assert_eq!(Verdict::from(&ok), OK);
        let err: Result<(), HandlerError> =
            Err(HandlerError::retry_after("busy", Duration::from_secs(5)));
        assert_eq!(Verdict::from(&err), RETRY_5S);
        let err: Result<(), HandlerError> = Err(HandlerError::permanent("bad"));
        assert_eq!(Verdict::from(&err), PERMANENT);
    }
}
