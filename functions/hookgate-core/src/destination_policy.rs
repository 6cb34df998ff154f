//! The words shared by routing, delivery and the destination gate: a destination's name, its
//! rate limit and its circuit breaker's options.
//!
//! A leaf: it imports nothing above it, so the configuration (which parses these), the gate
//! (which enforces them) and the processor (which obeys the gate) agree on one definition.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A destination's name: 1–64 characters from `[a-z0-9_-]`, starting with a letter or digit.
/// It names the destination in configuration, in delivery ids (`<event id>@<name>`), in the
/// ledger, in metrics and on the command line.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DestinationName(Arc<str>);

/// A string that cannot name a destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a destination name is 1-64 characters from [a-z0-9_-], starting with a letter or digit")]
pub struct InvalidDestinationName;

impl DestinationName {
    /// Validates `s` as a destination name.
    pub fn parse(s: &str) -> Result<Self, InvalidDestinationName> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(Arc::from(s)))
        } else {
            Err(InvalidDestinationName)
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DestinationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DestinationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl TryFrom<String> for DestinationName {
    type Error = InvalidDestinationName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<DestinationName> for String {
    fn from(n: DestinationName) -> Self {
        n.0.to_string()
    }
}

/// At most `count` sends per `per` to one destination, across every processor: `"50/s"`,
/// `"600/m"`, `"1000/h"`. Counted in fixed windows of `per` (see the gate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Sends allowed per window.
    pub count: u32,
    /// The window: one second, minute or hour.
    pub per: Duration,
}

/// A rate limit that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a rate limit is <count>/s, <count>/m or <count>/h with a count from 1 to 1000000, e.g. \"50/s\"")]
pub struct InvalidRateLimit;

impl FromStr for RateLimit {
    type Err = InvalidRateLimit;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (count, unit) = s.trim().split_once('/').ok_or(InvalidRateLimit)?;
        let count: u32 = count.trim().parse().map_err(|_| InvalidRateLimit)?;
        if count == 0 || count > 1_000_000 {
            return Err(InvalidRateLimit);
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(InvalidRateLimit),
        };
        Ok(Self { count, per })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// When a destination's circuit opens and how long it stays open before one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BreakerOptions {
    /// Consecutive failed deliveries that open the circuit (default 5).
    pub failures: u32,
    /// How long an open circuit waits before one probe delivery (default 60 s).
    pub cool_down: Duration,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        Self {
            failures: 5,
            cool_down: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["billing", "a", "audit-log", "b_2", "9lives"] {
            assert!(DestinationName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Billing",
            "a.b",
            "a@b",
            "-a",
            "_a",
            &"x".repeat(65),
            "a b",
        ] {
            assert!(DestinationName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rate_limits_parse_and_print() {
        let r: RateLimit = "50/s".parse().unwrap();
        assert_eq!((r.count, r.per), (50, Duration::from_secs(1)));
        assert_eq!(r.to_string(), "50/s");
        assert_eq!("600/m".parse::<RateLimit>().unwrap().per.as_secs(), 60);
        assert_eq!("1000/h".parse::<RateLimit>().unwrap().to_string(), "1000/h");
        for bad in ["", "50", "0/s", "-1/s", "50/d", "x/s", "50/", "1000001/s"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad:?}");
        }
    }
}
