//! The run: the real [`Receiver`] and [`Processor`] (through the local [`EventSource`]) over a
//! [`MemoryLedger`] and [`MemoryQueue`] holding AWS's limits, all reading one [`ManualClock`]
//! that the loop moves forward step by step — so hours pass in seconds.
//!
//! Each step: the step's requests arrive (new events, copies of earlier ones, and providers'
//! retries of refused requests), signed as their provider would, and go through
//! [`Receiver::accept`]; then the processor takes batches, as many as its concurrency allows in
//! a step; then the clock moves. The destination is a handler that fails, retryably, while its
//! source's outage lasts, and records every success, so a run can check each event was
//! delivered exactly once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hookgate_core::clock::{Clock, ManualClock, Timestamp};
use hookgate_core::event_source::{BatchSummary, EventSource};
use hookgate_core::handler::{Context, Handled, Handler, HandlerError, Handlers};
use hookgate_core::memory::{LedgerLimits, MemoryLedger, MemoryQueue, QueueLimits};
use hookgate_core::receiver::{Accepted, IncomingRequest, Rejection};
use hookgate_core::{Config, Envelope, EventId, Processor, Receiver};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::profile::{Outage, Profile};
use crate::report::{Latency, Limits, MinuteRow, Report};

/// The simulated start: 2026-01-01T00:00:00Z.
const START: Timestamp = Timestamp::from_secs(1_767_225_600);

/// Times a provider sends a refused request again before giving up.
const PROVIDER_TRIES: u32 = 10;
/// Warm receiver containers the requests are spread over, in turn.
const RECEIVER_CONTAINERS: usize = 32;

/// A simulation that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration built from the profile is refused.
    #[error("the profile's configuration is refused: {0}")]
    Config(String),
    /// A source's provider cannot sign (no secret).
    #[error("source {0} cannot sign requests")]
    Unsigned(String),
    /// The queue failed a receive.
    #[error("receive failed: {0}")]
    Receive(String),
}

/// The destination: fails while its source's outage lasts, records every success.
#[derive(Debug)]
struct Destination {
    clock: Arc<ManualClock>,
    start: Timestamp,
    outages: HashMap<String, Outage>,
    log: Mutex<Deliveries>,
}

#[derive(Debug, Default)]
struct Deliveries {
    /// Successes per event.
    times: HashMap<EventId, u32>,
    /// Time from acceptance to success, per source, in ms.
    latency_ms: BTreeMap<String, Vec<u64>>,
}

