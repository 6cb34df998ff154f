//! Captured logs: the production logger (`hookgate_core::telemetry`, JSON lines) writing into a
//! buffer instead of standard output, so a test can check what an operator would read.
//!
//! The capture is the calling thread's default subscriber: run the code under test on that
//! thread (`#[tokio::test]`'s current-thread runtime) so spawned tasks are captured too.

use std::sync::{Arc, Mutex, PoisonError};

use hookgate_core::telemetry::LogSettings;
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::fmt::MakeWriter;

/// Log output written so far.
#[derive(Clone, Default)]
pub struct CapturedLogs {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl CapturedLogs {
    /// Captures this thread's logs as the Lambda functions write them with
    /// `AWS_LAMBDA_LOG_FORMAT=JSON` and `AWS_LAMBDA_LOG_LEVEL=level`, until the guard drops.
    pub fn lambda_json(level: &str) -> (Self, DefaultGuard) {
        let settings = LogSettings::lambda(|name| match name {
            "AWS_LAMBDA_LOG_FORMAT" => Some("JSON".to_owned()),
            "AWS_LAMBDA_LOG_LEVEL" => Some(level.to_owned()),
            _ => None,
        });
        let logs = Self::default();
        let guard = tracing::subscriber::set_default(settings.subscriber(logs.clone()));
        (logs, guard)
    }

    /// Everything written, as text.
    pub fn text(&self) -> String {
        let bytes = self
            .buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Every line, parsed.
    ///
    /// # Panics
    /// If a line is not a JSON object (a logger defect the caller wants to see).
    pub fn lines(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        self.text()
            .lines()
            .map(|line| match serde_json::from_str(line) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => panic!("log line is not a JSON object: {line}"),
            })
            .collect()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
