//! TH-015 New geolocation (seed 004, Amazon Detective): a principal calls
//! from a country it has not called from in the window (medium), or from a
//! new city in a known country (low). Only network locations count.

use trailhound_proto::{Finding, NoveltyKind, Observation, Severity};

use super::{Context, Detector, novelty_finding};
use crate::finding::{GuidanceText, ObservationExt, ROTATE_CREDENTIALS, attack};

pub struct NewGeolocation;

const ID: &str = "TH-015";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "API calls came from a location this identity has not used in the baseline window: stolen credentials are usually used from the attacker's own infrastructure, elsewhere.",
    why_it_may_be_fine: "Travel, remote work, a new office, or a mobile or VPN provider that moved its exit points.",
    what_to_check: &[
        "Whether the user is travelling or working remotely; ask them through a channel other than the one that may be compromised.",
        "Which API calls came from the new location, and whether they succeeded.",
        "Other new attributes at the same time: AS organisation, user agent, impossible travel.",
    ],
    how_to_resolve: ROTATE_CREDENTIALS,
};

impl Detector for NewGeolocation {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "New geolocation"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        if !obs.located() || !ctx.learned(ID, obs) {
            return;
        }
        let country = obs.novelty(NoveltyKind::Country);
        let (n, severity, title) = match (country, obs.novelty(NoveltyKind::City)) {
            (Some(c), _) if c.is_new => (c, Severity::Medium, "API calls from a new country"),
            (Some(_), Some(city)) if city.is_new => {
                (city, Severity::Low, "API calls from a new city")
            }
            _ => return,
        };
        let mut f = novelty_finding(
            obs,
            ctx,
            ID,
            (severity, title.to_string()),
            "location",
            n,
            &GUIDANCE,
        );
        f.attack.push(attack("initial-access", "T1078.004"));
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::Severity;

    fn trained() -> Harness {
        let mut h = Harness::new(config());
        h.history(12, |d| vec![ev(d, "DescribeInstances")]);
        h
    }

    #[test]
    fn new_country_medium_new_city_low() {
        let mut h = trained();
        let f = h.run(
            ev(12, "DescribeInstances").from("RU", "Moscow", 3320, "Deutsche Telekom AG"),
            "TH-015",
        );
        assert_eq!(
            (f[0].severity(), f[0].key.as_str()),
            (Severity::Medium, "RU")
        );
        assert!(
            f[0].baseline_facts
                .iter()
                .any(|x| x == "1 known countries: DE"),
            "{:?}",
            f[0].baseline_facts
        );
        let f = h.run(
            ev(12, "DescribeInstances").from("DE", "Munich", 3320, "Deutsche Telekom AG"),
            "TH-015",
        );
        assert_eq!(
            (f[0].severity(), f[0].key.as_str()),
            (Severity::Low, "DE|Munich")
        );
    }

    #[test]
    fn the_known_countries_are_counted_past_the_ten_named() {
        let mut h = Harness::new(config());
        let countries = [
            "AT", "BE", "CH", "DE", "DK", "ES", "FI", "FR", "IE", "IT", "NL", "SE",
        ];
        h.history(12, |d| {
            (countries.iter())
                .map(|c| ev(d, "DescribeInstances").from(c, "Capital", 3320, "Telekom"))
                .collect()
        });
        let f = h.run(
            ev(12, "DescribeInstances").from("RU", "Moscow", 3320, "Telekom"),
            "TH-015",
        );
        assert!(
            f[0].baseline_facts
                .iter()
                .any(|x| x
                    == "12 known countries: AT, BE, CH, DE, DK, ES, FI, FR, IE, IT and 2 more"),
            "{:?}",
            f[0].baseline_facts
        );
    }

    #[test]
    fn silent_when_seen_during_training_or_not_a_network_location() {
        let mut h = trained();
        assert!(h.run(ev(12, "DescribeInstances"), "TH-015").is_empty());
        assert!(
            h.run(
                ev(12, "DescribeInstances").not_located("AWS Internal"),
                "TH-015"
            )
            .is_empty()
        );
        let mut young = Harness::new(config());
        young.history(2, |d| vec![ev(d, "DescribeInstances")]);
        assert!(
            young
                .run(
                    ev(2, "DescribeInstances").from("RU", "Moscow", 1, "x"),
                    "TH-015"
                )
                .is_empty()
        );
    }

    #[test]
    fn an_earlier_event_arriving_late_takes_the_novelty_over() {
        let mut h = trained();
        let late = h.run(
            ev(12, "DescribeInstances")
                .at_ms(60_000)
                .from("RU", "Moscow", 1, "x")
                .id("second"),
            "TH-015",
        );
        let early = h.run(
            ev(12, "DescribeInstances")
                .from("RU", "Moscow", 1, "x")
                .id("first"),
            "TH-015",
        );
        assert_eq!(late[0].evidence[0].event_id, "second");
        assert_eq!(early[0].evidence[0].event_id, "first");
        assert!(
            h.run(
                ev(12, "DescribeInstances")
                    .at_ms(120_000)
                    .from("RU", "Moscow", 1, "x"),
                "TH-015"
            )
            .is_empty()
        );
    }
}
