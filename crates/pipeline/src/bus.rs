//! The in-process bus: the four stages chained in one thread, state
//! committed in one RocksDB write batch per batch of input. It is what
//! `scan` and the end-to-end tests run; the NATS JetStream bus carries the
//! same messages between the same stages running as services.

use std::collections::HashSet;
use std::sync::Arc;

use trailhound_alert::AlertConfig;
use trailhound_detect::{DetectionConfig, Detectors};
use trailhound_enrich::EnricherConfig;
use trailhound_proto::{Alert, CloudTrailEvent, EnrichedEvent, Finding, Observation};
use trailhound_state::{Batch, StateError, Store};

use crate::stage::{BaselineStage, DetectStage, EnrichStage, MergeStage, Stage, StageError};

pub struct InProcessBus {
    pub enrich: EnrichStage,
    pub baseline: BaselineStage,
    pub detect: DetectStage,
    pub merge: MergeStage,
    store: Option<Arc<Store>>,
    // Reused between events to avoid allocating per message.
    enriched: Vec<EnrichedEvent>,
    observed: Vec<Observation>,
    candidates: Vec<Finding>,
    principals: HashSet<u128>,
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
            baseline: BaselineStage::new(detection.clone(), store.clone()),
            detect: DetectStage(Detectors::new(detection.clone())),
            merge: MergeStage(trailhound_alert::AlertStage::new(
                detection,
                alert,
                store.clone(),
            )),
            store,
            enriched: Vec::with_capacity(1),
            observed: Vec::with_capacity(1),
            candidates: Vec::new(),
            principals: HashSet::new(),
        }
    }

    /// Run one event through every stage; `alerts` receives the stored
    /// findings it created or updated. A rejection names the stage's reason.
    pub fn publish(
        &mut self,
        event: Box<CloudTrailEvent>,
        alerts: &mut Vec<Alert>,
    ) -> Result<(), StageError> {
        self.enrich.process(event, &mut self.enriched)?;
        for enriched in self.enriched.drain(..) {
            if let Some(p) = &enriched.principal {
                let mut key = xxhash_rust::xxh3::Xxh3::new();
                key.update(p.account_id.as_bytes());
                key.update(b"\x1f");
                key.update(p.arn.as_bytes());
                self.principals.insert(key.digest128());
            }
            self.baseline.process(enriched, &mut self.observed)?;
        }
        for observation in self.observed.drain(..) {
            self.detect.process(observation, &mut self.candidates)?;
        }
        for candidate in self.candidates.drain(..) {
            self.merge.process(candidate, alerts)?;
        }
        Ok(())
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
