//! TH-018 New autonomous system organisation (seed 004, Amazon Detective):
//! a principal calls from an AS organisation not seen in the window.

use trailhound_proto::{Finding, NoveltyKind, Observation, Severity};

use super::{Context, Detector, novelty_finding};
use crate::finding::{GuidanceText, ObservationExt, ROTATE_CREDENTIALS};

pub struct NewAso;

const ID: &str = "TH-018";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "The identity's calls came through a network operator it has not used in the baseline window: a hosting provider, VPN or residential network an attacker controls.",
    why_it_may_be_fine: "A new home or mobile provider, a corporate network change, or travel.",
    what_to_check: &[
        "What the AS organisation is: hosting, VPN, cloud or residential.",
        "Which API calls came through it, and whether other new attributes (country, user agent) appeared at the same time.",
    ],
    how_to_resolve: ROTATE_CREDENTIALS,
};

impl Detector for NewAso {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "New autonomous system organisation"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(n) = obs.novelty(NoveltyKind::Aso).filter(|n| n.is_new) else {
            return;
        };
        if !ctx.learned(ID, obs) {
            return;
        }
        let title = "API calls from a new AS organisation".to_string();
        let mut f = novelty_finding(
            obs,
            ctx,
            ID,
            (Severity::Medium, title),
            "AS organisation",
            n,
            &GUIDANCE,
        );
        let known = format!(
            "{} AS organisations known for the principal",
            obs.facts().known_asos
        );
        f.baseline_facts.insert(1, known);
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::Severity;

    #[test]
    fn fires_for_a_new_aso_only_after_training() {
        let mut h = Harness::new(config());
        h.history(12, |d| vec![ev(d, "DescribeInstances")]);
        let f = h.run(
            ev(12, "DescribeInstances").from("DE", "Berlin", 24940, "Hetzner Online GmbH"),
            "TH-018",
        );
        assert_eq!(
            (f[0].severity(), f[0].key.as_str()),
            (Severity::Medium, "Hetzner Online GmbH")
        );
        assert!(h.run(ev(12, "DescribeInstances"), "TH-018").is_empty());
        let mut young = Harness::new(config());
        assert!(
            young
                .run(
                    ev(0, "DescribeInstances").from("DE", "Berlin", 24940, "Hetzner"),
                    "TH-018"
                )
                .is_empty()
        );
    }
}
