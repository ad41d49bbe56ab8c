//! Detection settings. Every window is event time; defaults follow
//! DETECTIONS.md and are documented in docs/configuration.md.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionConfig {
    /// An observation older than this no longer makes a value "seen".
    #[serde(with = "humantime_serde")]
    pub baseline_window: Duration,
    /// A principal's profile must cover this long before novelty fires.
    #[serde(with = "humantime_serde")]
    pub training_period: Duration,
    /// No novelty detector fires before this much data (per partition).
    #[serde(with = "humantime_serde")]
    pub activation_period: Duration,
    /// How far out of order CloudTrail may deliver events.
    #[serde(with = "humantime_serde")]
    pub reorder_window: Duration,
    /// Default dedup window of findings.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// TH-003: a command needs this many events org-wide in the window
    /// before a country can be unusual for it.
    pub min_command_events: u32,
    /// TH-003: a (command, country) seen on fewer days than this is rare;
    /// 0 means only never-seen pairs are.
    pub rare_command_country_days: u32,
    /// TH-002: calls of a session before its dominant region is its home.
    pub min_session_calls: u32,
    /// Per-detector overrides, by id ("TH-002").
    pub detectors: HashMap<String, DetectorSettings>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorSettings {
    pub enabled: Option<bool>,
    #[serde(with = "humantime_serde")]
    pub training_period: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub activation_period: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub dedup_window: Option<Duration>,
}

const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

/// Detectors whose source document sets its own dedup period.
fn default_dedup(id: &str) -> Option<Duration> {
    match id {
        "TH-002" => Some(days(5)),
        _ => None,
    }
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            baseline_window: days(45),
            training_period: days(30),
            activation_period: days(14),
            reorder_window: Duration::from_secs(15 * 60),
            dedup_window: days(1),
            min_command_events: 10,
            rare_command_country_days: 0,
            min_session_calls: 5,
            detectors: HashMap::new(),
        }
    }
}

impl DetectionConfig {
    fn settings(&self, id: &str) -> Option<&DetectorSettings> {
        self.detectors.get(id)
    }

    pub fn enabled(&self, id: &str) -> bool {
        self.settings(id).and_then(|s| s.enabled).unwrap_or(true)
    }

    pub fn training_ms(&self, id: &str) -> i64 {
        ms(self
            .settings(id)
            .and_then(|s| s.training_period)
            .unwrap_or(self.training_period))
    }

    pub fn activation_ms(&self, id: &str) -> i64 {
        ms(self
            .settings(id)
            .and_then(|s| s.activation_period)
            .unwrap_or(self.activation_period))
    }

    pub fn dedup_ms(&self, id: &str) -> i64 {
        let window = self
            .settings(id)
            .and_then(|s| s.dedup_window)
            .or_else(|| default_dedup(id));
        ms(window.unwrap_or(self.dedup_window)).max(1)
    }

    pub fn window_ms(&self) -> i64 {
        ms(self.baseline_window)
    }

    pub fn window_days(&self) -> u32 {
        (self.baseline_window.as_secs() / 86_400).clamp(1, 63) as u32
    }
}

pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_keep_the_other_defaults() {
        let config: DetectionConfig =
            toml_like(r#"{"training_period": "2d", "detectors": {"TH-019": {"enabled": false}}}"#);
        assert_eq!(config.training_ms("TH-001"), 2 * 86_400_000);
        assert!(!config.enabled("TH-019") && config.enabled("TH-001"));
        assert_eq!(
            config.dedup_ms("TH-002"),
            5 * 86_400_000,
            "TH-002 keeps its 5-day dedup"
        );
        assert_eq!(config.dedup_ms("TH-001"), 86_400_000);
        assert_eq!(config.window_days(), 45);
    }

    fn toml_like(json: &str) -> DetectionConfig {
        serde_json::from_str(json).unwrap()
    }
}
