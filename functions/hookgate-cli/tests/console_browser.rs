//! The operator console in a real browser: Debian's `chromium`, driven through
//! `chromedriver` (WebDriver) with fantoccini, against a real `hookgate serve` on loopback (and
//! a `hookgate console` on moto). Each test saves a screenshot under
//! `target/console-screenshots/`.
//!
//! A missing browser fails these tests (`tests/run` installs `chromium` and `chromium-driver`
//! with apt-get when they are missing); nothing is skipped. `HOOKGATE_CHROMEDRIVER` and
//! `HOOKGATE_CHROMIUM` name other binaries.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{client, post_signed, Served};
use fantoccini::{Client, ClientBuilder, Locator};
use hookgate_core::{Config, Timestamp};
use serde_json::{json, Value};

const TOKEN: &str = "console-admin-token";

fn config_toml() -> String {
    format!(
        r#"
[sources.demo]
scheme = "hmac-sha256"
secrets = ["local-demo-s3cr3t"]

[sources.stripe]
scheme = "stripe"
secrets = ["whsec_local_stripe_secret"]

[processor]
max_receive_count = 3
visibility_timeout_secs = 2
wait_time_ms = 200

[admin]
token = "{TOKEN}"
"#
    )
}

fn config() -> Config {
    Config::from_toml(&config_toml()).unwrap()
}

/// `hookgate serve` on a free loopback port, with `extra` arguments.
fn serve(extra: &[&str]) -> Served {
    serve_with(&config_toml(), extra)
}

/// `hookgate serve` with the configuration `toml`.
fn serve_with(toml: &str, extra: &[&str]) -> Served {
    let path = std::env::temp_dir().join(format!("hookgate-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&path, toml).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookgate"));
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--config"])
        .arg(&path)
        .args(extra)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    common::start(command)
}

/// Only one browser at a time: the machine is small, and chromium is not.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A chromedriver process and a headless chromium session through it; both end on drop.
struct Browser {
    client: Option<Client>,
    driver: Child,
    name: String,
    profile: PathBuf,
}

