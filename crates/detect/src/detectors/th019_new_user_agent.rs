//! TH-019 New user agent (seed 004, Amazon Detective): a principal uses a
//! user agent (family and major version) not seen in the window; high when
//! it runs on a penetration-testing distribution (Kali, Parrot, Pentoo).

use trailhound_proto::{ClientKind, Finding, NoveltyKind, Observation, Severity};

use super::{Context, Detector, novelty_finding};
use crate::finding::{GuidanceText, ObservationExt, ROTATE_CREDENTIALS};

pub struct NewUserAgent;

const ID: &str = "TH-019";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "The identity used a client it has not used in the baseline window. Attackers use their own tooling; a penetration-testing distribution is a strong sign.",
    why_it_may_be_fine: "Tool upgrades (a new CLI or SDK major version), new automation, or a new laptop.",
    what_to_check: &[
        "The full user agent: tool, version, operating system.",
        "Whether the owner of the identity recently changed tools, and what the calls with the new agent did.",
    ],
    how_to_resolve: ROTATE_CREDENTIALS,
};

impl Detector for NewUserAgent {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "New user agent"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(n) = obs.novelty(NoveltyKind::UserAgent).filter(|n| n.is_new) else {
            return;
        };
        let Some(ua) = obs.enriched().user_agent.as_ref() else {
            return;
        };
        let by_aws = ua.client == ClientKind::AwsService as i32 || ua.family == "none";
        if by_aws || !ctx.learned(ID, obs) {
            return;
        }
        let pentest = &ua.pentest_distribution;
        let (severity, title) = if pentest.is_empty() {
            (Severity::Low, "API calls with a new user agent".to_string())
        } else {
            (
                Severity::High,
                format!("API calls from a penetration-testing distribution ({pentest})"),
            )
        };
        let mut f = novelty_finding(obs, ctx, ID, (severity, title), "user agent", n, &GUIDANCE);
        let known = format!(
            "{} user agents known for the principal",
            obs.facts().known_user_agents
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
    fn new_agent_low_pentest_high_known_silent() {
        let mut h = Harness::new(config());
        h.history(12, |d| vec![ev(d, "DescribeInstances")]);
        let f = h.run(ev(12, "DescribeInstances").agent("boto3/1", ""), "TH-019");
        assert_eq!(
            (f[0].severity(), f[0].key.as_str()),
            (Severity::Low, "boto3/1")
        );
        let f = h.run(
            ev(12, "DescribeInstances").agent("aws-cli/1", "kali"),
            "TH-019",
        );
        assert_eq!(f[0].severity(), Severity::High);
        assert!(f[0].title.contains("kali"));
        assert!(h.run(ev(12, "DescribeInstances"), "TH-019").is_empty());
    }
}
