//! User agents as CloudTrail records them: AWS CLI and SDKs, the console,
//! AWS services, infrastructure tools, browsers, and attack tooling.
//! The TH-019 key is family plus major version (`aws-cli/2`), and the
//! penetration-testing distribution it runs on when there is one
//! (`aws-cli/2 kali`): the same CLI on an attacker's Kali is a new client.

use trailhound_proto::{ClientKind, UserAgentInfo};

/// Families recognised in a user agent, in the order they are preferred
/// when several appear (Terraform's agent also names the Go SDK it uses).
const FAMILIES: &[(&str, ClientKind)] = &[
    ("aws-cli", ClientKind::Cli),
    ("terraform", ClientKind::Tool),
    ("pulumi", ClientKind::Tool),
    ("aws-cdk", ClientKind::Tool),
    ("cloudformation", ClientKind::Tool),
    ("stratus-red-team", ClientKind::Tool),
    ("pacu", ClientKind::Tool),
    ("scoutsuite", ClientKind::Tool),
    ("prowler", ClientKind::Tool),
    ("boto3", ClientKind::Sdk),
    ("botocore", ClientKind::Sdk),
    ("aws-sdk-go-v2", ClientKind::Sdk),
    ("aws-sdk-go", ClientKind::Sdk),
    ("aws-sdk-java", ClientKind::Sdk),
    ("aws-sdk-js", ClientKind::Sdk),
    ("aws-sdk-nodejs", ClientKind::Sdk),
    ("aws-sdk-dotnet", ClientKind::Sdk),
    ("aws-sdk-ruby3", ClientKind::Sdk),
    ("aws-sdk-ruby", ClientKind::Sdk),
    ("aws-sdk-php", ClientKind::Sdk),
    ("aws-sdk-rust", ClientKind::Sdk),
    ("aws-sdk-cpp", ClientKind::Sdk),
    ("aws-powershell", ClientKind::Sdk),
];

const PENTEST_DISTRIBUTIONS: &[&str] = &["kali", "parrot", "pentoo"];

pub fn parse(ua: &str) -> UserAgentInfo {
    let lower = ua.to_ascii_lowercase();
    let pentest = PENTEST_DISTRIBUTIONS
        .iter()
        .find(|d| lower.contains(*d))
        .map(|d| d.to_string())
        .unwrap_or_default();
    let os = os_of(&lower);
    let (family, version, client) = family_of(ua, &lower);
    let mut major = match version.split('.').next() {
        Some(m) if !m.is_empty() => format!("{family}/{m}"),
        _ => family.clone(),
    };
    if !pentest.is_empty() {
        major = format!("{major} {pentest}");
    }
    UserAgentInfo {
        family,
        version,
        major,
        os,
        client: client as i32,
        pentest_distribution: pentest,
    }
}

fn family_of(ua: &str, lower: &str) -> (String, String, ClientKind) {
    let trimmed = lower.trim_matches(|c| c == '[' || c == ']');
    if trimmed.is_empty() {
        return ("none".into(), String::new(), ClientKind::Unknown);
    }
    if trimmed.starts_with("s3console") || trimmed.contains("console.aws.amazon.com") {
        return (
            "console".into(),
            version_after(lower, "s3console/"),
            ClientKind::Console,
        );
    }
    if trimmed.starts_with("aws internal")
        || (lower.contains("aws-internal") && !lower.contains("aws-cli"))
    {
        return ("aws-internal".into(), String::new(), ClientKind::AwsService);
    }
    if trimmed.ends_with(".amazonaws.com") && !trimmed.contains(' ') {
        let kind = if trimmed == "console.amazonaws.com" || trimmed == "signin.amazonaws.com" {
            ClientKind::Console
        } else {
            ClientKind::AwsService
        };
        return (trimmed.to_string(), String::new(), kind);
    }
    for (name, kind) in FAMILIES {
        if let Some(v) = token_version(lower, name) {
            return (name.to_string(), v, *kind);
        }
    }
    if lower.starts_with("mozilla/") {
        for browser in ["edg/", "firefox/", "chrome/", "safari/"] {
            if lower.contains(browser) {
                let name = browser.trim_end_matches('/');
                let name = if name == "edg" { "edge" } else { name };
                return (
                    name.to_string(),
                    version_after(lower, browser),
                    ClientKind::Browser,
                );
            }
        }
        return ("browser".into(), String::new(), ClientKind::Browser);
    }
    // Anything else: the first token, "name/version" or the whole string.
    let first = ua.split_whitespace().next().unwrap_or(ua);
    let (name, version) = first.split_once('/').unwrap_or((first, ""));
    let name = name.to_ascii_lowercase();
    let name = match name.split_once('_') {
        Some((n, _)) if n == "stratus-red-team" => n.to_string(),
        _ => name,
    };
    (name, version.to_string(), ClientKind::Unknown)
}

