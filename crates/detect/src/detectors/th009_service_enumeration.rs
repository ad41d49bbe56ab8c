//! TH-009 Broad service enumeration (seed 003): a principal touches many
//! more distinct services in a bucket (an hour) than it normally does —
//! the footprint of enumeration tools (Pacu, enumerate-iam, ScoutSuite)
//! run with stolen credentials.

use trailhound_proto::{Finding, Observation, RateKind, Severity};

use super::surge::Surge;
use super::{Context, Detector};
use crate::finding::{GuidanceText, ROTATE_CREDENTIALS, attack};

pub struct ServiceEnumeration;

const ID: &str = "TH-009";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "Touching many services in a short time is how attackers map what stolen credentials can reach; routine workloads use a small, stable set of services.",
    why_it_may_be_fine: "Security scanners, inventory and compliance tools (when run by this identity) and administrators exploring the console.",
    what_to_check: &[
        "Whether the identity is a known scanner or inventory tool, and whether it was scheduled now.",
        "The user agent (enumeration tools often carry their own) and the share of failed calls.",
        "Whether the enumeration was followed by data access, persistence or privilege changes.",
    ],
    how_to_resolve: ROTATE_CREDENTIALS,
};

impl Detector for ServiceEnumeration {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Broad service enumeration"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let surge = Surge {
            id: ID,
            kind: RateKind::Services,
            settings: &ctx.config.service_enumeration,
            title: "Broad service enumeration",
            severity: Severity::Medium,
            unit: "distinct services",
            guidance: &GUIDANCE,
        };
        out.extend(surge.detect(obs, ctx).map(|mut f| {
            f.attack.push(attack("discovery", "T1526"));
            f
        }));
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;

    const SERVICES: [&str; 12] = [
        "ec2",
        "s3",
        "iam",
        "lambda",
        "rds",
        "kms",
        "sns",
        "sqs",
        "dynamodb",
        "ecr",
        "eks",
        "secretsmanager",
    ];

    #[test]
    fn fires_when_many_services_are_touched_in_an_hour() {
        let mut h = Harness::new(config());
        h.history(12, |d| {
            vec![
                ev(d, "DescribeInstances"),
                ev(d, "GetObject").at_ms(1).service("s3.amazonaws.com"),
            ]
        });
        let f: Vec<_> = SERVICES
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                h.run(
                    ev(12, "List")
                        .at_ms(i as i64 * 60_000)
                        .service(&format!("{s}.amazonaws.com")),
                    "TH-009",
                )
            })
            .collect();
        assert_eq!(f.len(), 3, "the 10th, 11th and 12th services");
        assert_eq!(f.last().unwrap().count, 12);
    }

    #[test]
    fn the_same_services_again_are_not_enumeration() {
        let mut h = Harness::new(config());
        h.history(12, |d| {
            SERVICES
                .iter()
                .map(|s| ev(d, "List").service(&format!("{s}.amazonaws.com")))
                .collect()
        });
        let f: Vec<_> = SERVICES
            .iter()
            .flat_map(|s| {
                h.run(
                    ev(12, "List")
                        .at_ms(5)
                        .service(&format!("{s}.amazonaws.com")),
                    "TH-009",
                )
            })
            .collect();
        assert!(f.is_empty());
    }
}