fn binary(env: &str, names: &[&str]) -> PathBuf {
    if let Ok(path) = std::env::var(env) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "{} is not installed: the console's browser tests need Debian's chromium and \
         chromium-driver (`apt-get install -y chromium chromium-driver`; tests/run installs \
         them), or {env} naming the binary",
        names[0]
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless session. `name`
    /// names the screenshot.
    async fn start(name: &str) -> Self {
        let chromedriver = binary("HOOKGATE_CHROMEDRIVER", &["chromedriver"]);
        let chromium = binary("HOOKGATE_CHROMIUM", &["chromium", "chromium-browser"]);
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let profile =
            std::env::temp_dir().join(format!("hookgate-chromium-{}", uuid::Uuid::new_v4()));
        let mut browser = Browser {
            client: None,
            driver,
            name: name.to_owned(),
            profile: profile.clone(),
        };
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match ClientBuilder::new(connector.clone())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => {
                    browser.client = Some(client);
                    return browser;
                }
                Err(e) if Instant::now() > deadline => {
                    panic!("no WebDriver session from chromedriver on port {port}: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    async fn goto(&self, url: &str) {
        self.client().goto(url).await.unwrap();
    }

    /// The text of the first element `css` matches, waiting up to 10 s for one (a page that
    /// a click is still loading).
    async fn text(&self, css: &str) -> String {
        self.client()
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn count(&self, css: &str) -> usize {
        self.client()
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .len()
    }

    async fn click(&self, css: &str) {
        self.client()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn script(&self, js: &str) -> Value {
        self.client().execute(js, vec![]).await.unwrap()
    }

    /// Reloads `url` until `ready` says the page is as expected, or panics after `limit`.
    async fn until(&self, url: &str, limit: Duration, what: &str, ready: impl AsyncCheck) {
        let deadline = Instant::now() + limit;
        loop {
            self.goto(url).await;
            if ready.check(self).await {
                return;
            }
            if Instant::now() > deadline {
                self.screenshot("failed").await;
                panic!(
                    "{what}: not so after {limit:?}; page: {}",
                    self.client().source().await.unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Saves a screenshot as `target/console-screenshots/<test>[-suffix].png`.
    async fn screenshot(&self, suffix: &str) -> PathBuf {
        let png = self.client().screenshot().await.unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let name = if suffix.is_empty() {
            format!("{}.png", self.name)
        } else {
            format!("{}-{suffix}.png", self.name)
        };
        let path = dir.join(name);
        std::fs::write(&path, &png).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        path
    }

    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.client.take();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A session a failed test left open: end the chromium processes of this test's own
        // profile (and no other), which outlive their driver.
        let marker = format!("--user-data-dir={}", self.profile.display());
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&marker) {
                    let _ = Command::new("kill").arg(pid.to_string()).status();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A check of the page a browser shows.
trait AsyncCheck {
    async fn check(&self, browser: &Browser) -> bool;
}

/// At least `n` elements match the CSS selector.
struct AtLeast<'a>(&'a str, usize);

impl AsyncCheck for AtLeast<'_> {
    async fn check(&self, browser: &Browser) -> bool {
        browser.count(self.0).await >= self.1
    }
}

/// The element's text contains the string.
struct TextContains<'a>(&'a str, &'a str);

impl AsyncCheck for TextContains<'_> {
    async fn check(&self, browser: &Browser) -> bool {
        match browser.client().find(Locator::Css(self.0)).await {
            Ok(e) => e.text().await.unwrap_or_default().contains(self.1),
            Err(_) => false,
        }
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")));
    target.join("console-screenshots")
}

/// Posts a signed demo event with `body` and `content_type`; returns its id.
async fn post_demo(base: &str, body: &str, content_type: &str, event_type: &str) -> String {
    let headers = config()
        .sign("demo", body.as_bytes(), Timestamp::from_secs(0))
        .unwrap();
    let mut request = client()
        .post(format!("{base}/webhooks/demo"))
        .header("content-type", content_type)
        .header("x-event-type", event_type)
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let answer: Value = response.json().await.unwrap();
    answer["event_id"].as_str().unwrap().to_owned()
}

/// A Stripe charge of 0: its handler fails for good, so the event is dead-lettered at once.
async fn post_zero_charge(base: &str, id: &str) -> String {
    let body = json!({
        "id": id, "type": "charge.succeeded", "created": 1,
        "data": {"object": {"id": "ch_1", "amount": 0, "currency": "usd"}}
    })
    .to_string();
    let (status, answer) = post_signed(&client(), &config(), base, "stripe", &body).await;
    assert_eq!(status, 202, "{answer}");
    answer["event_id"].as_str().unwrap().to_owned()
}

/// Opens an event's page, reloading until the stack has processed it.
async fn open_when_processed(browser: &Browser, url: &str) {
    browser
        .until(
            url,
            SETTLE,
            "the event processed",
            TextContains("#event-status", "processed"),
        )
        .await;
}

fn event_url(base: &str, id: &str) -> String {
    format!("{base}/console/events/{}", id.replace(':', "%3A"))
}

const SETTLE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn events_sent_through_the_stack_appear_newest_first() {
    let _one = ONE_BROWSER.lock().await;
    let served = serve(&[]);
    let base = served.base.clone();
    let first = post_demo(&base, r#"{"order":1}"#, "application/json", "order.created").await;
    let second = post_demo(&base, r#"{"order":2}"#, "application/json", "order.paid").await;
    let _dead = post_zero_charge(&base, "evt_listed_dead").await;
    let browser = Browser::start("events").await;
    browser
        .until(
            &format!("{base}/console"),
            SETTLE,
            "three events listed, two processed",
            AtLeast("tr.event-row[data-status=processed]", 2),
        )
        .await;
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for row in browser
            .client()
            .find_all(Locator::Css("tr.event-row"))
            .await
            .unwrap()
        {
            ids.push(row.attr("data-id").await.unwrap().unwrap_or_default());
        }
        ids
    };
    let (a, b) = (
        ids.iter()
            .position(|i| *i == second)
            .expect("second listed"),
        ids.iter().position(|i| *i == first).expect("first listed"),
    );
    assert!(a < b, "newest first: {ids:?}");
    let processed = browser.text("a[data-status=processed] .count").await;
    assert_eq!(processed, "2");
    browser.screenshot("").await;
    // At a phone's width the page does not scroll sideways (the table scrolls in its box).
    browser.client().set_window_size(390, 844).await.unwrap();
    browser.goto(&format!("{base}/console")).await;
    assert_eq!(
        browser
            .script("return document.documentElement.scrollWidth <= window.innerWidth;")
            .await,
        json!(true),
        "no sideways scrolling at 390 px"
    );
    browser.screenshot("phone").await;
    // Every console answer carries the CSP and the frame ban.
    let response = client()
        .get(format!("{base}/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .split(';')
            .next(),
        Some("default-src 'self'")
    );
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    browser.close().await;
}

#[tokio::test]
async fn filtering_by_status_shows_only_that_status() {
    let _one = ONE_BROWSER.lock().await;
    let served = serve(&[]);
    let base = served.base.clone();
    let processed = post_demo(&base, r#"{"kept":true}"#, "application/json", "kept").await;
    let dead = post_zero_charge(&base, "evt_filter_dead").await;
    let browser = Browser::start("filter-by-status").await;
    browser
        .until(
            &format!("{base}/console"),
            SETTLE,
            "one processed and one dead-lettered event",
            AtLeast("tr.event-row[data-status=dead_lettered]", 1),
        )
        .await;
    // Choose the status in the form, as an operator would.
    browser
        .script(
            "document.getElementById('f-status').value = 'dead_lettered'; \
             document.getElementById('auto-refresh').checked = false; return null;",
        )
        .await;
    browser.click("#apply-filters").await;
    browser
        .client()
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(
            "a[data-status=dead_lettered][aria-current=true]",
        ))
        .await
        .unwrap();
    let rows = browser
        .client()
        .find_all(Locator::Css("tr.event-row"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].attr("data-id").await.unwrap().as_deref(),
        Some(dead.as_str())
    );
    assert_eq!(
        rows[0].attr("data-status").await.unwrap().as_deref(),
        Some("dead_lettered")
    );
    assert!(!browser
        .client()
        .source()
        .await
        .unwrap()
        .contains(&processed));
    browser.screenshot("").await;
    browser.close().await;
}

#[tokio::test]
async fn opening_an_event_shows_its_attempts_headers_and_payload() {
    let _one = ONE_BROWSER.lock().await;
    let served = serve(&[]);
    let base = served.base.clone();
    let id = post_demo(
        &base,
        r#"{"order":{"id":"ord_42","total":1999}}"#,
        "application/json",
        "order.created",
    )
    .await;
    let browser = Browser::start("event-timeline").await;
    browser
        .until(
            &format!("{base}/console?status=processed"),
            SETTLE,
            "the event processed",
            AtLeast("a.event-link", 1),
        )
        .await;
    browser.click("a.event-link").await;
    browser
        .client()
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#timeline"))
        .await
        .unwrap();
    assert_eq!(browser.text("#event-id").await, id);
    assert_eq!(browser.text("#event-status").await, "processed");
    assert_eq!(browser.count("tr.timeline-row[data-outcome=ok]").await, 1);
    let payload = browser.text("#payload").await;
    assert!(
        payload.contains("\"id\": \"ord_42\""),
        "pretty JSON: {payload}"
    );
    let headers = browser.text("#headers").await;
    assert!(
        headers.contains("x-event-type") && headers.contains("order.created"),
        "{headers}"
    );
    assert!(
        !headers.contains("x-signature"),
        "no signature header: {headers}"
    );
    let download = browser
        .client()
        .find(Locator::Css("#payload-download"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let body = client()
        .get(format!("{base}{download}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, r#"{"order":{"id":"ord_42","total":1999}}"#);
    browser.screenshot("").await;
    browser.close().await;
}

#[tokio::test]
async fn replay_adds_a_processed_attempt_without_a_reload() {
    let _one = ONE_BROWSER.lock().await;
    let served = serve(&[]);
    let base = served.base.clone();
    let id = post_demo(&base, r#"{"replay":"me"}"#, "application/json", "replayed").await;
    let browser = Browser::start("replay").await;
    let url = event_url(&base, &id);
    open_when_processed(&browser, &url).await;
    // A mark a full reload would lose.
    browser
        .script("window.__sameDocument = 'yes'; return null;")
        .await;
    browser.click("#replay-confirm").await;
    browser.click("#replay-button").await;
    let deadline = Instant::now() + SETTLE;
    loop {
        let ok_attempts = browser.count("tr.timeline-row[data-outcome=ok]").await;
        let result = browser.text("#replay-result").await;
        if ok_attempts >= 2 && result.contains("Replayed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no second processed attempt: {ok_attempts} ok, result {result:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        browser
            .script("return window.__sameDocument || null;")
            .await,
        json!("yes"),
        "the replay answered in place"
    );
    assert!(browser.text("#timeline").await.contains("replayed"));
    browser.screenshot("").await;
    // The ledger agrees.
    let record: Value = client()
        .get(format!("{base}/events/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record["replays"], 1);
    assert_eq!(record["status"], "processed");
    browser.close().await;
}

#[tokio::test]
async fn a_dead_lettered_event_is_redriven_from_the_dlq_page() {
    let _one = ONE_BROWSER.lock().await;
    let served = serve(&[]);
    let base = served.base.clone();
    let id = post_zero_charge(&base, "evt_redrive_me").await;
    let browser = Browser::start("dlq-redrive").await;
    let row = format!("tr.dlq-row[data-id=\"{id}\"]");
    browser
        .until(
            &format!("{base}/console/dlq"),
            SETTLE,
            "the event in the DLQ",
            AtLeast(&row, 1),
        )
        .await;
    assert!(browser.text(&row).await.contains("a charge of 0"));
    browser.screenshot("before").await;
    browser.click(&format!("{row} button.redrive-one")).await;
    browser
        .client()
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#dlq-flash"))
        .await
        .unwrap();
    assert_eq!(
        browser.text("#dlq-flash").await,
        "Redriven 1 message to the queue."
    );
    // The redriven message ran again: a second attempt, noted as a redrive.
    browser
        .until(
            &event_url(&base, &id),
            SETTLE,
            "a second attempt after the redrive",
            TextContains("#attempt-count", "2"),
        )
        .await;
    assert!(
        browser.text("#timeline").await.contains("redrive"),
        "{}",
        browser.text("#timeline").await
    );
    browser.screenshot("").await;
    browser.close().await;
}

#[tokio::test]
async fn a_hostile_payload_renders_as_inert_text() {
    let _one = ONE_BROWSER.lock().await;
    let served = serve(&[]);
    let base = served.base.clone();
    let script = "<script>window.__pwned=1</script>";
    let img = r#""><img src=x onerror="window.__pwned=1">"#;
    let json_body = json!({ "script": script, "img": img }).to_string();
    let json_id = post_demo(&base, &json_body, "application/json", "hostile").await;
    let text_body = format!("{img}{script}");
    let text_id = post_demo(&base, &text_body, "text/plain", "hostile").await;
    let browser = Browser::start("hostile-payload").await;
    browser
        .until(
            &format!("{base}/console?status=processed"),
            SETTLE,
            "both hostile events processed",
            AtLeast("tr.event-row", 2),
        )
        .await;
    for (id, shown) in [
        (&json_id, json_body.as_str()),
        (&text_id, text_body.as_str()),
    ] {
        browser.goto(&event_url(&base, id)).await;
        let payload = browser.text("#payload").await;
        if id == &text_id {
            assert_eq!(payload, shown, "the text payload, as text");
        } else {
            assert!(payload.contains(script), "{payload}");
            assert!(payload.contains("<img src=x onerror="), "{payload}");
        }
        assert_eq!(
            browser.count("img").await,
            0,
            "no element made from the payload"
        );
        assert_eq!(browser.count("main script").await, 0);
        assert_eq!(
            browser.script("return typeof window.__pwned;").await,
            json!("undefined"),
            "no script of the payload ran"
        );
    }
    browser.screenshot("").await;
    browser.close().await;
}

#[tokio::test]
async fn a_console_that_requires_the_token_shows_the_login_form() {
    let _one = ONE_BROWSER.lock().await;
    // What a non-loopback address requires (tests listen on loopback only), asked for.
    let served = serve(&["--console-login"]);
    let base = served.base.clone();
    let browser = Browser::start("login").await;
    browser.goto(&format!("{base}/console")).await;
    assert_eq!(browser.count("#login-form input[name=token]").await, 1);
    assert_eq!(
        browser.count("#events").await,
        0,
        "no events before logging in"
    );
    let status = client()
        .get(format!("{base}/console/dlq"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 401);
    browser.screenshot("form").await;
    // A wrong token: the form again, with an error.
    let field = browser.client().find(Locator::Css("#token")).await.unwrap();
    field.send_keys("not-the-token").await.unwrap();
    browser.click("#login-form button").await;
    assert!(browser
        .text("[role=alert]")
        .await
        .contains("not the admin token"));
    let field = browser.client().find(Locator::Css("#token")).await.unwrap();
    field.send_keys(TOKEN).await.unwrap();
    browser.click("#login-form button").await;
    browser
        .client()
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#events"))
        .await
        .unwrap();
    let cookie = browser
        .client()
        .get_named_cookie("hookgate_console")
        .await
        .unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(
        cookie.same_site().map(|s| s.to_string()).as_deref(),
        Some("Strict")
    );
    browser.screenshot("").await;
    browser.close().await;
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused() {
    let _one = ONE_BROWSER.lock().await;
    let served = serve(&[]);
    let base = served.base.clone();
    let id = post_demo(&base, r#"{"csrf":"victim"}"#, "application/json", "csrf").await;
    let browser = Browser::start("csrf").await;
    let url = event_url(&base, &id);
    open_when_processed(&browser, &url).await;
    // The page's own form, without its token and without the script: a forged post.
    browser
        .script(
            "var f = document.getElementById('replay-form'); \
             f.querySelector('input[name=csrf]').remove(); \
             f.querySelector('input[name=confirm]').checked = true; \
             HTMLFormElement.prototype.submit.call(f); return null;",
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let source = browser.client().source().await.unwrap();
        if source.contains("csrf_invalid") {
            break;
        }
        assert!(Instant::now() < deadline, "no refusal: {source}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.screenshot("").await;
    // Over HTTP: no token, a wrong one — 403 with the JSON error; nothing was replayed.
    for token in [None, Some("0".repeat(64))] {
        let mut form = vec![("confirm", "yes".to_owned())];
        if let Some(token) = token {
            form.push(("csrf", token));
        }
        let response = client()
            .post(format!("{url}/replay"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "csrf_invalid");
    }
    let record: Value = client()
        .get(format!("{base}/events/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record["replays"], 0, "no replay went through");
    // The same form with the page's token, as a browser without the script posts it: replayed,
    // and back to the event.
    browser.goto(&url).await;
    let csrf = browser
        .script("return document.querySelector('meta[name=csrf-token]').content;")
        .await;
    let response = client()
        .post(format!("{url}/replay"))
        .form(&[("csrf", csrf.as_str().unwrap()), ("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.url().as_str().ends_with("?replayed=1"),
        "{}",
        response.url()
    );
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("Replayed: queued as generation 1."));
    browser.close().await;
}

#[tokio::test]
async fn hookgate_console_on_moto_lists_the_events_in_dynamodb() {
    let Some(endpoint) = hookgate_testkit::moto_endpoint() else {
        eprintln!("skipped: no moto endpoint (set HOOKGATE_MOTO_ENDPOINT)");
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    let aws = hookgate_testkit::fresh_resources(&endpoint, 3, 2).await;
    // Events written to DynamoDB (and S3) by the stack on moto…
    let path = std::env::temp_dir().join(format!("hookgate-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&path, config_toml()).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookgate"));
    command
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--backend",
            "aws",
            "--config",
        ])
        .arg(&path)
        .envs(aws.env())
        .env("NO_COLOR", "1");
    let stack = common::start(command);
    let id = post_demo(
        &stack.base,
        r#"{"on":"moto"}"#,
        "application/json",
        "moto.event",
    )
    .await;
    // …read by `hookgate console`, which runs no processor of its own.
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookgate"));
    command
        .args(["console", "--addr", "127.0.0.1:0", "--config"])
        .arg(&path)
        .envs(aws.env())
        .env("NO_COLOR", "1");
    let console = common::start(command);
    let browser = Browser::start("console-moto").await;
    browser
        .until(
            &format!("{}/console?status=processed", console.base),
            Duration::from_secs(60),
            "the event processed, listed from DynamoDB",
            AtLeast(&format!("tr.event-row[data-id=\"{id}\"]"), 1),
        )
        .await;
    assert!(browser.text("header .place").await.contains(&aws.table));
    // The queues' depth, from SQS's attributes.
    browser
        .goto(&format!("{}/console/health", console.base))
        .await;
    assert_eq!(
        browser.count("#queues dd").await,
        3,
        "waiting, in flight, dead letters"
    );
    assert_eq!(browser.text("dd[data-queue='dead letters']").await, "0");
    browser.goto(&event_url(&console.base, &id)).await;
    assert!(browser.text("#payload").await.contains("\"on\": \"moto\""));
    browser.screenshot("").await;
    browser.close().await;
}

#[tokio::test]
async fn the_list_refreshes_itself_until_paused_and_finds_an_event_by_id() {
    let _one = ONE_BROWSER.lock().await;
    let served = serve(&[]);
    let base = served.base.clone();
    let browser = Browser::start("auto-refresh").await;
    browser.goto(&format!("{base}/console")).await;
    assert_eq!(browser.count("#no-events").await, 1);
    browser
        .script("window.__sameDocument = 'yes'; return null;")
        .await;
    let id = post_demo(&base, r#"{"live":1}"#, "application/json", "live").await;
    let row = format!("tr.event-row[data-id=\"{id}\"]");
    let deadline = Instant::now() + Duration::from_secs(15);
    while browser.count(&row).await == 0 {
        assert!(Instant::now() < deadline, "the new event never showed up");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        browser
            .script("return window.__sameDocument || null;")
            .await,
        json!("yes"),
        "refreshed in place"
    );
    // Paused: a newer event stays off the list until the operator reloads.
    browser.click("#auto-refresh").await;
    let later = post_demo(&base, r#"{"live":2}"#, "application/json", "live").await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        browser
            .count(&format!("tr.event-row[data-id=\"{later}\"]"))
            .await,
        0,
        "paused"
    );
    // Search by id: straight to the event.
    let search = browser.client().find(Locator::Css("#f-id")).await.unwrap();
    search.send_keys(&later).await.unwrap();
    browser.click("#apply-filters").await;
    browser
        .client()
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#event-id"))
        .await
        .unwrap();
    assert_eq!(browser.text("#event-id").await, later);
    browser.screenshot("").await;
    browser.close().await;
}

#[tokio::test]
async fn bulk_replay_counts_first_then_replays() {
    let _one = ONE_BROWSER.lock().await;
    let served = serve(&[]);
    let base = served.base.clone();
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            post_demo(
                &base,
                &format!("{{\"bulk\":{n}}}"),
                "application/json",
                "bulk",
            )
            .await,
        );
    }
    let browser = Browser::start("bulk-replay").await;
    browser
        .until(
            &format!("{base}/console?status=processed"),
            SETTLE,
            "three processed events",
            AtLeast("tr.event-row", 3),
        )
        .await;
    browser.goto(&format!("{base}/console/replay")).await;
    browser
        .script("document.getElementById('b-status').value = 'processed'; return null;")
        .await;
    browser.click("#bulk-dry-run").await;
    browser
        .client()
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#bulk-matched"))
        .await
        .unwrap();
    assert_eq!(browser.text("#bulk-matched").await, "3");
    // A replay needs its confirmation.
    browser.click("#bulk-replay").await;
    assert!(browser.text("[role=alert]").await.contains("confirmation"));
    browser.click("#bulk-confirm").await;
    browser.click("#bulk-replay").await;
    // The script follows the run in place.
    let deadline = Instant::now() + SETTLE;
    loop {
        let progress = browser.text("#bulk-progress").await;
        if progress.contains("Done: replayed 3 of 3 matched") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no progress to the end: {progress:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.screenshot("").await;
    for id in &ids {
        browser
            .until(
                &event_url(&base, id),
                SETTLE,
                "a second processed attempt",
                AtLeast("tr.timeline-row[data-outcome=ok]", 2),
            )
            .await;
    }
    // Without the script, the same form waits for the run and shows its summary.
    let csrf = browser
        .script("return document.querySelector('meta[name=csrf-token]').content;")
        .await;
    let page = client()
        .post(format!("{base}/console/replay"))
        .form(&[
            ("csrf", csrf.as_str().unwrap()),
            ("status", "processed"),
            ("action", "replay"),
            ("confirm", "yes"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"id="bulk-replayed">3<"#), "{page}");
    browser.close().await;
}

#[tokio::test]
async fn the_dlq_is_purged_only_with_the_typed_confirmation() {
    let _one = ONE_BROWSER.lock().await;
    let served = serve(&[]);
    let base = served.base.clone();
    let id = post_zero_charge(&base, "evt_purge_me").await;
    let browser = Browser::start("dlq-purge").await;
    let row = format!("tr.dlq-row[data-id=\"{id}\"]");
    browser
        .until(
            &format!("{base}/console/dlq"),
            SETTLE,
            "the event in the DLQ",
            AtLeast(&row, 1),
        )
        .await;
    // The wrong word: the browser's own check stops it, and the server's refuses it.
    let confirm = browser
        .client()
        .find(Locator::Css("#purge-confirm"))
        .await
        .unwrap();
    confirm.send_keys("yes").await.unwrap();
    browser.click("#purge").await;
    assert_eq!(browser.count(&row).await, 1, "not purged");
    let csrf = browser
        .script("return document.querySelector('meta[name=csrf-token]').content;")
        .await;
    let response = client()
        .post(format!("{base}/console/dlq/purge"))
        .form(&[("csrf", csrf.as_str().unwrap()), ("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    browser.goto(&format!("{base}/console/dlq")).await;
    let confirm = browser
        .client()
        .find(Locator::Css("#purge-confirm"))
        .await
        .unwrap();
    confirm.send_keys("purge").await.unwrap();
    browser.click("#purge").await;
    browser
        .client()
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#dlq-flash"))
        .await
        .unwrap();
    assert_eq!(browser.text("#dlq-flash").await, "Purged 1 message.");
    assert_eq!(browser.count("#dlq-empty").await, 1);
    browser.screenshot("").await;
    browser.close().await;
}

/// The Sources page lists the configured destinations with their circuits; an operator
/// disables one and enables it again from the page. An event fanned out to both shows its
/// deliveries, each with its own status, linked.
#[tokio::test]
async fn destinations_are_listed_and_switched_on_the_sources_page() {
    let _one = ONE_BROWSER.lock().await;
    let toml = format!(
        "{}\n[destinations.billing]\nurl = 'http://127.0.0.1:9/hooks?key=secret-in-query'\n\
         allow_http = true\nallow_private_networks = true\n\
         secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'\nrate_limit = '50/s'\n\
         [destinations.audit]\nkind = 'eventbridge'\nevent_bus = 'default'\n\
         [[routes]]\nsource = 'demo'\nto = ['billing', 'audit']\n",
        config_toml()
    );
    let served = serve_with(&toml, &[]);
    let base = served.base.clone();
    let browser = Browser::start("destinations").await;
    browser.goto(&format!("{base}/console/sources")).await;
    assert_eq!(browser.count("tr.destination-row").await, 2);
    let billing = "tr.destination-row[data-destination=billing]";
    let text = browser.text(billing).await;
    assert!(text.contains("http://127.0.0.1:9/hooks"), "{text}");
    assert!(
        !text.contains("secret-in-query"),
        "the query is not shown: {text}"
    );
    assert!(text.contains("50/s") && text.contains("closed"), "{text}");
    assert!(browser
        .text("tr.destination-row[data-destination=audit]")
        .await
        .contains("eventbridge"));
    // Each form posts and comes back to the page: wait for the page it comes back to (a
    // reload meanwhile could cancel the post).
    let disabled = format!("{billing}[data-circuit=disabled]");
    let closed = format!("{billing}[data-circuit=closed]");
    browser
        .click(&format!("{billing} button.destination-disable"))
        .await;
    browser
        .client()
        .wait()
        .at_most(SETTLE)
        .for_element(Locator::Css(&disabled))
        .await
        .unwrap();
    assert!(browser
        .text(billing)
        .await
        .contains("disabled by an operator"));
    browser.screenshot("destinations").await;
    browser
        .click(&format!("{billing} button.destination-enable"))
        .await;
    browser
        .client()
        .wait()
        .at_most(SETTLE)
        .for_element(Locator::Css(&closed))
        .await
        .unwrap();
    // Fanned out: audit (the local stand-in) delivered, billing (nothing listens) retrying.
    let id = post_demo(&base, r#"{"n":1}"#, "application/json", "order.created").await;
    browser
        .until(
            &format!("{base}/console/events/{id}"),
            SETTLE,
            "the audit delivery processed",
            TextContains("li.delivery[data-destination=audit]", "processed"),
        )
        .await;
    assert_eq!(browser.count("li.delivery").await, 2);
    let billing_status = browser.text("li.delivery[data-destination=billing]").await;
    assert!(!billing_status.contains("processed"), "{billing_status}");
    browser.click("li.delivery[data-destination=audit] a").await;
    let page = browser.text("dl").await;
    assert!(
        page.contains("audit"),
        "the delivery's own page names its destination: {page}"
    );
    browser.close().await;
}

#[tokio::test]
async fn sources_and_health_show_the_last_hour() {
    let _one = ONE_BROWSER.lock().await;
    let served = serve(&[]);
    let base = served.base.clone();
    post_demo(&base, r#"{"n":1}"#, "application/json", "counted").await;
    post_demo(&base, r#"{"n":2}"#, "application/json", "counted").await;
    // One request with a bad signature: a rejection.
    let refused = client()
        .post(format!("{base}/webhooks/demo"))
        .header("x-signature", format!("sha256={}", "0".repeat(64)))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let browser = Browser::start("sources-health").await;
    browser
        .until(
            &format!("{base}/console/sources"),
            SETTLE,
            "two processed events counted",
            TextContains("tr.source-row[data-source=demo]", "2"),
        )
        .await;
    let demo: Vec<String> = {
        let mut cells = Vec::new();
        for cell in browser
            .client()
            .find_all(Locator::Css("tr.source-row[data-source=demo] td"))
            .await
            .unwrap()
        {
            cells.push(cell.text().await.unwrap());
        }
        cells
    };
    // name, scheme, secrets, destination, received, rejected, processed, failed
    assert_eq!(demo[1], "hmac-sha256");
    assert_eq!(demo[2], "1");
    assert_eq!(demo[4], "3");
    assert!(demo[5].contains("signature_mismatch: 1"), "{demo:?}");
    assert_eq!(demo[6], "2");
    let page = browser.client().source().await.unwrap();
    assert!(!page.contains("local-demo-s3cr3t"), "never a secret");
    browser.screenshot("sources").await;
    post_zero_charge(&base, "evt_health_dead").await;
    browser
        .until(
            &format!("{base}/console/health"),
            SETTLE,
            "one message in the DLQ",
            TextContains("dd[data-queue='dead letters']", "1"),
        )
        .await;
    assert_eq!(browser.text("dd[data-queue=waiting]").await, "0");
    assert_eq!(browser.count("figure.chart svg polyline").await, 5);
    assert!(browser
        .text("#rejections")
        .await
        .contains("signature_mismatch"));
    browser.screenshot("").await;
    browser.close().await;
}
