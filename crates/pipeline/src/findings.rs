//! The findings a scan created or updated. A scan keeps a short summary of
//! each and reads the findings themselves back from the alert stage's
//! state when they are shown, one at a time: with a state directory its
//! memory does not grow with their number beyond the summaries (a scan of
//! a million principals raises a quarter of a million findings).

use std::cmp::Reverse;
use std::collections::HashMap;

use trailhound_alert::AlertStage;
use trailhound_proto::{Finding, Severity};
use trailhound_state::StateError;

/// What the summary and the order of a finding need.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingSummary {
    pub id: String,
    pub detector: String,
    pub severity: Severity,
    pub first_event_ms: i64,
    pub suppressed: bool,
    /// Created by this scan (else updated).
    pub created: bool,
}

impl FindingSummary {
    /// Most severe first, then the earliest, then by id.
    fn order(&self) -> (Reverse<Severity>, i64, &str) {
        (Reverse(self.severity), self.first_event_ms, &self.id)
    }
}

/// Summaries of a scan's findings as they are raised, by id: the last
/// update of each finding wins.
#[derive(Debug, Default)]
pub(crate) struct Collected(HashMap<String, FindingSummary>);

impl Collected {
    pub(crate) fn add(&mut self, finding: &Finding, created: bool) {
        if let Some(known) = self.0.get_mut(&finding.id) {
            // Its id names its detector; created stays true: a later
            // update does not undo it.
            known.severity = finding.severity();
            known.first_event_ms = finding.first_event_ms;
            known.suppressed = finding.suppressed;
            known.created |= created;
            return;
        }
        let summary = FindingSummary {
            id: finding.id.clone(),
            detector: finding.detector.clone(),
            severity: finding.severity(),
            first_event_ms: finding.first_event_ms,
            suppressed: finding.suppressed,
            created,
        };
        self.0.insert(finding.id.clone(), summary);
    }
}

/// A scan's findings, most severe first, read from the state that stores them.
#[derive(Debug)]
pub struct ScanFindings {
    summaries: Vec<FindingSummary>,
    stored: Option<AlertStage>,
}

impl ScanFindings {
    /// `stored` holds the findings of `collected` (committed, with a store).
    pub(crate) fn new(collected: Collected, stored: AlertStage) -> Self {
        let mut summaries: Vec<FindingSummary> = collected.0.into_values().collect();
        summaries.sort_by(|a, b| a.order().cmp(&b.order()));
        Self {
            summaries,
            stored: Some(stored),
        }
    }

    pub fn len(&self) -> usize {
        self.summaries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.summaries.is_empty()
    }

    /// In order: most severe first, then the earliest, then by id.
    pub fn summaries(&self) -> &[FindingSummary] {
        &self.summaries
    }

    /// The findings in order, each read from the state when reached.
    pub fn iter(&self) -> impl Iterator<Item = Result<Finding, StateError>> + '_ {
        self.summaries.iter().map(|s| self.read(&s.id))
    }

    /// Every finding, in order, in memory at once.
    pub fn to_vec(&self) -> Result<Vec<Finding>, StateError> {
        self.iter().collect()
    }

    /// The finding `id` of this scan, as stored.
    pub fn read(&self, id: &str) -> Result<Finding, StateError> {
        let stored = self.stored.as_ref().map(|s| s.stored(id)).transpose()?;
        // Merged into the alert stage's state and committed with it: absent,
        // the state was changed under the scan.
        stored.flatten().ok_or_else(|| StateError::Missing {
            table: "findings".into(),
            key: id.into(),
        })
    }
}

impl Default for ScanFindings {
    /// No findings (a scan that could not start).
    fn default() -> Self {
        Self {
            summaries: Vec::new(),
            stored: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use trailhound_detect::DetectionConfig;
    use trailhound_proto::EvidenceEvent;
    use trailhound_state::{Batch, Store};

    use super::*;

    fn candidate(key: &str, t: i64, severity: Severity) -> Finding {
        let event = EvidenceEvent {
            event_id: format!("{key}-{t}"),
            event_time_ms: t,
        };
        Finding {
            detector: "TH-005".into(),
            account_id: "111122223333".into(),
            principal: "arn:aws:iam::111122223333:user/alice".into(),
            key: key.into(),
            severity: severity as i32,
            first_event_ms: t,
            last_event_ms: t,
            count: 1,
            evidence: vec![event.clone()],
            described: Some(event),
            ..Default::default()
        }
    }

    /// Raise the candidates through an alert stage, as a scan does, and
    /// commit its state to `store`.
    fn scanned(candidates: &[Finding], store: Option<Arc<Store>>) -> ScanFindings {
        let config = Arc::new(DetectionConfig::default());
        let mut stage = AlertStage::new(config, Arc::default(), store.clone());
        let mut collected = Collected::default();
        for c in candidates {
            let alert = stage.process(c.clone()).unwrap();
            collected.add(alert.finding.as_ref().unwrap(), alert.is_new);
        }
        // Committed twice: the second drain leaves in the cache only what its
        // bound allows, the rest is read back from the store.
        for _ in 0..2 {
            let mut batch = Batch::default();
            stage.drain_into(&mut batch);
            if let Some(store) = &store {
                store.commit(batch).unwrap();
            }
        }
        ScanFindings::new(collected, stage)
    }

    #[test]
    fn findings_come_back_most_severe_first_from_memory_or_the_store() {
        let candidates = [
            candidate("a", 3_000, Severity::Low),
            candidate("b", 2_000, Severity::High),
            candidate("c", 1_000, Severity::Low),
            // An update of the first, earlier: it now comes before "c".
            candidate("a", 500, Severity::Low),
        ];
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with_cache(dir.path(), trailhound_alert::TABLES, 1).unwrap();
        for findings in [
            scanned(&candidates, None),
            scanned(&candidates, Some(store)),
        ] {
            let keys: Vec<(String, i64)> = (findings.iter())
                .map(|f| f.map(|f| (f.key, f.last_event_ms)).unwrap())
                .collect();
            let expected =
                [("b", 2_000), ("a", 3_000), ("c", 1_000)].map(|(k, t)| (k.to_string(), t));
            assert_eq!(keys, expected);
            assert!(findings.summaries().iter().all(|s| s.created));
            assert_eq!(findings.to_vec().unwrap().len(), 3);
        }
    }
}
