//! Event-type patterns of a route's `types`: `*` stands for any run of characters (none
//! included), every other character for itself. `charge.*` matches `charge.succeeded` and
//! `charge.` but not `charge`; `*` matches every type.

use std::fmt;

/// A checked event-type pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct TypeGlob {
    pattern: String,
}

/// A pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidGlob(String);

/// The longest pattern accepted (an event type is at most a few hundred characters).
const MAX_LEN: usize = 256;

impl TypeGlob {
    /// Checks `pattern`: 1-256 characters, no control characters, no whitespace.
    pub fn parse(pattern: &str) -> Result<Self, InvalidGlob> {
        if pattern.is_empty() || pattern.len() > MAX_LEN {
            return Err(InvalidGlob(format!(
                "{pattern:?} must be 1-{MAX_LEN} characters"
            )));
        }
        if pattern.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(InvalidGlob(format!(
                "{pattern:?} may not contain whitespace or control characters"
            )));
        }
        Ok(Self {
            pattern: pattern.to_owned(),
        })
    }

    /// Whether `event_type` matches. Linear-ish: the classic greedy match with one backtrack
    /// point, so no pattern is exponential.
    pub fn matches(&self, event_type: &str) -> bool {
        let p: Vec<char> = self.pattern.chars().collect();
        let t: Vec<char> = event_type.chars().collect();
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

impl fmt::Debug for TypeGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_documented() {
        let cases = [
            ("charge.*", "charge.succeeded", true),
            ("charge.*", "charge.", true),
            ("charge.*", "charge", false),
            ("charge.*", "xcharge.succeeded", false),
            ("invoice.paid", "invoice.paid", true),
            ("invoice.paid", "invoice.paid.x", false),
            ("invoice.paid", "invoice_paid", false),
            ("*", "", true),
            ("*", "anything at all", true),
            ("*.created", "customer.created", true),
            ("*.created", "customer.created.x", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            ("a**b", "ab", true),
            ("*ab", "aaab", true),
            ("é*", "été", true),
            ("push", "PUSH", false),
        ];
        for (pattern, t, want) in cases {
            let glob = TypeGlob::parse(pattern).unwrap();
            assert_eq!(glob.matches(t), want, "{pattern:?} on {t:?}");
        }
    }

    #[test]
    fn a_pathological_pattern_is_not_exponential() {
        let glob = TypeGlob::parse(&("a*".repeat(100) + "c")).unwrap();
        let t = "a".repeat(200) + "b";
        assert!(!glob.matches(&t));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", " ", "a b", "tab\there", &"x".repeat(257)] {
            assert!(TypeGlob::parse(bad).is_err(), "{bad:?}");
        }
    }
}
