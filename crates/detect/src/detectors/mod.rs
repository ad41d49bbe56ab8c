//! The detector catalogue. A detector is one file: what it keys on, when it
//! fires, its severity rules and guidance, and its tests. To add one, write
//! the file and add one line to `catalogue()` below.

use std::sync::Arc;

use trailhound_proto::{Finding, Novelty, Observation, Severity};

use crate::config::DetectionConfig;
use crate::finding::{GuidanceText, ObservationExt, candidate, context_facts, novelty_fact};

mod surge;
mod th000_new_principal;
mod th001_new_service_region;
mod th002_compute_outside_region;
mod th003_unusual_country_for_command;
mod th004_unusual_city_for_command;
mod th005_unusual_command;
mod th006_rare_error_code;
mod th007_error_message_spike;
mod th008_api_call_surge;
mod th009_service_enumeration;
mod th010_root_activity;
mod th011_access_key_manipulation;
mod th012_unusual_role_assumption;
mod th013_unusual_s3_access;
mod th014_security_group_opened;
mod th015_new_geolocation;
mod th016_impossible_travel;
mod th017_flagged_ip;
mod th018_new_aso;
mod th019_new_user_agent;
mod th020_lateral_movement;
mod th021_instance_credentials_outside_aws;
mod th022_high_risk_api;

#[cfg(test)]
pub(crate) mod testing;

/// Every detector, in catalogue order.
fn catalogue() -> Vec<Box<dyn Detector>> {
    vec![
        Box::new(th000_new_principal::NewPrincipal),
        Box::new(th001_new_service_region::NewServiceInRegion),
        Box::new(th002_compute_outside_region::ComputeOutsideRegion),
        Box::new(th003_unusual_country_for_command::UnusualCountryForCommand),
        Box::new(th004_unusual_city_for_command::UnusualCityForCommand),
        Box::new(th005_unusual_command::UnusualCommand),
        Box::new(th006_rare_error_code::RareErrorCode),
        Box::new(th007_error_message_spike::ErrorMessageSpike),
        Box::new(th008_api_call_surge::ApiCallSurge),
        Box::new(th009_service_enumeration::ServiceEnumeration),
        Box::new(th010_root_activity::RootActivity),
        Box::new(th011_access_key_manipulation::AccessKeyManipulation),
        Box::new(th012_unusual_role_assumption::UnusualRoleAssumption),
        Box::new(th013_unusual_s3_access::UnusualS3Access),
        Box::new(th014_security_group_opened::SecurityGroupOpened),
        Box::new(th015_new_geolocation::NewGeolocation),
        Box::new(th016_impossible_travel::ImpossibleTravel),
        Box::new(th017_flagged_ip::FlaggedIp),
        Box::new(th018_new_aso::NewAso),
        Box::new(th019_new_user_agent::NewUserAgent),
        Box::new(th020_lateral_movement::LateralMovement),
        Box::new(th021_instance_credentials_outside_aws::InstanceCredentialsOutsideAws),
        Box::new(th022_high_risk_api::HighRiskApi),
    ]
}

pub trait Detector: Send + Sync {
    /// Catalogue id, e.g. "TH-001".
    fn id(&self) -> &'static str;
    fn name(&self) -> &'static str;
    /// Candidate findings for one observation (merged later by the alert stage).
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>);
}

/// What a detector may consult besides the observation.
pub struct Context<'a> {
    pub config: &'a DetectionConfig,
}

impl Context<'_> {
    /// The principal's profile covers the detector's training period.
    pub fn trained(&self, id: &str, obs: &Observation) -> bool {
        obs.event().event_time_ms - obs.facts().first_seen_ms >= self.config.training_ms(id)
    }

    /// The deployment has seen the detector's activation period of data.
    pub fn active(&self, id: &str, obs: &Observation) -> bool {
        obs.event().event_time_ms - obs.facts().data_start_ms >= self.config.activation_ms(id)
    }

    /// Both: novelty detectors fire only then.
    pub fn learned(&self, id: &str, obs: &Observation) -> bool {
        self.active(id, obs) && self.trained(id, obs)
    }

    pub fn window_days(&self) -> u32 {
        self.config.window_days()
    }
}

/// A novelty finding: `n`'s value (`what`) is new for the principal in the
/// window; described by its earliest event, with the principal's context.
pub(crate) fn novelty_finding(
    obs: &Observation,
    ctx: &Context<'_>,
    id: &str,
    (severity, title): (Severity, String),
    what: &str,
    n: &Novelty,
    guidance: &GuidanceText,
) -> Finding {
    let value = obs.value(n);
    let mut f = candidate(obs, id, title, severity, value.clone(), guidance);
    f.first_event_only = true;
    f.baseline_facts
        .push(novelty_fact(what, &value, n, ctx.window_days()));
    f.baseline_facts
        .extend(context_facts(obs, ctx.window_days()));
    f
}

/// The enabled detectors, run over each observation.
pub struct Detectors {
    config: Arc<DetectionConfig>,
    enabled: Vec<Box<dyn Detector>>,
}

impl std::fmt::Debug for Detectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.enabled.iter().map(|d| d.id()))
            .finish()
    }
}

impl Detectors {
    pub fn new(config: Arc<DetectionConfig>) -> Self {
        let enabled = catalogue()
            .into_iter()
            .filter(|d| config.enabled(d.id()))
            .collect();
        Self { config, enabled }
    }

    /// (id, name) of every detector in the catalogue, enabled or not.
    pub fn catalogue() -> Vec<(&'static str, &'static str)> {
        catalogue().iter().map(|d| (d.id(), d.name())).collect()
    }

    pub fn detect(&self, obs: &Observation, out: &mut Vec<Finding>) {
        let ctx = Context {
            config: &self.config,
        };
        for d in &self.enabled {
            d.detect(obs, &ctx, out);
        }
    }
}
