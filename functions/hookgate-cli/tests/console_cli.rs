//! `hookgate console`'s refusals, before it reaches AWS or binds anything.

mod common;

use std::time::Duration;

use common::{hookgate_clean, output_within};

#[test]
fn off_loopback_the_console_refuses_to_start_without_an_admin_token() {
    let out = output_within(
        hookgate_clean().args([
            "console",
            "--addr",
            "0.0.0.0:0",
            "--table",
            "t",
            "--queue-url",
            "http://127.0.0.1:9/000000000000/q",
        ]),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("HOOKGATE_ADMIN_TOKEN"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing listened");
}

#[test]
fn the_console_needs_the_table_and_the_queue() {
    let out = output_within(hookgate_clean().args(["console"]), Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--table") && stderr.contains("--queue-url"),
        "{stderr}"
    );
}
