//! TH-020 Lateral-movement API (seed 004): a successful call that moves an
//! attacker onto other hosts — EC2 Instance Connect and serial-console SSH
//! keys, Session Manager sessions and Run Command. The ATT&CK table's other
//! lateral-movement entries (Decrypt, ListKeys, CreateVolume …) are routine
//! calls that rule authors tagged for context, so they do not fire alone.

use trailhound_proto::{Finding, Observation, Severity};

use super::{Context, Detector};
use crate::finding::{
    GuidanceText, ObservationExt, ROTATE_CREDENTIALS, attack, candidate, context_facts,
};

pub struct LateralMovement;

const ID: &str = "TH-020";

/// (eventName, ATT&CK technique) of the calls that reach into hosts.
const HOST_ACCESS: &[(&str, &str)] = &[
    ("SendSSHPublicKey", "T1021.004"),
    ("SendSerialConsoleSSHPublicKey", "T1021.004"),
    ("StartSession", "T1021.007"),
    ("ResumeSession", "T1021.007"),
    ("SendCommand", "T1651"),
];

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "These calls give shell access to instances without their network being reachable: attackers with cloud credentials use them to move onto hosts and the data and roles there.",
    why_it_may_be_fine: "Administrators and deployment tools use Session Manager, Run Command and EC2 Instance Connect every day.",
    what_to_check: &[
        "Which instance was reached, and whether the caller administers it.",
        "The public key or command sent (request parameters).",
        "Activity of the instance's role after the session.",
    ],
    how_to_resolve: ROTATE_CREDENTIALS,
};

impl Detector for LateralMovement {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Lateral-movement API"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let name = obs.event().event_name.as_str();
        let host_access = HOST_ACCESS.iter().find(|(n, _)| *n == name);
        let Some((_, technique)) = host_access.filter(|_| !obs.enriched().failed) else {
            return;
        };
        let mut f = candidate(
            obs,
            ID,
            format!("Lateral-movement API: {name}"),
            Severity::Medium,
            name,
            &GUIDANCE,
        );
        f.attack.push(attack("lateral-movement", technique));
        f.baseline_facts
            .push(format!("{}:{name} succeeded", obs.event().event_source));
        f.baseline_facts
            .extend(context_facts(obs, ctx.window_days()));
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::Severity;

    #[test]
    fn host_access_calls_that_succeed() {
        let mut h = Harness::new(config());
        let f = h.run(
            ev(0, "SendSSHPublicKey").service("ec2-instance-connect.amazonaws.com"),
            "TH-020",
        );
        assert_eq!(f[0].severity(), Severity::Medium);
        assert!(
            h.run(ev(0, "SendSSHPublicKey").failed("AccessDenied"), "TH-020")
                .is_empty()
        );
        assert!(h.run(ev(0, "DescribeInstances"), "TH-020").is_empty());
        assert!(
            h.run(ev(0, "Decrypt").tactic("lateral-movement"), "TH-020")
                .is_empty(),
            "routine calls the ATT&CK table tags as lateral movement"
        );
    }
}
