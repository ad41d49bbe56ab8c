//! TH-010 Root account activity (seed 003): any call made with root
//! credentials. High; critical when made with root access keys (not the
//! console) or when it changes account or billing settings.

use trailhound_proto::{Finding, Observation, PrincipalKind, Severity};

use super::{Context, Detector};
use crate::finding::{GuidanceText, ObservationExt, attack, candidate};

pub struct RootActivity;

const ID: &str = "TH-010";

/// Services whose writes change account-level or billing settings.
const ACCOUNT_SERVICES: &[&str] = &[
    "account",
    "billing",
    "billingconsole",
    "aws-portal",
    "payments",
    "tax",
    "ce",
    "budgets",
    "invoicing",
    "organizations",
];

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "AWS strongly advises against using the root account for everyday tasks: it has unrestricted privileges. Any root use, especially with root access keys, is a major warning sign.",
    why_it_may_be_fine: "A few tasks require root (closing the account, changing the support plan, some billing settings) and are done rarely, by known people, from the console with MFA.",
    what_to_check: &[
        "Whether anyone in the organisation planned a root task now, and who holds the root credentials and MFA device.",
        "Whether the calls were made with access keys (root should have none) or from the console, and with MFA.",
        "Changes to account-level settings such as billing details, contacts or the account password policy.",
    ],
    how_to_resolve: &[
        "Delete any root access keys.",
        "Reset the root password, and enforce hardware MFA on root.",
        "Review and revert account and billing changes; review everything else the root session did.",
    ],
};

impl Detector for RootActivity {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Root account activity"
    }
    fn detect(&self, obs: &Observation, _: &Context<'_>, out: &mut Vec<Finding>) {
        let principal = obs.principal();
        let event = obs.event();
        let identity = event.user_identity.as_ref();
        let by_aws = identity.is_some_and(|i| !i.invoked_by.is_empty());
        if principal.kind != PrincipalKind::Root as i32 || by_aws {
            return;
        }
        let key_id = identity.map(|i| i.access_key_id.as_str()).unwrap_or("");
        let access_key = key_id.starts_with("AKIA");
        let account_change = ACCOUNT_SERVICES.contains(&obs.enriched().service.as_str())
            && event.read_only != Some(true)
            && !event.event_name.starts_with("Get")
            && !event.event_name.starts_with("List")
            && !event.event_name.starts_with("Describe")
            && !obs.enriched().failed;
        let (severity, title, key) = if account_change {
            (
                Severity::Critical,
                "Root account changed account or billing settings",
                "account-change".to_string(),
            )
        } else if access_key {
            (
                Severity::Critical,
                "Root access key used",
                format!("access-key:{key_id}"),
            )
        } else {
            (
                Severity::High,
                "Root account activity",
                "console".to_string(),
            )
        };
        let mut f = candidate(obs, ID, title, severity, key, &GUIDANCE);
        f.attack.push(attack("privilege-escalation", "T1078.004"));
        let how = if access_key {
            format!("access key {key_id}")
        } else {
            "console or temporary credentials".into()
        };
        f.baseline_facts.push(format!(
            "{} called with root credentials ({how})",
            event.event_name
        ));
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::{ComputeKind, PrincipalKind, Severity};

    fn root(day: i64, name: &str) -> Ev {
        ev(day, name).principal(
            "arn:aws:iam::111122223333:root",
            PrincipalKind::Root,
            "",
            ComputeKind::None,
        )
    }

    #[test]
    fn severities() {
        let mut h = Harness::new(config());
        let console = h.run(
            root(0, "DescribeInstances").identity(|i| i.access_key_id = "ASIAXXXX".into()),
            "TH-010",
        );
        assert_eq!(
            (console[0].severity(), console[0].key.as_str()),
            (Severity::High, "console")
        );
        let keys = h.run(
            root(0, "DescribeInstances").identity(|i| i.access_key_id = "AKIAROOTKEY".into()),
            "TH-010",
        );
        assert_eq!(
            (keys[0].severity(), keys[0].key.as_str()),
            (Severity::Critical, "access-key:AKIAROOTKEY")
        );
        let billing = h.run(
            root(0, "PutContactInformation")
                .service("account.amazonaws.com")
                .read_only(false),
            "TH-010",
        );
        assert_eq!(billing[0].severity(), Severity::Critical);
        let read = h.run(
            root(0, "GetContactInformation")
                .service("account.amazonaws.com")
                .read_only(true),
            "TH-010",
        );
        assert_eq!(read[0].severity(), Severity::High);
    }

    #[test]
    fn fires_without_training_but_not_for_other_principals_or_aws_on_behalf() {
        let mut h = Harness::new(config());
        assert!(h.run(ev(0, "DescribeInstances"), "TH-010").is_empty());
        let on_behalf =
            root(0, "Decrypt").identity(|i| i.invoked_by = "cloudtrail.amazonaws.com".into());
        assert!(h.run(on_behalf, "TH-010").is_empty());
    }
}
