//! `hookgate replay` and `hookgate payload`: run events again, read what a provider sent.
//!
//! Two places they work against: a deployment's resources directly (the AWS backend, with the
//! operator's credentials, through [`Replayer`]), or a running local stack over HTTP (its
//! `/events` routes and admin token, through [`HttpTarget`]). The bulk loop is the core's
//! [`run_bulk`] either way, so both page the same index, honour the same rate, and skip what
//! the run replayed already when it is started again.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hookgate_core::clock::Timestamp;
use hookgate_core::ledger::{Cursor, EventStatus, EventSummary, Page, PageQuery};
use hookgate_core::replay::{
    run_bulk, BulkFilter, BulkOptions, BulkSummary, ReplayError, ReplayTarget, Replayed,
};
use hookgate_core::{EventId, SourceName};

/// A running stack's operator routes, over HTTP with its admin token.
pub struct HttpTarget {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl HttpTarget {
    /// The stack at `base` (e.g. `http://127.0.0.1:3000`), with `token` as its bearer token.
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let client = hookgate_core::delivery::client_builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// The body of `GET /events/{id}/payload`, and its content type.
    pub async fn payload(&self, id: &EventId) -> Result<(String, bytes::Bytes), ReplayError> {
        let url = format!("{}/events/{}/payload", self.base, id);
        let response = self
            .authorized(self.client.get(url))
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(error_from(response).await);
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let body = response.bytes().await.map_err(unreachable)?;
        Ok((content_type, body))
    }
}

fn unreachable(e: reqwest::Error) -> ReplayError {
    ReplayError::LedgerUnavailable(format!("the stack did not answer: {e}"))
}

/// A stack's JSON error answer as the replay error it stands for.
async fn error_from(response: reqwest::Response) -> ReplayError {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body["error"].as_str().unwrap_or("").to_owned();
    let message = body["message"].as_str().unwrap_or("").to_owned();
    match code.as_str() {
        "event_not_found" => ReplayError::NotFound,
        "event_in_progress" => ReplayError::InProgress(EventStatus::Processing),
        "already_replayed" => ReplayError::AlreadyInRun,
        "payload_not_archived" => ReplayError::PayloadNotArchived(message),
        "queue_unavailable" => ReplayError::QueueUnavailable(message),
        "archive_unavailable" => ReplayError::ArchiveUnavailable(message),
        _ => ReplayError::LedgerUnavailable(format!("{status} {code}: {message}")),
    }
}

#[async_trait]
impl ReplayTarget for HttpTarget {
    async fn page(&self, query: &PageQuery) -> Result<Page, ReplayError> {
        let mut params: Vec<(&str, String)> = vec![
            ("status", query.status.as_str().to_owned()),
            ("limit", query.limit.to_string()),
        ];
        if let Some(source) = &query.source {
            params.push(("source", source.to_string()));
        }
        if let Some(t) = &query.event_type {
            params.push(("type", t.clone()));
        }
        if let Some(t) = query.since {
            params.push(("since", t.as_millis().to_string()));
        }
        if let Some(t) = query.until {
            params.push(("until", t.as_millis().to_string()));
        }
        if let Some(c) = &query.cursor {
            params.push(("cursor", c.encode()));
        }
        let url = format!("{}/events", self.base);
        let response = self
            .authorized(self.client.get(url).query(&params))
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(error_from(response).await);
        }
        #[derive(serde::Deserialize)]
        struct Listing {
            events: Vec<EventSummary>,
            next_cursor: Option<String>,
        }
        let listing: Listing = response
            .json()
            .await
            .map_err(|e| ReplayError::LedgerUnavailable(format!("unreadable listing: {e}")))?;
        Ok(Page {
            events: listing.events,
            next: listing.next_cursor.as_deref().and_then(Cursor::parse),
        })
    }

    async fn replay(&self, event_id: &EventId, run: &str) -> Result<Replayed, ReplayError> {
        self.replay_one(event_id, Some(run)).await
    }
}

