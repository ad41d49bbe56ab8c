//! Behavioural baselines and the detectors of the catalogue (DETECTIONS.md).
//!
//! - [`baseline`]: the baseline stage in three hops: per-(account, principal) profiles,
//!   the account's active regions, organisation-wide command rarity and
//!   the compute inventory; it turns an enriched event into an
//!   [`Observation`](trailhound_proto::Observation).
//! - [`detectors`]: one file per detector; each is a pure function of an
//!   observation to candidate findings.
//! - [`config`]: windows, training, activation and per-detector settings.

pub mod baseline;
pub mod config;
pub mod detectors;
pub mod finding;
pub mod rates;
pub mod resource_policy;
pub mod seen;
pub mod travel;

pub use baseline::Baseline;
pub use config::{DetectionConfig, DetectorSettings};
pub use detectors::{Detector, Detectors};

/// Milliseconds in a day: profiles count activity by UTC day of event time.
pub const DAY_MS: i64 = 86_400_000;
