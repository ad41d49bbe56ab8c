//! Service names from `eventSource`, and the global services that log
//! `us-east-1` whatever the caller's region (DETECTIONS.md, "Global services").

/// `ec2.amazonaws.com` → `ec2`; anything else is returned as is.
pub fn short_name(event_source: &str) -> &str {
    event_source
        .strip_suffix(".amazonaws.com")
        .unwrap_or(event_source)
}

/// Services whose calls are never "outside the region" nor a "new region".
pub fn is_global(service: &str) -> bool {
    matches!(
        service,
        "iam"
            | "sts"
            | "organizations"
            | "route53"
            | "route53domains"
            | "cloudfront"
            | "support"
            | "signin"
            | "health"
            | "account"
            | "billing"
            | "billingconsole"
            | "ce"
            | "budgets"
            | "globalaccelerator"
            | "shield"
            | "waf"
            | "sso"
            | "sso-directory"
            | "identitystore"
            | "trustedadvisor"
            | "aws-portal"
            | "tax"
            | "artifact"
            | "notifications"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_and_global_services() {
        assert_eq!(short_name("ec2.amazonaws.com"), "ec2");
        assert_eq!(short_name("custom"), "custom");
        assert!(is_global("iam") && is_global("sts") && !is_global("ec2"));
    }
}
