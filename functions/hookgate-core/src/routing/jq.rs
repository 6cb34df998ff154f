//! jq programs of routes: compiled once with the `jaq` crates, evaluated under a guard that
//! stops them at their deadline or before they exhaust their thread's stack.
//!
//! The guard is jaq's own hook: every step of an evaluation looks its term up through the
//! run-time data ([`HasLut::lut`]), and ours checks, on each step, how much of the thread's
//! stack is used and, every few steps, the CPU time the thread has spent on the evaluation
//! (CPU time, not wall-clock time: a program on a loaded machine, or a Lambda with a fraction
//! of a vCPU, is not failed for time it did not get). Past either limit it unwinds
//! ([`std::panic::resume_unwind`], which prints nothing) back to [`evaluate`]'s
//! `catch_unwind`. Evaluation therefore needs `panic = "unwind"` (the workspace's profiles set
//! it). What the hook cannot see — one native operation that is itself long — is left to the
//! caller's deadline in [`super::runner`].
//!
//! The program sees `.` (the body: parsed JSON, else the body as a JSON string when it is
//! UTF-8, else `null`), `$headers`, `$type`, `$source` and `$event_id`. A few of jaq's
//! built-ins are withheld or replaced: `halt`/`halt_error` (they exit the process), `env` (the
//! process's environment holds credentials), `debug`/`stderr` (they write outside `tracing`),
//! `range/3` (a native loop the guard could not stop: replaced by a definition whose every step
//! is guarded) and `fromjson` (jaq's parser has no depth limit: replaced by one that refuses
//! more than 128 levels, as `serde_json` does).

use std::cell::Cell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use bytes::Bytes;
use jaq_core::box_iter::box_once;
use jaq_core::data::HasLut;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::native::{run, v, Fun};
use jaq_core::{unwrap_valr, Compiler, Ctx, DataT, Exn, Lut, Vars};
use jaq_json::Val;

use crate::envelope::Envelope;

/// The global variables every program may use, in the order [`JqInput::vars`] gives them.
const GLOBAL_VARS: [&str; 4] = ["$headers", "$type", "$source", "$event_id"];

/// Built-ins withheld from programs (see the module doc); `range` and `fromjson` are replaced.
const WITHHELD: &[&str] = &[
    "halt",
    "env",
    "debug_empty",
    "stderr_empty",
    "range",
    "fromjson",
];

/// Definitions of jaq's standard library withheld with the natives they use.
const WITHHELD_DEFS: &[&str] = &["halt", "halt_error", "debug", "stderr"];

/// `range/3` as a definition, so that each of its outputs is a guarded step (jaq's native
/// `range` is a Rust loop: `[range(1e12)]` would run, and allocate, past any deadline).
const PRELUDE: &str = "def range($from; $upto; $by):
  def rec: if ($by > 0 and . < $upto) or ($by < 0 and . > $upto) or ($by == 0 and . != $upto)
    then ., (. + $by | rec) else {}[] end;
  $from | rec;";

/// How deeply nested a value `fromjson` parses, or a transform outputs, may be.
pub const MAX_DEPTH: usize = 128;

/// Stack reserved for each evaluation thread. Only the pages touched are committed.
pub const THREAD_STACK_BYTES: usize = 64 << 20;

/// How much of that stack jq's own recursion may use before it is stopped; the rest is
/// headroom for native operations that recurse over a deep value (`tojson`, `==`, dropping it).
pub const JQ_STACK_BYTES: usize = 16 << 20;

/// The clock is read every this many steps (a power of two) (a step is tens of nanoseconds, a read of the
/// thread's CPU clock a few hundred).
const STEPS_PER_CLOCK_READ: u32 = 64;

/// The CPU time this thread has used (`CLOCK_THREAD_CPUTIME_ID`).
#[cfg(unix)]
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the call writes only to it.
    let failed = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0;
    if failed {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// Elsewhere (hookgate runs on Linux) wall-clock time stands in.
#[cfg(not(unix))]
fn thread_cpu_time() -> Duration {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// The data kind of guarded evaluations: jaq's JSON values, and a [`Guard`] beside the program.
pub struct Guarded;

impl DataT for Guarded {
    type V<'a> = Val;
    type Data<'a> = GuardedData<'a>;
}

/// The run-time data of one evaluation: the program's look-up table and its guard.
#[derive(Clone)]
pub struct GuardedData<'a> {
    lut: &'a Lut<Guarded>,
    guard: &'a Guard,
}

impl<'a> HasLut<'a, Guarded> for GuardedData<'a> {
    fn lut(&self) -> &'a Lut<Guarded> {
        self.guard.step();
        self.lut
    }
}

