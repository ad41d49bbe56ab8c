//! TH-021 Instance credentials used outside AWS (GuardDuty's
//! InstanceCredentialExfiltration.OutsideAWS): an EC2 role session's
//! credentials call from an address that is not in an AWS range.

use trailhound_proto::{ComputeKind, Finding, Observation, Severity};

use super::{Context, Detector};
use crate::finding::{GuidanceText, ObservationExt, attack, candidate, context_facts};

pub struct InstanceCredentialsOutsideAws;

const ID: &str = "TH-021";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "Credentials delivered to an EC2 instance are only ever used from that instance, inside AWS: a call from outside AWS means they were stolen, typically through SSRF to the instance metadata service or a compromised host.",
    why_it_may_be_fine: "Hardly ever: a proxy or NAT outside AWS in front of the instance, or an address missing from the configured AWS ranges.",
    what_to_check: &[
        "The instance behind the session name, and how its credentials could have left it (metadata service v1, SSRF, a compromised process).",
        "Everything the role session did from the outside address.",
    ],
    how_to_resolve: &[
        "Revoke the role's active sessions (AWSRevokeOlderSessions) and enforce IMDSv2 on the instance.",
        "Investigate and rebuild the instance; review the role's permissions.",
    ],
};

impl Detector for InstanceCredentialsOutsideAws {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Instance credentials used outside AWS"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let principal = obs.principal();
        let outside = obs
            .enriched()
            .network
            .as_ref()
            .filter(|n| n.is_network_location && !n.in_aws && !n.aws_source.is_empty());
        let on_behalf = obs
            .event()
            .user_identity
            .as_ref()
            .is_some_and(|i| !i.invoked_by.is_empty());
        let Some(network) =
            outside.filter(|_| principal.compute == ComputeKind::Ec2 as i32 && !on_behalf)
        else {
            return;
        };
        let mut f = candidate(
            obs,
            ID,
            "EC2 instance credentials used outside AWS",
            Severity::High,
            format!("{}|{}", principal.session_name, network.ip),
            &GUIDANCE,
        );
        f.attack.push(attack("credential-access", "T1552.005"));
        f.baseline_facts.push(format!(
            "session {} of an EC2 instance role called from {} (AS{} {}), outside AWS",
            principal.session_name, network.ip, network.asn, network.as_org
        ));
        f.baseline_facts
            .extend(context_facts(obs, ctx.window_days()));
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::{ComputeKind, PrincipalKind, Severity};

    fn instance(e: Ev, in_aws: bool) -> Ev {
        let mut e = e.principal(
            "arn:aws:iam::111122223333:role/web",
            PrincipalKind::Role,
            "i-0abc",
            ComputeKind::Ec2,
        );
        let n = e.enriched.network.as_mut().unwrap();
        (n.in_aws, n.aws_source) = (in_aws, "ip-ranges".into());
        e
    }

    #[test]
    fn fires_outside_aws_only_for_instance_roles() {
        let mut h = Harness::new(config());
        let f = h.run(instance(ev(0, "ListBuckets"), false), "TH-021");
        assert_eq!(
            (f[0].severity(), f[0].key.as_str()),
            (Severity::High, "i-0abc|80.1.1.1")
        );
        assert!(
            h.run(instance(ev(0, "ListBuckets"), true), "TH-021")
                .is_empty()
        );
        assert!(
            h.run(
                instance(ev(0, "Decrypt").not_located("AWS Internal"), false),
                "TH-021"
            )
            .is_empty()
        );
        assert!(
            h.run(ev(0, "ListBuckets"), "TH-021").is_empty(),
            "a user, not an instance"
        );
    }
}
