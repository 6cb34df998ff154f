//! Logging set-up, in one place for the two Lambda functions and the local stack, so that what
//! an operator reads in CloudWatch and on a terminal comes from one set of rules.
//!
//! **On Lambda** ([`LogSettings::lambda`]), Lambda's advanced logging controls:
//! - `AWS_LAMBDA_LOG_FORMAT=JSON` → one JSON object per line, with an RFC 3339 `timestamp` and a
//!   `level`, the two keys Lambda reads to filter a custom runtime's logs; anything else →
//!   plain text without colours or time (CloudWatch stamps every line);
//! - the level from `AWS_LAMBDA_LOG_LEVEL` (`TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`;
//!   `FATAL` is `ERROR`, the most severe level `tracing` has), else `RUST_LOG`, else `INFO`.
//!
//! **Locally** ([`LogSettings::local`]): human-readable text by default (JSON on request), the
//! level from `RUST_LOG`, else `INFO`.
//!
//! **Dependencies log at most `INFO`** whatever the level, unless a `RUST_LOG` directive names
//! them (`RUST_LOG=debug,aws_smithy_runtime=trace`): at `TRACE`, `lambda_runtime` logs every raw
//! invocation event (webhook bodies and their signature headers) and the AWS SDK every request
//! and response (queue messages, the configuration secret). The level applies to hookgate's own
//! crates and to the Lambda crates' handlers (targets `hookgate…`, `receiver`, `processor`).
//!
//! `lambda_runtime::tracing::init_default_subscriber()` is not used because it falls short of
//! these rules: its lines have no `timestamp`, so Lambda files every JSON line under `INFO`;
//! its filter reads `RUST_LOG` again and ignores the default it took from
//! `AWS_LAMBDA_LOG_LEVEL` when `RUST_LOG` is set (the deployed functions set `RUST_LOG`), so the
//! level chosen in the console has no effect; `FATAL` does not parse and becomes `INFO`; and
//! `TRACE` reaches the dependencies above.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Targets the level applies to: hookgate's crates (`hookgate_core`, `hookgate_aws`,
/// `hookgate_cli`, the `hookgate` binary; targets match by prefix) and the two Lambda crates,
/// where your handlers live.
const OWN_TARGETS: &[&str] = &["hookgate", "receiver", "processor"];

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `message`, the event's fields, `target`,
    /// and the enclosing spans' fields under `span` and `spans`).
    Json,
}

/// Everything that decides what is logged and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Text or JSON.
    pub format: LogFormat,
    /// `tracing_subscriber::EnvFilter` directives, e.g. `info,hookgate=debug`.
    pub directives: String,
    /// Whether text lines start with the time (JSON lines always carry a `timestamp`).
    pub timestamps: bool,
    /// Whether text lines are coloured.
    pub ansi: bool,
}

/// The logger could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A global subscriber was installed before.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

impl LogSettings {
    /// The settings on Lambda, from the environment as `var` reads it (`std::env::var` in
    /// [`init_lambda`]).
    pub fn lambda(var: impl Fn(&str) -> Option<String>) -> Self {
        let format = match var("AWS_LAMBDA_LOG_FORMAT") {
            Some(f) if f.trim().eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        };
        let directives = match var("AWS_LAMBDA_LOG_LEVEL")
            .as_deref()
            .and_then(lambda_level)
        {
            Some(level) => directives(level, &[]),
            None => from_rust_log(var("RUST_LOG").as_deref()),
        };
        Self {
            format,
            directives,
            timestamps: false,
            ansi: false,
        }
    }

    /// The settings of the local stack: `format`, and `rust_log` (the `RUST_LOG` variable).
    /// Text is coloured when standard error is a terminal.
    pub fn local(format: LogFormat, rust_log: Option<&str>) -> Self {
        Self {
            format,
            directives: from_rust_log(rust_log),
            timestamps: true,
            ansi: std::io::stderr().is_terminal(),
        }
    }

    /// The filter these settings describe. Directives that do not parse are left out (with a
    /// note on standard error), so a typo never stops a function from starting.
    pub fn filter(&self) -> EnvFilter {
        EnvFilter::builder().parse_lossy(&self.directives)
    }

