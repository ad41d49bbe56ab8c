//! TH-022 High-risk API call (seed 004, ATT&CK mapping): a successful call
//! that blinds logging or security monitoring, hides security findings
//! (Security Hub, GuardDuty), takes the account out of its organisation (or
//! tries to: a refused LeaveOrganization is high), shares a snapshot, image
//! or database snapshot with another account (or publicly), or sets a
//! resource policy, role trust or function permission that lets in another
//! account or anyone ([`crate::resource_policy`]). PutEventSelectors counts
//! when it stops logging management events, or some of them. Each is raised
//! one level when the principal never made the call in the window.

use serde_json::Value;
use trailhound_proto::{Attack, Finding, NoveltyKind, Observation, Severity};

use super::{Context, Detector};
use crate::finding::{GuidanceText, ObservationExt, attack, candidate, context_facts};
use crate::resource_policy::{OutsideAccess, granted_by, is_account_id};

pub struct HighRiskApi;

const ID: &str = "TH-022";

/// Calls that stop or weaken logging, detection and protection tools
/// (T1562.008 / .001); PutEventSelectors and PutBucketLogging count only
/// when they switch logging off ([`weakens_logging`]).
const LOGGING_TAMPERING: &[&str] = &[
    "StopLogging",
    "DeleteTrail",
    "UpdateTrail",
    "PutEventSelectors",
    "DeleteFlowLogs",
    "DeleteLogGroup",
    "DeleteLogStream",
    "PutRetentionPolicy",
    "DeleteResolverQueryLogConfig",
    "DisassociateResolverQueryLogConfig",
    "StopConfigurationRecorder",
    "DeleteConfigurationRecorder",
    "DeleteDeliveryChannel",
    "DeleteDetector",
    "DisassociateFromMasterAccount",
    "DisassociateFromAdministratorAccount",
    "StopMonitoringMembers",
    "DisableSecurityHub",
    "DeleteEventDataStore",
    "StopEventDataStoreIngestion",
    "PutBucketLogging",
    "DeleteModelInvocationLoggingConfiguration",
    "StopActivityStream",
    "DisableMacie",
    "UpdateMacieSession",
    "DisassociateWebACL",
];

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "Attackers switch off logging and detection and archive findings to hide, take an account out of its organisation to escape its guardrails, share snapshots and images or open resource policies to take the data away, and let their own account into a role or function to come back later.",
    why_it_may_be_fine: "Planned changes to logging, triage that archives findings, account moves between organisations, public websites and sharing with known partner, backup or organisation accounts happen, rarely and with a change record.",
    what_to_check: &[
        "Whether a change record covers the call, and who approved it.",
        "For sharing and trust: whether the receiving account belongs to the organisation or a known partner, and what the resource holds.",
        "What else the identity did just before and after.",
    ],
    how_to_resolve: &[
        "Undo the change: restart logging, restore the configuration or findings, remove the share, policy statement or trust.",
        "Rotate the caller's credentials and review its recent activity.",
        "Protect the setting with a service control policy.",
    ],
};

impl Detector for HighRiskApi {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "High-risk API call"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let event = obs.event();
        let name = event.event_name.as_str();
        let failed = obs.enriched().failed;
        // A denied attempt to leave the organisation is itself a warning;
        // every other call counts only when it succeeded.
        if failed && name != "LeaveOrganization" {
            return;
        }
        let (base, title, technique, fact) = if LOGGING_TAMPERING.contains(&name)
            && weakens_logging(name, &event.request_parameters_json)
        {
            (
                Severity::High,
                "Logging or security monitoring weakened",
                attack("defense-evasion", "T1562.008"),
                format!("{name} weakens logging or detection"),
            )
        } else if name == "LeaveOrganization" {
            let (severity, title, fact) = if failed {
                (
                    Severity::High,
                    "Attempt to leave the organisation",
                    format!("LeaveOrganization was refused ({})", event.error_code),
                )
            } else {
                (
                    Severity::Critical,
                    "Account left its organisation",
                    "the account left its AWS Organization".to_string(),
                )
            };
            (severity, title, attack("defense-evasion", "T1666"), fact)
        } else if suppresses_findings(&event.event_source, name, &event.request_parameters_json) {
            (
                Severity::High,
                "Security findings suppressed",
                attack("defense-evasion", "T1562.001"),
                format!(
                    "{}:{name} hides or stops security findings",
                    event.event_source
                ),
            )
        } else if let Some(access) = granted_by(
            &event.event_source,
            name,
            &event.request_parameters_json,
            resource_account(obs),
        )
        .filter(|a| !a.is_empty())
        {
            opened(name, &access)
        } else if let Some(with) = shared_with(name, &event.request_parameters_json) {
            let public = with.iter().any(|a| a.eq_ignore_ascii_case("all"));
            let own = &obs.principal().account_id;
            let outside: Vec<&String> = with.iter().filter(|a| *a != own).collect();
            if outside.is_empty() {
                return;
            }
            let severity = if public {
                Severity::Critical
            } else {
                Severity::High
            };
            let whom = outside
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            (
                severity,
                if public {
                    "Data shared publicly"
                } else {
                    "Data shared with another account"
                },
                attack("exfiltration", "T1537"),
                format!("{name} shared with {whom}"),
            )
        } else {
            return;
        };
        let unusual = obs
            .novelty(NoveltyKind::Command)
            .is_some_and(|n| n.is_new && ctx.learned(ID, obs));
        let severity = if unusual { raise(base) } else { base };
        let mut f = candidate(obs, ID, title, severity, name, &GUIDANCE);
        f.attack.push(technique);
        f.baseline_facts.push(fact);
        if unusual {
            f.baseline_facts.push(format!(
                "{name} not called by this principal in the previous {} days",
                ctx.window_days()
            ));
        }
        f.baseline_facts
            .extend(context_facts(obs, ctx.window_days()));
        out.push(f);
    }
}

