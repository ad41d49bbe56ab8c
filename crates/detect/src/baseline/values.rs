//! The value of each kind of novelty an event has: what the baseline hops
//! record and what a finding names. Observations carry only the kind and
//! what the hops made of it; a detector that reports a value writes it from
//! the event with the same function the hop used, so the two cannot differ.

use std::fmt::Write;

use trailhound_proto::{EnrichedEvent, NoveltyKind};

use super::{located_geo, region_of, request_field};

/// The event's value of `kind`, written into `out` (cleared first); false
/// when the event has none (no location, not an AssumeRole call …).
pub fn write_value(kind: NoveltyKind, e: &EnrichedEvent, out: &mut String) -> bool {
    out.clear();
    let event = e.event.as_ref().expect("enriched events carry their event");
    let command = |out: &mut String| {
        out.push_str(&event.event_source);
        out.push(':');
        out.push_str(&event.event_name);
    };
    match kind {
        NoveltyKind::ServiceRegion => {
            out.push_str(&e.service);
            out.push('|');
            out.push_str(region_of(e));
        }
        NoveltyKind::Country => match located_geo(e) {
            Some(geo) => out.push_str(&geo.country),
            None => return false,
        },
        NoveltyKind::City => match located_geo(e).filter(|g| !g.city.is_empty()) {
            Some(geo) => {
                out.push_str(&geo.country);
                out.push('|');
                out.push_str(&geo.city);
            }
            None => return false,
        },
        NoveltyKind::Aso => match e
            .network
            .as_ref()
            .filter(|n| n.is_network_location && n.asn != 0)
        {
            Some(n) if n.as_org.is_empty() => {
                let _ = write!(out, "AS{}", n.asn);
            }
            Some(n) => out.push_str(&n.as_org),
            None => return false,
        },
        NoveltyKind::UserAgent => match &e.user_agent {
            Some(ua) => out.push_str(&ua.major),
            None => return false,
        },
        NoveltyKind::Command => command(out),
        NoveltyKind::CommandCountry => match located_geo(e) {
            Some(geo) => {
                command(out);
                out.push('|');
                out.push_str(&geo.country);
            }
            None => return false,
        },
        NoveltyKind::CommandCity => match located_geo(e).filter(|g| !g.city.is_empty()) {
            Some(geo) => {
                command(out);
                out.push('|');
                out.push_str(&geo.country);
                out.push('|');
                out.push_str(&geo.city);
            }
            None => return false,
        },
        NoveltyKind::ErrorCode if !event.error_code.is_empty() => out.push_str(&event.error_code),
        NoveltyKind::AssumedRole
            if e.service == "sts" && event.event_name.starts_with("AssumeRole") =>
        {
            match request_field(&event.request_parameters_json, "roleArn") {
                Some(role) => out.push_str(&role),
                None => return false,
            }
        }
        NoveltyKind::S3Bucket
            if e.service == "s3"
                && matches!(event.event_name.as_str(), "GetObject" | "PutObject") =>
        {
            match request_field(&event.request_parameters_json, "bucketName") {
                Some(bucket) => {
                    out.push_str(&event.event_name);
                    out.push('|');
                    out.push_str(&bucket);
                }
                None => return false,
            }
        }
        NoveltyKind::ErrorCode
        | NoveltyKind::AssumedRole
        | NoveltyKind::S3Bucket
        | NoveltyKind::Unknown => return false,
    }
    true
}

/// The event's value of `kind`, empty when it has none.
pub fn value(kind: NoveltyKind, e: &EnrichedEvent) -> String {
    let mut out = String::new();
    write_value(kind, e, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testing::ev;

    fn event() -> EnrichedEvent {
        let mut e = ev(0, "AssumeRole")
            .service("sts.amazonaws.com")
            .from("DE", "Berlin", 3320, "")
            .enriched;
        e.event.as_mut().unwrap().request_parameters_json =
            r#"{"roleArn":"arn:aws:iam::1:role/admin"}"#.into();
        e
    }

    #[test]
    fn every_kind_has_its_documented_value() {
        let e = event();
        let values: Vec<(NoveltyKind, String)> = [
            NoveltyKind::ServiceRegion,
            NoveltyKind::Country,
            NoveltyKind::City,
            NoveltyKind::Aso,
            NoveltyKind::UserAgent,
            NoveltyKind::Command,
            NoveltyKind::CommandCountry,
            NoveltyKind::CommandCity,
            NoveltyKind::AssumedRole,
        ]
        .into_iter()
        .map(|kind| (kind, value(kind, &e)))
        .collect();
        let expected = [
            (NoveltyKind::ServiceRegion, "sts|global"),
            (NoveltyKind::Country, "DE"),
            (NoveltyKind::City, "DE|Berlin"),
            (NoveltyKind::Aso, "AS3320"),
            (NoveltyKind::UserAgent, "aws-cli/2"),
            (NoveltyKind::Command, "sts.amazonaws.com:AssumeRole"),
            (
                NoveltyKind::CommandCountry,
                "sts.amazonaws.com:AssumeRole|DE",
            ),
            (
                NoveltyKind::CommandCity,
                "sts.amazonaws.com:AssumeRole|DE|Berlin",
            ),
            (NoveltyKind::AssumedRole, "arn:aws:iam::1:role/admin"),
        ];
        let expected: Vec<(NoveltyKind, String)> =
            expected.iter().map(|(k, v)| (*k, v.to_string())).collect();
        assert_eq!(values, expected);
    }

    #[test]
    fn an_event_without_a_value_of_a_kind_says_so() {
        let mut e = event();
        let mut out = String::from("left over");
        for kind in [
            NoveltyKind::ErrorCode,
            NoveltyKind::S3Bucket,
            NoveltyKind::Unknown,
        ] {
            assert!(!write_value(kind, &e, &mut out), "{kind:?}");
            assert!(out.is_empty(), "{kind:?}: cleared");
        }
        e.network.as_mut().unwrap().is_network_location = false;
        for kind in [
            NoveltyKind::Country,
            NoveltyKind::City,
            NoveltyKind::Aso,
            NoveltyKind::CommandCountry,
        ] {
            assert!(!write_value(kind, &e, &mut out), "{kind:?}: not located");
        }
        e.event.as_mut().unwrap().error_code = "AccessDenied".into();
        assert_eq!(value(NoveltyKind::ErrorCode, &e), "AccessDenied");
    }
}
