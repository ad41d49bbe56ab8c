//! The in-process bus: the four stages chained in one thread, state
//! committed in one RocksDB write batch per batch of input. It is what
//! `scan` and the end-to-end tests run; the NATS JetStream bus carries the
//! same messages between the same stages running as services.

use std::sync::Arc;

use trailhound_alert::AlertConfig;
use trailhound_detect::baseline::Observed;
use trailhound_detect::{Baseline, DetectionConfig, Detectors};
use trailhound_enrich::EnricherConfig;
use trailhound_proto::{Alert, CloudTrailEvent, Finding, Observation};
use trailhound_state::{Batch, StateError, Store};

use crate::stage::{DetectStage, EnrichStage, MergeStage, Stage, StageError};

pub struct InProcessBus {
    pub enrich: EnrichStage,
    /// The baseline's three hops together (the services run them apart).
    pub baseline: Baseline,
    pub detect: DetectStage,
    pub merge: MergeStage,
    store: Option<Arc<Store>>,
    /// The last event's observation and enriched event, whose strings and
    /// vectors the next event reuses.
    spare: Option<Observation>,
    /// Reused between events.
    candidates: Vec<Finding>,
    /// Hashes of the principals' profile keys (account and principal).
    principals: foldhash::HashSet<u128>,
}

impl InProcessBus {
    pub fn new(
        enrich: &EnricherConfig,
        detection: Arc<DetectionConfig>,
        alert: Arc<AlertConfig>,
        partitions: u32,
        store: Option<Arc<Store>>,
    ) -> Self {
        Self {
            enrich: EnrichStage::new(enrich, partitions),
            baseline: Baseline::new(detection.clone(), store.clone()),
            detect: DetectStage(Detectors::new(detection.clone())),
            merge: MergeStage(trailhound_alert::AlertStage::new(
                detection,
                alert,
                store.clone(),
            )),
            store,
            spare: None,
            candidates: Vec::new(),
            principals: foldhash::HashSet::default(),
        }
    }

    /// Run one event through every stage; `alerts` receives the stored
    /// findings it created or updated, and `spent` the event once no stage
    /// needs it, so the caller chooses the thread that frees it. A rejection
    /// names the stage's reason; the rejected event is handed back too, last
    /// in `spent`, for the caller to report. A duplicate of an event
    /// published before stops at the baseline.
    pub fn publish(
        &mut self,
        event: Box<CloudTrailEvent>,
        alerts: &mut Vec<Alert>,
        spent: &mut Vec<Box<CloudTrailEvent>>,
    ) -> Result<Observed, StageError> {
        // The stages' logic rather than their `Stage` wrappers: a rejected
        // event comes back, the observation is not consumed, and the last
        // event's observation, with its enriched event, is reused: its
        // strings and vectors take the next event's values.
        let mut observation = self.spare.take().unwrap_or_default();
        let enriched = observation.enriched.get_or_insert_default();
        if let Err(rejected) = self.enrich.0.enrich_into(event, enriched) {
            self.spare = Some(observation);
            let reason = rejected.to_string();
            spent.push(rejected.event);
            return Err(StageError::Rejected(reason));
        }
        let observed = self.baseline.observe_into(&mut observation)?;
        if observed == Observed::New {
            let principal = self.baseline.profile.last_principal_key();
            self.principals
                .insert(xxhash_rust::xxh3::xxh3_128(principal.as_bytes()));
            self.detect.0.detect(&observation, &mut self.candidates);
        }
        spent.extend(observation.enriched.as_mut().and_then(|e| e.event.take()));
        self.spare = Some(observation);
        for candidate in self.candidates.drain(..) {
            self.merge.process(candidate, alerts)?;
        }
        Ok(observed)
    }

    /// Make every stage's state durable, with `meta` entries (checkpoints;
    /// `None` deletes one), in one write batch. Without a store, state
    /// stays in memory.
    pub fn commit(&mut self, meta: &[(String, Option<Vec<u8>>)]) -> Result<(), StateError> {
        let mut batch = Batch::default();
        self.baseline.drain_into(&mut batch);
        self.merge.drain_into(&mut batch);
        for (k, v) in meta {
            match v {
                Some(v) => batch.set_meta(k, v.as_slice()),
                None => batch.delete_meta(k),
            }
        }
        match &self.store {
            Some(store) => store.commit(batch),
            None => Ok(()),
        }
    }

    /// Distinct (account, principal) pairs this bus has processed.
    pub fn principals_seen(&self) -> usize {
        self.principals.len()
    }

    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailhound_proto::UserIdentity;

    fn bus() -> InProcessBus {
        InProcessBus::new(
            &EnricherConfig::default(),
            Arc::new(DetectionConfig::default()),
            Arc::new(AlertConfig::default()),
            1,
            None,
        )
    }

    fn event(id: &str, identity_type: Option<&str>) -> Box<CloudTrailEvent> {
        Box::new(CloudTrailEvent {
            event_id: id.into(),
            event_time_ms: 1_700_000_000_000,
            event_source: "ec2.amazonaws.com".into(),
            event_name: "DescribeInstances".into(),
            aws_region: "eu-west-1".into(),
            source_ip: "203.0.113.7".into(),
            recipient_account_id: "111122223333".into(),
            user_identity: identity_type.map(|t| UserIdentity {
                r#type: t.into(),
                arn: "arn:aws:iam::111122223333:user/alice".into(),
                account_id: "111122223333".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn processed_duplicate_and_rejected_events_are_handed_back() {
        let (mut bus, mut alerts, mut spent) = (bus(), Vec::new(), Vec::new());
        let published = bus.publish(event("e1", Some("IAMUser")), &mut alerts, &mut spent);
        assert_eq!(published.unwrap(), Observed::New);
        // Delivered again by a second trail.
        let again = bus.publish(event("e1", Some("IAMUser")), &mut alerts, &mut spent);
        assert_eq!(again.unwrap(), Observed::Duplicate);
        // No userIdentity: no principal to baseline.
        let rejected = bus.publish(event("e2", None), &mut alerts, &mut spent);
        assert!(
            matches!(rejected, Err(StageError::Rejected(_))),
            "{rejected:?}"
        );
        let ids: Vec<&str> = spent.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["e1", "e1", "e2"], "the rejected event last, whole");
        assert_eq!(bus.principals_seen(), 1);
    }
}