/// The account a call's resource belongs to: the recipient's, which for a
/// cross-account call is not the caller's.
fn resource_account(obs: &Observation) -> &str {
    let recipient = &obs.event().recipient_account_id;
    if recipient.is_empty() {
        &obs.principal().account_id
    } else {
        recipient
    }
}

/// A resource policy, role trust or function permission that lets in
/// anyone (critical) or other accounts (high).
fn opened(name: &str, access: &OutsideAccess) -> (Severity, &'static str, Attack, String) {
    let backdoor = matches!(name, "CreateRole" | "UpdateAssumeRolePolicy")
        || name.starts_with("AddPermission");
    let technique = if backdoor {
        attack("persistence", "T1098")
    } else {
        attack("exfiltration", "T1537")
    };
    let (severity, title) = match (access.anyone, backdoor) {
        (true, true) => (Severity::Critical, "Access opened to anyone"),
        (true, false) => (Severity::Critical, "Resource made public"),
        (false, true) => (Severity::High, "Access granted to another account"),
        (false, false) => (Severity::High, "Resource shared with another account"),
    };
    let fact = if access.anyone {
        format!("{name} allows every principal, with no condition narrowing the callers")
    } else {
        format!("{name} lets {} in", access.accounts.join(", "))
    };
    (severity, title, technique, fact)
}

/// Whether a Security Hub or GuardDuty call hides findings: deleting an
/// insight or rewriting findings, suppressing them, archiving them (by hand
/// or by a filter), switching the detector off, or adding a trusted IP list
/// (GuardDuty raises nothing for its addresses).
fn suppresses_findings(event_source: &str, name: &str, request_parameters: &str) -> bool {
    // Parsed only for the calls that depend on their parameters.
    let is = |pointer: &str, expected: Value| {
        serde_json::from_str::<Value>(request_parameters)
            .is_ok_and(|params| params.pointer(pointer) == Some(&expected))
    };
    match (event_source, name) {
        ("securityhub.amazonaws.com", "DeleteInsight" | "UpdateFindings") => true,
        ("securityhub.amazonaws.com", "BatchUpdateFindings") => {
            is("/Workflow/Status", Value::from("SUPPRESSED"))
        }
        ("guardduty.amazonaws.com", "ArchiveFindings" | "CreateIPSet" | "UpdateIPSet") => true,
        ("guardduty.amazonaws.com", "CreateFilter" | "UpdateFilter") => {
            is("/action", Value::from("ARCHIVE"))
        }
        ("guardduty.amazonaws.com", "UpdateDetector") => is("/enable", Value::Bool(false)),
        _ => false,
    }
}

fn raise(s: Severity) -> Severity {
    match s {
        Severity::Unspecified | Severity::Informational => Severity::Low,
        Severity::Low => Severity::Medium,
        Severity::Medium => Severity::High,
        Severity::High | Severity::Critical => Severity::Critical,
    }
}

