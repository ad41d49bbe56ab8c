//! TH-011 Access-key manipulation (seed 003): CreateAccessKey,
//! UpdateAccessKey, DeleteAccessKey and ListAccessKeys, raised when done
//! for another user (a backdoor key, or cutting the owner out) or by a
//! principal that never did so in the window. A user managing its own keys
//! as it always does raises nothing.

use trailhound_proto::{Finding, NoveltyKind, Observation, PrincipalKind, Severity};

use super::{Context, Detector};
use crate::baseline::request_field;
use crate::finding::{GuidanceText, ObservationExt, attack, candidate, context_facts};

pub struct AccessKeyManipulation;

const ID: &str = "TH-011";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "Access keys are long-lived credentials: an attacker creates one for another user to keep access after the stolen credentials are revoked, or deletes and deactivates keys to disrupt the owner.",
    why_it_may_be_fine: "Administrators and identity automation rotate keys for users; users rotate their own keys.",
    what_to_check: &[
        "Who the target user is, and whether the caller is allowed to manage that user's keys.",
        "Whether the new key was used afterwards, from where and for what.",
        "Whether a key rotation or onboarding was scheduled.",
    ],
    how_to_resolve: &[
        "Deactivate and delete keys that nobody requested.",
        "Rotate the caller's credentials if the change was not planned.",
        "Review everything done with the new key.",
    ],
};

impl Detector for AccessKeyManipulation {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Access-key manipulation"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let event = obs.event();
        let name = event.event_name.as_str();
        if obs.enriched().service != "iam"
            || !matches!(
                name,
                "CreateAccessKey" | "UpdateAccessKey" | "DeleteAccessKey" | "ListAccessKeys"
            )
            || obs.enriched().failed
        {
            return;
        }
        let target = request_field(&event.request_parameters_json, "userName");
        let caller = obs.principal();
        let own_name = caller.arn.rsplit('/').next().unwrap_or("");
        let for_other = target.as_deref().is_some_and(|t| {
            caller.kind != PrincipalKind::IamUser as i32 || !t.eq_ignore_ascii_case(own_name)
        });
        let never_did = obs
            .novelty(NoveltyKind::Command)
            .is_some_and(|n| n.is_new && ctx.learned(ID, obs));
        let severity = match (name, for_other, never_did) {
            (_, false, false) => return,
            ("CreateAccessKey", true, _) => Severity::High,
            ("CreateAccessKey", false, true) | ("UpdateAccessKey" | "DeleteAccessKey", true, _) => {
                Severity::Medium
            }
            _ => Severity::Low,
        };
        let target = target.unwrap_or_else(|| own_name.to_string());
        let title = if for_other {
            format!("{name} for another user")
        } else {
            format!("{name} by a principal that never did so")
        };
        let mut f = candidate(
            obs,
            ID,
            title,
            severity,
            format!("{name}|{target}"),
            &GUIDANCE,
        );
        f.attack.push(attack("persistence", "T1098.001"));
        f.baseline_facts.push(if for_other {
            format!("{} called {name} for user {target}", caller.arn)
        } else {
            format!(
                "{name} not called by this principal in the previous {} days",
                ctx.window_days()
            )
        });
        f.baseline_facts
            .extend(context_facts(obs, ctx.window_days()));
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::Severity;

    fn iam(day: i64, name: &str, user: Option<&str>) -> Ev {
        let params = user.map_or(String::new(), |u| format!(r#"{{"userName":"{u}"}}"#));
        let mut e = ev(day, name).service("iam.amazonaws.com");
        e.enriched.event.as_mut().unwrap().request_parameters_json = params;
        e
    }

    #[test]
    fn a_key_for_another_user_is_high_a_first_own_key_medium() {
        let mut h = Harness::new(config());
        h.history(12, |d| vec![ev(d, "DescribeInstances")]);
        let backdoor = h.run(iam(12, "CreateAccessKey", Some("bob")), "TH-011");
        assert_eq!(backdoor[0].severity(), Severity::High);
        assert_eq!(backdoor[0].key, "CreateAccessKey|bob");
        let own = h.run(iam(12, "CreateAccessKey", Some("alice")).at_ms(5), "TH-011");
        assert!(
            own.is_empty(),
            "alice has now created a key before (the backdoor)"
        );
        let mut fresh = Harness::new(config());
        fresh.history(12, |d| vec![ev(d, "DescribeInstances")]);
        let first = fresh.run(iam(12, "CreateAccessKey", None), "TH-011");
        assert_eq!(
            (first[0].severity(), first[0].title.as_str()),
            (
                Severity::Medium,
                "CreateAccessKey by a principal that never did so"
            )
        );
    }

    #[test]
    fn routine_own_key_management_is_silent() {
        let mut h = Harness::new(config());
        h.history(12, |d| {
            vec![
                ev(d, "DescribeInstances"),
                iam(d, "ListAccessKeys", Some("alice")),
            ]
        });
        assert!(
            h.run(iam(12, "ListAccessKeys", Some("alice")).at_ms(9), "TH-011")
                .is_empty()
        );
        let list_other = h.run(iam(12, "ListAccessKeys", Some("bob")).at_ms(10), "TH-011");
        assert_eq!(list_other[0].severity(), Severity::Low);
        assert!(
            h.run(
                iam(12, "CreateAccessKey", Some("bob"))
                    .at_ms(11)
                    .failed("AccessDenied"),
                "TH-011"
            )
            .is_empty()
        );
    }
}
