//! TH-002 Compute-attached identity used outside its region (seed 001,
//! Cortex XDR): an EC2 instance's or Lambda function's role credentials
//! call a regional service in a region other than the compute's home.
//! Severity rises when the network is unusual for the identity: ASN (low),
//! geolocation (medium), both (high); an informational "failed" variation
//! when every such call errored. Dedup 5 days (config).

use trailhound_proto::{ComputeKind, Finding, NoveltyKind, Observation, Severity};

use super::{Context, Detector};
use crate::finding::{GuidanceText, ObservationExt, candidate, context_facts};

pub struct ComputeOutsideRegion;

const ID: &str = "TH-002";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "Credentials delivered to an instance or function are used outside the compute's region: attackers exfiltrate such tokens and abuse them remotely.",
    why_it_may_be_fine: "Some workloads deliberately call services in other regions (replication, central logging, multi-region deployments).",
    what_to_check: &[
        "Whether the compute-attached identity's credentials were intentionally used remotely.",
        "Which API calls were executed with the instance's or function's role.",
        "Whether the instance or function is compromised (metadata service access, SSRF, leaked environment).",
    ],
    how_to_resolve: &[
        "Revoke the role's active sessions (an inline deny on aws:TokenIssueTime) and rotate what it can reach.",
        "Enforce IMDSv2 and restrict the role with aws:EC2InstanceSourceVPC / aws:SourceVpc conditions.",
        "Investigate and rebuild the compromised instance or function.",
    ],
};