/// The version after `name/` where `name` starts a token.
fn token_version(lower: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(i) = lower[from..].find(name) {
        let at = from + i;
        let starts_token = at == 0
            || matches!(
                lower.as_bytes()[at - 1],
                b' ' | b'(' | b'[' | b',' | b'/' | b'#'
            );
        let rest = &lower[at + name.len()..];
        if starts_token
            && (rest.starts_with('/')
                || rest.starts_with('_')
                || rest.is_empty()
                || rest.starts_with(' '))
        {
            return Some(if rest.starts_with('/') {
                version_after(lower, &format!("{name}/"))
            } else {
                String::new()
            });
        }
        from = at + name.len();
    }
    None
}

fn version_after(lower: &str, marker: &str) -> String {
    lower
        .find(marker)
        .map(|i| &lower[i + marker.len()..])
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                .collect()
        })
        .unwrap_or_default()
}

fn os_of(lower: &str) -> String {
    for (marker, os) in [
        ("windows", "windows"),
        ("darwin", "macos"),
        ("macintosh", "macos"),
        ("mac os x", "macos"),
        ("android", "android"),
        ("iphone", "ios"),
        ("linux", "linux"),
    ] {
        if lower.contains(marker) {
            return os.to_string();
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(ua: &str) -> (String, String, ClientKind, String) {
        let p = parse(ua);
        (
            p.family,
            p.major,
            ClientKind::try_from(p.client).unwrap(),
            p.pentest_distribution,
        )
    }

    #[test]
    fn aws_clients_tools_and_browsers() {
        let cli = family(
            "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-28-generic exe/x86_64.ubuntu.22 prompt/off command/s3.ls",
        );
        assert_eq!(
            (cli.0.as_str(), cli.1.as_str(), cli.2),
            ("aws-cli", "aws-cli/2", ClientKind::Cli)
        );
        assert_eq!(
            parse("aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0").os,
            "linux"
        );
        assert_eq!(
            family("Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.6.9").1,
            "boto3/1"
        );
        assert_eq!(
            family("aws-sdk-go-v2/1.21.0 os/linux lang/go#1.21.1").1,
            "aws-sdk-go-v2/1"
        );
        assert_eq!(
            family("aws-sdk-go/1.44.0 (go1.20; linux; amd64)").1,
            "aws-sdk-go/1"
        );
        let tf = family(
            "APN/1.0 HashiCorp/1.0 Terraform/1.5.7 (+https://www.terraform.io) terraform-provider-aws/5.17.0 aws-sdk-go-v2/1.21.0",
        );
        assert_eq!((tf.1.as_str(), tf.2), ("terraform/1", ClientKind::Tool));
        assert_eq!(family("AWS Internal").2, ClientKind::AwsService);
        assert_eq!(family("lambda.amazonaws.com").2, ClientKind::AwsService);
        assert_eq!(family("console.amazonaws.com").2, ClientKind::Console);
        assert_eq!(
            family("[S3Console/0.4, aws-internal/3 aws-sdk-java/1.12.488]").2,
            ClientKind::Console
        );
        let chrome = family(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        );
        assert_eq!(
            (chrome.1.as_str(), chrome.2),
            ("chrome/120", ClientKind::Browser)
        );
        assert_eq!(
            family("stratus-red-team_c97089f1-1ae3-4ecc-b006-f5e8fd0f2571").0,
            "stratus-red-team"
        );
        assert_eq!(family("").0, "none");
    }

    #[test]
    fn pentest_distributions_are_recognised() {
        let kali = family(
            "aws-cli/2.15.30 Python/3.11.8 Linux/6.6.9-amd64 exe/x86_64.kali.2024 prompt/off",
        );
        // The distribution is part of the TH-019 key: a CLI the principal
        // uses elsewhere is a new client on Kali.
        assert_eq!(
            (kali.1.as_str(), kali.3.as_str()),
            ("aws-cli/2 kali", "kali")
        );
        assert_eq!(
            family("Boto3/1.34.0 Python/3.11 Linux/6.5.0-13parrot1-amd64 Botocore/1.34.0").3,
            "parrot"
        );
        assert_eq!(
            family("aws-cli/1.18.69 Python/3.8.2 Linux/5.4.0-pentoo botocore/1.17.0").3,
            "pentoo"
        );
        assert_eq!(
            family("aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-28-generic").3,
            ""
        );
    }
}