impl Destination {
    fn log(&self) -> MutexGuard<'_, Deliveries> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The handler the processor runs: the destination's side.
struct DestinationHandler(Arc<Destination>);

#[async_trait]
impl Handler for DestinationHandler {
    async fn handle(&self, event: Envelope, _cx: &Context) -> Result<Handled, HandlerError> {
        let d = &self.0;
        let now = d.clock.now();
        let elapsed = now.since(d.start);
        if let Some(outage) = d.outages.get(event.source.as_str()) {
            if elapsed >= outage.from && elapsed < outage.until {
                return Err(HandlerError::retry(
                    "destination unavailable (simulated outage)",
                ));
            }
        }
        let mut log = d.log();
        *log.times.entry(event.event_id.clone()).or_default() += 1;
        let ms = u64::try_from(now.since(event.received_at).as_millis()).unwrap_or(u64::MAX);
        log.latency_ms
            .entry(event.source.as_str().to_owned())
            .or_default()
            .push(ms);
        Ok(Handled::default())
    }
}

/// A request a provider will send at a given time.
#[derive(Debug, Clone)]
struct Send {
    source: usize,
    body: Bytes,
    /// Sends of this request refused so far.
    refused: u32,
}

/// Counts between two report rows.
#[derive(Debug, Default)]
struct Tally {
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    processed: u64,
    retried: u64,
    dead_lettered: u64,
}

/// The configuration the profile runs with, as TOML: one `hmac-sha256` source per load, the
/// processor settled by the profile, payloads not kept (keeping them changes no request count,
/// only memory and time).
fn config_text(profile: &Profile) -> String {
    let mut text = String::new();
    for source in &profile.sources {
        text.push_str(&format!(
            "[sources.{}]\nscheme = \"hmac-sha256\"\nsecrets = [\"simulated-secret-{}\"]\n\n",
            source.name, source.name
        ));
    }
    // The profile's schedule as the processor's own: short delays on visibility, long ones
    // re-sent out of flight (docs/reliability.md).
    let schedule: Vec<String> = profile
        .retry_schedule
        .iter()
        .map(|d| format!("\"{}ms\"", d.as_millis().max(1)))
        .collect();
    text.push_str(&format!(
        "[receiver]\ndedup_window_secs = {dedup}\n\n\
         [processor]\nmax_receive_count = {receives}\nbatch_size = 10\nconcurrency = 10\n\
         wait_time_ms = 0\nbatch_window_ms = 0\nretry_schedule = [{schedule}]\n\n\
         [archive]\nenabled = false\n",
        // At least the schedule's total: hookgate refuses a schedule its ledger rows would not
        // outlive (see `Profile::effective_dedup_window`).
        dedup = profile.effective_dedup_window().as_secs().max(1),
        receives = profile.retry_schedule.len() + 1,
        schedule = schedule.join(", "),
    ));
    text
}

/// The processor configuration a profile runs with (for a caller that wants to see it).
pub fn config_for(profile: &Profile) -> Result<Config, SimError> {
    Config::from_toml(&config_text(profile)).map_err(|e| SimError::Config(e.to_string()))
}

/// The limits `profile` runs against, at its scale.
pub fn limits(profile: &Profile) -> Limits {
    Limits {
        scale: profile.scale,
        max_in_flight: profile.scaled(hookgate_core::memory::SQS_MAX_IN_FLIGHT as f64) as usize,
        index_partition_writes: hookgate_core::memory::DYNAMODB_PARTITION_WRITES_PER_SEC,
        index_window: Duration::from_secs_f64(1.0 / profile.scale),
        table_key_writes_per_sec: hookgate_core::memory::DYNAMODB_PARTITION_WRITES_PER_SEC,
        processor_concurrency: profile.scaled(f64::from(profile.processor_concurrency)) as u32,
    }
}

/// Runs `profile`; `on_minute` sees each row as it is made (to print it as the run goes).
pub async fn run(
    profile: &Profile,
    mut on_minute: impl FnMut(&MinuteRow),
) -> Result<Report, SimError> {
    profile
        .check()
        .map_err(|e| SimError::Config(e.to_string()))?;
    let config = config_for(profile)?;
    let clock = Arc::new(ManualClock::new(START));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let limits = limits(profile);
    let queue_limits = QueueLimits {
        max_in_flight: limits.max_in_flight,
        ..QueueLimits::default()
    };
    let (queue, dlq) = MemoryQueue::with_dlq_limits(
        config.processor.visibility_timeout(),
        config.processor.max_receive_count,
        queue_limits,
        dyn_clock.clone(),
    );
    let ledger = Arc::new(
        MemoryLedger::new()
            .with_limits(LedgerLimits {
                table_key_writes_per_sec: limits.table_key_writes_per_sec,
                index_partition_writes: limits.index_partition_writes,
                index_window: limits.index_window,
            })
            .with_clock(dyn_clock.clone()),
    );
    let destination = Arc::new(Destination {
        clock: clock.clone(),
        start: START,
        outages: profile
            .sources
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.down?)))
            .collect(),
        log: Mutex::default(),
    });
    let handlers = Handlers::new().on("*", "*", DestinationHandler(destination.clone()));
    // Lambda spreads the provider's requests over many warm containers, each remembering only
    // the events it queued itself: a repeat reaches the one that queued its event by chance.
    let receivers: Vec<Receiver> = (0..RECEIVER_CONTAINERS)
        .map(|_| {
            Receiver::new(&config, ledger.clone(), queue.clone()).with_clock(dyn_clock.clone())
        })
        .collect();
    let mut handled: usize = 0;
    let processor = Arc::new(
        Processor::new(&config, ledger.clone(), queue.clone(), handlers).with_clock(dyn_clock),
    );
    let consumer = EventSource::new(queue.clone(), processor);

    let tick = profile.tick;
    let tick_secs = tick.as_secs_f64();
    let ticks_per_minute = (60_000 / tick.as_millis().max(1)) as u64;
    let batches_per_tick =
        f64::from(limits.processor_concurrency) * tick_secs / profile.batch_duration.as_secs_f64();
    let load_ticks = (profile.duration.as_millis() / tick.as_millis()) as u64;
    let last_tick = ((profile.duration + profile.drain).as_millis() / tick.as_millis()) as u64;

    let mut arrivals = vec![0.0_f64; profile.sources.len()];
    let mut due: BTreeMap<Timestamp, Vec<Send>> = BTreeMap::new();
    let mut accepted_ids: HashMap<EventId, usize> = HashMap::new();
    let mut sequence: u64 = 0;
    let mut batch_budget = 0.0_f64;
    let mut tally = Tally::default();
    let mut report = Report {
        profile: profile.name.clone(),
        limits,
        ..Report::default()
    };
    let mut last_ledger = ledger.counters();
    let mut last_receives_at_limit = 0;
    let mut step: u64 = 0;
    while step < last_tick {
        let now = clock.now();
        // 1. Requests: new events (and their later copies), then whatever is due.
        if step < load_ticks {
            for (i, source) in profile.sources.iter().enumerate() {
                arrivals[i] += source.rate * profile.scale * tick_secs;
                while arrivals[i] >= 1.0 {
                    arrivals[i] -= 1.0;
                    sequence += 1;
                    let body = Bytes::from(format!(
                        r#"{{"simulated":true,"source":"{}","n":{sequence}}}"#,
                        source.name
                    ));
                    let send = Send {
                        source: i,
                        body,
                        refused: 0,
                    };
                    for copy in 1..profile.copies {
                        let after = profile.copies_within * copy / profile.copies;
                        due.entry(now.plus(after)).or_default().push(send.clone());
                    }
                    due.entry(now).or_default().push(send);
                }
            }
        }
        while let Some(entry) = due.first_entry() {
            if *entry.key() > now {
                break;
            }
            for send in entry.remove() {
                let name = &profile.sources[send.source].name;
                let receiver = &receivers[handled % RECEIVER_CONTAINERS];
                handled += 1;
                let request = request(receiver, name, send.body.clone())?;
                match receiver.accept(request).await {
                    Ok(Accepted::Queued(id)) => {
                        tally.accepted += 1;
                        accepted_ids.insert(id, send.source);
                    }
                    Ok(Accepted::Duplicate(_)) => tally.duplicates += 1,
                    Ok(Accepted::Handshake(_)) => {}
                    Err(rejection) => {
                        tally.rejected += 1;
                        let retryable = matches!(
                            rejection,
                            Rejection::InProgress
                                | Rejection::LedgerUnavailable
                                | Rejection::QueueUnavailable
                        );
                        if retryable && send.refused + 1 < PROVIDER_TRIES {
                            let again = Send {
                                refused: send.refused + 1,
                                ..send
                            };
                            due.entry(now.plus(profile.provider_retry_after))
                                .or_default()
                                .push(again);
                        }
                    }
                }
            }
        }
        // 2. The processor: as many batches as its concurrency takes in a step.
        batch_budget += batches_per_tick;
        while batch_budget >= 1.0 {
            batch_budget -= 1.0;
            let outcome = consumer
                .poll()
                .await
                .map_err(|e| SimError::Receive(e.to_string()))?;
            if outcome.records.is_empty() {
                batch_budget = batch_budget.min(batches_per_tick);
                break;
            }
            let summary = BatchSummary::of(&outcome, Duration::ZERO);
            tally.processed += summary.processed as u64;
            tally.retried += summary.retried as u64;
            tally.dead_lettered += (summary.dead_lettered + summary.permanently_failed) as u64;
        }
        // 3. Time moves on; a row each simulated minute.
        clock.advance(tick);
        step += 1;
        if step.is_multiple_of(ticks_per_minute) {
            let q = queue.counters();
            let l = ledger.counters();
            let row = MinuteRow {
                minute: step / ticks_per_minute,
                accepted: tally.accepted,
                duplicates: tally.duplicates,
                rejected: tally.rejected,
                processed: tally.processed,
                retried: tally.retried,
                dead_lettered: tally.dead_lettered,
                in_flight: q.in_flight,
                peak_in_flight: q.peak_in_flight,
                oldest_age: q.oldest_age,
                peak_index_partition_writes: l.peak_index_partition_writes,
                peak_index_partition: l.peak_index_partition.clone().unwrap_or_default(),
                table_throttles: l.table_throttles - last_ledger.table_throttles,
                index_throttles: l.index_throttles - last_ledger.index_throttles,
                receives_at_limit: q.receives_at_in_flight_limit - last_receives_at_limit,
            };
            report.peak_in_flight = report.peak_in_flight.max(q.peak_in_flight);
            report.peak_index_partition_writes = report
                .peak_index_partition_writes
                .max(l.peak_index_partition_writes);
            report.peak_table_writes = report.peak_table_writes.max(l.peak_table_writes_per_sec);
            report.rejected += tally.rejected;
            last_receives_at_limit = q.receives_at_in_flight_limit;
            last_ledger = l;
            queue.reset_peaks();
            ledger.reset_peaks();
            tally = Tally::default();
            on_minute(&row);
            report.minutes.push(row);
            // Everything delivered or dead-lettered, nothing more to send: the run is over.
            if step >= load_ticks && queue.is_empty() && due.is_empty() {
                break;
            }
        }
    }

    let q = queue.counters();
    let l = ledger.counters();
    report.simulated = clock.now().since(START);
    report.messages_sent = q.sent;
    report.dlq_messages = dlq.len();
    report.table_throttles = l.table_throttles;
    report.index_throttles = l.index_throttles;
    report.receives_at_limit = q.receives_at_in_flight_limit;
    report.events_accepted = accepted_ids.len() as u64;
    let mut log = destination.log();
    report.events_delivered = log.times.len() as u64;
    report.delivered_more_than_once = log.times.values().filter(|n| **n > 1).count() as u64;
    for source in &profile.sources {
        report.undelivered.insert(source.name.clone(), 0);
    }
    for (id, source) in &accepted_ids {
        if !log.times.contains_key(id) {
            *report
                .undelivered
                .entry(profile.sources[*source].name.clone())
                .or_default() += 1;
        }
    }
    for (source, samples) in &mut log.latency_ms {
        report.latency.insert(source.clone(), Latency::of(samples));
    }
    Ok(report)
}

/// The request `source`'s provider sends with `body`, signed now.
fn request(receiver: &Receiver, source: &str, body: Bytes) -> Result<IncomingRequest, SimError> {
    let signed = receiver
        .sign(source, &body)
        .ok_or_else(|| SimError::Unsigned(source.to_owned()))?;
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in signed {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            return Err(SimError::Unsigned(source.to_owned()));
        };
        headers.insert(name, value);
    }
    Ok(IncomingRequest {
        method: Method::POST,
        source: source.to_owned(),
        headers,
        body,
        trace_header: None,
    })
}