/// The accounts (or "all") a sharing call adds, when it is one.
fn shared_with(name: &str, request_parameters: &str) -> Option<Vec<String>> {
    // RDS lists the accounts; EC2 lists items naming a user id or group.
    let (pointer, listed) = match name {
        "ModifySnapshotAttribute" => ("/createVolumePermission/add/items", false),
        "ModifyImageAttribute" => ("/launchPermission/add/items", false),
        "ModifyDBSnapshotAttribute" | "ModifyDBClusterSnapshotAttribute" => ("/valuesToAdd", true),
        _ => return None,
    };
    let params: Value = serde_json::from_str(request_parameters).ok()?;
    fn who(item: &Value, listed: bool) -> Option<&str> {
        if listed {
            item.as_str()
        } else {
            item.get("userId")
                .or_else(|| item.get("group"))
                .and_then(Value::as_str)
        }
    }
    Some(
        params
            .pointer(pointer)?
            .as_array()?
            .iter()
            .filter_map(|item| who(item, listed))
            .filter(|who| is_account_or_all(who))
            .map(str::to_string)
            .collect(),
    )
}

/// A 12-digit account id, or "all" (public).
fn is_account_or_all(who: &str) -> bool {
    who.eq_ignore_ascii_case("all") || is_account_id(who)
}

