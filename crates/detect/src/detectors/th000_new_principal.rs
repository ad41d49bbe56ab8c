//! TH-000 New principal: an identity seen for the first time. One
//! informational finding instead of a flood of novelty findings while its
//! profile trains (DETECTIONS.md, "Training").

use trailhound_proto::{Finding, Observation, Severity};

use super::{Context, Detector};
use crate::finding::{GuidanceText, ObservationExt, candidate, date};

pub struct NewPrincipal;

const ID: &str = "TH-000";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "A principal never seen before has no baseline yet: its novelty findings start once its profile covers the training period.",
    why_it_may_be_fine: "New users, roles and automation appear all the time.",
    what_to_check: &[
        "Who created the principal and when (CreateUser, CreateRole).",
        "Whether its first calls match its intended purpose.",
    ],
    how_to_resolve: &["Nothing, if the principal is expected."],
};

impl Detector for NewPrincipal {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "New principal"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        if !obs.facts().new_principal || !ctx.active(ID, obs) {
            return;
        }
        let mut f = candidate(
            obs,
            ID,
            "New principal",
            Severity::Informational,
            "",
            &GUIDANCE,
        );
        f.first_event_only = true;
        f.baseline_facts.push(format!(
            "no activity of this principal in the {} days before {}",
            ctx.window_days(),
            date(obs.event().event_time_ms)
        ));
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;

    #[test]
    fn fires_once_for_a_new_principal_after_activation() {
        let mut h = Harness::new(config());
        h.history(6, |d| vec![ev(d, "DescribeInstances")]);
        let bob = "arn:aws:iam::111122223333:user/bob";
        let kind = trailhound_proto::PrincipalKind::IamUser;
        let none = trailhound_proto::ComputeKind::None;
        let first = h.run(
            ev(6, "DescribeVolumes").principal(bob, kind, "", none),
            "TH-000",
        );
        assert_eq!(first.len(), 1);
        assert!(
            h.run(
                ev(6, "DescribeVolumes")
                    .at_ms(1)
                    .principal(bob, kind, "", none),
                "TH-000"
            )
            .is_empty()
        );
    }

    #[test]
    fn silent_before_activation() {
        let mut h = Harness::new(config());
        assert!(h.run(ev(0, "DescribeInstances"), "TH-000").is_empty());
    }
}
