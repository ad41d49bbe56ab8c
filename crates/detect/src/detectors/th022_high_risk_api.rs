//! TH-022 High-risk API call (seed 004, ATT&CK mapping): a successful call
//! that blinds logging or security monitoring, takes the account out of its
//! organisation (or tries to: a refused LeaveOrganization is high), or
//! shares a snapshot, image or database snapshot with another account (or
//! publicly). PutEventSelectors counts when it stops logging management
//! events, or some of them. Each is raised one level when the principal
//! never made the call in the window.

use serde_json::Value;
use trailhound_proto::{Finding, NoveltyKind, Observation, Severity};

use super::{Context, Detector};
use crate::finding::{GuidanceText, ObservationExt, attack, candidate, context_facts};

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
    why_it_matters: "Attackers switch off logging and detection to hide, take an account out of its organisation to escape its guardrails, and share snapshots and images with their own accounts to take the data away.",
    why_it_may_be_fine: "Planned changes to logging, account moves between organisations and sharing with known partner or backup accounts happen, rarely and with a change record.",
    what_to_check: &[
        "Whether a change record covers the call, and who approved it.",
        "For sharing: whether the receiving account belongs to the organisation or a known partner.",
        "What else the identity did just before and after.",
    ],
    how_to_resolve: &[
        "Undo the change: restart logging, restore the configuration, remove the share.",
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
    let params: Value = serde_json::from_str(request_parameters).ok()?;
    let text = |v: &Value| v.as_str().map(str::to_string);
    let added = match name {
        "ModifySnapshotAttribute" => params.pointer("/createVolumePermission/add/items")?,
        "ModifyImageAttribute" => params.pointer("/launchPermission/add/items")?,
        "ModifyDBSnapshotAttribute" | "ModifyDBClusterSnapshotAttribute" => {
            return Some(
                params
                    .get("valuesToAdd")?
                    .as_array()?
                    .iter()
                    .filter_map(text)
                    .filter(|who| is_account_or_all(who))
                    .collect(),
            );
        }
        _ => return None,
    };
    Some(
        added
            .as_array()?
            .iter()
            .filter_map(|i| i.get("userId").or_else(|| i.get("group")).and_then(text))
            .filter(|who| is_account_or_all(who))
            .collect(),
    )
}

/// A 12-digit account id, or "all" (public).
fn is_account_or_all(who: &str) -> bool {
    who.eq_ignore_ascii_case("all") || (who.len() == 12 && who.bytes().all(|b| b.is_ascii_digit()))
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
            severity(&h.run(call(0, "StopLogging", ""), "TH-022")[0]),
            Severity::High
        );
        assert_eq!(
            severity(&h.run(call(0, "LeaveOrganization", ""), "TH-022")[0]),
            Severity::Critical
        );
        let refused = h.run(
            call(0, "LeaveOrganization", "").failed("AccessDenied"),
            "TH-022",
        );
        assert_eq!(
            (refused[0].title.as_str(), severity(&refused[0])),
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
            (f[0].title.as_str(), severity(&f[0])),
            ("Data shared with another account", Severity::High)
        );
        let public_ami =
            r#"{"imageId":"ami-1","launchPermission":{"add":{"items":[{"group":"all"}]}}}"#;
        assert_eq!(
            severity(&h.run(call(0, "ModifyImageAttribute", public_ami), "TH-022")[0]),
            Severity::Critical
        );
        let rds = r#"{"attributeName":"restore","dBSnapshotIdentifier":"x","valuesToAdd":["503161813013"]}"#;
        assert_eq!(
            h.run(call(0, "ModifyDBSnapshotAttribute", rds), "TH-022")
                .len(),
            1
        );
    }

    #[test]
    fn raised_when_unusual_silent_when_failed_or_shared_with_itself() {
        let mut h = Harness::new(config());
        h.history(12, |d| vec![ev(d, "DescribeInstances")]);
        assert_eq!(
            severity(&h.run(call(12, "DeleteFlowLogs", ""), "TH-022")[0]),
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
