//! The scale scenarios of issue 18, on the virtual-time simulation of the real cores.
//!
//! Each scenario runs once per test binary (the tests of one scenario share its report) at the
//! scale its built-in profile names (see `profiles/*.toml` and docs/scale.md): rates and the
//! aggregate limits (SQS in-flight, index partition writes/s, processor concurrency) scaled
//! alike, so every ratio that decides a wall is the full-scale one.
//!
//! The assertions are the design's since issue 18: the sharded status index, and the retry
//! schedule that re-sends long delays instead of holding messages in flight. Before it, four of
//! them failed; that output is in docs/scale-before.txt.

use std::sync::OnceLock;
use std::time::Duration;

use hookgate_sim::{builtin, run, Report};

/// Runs the built-in profile `name` (once per process), printing its rows.
fn report(name: &'static str, cell: &'static OnceLock<Report>) -> &'static Report {
    cell.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let profile = builtin(name).expect("a built-in profile");
        let report = runtime
            .block_on(run(&profile, |_| {}))
            .expect("the simulation runs");
        println!("{report}");
        report
    })
}

static HEALTHY: OnceLock<Report> = OnceLock::new();
static OUTAGE: OnceLock<Report> = OnceLock::new();
static STORM: OnceLock<Report> = OnceLock::new();

/// A time to process that nothing but a wall explains.
const P99_BOUND: Duration = Duration::from_secs(1);

fn healthy() -> &'static Report {
    report("healthy-10k", &HEALTHY)
}

fn outage() -> &'static Report {
    report("outage-6h", &OUTAGE)
}

fn storm() -> &'static Report {
    report("retry-storm", &STORM)
}

#[test]
fn healthy_10k_every_event_is_processed_once_quickly_with_in_flight_bounded() {
    let r = healthy();
    // 10,000 events/s for 10 minutes, at the profile's scale.
    let expected = (10_000.0 * r.limits.scale * 600.0).round() as u64;
    assert_eq!(r.events_accepted, expected, "{}", r.summary());
    assert_eq!(r.events_delivered, expected, "{}", r.summary());
    assert_eq!(r.delivered_more_than_once, 0);
    assert_eq!(r.dlq_messages, 0);
    assert_eq!(r.table_throttles, 0, "no hot table key");
    assert!(
        r.peak_in_flight * 10 <= r.limits.max_in_flight,
        "in flight stays under a tenth of the limit: {}",
        r.summary()
    );
    assert_eq!(r.receives_at_limit, 0);
    // docs/scale.md's table line: three table writes per event (claim, lease, finish),
    // 30,000 writes/s at full scale.
    let per_second = (10_000.0 * r.limits.scale).round() as u64;
    assert_eq!(r.peak_table_writes, 3 * per_second, "{}", r.summary());
    for (source, latency) in &r.latency {
        assert!(latency.p99 <= P99_BOUND, "{source}: {latency:?}");
    }
}

#[test]
fn healthy_10k_no_index_partition_is_throttled() {
    let r = healthy();
    assert_eq!(r.index_throttles, 0, "{}", r.summary());
    assert!(
        r.peak_index_partition_writes <= r.limits.index_partition_writes,
        "{}",
        r.summary()
    );
}

#[test]
fn outage_6h_no_event_is_delivered_twice() {
    let r = outage();
    assert!(r.events_accepted > 0);
    assert_eq!(r.delivered_more_than_once, 0, "{}", r.summary());
    assert_eq!(r.table_throttles, 0);
}

#[test]
fn outage_6h_in_flight_stays_far_from_the_limit_and_healthy_sources_are_unaffected() {
    let r = outage();
    assert!(
        r.peak_in_flight * 10 <= r.limits.max_in_flight,
        "{}",
        r.summary()
    );
    assert_eq!(r.receives_at_limit, 0, "{}", r.summary());
    for source in ["shop", "billing"] {
        let latency = r.latency[source];
        assert!(latency.p99 <= P99_BOUND, "{source}: {latency:?}");
        assert_eq!(r.undelivered[source], 0);
    }
    assert_eq!(r.index_throttles, 0, "{}", r.summary());
}

#[test]
fn outage_6h_the_failing_sources_events_are_all_delivered_once_it_recovers() {
    let r = outage();
    assert_eq!(r.undelivered["crm"], 0, "{}", r.summary());
    assert_eq!(r.dlq_messages, 0, "{}", r.summary());
    assert_eq!(r.events_delivered, r.events_accepted);
    // Not before the outage ends (6 h): its events waited for it.
    assert!(
        r.latency["crm"].max >= Duration::from_secs(3600),
        "{:?}",
        r.latency["crm"]
    );
}

#[test]
fn retry_storm_one_enqueue_per_event_and_no_hot_key() {
    let r = storm();
    let events = (2_000.0 * r.limits.scale * 300.0).round() as u64;
    let duplicates: u64 = r.minutes.iter().map(|m| m.duplicates).sum();
    assert_eq!(r.events_accepted, events, "{}", r.summary());
    assert_eq!(r.messages_sent, events, "one enqueue per event");
    assert_eq!(duplicates, 4 * events, "every copy answered duplicate");
    assert_eq!(r.rejected, 0);
    assert_eq!(r.table_throttles, 0, "no hot table key");
    assert_eq!(r.events_delivered, events);
    assert_eq!(r.delivered_more_than_once, 0);
}

#[test]
fn retry_storm_no_index_partition_is_throttled() {
    let r = storm();
    assert_eq!(r.index_throttles, 0, "{}", r.summary());
}
