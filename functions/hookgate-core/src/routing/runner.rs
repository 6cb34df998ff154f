//! Where jq programs run: dedicated threads with a large stack, so that a caller never waits
//! past an evaluation's deadline and no evaluation can take the process down with it.
//!
//! Each evaluation is handed to an idle worker thread (one is started when none is idle). The
//! guard in [`super::jq`] stops it once it has used its budget of CPU time; the caller waits at
//! most [`patience`] of wall-clock time (twice the budget plus [`GRACE`]: room for a loaded
//! machine to schedule the thread, and for the guard's own stop to arrive with its precise
//! reason). The guard stops nearly every runaway there and then, and the worker goes back to
//! the idle pool. One that does not answer in time is inside a single long native operation
//! (`"x" * 1e9`, serialising a huge value) or starved of CPU; it is abandoned — the caller
//! gets [`JqError::Deadline`] — and its thread exits when the evaluation ends. At most [`MAX_RUNAWAYS`] abandoned threads may exist at once; while that many do,
//! evaluations fail at once instead of adding more.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::jq::{self, Answer, JqError, JqInput, JqProgram, Want};

/// What a caller's patience adds to twice the budget.
pub const GRACE: Duration = Duration::from_millis(50);

/// The longest a caller waits for an evaluation of `budget` (CPU time): `2 × budget + GRACE`
/// of wall-clock time.
pub fn patience(budget: Duration) -> Duration {
    budget.saturating_mul(2).saturating_add(GRACE)
}

/// Most abandoned evaluation threads alive at once.
pub const MAX_RUNAWAYS: usize = 4;

/// Most idle workers kept for reuse.
const MAX_IDLE: usize = 8;

/// One evaluation, as handed to a worker.
struct Job {
    program: Arc<JqProgram>,
    input: Arc<JqInput>,
    want: Want,
    budget: Duration,
}

/// A worker thread, as its caller holds it.
struct Worker {
    jobs: mpsc::Sender<Job>,
    answers: mpsc::Receiver<Result<Answer, JqError>>,
    abandoned: Arc<AtomicBool>,
}

/// The pool of evaluation threads of one [`super::Routing`].
#[derive(Debug, Default)]
pub struct Runner {
    idle: Mutex<Vec<WorkerSlot>>,
    runaways: Arc<AtomicUsize>,
}

/// [`Worker`] with a `Debug` that shows nothing.
struct WorkerSlot(Worker);

impl std::fmt::Debug for WorkerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Worker")
    }
}

impl Runner {
    /// Abandoned evaluations still running.
    pub fn runaways(&self) -> usize {
        self.runaways.load(Ordering::Acquire)
    }

    /// Evaluates `program` on `input` within `budget` of CPU time, on a worker thread; returns
    /// within [`patience`] whatever happens.
    pub fn evaluate(
        &self,
        program: &Arc<JqProgram>,
        input: &Arc<JqInput>,
        want: Want,
        budget: Duration,
    ) -> Result<Answer, JqError> {
        let deadline = Instant::now() + patience(budget);
        let runaways = self.runaways();
        if runaways >= MAX_RUNAWAYS {
            return Err(JqError::Unavailable(format!(
                "not evaluated: {runaways} earlier jq evaluations overran their budget and are still running"
            )));
        }
        let worker = match self.take_idle() {
            Some(worker) => worker,
            None => self.spawn()?,
        };
        let job = Job {
            program: Arc::clone(program),
            input: Arc::clone(input),
            want,
            budget,
        };
        if worker.jobs.send(job).is_err() {
            return Err(JqError::Unavailable("the jq worker thread ended".into()));
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match worker.answers.recv_timeout(wait) {
            Ok(answer) => {
                self.put_idle(worker);
                answer
            }
            Err(RecvTimeoutError::Timeout) => {
                self.runaways.fetch_add(1, Ordering::AcqRel);
                worker.abandoned.store(true, Ordering::Release);
                tracing::warn!(
                    budget_ms = budget.as_millis() as u64,
                    "a jq evaluation overran its budget inside one native operation; its thread is abandoned"
                );
                Err(JqError::Deadline(budget))
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(JqError::Unavailable("the jq worker thread ended".into()))
            }
        }
    }

    fn take_idle(&self) -> Option<Worker> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.pop().map(|slot| slot.0)
    }

    fn put_idle(&self, worker: Worker) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(WorkerSlot(worker));
        }
    }

    /// Starts a worker thread with [`jq::THREAD_STACK_BYTES`] of stack.
    fn spawn(&self) -> Result<Worker, JqError> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (answer_tx, answers) = mpsc::channel();
        let abandoned = Arc::new(AtomicBool::new(false));
        let runaways = Arc::clone(&self.runaways);
        let flag = Arc::clone(&abandoned);
        std::thread::Builder::new()
            .name("hookgate-jq".into())
            .stack_size(jq::THREAD_STACK_BYTES)
            .spawn(move || work(job_rx, answer_tx, flag, runaways))
            .map_err(|e| JqError::Unavailable(format!("cannot start a jq thread: {e}")))?;
        Ok(Worker {
            jobs,
            answers,
            abandoned,
        })
    }
}

/// A worker thread's loop: evaluate each job, answer, until abandoned or no longer needed.
fn work(
    jobs: mpsc::Receiver<Job>,
    answers: mpsc::Sender<Result<Answer, JqError>>,
    abandoned: Arc<AtomicBool>,
    runaways: Arc<AtomicUsize>,
) {
    let top = 0u8;
    let stack_top = &top as *const u8 as usize;
    // Counted once, by whichever side sees the flag last: the caller sets it after counting.
    let leave = |abandoned: &AtomicBool| {
        if abandoned.swap(false, Ordering::AcqRel) {
            runaways.fetch_sub(1, Ordering::AcqRel);
            true
        } else {
            false
        }
    };
    while let Ok(job) = jobs.recv() {
        let answer = jq::evaluate(&job.program, &job.input, job.want, job.budget, stack_top);
        drop(job);
        if leave(&abandoned) || answers.send(answer).is_err() {
            break;
        }
    }
    leave(&abandoned);
}
