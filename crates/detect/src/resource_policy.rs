//! Whom a call's resource policy lets in from outside the resource's
//! account (TH-022's sharing): bucket, key, queue, topic, secret,
//! repository, search domain, vault, file system and backup vault policies,
//! role trust policies, and Lambda function permissions.
//!
//! A statement lets anyone in when it allows a wildcard principal and no
//! condition narrows the callers (an organisation, account, source ARN,
//! VPC, endpoint or address range): conditions all apply together, so one
//! narrowing key is enough, as IAM Access Analyzer reads them. Named
//! accounts other than the resource's own are outside access whatever the
//! conditions (an external id still lets that account in).

use serde_json::Value;

/// Who a policy lets in from outside the resource's account.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OutsideAccess {
    pub anyone: bool,
    /// Other accounts named as principals, sorted, without repeats.
    pub accounts: Vec<String>,
}

impl OutsideAccess {
    pub fn is_empty(&self) -> bool {
        !self.anyone && self.accounts.is_empty()
    }
}

/// What a call that sets a resource policy grants, or None when the call
/// sets no policy (or an unreadable one).
pub fn granted_by(
    event_source: &str,
    event_name: &str,
    request_parameters: &str,
    own_account: &str,
) -> Option<OutsideAccess> {
    let service = event_source.split('.').next().unwrap_or_default();
    // Where the call carries its policy; parameters are parsed only then.
    let pointer = match (service, event_name) {
        ("lambda", name) if name.starts_with("AddPermission") => "",
        ("s3", "PutBucketPolicy") => "/bucketPolicy",
        ("ecr", "SetRepositoryPolicy") => "/policyText",
        ("kms", "PutKeyPolicy" | "CreateKey") => "/policy",
        ("sqs", "SetQueueAttributes" | "CreateQueue") | ("sns", "CreateTopic") => {
            "/attributes/Policy"
        }
        ("sns", "SetTopicAttributes") => "/attributeValue",
        ("secretsmanager", "PutResourcePolicy") => "/resourcePolicy",
        (
            "es",
            "CreateElasticsearchDomain"
            | "UpdateElasticsearchDomainConfig"
            | "CreateDomain"
            | "UpdateDomainConfig",
        ) => "/accessPolicies",
        ("glacier", "SetVaultAccessPolicy") => "/policy/policy",
        ("elasticfilesystem", "PutFileSystemPolicy") | ("backup", "PutBackupVaultAccessPolicy") => {
            "/policy"
        }
        ("iam", "CreateRole") => "/assumeRolePolicyDocument",
        ("iam", "UpdateAssumeRolePolicy") => "/policyDocument",
        _ => return None,
    };
    let params: Value = serde_json::from_str(request_parameters).ok()?;
    if pointer.is_empty() {
        return Some(lambda_permission(&params, own_account));
    }
    if event_name == "SetTopicAttributes"
        && params.get("attributeName").and_then(Value::as_str) != Some("Policy")
    {
        return None;
    }
    // Policies arrive as JSON text or, for some services, as objects.
    let policy = match params.pointer(pointer)? {
        Value::String(text) => serde_json::from_str(text).ok()?,
        other => other.clone(),
    };
    Some(outside_access(&policy, own_account))
}

