//! Which stage reads which topic and where its outputs go: the hops every
//! service runs, built from the same stages the in-process bus chains.

use std::sync::Arc;

use trailhound_alert::{AlertConfig, AlertStage};
use trailhound_detect::baseline::{AccountBaseline, CommandBaseline, ProfileBaseline, command_key};
use trailhound_detect::{DetectionConfig, Detectors};
use trailhound_enrich::EnricherConfig;
use trailhound_proto::{EnrichedEvent, Finding, Observation, Severity};
use trailhound_state::Store;

use super::{Hop, Ownership, Topic, key_partition};
use crate::stage::{
    AccountStage, CommandStage, DetectStage, EnrichStage, MergeStage, ObservationStage,
    ProfileStage,
};

/// The partition of (account, principal) an enriched event belongs to.
fn principal_partition(enriched: &EnrichedEvent) -> u32 {
    enriched.principal.as_ref().map_or(0, |p| p.partition)
}

fn observed_enriched(observation: &Observation) -> &EnrichedEvent {
    observation
        .enriched
        .as_ref()
        .expect("observations carry their enriched event")
}

pub fn enrich(config: &EnricherConfig, partitions: u32) -> Hop<EnrichStage> {
    Hop {
        name: "enrich",
        stage: EnrichStage::new(config, partitions),
        input: Topic::RAW,
        output: Topic::ENRICHED,
        route: |enriched, _| principal_partition(enriched),
        partitions,
        owned: None,
        count_output: |_, _| {},
    }
}

/// The three baseline hops, each keyed by what its state is about.
pub fn baseline(
    config: Arc<DetectionConfig>,
    partitions: u32,
    ownership: Ownership,
    store: Arc<Store>,
) -> (Hop<ProfileStage>, Hop<AccountStage>, Hop<CommandStage>) {
    let owned = Some((ownership, store.clone()));
    (
        Hop {
            name: "baseline-profile",
            stage: ProfileStage(ProfileBaseline::new(config.clone(), Some(store.clone()))),
            input: Topic::ENRICHED,
            output: Topic::PROFILED,
            route: |observation, n| {
                let principal = observed_enriched(observation).principal.as_ref();
                key_partition(principal.map_or("", |p| p.account_id.as_str()), n)
            },
            partitions,
            owned: owned.clone(),
            count_output: |observation, metrics| {
                if observation.facts.as_ref().is_some_and(|f| f.late_by_ms > 0) {
                    metrics.late_event();
                }
            },
        },
        Hop {
            name: "baseline-account",
            stage: ObservationStage(AccountBaseline::new(config.clone(), Some(store.clone()))),
            input: Topic::PROFILED,
            output: Topic::ACCOUNTED,
            route: |observation, n| key_partition(&command_key(observed_enriched(observation)), n),
            partitions,
            owned: owned.clone(),
            count_output: |_, _| {},
        },
        Hop {
            name: "baseline-command",
            stage: ObservationStage(CommandBaseline::new(config, Some(store))),
            input: Topic::ACCOUNTED,
            output: Topic::OBSERVED,
            route: |observation, _| principal_partition(observed_enriched(observation)),
            partitions,
            owned,
            count_output: |_, _| {},
        },
    )
}

/// The partition of a finding: that of its (account, principal), so that
/// every candidate of one finding meets the same alert replica.
fn finding_partition(finding: &Finding, partitions: u32) -> u32 {
    trailhound_cloudtrail::partition_of(&finding.account_id, &finding.principal, partitions)
}

pub fn detect(
    config: Arc<DetectionConfig>,
    partitions: u32,
    ownership: Ownership,
    store: Arc<Store>,
) -> Hop<DetectStage> {
    Hop {
        name: "detect",
        stage: DetectStage(Detectors::new(config)),
        input: Topic::OBSERVED,
        output: Topic::FINDINGS,
        route: finding_partition,
        partitions,
        owned: Some((ownership, store)),
        count_output: |_, _| {},
    }
}

pub fn alert(
    config: Arc<DetectionConfig>,
    alert: Arc<AlertConfig>,
    partitions: u32,
    ownership: Ownership,
    store: Arc<Store>,
) -> Hop<MergeStage> {
    Hop {
        name: "alert",
        stage: MergeStage(AlertStage::new(config, alert, Some(store.clone()))),
        input: Topic::FINDINGS,
        output: Topic::ALERTS,
        route: |_, _| 0,
        partitions,
        owned: Some((ownership, store)),
        count_output: |alert, metrics| {
            if let Some(finding) = alert.finding.as_ref().filter(|_| alert.is_new) {
                let severity = Severity::try_from(finding.severity).unwrap_or_default();
                metrics.finding(&finding.detector, severity.label());
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use trailhound_proto::PrincipalFacts;
    use trailhound_telemetry::Metrics;

    use super::*;
    use crate::stage::all_tables;

    #[test]
    fn the_profile_hop_counts_events_read_late() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &all_tables()).unwrap();
        let whole = Ownership {
            replica: 0,
            replicas: 1,
        };
        let (profile, _, _) = baseline(Arc::default(), 4, whole, store);
        let metrics = Metrics::new();
        let mut observation = Observation {
            facts: Some(PrincipalFacts::default()),
            ..Default::default()
        };
        (profile.count_output)(&observation, &metrics);
        observation.facts.as_mut().unwrap().late_by_ms = 3_600_000;
        (profile.count_output)(&observation, &metrics);
        assert!(
            metrics
                .encode()
                .contains("trailhound_events_late_total 1\n"),
            "{}",
            metrics.encode()
        );
    }
}