impl HttpTarget {
    /// `POST /events/{id}/replay`, as part of `run` if given.
    pub async fn replay_one(
        &self,
        event_id: &EventId,
        run: Option<&str>,
    ) -> Result<Replayed, ReplayError> {
        let url = format!("{}/events/{}/replay", self.base, event_id);
        let mut request = self.client.post(url);
        if let Some(run) = run {
            request = request.query(&[("run", run)]);
        }
        let response = self.authorized(request).send().await.map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(error_from(response).await);
        }
        response
            .json()
            .await
            .map_err(|e| ReplayError::LedgerUnavailable(format!("unreadable answer: {e}")))
    }
}

/// A time as the flags take it: a duration back from `now` (`90s`, `30m`, `2h`, `7d`), an RFC
/// 3339 time, or epoch milliseconds.
pub fn parse_when(raw: &str, now: Timestamp) -> Option<Timestamp> {
    if let Some(t) = hookgate_core::status::parse_time(raw) {
        return Some(t);
    }
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = number.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(now.minus(Duration::from_secs(secs)))
}

/// The bulk filter from the flags, with relative times made absolute at `now` (so the run's id,
/// and the command that resumes it, are fixed).
pub fn bulk_filter(
    status: EventStatus,
    source: Option<&str>,
    event_type: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
    now: Timestamp,
) -> anyhow::Result<BulkFilter> {
    let when = |flag: &str, raw: &str| {
        parse_when(raw, now).ok_or_else(|| {
            anyhow::anyhow!("--{flag} {raw:?}: give a duration back from now (30m, 2h, 7d), an RFC 3339 time or epoch milliseconds")
        })
    };
    let source = source
        .map(SourceName::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--source: {e}"))?;
    Ok(BulkFilter {
        status,
        source,
        event_type: event_type.map(str::to_owned),
        since: since.map(|s| when("since", s)).transpose()?,
        until: until.map(|u| when("until", u)).transpose()?.unwrap_or(now),
    })
}

/// The command that runs `filter` again (to resume it after an interruption).
pub fn resume_command(filter: &BulkFilter) -> String {
    let mut command = format!("hookgate replay --status {}", filter.status);
    if let Some(source) = &filter.source {
        command.push_str(&format!(" --source {source}"));
    }
    if let Some(t) = &filter.event_type {
        command.push_str(&format!(" --type '{t}'"));
    }
    if let Some(since) = filter.since {
        command.push_str(&format!(" --since {}", since.to_rfc3339()));
    }
    command.push_str(&format!(" --until {}", filter.until.to_rfc3339()));
    command
}

/// Where an unfinished bulk run keeps its fixed times, so that the same command run again
/// goes on with the same run (and replays nothing twice) instead of starting a new one:
/// `$XDG_STATE_HOME/hookgate` or `~/.local/state/hookgate` (`HOOKGATE_STATE_DIR` wins).
pub fn state_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("HOOKGATE_STATE_DIR") {
        return dir.into();
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return std::path::Path::new(&dir).join("hookgate");
    }
    match std::env::var_os("HOME") {
        Some(home) => std::path::Path::new(&home).join(".local/state/hookgate"),
        None => std::env::temp_dir().join("hookgate-state"),
    }
}

/// An unfinished bulk run, remembered under the command's own words.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Unfinished {
    since: Option<i64>,
    until: i64,
}

