//! Principal normalisation (DETECTIONS.md, "Principal"): the stable identity
//! behind an event, keyed by (account, principal), never by user name alone.

use trailhound_proto::{CloudTrailEvent, ComputeKind, Principal, PrincipalKind};

/// The principal of an event, or `None` when the identity block names no one.
pub fn normalise(event: &CloudTrailEvent, partitions: u32) -> Option<Principal> {
    let mut principal = Principal::default();
    normalise_into(event, partitions, &mut principal).then_some(principal)
}

/// [`normalise`] into `out`, a principal already used, whose strings are
/// reused; false when the identity block names no one (`out` then holds
/// nothing meaningful).
pub fn normalise_into(event: &CloudTrailEvent, partitions: u32, out: &mut Principal) -> bool {
    let Some(id) = event.user_identity.as_ref() else {
        return false;
    };
    let account = first_non_empty(&[&event.recipient_account_id, &id.account_id]);
    let id_account = first_non_empty(&[
        &id.account_id,
        &id.session_issuer_account_id,
        &event.recipient_account_id,
    ]);
    // Every field named: one added to Principal fails to compile here
    // until it is set too.
    let Principal {
        account_id,
        arn,
        kind: kind_field,
        session_name,
        compute: compute_field,
        cross_account,
        partition,
    } = out;
    session_name.clear();
    let kind = match id.r#type.as_str() {
        "IAMUser" => {
            if id.arn.is_empty() && !id.user_name.is_empty() {
                set(arn, &["arn:aws:iam::", id_account, ":user/", &id.user_name]);
            } else {
                set(arn, &[&id.arn]);
            }
            PrincipalKind::IamUser
        }
        "AssumedRole" => {
            set(session_name, &[session_name_of(&id.arn)]);
            if !id.session_issuer_arn.is_empty() {
                set(arn, &[&id.session_issuer_arn]);
            } else {
                let Some((partition, account, role)) = role_of_session(&id.arn) else {
                    return false;
                };
                set(arn, &["arn:", partition, ":iam::", account, ":role/", role]);
            }
            PrincipalKind::Role
        }
        "Root" => {
            set(arn, &["arn:aws:iam::", id_account, ":root"]);
            PrincipalKind::Root
        }
        "FederatedUser" => {
            set(arn, &[&id.arn]);
            PrincipalKind::Federated
        }
        "SAMLUser" | "WebIdentityUser" => {
            let who = first_non_empty(&[&id.user_name, &id.principal_id]);
            let provider = first_non_empty(&[&id.identity_provider, "unknown-provider"]);
            set(arn, &["federated:", provider, ":", who]);
            PrincipalKind::Federated
        }
        "IdentityCenterUser" => {
            let who = first_non_empty(&[&id.user_name, &id.principal_id]);
            set(arn, &["identity-center:", who]);
            PrincipalKind::IdentityCenter
        }
        "AWSService" => {
            let who = first_non_empty(&[&id.invoked_by, &id.principal_id]);
            set(arn, &["service:", who]);
            PrincipalKind::Service
        }
        "AWSAccount" => {
            let who = first_non_empty(&[&id.account_id, &id.principal_id]);
            set(arn, &["account:", who]);
            PrincipalKind::Account
        }
        _ => {
            let who = first_non_empty(&[&id.arn, &id.principal_id, &id.user_name]);
            set(arn, &["unknown:", who]);
            PrincipalKind::Unknown
        }
    };
    if arn.is_empty() || arn.ends_with(':') || account.is_empty() {
        return false;
    }
    *compute_field = compute_kind(event, kind, session_name) as i32;
    *partition = partition_of(account, arn, partitions);
    *cross_account = !id_account.is_empty() && id_account != account;
    set(account_id, &[account]);
    *kind_field = kind as i32;
    true
}

/// `out` = the parts joined, in its own buffer.
fn set(out: &mut String, parts: &[&str]) {
    out.clear();
    parts.iter().for_each(|part| out.push_str(part));
}

/// Stable partition of (account, principal): the same on every machine and
/// in every release, since state placement depends on it.
pub fn partition_of(account: &str, principal: &str, partitions: u32) -> u32 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(account.as_bytes());
    h.update(&[0]);
    h.update(principal.as_bytes());
    (h.digest() % u64::from(partitions.max(1))) as u32
}

fn first_non_empty<'a>(candidates: &[&'a str]) -> &'a str {
    candidates
        .iter()
        .copied()
        .find(|s| !s.is_empty())
        .unwrap_or("")
}

/// `arn:aws:sts::123:assumed-role/Role/session` → `session`.
fn session_name_of(assumed_role_arn: &str) -> &str {
    assumed_role_arn.rsplit_once('/').map_or("", |(_, s)| s)
}

