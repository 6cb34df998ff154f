//! `hookgate simulate`: runs a load profile on the virtual-time simulation of the real cores
//! (see `hookgate-sim` and docs/scale.md) and prints one row per simulated minute, then the
//! totals.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use hookgate_sim::{MinuteRow, Profile};

/// The profile `name_or_path` names: a built-in profile, or a TOML file.
pub fn load(name_or_path: &str) -> anyhow::Result<Profile> {
    let path = Path::new(name_or_path);
    if path.extension().is_some_and(|e| e == "toml") || path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return Profile::from_toml(&text).with_context(|| format!("in {}", path.display()));
    }
    Ok(hookgate_sim::builtin(name_or_path)?)
}

/// Runs `profile` (at `scale` if given, else the profile's own), writing its rows to `out` as
/// they come. Returns the report.
pub async fn run(
    profile: Profile,
    scale: Option<f64>,
    out: &mut impl Write,
) -> anyhow::Result<hookgate_sim::Report> {
    let profile = match scale {
        Some(scale) => profile.at_scale(scale)?,
        None => profile,
    };
    writeln!(
        out,
        "profile {}: {}",
        profile.name,
        hookgate_sim::limits(&profile)
    )?;
    writeln!(out, "{}", MinuteRow::HEADER)?;
    let mut failed = None;
    let report = hookgate_sim::run(&profile, |row| {
        if let Err(e) = writeln!(out, "{row}").and_then(|()| out.flush()) {
            failed.get_or_insert(e);
        }
    })
    .await?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    write!(out, "{}", report.summary())?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_a_builtin_name_or_a_file() {
        assert_eq!(load("retry-storm").unwrap().name, "retry-storm");
        let unknown = load("no-such-profile").unwrap_err().to_string();
        assert!(unknown.contains("healthy-10k"), "{unknown}");
        let missing = load("/nonexistent/profile.toml").unwrap_err().to_string();
        assert!(missing.contains("cannot read"), "{missing}");
    }

    #[tokio::test]
    async fn a_run_prints_a_row_per_simulated_minute_then_the_totals() {
        let dir = std::env::temp_dir().join(format!("hookgate-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tiny.toml");
        std::fs::write(
            &path,
            "name = \"tiny\"\nduration = \"2m\"\n[[sources]]\nname = \"shop\"\nrate = 5\n",
        )
        .unwrap();
        let profile = load(path.to_str().unwrap()).unwrap();
        let mut out = Vec::new();
        let report = run(profile, Some(1.0), &mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("profile tiny: scale 1"), "{text}");
        assert_eq!(report.minutes.len(), 2, "{text}");
        assert_eq!(report.events_accepted, 600);
        assert_eq!(report.events_delivered, 600);
        assert!(text.contains("600 events accepted"), "{text}");
        let refused = run(load("retry-storm").unwrap(), Some(0.0), &mut Vec::new()).await;
        assert!(refused.is_err(), "scale 0 is refused");
        std::fs::remove_dir_all(&dir).ok();
    }
}
