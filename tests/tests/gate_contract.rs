//! The `DestinationGate` contract: one suite, run against `MemoryGate` and against
//! `DynamoDbGate` on moto, so the local stack and AWS answer alike.
//!
//! Each test takes two gates on the same state: the same `MemoryGate` twice in memory, and on
//! moto two `DynamoDbGate`s on one table through two separate DynamoDB clients (two SDK
//! configurations, two connection pools) — two processors, as far as the table can tell. Time
//! is passed in (`now`), never read from a clock, so windows and cool-downs are exact.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookgate_core::clock::Timestamp;
use hookgate_core::destination_gate::{
    rate_window, BreakerOptions, Circuit, DestinationGate, DestinationHealth, DestinationName,
    RateDecision, RateLimit,
};
use hookgate_core::memory::MemoryGate;

/// Two gates on one shared state.
type Rig = (Arc<dyn DestinationGate>, Arc<dyn DestinationGate>);

fn memory_rig() -> Rig {
    let gate = Arc::new(MemoryGate::new());
    (gate.clone(), gate)
}

/// A ledger table on moto (only the table: the gate needs nothing else).
struct MotoTable {
    endpoint: String,
    config: aws_config::SdkConfig,
    table: String,
}

impl MotoTable {
    fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.config)
    }
}

async fn moto_table() -> Option<MotoTable> {
    let endpoint = hookgate_testkit::moto_endpoint()?;
    let config = hookgate_testkit::moto_sdk_config(&endpoint).await;
    let table = format!("hookgate-gate-{}", uuid::Uuid::new_v4().simple());
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    if let Err(e) = hookgate_aws::create_table(&dynamodb, &table).await {
        panic!("creating table {table} on moto at {endpoint}: {e}");
    }
    Some(MotoTable {
        endpoint,
        config,
        table,
    })
}

