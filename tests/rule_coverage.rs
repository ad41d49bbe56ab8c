//! Agreement with Panther's CloudTrail rule tests
//! (../shared/data/panther-analysis): for each Panther rule that a
//! Trailhound detector covers, run each of its labelled test events alone
//! through `scan` and compare "the detector fired" with Panther's expected
//! result. `cargo run -p trailhound-e2e --example rule_coverage` writes the
//! report (docs/rule-coverage.md); a test keeps it current.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use serde_json::{Value, json};
use trailhound_enrich::EnricherConfig;
use trailhound_pipeline::ScanConfig;

use crate::shared;

/// Panther rule → the Trailhound detector that covers it.
pub const MAPPING: &[(&str, &str)] = &[
    ("AWS.CloudTrail.Stopped", "TH-022"),
    ("AWS.CloudTrail.EventSelectorsDisabled", "TH-022"),
    ("AWS.CloudTrail.SecurityConfigurationChange", "TH-022"),
    ("AWS.S3.DisableBucketLogging", "TH-022"),
    (
        "AWS.Bedrock.DeleteModelInvocationLoggingConfiguration",
        "TH-022",
    ),
    ("AWS.RDS.ActivityStreamStopped", "TH-022"),
    ("AWS.Macie.Evasion", "TH-022"),
    ("AWS.WAF.Disassociation", "TH-022"),
    ("AWS.CloudTrail.DNSLogsDeleted", "TH-022"),
    ("AWS.VPCFlow.LogsDeleted", "TH-022"),
    ("AWS.ConfigService.DisabledDeleted", "TH-022"),
    ("AWS.CloudTrail.AttemptToLeaveOrg", "TH-022"),
    ("AWS.CloudTrail.AMIModifiedForPublicAccess", "TH-022"),
    ("AWS.CloudTrail.SnapshotMadePublic", "TH-022"),
    ("AWS.RDS.SnapshotShared", "TH-022"),
    ("AWS.CloudTrail.ResourceMadePublic", "TH-022"),
    ("AWS.SecurityHub.Finding.Evasion", "TH-022"),
    ("AWS.Root.Activity", "TH-010"),
    ("AWS.Console.RootLogin", "TH-010"),
    ("AWS.IAM.Backdoor.User.Keys", "TH-011"),
    ("AWS.EC2.MultiInstanceConnect", "TH-020"),
    ("AWS.CloudTrail.IMDSCredentialExfiltration", "TH-021"),
];

/// Why Trailhound's verdict differs from Panther's, by (rule, test name).
pub const EXPLANATIONS: &[(&str, &str, &str)] = &[
    (
        "AWS.CloudTrail.IMDSCredentialExfiltration",
        "SSM Messages Service Source",
        "Panther allowlists Session Manager's control channel. The call is still an EC2 instance's credentials used from an address outside AWS, which is what TH-021 reports (GuardDuty's InstanceCredentialExfiltration.OutsideAWS makes no exception for SSM either).",
    ),
    (
        "AWS.CloudTrail.IMDSCredentialExfiltration",
        "IMDS Credentials Used From Amazon.com ASN Source IP",
        "The address is in AWS's published ranges (EC2, us-west-2). TH-021 reports instance credentials used outside AWS; use from another AWS address in another region is TH-002's case, which needs the instance's home region and so more than one event.",
    ),
    (
        "AWS.Root.Activity",
        "Root Activity - CreateServiceLinkedRole",
        "By design: TH-010 reports every call made with root credentials (DETECTIONS.md; CIS AWS Foundations 1.7 and AWS's guidance to alarm on any root use), where Panther's rule leaves out some root actions.",
    ),
    (
        "AWS.Root.Activity",
        "Root Read-Only Enumeration",
        "By design: TH-010 reports read-only root use too (high, not critical); Panther's rule keeps only impactful root actions.",
    ),
];

pub struct TestCase {
    pub rule: String,
    pub name: String,
    pub expected: bool,
    pub mocked: bool,
    pub log: Value,
}

