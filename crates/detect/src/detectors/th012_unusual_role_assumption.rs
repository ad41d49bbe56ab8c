//! TH-012 Unusual role assumption (seed 003): a principal assumes a role
//! (AssumeRole, AssumeRoleWithSAML, AssumeRoleWithWebIdentity) it has not
//! assumed in the window; cross-account pairs are named as such. AWS
//! services assuming roles for their resources are left out.

use trailhound_proto::{Finding, NoveltyKind, Observation, PrincipalKind, Severity};

use super::{Context, Detector, novelty_finding};
use crate::finding::{GuidanceText, ObservationExt, ROTATE_CREDENTIALS, attack};

pub struct UnusualRoleAssumption;

const ID: &str = "TH-012";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "Attackers chain role assumptions to move towards more privileged roles or into other accounts; a caller assuming a role it never assumed before is a step they need.",
    why_it_may_be_fine: "New access granted on purpose, a new pipeline or a person taking on a new duty.",
    what_to_check: &[
        "Whether the caller should be able to assume the role, and who changed the role's trust policy last.",
        "What the new role session did next.",
        "For a cross-account role, whether the other account belongs to the organisation.",
    ],
    how_to_resolve: ROTATE_CREDENTIALS,
};

impl Detector for UnusualRoleAssumption {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Unusual role assumption"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(n) = obs.novelty(NoveltyKind::AssumedRole) else {
            return;
        };
        let service = obs.principal().kind == PrincipalKind::Service as i32;
        if !n.is_new || service || obs.enriched().failed || !ctx.learned(ID, obs) {
            return;
        }
        let role = obs.value(n);
        let role_account = role.split(':').nth(4).unwrap_or("");
        let cross_account = !role_account.is_empty() && role_account != obs.principal().account_id;
        let title = if cross_account {
            "Unusual cross-account role assumption"
        } else {
            "Unusual role assumption"
        };
        let mut f = novelty_finding(
            obs,
            ctx,
            ID,
            (Severity::Medium, title.to_string()),
            "role",
            n,
            &GUIDANCE,
        );
        f.attack.push(attack("lateral-movement", "T1550.001"));
        if cross_account {
            let fact = format!(
                "the role is in account {role_account}, the caller in {}",
                obs.principal().account_id
            );
            f.baseline_facts.insert(1, fact);
        }
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;

    fn assume(day: i64, role: &str) -> Ev {
        let mut e = ev(day, "AssumeRole").service("sts.amazonaws.com");
        e.enriched.event.as_mut().unwrap().request_parameters_json =
            format!(r#"{{"roleArn":"{role}","roleSessionName":"s"}}"#);
        e
    }

    const OWN: &str = "arn:aws:iam::111122223333:role/deploy";
    const OTHER: &str = "arn:aws:iam::999988887777:role/admin";

    #[test]
    fn a_new_pair_fires_once_and_cross_account_is_named() {
        let mut h = Harness::new(config());
        h.history(12, |d| vec![assume(d, OWN)]);
        assert!(h.run(assume(12, OWN).at_ms(1), "TH-012").is_empty());
        let f = h.run(assume(12, OTHER).at_ms(2), "TH-012");
        assert_eq!(
            (f[0].title.as_str(), f[0].key.as_str()),
            ("Unusual cross-account role assumption", OTHER)
        );
        assert!(h.run(assume(12, OTHER).at_ms(3), "TH-012").is_empty());
    }

    #[test]
    fn silent_while_training_and_when_denied() {
        let mut h = Harness::new(config());
        h.history(3, |d| vec![assume(d, OWN)]);
        assert!(h.run(assume(3, OTHER), "TH-012").is_empty());
        let mut trained = Harness::new(config());
        trained.history(12, |d| vec![assume(d, OWN)]);
        assert!(
            trained
                .run(assume(12, OTHER).failed("AccessDenied"), "TH-012")
                .is_empty()
        );
    }
}