    /// A subscriber writing to `writer`; [`Self::init`] installs one for the process, a test
    /// may use one with `tracing::subscriber::set_default`.
    pub fn subscriber<W>(&self, writer: W) -> Box<dyn Subscriber + Send + Sync + 'static>
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        let builder = tracing_subscriber::fmt()
            .with_env_filter(self.filter())
            .with_writer(writer);
        match (self.format, self.timestamps) {
            // `spans` holds every enclosing span, the innermost last; the innermost again under
            // `span` would repeat it on every line (40 % of a processor line, in CPU and in
            // CloudWatch Logs bytes: docs/cost.md).
            (LogFormat::Json, _) => Box::new(
                builder
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .finish(),
            ),
            (LogFormat::Text, true) => Box::new(builder.with_ansi(self.ansi).finish()),
            (LogFormat::Text, false) => {
                Box::new(builder.with_ansi(self.ansi).without_time().finish())
            }
        }
    }

    /// Installs the subscriber for the whole process, writing to `writer`.
    pub fn init<W>(&self, writer: W) -> Result<(), TelemetryError>
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        tracing::subscriber::set_global_default(self.subscriber(writer))
            .map_err(|_| TelemetryError::AlreadyInstalled)
    }
}

/// Installs the Lambda logger ([`LogSettings::lambda`] from the process environment), writing
/// to standard output as Lambda expects.
pub fn init_lambda() -> Result<(), TelemetryError> {
    LogSettings::lambda(|name| std::env::var(name).ok()).init(std::io::stdout)
}

/// A level named as Lambda names them (any case); `None` for anything else.
fn lambda_level(name: &str) -> Option<LevelFilter> {
    match name.trim().to_ascii_uppercase().as_str() {
        "TRACE" => Some(LevelFilter::TRACE),
        "DEBUG" => Some(LevelFilter::DEBUG),
        "INFO" => Some(LevelFilter::INFO),
        "WARN" => Some(LevelFilter::WARN),
        "ERROR" | "FATAL" => Some(LevelFilter::ERROR),
        _ => None,
    }
}

/// `RUST_LOG`'s last bare level (`debug`) is the level; its target directives
/// (`hookgate_core::delivery=trace`, `hyper=debug`) are kept as written.
fn from_rust_log(rust_log: Option<&str>) -> String {
    let mut level = LevelFilter::INFO;
    let mut named = Vec::new();
    for part in rust_log.unwrap_or_default().split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        match part.parse::<LevelFilter>() {
            Ok(bare) => level = bare,
            Err(_) => named.push(part),
        }
    }
    directives(level, &named)
}