/// Why the guard stopped an evaluation: the payload it unwinds with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Deadline,
    Stack,
}

/// The limits of one evaluation, checked on every step.
struct Guard {
    /// The thread's CPU time past which the evaluation stops.
    deadline: Duration,
    steps: Cell<u32>,
    /// The lowest stack address jq's recursion may reach (stacks grow down on every target
    /// hookgate runs on).
    stack_floor: usize,
}

impl Guard {
    /// A guard for an evaluation of at most `budget` of CPU time on this thread, whose stack
    /// starts near `stack_top`.
    fn new(budget: Duration, stack_top: usize) -> Self {
        Self {
            deadline: thread_cpu_time() + budget,
            steps: Cell::new(0),
            stack_floor: stack_top.saturating_sub(JQ_STACK_BYTES),
        }
    }

    fn step(&self) {
        let marker = 0u8;
        if (&marker as *const u8 as usize) < self.stack_floor {
            panic::resume_unwind(Box::new(Stop::Stack));
        }
        let steps = self.steps.get().wrapping_add(1);
        self.steps.set(steps);
        if steps & (STEPS_PER_CLOCK_READ - 1) == 0 && thread_cpu_time() >= self.deadline {
            panic::resume_unwind(Box::new(Stop::Deadline));
        }
    }
}

/// A compiled jq program.
pub struct JqProgram {
    filter: jaq_core::Filter<Guarded>,
}

impl fmt::Debug for JqProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JqProgram").finish_non_exhaustive()
    }
}

/// The native filters programs get: jaq's, less [`WITHHELD`], plus the guarded `fromjson`.
fn natives() -> impl Iterator<Item = Fun<Guarded>> {
    let fromjson: Fun<Guarded> = run(("fromjson", v(0), |cv| box_once(fromjson(cv.1))));
    jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .filter(|(name, _, _)| !WITHHELD.contains(name))
        .chain([fromjson])
}

/// `fromjson` with a depth limit: the string must be one JSON value nested at most
/// [`MAX_DEPTH`] deep.
fn fromjson(value: Val) -> Result<Val, Exn<'static, Val>> {
    let fail = |why: String| Exn::from(jaq_core::Error::str(why));
    let text = match &value {
        Val::TStr(b) | Val::BStr(b) => b.as_ref().clone(),
        other => return Err(fail(format!("fromjson: {other} is not a string"))),
    };
    parse_json(&text).ok_or_else(|| {
        fail(format!(
            "fromjson: not one JSON value nested at most {MAX_DEPTH} deep"
        ))
    })
}

/// One standard JSON value, nested at most [`MAX_DEPTH`] deep (`serde_json` checks both, and
/// its limit is 128), as a jaq value; `None` otherwise.
pub fn parse_json(bytes: &[u8]) -> Option<Val> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).ok()?;
    jaq_json::read::parse_single(bytes).ok()
}

impl JqProgram {
    /// Parses and compiles `code`; `Err` is jaq's message, with the column it points at.
    pub fn compile(code: &str) -> Result<Self, String> {
        let arena = Arena::default();
        let prelude = jaq_core::load::parse(PRELUDE, |p| p.defs())
            .into_iter()
            .flatten();
        let defs = prelude
            .chain(jaq_core::defs())
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .filter(|def| !WITHHELD_DEFS.contains(&def.name));
        let modules = Loader::new(defs)
            .load(&arena, File { code, path: () })
            .map_err(|errors| load_errors(code, errors))?;
        let filter = Compiler::default()
            .with_funs(natives())
            .with_global_vars(GLOBAL_VARS)
            .compile(modules)
            .map_err(|errors| {
                let names: Vec<String> = errors
                    .into_iter()
                    .flat_map(|(_, undefined)| undefined)
                    .map(|(name, kind)| {
                        let arity = match kind {
                            jaq_core::compile::Undefined::Filter(n) => format!("/{n}"),
                            _ => String::new(),
                        };
                        format!(
                            "undefined {} `{name}{arity}`{}",
                            kind.as_str(),
                            at(code, name)
                        )
                    })
                    .collect();
                names.join("; ")
            })?;
        Ok(Self { filter })
    }
}

