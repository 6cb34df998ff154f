//! What the end-to-end tests of the `hookgate` binary share: an HTTP client, a running
//! `hookgate serve` (killed on drop, its stderr kept), and signed posts.

#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use hookgate_core::{Config, Timestamp};
use hookgate_testkit::MotoResources;

/// An HTTP client on hookgate's TLS stack (reqwest has no default crypto provider here).
pub fn client() -> reqwest::Client {
    hookgate_core::delivery::client_builder().build().unwrap()
}

/// A running `hookgate serve`, killed (SIGKILL) on drop, and what it wrote to stderr so far.
pub struct Served {
    pub child: Child,
    pub base: String,
    pub stderr: Arc<Mutex<String>>,
}

impl Served {
    /// Kills the process at once (SIGKILL: no shutdown of any kind) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `hookgate serve` on a free loopback port with `config` (TOML), on the in-memory
/// backend, or on `aws` resources (moto) with `--backend aws`.
pub fn serve(config: &str, aws: Option<&MotoResources>) -> Served {
    let path = std::env::temp_dir().join(format!("hookgate-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookgate"));
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(aws) = aws {
        command.arg("--backend").arg("aws").envs(aws.env());
    }
    let mut child = command.spawn().unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let lines = BufReader::new(child.stderr.take().unwrap());
    let kept = stderr.clone();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            let mut all = kept.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("hookgate listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    Served {
        child,
        base,
        stderr,
    }
}

/// Posts `body` to `{base}/webhooks/{source}`, signed as `config` says that source's provider
/// would. Returns the status and the JSON answer.
pub async fn post_signed(
    client: &reqwest::Client,
    config: &Config,
    base: &str,
    source: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let headers = hookgate_core::signature::sign(
        config,
        source,
        body.as_bytes(),
        Timestamp::from_millis(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        ),
    )
    .unwrap();
    let mut request = client
        .post(format!("{base}/webhooks/{source}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}
