//! Findings as the outside world reads them: Trailhound's own JSON, a Slack
//! message, and an OCSF Detection Finding (class 2004) for security lakes.

use serde_json::{Value, json};
use trailhound_proto::{Finding, Severity};

/// OCSF schema version the Detection Finding output follows.
pub const OCSF_VERSION: &str = "1.5.0";

/// RFC 3339 UTC (milliseconds only when there are any).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    )
}

/// The native JSON form: DETECTIONS.md's fields, times in RFC 3339.
pub fn native(f: &Finding) -> Value {
    let guidance = f.guidance.clone().unwrap_or_default();
    json!({
        "id": f.id,
        "detector": f.detector,
        "title": f.title,
        "severity": f.severity().label(),
        "account_id": f.account_id,
        "principal": f.principal,
        "region": f.region,
        "key": f.key,
        "first_event_time": rfc3339(f.first_event_ms),
        "last_event_time": rfc3339(f.last_event_ms),
        "count": f.count,
        "evidence_event_ids": f.evidence.iter().map(|e| &e.event_id).collect::<Vec<_>>(),
        "baseline_facts": f.baseline_facts,
        "attack": f.attack.iter().map(|a| json!({"tactic": a.tactic, "technique": a.technique})).collect::<Vec<_>>(),
        "source_ip": f.source_ip,
        "country": f.country,
        "as_org": f.as_org,
        "asn": f.asn,
        "user_agent": f.user_agent,
        "suppressed": f.suppressed,
        "suppression_reason": f.suppression_reason,
        "guidance": {
            "why_it_matters": guidance.why_it_matters,
            "why_it_may_be_fine": guidance.why_it_may_be_fine,
            "what_to_check": guidance.what_to_check,
            "how_to_resolve": guidance.how_to_resolve,
        },
    })
}

/// A Slack incoming-webhook message (mrkdwn text and one section block).
pub fn slack(f: &Finding) -> Value {
    let mut text = format!(
        "*{}* {} — {}\n*who:* `{}` (account {})\n*when:* {} → {}, {} event(s), {}",
        f.severity().label().to_uppercase(),
        f.detector,
        f.title,
        f.principal,
        f.account_id,
        rfc3339(f.first_event_ms),
        rfc3339(f.last_event_ms),
        f.count,
        f.region,
    );
    if !f.source_ip.is_empty() {
        text.push_str(&format!(
            "\n*from:* {} {} {}",
            f.source_ip, f.country, f.as_org
        ));
    }
    for fact in f.baseline_facts.iter().take(4) {
        text.push_str(&format!("\n• {fact}"));
    }
    json!({
        "text": format!("{} {}: {}", f.severity().label().to_uppercase(), f.detector, f.title),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    })
}