pub struct Verdict {
    pub case: TestCase,
    pub detector: &'static str,
    pub fired: bool,
}

pub fn test_cases() -> Vec<TestCase> {
    let path = shared("panther-analysis/panther_cloudtrail_rule_tests.jsonl.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).expect("Panther rule tests"))
        .read_to_string(&mut text)
        .expect("gzip");
    text.lines()
        .map(|line| {
            let t: Value = serde_json::from_str(line).expect("JSON line");
            TestCase {
                rule: t["rule_id"].as_str().unwrap_or_default().to_string(),
                name: t["test_name"].as_str().unwrap_or_default().to_string(),
                expected: t["expected_result"].as_bool().unwrap_or(false),
                mocked: t["has_mocks"].as_bool().unwrap_or(false),
                log: t["log"].clone(),
            }
        })
        .collect()
}

/// Whether `detector` fires on the test event alone. Panther's tests leave
/// out fields real CloudTrail always has; the harness supplies them:
/// eventTime, eventID, and for an IAM user or role session named only by
/// `userName` (Panther's rules under test do not read the identity) a
/// placeholder account and the ARN CloudTrail would give it. Any other
/// event without a usable identity is rejected (no finding).
pub fn fires(log: &Value, detector: &str) -> bool {
    const ACCOUNT: &str = "123456789012";
    let mut log = log.clone();
    if let Some(obj) = log.as_object_mut() {
        obj.entry("eventTime")
            .or_insert(json!("2024-06-01T12:00:00Z"));
        obj.entry("eventID").or_insert(json!("panther-test-event"));
        if let Some(Value::Object(id)) = obj.get_mut("userIdentity")
            && !id.contains_key("arn")
            && !id.contains_key("accountId")
            && let Some(name) = id.get("userName").and_then(Value::as_str)
        {
            let arn = match id.get("type").and_then(Value::as_str) {
                Some("IAMUser") => format!("arn:aws:iam::{ACCOUNT}:user/{name}"),
                Some("AssumedRole") => format!("arn:aws:sts::{ACCOUNT}:assumed-role/{name}/test"),
                _ => String::new(),
            };
            if !arn.is_empty() {
                id.insert("arn".into(), json!(arn));
                id.insert("accountId".into(), json!(ACCOUNT));
            }
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("event.json"),
        serde_json::to_vec(&[log]).unwrap(),
    )
    .unwrap();
    let config = ScanConfig {
        enrich: EnricherConfig {
            aws_ip_ranges: Some("builtin".into()),
            ..EnricherConfig::default()
        },
        ..ScanConfig::default()
    };
    let report =
        trailhound_pipeline::scan(&[dir.path().to_path_buf()], &config, &mut |_| {}).expect("scan");
    report
        .findings
        .summaries()
        .iter()
        .any(|f| f.detector == detector)
}

/// Every Panther CloudTrail rule with tests, and the verdicts on the mapped ones.
pub struct Coverage {
    pub rules: BTreeSet<String>,
    pub verdicts: Vec<Verdict>,
}

pub fn evaluate() -> Coverage {
    let detectors: BTreeMap<&str, &'static str> = MAPPING.iter().copied().collect();
    let cases = test_cases();
    let rules = cases.iter().map(|c| c.rule.clone()).collect();
    let verdicts = cases
        .into_iter()
        .filter_map(|case| {
            let detector = *detectors.get(case.rule.as_str())?;
            let fired = fires(&case.log, detector);
            Some(Verdict {
                case,
                detector,
                fired,
            })
        })
        .collect();
    Coverage { rules, verdicts }
}

pub fn explanation(rule: &str, test: &str) -> Option<&'static str> {
    EXPLANATIONS
        .iter()
        .find(|(r, t, _)| *r == rule && *t == test)
        .map(|(_, _, why)| *why)
}

/// (agreeing, compared) over the tests without mocks.
pub fn agreement(verdicts: &[Verdict]) -> (usize, usize) {
    let compared: Vec<&Verdict> = verdicts.iter().filter(|v| !v.case.mocked).collect();
    let agree = compared
        .iter()
        .filter(|v| v.fired == v.case.expected)
        .count();
    (agree, compared.len())
}

pub fn report(coverage: &Coverage) -> String {
    let (all_rules, verdicts) = (&coverage.rules, &coverage.verdicts);
    let (agree, compared) = agreement(verdicts);
    let mut out = String::new();
    out.push_str("# Agreement with Panther's CloudTrail rule tests\n\n");
    out.push_str("Generated by `cargo run -p trailhound-e2e --example rule_coverage > docs/rule-coverage.md`;\n");
    out.push_str("`tests/tests/rule_coverage.rs` fails when this file is out of date, a disagreement is unexplained,\nor agreement drops below 95 %.\n\n");
    out.push_str("Each labelled test event of a Panther rule that a Trailhound detector covers is scanned on its own\n");
    out.push_str("(no history, so only what a single event shows), and \"the detector fired\" is compared with\n");
    out.push_str("Panther's expected result. Tests whose Panther result depends on mocked state (`Mocks:`) are\n");
    out.push_str(
        "shown but not counted. Where a test event leaves out fields real CloudTrail always has\n",
    );
    out.push_str("(eventTime, eventID, the ARN and account of an identity named only by `userName`), the harness\n");
    out.push_str("supplies them (placeholder account 123456789012).\n\n");
    out.push_str(&format!(
        "**Agreement: {agree} of {compared} tests ({:.1} %)** over {} mapped rules of the {} Panther CloudTrail rules with tests.\n\n",
        100.0 * agree as f64 / compared.max(1) as f64,
        MAPPING.len(),
        all_rules.len()
    ));
    out.push_str("| Panther rule | detector | tests | agree | mocked (not counted) |\n|---|---|---|---|---|\n");
    for (rule, detector) in MAPPING {
        let mine: Vec<&Verdict> = verdicts.iter().filter(|v| v.case.rule == *rule).collect();
        let counted: Vec<&&Verdict> = mine.iter().filter(|v| !v.case.mocked).collect();
        let ok = counted
            .iter()
            .filter(|v| v.fired == v.case.expected)
            .count();
        out.push_str(&format!(
            "| {rule} | {detector} | {} | {ok} | {} |\n",
            counted.len(),
            mine.len() - counted.len()
        ));
    }
    out.push_str("\n## Disagreements\n\n");
    for v in verdicts.iter().filter(|v| v.fired != v.case.expected) {
        let counted = if v.case.mocked {
            " (mocked, not counted)"
        } else {
            ""
        };
        out.push_str(&format!(
            "- **{}** / \"{}\"{counted}: Panther {}, {} {}. {}\n",
            v.case.rule,
            v.case.name,
            if v.case.expected {
                "fires"
            } else {
                "does not fire"
            },
            v.detector,
            if v.fired { "fires" } else { "does not" },
            explanation(&v.case.rule, &v.case.name).unwrap_or("UNEXPLAINED"),
        ));
    }
    out.push_str("\n## Panther rules without a Trailhound equivalent\n\n");
    let mapped: BTreeSet<&str> = MAPPING.iter().map(|(r, _)| *r).collect();
    let unmapped: Vec<&String> = all_rules
        .iter()
        .filter(|r| !mapped.contains(r.as_str()))
        .collect();
    out.push_str(&format!(
        "{} rules. Most are single-event policy checks on configuration changes (S3, RDS, KMS, IAM,\nnetwork ACLs, SES …) rather than identity behaviour; some are covered in spirit by Trailhound's\nbehavioural detectors (new command TH-005, rare error TH-006, surges TH-007/TH-008) without a\nsingle-event verdict to compare.\n\n",
        unmapped.len()
    ));
    for r in unmapped {
        out.push_str(&format!("- {r}\n"));
    }
    out
}
