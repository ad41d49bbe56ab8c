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
    /// TH-006: an error code seen in the account on fewer days than this
    /// is rare; 0 means only never-seen codes are.
    pub rare_error_code_days: u32,
    /// TH-007: distinct error messages of a principal per bucket.
    pub error_message_spike: SurgeSettings,
    /// TH-008: API calls of a principal per bucket.
    pub api_call_surge: SurgeSettings,
    /// TH-009: distinct services a principal touches per bucket.
    pub service_enumeration: SurgeSettings,
    /// TH-013: GetObject calls of a principal per bucket.
    pub s3_get_object_surge: SurgeSettings,
    /// TH-016: speed (km/h) above which travel between two calls is impossible.
    pub impossible_travel_kmh: f64,
    /// TH-016: distance (km, after subtracting both accuracy radii) below
    /// which two places are never impossible travel.
    pub impossible_travel_min_km: f64,
    /// Per-detector overrides, by id ("TH-002").
    pub detectors: HashMap<String, DetectorSettings>,
}

/// A volume detector: a principal's bucket is a surge when its value is at
/// least `min_value`, at least `factor` times the principal's normal (the
/// median of its busiest bucket on each earlier active day in the window),
/// and more than `z` robust deviations (1.4826 × MAD, at least 1) above it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SurgeSettings {
    #[serde(with = "humantime_serde")]
    pub bucket: Duration,
    pub min_value: u32,
    pub factor: f64,
    pub z: f64,
}

impl SurgeSettings {
    const fn new(bucket_secs: u64, min_value: u32) -> Self {
        Self {
            bucket: Duration::from_secs(bucket_secs),
            min_value,
            factor: 3.0,
            z: 6.0,
        }
    }

    pub fn bucket_ms(&self) -> i64 {
        ms(self.bucket).max(1)
    }

    /// The smallest value that is a surge over this normal.
    pub fn threshold(&self, median: f64, mad: f64) -> f64 {
        let spread = (1.4826 * mad).max(1.0);
        f64::from(self.min_value)
            .max(self.factor * median)
            .max((median + self.z * spread).floor() + 1.0)
    }
}

impl Default for SurgeSettings {
    fn default() -> Self {
        Self::new(300, 20)
    }
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
            rare_error_code_days: 0,
            error_message_spike: SurgeSettings::new(900, 5),
            api_call_surge: SurgeSettings::new(300, 20),
            service_enumeration: SurgeSettings::new(3600, 10),
            s3_get_object_surge: SurgeSettings::new(300, 100),
            impossible_travel_kmh: 900.0,
            impossible_travel_min_km: 500.0,
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

    pub fn reorder_ms(&self) -> i64 {
        ms(self.reorder_window)
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

    #[test]
    fn surge_threshold_is_the_strictest_of_its_three_rules() {
        let s = SurgeSettings::new(300, 20);
        assert_eq!(s.threshold(0.0, 0.0), 20.0, "minimum");
        assert_eq!(s.threshold(30.0, 1.0), 90.0, "factor over the normal");
        assert_eq!(
            s.threshold(30.0, 20.0),
            30.0 + (6.0 * 1.4826 * 20.0f64).floor() + 1.0,
            "spread"
        );
    }

    fn toml_like(json: &str) -> DetectionConfig {
        serde_json::from_str(json).unwrap()
    }
}