/// The filter for a bulk run typed as `typed` (the flags as given, and where it runs): the
/// unfinished run's, if the same command was interrupted before, else one fixed `now` and
/// remembered until the run ends. Returns the filter and whether it resumes.
pub fn bulk_filter_resuming(
    typed: &[&str],
    make: impl FnOnce() -> anyhow::Result<BulkFilter>,
    dir: &std::path::Path,
) -> anyhow::Result<(BulkFilter, bool, std::path::PathBuf)> {
    use sha2::Digest;
    let key = hex::encode(&sha2::Sha256::digest(typed.join("\u{0}").as_bytes())[..8]);
    let path = dir.join(format!("replay-{key}.json"));
    let fresh = make()?;
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(unfinished) = serde_json::from_str::<Unfinished>(&text) {
            let filter = BulkFilter {
                since: unfinished.since.map(Timestamp::from_millis),
                until: Timestamp::from_millis(unfinished.until),
                ..fresh
            };
            return Ok((filter, true, path));
        }
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let unfinished = Unfinished {
        since: fresh.since.map(Timestamp::as_millis),
        until: fresh.until.as_millis(),
    };
    std::fs::write(&path, serde_json::to_vec(&unfinished)?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok((fresh, false, path))
}

/// Runs a bulk replay with progress on standard error (redrawn in place on a terminal) until
/// done or Ctrl-C; returns the summary.
pub async fn bulk(
    target: &dyn ReplayTarget,
    filter: &BulkFilter,
    options: &BulkOptions,
) -> BulkSummary {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
        }
    });
    let terminal = std::io::stderr().is_terminal();
    eprintln!(
        "hookgate: replay run {} ({}{})",
        filter.run_id(),
        if options.dry_run { "dry run, " } else { "" },
        resume_command(filter)
    );
    let mut progress = |s: &BulkSummary| {
        if terminal {
            let skipped: u64 = s.skipped.values().sum();
            eprint!(
                "\r  matched {}  replayed {}  skipped {}   ",
                s.matched, s.replayed, skipped
            );
        }
    };
    let check = move || interrupted.load(Ordering::SeqCst);
    let summary = run_bulk(target, filter, options, &check, &mut progress).await;
    watcher.abort();
    if terminal {
        eprintln!();
    }
    if summary.stopped.is_some() {
        eprintln!(
            "hookgate: stopped early; run the same command again to go on (what this run replayed is skipped), or: {}",
            resume_command(filter)
        );
    }
    summary
}

/// Where `replay` and `payload` work: a running stack, or the deployment's resources.
pub enum Place {
    /// A running stack's routes.
    Stack(HttpTarget),
    /// The AWS resources named by the environment, through the core.
    Aws(hookgate_core::replay::Replayer),
}

impl Place {
    /// `--url` (with its token) if given, else the AWS backend of the environment, with
    /// `config`'s archive settings.
    pub async fn from_args(
        url: Option<&str>,
        admin_token: Option<String>,
        config: &hookgate_core::Config,
    ) -> anyhow::Result<Self> {
        if let Some(url) = url {
            return Ok(Place::Stack(HttpTarget::new(url, admin_token)?));
        }
        let sdk = hookgate_aws::preflight::checked_sdk_config().await?;
        let aws = hookgate_aws::AwsBackend::from_env_with(&sdk).await?;
        let archive = aws.archive.map(|a| a as Arc<dyn hookgate_core::Archive>);
        if archive.is_none() {
            eprintln!(
                "hookgate: note: HOOKGATE_ARCHIVE_BUCKET is not set: only payloads kept inline in the ledger can be read"
            );
        }
        Ok(Place::Aws(hookgate_core::replay::Replayer::new(
            config, aws.ledger, aws.queue, archive,
        )))
    }

    fn target(&self) -> &dyn ReplayTarget {
        match self {
            Place::Stack(t) => t,
            Place::Aws(r) => r,
        }
    }
}

/// `ids`, or with `--destination NAME` each one's delivery to NAME (`<id>@NAME`).
pub fn delivery_ids(ids: Vec<String>, destination: Option<&str>) -> anyhow::Result<Vec<String>> {
    let Some(destination) = destination else {
        return Ok(ids);
    };
    let destination = hookgate_core::destination_policy::DestinationName::parse(destination)
        .map_err(|e| anyhow::anyhow!("--destination {destination:?}: {e}"))?;
    ids.iter()
        .map(|raw| {
            let id = EventId::parse(raw).map_err(|e| anyhow::anyhow!("{raw:?}: {e}"))?;
            Ok(id.delivery(&destination).to_string())
        })
        .collect()
}