/// jaq's lex and parse errors as one message.
fn load_errors(code: &str, errors: jaq_core::load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error;
    let mut messages = Vec::new();
    for (_, error) in errors {
        match error {
            Error::Io(io) => messages.extend(
                io.into_iter()
                    .map(|(path, why)| format!("cannot load module {path:?}: {why}")),
            ),
            Error::Lex(lex) => messages.extend(lex.into_iter().map(|(expect, rest)| {
                use jaq_core::load::lex::Expect;
                let what = match expect {
                    Expect::Delim(d) if !["(", "[", "{", "\""].contains(&d) => {
                        format!("closing delimiter for {d}")
                    }
                    other => other.as_str().to_owned(),
                };
                format!("expected {what}{}", at(code, rest))
            })),
            Error::Parse(parse) => messages.extend(parse.into_iter().map(|(expect, found)| {
                let found = if found.is_empty() {
                    " at the end".to_owned()
                } else {
                    format!(", found `{found}`{}", at(code, found))
                };
                format!("expected {}{found}", expect.as_str())
            })),
        }
    }
    messages.join("; ")
}

/// " at column N" when `part` is a slice of `code` (jaq's errors point into the source).
fn at(code: &str, part: &str) -> String {
    let start = code.as_ptr() as usize;
    let offset = (part.as_ptr() as usize).wrapping_sub(start);
    if offset <= code.len() {
        let column = code
            .get(..offset)
            .map_or(offset, |before| before.chars().count())
            + 1;
        format!(" at column {column}")
    } else {
        String::new()
    }
}

/// What a program is given: the body as `.` and the event's variables.
#[derive(Clone)]
pub struct JqInput {
    body: Val,
    vars: [Val; 4],
}

impl fmt::Debug for JqInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JqInput").finish_non_exhaustive()
    }
}

impl JqInput {
    /// The input of `event`'s programs: its body parsed once, shared by all of them.
    pub fn new(event: &Envelope) -> Self {
        let body =
            parse_json(&event.body).unwrap_or_else(|| match std::str::from_utf8(&event.body) {
                Ok(text) => Val::from(text.to_owned()),
                Err(_) => Val::Null,
            });
        let headers = event
            .headers
            .iter()
            .map(|(k, v)| (Val::from(k.clone()), Val::from(v.clone())));
        Self {
            body,
            vars: [
                Val::obj(headers.collect()),
                Val::from(event.event_type.clone()),
                Val::from(event.source.as_str().to_owned()),
                Val::from(event.event_id.as_str().to_owned()),
            ],
        }
    }
}

/// What an evaluation must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A filter's verdict: its first output, truthy or not (no output: not).
    Verdict,
    /// A transform's one output, compact JSON of at most this many bytes.
    OneOutput {
        /// The largest output accepted.
        max_bytes: usize,
    },
}

/// What an evaluation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A filter's verdict.
    Verdict(bool),
    /// A transform's output, compact JSON.
    Output(Bytes),
}

/// Why an evaluation produced no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JqError {
    /// The program raised an error.
    #[error("error: {0}")]
    Raised(String),
    /// The time budget was spent (CPU time), or the caller stopped waiting.
    #[error("exceeded its time budget of {} ms", .0.as_millis())]
    Deadline(Duration),
    /// jq's recursion went deeper than the stack allows.
    #[error("recursed too deeply (more than {} MiB of stack)", JQ_STACK_BYTES >> 20)]
    Stack,
    /// A transform produced no output.
    #[error("produced no output (a transform must produce exactly one)")]
    NoOutput,
    /// A transform produced more than one output.
    #[error("produced more than one output (a transform must produce exactly one)")]
    SeveralOutputs,
    /// A transform's output is larger than the budget.
    #[error("output exceeds {0} bytes")]
    OutputTooLarge(usize),
    /// A transform's output is not JSON (NaN, a byte string, invalid UTF-8) or is nested too
    /// deeply.
    #[error("output is not JSON nested at most {MAX_DEPTH} deep: {0}")]
    NotJson(String),
    /// Evaluation could not run (no thread, too many runaways) or failed inside jaq.
    #[error("{0}")]
    Unavailable(String),
}

