//! Which configuration a `hookgate` command runs with, and where it came from.
//!
//! A configuration can be given four ways; the first that is there wins:
//! `--config FILE`, then `HOOKGATE_CONFIG` (the TOML document itself), then
//! `HOOKGATE_CONFIG_FILE` (its path), then the bundled example. A configuration given one way is
//! never replaced by another without a word: one that is given but cannot be read or is not
//! valid fails the command (it does not fall through to the next), a variable set but empty
//! fails too, and one that loses to a higher one is named in [`ChosenConfig::ignored`], which
//! the commands report. `hookgate serve` logs where its configuration came from.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use hookgate_core::config::EXAMPLE_CONFIG;
use hookgate_core::{Config, ConfigError};

/// The configuration document itself.
pub const ENV_CONFIG: &str = "HOOKGATE_CONFIG";
/// The path of the configuration file.
pub const ENV_CONFIG_FILE: &str = "HOOKGATE_CONFIG_FILE";

/// Where a configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// `--config FILE`.
    Flag(PathBuf),
    /// `HOOKGATE_CONFIG`.
    EnvDocument,
    /// `HOOKGATE_CONFIG_FILE`.
    EnvFile(PathBuf),
    /// The example built into the binary.
    BundledExample,
}

impl fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigOrigin::Flag(path) => write!(f, "--config {}", path.display()),
            ConfigOrigin::EnvDocument => {
                write!(f, "{ENV_CONFIG} (the document in the environment)")
            }
            ConfigOrigin::EnvFile(path) => write!(f, "{ENV_CONFIG_FILE}={}", path.display()),
            ConfigOrigin::BundledExample => {
                f.write_str("the bundled example (functions/hookgate-core/example-config.toml)")
            }
        }
    }
}

/// A loaded configuration and how it was chosen.
#[derive(Debug, Clone)]
pub struct ChosenConfig {
    /// The configuration.
    pub config: Config,
    /// Where it came from.
    pub origin: ConfigOrigin,
    /// Environment variables that were set but lost to a higher-ranked way.
    pub ignored: Vec<&'static str>,
}

impl ChosenConfig {
    /// One line for the log: where the configuration came from and which sources it has.
    pub fn describe(&self) -> String {
        let sources: Vec<&str> = self.config.sources.keys().map(|s| s.as_str()).collect();
        let sources = if sources.is_empty() {
            "no sources".to_owned()
        } else {
            format!("sources {}", sources.join(", "))
        };
        format!("configuration from {} ({sources})", self.origin)
    }

    /// A warning per ignored variable, naming what won instead.
    pub fn ignored_warnings(&self) -> Vec<String> {
        self.ignored
            .iter()
            .map(|var| {
                format!(
                    "{var} is set but ignored: the configuration comes from {}",
                    self.origin
                )
            })
            .collect()
    }
}

