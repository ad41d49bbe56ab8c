//! Suppression rules: known-good activity an analyst has judged, by
//! detector, account, principal ARN pattern, source CIDR, ASN, user agent
//! pattern, country or region, each with a reason and an optional expiry.
//! A suppressed finding is kept, marked and counted — never dropped.
//!
//! Expiry is compared with the finding's event time, like every window in
//! Trailhound, so replaying logs gives the same answer as live traffic.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use trailhound_proto::Finding;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// `[[alert.suppress]]` rules, checked in order; the first match wins.
    pub suppress: Vec<SuppressionRule>,
}

/// One rule: every field given must match (unset fields match anything).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionRule {
    /// Why this is fine: shown on every finding the rule suppresses.
    pub reason: String,
    pub detector: Option<String>,
    pub account: Option<String>,
    /// Glob over the principal ARN, e.g. `arn:aws:iam::*:role/scanner-*`.
    pub principal: Option<Glob>,
    #[serde(default, deserialize_with = "cidr")]
    pub cidr: Option<IpNet>,
    pub asn: Option<u32>,
    /// Glob over the raw user agent.
    pub user_agent: Option<Glob>,
    pub country: Option<String>,
    pub region: Option<String>,
    /// RFC 3339; findings whose events are later are not suppressed.
    #[serde(default, deserialize_with = "time")]
    pub expires: Option<i64>,
}

impl SuppressionRule {
    pub fn matches(&self, f: &Finding) -> bool {
        let eq = |rule: &Option<String>, value: &str| rule.as_deref().is_none_or(|r| r == value);
        let event_ms = f
            .described
            .as_ref()
            .map_or(f.first_event_ms, |e| e.event_time_ms);
        eq(&self.detector, &f.detector)
            && eq(&self.account, &f.account_id)
            && eq(&self.country, &f.country)
            && eq(&self.region, &f.region)
            && self
                .principal
                .as_ref()
                .is_none_or(|p| p.matches(&f.principal))
            && self
                .user_agent
                .as_ref()
                .is_none_or(|p| p.matches(&f.user_agent))
            && self.asn.is_none_or(|asn| asn == f.asn)
            && self.cidr.is_none_or(|net| {
                f.source_ip
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| net.contains(&ip))
            })
            && self.expires.is_none_or(|end| event_ms < end)
    }
}

/// Mark `f` suppressed (or not) by the first matching rule.
pub fn apply(rules: &[SuppressionRule], f: &mut Finding) {
    match rules.iter().find(|r| r.matches(f)) {
        Some(rule) => {
            f.suppressed = true;
            f.suppression_reason.clone_from(&rule.reason);
        }
        None => {
            f.suppressed = false;
            f.suppression_reason.clear();
        }
    }
}

/// A pattern where `*` matches any run of characters and `?` any one.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Glob(String);

impl Glob {
    pub fn matches(&self, text: &str) -> bool {
        let (p, t): (Vec<char>, Vec<char>) = (self.0.chars().collect(), text.chars().collect());
        // Greedy match with one backtrack point: the last `*` seen.
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
                (pi, ti) = (pi + 1, ti + 1);
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                (pi, ti) = (sp + 1, st + 1);
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

fn cidr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpNet>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("not a CIDR or address: {text:?}")))
}

fn time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let text = String::deserialize(d)?;
    chrono::DateTime::parse_from_rfc3339(&text)
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|e| serde::de::Error::custom(format!("expires {text:?} is not RFC 3339: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml: &str) -> Vec<SuppressionRule> {
        toml::from_str::<AlertConfig>(toml).unwrap().suppress
    }

    fn finding() -> Finding {
        Finding {
            detector: "TH-015".into(),
            account_id: "111122223333".into(),
            principal: "arn:aws:iam::111122223333:role/scanner-prod".into(),
            source_ip: "203.0.113.7".into(),
            asn: 64500,
            country: "DE".into(),
            region: "eu-west-1".into(),
            user_agent: "aws-cli/2.15.0".into(),
            first_event_ms: 1_700_000_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn every_given_field_must_match() {
        let r = rules(
            r#"[[suppress]]
reason = "the security scanner runs from the office"
detector = "TH-015"
principal = "arn:aws:iam::*:role/scanner-*"
cidr = "203.0.113.0/24"
asn = 64500
user_agent = "aws-cli/*"
country = "DE"
region = "eu-west-1"
account = "111122223333""#,
        );
        let mut f = finding();
        apply(&r, &mut f);
        assert!(f.suppressed);
        assert_eq!(
            f.suppression_reason,
            "the security scanner runs from the office"
        );
        for change in [
            |f: &mut Finding| f.detector = "TH-016".into(),
            |f: &mut Finding| f.principal = "arn:aws:iam::1:user/alice".into(),
            |f: &mut Finding| f.source_ip = "198.51.100.1".into(),
            |f: &mut Finding| f.asn = 1,
            |f: &mut Finding| f.user_agent = "Boto3/1.34".into(),
            |f: &mut Finding| f.country = "FR".into(),
        ] {
            let mut other = finding();
            change(&mut other);
            apply(&r, &mut other);
            assert!(!other.suppressed, "{other:?}");
        }
    }

    #[test]
    fn globs() {
        let g = |p: &str| Glob(p.into());
        assert!(g("arn:aws:iam::*:role/scanner-*").matches("arn:aws:iam::1:role/scanner-prod"));
        assert!(g("aws-cli/2.1?.*").matches("aws-cli/2.15.0 Python/3.11"));
        assert!(g("*").matches("") && g("a*b*c").matches("aXbYbc"));
        assert!(!g("arn:*:role/admin").matches("arn:aws:iam::1:role/admin2"));
        assert!(!g("a?c").matches("ac"));
    }

    #[test]
    fn expiry_is_by_event_time() {
        let r = rules(
            "[[suppress]]\nreason = \"migration\"\ndetector = \"TH-015\"\nexpires = \"2023-11-15T00:00:00Z\"",
        );
        let mut before = finding();
        apply(&r, &mut before);
        assert!(before.suppressed, "2023-11-14 is before the expiry");
        let mut after = Finding {
            first_event_ms: 1_800_000_000_000,
            ..finding()
        };
        apply(&r, &mut after);
        assert!(!after.suppressed);
    }

    #[test]
    fn bad_rules_are_config_errors_naming_the_value() {
        let err =
            toml::from_str::<AlertConfig>("[[suppress]]\nreason = \"x\"\ncidr = \"10.0.0.0/33\"")
                .unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/33"), "{err}");
        let err = toml::from_str::<AlertConfig>("[[suppress]]\ndetector = \"TH-001\"").unwrap_err();
        assert!(err.to_string().contains("reason"), "{err}");
    }
}