/// A jq error as its message: `error("x")` says `x`, not `"x"`.
fn raised(error: impl fmt::Display) -> JqError {
    let text = error.to_string();
    JqError::Raised(serde_json::from_str::<String>(&text).unwrap_or(text))
}

/// Evaluates `program` on `input` on this thread, for at most `budget` of its CPU time;
/// `stack_top` is an address
/// near the top of this thread's stack. Never panics: the guard's stops and any panic inside
/// jaq become errors.
pub fn evaluate(
    program: &JqProgram,
    input: &JqInput,
    want: Want,
    budget: Duration,
    stack_top: usize,
) -> Result<Answer, JqError> {
    let guard = Guard::new(budget, stack_top);
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let data = GuardedData {
            lut: &program.filter.lut,
            guard: &guard,
        };
        let ctx = Ctx::<Guarded>::new(data, Vars::new(input.vars.iter().cloned()));
        let mut outputs = program
            .filter
            .id
            .run((ctx, input.body.clone()))
            .map(unwrap_valr);
        match want {
            Want::Verdict => match outputs.next() {
                None => Ok(Answer::Verdict(false)),
                Some(Ok(v)) => Ok(Answer::Verdict(!matches!(v, Val::Null | Val::Bool(false)))),
                Some(Err(e)) => Err(raised(e)),
            },
            Want::OneOutput { max_bytes } => {
                let first = match outputs.next() {
                    None => return Err(JqError::NoOutput),
                    Some(Ok(v)) => v,
                    Some(Err(e)) => return Err(raised(e)),
                };
                match outputs.next() {
                    None => {}
                    Some(Ok(_)) => return Err(JqError::SeveralOutputs),
                    Some(Err(e)) => return Err(raised(e)),
                }
                serialise(&first, max_bytes).map(Answer::Output)
            }
        }
    }));
    match result {
        Ok(answer) => answer,
        Err(payload) => Err(match payload.downcast_ref::<Stop>() {
            Some(Stop::Deadline) => JqError::Deadline(budget),
            Some(Stop::Stack) => JqError::Stack,
            None => JqError::Unavailable("jq failed inside the interpreter".into()),
        }),
    }
}

/// A transform's output as compact JSON: at most `max_bytes`, nested at most [`MAX_DEPTH`],
/// standard JSON. The value is first walked without recursion (a deep value would overflow
/// the writer's stack; a widely shared one would make it write for ever), then written into a
/// buffer that refuses to grow past `max_bytes`.
fn serialise(value: &Val, max_bytes: usize) -> Result<Bytes, JqError> {
    let mut pending = vec![(value, 1usize)];
    let mut nodes = 0usize;
    while let Some((v, depth)) = pending.pop() {
        nodes += 1;
        if nodes > max_bytes {
            return Err(JqError::OutputTooLarge(max_bytes));
        }
        if depth > MAX_DEPTH {
            return Err(JqError::NotJson(format!(
                "nested more than {MAX_DEPTH} deep"
            )));
        }
        match v {
            Val::Arr(items) => pending.extend(items.iter().map(|i| (i, depth + 1))),
            Val::Obj(map) => pending.extend(
                map.iter()
                    .flat_map(|(k, v)| [(k, depth + 1), (v, depth + 1)]),
            ),
            _ => {}
        }
    }
    let mut out = Capped {
        bytes: Vec::new(),
        max: max_bytes,
    };
    let pp = jaq_json::write::Pp::default();
    if jaq_json::write::write(&mut out, &pp, 0, value).is_err() {
        return Err(JqError::OutputTooLarge(max_bytes));
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(&out.bytes)
        .map_err(|e| JqError::NotJson(e.to_string()))?;
    Ok(Bytes::from(out.bytes))
}

/// A buffer that refuses to grow past `max` bytes.
struct Capped {
    bytes: Vec<u8>,
    max: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.max {
            return Err(std::io::Error::other("output budget exceeded"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
