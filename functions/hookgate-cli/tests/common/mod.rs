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
        .env("NO_COLOR", "1");
    if let Some(aws) = aws {
        command.arg("--backend").arg("aws").envs(aws.env());
    }
    start(command)
}

/// Starts `command` (a `hookgate serve …`) and waits for its first line on stdout, the address
/// it listens on. Panics, with what it wrote to stderr, if it does not start.
pub fn start(mut command: Command) -> Served {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let lines = BufReader::new(child.stderr.take().unwrap());
    let kept = stderr.clone();
    let reader = std::thread::spawn(move || {
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
    let Some(base) = line.trim().strip_prefix("hookgate listening on ") else {
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        panic!(
            "unexpected first line: {line:?}; stderr: {}",
            stderr.lock().unwrap()
        );
    };
    Served {
        base: base.to_owned(),
        child,
        stderr,
    }
}

/// `hookgate` with nothing of this process's environment but `PATH`: no AWS or HOOKGATE
/// variable, `HOME` an empty directory (no AWS profile), the EC2 metadata endpoint off (the
/// credential chain must not go looking for it), and plain log lines.
pub fn hookgate_clean() -> Command {
    let home = std::env::temp_dir().join(format!("hookgate-home-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&home).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookgate"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info");
    command
}

/// Runs `command` to its end, or kills it after `limit` and panics (a command that should
/// have refused to start must not hang the test).
pub fn output_within(command: &mut Command, limit: std::time::Duration) -> std::process::Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
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
    let headers = config
        .sign(
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
