//! TH-006 Rare AWS error code (seed 002, related): a call fails with an
//! error code that is rare in the account: never seen in the window (or on
//! fewer days than `rare_error_code_days`). Rarity is counted per account,
//! the unit whose workloads share error patterns (docs/configuration.md).

use trailhound_proto::{Finding, NoveltyKind, Observation, Severity};

use super::{Context, Detector};
use crate::finding::{GuidanceText, ObservationExt, ROTATE_CREDENTIALS, candidate, context_facts};

pub struct RareErrorCode;

const ID: &str = "TH-006";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "An error code the account rarely or never gets: attackers probing permissions, using unfamiliar APIs or guessing resource names cause errors that normal automation does not.",
    why_it_may_be_fine: "A new deployment, a changed permission policy, a service incident or a new API version can all produce new errors.",
    what_to_check: &[
        "Which identity got the error, and which calls it made just before and after.",
        "Whether the error is AccessDenied-like (permission probing) or a validation error (a tool guessing).",
        "Whether the calls came from the identity's usual network and user agent.",
    ],
    how_to_resolve: ROTATE_CREDENTIALS,
};

impl Detector for RareErrorCode {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Rare AWS error code"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(n) = obs.novelty(NoveltyKind::ErrorCode) else {
            return;
        };
        let rare = n.is_new || n.days_seen < ctx.config.rare_error_code_days;
        if !rare || !ctx.active(ID, obs) {
            return;
        }
        let code = obs.value(n);
        let mut f = candidate(
            obs,
            ID,
            "Rare AWS error code",
            Severity::Low,
            code.clone(),
            &GUIDANCE,
        );
        f.first_event_only = n.is_new;
        let event = obs.event();
        f.baseline_facts.push(format!(
            "error {} (on {}:{}) seen in the account on {} of the previous {} days",
            code,
            event.event_source,
            event.event_name,
            n.days_seen,
            ctx.window_days()
        ));
        f.baseline_facts
            .extend(context_facts(obs, ctx.window_days()));
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::{ComputeKind, PrincipalKind};

    #[test]
    fn fires_for_an_error_code_new_to_the_account() {
        let mut h = Harness::new(config());
        h.history(8, |d| {
            vec![
                ev(d, "DescribeInstances"),
                ev(d, "RunInstances").failed("InsufficientInstanceCapacity"),
            ]
        });
        let f = h.run(ev(8, "GetPasswordData").failed("AccessDenied"), "TH-006");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].key, "AccessDenied");
        let bob = ev(8, "ListUsers")
            .at_ms(16 * 60_000)
            .failed("AccessDenied")
            .principal(
                "arn:aws:iam::111122223333:user/bob",
                PrincipalKind::IamUser,
                "",
                ComputeKind::None,
            );
        assert!(
            h.run(bob, "TH-006").is_empty(),
            "account-wide: no longer rare after the reorder window"
        );
        assert!(
            h.run(
                ev(8, "RunInstances")
                    .failed("InsufficientInstanceCapacity")
                    .at_ms(3),
                "TH-006"
            )
            .is_empty()
        );
    }

    #[test]
    fn silent_before_activation_and_for_successes() {
        let mut h = Harness::new(config());
        h.history(2, |d| vec![ev(d, "DescribeInstances")]);
        assert!(
            h.run(ev(2, "GetPasswordData").failed("AccessDenied"), "TH-006")
                .is_empty()
        );
        assert!(h.run(ev(2, "GetPasswordData"), "TH-006").is_empty());
    }
}
