//! The Stratus Red Team detonation logs (../shared/data/stratus-red-team):
//! each technique that maps to a Trailhound detector fires it on the
//! detonation's own events, after three weeks of benign history of the
//! same identities. The table below is the coverage list; the test fails
//! when a covered technique stops firing or a technique is not listed.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use trailhound_e2e::{scan_config, shared, time_ms};

/// Technique → the detectors that must fire on its events (none listed:
/// only the generic novelty of TH-001/TH-005 covers it).
const COVERAGE: &[(&str, &[&str])] = &[
    (
        "aws.credential-access.ec2-get-password-data",
        &["TH-007", "TH-008", "TH-012"],
    ),
    // Used from another EC2 instance (an AWS address): TH-021 rightly silent.
    (
        "aws.credential-access.ec2-steal-instance-credentials",
        &["TH-008", "TH-020"],
    ),
    (
        "aws.credential-access.secretsmanager-batch-retrieve-secrets",
        &[],
    ),
    (
        "aws.credential-access.secretsmanager-retrieve-secrets",
        &["TH-008"],
    ),
    (
        "aws.credential-access.ssm-retrieve-securestring-parameters",
        &[],
    ),
    ("aws.defense-evasion.cloudtrail-delete", &["TH-022"]),
    (
        "aws.defense-evasion.cloudtrail-event-selectors",
        &["TH-022"],
    ),
    ("aws.defense-evasion.cloudtrail-stop", &["TH-022"]),
    ("aws.defense-evasion.dns-delete-logs", &["TH-022"]),
    // LeaveOrganization was refused: an attempt is still TH-022 (high).
    (
        "aws.defense-evasion.organizations-leave",
        &["TH-006", "TH-012", "TH-022"],
    ),
    ("aws.defense-evasion.vpc-remove-flow-logs", &["TH-022"]),
    (
        "aws.discovery.ec2-download-user-data",
        &["TH-007", "TH-012"],
    ),
    ("aws.execution.ec2-launch-unusual-instances", &["TH-012"]),
    ("aws.execution.ec2-user-data", &["TH-008"]),
    ("aws.execution.ssm-send-command", &["TH-008", "TH-020"]),
    ("aws.execution.ssm-start-session", &["TH-008", "TH-020"]),
    (
        "aws.exfiltration.ec2-security-group-open-port-22-ingress",
        &["TH-014"],
    ),
    ("aws.exfiltration.ec2-share-ami", &["TH-022"]),
    ("aws.exfiltration.ec2-share-ebs-snapshot", &["TH-022"]),
    ("aws.exfiltration.rds-share-snapshot", &["TH-022"]),
    ("aws.impact.bedrock-invoke-model", &[]),
    ("aws.initial-access.console-login-without-mfa", &[]),
    ("aws.lateral-movement.ec2-instance-connect", &["TH-020"]),
    (
        "aws.lateral-movement.ec2-serial-console-send-ssh-public-key",
        &["TH-020"],
    ),
    ("aws.persistence.iam-backdoor-role", &["TH-022"]),
    ("aws.persistence.iam-backdoor-user", &["TH-011"]),
    ("aws.persistence.iam-create-admin-user", &["TH-011"]),
    ("aws.persistence.iam-create-backdoor-role", &["TH-022"]),
    ("aws.persistence.iam-create-user-login-profile", &[]),
    ("aws.persistence.lambda-backdoor-function", &["TH-022"]),
    ("aws.persistence.lambda-layer-extension", &[]),
    ("aws.persistence.lambda-overwrite-code", &[]),
    ("aws.persistence.rolesanywhere-create-trust-anchor", &[]),
    ("aws.persistence.sts-federation-token", &[]),
    (
        "aws.privilege-escalation.iam-update-user-login-profile",
        &[],
    ),
];

const DAY_MS: i64 = 86_400_000;
const HISTORY_DAYS: i64 = 21;

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Three weeks of a routine for every identity of the detonation: a few
/// describe calls a day from the same address and client, ending the day
/// before the detonation.
fn benign_history(detonation: &[Value]) -> Vec<Value> {
    let start = detonation.iter().map(time_ms).min().unwrap();
    let mut seen = BTreeSet::new();
    let mut history = Vec::new();
    for record in detonation {
        let who = record["userIdentity"]["arn"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if !seen.insert(who.clone()) {
            continue;
        }
        for day in 1..=HISTORY_DAYS {
            for (i, (source, name)) in [
                ("ec2.amazonaws.com", "DescribeRegions"),
                ("sts.amazonaws.com", "GetCallerIdentity"),
            ]
            .iter()
            .enumerate()
            {
                let mut r = record.clone();
                let t = start - day * DAY_MS + i as i64 * 60_000;
                let obj = r.as_object_mut().unwrap();
                obj.insert("eventID".into(), json!(format!("history-{who}-{day}-{i}")));
                obj.insert("eventTime".into(), json!(rfc3339(t)));
                obj.insert("eventSource".into(), json!(source));
                obj.insert("eventName".into(), json!(name));
                obj.insert("readOnly".into(), json!(true));
                for k in [
                    "errorCode",
                    "errorMessage",
                    "requestParameters",
                    "responseElements",
                ] {
                    obj.remove(k);
                }
                history.push(r);
            }
        }
    }
    history
}

/// Detectors that fired on a detonation's own events.
fn fired(technique: &str) -> BTreeSet<String> {
    let path = shared(&format!(
        "stratus-red-team/detonation-logs/{technique}.json"
    ));
    let detonation: Vec<Value> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let ids: BTreeSet<&str> = detonation
        .iter()
        .filter_map(|r| r["eventID"].as_str())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut records = benign_history(&detonation);
    records.extend(detonation.iter().cloned());
    std::fs::write(
        dir.path().join("events.json"),
        serde_json::to_vec(&records).unwrap(),
    )
    .unwrap();
    let mut config = scan_config();
    config.detection.training_period = Duration::from_secs(14 * 86_400);
    config.detection.activation_period = Duration::from_secs(7 * 86_400);
    let report =
        trailhound_pipeline::scan(&[dir.path().to_path_buf()], &config, &mut |_| {}).unwrap();
    let findings = report.findings.to_vec().unwrap();
    findings
        .iter()
        .filter(|f| f.evidence.iter().any(|e| ids.contains(e.event_id.as_str())))
        .map(|f| f.detector.clone())
        .collect()
}

#[test]
fn every_mapped_technique_fires_its_detectors() {
    let files: BTreeSet<String> = std::fs::read_dir(shared("stratus-red-team/detonation-logs"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".json")
                .to_string()
        })
        .collect();
    let listed: BTreeSet<String> = COVERAGE.iter().map(|(t, _)| t.to_string()).collect();
    assert_eq!(files, listed, "every detonation log is listed in COVERAGE");

    let mut missing = Vec::new();
    let mut generic = 0;
    for (technique, expected) in COVERAGE {
        let fired = fired(technique);
        for d in *expected {
            if !fired.contains(*d) {
                missing.push(format!("{technique}: {d} did not fire (fired: {fired:?})"));
            }
        }
        if expected.is_empty() && (fired.contains("TH-001") || fired.contains("TH-005")) {
            generic += 1;
        }
        eprintln!("{technique}: expected {expected:?}, fired {fired:?}");
    }
    assert!(missing.is_empty(), "{missing:#?}");
    let specific = COVERAGE.iter().filter(|(_, d)| !d.is_empty()).count();
    eprintln!(
        "{specific} of {} techniques covered by a specific detector, {generic} more by TH-001/TH-005 only",
        COVERAGE.len()
    );
    assert!(specific >= 25, "coverage dropped");
}