/// `hookgate replay ID…`: each replayed, one JSON line each; `Ok(false)` if any was not.
pub async fn replay_ids(place: &Place, ids: &[String]) -> anyhow::Result<bool> {
    let mut all = true;
    for raw in ids {
        let id = EventId::parse(raw).map_err(|e| anyhow::anyhow!("{raw:?}: {e}"))?;
        let result = match place {
            Place::Stack(t) => t.replay_one(&id, None).await,
            Place::Aws(r) => {
                r.replay(
                    &id,
                    &hookgate_core::replay::Origin::single("hookgate replay"),
                )
                .await
            }
        };
        match result {
            Ok(replayed) => println!("{}", serde_json::to_string(&replayed)?),
            Err(e) => {
                all = false;
                let mut message = e.to_string();
                if matches!(e, ReplayError::NotFound) && id.delivery_of().is_some() {
                    message.push_str(
                        ": no such delivery (an event a single route delivered directly has none of its own: replay the event)",
                    );
                }
                println!(
                    "{}",
                    serde_json::json!({"event_id": id, "error": e.code(), "message": message})
                );
            }
        }
    }
    Ok(all)
}

/// `hookgate replay --status …`: the bulk run; prints its summary as JSON. `Ok(false)` if it
/// stopped early, in which case `state` (the unfinished run, see [`bulk_filter_resuming`]) is
/// kept for the same command to go on; a run that ends forgets it (a dry run leaves it as it
/// found it).
pub async fn replay_filtered(
    place: &Place,
    filter: &BulkFilter,
    options: &BulkOptions,
    state: &std::path::Path,
) -> anyhow::Result<bool> {
    let summary = bulk(place.target(), filter, options).await;
    println!("{}", serde_json::to_string(&summary)?);
    let done = summary.stopped.is_none();
    if done || options.dry_run {
        let _ = std::fs::remove_file(state);
    }
    Ok(done)
}

/// `hookgate payload ID`: the body, byte for byte, to `out` or standard output.
pub async fn payload(
    place: &Place,
    raw: &str,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let id = EventId::parse(raw).map_err(|e| anyhow::anyhow!("{raw:?}: {e}"))?;
    let body = match place {
        Place::Stack(t) => t.payload(&id).await.map(|(_, body)| body),
        Place::Aws(r) => r.payload(&id).await.map(|e| e.body),
    }
    .map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?;
    match out {
        Some(path) => std::fs::write(path, &body)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        None => std::io::stdout().write_all(&body)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_relative_absolute_or_millis() {
        let now = Timestamp::from_secs(1_800_000_000);
        assert_eq!(
            parse_when("2h", now),
            Some(now.minus(Duration::from_secs(7200)))
        );
        assert_eq!(
            parse_when("90s", now),
            Some(now.minus(Duration::from_secs(90)))
        );
        assert_eq!(
            parse_when("7d", now),
            Some(now.minus(Duration::from_secs(604_800)))
        );
        assert_eq!(
            parse_when("2026-12-01T14:00:00Z", now),
            Timestamp::parse_rfc3339("2026-12-01T14:00:00Z")
        );
        assert_eq!(parse_when("1000", now), Some(Timestamp::from_millis(1000)));
        for bad in ["", "h", "2w", "-2h", "2 h", "yesterday"] {
            assert_eq!(parse_when(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn a_filter_is_fixed_at_its_start_and_says_how_to_resume() {
        let now = Timestamp::from_secs(1_800_000_000);
        let f = bulk_filter(
            EventStatus::Failed,
            Some("stripe"),
            None,
            Some("2h"),
            None,
            now,
        )
        .unwrap();
        assert_eq!(f.until, now);
        assert_eq!(f.since, Some(now.minus(Duration::from_secs(7200))));
        let again = bulk_filter(
            EventStatus::Failed,
            Some("stripe"),
            None,
            Some(&f.since.unwrap().to_rfc3339()),
            Some(&f.until.to_rfc3339()),
            now.plus(Duration::from_secs(600)),
        )
        .unwrap();
        assert_eq!(
            again.run_id(),
            f.run_id(),
            "the resume command is the same run"
        );
        let cmd = resume_command(&f);
        assert!(
            cmd.contains("--status failed --source stripe --since 2027-01-15T06:00:00"),
            "{cmd}"
        );
        assert!(bulk_filter(EventStatus::Failed, Some("Bad Name"), None, None, None, now).is_err());
        assert!(bulk_filter(EventStatus::Failed, None, None, Some("soon"), None, now).is_err());
    }
}
