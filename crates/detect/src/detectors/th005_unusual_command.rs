//! TH-005 Unusual AWS command for a principal (seed 002, related): the
//! principal calls an API (`eventSource:eventName`) it has not called in
//! the window. Calls AWS makes on the principal's behalf (`invokedBy`) are
//! left out: the service chose them, not the principal.

use trailhound_proto::{Finding, NoveltyKind, Observation, Severity};

use super::{Context, Detector, novelty_finding};
use crate::finding::{GuidanceText, ObservationExt, ROTATE_CREDENTIALS};

pub struct UnusualCommand;

const ID: &str = "TH-005";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "The identity called an API it has not used in the baseline window: stolen credentials are used for the attacker's goals (discovery, persistence, data access), which rarely match the owner's routine.",
    why_it_may_be_fine: "New features, new deployments, or a person doing a task they do rarely.",
    what_to_check: &[
        "Whether the owner of the identity (or its deployment pipeline) planned this call.",
        "The source IP, user agent and region of the call compared with the identity's usual ones.",
        "Other unusual calls by the identity around the same time.",
    ],
    how_to_resolve: ROTATE_CREDENTIALS,
};

impl Detector for UnusualCommand {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Unusual AWS command for a principal"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(n) = obs.novelty(NoveltyKind::Command) else {
            return;
        };
        let on_behalf = obs
            .event()
            .user_identity
            .as_ref()
            .is_some_and(|i| !i.invoked_by.is_empty());
        if !n.is_new || on_behalf || !ctx.learned(ID, obs) {
            return;
        }
        let title = "Unusual AWS command for a principal".to_string();
        out.push(novelty_finding(
            obs,
            ctx,
            ID,
            (Severity::Low, title),
            "command",
            n,
            &GUIDANCE,
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;

    #[test]
    fn fires_once_for_a_command_new_to_a_trained_principal() {
        let mut h = Harness::new(config());
        h.history(12, |d| vec![ev(d, "DescribeInstances")]);
        let f = h.run(ev(12, "GetPasswordData"), "TH-005");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].key, "ec2.amazonaws.com:GetPasswordData");
        assert!(
            h.run(ev(12, "GetPasswordData").at_ms(5), "TH-005")
                .is_empty(),
            "no longer new"
        );
        assert!(
            h.run(ev(12, "DescribeInstances").at_ms(5), "TH-005")
                .is_empty()
        );
        let on_behalf = ev(12, "Decrypt").identity(|i| i.invoked_by = "s3.amazonaws.com".into());
        assert!(h.run(on_behalf, "TH-005").is_empty());
    }

    #[test]
    fn silent_while_training() {
        let mut h = Harness::new(config());
        h.history(3, |d| vec![ev(d, "DescribeInstances")]);
        assert!(h.run(ev(3, "GetPasswordData"), "TH-005").is_empty());
    }
}
