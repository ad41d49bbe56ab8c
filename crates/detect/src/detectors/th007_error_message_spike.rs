//! TH-007 Spike in AWS error messages (seed 002, related): a principal gets
//! many more distinct error messages in a bucket (15 minutes) than on its
//! normal days: a tool probing permissions or guessing names.

use trailhound_proto::{Finding, Observation, RateKind, Severity};

use super::surge::Surge;
use super::{Context, Detector};
use crate::finding::{GuidanceText, ROTATE_CREDENTIALS};

pub struct ErrorMessageSpike;

const ID: &str = "TH-007";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "A burst of distinct error messages for one identity is typical of enumeration tools and of attackers probing what stolen credentials may do.",
    why_it_may_be_fine: "A broken deployment, a misconfigured script after a permission change, or an AWS service incident.",
    what_to_check: &[
        "The error messages and the APIs that produced them: AccessDenied across many services suggests permission probing.",
        "The user agent, source IP and region of the failing calls.",
        "Whether any call in the same burst succeeded, and what it did.",
    ],
    how_to_resolve: ROTATE_CREDENTIALS,
};

impl Detector for ErrorMessageSpike {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Spike in AWS error messages"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let surge = Surge {
            id: ID,
            kind: RateKind::ErrorMessages,
            settings: &ctx.config.error_message_spike,
            title: "Spike in AWS error messages",
            severity: Severity::Medium,
            unit: "distinct error messages",
            guidance: &GUIDANCE,
        };
        out.extend(surge.detect(obs, ctx));
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::Severity;

    #[test]
    fn fires_for_many_distinct_errors_not_for_one_repeated() {
        let mut h = Harness::new(config());
        h.history(12, |d| {
            vec![
                ev(d, "DescribeInstances"),
                ev(d, "RunInstances").at_ms(1).failed("Throttling"),
            ]
        });
        let mut repeated = Vec::new();
        for i in 0..10 {
            repeated.extend(h.run(
                ev(12, "RunInstances").at_ms(i).failed("Throttling"),
                "TH-007",
            ));
        }
        assert!(repeated.is_empty(), "one message repeated is not a spike");
        let mut f = Vec::new();
        for (i, api) in [
            "ListGroups",
            "ListPolicies",
            "GetAccountSummary",
            "ListUsers",
            "ListRoles",
            "GetSecretValue",
            "ListBuckets",
            "DescribeDBInstances",
            "ListKeys",
        ]
        .iter()
        .enumerate()
        {
            let mut e = ev(12, api).at_ms(100 + i as i64).failed("AccessDenied");
            e.enriched.event.as_mut().unwrap().error_message =
                format!("not authorized to perform {api}");
            f.extend(h.run(e, "TH-007"));
        }
        assert!(!f.is_empty());
        assert_eq!(f[0].severity(), Severity::Medium);
        assert!(f[0].count_is_peak);
    }
}