impl Detector for ComputeOutsideRegion {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Compute-attached identity used outside its region"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(home) = &obs.compute_home else {
            return;
        };
        let e = obs.enriched();
        let region = &obs.event().aws_region;
        if e.global_service
            || region.is_empty()
            || *region == home.home_region
            || !ctx.learned(ID, obs)
        {
            return;
        }
        let compute = if home.compute == ComputeKind::Lambda as i32 {
            "Lambda function's"
        } else {
            "instance's"
        };
        // "Unusual" = not seen on any earlier day of the window.
        let unusual = |kind| obs.located() && obs.novelty(kind).is_some_and(|n| n.days_seen == 0);
        let (unusual_asn, unusual_geo) = (unusual(NoveltyKind::Aso), unusual(NoveltyKind::Country));
        let (severity, title) = if e.failed {
            (
                Severity::Informational,
                format!(
                    "A compute-attached identity failed to execute API calls outside the {compute} region"
                ),
            )
        } else {
            let (severity, from) = match (unusual_geo, unusual_asn) {
                (true, true) => (Severity::High, " from an unusual geolocation and ASN"),
                (true, false) => (Severity::Medium, " from an unusual geolocation"),
                (false, true) => (Severity::Low, " from an unusual ASN"),
                (false, false) => (Severity::Informational, ""),
            };
            (
                severity,
                format!(
                    "A compute-attached identity executed API calls outside the {compute} region{from}"
                ),
            )
        };
        let session = &obs.principal().session_name;
        let mut f = candidate(
            obs,
            ID,
            title,
            severity,
            format!("{session}|{region}"),
            &GUIDANCE,
        );
        // Successful calls outrank failed ones of the same severity.
        f.rank = severity as u32 * 2 + u32::from(!e.failed);
        f.baseline_facts.push(format!(
            "home region {} (decided by {}); call in {region}",
            home.home_region, home.source
        ));
        if let Some(n) = obs.novelty(NoveltyKind::Aso) {
            f.baseline_facts.push(format!(
                "AS organisation {} seen on {} earlier days of the window",
                obs.value(n),
                n.days_seen
            ));
        }
        if let Some(n) = obs.novelty(NoveltyKind::Country) {
            f.baseline_facts.push(format!(
                "country {} seen on {} earlier days of the window",
                obs.value(n),
                n.days_seen
            ));
        }
        f.baseline_facts
            .extend(context_facts(obs, ctx.window_days()));
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::{ComputeKind, PrincipalKind, Severity};

    const ROLE: &str = "arn:aws:iam::111122223333:role/web";
    const INSTANCE: &str = "i-0123456789abcdef0";

    fn instance(day: i64, name: &str) -> Ev {
        ev(day, name)
            .principal(ROLE, PrincipalKind::Role, INSTANCE, ComputeKind::Ec2)
            .from("IE", "Dublin", 16509, "AMAZON-02")
            .agent("aws-sdk-go/1", "")
    }

    fn trained() -> Harness {
        let mut h = Harness::new(config());
        h.history(12, |d| {
            (0..6)
                .map(|i| instance(d, "DescribeTags").at_ms(i))
                .collect()
        });
        h
    }

    #[test]
    fn tiers_by_unusual_network() {
        let mut h = trained();
        let same_net = h.run(instance(12, "ListBuckets").region("us-west-2"), "TH-002");
        assert_eq!(same_net[0].severity(), Severity::Informational);
        assert!(same_net[0].title.ends_with("outside the instance's region"));
        assert!(
            same_net[0].baseline_facts[0].contains("home region eu-west-1 (decided by session)")
        );

        let asn = h.run(
            instance(12, "ListBuckets").region("us-west-2").from(
                "IE",
                "Dublin",
                5089,
                "Virgin Media",
            ),
            "TH-002",
        );
        assert_eq!(asn[0].severity(), Severity::Low);
        let geo = h.run(
            instance(12, "ListBuckets").region("us-west-2").from(
                "US",
                "Ashburn",
                16509,
                "AMAZON-02",
            ),
            "TH-002",
        );
        assert_eq!(geo[0].severity(), Severity::Medium);
        let both = h.run(
            instance(12, "ListBuckets").region("us-west-2").from(
                "RU",
                "Moscow",
                12389,
                "Rostelecom",
            ),
            "TH-002",
        );
        assert_eq!(both[0].severity(), Severity::High);
        assert!(
            both[0]
                .title
                .ends_with("from an unusual geolocation and ASN")
        );
    }

    #[test]
    fn failed_variation_and_no_finding_at_home_or_for_global_services() {
        let mut h = trained();
        let failed = h.run(
            instance(12, "ListBuckets")
                .region("us-west-2")
                .failed("AccessDenied"),
            "TH-002",
        );
        assert_eq!(failed[0].severity(), Severity::Informational);
        assert!(failed[0].title.contains("failed"));
        assert!(
            failed[0].rank
                < h.run(instance(12, "ListBuckets").region("us-west-2"), "TH-002")[0].rank
        );
        assert!(h.run(instance(12, "DescribeTags"), "TH-002").is_empty());
        assert!(
            h.run(
                instance(12, "GetCallerIdentity")
                    .service("sts.amazonaws.com")
                    .region("us-east-1"),
                "TH-002"
            )
            .is_empty()
        );
    }

    #[test]
    fn inventory_decides_the_home_region_and_training_silences() {
        let mut h = Harness::new(config());
        let launch = ev(0, "RunInstances")
            .region("ap-southeast-2")
            .response(&format!(
                r#"{{"instancesSet":{{"items":[{{"instanceId":"{INSTANCE}"}}]}}}}"#
            ));
        h.observe(launch);
        assert!(
            h.run(instance(1, "DescribeTags").region("us-east-1"), "TH-002")
                .is_empty(),
            "training"
        );
        h.history(12, |d| {
            vec![instance(d, "DescribeTags").region("ap-southeast-2")]
        });
        let f = h.run(instance(12, "DescribeTags"), "TH-002");
        assert!(
            f[0].baseline_facts[0].starts_with("home region ap-southeast-2 (decided by inventory)"),
            "{:?}",
            f[0].baseline_facts
        );
    }

    #[test]
    fn lambda_variation() {
        let mut h = Harness::new(config());
        let lambda = |d| {
            ev(d, "GetObject").service("s3.amazonaws.com").principal(
                ROLE,
                PrincipalKind::Role,
                "resize",
                ComputeKind::Lambda,
            )
        };
        h.history(12, |d| (0..6).map(|i| lambda(d).at_ms(i)).collect());
        let f = h.run(lambda(12).region("eu-central-1"), "TH-002");
        assert!(
            f[0].title.contains("Lambda function's region"),
            "{}",
            f[0].title
        );
        // The function's credentials copied to a CLI: no Lambda user agent,
        // but the session is the function's.
        let copied = ev(12, "ListTables")
            .service("dynamodb.amazonaws.com")
            .principal(ROLE, PrincipalKind::Role, "resize", ComputeKind::None)
            .region("eu-central-1");
        let f = h.run(copied, "TH-002");
        assert!(f[0].title.contains("Lambda function's region"), "{f:?}");
        let other_session = ev(12, "ListTables")
            .principal(ROLE, PrincipalKind::Role, "alice", ComputeKind::None)
            .region("eu-central-1");
        assert!(h.run(other_session, "TH-002").is_empty());
    }
}
