//! TH-014 Security group opened (seed 003): AuthorizeSecurityGroupIngress
//! to the whole internet (a /0 range) is medium, and high for all traffic
//! or an administrative port; a narrower ingress rule, or a
//! RevokeSecurityGroupEgress, is medium when the principal never made
//! such a call in the window.

use serde_json::Value;
use trailhound_proto::{Finding, NoveltyKind, Observation, Severity};

use super::{Context, Detector};
use crate::finding::{GuidanceText, ObservationExt, attack, candidate, context_facts};

pub struct SecurityGroupOpened;

const ID: &str = "TH-014";

/// SSH, telnet, SMB, RDP, VNC, databases, Docker, Elasticsearch, Redis.
const ADMIN_PORTS: &[i64] = &[
    22, 23, 445, 1433, 2375, 2376, 3306, 3389, 5432, 5900, 6379, 9200, 27017,
];

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "Opening a security group to the internet exposes instances and databases directly; attackers do it to reach a host they control or to exfiltrate data, and removing egress rules can cut off monitoring.",
    why_it_may_be_fine: "Public web servers need ports 80 and 443 open; engineers sometimes open a port briefly for debugging.",
    what_to_check: &[
        "Which group and which resources use it; which ports and ranges were opened.",
        "Whether a change request covers it, and whether the caller usually manages network rules.",
        "Connections to the exposed resources since the change.",
    ],
    how_to_resolve: &[
        "Revoke the rule if it was not intended, and restrict administrative ports to known ranges or use Session Manager.",
        "Rotate the caller's credentials if the change was not planned.",
    ],
};

impl Detector for SecurityGroupOpened {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Security group opened"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let event = obs.event();
        let name = event.event_name.as_str();
        if obs.enriched().service != "ec2"
            || !matches!(
                name,
                "AuthorizeSecurityGroupIngress" | "RevokeSecurityGroupEgress"
            )
            || obs.enriched().failed
        {
            return;
        }
        let params: Value =
            serde_json::from_str(&event.request_parameters_json).unwrap_or(Value::Null);
        let group = params
            .get("groupId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let unusual = obs
            .novelty(NoveltyKind::Command)
            .is_some_and(|n| n.is_new && ctx.learned(ID, obs));
        let rules = if name == "AuthorizeSecurityGroupIngress" {
            ingress_rules(&params)
        } else {
            Vec::new()
        };
        let world: Vec<&Rule> = rules.iter().filter(|r| r.world).collect();
        let admin = world
            .iter()
            .find(|r| r.all_traffic() || ADMIN_PORTS.iter().any(|p| r.covers(*p)));
        let (severity, title) = match (name, admin, world.is_empty(), unusual) {
            (_, Some(_), _, _) => (
                Severity::High,
                "Security group opened to the internet on an administrative port",
            ),
            ("AuthorizeSecurityGroupIngress", None, false, _) => {
                (Severity::Medium, "Security group opened to the internet")
            }
            ("AuthorizeSecurityGroupIngress", None, true, true) => {
                (Severity::Medium, "Unusual security group ingress change")
            }
            ("RevokeSecurityGroupEgress", _, _, true) => {
                (Severity::Medium, "Unusual security group egress removal")
            }
            _ => return,
        };
        let mut f = candidate(
            obs,
            ID,
            title,
            severity,
            format!("{name}|{group}"),
            &GUIDANCE,
        );
        f.attack.push(attack("defense-evasion", "T1562.007"));
        for r in &rules {
            f.baseline_facts.push(format!(
                "{group}: {} ports {} from {}",
                r.protocol,
                r.ports(),
                r.cidr
            ));
        }
        if unusual {
            f.baseline_facts.push(format!(
                "{name} not called by this principal in the previous {} days",
                ctx.window_days()
            ));
        }
        f.baseline_facts
            .extend(context_facts(obs, ctx.window_days()));
        out.push(f);
    }
}

struct Rule {
    protocol: String,
    from: i64,
    to: i64,
    cidr: String,
    world: bool,
}

