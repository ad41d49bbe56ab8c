//! TH-013 Unusual S3 bucket access (seed 003), three variations:
//! ListBuckets by a principal that never lists buckets (low); the first
//! GetObject or PutObject of a principal on a bucket (low); and a GetObject
//! volume far above the principal's normal — exfiltration (high). Object
//! calls are CloudTrail data events: they appear when the trail logs them.

use trailhound_proto::{Finding, NoveltyKind, Observation, RateKind, Severity};

use super::surge::Surge;
use super::{Context, Detector, novelty_finding};
use crate::finding::{GuidanceText, ObservationExt, ROTATE_CREDENTIALS, attack};

pub struct UnusualS3Access;

const ID: &str = "TH-013";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "Data in S3 is what many attackers are after: listing every bucket, reading a bucket the identity never reads, or downloading far more objects than usual are the steps of discovery and exfiltration.",
    why_it_may_be_fine: "New applications, data migrations, backups and analytics jobs read new buckets or many objects.",
    what_to_check: &[
        "Which bucket and objects were read or written, and how sensitive they are.",
        "Whether the identity's owner expects this access, and from this network and user agent.",
        "Whether the objects were read from outside the organisation's networks.",
    ],
    how_to_resolve: ROTATE_CREDENTIALS,
};

impl Detector for UnusualS3Access {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Unusual S3 bucket access"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        if obs.enriched().service != "s3" {
            return;
        }
        let surge = Surge {
            id: ID,
            kind: RateKind::S3GetObject,
            settings: &ctx.config.s3_get_object_surge,
            title: "S3 GetObject volume far above normal",
            severity: Severity::High,
            unit: "GetObject calls",
            guidance: &GUIDANCE,
        };
        if let Some(mut f) = surge.detect(obs, ctx) {
            f.key = "GetObject volume".into();
            f.attack.push(attack("exfiltration", "T1530"));
            out.push(f);
        }
        if obs.enriched().failed || !ctx.learned(ID, obs) {
            return;
        }
        let event = obs.event();
        let novelty = if event.event_name == "ListBuckets" {
            obs.novelty(NoveltyKind::Command).map(|n| {
                (
                    n,
                    "ListBuckets by a principal that never lists buckets",
                    "command",
                )
            })
        } else {
            obs.novelty(NoveltyKind::S3Bucket).map(|n| {
                (
                    n,
                    "First object access to an S3 bucket by this principal",
                    "object access",
                )
            })
        };
        if let Some((n, title, what)) = novelty.filter(|(n, _, _)| n.is_new) {
            out.push(novelty_finding(
                obs,
                ctx,
                ID,
                (Severity::Low, title.to_string()),
                what,
                n,
                &GUIDANCE,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::Severity;

    fn s3(day: i64, name: &str, bucket: &str) -> Ev {
        let mut e = ev(day, name).service("s3.amazonaws.com");
        e.enriched.event.as_mut().unwrap().request_parameters_json =
            format!(r#"{{"bucketName":"{bucket}","key":"k"}}"#);
        e
    }

    #[test]
    fn first_listing_and_first_object_access_per_bucket() {
        let mut h = Harness::new(config());
        h.history(12, |d| vec![s3(d, "GetObject", "app-assets")]);
        assert!(
            h.run(s3(12, "GetObject", "app-assets").at_ms(1), "TH-013")
                .is_empty()
        );
        let new_bucket = h.run(s3(12, "GetObject", "payroll").at_ms(2), "TH-013");
        assert_eq!(
            (new_bucket[0].severity(), new_bucket[0].key.as_str()),
            (Severity::Low, "GetObject|payroll")
        );
        let list = h.run(s3(12, "ListBuckets", "").at_ms(3), "TH-013");
        assert_eq!(
            list[0].title,
            "ListBuckets by a principal that never lists buckets"
        );
        assert!(
            h.run(s3(12, "ListBuckets", "").at_ms(4), "TH-013")
                .is_empty()
        );
    }

    #[test]
    fn a_get_object_volume_surge_is_exfiltration() {
        let mut h = Harness::new(config());
        h.history(12, |d| {
            (0..10)
                .map(|i| s3(d, "GetObject", "app-assets").at_ms(i))
                .collect()
        });
        let f: Vec<_> = (0..150)
            .flat_map(|i| {
                h.run(
                    s3(12, "GetObject", "app-assets").at_ms(7_200_000 + i * 100),
                    "TH-013",
                )
            })
            .collect();
        let last = f.last().unwrap();
        assert_eq!(
            (last.severity(), last.count, last.key.as_str()),
            (Severity::High, 150, "GetObject volume")
        );
    }
}
