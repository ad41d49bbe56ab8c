//! `trailhound eval`: how well findings match labelled scenarios.
//!
//! A finding belongs to a scenario when it names one of the scenario's
//! principals and its event-time span overlaps the scenario's range. Only
//! findings at or above a severity threshold count (informational findings
//! are context, not alerts); those below are reported apart.
//!
//! - Recall: of the (attack, expected detector) pairs, the share where the
//!   detector raised a finding belonging to the attack.
//! - Precision of a detector: of its findings, the share that belong to an
//!   attack (any detector firing on attack activity is a true positive).
//! - False positives: findings that belong to no attack, in total, per
//!   million events, and per benign look-alike.
//! - Time to detection: event time of the first finding of an expected
//!   detector minus the event time of the attack's first event.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;
use trailhound_proto::{Finding, Severity};
use trailhound_synth::scenarios::Label;

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub events: u64,
    pub min_severity: &'static str,
    pub findings: usize,
    pub below_threshold: usize,
    /// Expected (attack, detector) pairs found, of all expected pairs.
    pub recall: f64,
    pub precision: f64,
    pub false_positives: usize,
    pub false_positives_per_million_events: f64,
    pub scenarios: Vec<ScenarioResult>,
    pub detectors: Vec<DetectorResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub malicious: bool,
    pub expected: Vec<String>,
    /// Detectors with a finding belonging to the scenario.
    pub fired: Vec<String>,
    pub missed: Vec<String>,
    /// For attacks; `None` for look-alikes.
    pub recall: Option<f64>,
    pub time_to_detection_seconds: Option<f64>,
    /// Findings on a benign look-alike (each one a false positive).
    pub false_positives: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DetectorResult {
    pub detector: String,
    pub findings: usize,
    pub true_positives: usize,
    pub false_positives: usize,
    pub precision: f64,
    /// Attacks expecting this detector, and how many it found.
    pub expected_in: usize,
    pub found_in: usize,
}

impl DetectorResult {
    fn new(detector: &str) -> Self {
        Self {
            detector: detector.to_string(),
            findings: 0,
            true_positives: 0,
            false_positives: 0,
            precision: 0.0,
            expected_in: 0,
            found_in: 0,
        }
    }
}