/// Whether a tampering call really switches logging off: PutEventSelectors
/// that stops logging management events (or some of them), PutBucketLogging
/// without a target; every other listed call always does.
fn weakens_logging(name: &str, request_parameters: &str) -> bool {
    let params = serde_json::from_str::<Value>(request_parameters).unwrap_or(Value::Null);
    match name {
        "PutEventSelectors" => {
            let selectors = params.get("eventSelectors").and_then(Value::as_array);
            selectors.into_iter().flatten().any(|s| {
                s.get("includeManagementEvents").and_then(Value::as_bool) == Some(false)
                    || s.get("readWriteType")
                        .and_then(Value::as_str)
                        .is_some_and(|t| t != "All")
                    || s.get("excludeManagementEventSources")
                        .and_then(Value::as_array)
                        .is_some_and(|a| !a.is_empty())
            })
        }
        "PutBucketLogging" => {
            let status = params.get("BucketLoggingStatus");
            let has_target = params
                .get("logging")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
                || status.is_some_and(|s| s.get("LoggingEnabled").is_some());
            status.is_some() && !has_target
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::Severity;

    fn call(day: i64, name: &str, params: &str) -> Ev {
        let mut e = ev(day, name);
        e.enriched.event.as_mut().unwrap().request_parameters_json = params.into();
        e
    }

    #[test]
    fn logging_tampering_leaving_and_sharing() {
        let mut h = Harness::new(config());
        assert_eq!(
            h.run(call(0, "StopLogging", ""), "TH-022")[0].severity(),
            Severity::High
        );
        assert_eq!(
            h.run(call(0, "LeaveOrganization", ""), "TH-022")[0].severity(),
            Severity::Critical
        );
        let refused = h.run(
            call(0, "LeaveOrganization", "").failed("AccessDenied"),
            "TH-022",
        );
        assert_eq!(
            (refused[0].title.as_str(), refused[0].severity()),
            ("Attempt to leave the organisation", Severity::High)
        );
        let full = r#"{"eventSelectors":[{"includeManagementEvents":true,"readWriteType":"All","excludeManagementEventSources":[]}]}"#;
        assert!(
            h.run(call(0, "PutEventSelectors", full), "TH-022")
                .is_empty(),
            "still logs everything"
        );
        let reads_only =
            r#"{"eventSelectors":[{"includeManagementEvents":true,"readWriteType":"ReadOnly"}]}"#;
        assert_eq!(
            h.run(call(0, "PutEventSelectors", reads_only), "TH-022")
                .len(),
            1
        );
        let bucket_off = r#"{"logging":"","bucketName":"b","BucketLoggingStatus":{"xmlns":"x"}}"#;
        assert_eq!(
            h.run(call(0, "PutBucketLogging", bucket_off), "TH-022")
                .len(),
            1
        );
        let bucket_on = r#"{"logging":[{"targetBucket":"logs"}],"bucketName":"b","BucketLoggingStatus":{"xmlns":"x"}}"#;
        assert!(
            h.run(call(0, "PutBucketLogging", bucket_on), "TH-022")
                .is_empty()
        );
        let not_an_account = r#"{"createVolumePermission":{"add":{"items":[{"group":"none"}]}}}"#;
        assert!(
            h.run(call(0, "ModifySnapshotAttribute", not_an_account), "TH-022")
                .is_empty()
        );
        let ebs = r#"{"attributeType":"CREATE_VOLUME_PERMISSION","createVolumePermission":{"add":{"items":[{"userId":"098797384747"}]}},"snapshotId":"snap-1"}"#;
        let f = h.run(call(0, "ModifySnapshotAttribute", ebs), "TH-022");
        assert_eq!(
            (f[0].title.as_str(), f[0].severity()),
            ("Data shared with another account", Severity::High)
        );
        let public_ami =
            r#"{"imageId":"ami-1","launchPermission":{"add":{"items":[{"group":"all"}]}}}"#;
        assert_eq!(
            h.run(call(0, "ModifyImageAttribute", public_ami), "TH-022")[0].severity(),
            Severity::Critical
        );
        let rds = r#"{"attributeName":"restore","dBSnapshotIdentifier":"x","valuesToAdd":["503161813013"]}"#;
        assert_eq!(
            h.run(call(0, "ModifyDBSnapshotAttribute", rds), "TH-022")
                .len(),
            1
        );
    }

    fn from(source: &str, e: Ev) -> Ev {
        e.service(source)
    }

    #[test]
    fn resource_policies_that_let_outsiders_in() {
        let mut h = Harness::new(config());
        let public_bucket = r#"{"bucketName":"b","bucketPolicy":{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"s3:GetObject"}]}}"#;
        let f = h.run(
            from(
                "s3.amazonaws.com",
                call(0, "PutBucketPolicy", public_bucket),
            ),
            "TH-022",
        );
        assert_eq!(
            (f[0].title.as_str(), f[0].severity()),
            ("Resource made public", Severity::Critical)
        );
        let org_only = r#"{"bucketName":"b","bucketPolicy":{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-1"}}}]}}"#;
        assert!(
            h.run(
                from("s3.amazonaws.com", call(0, "PutBucketPolicy", org_only)),
                "TH-022"
            )
            .is_empty()
        );
        let trust = r#"{"roleName":"r","policyDocument":"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::193672423079:root\"},\"Action\":\"sts:AssumeRole\"}]}"}"#;
        let f = h.run(
            from(
                "iam.amazonaws.com",
                call(0, "UpdateAssumeRolePolicy", trust),
            ),
            "TH-022",
        );
        assert_eq!(
            (f[0].title.as_str(), f[0].severity()),
            ("Access granted to another account", Severity::High)
        );
        assert!(f[0].attack.iter().any(|a| a.technique == "T1098"));
        assert!(f[0].baseline_facts[0].contains("193672423079"));
        let own_trust = trust.replace("193672423079", "111122223333");
        assert!(
            h.run(
                from(
                    "iam.amazonaws.com",
                    call(0, "UpdateAssumeRolePolicy", &own_trust)
                ),
                "TH-022"
            )
            .is_empty(),
            "the account's own principals are inside"
        );
    }

    #[test]
    fn hiding_security_findings() {
        let mut h = Harness::new(config());
        let f = h.run(
            from("securityhub.amazonaws.com", call(0, "DeleteInsight", "{}")),
            "TH-022",
        );
        assert_eq!(f[0].title, "Security findings suppressed");
        let archive =
            r#"{"detectorId":"d","name":"quiet","action":"ARCHIVE","findingCriteria":{}}"#;
        assert_eq!(
            h.run(
                from("guardduty.amazonaws.com", call(0, "CreateFilter", archive)),
                "TH-022"
            )
            .len(),
            1
        );
        let notify = archive.replace("ARCHIVE", "NOOP");
        assert!(
            h.run(
                from("guardduty.amazonaws.com", call(0, "CreateFilter", &notify)),
                "TH-022"
            )
            .is_empty()
        );
        let resolved = r#"{"Workflow":{"Status":"RESOLVED"}}"#;
        assert!(
            h.run(
                from(
                    "securityhub.amazonaws.com",
                    call(0, "BatchUpdateFindings", resolved)
                ),
                "TH-022"
            )
            .is_empty(),
            "triage is not suppression"
        );
        assert!(
            h.run(
                from("wafv2.amazonaws.com", call(0, "CreateIPSet", "{}")),
                "TH-022"
            )
            .is_empty(),
            "a WAF IP set is not a GuardDuty trusted list"
        );
    }

    #[test]
    fn raised_when_unusual_silent_when_failed_or_shared_with_itself() {
        let mut h = Harness::new(config());
        h.history(12, |d| vec![ev(d, "DescribeInstances")]);
        assert_eq!(
            h.run(call(12, "DeleteFlowLogs", ""), "TH-022")[0].severity(),
            Severity::Critical
        );
        assert!(
            h.run(call(12, "StopLogging", "").failed("AccessDenied"), "TH-022")
                .is_empty()
        );
        let own = r#"{"createVolumePermission":{"add":{"items":[{"userId":"111122223333"}]}}}"#;
        assert!(
            h.run(call(12, "ModifySnapshotAttribute", own), "TH-022")
                .is_empty()
        );
        let removal =
            r#"{"createVolumePermission":{"remove":{"items":[{"userId":"098797384747"}]}}}"#;
        assert!(
            h.run(call(12, "ModifySnapshotAttribute", removal), "TH-022")
                .is_empty()
        );
    }
}