/// `arn:aws:sts::123:assumed-role/Role/session` → the partition, account
/// and role of `arn:aws:iam::123:role/Role` (used only when the event has
/// no session issuer; role paths are not in the session ARN, so they cannot
/// be recovered here).
fn role_of_session(arn: &str) -> Option<(&str, &str, &str)> {
    let (prefix, rest) = arn.split_once(":assumed-role/")?;
    let role = rest.split('/').next()?;
    let account = prefix.rsplit(':').next()?;
    let partition = prefix.split(':').nth(1).unwrap_or("aws");
    Some((partition, account, role))
}

/// EC2: session name `i-…` or `ec2RoleDelivery`; Lambda: the Lambda
/// execution environment in the user agent.
fn compute_kind(event: &CloudTrailEvent, kind: PrincipalKind, session: &str) -> ComputeKind {
    if kind != PrincipalKind::Role {
        return ComputeKind::None;
    }
    let ec2_delivery = event
        .user_identity
        .as_ref()
        .is_some_and(|i| i.ec2_role_delivery);
    if ec2_delivery || is_instance_id(session) {
        ComputeKind::Ec2
    } else if event.user_agent.contains("exec-env/AWS_Lambda_") {
        ComputeKind::Lambda
    } else {
        ComputeKind::None
    }
}

fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailhound_proto::UserIdentity;

    fn event(identity: UserIdentity, recipient: &str, ua: &str) -> CloudTrailEvent {
        CloudTrailEvent {
            recipient_account_id: recipient.into(),
            user_agent: ua.into(),
            user_identity: Some(identity),
            ..Default::default()
        }
    }

    #[test]
    fn role_sessions_share_the_role_principal() {
        let id = |session: &str| UserIdentity {
            r#type: "AssumedRole".into(),
            arn: format!("arn:aws:sts::111:assumed-role/app/{session}"),
            account_id: "111".into(),
            session_issuer_arn: "arn:aws:iam::111:role/path/app".into(),
            ..Default::default()
        };
        let a = normalise(&event(id("alice"), "111", ""), 16).unwrap();
        let b = normalise(&event(id("i-0123456789abcdef0"), "111", ""), 16).unwrap();
        assert_eq!(a.arn, "arn:aws:iam::111:role/path/app");
        assert_eq!(a.arn, b.arn);
        assert_eq!(a.partition, b.partition);
        assert_eq!(a.session_name, "alice");
        assert_eq!(a.compute, ComputeKind::None as i32);
        assert_eq!(b.compute, ComputeKind::Ec2 as i32);
    }

    #[test]
    fn role_without_issuer_is_derived_from_the_session_arn() {
        let id = UserIdentity {
            r#type: "AssumedRole".into(),
            arn: "arn:aws:sts::111:assumed-role/fn-role/my-function".into(),
            ..Default::default()
        };
        let p = normalise(
            &event(id, "111", "aws-sdk-js/2 exec-env/AWS_Lambda_nodejs18.x"),
            16,
        )
        .unwrap();
        assert_eq!(p.arn, "arn:aws:iam::111:role/fn-role");
        assert_eq!(p.compute, ComputeKind::Lambda as i32);
    }

    #[test]
    fn root_federated_service_and_cross_account() {
        let root = UserIdentity {
            r#type: "Root".into(),
            account_id: "222".into(),
            ..Default::default()
        };
        let p = normalise(&event(root, "222", ""), 16).unwrap();
        assert_eq!(
            (p.arn.as_str(), p.kind),
            ("arn:aws:iam::222:root", PrincipalKind::Root as i32)
        );

        let fed = UserIdentity {
            r#type: "FederatedUser".into(),
            arn: "arn:aws:sts::222:federated-user/bob".into(),
            account_id: "222".into(),
            ..Default::default()
        };
        assert_eq!(
            normalise(&event(fed, "222", ""), 16).unwrap().arn,
            "arn:aws:sts::222:federated-user/bob"
        );

        let svc = UserIdentity {
            r#type: "AWSService".into(),
            invoked_by: "lambda.amazonaws.com".into(),
            ..Default::default()
        };
        assert_eq!(
            normalise(&event(svc, "222", ""), 16).unwrap().arn,
            "service:lambda.amazonaws.com"
        );

        let other = UserIdentity {
            r#type: "IAMUser".into(),
            arn: "arn:aws:iam::333:user/eve".into(),
            account_id: "333".into(),
            ..Default::default()
        };
        let p = normalise(&event(other, "222", ""), 16).unwrap();
        assert!(p.cross_account);
        assert_eq!(p.account_id, "222");
    }

    #[test]
    fn names_repeat_across_accounts_but_principals_do_not() {
        let user = |acct: &str| UserIdentity {
            r#type: "IAMUser".into(),
            user_name: "admin".into(),
            account_id: acct.into(),
            ..Default::default()
        };
        let a = normalise(&event(user("111"), "111", ""), 16).unwrap();
        let b = normalise(&event(user("222"), "222", ""), 16).unwrap();
        assert_ne!((a.account_id, a.arn), (b.account_id, b.arn));
    }

    #[test]
    fn empty_identity_is_no_principal() {
        assert!(normalise(&event(UserIdentity::default(), "", ""), 16).is_none());
    }
}
