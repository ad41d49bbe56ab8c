//! TH-004 Unusual city for an AWS command (seed 002, related): like TH-003,
//! by city: the event's city is rare for its `eventSource:eventName` across
//! the organisation, for a command the organisation uses regularly.

use trailhound_proto::{Finding, NoveltyKind, Observation};

use super::th003_unusual_country_for_command::unusual_for_command;
use super::{Context, Detector};
use crate::finding::{GuidanceText, ROTATE_CREDENTIALS};

pub struct UnusualCityForCommand;

const ID: &str = "TH-004";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "An AWS command is coming from a city unusual for that command across the organisation: possibly compromised credentials used from an attacker's location, even inside a country the organisation works from.",
    why_it_may_be_fine: "Travel, remote work, a new office, or a mobile or VPN provider that changed its exit points; city-level geolocation is also less accurate than country-level.",
    what_to_check: &[
        "The identity and access key that made the call, and whether it should perform this kind of action.",
        "The source IP's network: a home or mobile provider, a hosting or VPN provider.",
        "Other alerts for the identity in the past 48 hours.",
        "The request parameters: they may show what the program was doing.",
    ],
    how_to_resolve: ROTATE_CREDENTIALS,
};

impl Detector for UnusualCityForCommand {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Unusual city for an AWS command"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        out.extend(unusual_for_command(
            obs,
            ctx,
            ID,
            NoveltyKind::CommandCity,
            "Unusual city for an AWS command",
            &GUIDANCE,
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::Severity;

    #[test]
    fn fires_for_a_new_city_of_a_regular_command_even_in_a_known_country() {
        let mut h = Harness::new(config());
        h.history(12, |d| {
            (0..2)
                .map(|i| ev(d, "DescribeInstances").at_ms(i))
                .collect()
        });
        let f = h.run(
            ev(12, "DescribeInstances").from("DE", "Munich", 3320, "Deutsche Telekom AG"),
            "TH-004",
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity(), Severity::Low);
        assert_eq!(f[0].key, "ec2.amazonaws.com:DescribeInstances|DE|Munich");
        assert!(
            h.run(ev(12, "DescribeInstances").at_ms(9), "TH-004")
                .is_empty(),
            "Berlin is known"
        );
    }

    #[test]
    fn silent_for_rare_commands_and_before_activation() {
        let mut h = Harness::new(config());
        h.history(12, |d| vec![ev(d, "DescribeInstances")]);
        assert!(
            h.run(ev(12, "DeleteVpc").from("DE", "Munich", 1, "x"), "TH-004")
                .is_empty()
        );
        let mut early = Harness::new(config());
        early.history(3, |d| {
            (0..5)
                .map(|i| ev(d, "DescribeInstances").at_ms(i))
                .collect()
        });
        assert!(
            early
                .run(
                    ev(3, "DescribeInstances").from("DE", "Munich", 1, "x"),
                    "TH-004"
                )
                .is_empty()
        );
    }
}