/// OCSF severity_id: Informational 1 … Critical 5 (0 unknown).
fn ocsf_severity(f: &Finding) -> (i64, &'static str) {
    match f.severity() {
        Severity::Unspecified => (0, "Unknown"),
        Severity::Informational => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// An OCSF Detection Finding (class 2004, cloud and security-control
/// profiles): activity Create for a new finding, Update for a merge.
pub fn ocsf(f: &Finding, is_new: bool) -> Value {
    let (activity_id, activity) = if is_new { (1, "Create") } else { (2, "Update") };
    let (severity_id, severity_name) = ocsf_severity(f);
    let guidance = f.guidance.clone().unwrap_or_default();
    let attacks: Vec<Value> = f
        .attack
        .iter()
        .map(|a| json!({"tactic": {"name": a.tactic}, "technique": {"uid": a.technique}}))
        .collect();
    let mut finding = json!({
        "activity_id": activity_id,
        "activity_name": activity,
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 2004 * 100 + activity_id,
        "type_name": format!("Detection Finding: {activity}"),
        "severity_id": severity_id,
        "severity": severity_name,
        "status_id": if f.suppressed { 3 } else { 1 },
        "status": if f.suppressed { "Suppressed" } else { "New" },
        "time": f.last_event_ms,
        "start_time": f.first_event_ms,
        "end_time": f.last_event_ms,
        "count": f.count,
        "message": f.title,
        "is_alert": !f.suppressed,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "Trailhound", "vendor_name": "Trailhound", "version": env!("CARGO_PKG_VERSION")},
            "profiles": ["cloud", "security_control"],
            "uid": f.id,
        },
        "finding_info": {
            "uid": f.id,
            "title": f.title,
            "desc": f.baseline_facts.join("; "),
            "types": [f.detector],
            "first_seen_time": f.first_event_ms,
            "last_seen_time": f.last_event_ms,
            "analytic": {"uid": f.detector, "name": f.title, "type_id": 1, "type": "Rule"},
            "attacks": attacks,
            "related_events_count": f.evidence.len(),
        },
        "cloud": {"provider": "AWS", "region": f.region, "account": {"uid": f.account_id, "type_id": 10, "type": "AWS Account"}},
        "actor": {"user": {"uid": f.principal, "account": {"uid": f.account_id, "type_id": 10, "type": "AWS Account"}}},
        "remediation": {"desc": guidance.how_to_resolve.join(" ")},
        "unmapped": {
            "key": f.key,
            "suppression_reason": f.suppression_reason,
        },
    });
    // The CloudTrail events are the evidence; the described one carries
    // where the call came from.
    let described = f.described.as_ref().map(|e| e.event_id.as_str());
    let evidences: Vec<Value> = f
        .evidence
        .iter()
        .map(|e| {
            let mut evidence = json!({"uid": e.event_id, "name": "CloudTrail event"});
            if Some(e.event_id.as_str()) == described && !f.source_ip.is_empty() {
                let mut endpoint = json!({"ip": f.source_ip});
                if !f.country.is_empty() {
                    endpoint["location"] = json!({"country": f.country});
                }
                if f.asn != 0 {
                    endpoint["autonomous_system"] = json!({"number": f.asn, "name": f.as_org});
                }
                evidence["src_endpoint"] = endpoint;
            }
            evidence
        })
        .collect();
    finding["evidences"] = json!(evidences);
    finding
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;
    use trailhound_proto::{Attack, EvidenceEvent, Guidance};

    fn finding() -> Finding {
        Finding {
            id: "f1".into(),
            detector: "TH-021".into(),
            title: "EC2 instance credentials used outside AWS".into(),
            severity: Severity::High as i32,
            account_id: "111122223333".into(),
            principal: "arn:aws:iam::111122223333:role/web".into(),
            region: "us-east-1".into(),
            first_event_ms: 1_700_000_000_000,
            last_event_ms: 1_700_000_060_000,
            count: 2,
            evidence: vec![EvidenceEvent {
                event_id: "e1".into(),
                event_time_ms: 1_700_000_000_000,
            }],
            described: Some(EvidenceEvent {
                event_id: "e1".into(),
                event_time_ms: 1_700_000_000_000,
            }),
            baseline_facts: vec!["session i-1 called from 45.146.164.10".into()],
            attack: vec![Attack {
                tactic: "credential-access".into(),
                technique: "T1552.005".into(),
            }],
            guidance: Some(Guidance {
                how_to_resolve: vec!["Revoke the sessions.".into()],
                ..Default::default()
            }),
            source_ip: "45.146.164.10".into(),
            country: "RU".into(),
            as_org: "Beget LLC".into(),
            asn: 198610,
            ..Default::default()
        }
    }

    /// The OCSF subset of crates/alert/data (scripts/derive-ocsf-subset).
    fn schema() -> Value {
        serde_json::from_str(include_str!("../data/ocsf-detection-finding.json")).unwrap()
    }

    /// Every attribute is defined for its object, required ones are present
    /// (profile attributes only for applied profiles), enums hold.
    fn validate(
        value: &Map<String, Value>,
        defs: &Value,
        schema: &Value,
        profiles: &[&str],
        path: &str,
        errors: &mut Vec<String>,
    ) {
        let defs = defs.as_object().unwrap();
        for (name, def) in defs {
            let applies = def
                .get("profile")
                .and_then(Value::as_str)
                .is_none_or(|p| profiles.contains(&p));
            if def["requirement"] == "required" && applies && !value.contains_key(name) {
                errors.push(format!("{path}.{name} is required"));
            }
        }
        for (name, v) in value {
            if path.is_empty() && name == "unmapped" {
                continue;
            }
            let Some(def) = defs.get(name) else {
                errors.push(format!("{path}.{name} is not an attribute of this object"));
                continue;
            };
            if let Some(allowed) = def.get("enum").and_then(Value::as_array)
                && !allowed.contains(v)
            {
                errors.push(format!("{path}.{name} = {v} is not in its enum"));
            }
            let ty = def["type"].as_str().unwrap_or("");
            let items: Vec<&Value> = match v {
                Value::Array(a) if def["is_array"] == true => a.iter().collect(),
                Value::Array(_) => {
                    errors.push(format!("{path}.{name} is not an array"));
                    continue;
                }
                other => vec![other],
            };
            for item in items {
                match (item, schema["objects"].get(ty)) {
                    (Value::Object(o), Some(obj)) => {
                        validate(o, obj, schema, profiles, &format!("{path}.{name}"), errors)
                    }
                    (Value::Object(_), None) => errors.push(format!(
                        "{path}.{name}: object type {ty} is not in the subset"
                    )),
                    (_, Some(_)) => errors.push(format!("{path}.{name} must be an object")),
                    (Value::String(_), None)
                        if ty == "string_t"
                            || ty.ends_with("_t")
                                && !ty.starts_with("integer")
                                && !ty.starts_with("long")
                                && ty != "boolean_t"
                                && ty != "timestamp_t" => {}
                    (Value::Number(_), None)
                        if matches!(
                            ty,
                            "integer_t" | "long_t" | "timestamp_t" | "port_t" | "float_t"
                        ) => {}
                    (Value::Bool(_), None) if ty == "boolean_t" => {}
                    (other, None) => {
                        errors.push(format!("{path}.{name} = {other} does not fit type {ty}"))
                    }
                }
            }
        }
    }

    #[test]
    fn ocsf_detection_finding_fits_the_schema() {
        let schema = schema();
        for (f, is_new) in [
            (finding(), true),
            (
                Finding {
                    suppressed: true,
                    source_ip: String::new(),
                    ..finding()
                },
                false,
            ),
        ] {
            let out = ocsf(&f, is_new);
            let errors = schema_errors(&out, &schema);
            assert!(errors.is_empty(), "{errors:#?}");
            assert_eq!(out["type_uid"], 200401 + i64::from(!is_new));
        }
        let out = ocsf(&finding(), true);
        assert_eq!(
            out["finding_info"]["attacks"][0]["technique"]["uid"],
            "T1552.005"
        );
        assert_eq!(
            out["evidences"][0]["src_endpoint"]["autonomous_system"]["number"],
            198610
        );
    }

    /// What the Detection Finding class (with the profiles we use) says is wrong.
    fn schema_errors(out: &Value, schema: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        validate(
            out.as_object().unwrap(),
            &schema["class"]["attributes"],
            schema,
            &["cloud", "security_control"],
            "",
            &mut errors,
        );
        errors
    }

    #[test]
    fn the_validator_catches_mistakes() {
        let schema = schema();
        let mut bad = ocsf(&finding(), true);
        bad["severity_id"] = json!(9);
        bad["finding_info"]["colour"] = json!("red");
        bad.as_object_mut().unwrap().remove("time");
        let errors = schema_errors(&bad, &schema);
        assert_eq!(errors.len(), 3, "{errors:#?}");
    }

    #[test]
    fn slack_and_native_forms() {
        let s = slack(&finding());
        assert!(s["text"].as_str().unwrap().starts_with("HIGH TH-021"));
        assert!(
            s["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("45.146.164.10")
        );
        let n = native(&finding());
        assert_eq!(
            (n["severity"].as_str(), n["asn"].as_u64()),
            (Some("high"), Some(198610))
        );
        assert_eq!(n["first_event_time"], "2023-11-14T22:13:20Z");
    }
}