/// Who the Allow statements of `policy` let in from outside `own_account`.
pub fn outside_access(policy: &Value, own_account: &str) -> OutsideAccess {
    let statements = match policy.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    let mut access = OutsideAccess::default();
    for s in statements {
        if s.get("Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        // NotPrincipal with Allow lets in everyone but those named.
        let (wildcard, accounts) = match (s.get("Principal"), s.get("NotPrincipal")) {
            (_, Some(_)) => (true, Vec::new()),
            (Some(p), None) => principals(p),
            (None, None) => continue,
        };
        if wildcard && !narrowed(s.get("Condition")) {
            access.anyone = true;
        }
        access
            .accounts
            .extend(accounts.into_iter().filter(|a| a != own_account));
    }
    access.accounts.sort();
    access.accounts.dedup();
    access
}

/// A Lambda permission: `principal` may be "*", an account or an AWS
/// service; source account, source ARN or organisation narrow "*".
fn lambda_permission(params: &Value, own_account: &str) -> OutsideAccess {
    let text = |key: &str| params.get(key).and_then(Value::as_str).unwrap_or_default();
    let principal = text("principal");
    let narrowed = ["sourceAccount", "sourceArn", "principalOrgID"]
        .iter()
        .any(|k| !text(k).is_empty());
    match account_of(principal) {
        _ if principal == "*" => OutsideAccess {
            anyone: !narrowed,
            accounts: Vec::new(),
        },
        Some(account) if account != own_account => OutsideAccess {
            anyone: false,
            accounts: vec![account],
        },
        _ => OutsideAccess::default(),
    }
}

/// Whether a principal block is a wildcard, and the accounts it names.
/// Service, federated and canonical-user principals are neither.
fn principals(principal: &Value) -> (bool, Vec<String>) {
    let aws = match principal {
        Value::String(s) if s == "*" => return (true, Vec::new()),
        Value::Object(map) => map.get("AWS"),
        _ => None,
    };
    let values: Vec<&str> = match aws {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let wildcard = values.contains(&"*");
    (
        wildcard,
        values.into_iter().filter_map(account_of).collect(),
    )
}

/// The account of "123456789012" or "arn:aws:iam::123456789012:…".
fn account_of(principal: &str) -> Option<String> {
    let id = match principal.strip_prefix("arn:") {
        Some(arn) => arn.split(':').nth(3)?,
        None => principal,
    };
    is_account_id(id).then(|| id.to_string())
}

/// A 12-digit AWS account id.
pub fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

/// Condition keys that narrow who may call to a set of organisations,
/// accounts, resources, networks or identities.
const NARROWING_KEYS: &[&str] = &[
    "aws:principalorgid",
    "aws:principalorgpaths",
    "aws:principalaccount",
    "aws:principalarn",
    "aws:sourceaccount",
    "aws:sourcearn",
    "aws:sourceowner",
    "aws:sourceorgid",
    "aws:sourceorgpaths",
    "aws:sourcevpc",
    "aws:sourcevpce",
    "aws:sourceip",
    "aws:userid",
    "kms:calleraccount",
];

/// Whether a statement's conditions narrow its callers: some narrowing key
/// with a value other than "*" (or, for addresses, other than everything).
fn narrowed(condition: Option<&Value>) -> bool {
    let Some(Value::Object(operators)) = condition else {
        return false;
    };
    operators
        .values()
        .filter_map(Value::as_object)
        .flat_map(|keys| keys.iter())
        .filter(|(key, _)| NARROWING_KEYS.contains(&key.to_ascii_lowercase().as_str()))
        .any(|(_, value)| {
            let values: Vec<&str> = match value {
                Value::String(s) => vec![s.as_str()],
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            !values.is_empty()
                && values
                    .iter()
                    .all(|v| !matches!(*v, "*" | "0.0.0.0/0" | "::/0"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OWN: &str = "111122223333";

    fn access(policy: Value) -> OutsideAccess {
        outside_access(&policy, OWN)
    }

    fn allow(principal: Value, condition: Option<Value>) -> Value {
        let mut statement =
            json!({"Effect": "Allow", "Principal": principal, "Action": "s3:GetObject"});
        if let Some(c) = condition {
            statement["Condition"] = c;
        }
        json!({"Version": "2012-10-17", "Statement": [statement]})
    }

    #[test]
    fn wildcard_principals_without_narrowing_conditions_let_anyone_in() {
        assert!(access(allow(json!("*"), None)).anyone);
        assert!(access(allow(json!({"AWS": "*"}), None)).anyone);
        assert!(access(allow(json!({"AWS": ["*"]}), None)).anyone);
        let transport_only = json!({"Bool": {"aws:SecureTransport": "true"}});
        assert!(
            access(allow(json!("*"), Some(transport_only))).anyone,
            "HTTPS only narrows nobody"
        );
        let everywhere = json!({"IpAddress": {"aws:SourceIp": ["0.0.0.0/0"]}});
        assert!(access(allow(json!("*"), Some(everywhere))).anyone);
        let any_org = json!({"StringEquals": {"aws:PrincipalOrgID": "*"}});
        assert!(access(allow(json!("*"), Some(any_org))).anyone);
    }

    #[test]
    fn one_narrowing_condition_is_enough() {
        for condition in [
            json!({"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}),
            json!({"StringEquals": {"AWS:SourceVpce": "vpce-1"}}),
            json!({"IpAddress": {"aws:SourceIp": ["10.0.0.0/8"]}}),
            json!({"StringEquals": {"kms:CallerAccount": OWN}}),
            json!({
                "Bool": {"aws:SecureTransport": "true"},
                "ArnLike": {"aws:SourceArn": "arn:aws:sns:us-east-1:111122223333:t"}
            }),
        ] {
            let policy = allow(json!("*"), Some(condition.clone()));
            assert!(access(policy).is_empty(), "{condition}");
        }
    }

    #[test]
    fn other_accounts_are_named_and_the_own_account_and_services_are_not() {
        let policy = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::444455556666:root", "777788889999", format!("arn:aws:iam::{OWN}:role/app")]}, "Action": "*"},
            {"Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "*"},
            {"Effect": "Deny", "Principal": "*", "Action": "*"},
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::444455556666:role/ci"}, "Action": "*"}
        ]});
        assert_eq!(
            access(policy),
            OutsideAccess {
                anyone: false,
                accounts: vec!["444455556666".into(), "777788889999".into()],
            }
        );
        let single =
            json!({"Statement": {"Effect": "Allow", "NotPrincipal": {"AWS": "x"}, "Action": "*"}});
        assert!(access(single).anyone, "a single statement object");
    }

    #[test]
    fn calls_carry_their_policy_in_their_own_parameter() {
        let bucket = r#"{"bucketName":"b","bucketPolicy":{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"s3:GetObject"}]}}"#;
        let granted = granted_by("s3.amazonaws.com", "PutBucketPolicy", bucket, OWN).unwrap();
        assert!(granted.anyone);
        let trust = r#"{"roleName":"r","policyDocument":"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::193672423079:root\"},\"Action\":\"sts:AssumeRole\"}]}"}"#;
        assert_eq!(
            granted_by("iam.amazonaws.com", "UpdateAssumeRolePolicy", trust, OWN)
                .unwrap()
                .accounts,
            ["193672423079"]
        );
        let topic = r#"{"attributeName":"DisplayName","attributeValue":"x"}"#;
        assert!(granted_by("sns.amazonaws.com", "SetTopicAttributes", topic, OWN).is_none());
        let empty_queue = r#"{"attributes":{"Policy":""}}"#;
        assert!(granted_by("sqs.amazonaws.com", "SetQueueAttributes", empty_queue, OWN).is_none());
        assert!(granted_by("s3.amazonaws.com", "PutBucketPolicy", "null", OWN).is_none());
        assert!(granted_by("s3.amazonaws.com", "GetObject", bucket, OWN).is_none());
    }

    #[test]
    fn lambda_permissions() {
        let to = |params: &str| {
            granted_by(
                "lambda.amazonaws.com",
                "AddPermission20150331v2",
                params,
                OWN,
            )
            .unwrap()
        };
        assert!(to(r#"{"principal":"*","action":"lambda:InvokeFunction"}"#).anyone);
        assert!(to(r#"{"principal":"*","sourceAccount":"111122223333"}"#).is_empty());
        assert!(to(r#"{"principal":"s3.amazonaws.com"}"#).is_empty());
        assert_eq!(
            to(r#"{"principal":"444455556666"}"#).accounts,
            ["444455556666"]
        );
    }
}