async fn moto_rig() -> Option<Rig> {
    let resources = moto_table().await?;
    // A second SDK configuration: its own client, its own connections.
    let other = hookgate_testkit::moto_sdk_config(&resources.endpoint).await;
    let one = hookgate_aws::DynamoDbGate::new(resources.dynamodb(), &resources.table);
    let two =
        hookgate_aws::DynamoDbGate::new(aws_sdk_dynamodb::Client::new(&other), &resources.table);
    Some((Arc::new(one), Arc::new(two)))
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn destination() -> DestinationName {
    DestinationName::parse(&format!(
        "d-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))
    .unwrap()
}

/// A time in the middle of a second, so a window boundary is never hit by accident.
const BASE: Timestamp = Timestamp::from_millis(1_800_000_000_250);

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(BASE.as_millis() + ms)
}

fn limit(s: &str) -> RateLimit {
    s.parse().unwrap()
}

const BREAKER: BreakerOptions = BreakerOptions {
    failures: 3,
    cool_down: Duration::from_secs(60),
};

const LEASE: Duration = Duration::from_secs(30);

/// `d` taken to the open state at `now` (three failures), returning when it may be probed.
async fn open(gate: &dyn DestinationGate, d: &DestinationName, now: Timestamp) -> Timestamp {
    for reason in ["500", "502", "timeout"] {
        gate.record_failure(d, reason, BREAKER, now).await.unwrap();
    }
    let until = now.plus(BREAKER.cool_down);
    assert_eq!(
        gate.health(d).await.unwrap().circuit,
        Circuit::Open { until }
    );
    until
}

// ---------------------------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------------------------

async fn rate_admits_up_to_the_limit_then_waits_for_the_next_window((gate, other): Rig) {
    let d = destination();
    let three = limit("3/s");
    let (_, end) = rate_window(three, at(0));
    assert_eq!(
        gate.take_rate(&d, three, at(0)).await.unwrap(),
        RateDecision::Admit
    );
    assert_eq!(
        other.take_rate(&d, three, at(100)).await.unwrap(),
        RateDecision::Admit
    );
    assert_eq!(
        gate.take_rate(&d, three, at(200)).await.unwrap(),
        RateDecision::Admit
    );
    for now in [at(300), at(749)] {
        assert_eq!(
            other.take_rate(&d, three, now).await.unwrap(),
            RateDecision::WaitUntil(end),
            "the window is full"
        );
    }
    assert_eq!(end, Timestamp::from_millis(1_800_000_001_000));
    // Another destination has a window of its own.
    assert_eq!(
        gate.take_rate(&destination(), three, at(300))
            .await
            .unwrap(),
        RateDecision::Admit
    );
}

async fn a_new_window_admits_again((gate, other): Rig) {
    let d = destination();
    let one = limit("1/m");
    let (_, end) = rate_window(one, at(0));
    assert_eq!(
        gate.take_rate(&d, one, at(0)).await.unwrap(),
        RateDecision::Admit
    );
    assert_eq!(
        other.take_rate(&d, one, at(1)).await.unwrap(),
        RateDecision::WaitUntil(end)
    );
    // The next window starts at `end`: one more there, then full again.
    assert_eq!(
        other.take_rate(&d, one, end).await.unwrap(),
        RateDecision::Admit
    );
    assert_eq!(
        gate.take_rate(&d, one, end.plus(Duration::from_secs(59)))
            .await
            .unwrap(),
        RateDecision::WaitUntil(end.plus(Duration::from_secs(60)))
    );
    // The old window stays full: a late caller is not admitted into it.
    assert_eq!(
        gate.take_rate(&d, one, at(2)).await.unwrap(),
        RateDecision::WaitUntil(end)
    );
}

async fn two_gates_taking_at_once_never_admit_more_than_the_limit((gate, other): Rig) {
    const LIMIT: u32 = 5;
    const WINDOWS: i64 = 4;
    const TAKERS_PER_GATE: usize = 3;
    let d = destination();
    let five = limit("5/s");
    let admitted: Arc<Mutex<BTreeMap<i64, u32>>> = Arc::default();
    let mut takers = tokio::task::JoinSet::new();
    for (g, gate) in [gate, other].into_iter().enumerate() {
        for t in 0..TAKERS_PER_GATE {
            let (gate, d, admitted) = (gate.clone(), d.clone(), admitted.clone());
            takers.spawn(async move {
                for window in 0..WINDOWS {
                    // Twice the limit from each taker, at times spread over the window.
                    for i in 0..(2 * LIMIT as i64) {
                        let now = at(window * 1000 + (i * 37 + (g * 3 + t) as i64 * 11) % 700);
                        if gate.take_rate(&d, five, now).await.unwrap() == RateDecision::Admit {
                            *admitted.lock().unwrap().entry(window).or_default() += 1;
                        }
                    }
                }
            });
        }
    }
    while let Some(done) = takers.join_next().await {
        done.unwrap();
    }
    let admitted = admitted.lock().unwrap().clone();
    // 60 takes per window, exactly the limit admitted in each.
    assert_eq!(
        admitted,
        (0..WINDOWS).map(|w| (w, LIMIT)).collect::<BTreeMap<_, _>>()
    );
}

async fn failures_below_the_threshold_stay_closed((gate, other): Rig) {
    let d = destination();
    assert_eq!(
        gate.health(&d).await.unwrap(),
        DestinationHealth::new(d.clone())
    );
    assert_eq!(
        gate.record_failure(&d, "500 Internal Server Error", BREAKER, at(0))
            .await
            .unwrap(),
        Circuit::Closed
    );
    assert_eq!(
        other
            .record_failure(&d, "connection refused", BREAKER, at(5))
            .await
            .unwrap(),
        Circuit::Closed
    );
    let health = gate.health(&d).await.unwrap();
    assert_eq!(health.circuit, Circuit::Closed);
    assert_eq!(health.consecutive_failures, 2);
    assert_eq!(health.last_failure.as_deref(), Some("connection refused"));
    assert_eq!(health.updated_at, Some(at(5)));
    // A success resets the count: two more failures still leave it closed.
    other.record_success(&d, at(6)).await.unwrap();
    assert_eq!(gate.health(&d).await.unwrap().consecutive_failures, 0);
    for _ in 0..2 {
        gate.record_failure(&d, "503", BREAKER, at(7))
            .await
            .unwrap();
    }
    assert_eq!(gate.health(&d).await.unwrap().circuit, Circuit::Closed);
}

async fn the_threshold_opens_until_now_plus_the_cool_down((gate, other): Rig) {
    let d = destination();
    gate.record_failure(&d, "500", BREAKER, at(0))
        .await
        .unwrap();
    other
        .record_failure(&d, "500", BREAKER, at(1))
        .await
        .unwrap();
    let until = at(2).plus(BREAKER.cool_down);
    assert_eq!(
        gate.record_failure(&d, "502", BREAKER, at(2))
            .await
            .unwrap(),
        Circuit::Open { until }
    );
    let health = other.health(&d).await.unwrap();
    assert_eq!(
        (health.circuit, health.consecutive_failures),
        (Circuit::Open { until }, 3)
    );
    // A delivery sent before it opened fails: counted, the cool-down is not moved.
    assert_eq!(
        other
            .record_failure(&d, "late", BREAKER, at(10))
            .await
            .unwrap(),
        Circuit::Open { until }
    );
    assert_eq!(gate.health(&d).await.unwrap().consecutive_failures, 4);
    // No probe before the cool-down has passed.
    assert!(!gate
        .take_probe(&d, until.minus(Duration::from_millis(1)), LEASE)
        .await
        .unwrap());
    // A closed destination has nothing to probe.
    assert!(!gate.take_probe(&destination(), until, LEASE).await.unwrap());
}

async fn a_threshold_of_one_opens_on_the_first_failure((gate, _): Rig) {
    let d = destination();
    let once = BreakerOptions {
        failures: 1,
        cool_down: Duration::from_secs(5),
    };
    assert_eq!(
        gate.record_failure(&d, "500", once, at(0)).await.unwrap(),
        Circuit::Open { until: at(5_000) }
    );
}

async fn only_one_of_many_concurrent_probes_wins((gate, other): Rig) {
    let d = destination();
    let until = open(&*gate, &d, at(0)).await;
    let mut probes = tokio::task::JoinSet::new();
    for i in 0..10 {
        let gate = if i % 2 == 0 {
            gate.clone()
        } else {
            other.clone()
        };
        let d = d.clone();
        probes.spawn(async move { gate.take_probe(&d, until, LEASE).await.unwrap() });
    }
    let mut won = 0;
    while let Some(w) = probes.join_next().await {
        won += usize::from(w.unwrap());
    }
    assert_eq!(won, 1, "exactly one probe per cool-down");
    let health = other.health(&d).await.unwrap();
    assert_eq!(health.circuit, Circuit::HalfOpen);
    assert_eq!(health.probe_until, Some(until.plus(LEASE)));
    // The probe's lease holds; after it (the prober never reported) one more may probe.
    assert!(!gate
        .take_probe(&d, until.plus(LEASE).minus(Duration::from_millis(1)), LEASE)
        .await
        .unwrap());
    assert!(other
        .take_probe(&d, until.plus(LEASE), LEASE)
        .await
        .unwrap());
    assert!(!gate.take_probe(&d, until.plus(LEASE), LEASE).await.unwrap());
}

async fn a_successful_probe_closes_and_resets((gate, other): Rig) {
    let d = destination();
    let until = open(&*gate, &d, at(0)).await;
    assert!(other.take_probe(&d, until, LEASE).await.unwrap());
    other
        .record_success(&d, until.plus(Duration::from_secs(1)))
        .await
        .unwrap();
    let health = gate.health(&d).await.unwrap();
    assert_eq!(
        (health.circuit, health.consecutive_failures),
        (Circuit::Closed, 0)
    );
    assert_eq!(health.probe_until, None);
    assert_eq!(
        health.last_failure.as_deref(),
        Some("timeout"),
        "kept for the operator"
    );
    // The count starts again from zero.
    for _ in 0..2 {
        assert_eq!(
            gate.record_failure(&d, "500", BREAKER, until.plus(Duration::from_secs(2)))
                .await
                .unwrap(),
            Circuit::Closed
        );
    }
}

async fn a_failed_probe_reopens_for_another_cool_down((gate, other): Rig) {
    let d = destination();
    let until = open(&*gate, &d, at(0)).await;
    assert!(gate.take_probe(&d, until, LEASE).await.unwrap());
    let failed_at = until.plus(Duration::from_secs(3));
    let again = failed_at.plus(BREAKER.cool_down);
    assert_eq!(
        other
            .record_failure(&d, "still 503", BREAKER, failed_at)
            .await
            .unwrap(),
        Circuit::Open { until: again }
    );
    let health = gate.health(&d).await.unwrap();
    assert_eq!(health.circuit, Circuit::Open { until: again });
    assert_eq!(health.probe_until, None);
    assert_eq!(health.consecutive_failures, 4);
    assert!(!gate
        .take_probe(&d, again.minus(Duration::from_millis(1)), LEASE)
        .await
        .unwrap());
    assert!(other.take_probe(&d, again, LEASE).await.unwrap());
}

async fn disabled_holds_until_enabled((gate, other): Rig) {
    let d = destination();
    gate.record_failure(&d, "500", BREAKER, at(0))
        .await
        .unwrap();
    gate.disable(&d, "410 Gone", at(1)).await.unwrap();
    let disabled = Circuit::Disabled {
        since: at(1),
        reason: "410 Gone".into(),
    };
    assert_eq!(other.health(&d).await.unwrap().circuit, disabled);
    // Nothing but enable ends it.
    other.record_success(&d, at(2)).await.unwrap();
    assert_eq!(gate.health(&d).await.unwrap().circuit, disabled);
    assert_eq!(
        other
            .record_failure(&d, "410 Gone", BREAKER, at(3))
            .await
            .unwrap(),
        disabled
    );
    assert!(!gate.take_probe(&d, at(10_000_000), LEASE).await.unwrap());
    // Disabled again: the first time is kept, the reason is the new one.
    other
        .disable(&d, "disabled by an operator", at(4))
        .await
        .unwrap();
    let health = gate.health(&d).await.unwrap();
    assert_eq!(
        health.circuit,
        Circuit::Disabled {
            since: at(1),
            reason: "disabled by an operator".into()
        }
    );
    assert_eq!(health.consecutive_failures, 2);
    other.enable(&d, at(5)).await.unwrap();
    let health = gate.health(&d).await.unwrap();
    assert_eq!(
        (health.circuit, health.consecutive_failures),
        (Circuit::Closed, 0)
    );
    assert_eq!(health.updated_at, Some(at(5)));
    // Disabling a destination never seen before works too.
    let fresh = destination();
    other.disable(&fresh, "operator", at(6)).await.unwrap();
    assert!(matches!(
        gate.health(&fresh).await.unwrap().circuit,
        Circuit::Disabled { .. }
    ));
}

async fn long_reasons_are_clipped((gate, _): Rig) {
    let d = destination();
    let long = "x".repeat(5_000);
    gate.record_failure(&d, &long, BREAKER, at(0))
        .await
        .unwrap();
    gate.disable(&d, &long, at(1)).await.unwrap();
    let health = gate.health(&d).await.unwrap();
    assert_eq!(
        health.last_failure.map(|r| r.len()),
        Some(hookgate_core::destination_gate::MAX_REASON_CHARS)
    );
    let Circuit::Disabled { reason, .. } = health.circuit else {
        panic!("not disabled");
    };
    assert_eq!(
        reason.len(),
        hookgate_core::destination_gate::MAX_REASON_CHARS
    );
}

async fn list_answers_every_name_in_order((gate, other): Rig) {
    let (a, b, c, never) = (destination(), destination(), destination(), destination());
    gate.record_failure(&a, "500", BREAKER, at(0))
        .await
        .unwrap();
    open(&*other, &b, at(1)).await;
    gate.disable(&c, "410 Gone", at(2)).await.unwrap();
    assert!(other.list(&[]).await.unwrap().is_empty());
    let listed = other
        .list(&[c.clone(), never.clone(), a.clone(), b.clone()])
        .await
        .unwrap();
    let summary: Vec<_> = listed
        .iter()
        .map(|h| (h.name.clone(), h.circuit.as_str(), h.consecutive_failures))
        .collect();
    assert_eq!(
        summary,
        [
            (c, "disabled", 0),
            (never.clone(), "closed", 0),
            (a, "closed", 1),
            (b, "open", 3),
        ]
    );
    assert_eq!(listed[1], DestinationHealth::new(never));
    // More names than one round of reads.
    let many: Vec<_> = (0..40).map(|_| destination()).collect();
    gate.disable(&many[33], "x", at(3)).await.unwrap();
    let listed = gate.list(&many).await.unwrap();
    assert_eq!(listed.len(), 40);
    assert!(listed.iter().zip(&many).all(|(h, d)| h.name == *d));
    assert_eq!(listed[33].circuit.as_str(), "disabled");
}

// ---------------------------------------------------------------------------------------------
// Both implementations
// ---------------------------------------------------------------------------------------------

macro_rules! gate_contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::memory_rig()).await;
                }
            )*
        }

        mod moto {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(rig) = super::moto_rig().await else {
                        eprintln!("skipped: no moto");
                        return;
                    };
                    super::$name(rig).await;
                }
            )*
        }
    };
}

