//! A load profile: what the simulation sends, for how long, against which limits.
//!
//! Written in TOML (`hookgate simulate --profile file.toml`) or taken from the built-in
//! [`builtin`] profiles the scenario tests run. Durations are text: `100ms`, `5s`, `5m`, `2h`,
//! `7d`, or sums of them (`10h30m`).
//!
//! **Scale.** A profile runs at `scale` (1 = full scale): every rate is multiplied by it, and so
//! are the limits a level or an aggregate rate runs into — the SQS in-flight limit and the
//! processor's concurrency — so every ratio that decides whether a design hits a wall is the same
//! as at full scale, with `scale` times fewer events to run. The writes of one index partition
//! are counted against the full-scale limit (1,000) over a window of `1/scale` seconds instead of
//! one: the same mean as a scaled limit per second, and the same bursts as at full scale (a
//! limit of 10 writes per second at scale 0.01 would see hot partitions in mere chance
//! collisions). The writes per second of one table partition key (one event id) are not scaled:
//! an event's writes do not grow with the rate.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// What a simulation runs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Its name, shown in the report.
    pub name: String,
    /// How long events arrive.
    #[serde(deserialize_with = "duration")]
    pub duration: Duration,
    /// How long the simulation may go on after the last arrival, for retries to end; it stops
    /// earlier once the queue is empty.
    #[serde(default, deserialize_with = "duration")]
    pub drain: Duration,
    /// The simulated step: arrivals of a step come at its start, then the consumers run.
    #[serde(default = "default_tick", deserialize_with = "duration")]
    pub tick: Duration,
    /// The scale (see the module documentation).
    #[serde(default = "one")]
    pub scale: f64,
    /// The event sources.
    pub sources: Vec<SourceLoad>,
    /// Times each event is sent (1: once; 5: a provider's retry storm).
    #[serde(default = "one_copy")]
    pub copies: u32,
    /// The copies of an event are spread evenly over this long.
    #[serde(default = "default_copies_within", deserialize_with = "duration")]
    pub copies_within: Duration,
    /// The processor's retry delays, one per failed attempt.
    #[serde(default = "default_schedule", deserialize_with = "durations")]
    pub retry_schedule: Vec<Duration>,
    /// How long an event id deduplicates (the ledger keeps its row as long). The run uses at
    /// least the retry schedule's total and an hour: see [`Profile::effective_dedup_window`].
    #[serde(default = "default_dedup_window", deserialize_with = "duration")]
    pub dedup_window: Duration,
    /// How long a provider waits before sending again a request refused `409` or `503`.
    #[serde(default = "default_provider_retry", deserialize_with = "duration")]
    pub provider_retry_after: Duration,
    /// Batches processed at once at full scale (Lambda's concurrency for the processor).
    #[serde(default = "default_concurrency")]
    pub processor_concurrency: u32,
    /// How long one batch takes to process (it sets how many batches a step processes).
    #[serde(default = "default_batch_duration", deserialize_with = "duration")]
    pub batch_duration: Duration,
}

/// One source's load.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceLoad {
    /// The source's name (`[sources.<name>]`).
    pub name: String,
    /// Events per second at full scale.
    pub rate: f64,
    /// When its destination fails every delivery, if ever.
    #[serde(default)]
    pub down: Option<Outage>,
}

/// A period the destination of a source fails every delivery (a retryable error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    /// From this long after the start.
    #[serde(deserialize_with = "duration")]
    pub from: Duration,
    /// Until this long after the start.
    #[serde(deserialize_with = "duration")]
    pub until: Duration,
}

/// A profile that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// Not a profile (TOML or field error).
    #[error("profile does not parse: {0}")]
    Parse(String),
    /// Parsed, but its values cannot run.
    #[error("profile is not valid: {0}")]
    Invalid(String),
    /// Neither a built-in name nor a file.
    #[error("no built-in profile named {0:?} (built in: {1})")]
    Unknown(String, String),
}

impl Profile {
    /// Parses a TOML profile and checks it.
    pub fn from_toml(text: &str) -> Result<Self, ProfileError> {
        let profile: Profile =
            toml::from_str(text).map_err(|e| ProfileError::Parse(e.message().to_owned()))?;
        profile.check()?;
        Ok(profile)
    }

    /// The same profile at `scale`.
    pub fn at_scale(mut self, scale: f64) -> Result<Self, ProfileError> {
        self.scale = scale;
        self.check()?;
        Ok(self)
    }

    /// Refuses values that cannot run.
    pub fn check(&self) -> Result<(), ProfileError> {
        let invalid = |m: &str| Err(ProfileError::Invalid(m.to_owned()));
        if !(self.scale > 0.0 && self.scale <= 1.0) {
            return invalid("scale is in (0, 1]");
        }
        if self.tick.is_zero() || self.tick > Duration::from_secs(60) {
            return invalid("tick is between 1 ms and 60 s");
        }
        if !Duration::from_secs(60)
            .as_millis()
            .is_multiple_of(self.tick.as_millis())
        {
            return invalid("tick divides a minute");
        }
        if self.sources.is_empty() {
            return invalid("a profile has at least one source");
        }
        if self
            .sources
            .iter()
            .any(|s| !(s.rate >= 0.0 && s.rate.is_finite()))
        {
            return invalid("a rate is a non-negative number of events per second");
        }
        if self.copies == 0 {
            return invalid("copies is at least 1");
        }
        if self.retry_schedule.is_empty() {
            return invalid("retry_schedule has at least one delay");
        }
        if self.batch_duration.is_zero() {
            return invalid("batch_duration is more than 0");
        }
        Ok(())
    }