/// `level` for hookgate's crates, at most `INFO` for every other crate, then `named` as written
/// (a directive naming one of hookgate's targets replaces the generated one).
fn directives(level: LevelFilter, named: &[&str]) -> String {
    let mut out = vec![level.min(LevelFilter::INFO).to_string()];
    for target in OWN_TARGETS {
        let prefix = format!("{target}=");
        if !named.iter().any(|d| d.starts_with(&prefix)) {
            out.push(format!("{target}={level}"));
        }
    }
    out.extend(named.iter().map(|d| (*d).to_owned()));
    out.join(",")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::*;

    fn lambda(vars: &[(&str, &str)]) -> LogSettings {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        LogSettings::lambda(|name| vars.get(name).cloned())
    }

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// Logs one line per (target, level) pair under `settings`; returns what was written.
    fn written(settings: &LogSettings) -> Vec<String> {
        let buffer = Buffer::default();
        tracing::subscriber::with_default(settings.subscriber(buffer.clone()), || {
            tracing::trace!(target: "hookgate_core::receiver", "own trace");
            tracing::debug!(target: "hookgate_core::receiver", "own debug");
            tracing::info!(target: "hookgate_core::receiver", "own info");
            tracing::warn!(target: "hookgate_core::receiver", "own warn");
            tracing::error!(target: "hookgate_core::receiver", "own error");
            tracing::info!(target: "processor::handlers", "handler info");
            tracing::debug!(target: "processor::handlers", "handler debug");
            tracing::trace!(target: "lambda_runtime::layers::api_response", "dependency trace");
            tracing::debug!(target: "aws_smithy_runtime::client", "dependency debug");
            tracing::info!(target: "aws_smithy_runtime::client", "dependency info");
            tracing::warn!(target: "aws_smithy_runtime::client", "dependency warn");
        });
        buffer.lines()
    }

    fn messages(lines: &[String]) -> Vec<String> {
        lines
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["message"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn lambda_json_lines_carry_the_keys_lambda_filters_on() {
        let settings = lambda(&[("AWS_LAMBDA_LOG_FORMAT", "JSON")]);
        assert_eq!(settings.format, LogFormat::Json);
        let lines = written(&settings);
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["message"], "own info");
        assert_eq!(first["target"], "hookgate_core::receiver");
        let stamp = first["timestamp"].as_str().unwrap();
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("timestamp {stamp:?} is not RFC 3339: {e}"));
        assert_eq!(
            messages(&lines),
            [
                "own info",
                "own warn",
                "own error",
                "handler info",
                "dependency info",
                "dependency warn"
            ]
        );
    }

    #[test]
    fn lambda_text_has_no_colours_and_no_time() {
        let settings = lambda(&[("AWS_LAMBDA_LOG_FORMAT", "Text")]);
        assert_eq!(settings.format, LogFormat::Text);
        let lines = written(&settings);
        assert!(lines[0].trim_start().starts_with("INFO"), "{lines:?}");
        assert!(lines[0].ends_with("own info"), "{lines:?}");
        assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:?}");
    }

    #[test]
    fn lambda_log_level_wins_over_rust_log() {
        let settings = lambda(&[
            ("AWS_LAMBDA_LOG_FORMAT", "json"),
            ("AWS_LAMBDA_LOG_LEVEL", "DEBUG"),
            ("RUST_LOG", "info"),
        ]);
        assert_eq!(
            messages(&written(&settings)),
            [
                "own debug",
                "own info",
                "own warn",
                "own error",
                "handler info",
                "handler debug",
                "dependency info",
                "dependency warn"
            ]
        );
        let settings = lambda(&[
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "warn"),
            ("RUST_LOG", "trace"),
        ]);
        assert_eq!(
            messages(&written(&settings)),
            ["own warn", "own error", "dependency warn"]
        );
    }

    #[test]
    fn fatal_is_the_error_level() {
        let settings = lambda(&[
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "FATAL"),
        ]);
        assert_eq!(messages(&written(&settings)), ["own error"]);
    }

    #[test]
    fn rust_log_then_info_when_lambda_sets_no_level() {
        let settings = lambda(&[("AWS_LAMBDA_LOG_FORMAT", "JSON"), ("RUST_LOG", "error")]);
        assert_eq!(messages(&written(&settings)), ["own error"]);
        // A level Lambda does not name falls through to RUST_LOG.
        let settings = lambda(&[
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "verbose"),
            ("RUST_LOG", "error"),
        ]);
        assert_eq!(messages(&written(&settings)), ["own error"]);
        let settings = lambda(&[("AWS_LAMBDA_LOG_FORMAT", "JSON")]);
        assert_eq!(
            settings.directives,
            "info,hookgate=info,receiver=info,processor=info"
        );
    }

    #[test]
    fn trace_never_reaches_the_dependencies_unless_named() {
        let settings = lambda(&[
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "TRACE"),
        ]);
        let logged = messages(&written(&settings));
        assert!(logged.contains(&"own trace".to_owned()), "{logged:?}");
        assert!(!logged
            .iter()
            .any(|m| m == "dependency trace" || m == "dependency debug"));

        let settings = LogSettings {
            format: LogFormat::Json,
            ..LogSettings::local(LogFormat::Json, Some("trace"))
        };
        let logged = messages(&written(&settings));
        assert!(logged.contains(&"own trace".to_owned()), "{logged:?}");
        assert!(!logged.iter().any(|m| m.starts_with("dependency trace")));

        // Named explicitly, a dependency logs at the level asked for.
        let settings = LogSettings::local(LogFormat::Json, Some("warn,aws_smithy_runtime=debug"));
        assert_eq!(
            messages(&written(&settings)),
            [
                "own warn",
                "own error",
                "dependency debug",
                "dependency info",
                "dependency warn"
            ]
        );
    }

    #[test]
    fn a_directive_naming_an_own_target_replaces_the_level() {
        let settings = LogSettings::local(LogFormat::Json, Some("debug,processor=warn"));
        assert_eq!(
            settings.directives,
            "info,hookgate=debug,receiver=debug,processor=warn"
        );
        let logged = messages(&written(&settings));
        assert!(logged.contains(&"own debug".to_owned()));
        assert!(
            !logged.iter().any(|m| m.starts_with("handler")),
            "{logged:?}"
        );
    }

    #[test]
    fn a_bad_directive_is_left_out() {
        let settings = LogSettings::local(LogFormat::Json, Some("warn,hyper=loud"));
        assert_eq!(
            messages(&written(&settings)),
            ["own warn", "own error", "dependency warn"]
        );
    }

    #[test]
    fn local_text_has_the_time() {
        let settings = LogSettings {
            ansi: false,
            ..LogSettings::local(LogFormat::Text, None)
        };
        let lines = written(&settings);
        // e.g. 2026-01-01T12:00:00.000000Z  INFO hookgate_core::receiver: own info
        let stamp = lines[0].split_whitespace().next().unwrap();
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{stamp:?} in {:?}: {e}", lines[0]));
    }
}
