//! The metrics sinks as the configuration describes them: `[metrics]` and each source's
//! `metric_types`, turned into the settings of the [`metrics`](crate::metrics) module.
//!
//! This is the one place that knows both: [`crate::metrics`] is a leaf that imports nothing
//! above it (not the configuration, not the cores whose outcomes it counts), so what reads the
//! TOML's settings into its types lives here, above both.

use crate::config::{check_metrics_namespace, Config, ConfigError, MetricDimension, MetricsConfig};
use crate::metrics::{Dimension, Emf, SeriesLimits};

/// Environment variable that overrides `[metrics] namespace` (the template sets it from its
/// `MetricsNamespace` parameter, which its dashboard reads).
pub const ENV_METRICS_NAMESPACE: &str = "HOOKGATE_METRICS_NAMESPACE";

impl From<MetricDimension> for Dimension {
    fn from(dimension: MetricDimension) -> Self {
        match dimension {
            MetricDimension::Source => Dimension::Source,
            MetricDimension::Type => Dimension::Type,
        }
    }
}

impl SeriesLimits {
    /// The limits `config` sets: each source's `metric_types` and `[metrics]
    /// max_types_per_source`.
    pub fn from_config(config: &Config) -> Self {
        let mut limits = Self::new(config.metrics.max_types_per_source);
        for (name, source) in &config.sources {
            if let Some(types) = &source.metric_types {
                limits = limits.allowing(name.as_str(), types.iter().map(String::as_str));
            }
        }
        limits
    }
}

impl Emf {
    /// Lines for `config`'s namespace and dimensions, with its cap on types per source, written
    /// to `out`.
    pub fn from_config(config: &MetricsConfig, out: impl std::io::Write + Send + 'static) -> Self {
        let dimensions: Vec<Dimension> =
            config.dimensions.iter().copied().map(Into::into).collect();
        Emf::new(config.namespace.as_str(), &dimensions, out)
            .with_limits(SeriesLimits::new(config.max_types_per_source))
    }

    /// As the functions run on AWS: lines on stdout, in the namespace of
    /// `HOOKGATE_METRICS_NAMESPACE` when it is set (validated), else `config`'s.
    pub fn from_env(config: &MetricsConfig) -> Result<Self, ConfigError> {
        let mut config = config.clone();
        if let Ok(namespace) = std::env::var(ENV_METRICS_NAMESPACE) {
            if !namespace.is_empty() {
                check_metrics_namespace(&namespace)
                    .map_err(|e| ConfigError::Invalid(format!("{ENV_METRICS_NAMESPACE}: {e}")))?;
                config.namespace = namespace;
            }
        }
        Ok(Self::from_config(&config, std::io::stdout()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_MAX_TYPES_PER_SOURCE;
    use crate::metrics::{Counter, Metrics, Observation, OTHER_TYPE};
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_default_cap_is_the_configuration_default() {
        assert_eq!(
            SeriesLimits::DEFAULT_MAX_TYPES_PER_SOURCE,
            DEFAULT_MAX_TYPES_PER_SOURCE
        );
        assert_eq!(
            Config::from_toml("").unwrap().metrics.max_types_per_source,
            SeriesLimits::DEFAULT_MAX_TYPES_PER_SOURCE
        );
    }

    fn observation<'a>(source: &'a str, event_type: &'a str, type_signed: bool) -> Observation<'a> {
        Observation {
            source,
            event_type,
            type_signed,
            adds_series: true,
            counters: &[Counter::Processed],
            reason: None,
            delivery_ms: None,
            receive_to_processed_ms: None,
        }
    }

    #[test]
    fn series_limits_follow_the_sources_metric_types_and_the_cap() {
        let config = Config::from_toml(
            "[sources.gh]\nscheme='github'\nsecrets=['gh-webhook-secret-1']\nmetric_types=['push']\n\
             [sources.shop]\nscheme='shopify'\nsecrets=['shop-client-secret']\n\
             [metrics]\nmax_types_per_source=2",
        )
        .unwrap();
        let limits = SeriesLimits::from_config(&config);
        let label = |o: Observation<'static>| limits.type_label(&o, o.event_type).to_owned();
        assert_eq!(label(observation("gh", "push", false)), "push");
        assert_eq!(label(observation("gh", "made-up", true)), OTHER_TYPE);
        assert_eq!(
            label(observation("shop", "orders/create", false)),
            OTHER_TYPE
        );
        assert_eq!(label(observation("shop", "a", true)), "a");
        assert_eq!(label(observation("shop", "b", true)), "b");
        assert_eq!(
            label(observation("shop", "c", true)),
            OTHER_TYPE,
            "cap of 2"
        );
    }

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn emf_lines_follow_the_configured_namespace_dimensions_and_cap() {
        let config = Config::from_toml(
            "[metrics]\nnamespace='Shop/Hooks'\ndimensions=['type','source']\nmax_types_per_source=1",
        )
        .unwrap();
        let out = Captured::default();
        let emf = Emf::from_config(&config.metrics, out.clone());
        assert_eq!(emf.namespace(), "Shop/Hooks");
        emf.observe(&observation("demo", "a", true));
        emf.observe(&observation("demo", "b", true));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let directive = &lines[0]["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Shop/Hooks");
        assert_eq!(
            directive["Dimensions"],
            serde_json::json!([["type", "source"], []])
        );
        assert_eq!(
            (&lines[0]["type"], &lines[1]["type"]),
            (&"a".into(), &OTHER_TYPE.into())
        );
    }

    #[test]
    fn the_environment_namespace_wins_and_is_validated() {
        let config = MetricsConfig::default();
        std::env::set_var(ENV_METRICS_NAMESPACE, "Prod/Hooks");
        let from_env = Emf::from_env(&config).map(|emf| emf.namespace().to_owned());
        std::env::set_var(ENV_METRICS_NAMESPACE, "AWS/Lambda");
        let reserved = Emf::from_env(&config).map(|emf| emf.namespace().to_owned());
        std::env::remove_var(ENV_METRICS_NAMESPACE);
        let from_config = Emf::from_env(&config).map(|emf| emf.namespace().to_owned());
        assert_eq!(from_env.unwrap(), "Prod/Hooks");
        let err = reserved.unwrap_err().to_string();
        assert!(
            err.contains(ENV_METRICS_NAMESPACE) && err.contains("AWS/"),
            "{err}"
        );
        assert_eq!(from_config.unwrap(), "hookgate");
    }
}
