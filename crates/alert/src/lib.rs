//! The alert stage: candidate findings from the detectors are merged into
//! stored findings. A finding's id is a hash of (detector, account,
//! principal, key, dedup bucket of its event time), and merging is
//! commutative and idempotent, so replays and arrival order never create a
//! second finding or change the result. Suppression rules
//! ([`suppression`]) mark findings without dropping them.

pub mod render;
pub mod suppression;

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use trailhound_detect::DetectionConfig;
use trailhound_proto::{Alert, Attack, EvidenceEvent, Finding, Message};

pub use suppression::{AlertConfig, SuppressionRule};
use trailhound_state::{Batch, StateError, Store, Table};

pub const TABLES: &[&str] = &["findings"];

pub use trailhound_detect::finding::MAX_EVIDENCE;

/// A protobuf message stored in a state table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Proto<T>(pub T);

impl<T: Message> Serialize for Proto<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0.encode_to_vec())
    }
}

impl<'de, T: Message + Default> Deserialize<'de> for Proto<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = <Vec<u8>>::deserialize(d)?;
        T::decode(&bytes[..])
            .map(Proto)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug)]
pub struct AlertStage {
    config: Arc<DetectionConfig>,
    alert: Arc<AlertConfig>,
    findings: Table<Proto<Finding>>,
}

impl AlertStage {
    pub fn new(
        config: Arc<DetectionConfig>,
        alert: Arc<AlertConfig>,
        store: Option<Arc<Store>>,
    ) -> Self {
        Self {
            config,
            alert,
            findings: Table::new("findings", store),
        }
    }

    /// Merge a candidate into its stored finding (created when new).
    pub fn process(&mut self, mut candidate: Finding) -> Result<Alert, StateError> {
        candidate.id = finding_id(&candidate, self.config.dedup_ms(&candidate.detector));
        sort_attack(&mut candidate.attack);
        let mut is_new = false;
        let stored = self.findings.entry(&candidate.id.clone(), || {
            is_new = true;
            Proto(candidate.clone())
        })?;
        if !is_new {
            merge(&mut stored.0, candidate);
        }
        // After the merge: rules may match the fields the merge chose.
        suppression::apply(&self.alert.suppress, &mut stored.0);
        Ok(Alert {
            finding: Some(stored.0.clone()),
            is_new,
        })
    }

    pub fn drain_into(&mut self, batch: &mut Batch) {
        self.findings.drain_into(batch);
    }

    /// The stored finding `id`, read without keeping it in the cache.
    pub fn stored(&self, id: &str) -> Result<Option<Finding>, StateError> {
        Ok(self.findings.peek(id)?.map(|f| f.0))
    }
}

/// Every finding in a store, for reports.
pub fn stored_findings(store: &Store) -> Result<Vec<Finding>, StateError> {
    Ok(store
        .scan::<Proto<Finding>>("findings")?
        .into_iter()
        .map(|(_, f)| f.0)
        .collect())
}

pub fn finding_id(f: &Finding, dedup_ms: i64) -> String {
    let bucket = f.first_event_ms.div_euclid(dedup_ms);
    let text = format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{bucket}",
        f.detector, f.account_id, f.principal, f.key
    );
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

/// ATT&CK entries in one canonical order, without repeats.
fn sort_attack(attack: &mut Vec<Attack>) {
    attack.sort_by(|a, b| (&a.tactic, &a.technique).cmp(&(&b.tactic, &b.technique)));
    attack.dedup();
}

fn order(e: &EvidenceEvent) -> (i64, &str) {
    (e.event_time_ms, e.event_id.as_str())
}

/// Keep the earliest MAX_EVIDENCE of the stored and new evidence.
fn add_evidence(stored: &mut Finding, evidence: &[EvidenceEvent]) {
    stored.evidence.extend(evidence.iter().cloned());
    stored.evidence.sort_by(|a, b| order(a).cmp(&order(b)));
    stored.evidence.dedup_by(|a, b| a.event_id == b.event_id);
    stored.evidence.truncate(MAX_EVIDENCE);
}