    /// The dedup window the run configures: the profile's, or — if shorter — the retry
    /// schedule's total and [`DEDUP_MARGIN`]. The ledger's row of an event must outlive its
    /// retries (it holds the retry's ticket, the attempts and the lease), so hookgate refuses a
    /// `retry_schedule` longer than `receiver.dedup_window_secs`; a profile with a short window
    /// (to test duplicates) and the default 27 h schedule would otherwise not run at all.
    pub fn effective_dedup_window(&self) -> Duration {
        let schedule: Duration = self.retry_schedule.iter().sum();
        self.dedup_window.max(schedule + DEDUP_MARGIN)
    }

    /// `full` scaled down to this profile's scale, at least `1`.
    pub fn scaled(&self, full: f64) -> f64 {
        (full * self.scale).max(1.0)
    }
}

/// What the run's dedup window keeps beyond the retry schedule's total: time for the attempts
/// themselves and the waits between a copy's due time and its receive.
pub const DEDUP_MARGIN: Duration = Duration::from_secs(3600);

/// Names of the built-in profiles.
pub const BUILTIN: [&str; 3] = ["healthy-10k", "outage-6h", "retry-storm"];

/// A built-in profile, at the scale the test suite runs it.
pub fn builtin(name: &str) -> Result<Profile, ProfileError> {
    let text = match name {
        "healthy-10k" => include_str!("../profiles/healthy-10k.toml"),
        "outage-6h" => include_str!("../profiles/outage-6h.toml"),
        "retry-storm" => include_str!("../profiles/retry-storm.toml"),
        other => return Err(ProfileError::Unknown(other.to_owned(), BUILTIN.join(", "))),
    };
    Profile::from_toml(text)
}

/// Parses `5s`, `5m`, `2h`, `7d`, `100ms`, and sums of them (`10h30m`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return None,
        };
        total = total.checked_add(unit.checked_mul(u32::try_from(n).ok()?)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).ok_or_else(|| {
        serde::de::Error::custom(format!("not a duration: {text:?} (e.g. 5s, 10h30m)"))
    })
}

fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| {
            parse_duration(text).ok_or_else(|| {
                serde::de::Error::custom(format!("not a duration: {text:?} (e.g. 5s, 10h30m)"))
            })
        })
        .collect()
}

fn default_tick() -> Duration {
    Duration::from_secs(1)
}

fn one() -> f64 {
    1.0
}

fn one_copy() -> u32 {
    1
}

fn default_copies_within() -> Duration {
    Duration::from_secs(60)
}

/// Svix's schedule after the first attempt: about 27 h in all.
fn default_schedule() -> Vec<Duration> {
    ["5s", "5m", "30m", "2h", "5h", "10h", "10h"]
        .iter()
        .filter_map(|d| parse_duration(d))
        .collect()
}

fn default_dedup_window() -> Duration {
    Duration::from_secs(7 * 86_400)
}

fn default_provider_retry() -> Duration {
    Duration::from_secs(30)
}

fn default_concurrency() -> u32 {
    1_000
}

fn default_batch_duration() -> Duration {
    Duration::from_millis(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_sum() {
        assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("10h30m"), Some(Duration::from_secs(37_800)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        for bad in ["", "5", "s", "5x", "-5s", "5 s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_builtin_profiles_parse_and_unknown_names_are_refused() {
        for name in BUILTIN {
            let profile = builtin(name).unwrap();
            assert_eq!(profile.name, name);
        }
        assert!(matches!(builtin("nope"), Err(ProfileError::Unknown(..))));
        assert_eq!(
            default_schedule()
                .iter()
                .map(Duration::as_secs)
                .sum::<u64>(),
            5 + 300 + 1800 + 7200 + 18_000 + 36_000 + 36_000
        );
    }

    #[test]
    fn the_dedup_window_covers_the_retry_schedule() {
        let mut profile = builtin("healthy-10k").unwrap();
        profile.dedup_window = Duration::from_secs(900);
        let schedule: Duration = default_schedule().iter().sum();
        assert_eq!(profile.retry_schedule, default_schedule());
        assert_eq!(
            profile.effective_dedup_window(),
            schedule + DEDUP_MARGIN,
            "raised to the schedule's total and the margin"
        );
        profile.dedup_window = Duration::from_secs(7 * 86_400);
        assert_eq!(
            profile.effective_dedup_window(),
            Duration::from_secs(7 * 86_400),
            "a longer one is kept"
        );
    }

    #[test]
    fn a_profile_with_values_that_cannot_run_is_refused() {
        let ok = builtin("healthy-10k").unwrap();
        assert!(matches!(
            ok.clone().at_scale(0.0),
            Err(ProfileError::Invalid(_))
        ));
        assert!(matches!(
            ok.clone().at_scale(2.0),
            Err(ProfileError::Invalid(_))
        ));
        assert!(ok.clone().at_scale(1.0).is_ok());
        let text = r#"
            name = "x"
            duration = "1m"
            tick = "7s"
            [[sources]]
            name = "a"
            rate = 1
        "#;
        assert!(matches!(
            Profile::from_toml(text),
            Err(ProfileError::Invalid(_))
        ));
        assert!(matches!(
            Profile::from_toml("name = \"x\"\nduration = \"soon\"\nsources = []"),
            Err(ProfileError::Parse(_))
        ));
    }
}