fn belongs(f: &Finding, label: &Label) -> bool {
    label.principals.contains(&f.principal)
        && f.first_event_ms <= label.end_ms()
        && f.last_event_ms >= label.start_ms()
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

pub fn evaluate(
    findings: &[Finding],
    labels: &[Label],
    events: u64,
    min_severity: Severity,
) -> Evaluation {
    let (alerts, below): (Vec<&Finding>, Vec<&Finding>) = findings
        .iter()
        .partition(|f| f.severity >= min_severity as i32);
    let attack_of = |f: &Finding| labels.iter().any(|l| l.malicious && belongs(f, l));

    let mut scenarios = Vec::new();
    let (mut expected_pairs, mut found_pairs) = (0, 0);
    let mut per_detector_expected: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for label in labels {
        let mine: Vec<&&Finding> = alerts.iter().filter(|f| belongs(f, label)).collect();
        let fired: BTreeSet<String> = mine.iter().map(|f| f.detector.clone()).collect();
        let missed: Vec<String> = label
            .expected
            .iter()
            .filter(|d| !fired.contains(*d))
            .cloned()
            .collect();
        let detection = mine
            .iter()
            .filter(|f| label.expected.contains(&f.detector))
            .map(|f| f.first_event_ms.max(label.start_ms()))
            .min()
            .map(|t| (t - label.start_ms()) as f64 / 1000.0);
        if label.malicious {
            expected_pairs += label.expected.len();
            found_pairs += label.expected.len() - missed.len();
            for d in &label.expected {
                let e = per_detector_expected.entry(d).or_default();
                e.0 += 1;
                e.1 += usize::from(fired.contains(d));
            }
        }
        scenarios.push(ScenarioResult {
            scenario: label.scenario.clone(),
            malicious: label.malicious,
            expected: label.expected.clone(),
            fired: fired.into_iter().collect(),
            recall: label
                .malicious
                .then(|| ratio(label.expected.len() - missed.len(), label.expected.len())),
            missed,
            time_to_detection_seconds: detection,
            false_positives: if label.malicious { 0 } else { mine.len() },
        });
    }

    let mut detectors: BTreeMap<String, DetectorResult> = BTreeMap::new();
    for f in &alerts {
        let d = detectors
            .entry(f.detector.clone())
            .or_insert_with(|| DetectorResult::new(&f.detector));
        d.findings += 1;
        if attack_of(f) {
            d.true_positives += 1;
        } else {
            d.false_positives += 1;
        }
    }
    for (detector, (expected_in, found_in)) in per_detector_expected {
        let d = detectors
            .entry(detector.to_string())
            .or_insert_with(|| DetectorResult::new(detector));
        d.expected_in = expected_in;
        d.found_in = found_in;
    }
    for d in detectors.values_mut() {
        d.precision = ratio(d.true_positives, d.findings);
    }
    let false_positives: usize = detectors.values().map(|d| d.false_positives).sum();
    Evaluation {
        events,
        min_severity: min_severity.label(),
        findings: alerts.len(),
        below_threshold: below.len(),
        recall: ratio(found_pairs, expected_pairs),
        precision: ratio(alerts.len() - false_positives, alerts.len()),
        false_positives,
        false_positives_per_million_events: false_positives as f64 * 1e6 / events.max(1) as f64,
        scenarios,
        detectors: detectors.into_values().collect(),
    }
}

fn percent(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

impl Evaluation {
    /// Every expected detector fired and no look-alike raised a finding.
    pub fn perfect(&self) -> bool {
        self.scenarios
            .iter()
            .all(|s| s.missed.is_empty() && s.false_positives == 0)
    }

    /// A readable report.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Scenarios");
        let _ = writeln!(
            out,
            "  {:<38} {:>7} {:>9}  {:<28} fired / missed",
            "scenario", "recall", "detected", "expected"
        );
        for s in &self.scenarios {
            let recall = s.recall.map_or_else(
                || {
                    if s.false_positives == 0 {
                        "ok".into()
                    } else {
                        format!("{} FP", s.false_positives)
                    }
                },
                percent,
            );
            let ttd = s
                .time_to_detection_seconds
                .map_or("-".into(), |t| format!("{t:.0} s"));
            let fired = if s.missed.is_empty() {
                s.fired.join(" ")
            } else {
                format!("{}  MISSED {}", s.fired.join(" "), s.missed.join(" "))
            };
            let _ = writeln!(
                out,
                "  {:<38} {:>7} {:>9}  {:<28} {}",
                s.scenario,
                recall,
                ttd,
                s.expected.join(" "),
                fired
            );
        }
        let _ = writeln!(
            out,
            "\nDetectors (findings at {} or above)",
            self.min_severity
        );
        let _ = writeln!(
            out,
            "  {:<8} {:>8} {:>6} {:>6} {:>10} {:>8}",
            "detector", "findings", "TP", "FP", "precision", "found"
        );
        for d in &self.detectors {
            let found = if d.expected_in == 0 {
                "-".into()
            } else {
                format!("{}/{}", d.found_in, d.expected_in)
            };
            let _ = writeln!(
                out,
                "  {:<8} {:>8} {:>6} {:>6} {:>10} {:>8}",
                d.detector,
                d.findings,
                d.true_positives,
                d.false_positives,
                percent(d.precision),
                found
            );
        }
        let _ = writeln!(
            out,
            "\n{} events, {} findings ({} below {}): recall {}, precision {}, {} false positives ({:.1} per 1M events)",
            self.events,
            self.findings,
            self.below_threshold,
            self.min_severity,
            percent(self.recall),
            percent(self.precision),
            self.false_positives,
            self.false_positives_per_million_events
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(scenario: &str, malicious: bool, expected: &[&str]) -> Label {
        Label {
            scenario: scenario.into(),
            malicious,
            account: "1".into(),
            principals: vec![format!("arn:{scenario}")],
            expected: expected.iter().map(|d| d.to_string()).collect(),
            start: "2024-04-10T02:00:00Z".into(),
            end: "2024-04-10T02:10:00Z".into(),
            description: String::new(),
        }
    }

    fn finding(detector: &str, principal: &str, minute: i64, severity: Severity) -> Finding {
        let t = 1_712_714_400_000 + minute * 60_000; // 2024-04-10T02:00Z + minutes
        Finding {
            detector: detector.into(),
            principal: format!("arn:{principal}"),
            first_event_ms: t,
            last_event_ms: t,
            severity: severity as i32,
            ..Default::default()
        }
    }

    #[test]
    fn recall_precision_and_time_to_detection() {
        let labels = [
            label("attack", true, &["TH-002", "TH-021"]),
            label("benign-vpn", false, &[]),
        ];
        let findings = [
            finding("TH-002", "attack", 3, Severity::High),
            finding("TH-019", "attack", 1, Severity::Low), // fired on the attack, not expected: still a TP
            finding("TH-016", "benign-vpn", 5, Severity::Informational), // below the threshold
            finding("TH-005", "benign-vpn", 5, Severity::Low), // a look-alike's false positive
            finding("TH-001", "someone", 5, Severity::Medium), // background false positive
            finding("TH-021", "attack", 90, Severity::High), // outside the attack's time range
        ];
        let e = evaluate(&findings, &labels, 2_000_000, Severity::Low);
        assert_eq!(e.recall, 0.5);
        let attack = &e.scenarios[0];
        assert_eq!(attack.fired, ["TH-002", "TH-019"]);
        assert_eq!(attack.missed, ["TH-021"]);
        assert_eq!(attack.time_to_detection_seconds, Some(180.0));
        assert_eq!(e.scenarios[1].false_positives, 1);
        assert_eq!(e.below_threshold, 1);
        assert_eq!(e.false_positives, 3);
        assert_eq!(e.false_positives_per_million_events, 1.5);
        let th021 = e.detectors.iter().find(|d| d.detector == "TH-021").unwrap();
        assert_eq!(
            (
                th021.findings,
                th021.false_positives,
                th021.found_in,
                th021.expected_in
            ),
            (1, 1, 0, 1)
        );
        assert!(!e.perfect());
    }

    #[test]
    fn perfect_when_everything_is_found_and_look_alikes_are_quiet() {
        let labels = [
            label("attack", true, &["TH-010"]),
            label("benign-travel", false, &[]),
        ];
        let e = evaluate(
            &[finding("TH-010", "attack", 0, Severity::Critical)],
            &labels,
            10,
            Severity::Low,
        );
        assert!(e.perfect());
        assert_eq!((e.recall, e.precision), (1.0, 1.0));
        assert_eq!(e.scenarios[0].time_to_detection_seconds, Some(0.0));
    }
}
