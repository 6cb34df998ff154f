//! The test venv's python, for checks by independent implementations (the `standardwebhooks`
//! PyPI package verifying what hookgate signed).
//!
//! `HOOKGATE_PYTHON` names it (the test command sets it). Without it a check is skipped, unless
//! `HOOKGATE_REQUIRE_MOTO=1` says the full toolchain is expected, in which case it fails.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::ENV_REQUIRE_MOTO;

/// Environment variable naming the test venv's python.
pub const ENV_PYTHON: &str = "HOOKGATE_PYTHON";

/// The venv's python, or `None` when python checks should be skipped.
///
/// # Panics
/// If it is unset but `HOOKGATE_REQUIRE_MOTO=1`.
pub fn python() -> Option<String> {
    match std::env::var(ENV_PYTHON) {
        Ok(p) if !p.trim().is_empty() => Some(p),
        _ => {
            assert!(
                !std::env::var(ENV_REQUIRE_MOTO).is_ok_and(|v| v.trim() == "1"),
                "{ENV_REQUIRE_MOTO}=1 but {ENV_PYTHON} is unset: the test command sets it to the \
                 test venv's python"
            );
            println!("skipped: {ENV_PYTHON} unset");
            None
        }
    }
}

/// Runs `script` with `args` and `stdin`; returns (success, stdout, stderr).
///
/// # Panics
/// If python cannot be started (a harness failure).
pub fn run(python: &str, script: &str, args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .expect("write to python's stdin");
    let out = child.wait_with_output().expect("wait for python");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