/// Why no configuration could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum ConfigChoiceError {
    /// A variable is set to nothing (most likely a mistake, such as `$(cat missing.toml)`).
    #[error("{0} is set but empty: unset it, or give it a configuration")]
    Empty(&'static str),
    /// A variable is not valid Unicode.
    #[error("{0} is not valid UTF-8")]
    NotUnicode(&'static str),
    /// The configuration given cannot be read or is not valid.
    #[error("configuration from {origin}: {source}")]
    Load {
        /// Where it came from.
        origin: ConfigOrigin,
        /// What is wrong with it.
        #[source]
        source: ConfigError,
    },
}

/// Chooses as the module says, reading variables with `var`.
pub fn choose(
    flag: Option<&Path>,
    var: impl Fn(&str) -> Option<OsString>,
) -> Result<ChosenConfig, ConfigChoiceError> {
    let document = set_var(&var, ENV_CONFIG)?;
    let file = set_var(&var, ENV_CONFIG_FILE)?;
    let mut ignored = Vec::new();
    let (origin, loaded) = if let Some(path) = flag {
        ignored.extend(document.as_ref().map(|_| ENV_CONFIG));
        ignored.extend(file.as_ref().map(|_| ENV_CONFIG_FILE));
        (ConfigOrigin::Flag(path.to_owned()), Config::from_file(path))
    } else if let Some(document) = document {
        ignored.extend(file.as_ref().map(|_| ENV_CONFIG_FILE));
        (ConfigOrigin::EnvDocument, Config::from_toml(&document))
    } else if let Some(path) = file {
        let path = PathBuf::from(path);
        let loaded = Config::from_file(&path);
        (ConfigOrigin::EnvFile(path), loaded)
    } else {
        (
            ConfigOrigin::BundledExample,
            Config::from_toml(EXAMPLE_CONFIG),
        )
    };
    match loaded {
        Ok(config) => Ok(ChosenConfig {
            config,
            origin,
            ignored,
        }),
        Err(source) => Err(ConfigChoiceError::Load { origin, source }),
    }
}

/// Chooses from `--config` and this process's environment.
pub fn from_environment(flag: Option<&Path>) -> Result<ChosenConfig, ConfigChoiceError> {
    choose(flag, |name| std::env::var_os(name))
}

/// The variable's value if it is set; an error if it is set to nothing or to non-Unicode.
fn set_var(
    var: &impl Fn(&str) -> Option<OsString>,
    name: &'static str,
) -> Result<Option<String>, ConfigChoiceError> {
    match var(name) {
        None => Ok(None),
        Some(value) => {
            let value = value
                .into_string()
                .map_err(|_| ConfigChoiceError::NotUnicode(name))?;
            if value.trim().is_empty() {
                return Err(ConfigChoiceError::Empty(name));
            }
            Ok(Some(value))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config_with(source: &str) -> String {
        format!(
            "[sources.{source}]\nscheme = \"hmac-sha256\"\nsecrets = [\"config-choice-s3cr3t\"]\n"
        )
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn sources(chosen: &ChosenConfig) -> Vec<String> {
        chosen
            .config
            .sources
            .keys()
            .map(|s| s.as_str().to_owned())
            .collect()
    }

    fn temp_file(text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("hookgate-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_flag_wins_then_the_document_then_the_file_then_the_example() {
        let flag = temp_file(&config_with("fromflag"));
        let file = temp_file(&config_with("fromfile"));
        let file_str = file.to_str().unwrap();
        let document = config_with("fromdoc");
        let both = env(&[(ENV_CONFIG, &document), (ENV_CONFIG_FILE, file_str)]);

        let chosen = choose(Some(&flag), &both).unwrap();
        assert_eq!(sources(&chosen), ["fromflag"]);
        assert_eq!(chosen.origin, ConfigOrigin::Flag(flag.clone()));
        assert_eq!(chosen.ignored, [ENV_CONFIG, ENV_CONFIG_FILE]);

        let chosen = choose(None, &both).unwrap();
        assert_eq!(sources(&chosen), ["fromdoc"]);
        assert_eq!(chosen.origin, ConfigOrigin::EnvDocument);
        assert_eq!(chosen.ignored, [ENV_CONFIG_FILE]);
        assert!(chosen.ignored_warnings()[0].contains("HOOKGATE_CONFIG_FILE is set but ignored"));
        assert!(
            chosen.describe().contains("HOOKGATE_CONFIG (the document"),
            "{}",
            chosen.describe()
        );
        assert!(chosen.describe().contains("sources fromdoc"));

        let chosen = choose(None, env(&[(ENV_CONFIG_FILE, file_str)])).unwrap();
        assert_eq!(sources(&chosen), ["fromfile"]);
        assert_eq!(chosen.origin, ConfigOrigin::EnvFile(file.clone()));
        assert!(chosen.ignored.is_empty());

        let chosen = choose(None, env(&[])).unwrap();
        assert_eq!(chosen.origin, ConfigOrigin::BundledExample);
        assert!(sources(&chosen).contains(&"demo".to_owned()));
    }

    #[test]
    fn a_configuration_given_is_never_replaced_by_the_next() {
        let good_file = temp_file(&config_with("fromfile"));
        let good = good_file.to_str().unwrap();
        // An invalid document does not fall back to the file, nor a missing file to the example.
        let e = choose(
            None,
            env(&[
                (ENV_CONFIG, "[sources.x]\nscheme = 1"),
                (ENV_CONFIG_FILE, good),
            ]),
        )
        .unwrap_err();
        assert!(
            matches!(
                &e,
                ConfigChoiceError::Load {
                    origin: ConfigOrigin::EnvDocument,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("configuration from HOOKGATE_CONFIG"),
            "{e}"
        );
        let e = choose(
            None,
            env(&[(ENV_CONFIG_FILE, "/nonexistent/hookgate.toml")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/hookgate.toml"), "{e}");
        let e = choose(Some(Path::new("/nonexistent/flag.toml")), env(&[])).unwrap_err();
        assert!(
            e.to_string().contains("--config /nonexistent/flag.toml"),
            "{e}"
        );
        // Set but empty is a mistake, not "unset".
        for var in [ENV_CONFIG, ENV_CONFIG_FILE] {
            let e = choose(None, env(&[(var, "  ")])).unwrap_err();
            assert!(matches!(e, ConfigChoiceError::Empty(v) if v == var));
        }
    }
}
