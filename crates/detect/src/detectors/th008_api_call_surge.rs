//! TH-008 Surge in API calls (seed 003): a principal's calls in a bucket (5
//! minutes) far above its own normal — the median of its busiest bucket per
//! day, with a robust spread — and above a minimum absolute count.

use trailhound_proto::{Finding, Observation, RateKind, Severity};

use super::surge::Surge;
use super::{Context, Detector};
use crate::finding::{GuidanceText, ROTATE_CREDENTIALS};

pub struct ApiCallSurge;

const ID: &str = "TH-008";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "A sudden surge of API calls by one identity is typical of automated discovery, mass data retrieval (secrets, parameters, passwords) or resource abuse with stolen credentials.",
    why_it_may_be_fine: "Batch jobs, migrations, incident response scripts, or infrastructure-as-code applying a large change.",
    what_to_check: &[
        "Which APIs make up the surge, and whether they read secrets, credentials or data.",
        "The user agent and source IP of the surge compared with the identity's usual ones.",
        "Whether a planned job or deployment ran at that time.",
    ],
    how_to_resolve: ROTATE_CREDENTIALS,
};

impl Detector for ApiCallSurge {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Surge in API calls"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let surge = Surge {
            id: ID,
            kind: RateKind::ApiCalls,
            settings: &ctx.config.api_call_surge,
            title: "Surge in API calls",
            severity: Severity::Medium,
            unit: "API calls",
            guidance: &GUIDANCE,
        };
        out.extend(surge.detect(obs, ctx));
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::Severity;

    fn burst(h: &mut Harness, day: i64, n: i64) -> Vec<trailhound_proto::Finding> {
        (0..n)
            .flat_map(|i| {
                h.run(
                    ev(day, "GetSecretValue").at_ms(3_600_000 + i * 1_000),
                    "TH-008",
                )
            })
            .collect()
    }

    #[test]
    fn fires_far_above_the_normal_with_the_bucket_as_evidence() {
        let mut h = Harness::new(config());
        h.history(12, |d| {
            (0..5)
                .map(|i| ev(d, "DescribeInstances").at_ms(i))
                .collect()
        });
        let f = burst(&mut h, 12, 40);
        assert_eq!(f.len(), 40 - 19, "every call from the 20th on");
        let last = f.last().unwrap();
        assert_eq!(
            (last.severity(), last.count, last.count_is_peak),
            (Severity::Medium, 40, true)
        );
        assert_eq!(last.evidence.len(), 20);
        assert!(
            last.baseline_facts[0].starts_with("40 API calls in the 5m"),
            "{:?}",
            last.baseline_facts
        );
    }

    #[test]
    fn described_by_the_buckets_earliest_call_whatever_crossed_the_threshold() {
        // 25 calls in one bucket; the earliest comes from Russia in another
        // region, the rest from the principal's usual place.
        let calls: Vec<Ev> = (0..25)
            .map(|i| {
                let call = ev(12, "GetSecretValue")
                    .id(&format!("call-{i:02}"))
                    .at_ms(3_600_000 + i * 1_000);
                if i == 0 {
                    call.region("us-west-2")
                        .from("RU", "St Petersburg", 198610, "Beget LLC")
                } else {
                    call
                }
            })
            .collect();
        let last_candidate = |order: Vec<Ev>| {
            let mut h = Harness::new(config());
            h.history(12, |d| {
                (0..5)
                    .map(|i| ev(d, "DescribeInstances").at_ms(i))
                    .collect()
            });
            order
                .into_iter()
                .flat_map(|e| h.run(e, "TH-008"))
                .last()
                .unwrap()
        };
        let in_order = last_candidate(calls.clone());
        // The earliest call arrives last, after the bucket crossed the threshold.
        let mut late_first = calls[1..].to_vec();
        late_first.push(calls[0].clone());
        let reordered = last_candidate(late_first);
        for f in [&in_order, &reordered] {
            assert_eq!(
                (f.region.as_str(), f.country.as_str(), f.as_org.as_str()),
                ("us-west-2", "RU", "Beget LLC")
            );
            assert_eq!(f.evidence[0].event_id, "call-00");
            assert!(
                f.baseline_facts
                    .contains(&"1 known countries: DE".to_string()),
                "the context at the earliest call: {:?}",
                f.baseline_facts
            );
        }
        assert_eq!(
            (
                &in_order.baseline_facts,
                &in_order.attack,
                &in_order.user_agent
            ),
            (
                &reordered.baseline_facts,
                &reordered.attack,
                &reordered.user_agent
            )
        );
    }

    #[test]
    fn silent_below_the_minimum_and_for_busy_principals() {
        let mut h = Harness::new(config());
        h.history(12, |d| {
            (0..5)
                .map(|i| ev(d, "DescribeInstances").at_ms(i))
                .collect()
        });
        assert!(burst(&mut h, 12, 19).is_empty());
        let mut busy = Harness::new(config());
        busy.history(12, |d| {
            (0..30)
                .map(|i| ev(d, "DescribeInstances").at_ms(i))
                .collect()
        });
        assert!(
            burst(&mut busy, 12, 60).is_empty(),
            "twice its normal is not a surge"
        );
        let mut untrained = Harness::new(config());
        untrained.history(3, |d| vec![ev(d, "DescribeInstances")]);
        assert!(burst(&mut untrained, 3, 40).is_empty());
    }
}
