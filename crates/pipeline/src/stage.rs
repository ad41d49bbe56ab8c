//! The stage abstraction. A stage is synchronous and does no I/O of its
//! own: given one input message and its state it produces output messages;
//! state changes are handed over at commit points by [`Stage::drain_into`],
//! so whichever bus runs it decides when state, checkpoint and acks are
//! made durable.

use trailhound_alert::AlertStage;
use trailhound_detect::Detectors;
use trailhound_detect::baseline::{
    AccountBaseline, CommandBaseline, ObservationHop, Observed, ProfileBaseline, observation_of,
};
use trailhound_enrich::{Enricher, EnricherConfig};
use trailhound_proto::{Alert, CloudTrailEvent, EnrichedEvent, Finding, Observation};
use trailhound_state::{Batch, StateError};

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The input can never be processed: dead-letter it and go on.
    #[error("{0}")]
    Rejected(String),
    /// State could not be read or written: retry later.
    #[error(transparent)]
    State(#[from] StateError),
}

pub trait Stage {
    type In;
    type Out;
    /// Process one input, appending what it produces to `out`.
    fn process(&mut self, input: Self::In, out: &mut Vec<Self::Out>) -> Result<(), StageError>;
    /// Move state changes since the last commit into `batch`.
    fn drain_into(&mut self, _batch: &mut Batch) {}
}

/// Stateless: geo, ASN, AWS ranges, user agent, ATT&CK, principal.
pub struct EnrichStage(pub Enricher);

impl EnrichStage {
    pub fn new(config: &EnricherConfig, partitions: u32) -> Self {
        Self(Enricher::new(config, partitions))
    }
}

impl Stage for EnrichStage {
    type In = Box<CloudTrailEvent>;
    type Out = EnrichedEvent;
    fn process(
        &mut self,
        input: Box<CloudTrailEvent>,
        out: &mut Vec<EnrichedEvent>,
    ) -> Result<(), StageError> {
        out.push(
            self.0
                .enrich(input)
                .map_err(|e| StageError::Rejected(e.to_string()))?,
        );
        Ok(())
    }
}

/// The baseline's profile hop alone: the services run each hop of the
/// baseline on its own partitioned subject (DESIGN.md). A duplicate of an
/// event it observed before goes no further.
pub struct ProfileStage(pub ProfileBaseline);

impl Stage for ProfileStage {
    type In = EnrichedEvent;
    type Out = Observation;
    fn process(
        &mut self,
        input: EnrichedEvent,
        out: &mut Vec<Observation>,
    ) -> Result<(), StageError> {
        let mut observation = observation_of(Box::new(input));
        if self.0.observe(&mut observation)? == Observed::New {
            out.push(observation);
        }
        Ok(())
    }
    fn drain_into(&mut self, batch: &mut Batch) {
        self.0.drain_into(batch);
    }
}

/// A baseline hop after the profile alone (account, command): adds its
/// facts to the observation and passes it on.
pub struct ObservationStage<B>(pub B);

pub type AccountStage = ObservationStage<AccountBaseline>;
pub type CommandStage = ObservationStage<CommandBaseline>;

impl<B: ObservationHop> Stage for ObservationStage<B> {
    type In = Observation;
    type Out = Observation;
    fn process(
        &mut self,
        mut input: Observation,
        out: &mut Vec<Observation>,
    ) -> Result<(), StageError> {
        self.0.observe(&mut input)?;
        out.push(input);
        Ok(())
    }
    fn drain_into(&mut self, batch: &mut Batch) {
        self.0.drain_into(batch);
    }
}

/// The detectors: observations in, candidate findings out.
pub struct DetectStage(pub Detectors);

impl Stage for DetectStage {
    type In = Observation;
    type Out = Finding;
    fn process(&mut self, input: Observation, out: &mut Vec<Finding>) -> Result<(), StageError> {
        self.0.detect(&input, out);
        Ok(())
    }
}

/// Merge and dedup: candidate findings in, stored findings out.
pub struct MergeStage(pub AlertStage);

impl Stage for MergeStage {
    type In = Finding;
    type Out = Alert;
    fn process(&mut self, input: Finding, out: &mut Vec<Alert>) -> Result<(), StageError> {
        out.push(self.0.process(input)?);
        Ok(())
    }
    fn drain_into(&mut self, batch: &mut Batch) {
        self.0.drain_into(batch);
    }
}

/// Every table a process running all stages needs in its store.
pub fn all_tables() -> Vec<&'static str> {
    let mut tables = trailhound_detect::baseline::tables();
    tables.extend_from_slice(trailhound_alert::TABLES);
    tables
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use trailhound_detect::DetectionConfig;
    use trailhound_proto::{CloudTrailEvent, UserIdentity};

    use super::*;

    #[test]
    fn the_profile_hop_passes_an_event_delivered_twice_on_once() {
        let event = CloudTrailEvent {
            event_id: "e1".into(),
            event_time_ms: 1_700_000_000_000,
            event_source: "iam.amazonaws.com".into(),
            event_name: "CreateAccessKey".into(),
            aws_region: "us-east-1".into(),
            source_ip: "203.0.113.7".into(),
            recipient_account_id: "111122223333".into(),
            user_identity: Some(UserIdentity {
                r#type: "IAMUser".into(),
                arn: "arn:aws:iam::111122223333:user/alice".into(),
                account_id: "111122223333".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut enrich = EnrichStage::new(&EnricherConfig::default(), 1);
        let config = Arc::new(DetectionConfig::default());
        let mut profile = ProfileStage(ProfileBaseline::new(config, None));
        let (mut enriched, mut observations) = (Vec::new(), Vec::new());
        // Both trails' deliveries, then a later call.
        let later = CloudTrailEvent {
            event_id: "e2".into(),
            event_time_ms: event.event_time_ms + 60_000,
            ..event.clone()
        };
        for e in [event.clone(), event, later] {
            enrich.process(Box::new(e), &mut enriched).unwrap();
        }
        for e in enriched {
            profile.process(e, &mut observations).unwrap();
        }
        let ids: Vec<&str> = observations
            .iter()
            .map(|o| {
                o.enriched
                    .as_ref()
                    .unwrap()
                    .event
                    .as_ref()
                    .unwrap()
                    .event_id
                    .as_str()
            })
            .collect();
        assert_eq!(ids, ["e1", "e2"]);
    }
}
