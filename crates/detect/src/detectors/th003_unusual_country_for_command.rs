//! TH-003 Unusual country for an AWS command (seed 002, Elastic): the
//! event's country is rare for its `eventSource:eventName` across the whole
//! organisation: never seen in the window (or on fewer days than the
//! configured threshold), for a command the organisation uses regularly.

use trailhound_proto::{Finding, NoveltyKind, Observation, Severity};

use super::{Context, Detector};
use crate::finding::{GuidanceText, ObservationExt, ROTATE_CREDENTIALS, candidate, context_facts};

pub struct UnusualCountryForCommand;

const ID: &str = "TH-003";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "An AWS command, not suspicious in itself, is coming from a country unusual for that command across the organisation: possibly compromised credentials or keys used by a threat actor in another geography.",
    why_it_may_be_fine: "Users travel, teams are distributed, and new offices or contractors start working from new countries.",
    what_to_check: &[
        "The identity and access key that made the call, and whether it should perform this kind of action.",
        "The user agent: what kind of client made the request.",
        "Other alerts for the identity in the past 48 hours.",
        "Whether the source IP looks normal for the user; if it is an EC2 address, whether the instance is yours.",
        "The request parameters: they may show what the program was doing.",
    ],
    how_to_resolve: ROTATE_CREDENTIALS,
};

impl Detector for UnusualCountryForCommand {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Unusual country for an AWS command"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        out.extend(unusual_for_command(
            obs,
            ctx,
            ID,
            NoveltyKind::CommandCountry,
            "Unusual country for an AWS command",
            &GUIDANCE,
        ));
    }
}

/// What TH-003 and TH-004 share: a place (country, or country and city)
/// rare for its command across the organisation, for a command the
/// organisation uses regularly, once the account is active.
pub(super) fn unusual_for_command(
    obs: &Observation,
    ctx: &Context<'_>,
    id: &str,
    kind: NoveltyKind,
    title: &str,
    guidance: &GuidanceText,
) -> Option<Finding> {
    let n = obs.novelty(kind)?;
    let rare = n.is_new || n.days_seen < ctx.config.rare_command_country_days;
    if !rare || obs.command_events_in_window < ctx.config.min_command_events || !ctx.active(id, obs)
    {
        return None;
    }
    let value = obs.value(n);
    let mut f = candidate(obs, id, title, Severity::Low, value.clone(), guidance);
    f.first_event_only = n.is_new;
    // "eventSource:eventName|country[|city]": the place reads city first.
    let (command, place) = value.split_once('|').unwrap_or((&value, ""));
    let place: Vec<&str> = place.rsplit('|').collect();
    f.baseline_facts.push(format!(
        "{command} called {} times across the organisation in the window; from {} on {} days",
        obs.command_events_in_window,
        place.join(", "),
        n.days_seen
    ));
    f.baseline_facts
        .extend(context_facts(obs, ctx.window_days()));
    Some(f)
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::{ComputeKind, PrincipalKind, Severity};

    #[test]
    fn fires_for_a_country_never_seen_for_a_regular_command() {
        let mut h = Harness::new(config());
        h.history(12, |d| {
            (0..2)
                .map(|i| ev(d, "DescribeInstances").at_ms(i))
                .collect()
        });
        let f = h.run(
            ev(12, "DescribeInstances").from("BR", "Manaus", 28210, "Example BR"),
            "TH-003",
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity(), Severity::Low);
        assert_eq!(f[0].key, "ec2.amazonaws.com:DescribeInstances|BR");
        // Organisation-wide: another principal from Brazil is unusual too
        // within the reorder window of the first sighting (whichever of the
        // two arrives first), and no longer after it.
        let from_brazil = |name: &str, offset_ms: i64| {
            ev(12, "DescribeInstances")
                .at_ms(offset_ms)
                .from("BR", "Manaus", 28210, "Example BR")
                .principal(
                    &format!("arn:aws:iam::111122223333:user/{name}"),
                    PrincipalKind::IamUser,
                    "",
                    ComputeKind::None,
                )
        };
        assert_eq!(h.run(from_brazil("carol", 60_000), "TH-003").len(), 1);
        assert!(h.run(from_brazil("bob", 16 * 60_000), "TH-003").is_empty());
    }

    #[test]
    fn silent_for_rare_commands_before_activation_and_without_location() {
        let mut h = Harness::new(config());
        h.history(12, |d| vec![ev(d, "DescribeInstances")]);
        assert!(
            h.run(ev(12, "DeleteVpc").from("BR", "Manaus", 1, "x"), "TH-003")
                .is_empty(),
            "command too rare"
        );
        assert!(
            h.run(
                ev(12, "DescribeInstances").not_located("AWS Internal"),
                "TH-003"
            )
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
                    ev(3, "DescribeInstances").from("BR", "Manaus", 1, "x"),
                    "TH-003"
                )
                .is_empty()
        );
    }
}