gate_contract!(
    rate_admits_up_to_the_limit_then_waits_for_the_next_window,
    a_new_window_admits_again,
    two_gates_taking_at_once_never_admit_more_than_the_limit,
    failures_below_the_threshold_stay_closed,
    the_threshold_opens_until_now_plus_the_cool_down,
    a_threshold_of_one_opens_on_the_first_failure,
    only_one_of_many_concurrent_probes_wins,
    a_successful_probe_closes_and_resets,
    a_failed_probe_reopens_for_another_cool_down,
    disabled_holds_until_enabled,
    long_reasons_are_clipped,
    list_answers_every_name_in_order,
);

// ---------------------------------------------------------------------------------------------
// DynamoDB only: the gate's items are not events
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn dynamodb_gate_items_never_show_up_as_events() {
    let Some(resources) = moto_table().await else {
        eprintln!("skipped: no moto");
        return;
    };
    let gate = hookgate_aws::DynamoDbGate::new(resources.dynamodb(), &resources.table);
    let d = destination();
    gate.take_rate(&d, limit("5/s"), at(0)).await.unwrap();
    gate.record_failure(&d, "500", BREAKER, at(0))
        .await
        .unwrap();
    open(&gate, &destination(), at(0)).await;
    gate.disable(&destination(), "410 Gone", at(0))
        .await
        .unwrap();

    let dynamodb = resources.dynamodb();
    let scanned = dynamodb
        .scan()
        .table_name(&resources.table)
        .send()
        .await
        .unwrap();
    assert_eq!(scanned.count(), 4, "the gate wrote its items");
    for item in scanned.items() {
        assert!(
            !item.contains_key("status") && !item.contains_key("status_shard"),
            "{item:?}"
        );
    }
    // Not in any listing, of any status.
    let ledger = hookgate_aws::DynamoDbLedger::new(dynamodb.clone(), &resources.table);
    let listed = hookgate_core::Ledger::list(&ledger, &Default::default())
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    for status in hookgate_core::EventStatus::ALL {
        let page = hookgate_core::Ledger::list_page(
            &ledger,
            &hookgate_core::ledger::PageQuery {
                destination: None,
                status,
                source: None,
                event_type: None,
                since: None,
                until: None,
                limit: 100,
                cursor: None,
            },
        )
        .await
        .unwrap();
        assert!(page.events.is_empty(), "{status}: {:?}", page.events);
    }
    // Nor in the status index itself (a new table has only the sharded one), nor given a
    // shard by `hookgate setup`'s backfill.
    let scanned = dynamodb
        .scan()
        .table_name(&resources.table)
        .index_name(hookgate_aws::STATUS_SHARD_INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(scanned.count(), 0);
    assert_eq!(
        hookgate_aws::setup::backfill_status_shards(&dynamodb, &resources.table)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn dynamodb_rate_items_expire_after_their_window() {
    let Some(resources) = moto_table().await else {
        eprintln!("skipped: no moto");
        return;
    };
    let gate = hookgate_aws::DynamoDbGate::new(resources.dynamodb(), &resources.table);
    let d = destination();
    let per_minute = limit("10/m");
    gate.take_rate(&d, per_minute, at(0)).await.unwrap();
    let (start, end) = rate_window(per_minute, at(0));
    let item = resources
        .dynamodb()
        .get_item()
        .table_name(&resources.table)
        .key(
            "event_id",
            aws_sdk_dynamodb::types::AttributeValue::S(hookgate_aws::DynamoDbGate::rate_key(
                &d, start,
            )),
        )
        .send()
        .await
        .unwrap()
        .item
        .expect("the window's item");
    let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    // TTL (epoch seconds) a little past the window's end: never while the window counts.
    assert!(expires * 1000 >= end.as_millis(), "{expires}");
    assert!(
        expires * 1000 <= end.plus(Duration::from_secs(120)).as_millis(),
        "{expires}"
    );
    assert_eq!(item["sends"].as_n().unwrap(), "1");
}