/// Fold `candidate` into `stored`. Commutative and idempotent.
pub fn merge(stored: &mut Finding, candidate: Finding) {
    let (Some(c_desc), Some(s_desc)) = (&candidate.described, &stored.described) else {
        return;
    };
    if candidate.first_event_only {
        // Novelty: the finding is its earliest event; a later one adds nothing.
        // On a tie, the later evidence wins (a journey's nearer other end).
        fn evidence(f: &Finding) -> Vec<(i64, &str)> {
            f.evidence.iter().map(order).collect()
        }
        let earlier = (order(c_desc), std::cmp::Reverse(evidence(&candidate)))
            < (order(s_desc), std::cmp::Reverse(evidence(stored)));
        if earlier {
            let id = std::mem::take(&mut stored.id);
            *stored = Finding { id, ..candidate };
        }
        return;
    }
    // A volume finding is described by its busiest bucket; others by their
    // highest-ranked, then earliest, event.
    let peak = |f: &Finding| if f.count_is_peak { f.count } else { 0 };
    let takes_over = (
        peak(&candidate),
        candidate.rank,
        std::cmp::Reverse(order(c_desc)),
    ) > (peak(stored), stored.rank, std::cmp::Reverse(order(s_desc)));
    // Replays are recognised by the kept evidence; past MAX_EVIDENCE events a
    // replayed event later than every kept one would count again (scan skips
    // files it has already read, so replays do not reach this point).
    let known = stored
        .evidence
        .iter()
        .any(|e| e.event_id == c_desc.event_id);
    if candidate.count_is_peak {
        // The candidate carries its bucket's earliest events and size.
        stored.count = stored.count.max(candidate.count);
        add_evidence(stored, &candidate.evidence);
    } else if !known {
        stored.count += candidate.count;
        add_evidence(stored, &candidate.evidence);
    }
    if !candidate.count_is_peak {
        stored.attack.extend(candidate.attack.iter().cloned());
        sort_attack(&mut stored.attack);
    }
    stored.first_event_ms = stored.first_event_ms.min(candidate.first_event_ms);
    stored.last_event_ms = match stored.evidence.last() {
        // A volume finding spans its kept evidence, the same whatever the
        // arrival order: a candidate's own span may end at an event that a
        // late, earlier one then pushed out of the bucket's earliest.
        Some(last) if candidate.count_is_peak => last.event_time_ms,
        _ => stored.last_event_ms.max(candidate.last_event_ms),
    };
    if takes_over {
        stored.title = candidate.title;
        stored.severity = candidate.severity;
        stored.rank = candidate.rank;
        stored.region = candidate.region;
        stored.baseline_facts = candidate.baseline_facts;
        stored.source_ip = candidate.source_ip;
        stored.country = candidate.country;
        stored.as_org = candidate.as_org;
        stored.asn = candidate.asn;
        stored.user_agent = candidate.user_agent;
        stored.described = candidate.described;
        if candidate.count_is_peak {
            // A volume finding's mapping is its describing bucket's.
            stored.attack = candidate.attack;
            sort_attack(&mut stored.attack);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailhound_proto::Severity;

    fn cand(id: &str, t: i64, severity: Severity, first_only: bool) -> Finding {
        let e = EvidenceEvent {
            event_id: id.into(),
            event_time_ms: t,
        };
        Finding {
            detector: "TH-002".into(),
            account_id: "1".into(),
            principal: "p".into(),
            key: "k".into(),
            title: format!("{severity:?} {id}"),
            severity: severity as i32,
            rank: severity as u32 * 2 + 1,
            first_event_ms: t,
            last_event_ms: t,
            count: 1,
            evidence: vec![e.clone()],
            described: Some(e),
            first_event_only: first_only,
            ..Default::default()
        }
    }

    fn run(order: &[Finding]) -> Vec<Finding> {
        let mut stage = AlertStage::new(Arc::new(DetectionConfig::default()), Arc::default(), None);
        let mut ids = Vec::new();
        for c in order {
            ids.push(stage.process(c.clone()).unwrap().finding.unwrap().id);
        }
        ids.sort();
        ids.dedup();
        ids.iter()
            .map(|id| stage.findings.get(id).unwrap().unwrap().0.clone())
            .collect()
    }

    #[test]
    fn merging_is_order_independent_and_idempotent() {
        let a = cand("a", 1_000, Severity::Low, false);
        let b = cand("b", 2_000, Severity::High, false);
        let c = cand("c", 3_000, Severity::High, false);
        let forward = run(&[a.clone(), b.clone(), c.clone()]);
        let backward = run(&[c.clone(), b.clone(), a.clone()]);
        let replayed = run(&[a.clone(), b.clone(), c.clone(), a, b, c]);
        assert_eq!(forward, backward);
        assert_eq!(forward, replayed);
        let f = &forward[0];
        assert_eq!(
            (f.count, f.first_event_ms, f.last_event_ms),
            (3, 1_000, 3_000)
        );
        assert_eq!(f.title, "High b", "highest rank, earliest on a tie");
        assert_eq!(
            f.evidence
                .iter()
                .map(|e| e.event_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn novelty_findings_keep_their_earliest_event() {
        let early = cand("early", 1_000, Severity::Medium, true);
        let late = cand("late", 2_000, Severity::Medium, true);
        let f = run(&[late.clone(), early.clone()]);
        assert_eq!(f, run(&[early, late]));
        assert_eq!(
            (f[0].count, f[0].evidence[0].event_id.as_str()),
            (1, "early")
        );
    }

    #[test]
    fn volume_findings_keep_their_busiest_bucket_in_any_order() {
        let surge = |id: &str, t: i64, count: u64| Finding {
            count,
            count_is_peak: true,
            ..cand(id, t, Severity::Medium, false)
        };
        let buckets = [
            surge("a", 1_000, 25),
            surge("a", 1_000, 40),
            surge("z", 9_000, 30),
        ];
        let forward = run(&buckets);
        let mut reversed = buckets.clone();
        reversed.reverse();
        assert_eq!(forward, run(&reversed));
        assert_eq!(
            forward,
            run(&[buckets.as_slice(), buckets.as_slice()].concat())
        );
        assert_eq!((forward[0].count, forward[0].evidence.len()), (40, 2));
    }

    #[test]
    fn a_volume_finding_spans_its_earliest_events_whatever_arrived_first() {
        // A bucket's candidate carries its earliest events so far: before
        // the bucket's first event arrives late, the 21st is among them.
        let bucket = |times: std::ops::Range<i64>| {
            let evidence: Vec<EvidenceEvent> = times
                .map(|t| EvidenceEvent {
                    event_id: format!("e{t:02}"),
                    event_time_ms: t * 1_000,
                })
                .collect();
            Finding {
                count: 21,
                count_is_peak: true,
                first_event_ms: evidence[0].event_time_ms,
                last_event_ms: evidence.last().unwrap().event_time_ms,
                described: Some(evidence[0].clone()),
                evidence,
                ..cand("", 0, Severity::Medium, false)
            }
        };
        let (in_order, first_late) = (bucket(0..MAX_EVIDENCE as i64), bucket(1..21));
        let f = run(&[first_late.clone(), in_order.clone()]);
        assert_eq!(f, run(&[in_order]));
        assert_eq!(
            (f[0].first_event_ms, f[0].last_event_ms),
            (0, 19_000),
            "e20 was pushed out by e00"
        );
    }

    #[test]
    fn dedup_windows_split_findings() {
        let day = 86_400_000;
        let five_days = run(&[
            cand("a", 0, Severity::Low, false),
            cand("b", 4 * day, Severity::Low, false),
        ]);
        assert_eq!(five_days.len(), 1, "TH-002 dedups over 5 days");
        let later = run(&[
            cand("a", 0, Severity::Low, false),
            cand("b", 6 * day, Severity::Low, false),
        ]);
        assert_eq!(later.len(), 2);
    }
}
