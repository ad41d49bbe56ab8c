//! TH-017 Flagged IP address (seed 004, Amazon Detective): the call came
//! from an address on a configured threat list (`enrich.threat_lists`:
//! CIDR files such as a custom block list or Tor exit nodes).

use trailhound_proto::{Finding, Observation, Severity};

use super::{Context, Detector};
use crate::finding::{GuidanceText, ObservationExt, ROTATE_CREDENTIALS, candidate, context_facts};

pub struct FlaggedIp;

const ID: &str = "TH-017";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "The address is on a threat list the organisation trusts: known attacker infrastructure, anonymising networks such as Tor, or addresses seen in earlier incidents.",
    why_it_may_be_fine: "Lists go stale: addresses are reassigned, and some lists include shared VPN or cloud ranges that legitimate users share.",
    what_to_check: &[
        "Which list flagged the address and when it was added.",
        "Every call from the address, by any identity.",
        "Whether the identity's owner uses an anonymising network on purpose.",
    ],
    how_to_resolve: ROTATE_CREDENTIALS,
};

impl Detector for FlaggedIp {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Flagged IP address"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(network) = obs
            .enriched()
            .network
            .as_ref()
            .filter(|n| !n.flagged_by.is_empty())
        else {
            return;
        };
        let mut f = candidate(
            obs,
            ID,
            "API call from a flagged IP address",
            Severity::High,
            network.ip.clone(),
            &GUIDANCE,
        );
        f.baseline_facts.push(format!(
            "{} is on the threat list(s): {}",
            network.ip,
            network.flagged_by.join(", ")
        ));
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
    fn fires_for_listed_addresses_only() {
        let mut h = Harness::new(config());
        assert!(h.run(ev(0, "ListBuckets"), "TH-017").is_empty());
        let mut tor = ev(0, "ListBuckets").at_ms(1);
        tor.enriched.network.as_mut().unwrap().flagged_by = vec!["tor-exits".into()];
        let f = h.run(tor, "TH-017");
        assert_eq!(
            (f[0].severity(), f[0].key.as_str()),
            (Severity::High, "80.1.1.1")
        );
        assert!(f[0].baseline_facts[0].contains("tor-exits"));
    }
}
