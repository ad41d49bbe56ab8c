//! TH-001 New AWS service accessed in region (seed 000, Lacework): a
//! principal uses a (service, region) it has not used in the window. The
//! service may be used by others, and this principal elsewhere.

use trailhound_proto::{Finding, NoveltyKind, Observation, PrincipalKind, Severity};

use super::{Context, Detector};
use crate::finding::{
    GuidanceText, ObservationExt, ROTATE_CREDENTIALS, candidate, context_facts, novelty_fact,
};

pub struct NewServiceInRegion;

const ID: &str = "TH-001";

/// Tactics of the "sensitive API calls" the seed asks to look at.
const SENSITIVE_TACTICS: &[&str] = &["credential-access", "persistence", "discovery"];

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "The identity used an AWS service in a region for the first time. Attackers use unused regions and services to hide their activity; a deviation from the identity's baseline may mean compromised credentials or a policy violation.",
    why_it_may_be_fine: "Teams try new services and APIs, add functionality, or start using a region for new customers or geographies.",
    what_to_check: &[
        "Whether the organisation uses this service at all: little or no activity over a month or more needs investigation.",
        "Whether the region is in use: little or no activity over a month or more suggests it is not, and needs investigation.",
        "The API calls made to the service, especially sensitive ones (credentials, persistence, discovery).",
        "Whether the session is legitimate: correlate with the identity provider's logs and check it came from a corporate asset.",
    ],
    how_to_resolve: ROTATE_CREDENTIALS,
};

impl Detector for NewServiceInRegion {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "New AWS service accessed in region"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(n) = obs.novelty(NoveltyKind::ServiceRegion).filter(|n| n.is_new) else {
            return;
        };
        let principal = obs.principal();
        let by_aws = principal.kind == PrincipalKind::Service as i32
            || !obs
                .event()
                .user_identity
                .as_ref()
                .is_some_and(|i| i.invoked_by.is_empty());
        if by_aws || !ctx.learned(ID, obs) {
            return;
        }
        let tactic = obs
            .enriched()
            .attack
            .as_ref()
            .map(|a| a.tactic.as_str())
            .unwrap_or("");
        let sensitive = SENSITIVE_TACTICS.contains(&tactic);
        let unused = obs.region_unused_in_account;
        let (severity, title) = match (unused, sensitive) {
            (true, true) => (
                Severity::High,
                "Sensitive API of a new AWS service called in an unused region",
            ),
            (true, false) => (
                Severity::Medium,
                "New AWS service accessed in an unused region",
            ),
            _ => (Severity::Low, "New AWS service accessed in region"),
        };
        let value = obs.value(n);
        let mut f = candidate(obs, ID, title, severity, value.clone(), &GUIDANCE);
        f.first_event_only = true;
        f.baseline_facts
            .push(novelty_fact("service|region", &value, n, ctx.window_days()));
        if unused {
            f.baseline_facts.push(format!(
                "region {} had no other activity in account {} for {} days",
                obs.event().aws_region,
                principal.account_id,
                ctx.window_days()
            ));
        }
        if sensitive {
            f.baseline_facts.push(format!(
                "{} is a sensitive API ({tactic})",
                obs.event().event_name
            ));
        }
        f.baseline_facts
            .extend(context_facts(obs, ctx.window_days()));
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::Severity;

    fn trained() -> Harness {
        let mut h = Harness::new(config());
        h.history(12, |d| {
            vec![
                ev(d, "DescribeInstances"),
                ev(d, "DescribeInstances")
                    .region("us-east-1")
                    .service("s3.amazonaws.com"),
            ]
        });
        h
    }

    #[test]
    fn fires_low_for_a_new_service_in_a_used_region() {
        let mut h = trained();
        let f = h.run(
            ev(12, "ListFunctions").service("lambda.amazonaws.com"),
            "TH-001",
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity(), Severity::Low);
        assert_eq!(f[0].key, "lambda|eu-west-1");
        assert!(
            f[0].baseline_facts[0].contains("seen on 0 of the previous 45 days"),
            "{:?}",
            f[0].baseline_facts
        );
    }

    #[test]
    fn medium_in_an_unused_region_and_high_when_sensitive() {
        let mut h = trained();
        let f = h.run(ev(12, "DescribeInstances").region("ap-south-2"), "TH-001");
        assert_eq!(f[0].severity(), Severity::Medium);
        let f = h.run(
            ev(12, "GetSecretValue")
                .region("sa-east-1")
                .service("secretsmanager.amazonaws.com")
                .tactic("credential-access"),
            "TH-001",
        );
        assert_eq!(f[0].severity(), Severity::High);
    }

    #[test]
    fn silent_on_the_already_seen_during_training_and_for_global_services_region() {
        let mut h = trained();
        assert!(
            h.run(ev(12, "DescribeInstances"), "TH-001").is_empty(),
            "already seen"
        );
        let mut young = Harness::new(config());
        young.history(3, |d| vec![ev(d, "DescribeInstances")]);
        assert!(
            young
                .run(
                    ev(3, "ListFunctions").service("lambda.amazonaws.com"),
                    "TH-001"
                )
                .is_empty(),
            "training"
        );
        // Global services are keyed "global": a new region never makes IAM new.
        h.run(ev(12, "ListUsers").service("iam.amazonaws.com"), "TH-001");
        let again = h.run(
            ev(13, "ListUsers")
                .service("iam.amazonaws.com")
                .region("ap-south-1"),
            "TH-001",
        );
        assert!(again.is_empty());
    }

    #[test]
    fn silent_for_calls_aws_makes_on_the_principals_behalf() {
        let mut h = trained();
        let e = ev(12, "Decrypt")
            .service("kms.amazonaws.com")
            .identity(|i| i.invoked_by = "s3.amazonaws.com".into());
        assert!(h.run(e, "TH-001").is_empty());
    }
}