impl Rule {
    fn all_traffic(&self) -> bool {
        self.protocol == "-1" || (self.from <= 0 && self.to >= 65535) || self.to < 0
    }
    fn covers(&self, port: i64) -> bool {
        self.from <= port && port <= self.to
    }
    fn ports(&self) -> String {
        if self.all_traffic() {
            "all".into()
        } else if self.from == self.to {
            self.from.to_string()
        } else {
            format!("{}-{}", self.from, self.to)
        }
    }
}

/// The rules of an ingress call, in both request shapes: `ipPermissions`
/// items, or the flat `cidrIp`/`fromPort`/`toPort` form.
fn ingress_rules(params: &Value) -> Vec<Rule> {
    let int = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(-1);
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let rule = |v: &Value, cidr: String| Rule {
        protocol: text(v, "ipProtocol"),
        from: int(v, "fromPort"),
        to: int(v, "toPort"),
        world: cidr.ends_with("/0"),
        cidr,
    };
    let mut rules = Vec::new();
    for key in ["cidrIp", "cidrIpv6"] {
        if let Some(cidr) = params.get(key).and_then(Value::as_str) {
            rules.push(rule(params, cidr.to_string()));
        }
    }
    let items = params
        .pointer("/ipPermissions/items")
        .and_then(Value::as_array);
    for p in items.into_iter().flatten() {
        for (ranges, key) in [
            ("/ipRanges/items", "cidrIp"),
            ("/ipv6Ranges/items", "cidrIpv6"),
        ] {
            for r in p
                .pointer(ranges)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                rules.push(rule(p, text(r, key)));
            }
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::Severity;

    fn ingress(day: i64, params: &str) -> Ev {
        let mut e = ev(day, "AuthorizeSecurityGroupIngress");
        e.enriched.event.as_mut().unwrap().request_parameters_json = params.into();
        e
    }

    const SSH_WORLD: &str = r#"{"groupId":"sg-1","ipPermissions":{"items":[{"ipProtocol":"tcp","fromPort":22,"toPort":22,"ipRanges":{"items":[{"cidrIp":"0.0.0.0/0"}]}}]}}"#;
    const HTTPS_WORLD_V6: &str = r#"{"groupId":"sg-1","ipPermissions":{"items":[{"ipProtocol":"tcp","fromPort":443,"toPort":443,"ipv6Ranges":{"items":[{"cidrIpv6":"::/0"}]}}]}}"#;
    const FLAT_SSH: &str = r#"{"cidrIp":"208.236.235.254/0","fromPort":22,"groupId":"sg-2","ipPermissions":{},"ipProtocol":"tcp","toPort":22}"#;
    const OFFICE: &str = r#"{"groupId":"sg-1","ipPermissions":{"items":[{"ipProtocol":"tcp","fromPort":22,"toPort":22,"ipRanges":{"items":[{"cidrIp":"203.0.113.0/24"}]}}]}}"#;

    #[test]
    fn world_open_admin_ports_are_high_other_world_rules_medium() {
        let mut h = Harness::new(config());
        let ssh = h.run(ingress(0, SSH_WORLD), "TH-014");
        assert_eq!(ssh[0].severity(), Severity::High);
        assert!(
            ssh[0].baseline_facts[0].contains("tcp ports 22 from 0.0.0.0/0"),
            "{:?}",
            ssh[0].baseline_facts
        );
        assert_eq!(
            h.run(ingress(0, FLAT_SSH), "TH-014")[0].severity(),
            Severity::High,
            "flat request shape"
        );
        assert_eq!(
            h.run(ingress(0, HTTPS_WORLD_V6), "TH-014")[0].severity(),
            Severity::Medium
        );
    }

    #[test]
    fn narrow_rules_only_when_unusual_for_the_principal() {
        let mut h = Harness::new(config());
        h.history(12, |d| vec![ev(d, "DescribeInstances")]);
        let first = h.run(ingress(12, OFFICE), "TH-014");
        assert_eq!(first[0].title, "Unusual security group ingress change");
        assert!(
            h.run(ingress(12, OFFICE).at_ms(5), "TH-014").is_empty(),
            "routine now"
        );
        assert!(
            h.run(
                ingress(12, SSH_WORLD)
                    .at_ms(6)
                    .failed("UnauthorizedOperation"),
                "TH-014"
            )
            .is_empty()
        );
    }
}
