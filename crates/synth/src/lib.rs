//! Realistic, deterministic CloudTrail for tests, examples and benchmarks.
//!
//! An [`Org`](simulate::Org) is a set of [`Actor`]s, each with the identity, networks,
//! client and daily repertoire of API calls a real one has. Source
//! addresses are real networks, so the GeoIP and ASN databases resolve
//! them. Every actor calls its whole repertoire on its first day, so
//! benign history alone teaches the baseline everything it will see.

pub mod networks;
pub mod scenarios;
pub mod simulate;

use chrono::DateTime;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use serde_json::{Value, json};

pub const DAY_MS: i64 = 86_400_000;

/// 2024-03-01T00:00:00Z: the start of the example organisation's history.
pub const HISTORY_START_MS: i64 = 1_709_251_200_000;

#[derive(Debug, Clone)]
pub enum Identity {
    User {
        account: String,
        name: String,
    },
    /// A role session; `session` is an instance id for EC2, the function name for Lambda.
    Role {
        account: String,
        role: String,
        session: String,
        ec2: bool,
    },
    Root {
        account: String,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub source: &'static str,
    pub name: &'static str,
    pub region: &'static str,
    pub read_only: bool,
}

pub const fn call(
    source: &'static str,
    name: &'static str,
    region: &'static str,
    read_only: bool,
) -> Call {
    Call {
        source,
        name,
        region,
        read_only,
    }
}

#[derive(Debug, Clone)]
pub struct Actor {
    pub identity: Identity,
    pub ips: Vec<&'static str>,
    pub user_agent: String,
    pub calls: Vec<Call>,
    pub per_day: u32,
    /// Working hours (UTC): calls fall between them; (0, 24) for machines.
    pub hours: (u32, u32),
}

pub struct Generator {
    rng: Pcg64,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Pcg64::seed_from_u64(seed),
        }
    }

    fn uuid(&mut self) -> String {
        let v: u128 = self.rng.random();
        let h = format!("{v:032x}");
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }

    /// One CloudTrail record, as CloudTrail writes it.
    pub fn record(
        &mut self,
        who: &Identity,
        c: &Call,
        t_ms: i64,
        ip: &str,
        ua: &str,
        error: Option<&str>,
    ) -> Value {
        let event_id = self.uuid();
        let request_id = self.uuid();
        let time = DateTime::from_timestamp_millis(t_ms)
            .expect("valid time")
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let (identity, account) = identity_json(who, &mut self.rng);
        let mut r = json!({
            "eventVersion": "1.09",
            "userIdentity": identity,
            "eventTime": time,
            "eventSource": c.source,
            "eventName": c.name,
            "awsRegion": c.region,
            "sourceIPAddress": ip,
            "userAgent": ua,
            "requestParameters": Value::Null,
            "responseElements": Value::Null,
            "requestID": request_id,
            "eventID": event_id,
            "readOnly": c.read_only,
            "eventType": if c.name == "ConsoleLogin" { "AwsConsoleSignIn" } else { "AwsApiCall" },
            "managementEvent": true,
            "recipientAccountId": account,
            "eventCategory": "Management",
            "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                           "clientProvidedHostHeader": format!("{}.{}.amazonaws.com", c.source.trim_end_matches(".amazonaws.com"), c.region)}
        });
        if let Some(code) = error {
            r["errorCode"] = json!(code);
            r["errorMessage"] = json!(format!("User is not authorized to perform: {}", c.name));
        }
        r
    }

    /// An actor's events on one day. Day 0 covers the whole repertoire.
    pub fn day(&mut self, actor: &Actor, start_ms: i64, day: i64) -> Vec<Value> {
        let (from, to) = actor.hours;
        let span_ms = i64::from(to - from) * 3_600_000;
        let base = start_ms + day * DAY_MS + i64::from(from) * 3_600_000;
        let weekend = (day % 7) >= 5 && actor.hours != (0, 24);
        let n = if day == 0 {
            actor.calls.len() as u32
        } else if weekend {
            actor.per_day / 5
        } else {
            actor.per_day
        };
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            let c = if day == 0 {
                actor.calls[i as usize]
            } else {
                actor.calls[self.rng.random_range(0..actor.calls.len())]
            };
            let ip = actor.ips[self.rng.random_range(0..actor.ips.len())];
            let t = base + self.rng.random_range(0..span_ms);
            out.push(self.record(&actor.identity, &c, t, ip, &actor.user_agent, None));
        }
        out
    }
}

fn identity_json(who: &Identity, rng: &mut Pcg64) -> (Value, String) {
    let key = |prefix: &str, rng: &mut Pcg64| {
        let v: u64 = rng.random();
        format!("{prefix}{:016X}", v)
    };
    match who {
        Identity::User { account, name } => (
            json!({"type": "IAMUser", "principalId": format!("AIDA{}", name.to_uppercase()), "arn": format!("arn:aws:iam::{account}:user/{name}"),
                   "accountId": account, "accessKeyId": format!("AKIA{}", name.to_uppercase()), "userName": name}),
            account.clone(),
        ),
        Identity::Role {
            account,
            role,
            session,
            ec2,
        } => {
            let mut context = json!({
                "sessionIssuer": {"type": "Role", "principalId": format!("AROA{}", role.to_uppercase()),
                                   "arn": format!("arn:aws:iam::{account}:role/{role}"), "accountId": account, "userName": role},
                "attributes": {"creationDate": "2024-03-01T00:00:00Z", "mfaAuthenticated": "false"}
            });
            if *ec2 {
                context["ec2RoleDelivery"] = json!("2.0");
            }
            (
                json!({"type": "AssumedRole", "principalId": format!("AROA{}:{session}", role.to_uppercase()),
                       "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"), "accountId": account,
                       "accessKeyId": key("ASIA", rng), "sessionContext": context}),
                account.clone(),
            )
        }
        Identity::Root { account } => (
            json!({"type": "Root", "principalId": account, "arn": format!("arn:aws:iam::{account}:root"),
                   "accountId": account, "accessKeyId": key("ASIA", rng)}),
            account.clone(),
        ),
    }
}

/// The example organisation: two accounts, three people, two EC2 roles and
/// a Lambda function, with the networks and clients they really use.
pub fn example_org() -> Vec<Actor> {
    let prod = "210987654321".to_string();
    let dev = "123456789012".to_string();
    let user = |account: &String, name: &str| Identity::User {
        account: account.clone(),
        name: name.into(),
    };
    let role = |account: &String, role: &str, session: &str, ec2: bool| Identity::Role {
        account: account.clone(),
        role: role.into(),
        session: session.into(),
        ec2,
    };
    vec![
        Actor {
            identity: user(&prod, "alice"),
            ips: vec!["73.162.10.20", "98.207.1.1"],
            user_agent: "aws-cli/2.15.30 Python/3.11.8 Darwin/23.4.0 exe/x86_64 prompt/off command/ec2.describe-instances".into(),
            calls: vec![
                call("ec2.amazonaws.com", "DescribeInstances", "us-east-1", true),
                call("ec2.amazonaws.com", "DescribeSecurityGroups", "us-east-1", true),
                call("s3.amazonaws.com", "ListBuckets", "us-east-1", true),
                call("s3.amazonaws.com", "GetObject", "us-east-1", true),
                call("cloudwatch.amazonaws.com", "GetMetricData", "us-east-1", true),
                call("iam.amazonaws.com", "ListRoles", "us-east-1", true),
                call("sts.amazonaws.com", "GetCallerIdentity", "us-east-1", true),
                call("logs.amazonaws.com", "FilterLogEvents", "us-east-1", true),
            ],
            per_day: 30,
            hours: (15, 24),
        },
        Actor {
            identity: user(&prod, "bob"),
            ips: vec!["91.64.10.10", "80.187.100.1"],
            user_agent: "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#6.5.0-1016-aws md/arch#x86_64 lang/python#3.11.8 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69".into(),
            calls: vec![
                call("s3.amazonaws.com", "PutObject", "eu-central-1", false),
                call("s3.amazonaws.com", "GetObject", "eu-central-1", true),
                call("s3.amazonaws.com", "ListObjects", "eu-central-1", true),
                call("dynamodb.amazonaws.com", "Query", "eu-central-1", true),
                call("dynamodb.amazonaws.com", "DescribeTable", "eu-central-1", true),
                call("sts.amazonaws.com", "GetCallerIdentity", "us-east-1", true),
            ],
            per_day: 40,
            hours: (7, 17),
        },
        Actor {
            identity: user(&dev, "carol"),
            ips: vec!["81.2.69.142", "86.30.1.1"],
            user_agent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36".into(),
            calls: vec![
                call("ec2.amazonaws.com", "DescribeInstances", "eu-west-2", true),
                call("ec2.amazonaws.com", "DescribeVpcs", "eu-west-2", true),
                call("lambda.amazonaws.com", "ListFunctions20150331", "eu-west-2", true),
                call("cloudformation.amazonaws.com", "DescribeStacks", "eu-west-2", true),
                call("iam.amazonaws.com", "GetUser", "us-east-1", true),
            ],
            per_day: 20,
            hours: (8, 18),
        },
        Actor {
            identity: role(&prod, "web-server", "i-0a1b2c3d4e5f60718", true),
            ips: vec!["3.225.16.109", "52.45.102.28"],
            user_agent: "aws-sdk-go-v2/1.26.0 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/s3#1.53.0".into(),
            calls: vec![
                call("s3.amazonaws.com", "GetObject", "us-east-1", true),
                call("s3.amazonaws.com", "PutObject", "us-east-1", false),
                call("ec2.amazonaws.com", "DescribeTags", "us-east-1", true),
                call("kms.amazonaws.com", "Decrypt", "us-east-1", true),
                call("secretsmanager.amazonaws.com", "GetSecretValue", "us-east-1", true),
            ],
            per_day: 48,
            hours: (0, 24),
        },
        Actor {
            identity: role(&prod, "etl", "i-0f9e8d7c6b5a40312", true),
            ips: vec!["34.240.10.10"],
            user_agent: "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.210-201.852.amzn2.x86_64 lang/python#3.9.16 Botocore/1.34.69".into(),
            calls: vec![
                call("s3.amazonaws.com", "GetObject", "eu-west-1", true),
                call("s3.amazonaws.com", "PutObject", "eu-west-1", false),
                call("glue.amazonaws.com", "GetTable", "eu-west-1", true),
                call("sts.amazonaws.com", "GetCallerIdentity", "us-east-1", true),
            ],
            per_day: 24,
            hours: (0, 24),
        },
        Actor {
            identity: role(&dev, "thumbnailer-role", "thumbnailer", false),
            ips: vec!["52.16.10.10"],
            user_agent: "aws-sdk-nodejs/2.1560.0 linux/v20.11.1 exec-env/AWS_Lambda_nodejs20.x promise".into(),
            calls: vec![
                call("s3.amazonaws.com", "GetObject", "eu-west-1", true),
                call("s3.amazonaws.com", "PutObject", "eu-west-1", false),
            ],
            per_day: 24,
            hours: (0, 24),
        },
    ]
}

/// `days` days of the example organisation's normal activity, time-sorted.
pub fn benign_history(seed: u64, start_ms: i64, days: i64) -> Vec<Value> {
    let mut g = Generator::new(seed);
    let org = example_org();
    let mut out = Vec::new();
    for day in 0..days {
        for actor in &org {
            out.extend(g.day(actor, start_ms, day));
        }
    }
    out.sort_by_key(|r| r["eventTime"].as_str().unwrap_or_default().to_string());
    out
}

/// The attacker: a Russian hosting network and a penetration-testing
/// distribution's AWS CLI.
pub const ATTACKER_IP: &str = "45.146.164.10";
pub const ATTACKER_UA: &str = "aws-cli/2.13.5 Python/3.11.4 Linux/6.3.0-kali1-amd64 exe/x86_64.kali.2023 prompt/off command/s3.ls";

/// A stolen-credential episode on day `day` (from `start_ms`):
/// 1. the `web-server` instance's role credentials, stolen through its
///    metadata service, used from the attacker's network in us-west-2;
/// 2. the root user signs in to the console from the same network and
///    changes the account's contact information.
pub fn stolen_credentials_episode(seed: u64, start_ms: i64, day: i64) -> Vec<Value> {
    let mut g = Generator::new(seed);
    let org = example_org();
    let web = &org[3].identity;
    let root = Identity::Root {
        account: "210987654321".into(),
    };
    let t0 = start_ms + day * DAY_MS + 2 * 3_600_000; // 02:00 UTC
    let minute = 60_000;
    let mut out = vec![
        g.record(
            web,
            &call("sts.amazonaws.com", "GetCallerIdentity", "us-east-1", true),
            t0,
            ATTACKER_IP,
            ATTACKER_UA,
            None,
        ),
        g.record(
            web,
            &call("ec2.amazonaws.com", "DescribeInstances", "us-west-2", true),
            t0 + minute,
            ATTACKER_IP,
            ATTACKER_UA,
            None,
        ),
        g.record(
            web,
            &call("ec2.amazonaws.com", "DescribeInstances", "us-west-2", true),
            t0 + 2 * minute,
            ATTACKER_IP,
            ATTACKER_UA,
            None,
        ),
        g.record(
            web,
            &call("iam.amazonaws.com", "ListUsers", "us-east-1", true),
            t0 + 3 * minute,
            ATTACKER_IP,
            ATTACKER_UA,
            Some("AccessDenied"),
        ),
        g.record(
            web,
            &call("ec2.amazonaws.com", "RunInstances", "us-west-2", false),
            t0 + 4 * minute,
            ATTACKER_IP,
            ATTACKER_UA,
            Some("UnauthorizedOperation"),
        ),
    ];
    let mut login = g.record(
        &root,
        &call("signin.amazonaws.com", "ConsoleLogin", "us-east-1", false),
        t0 + 30 * minute,
        ATTACKER_IP,
        "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0",
        None,
    );
    login["responseElements"] = json!({"ConsoleLogin": "Success"});
    login["additionalEventData"] =
        json!({"MFAUsed": "No", "LoginTo": "https://console.aws.amazon.com/console/home"});
    out.push(login);
    out.push(g.record(
        &root,
        &call(
            "account.amazonaws.com",
            "PutContactInformation",
            "us-east-1",
            false,
        ),
        t0 + 35 * minute,
        ATTACKER_IP,
        "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0",
        None,
    ));
    out
}

/// A large, varied organisation for benchmarks: `principals` users and
/// roles spread over countries, networks, clients and services, `events`
/// records over `days` days, as one `{"Records":[…]}` document.
pub fn bulk(seed: u64, principals: usize, events: usize, days: i64) -> Vec<u8> {
    // Networks by country: people move between networks of their country
    // now and then; instance roles call from AWS addresses only.
    const NETWORKS: &[&[&str]] = &[
        &["73.162.10.20", "98.207.1.1", "24.5.10.10"],
        &["91.64.10.10", "80.187.100.1"],
        &["81.2.69.142", "86.30.1.1"],
        &["89.160.20.112"],
        &["62.210.10.10", "51.15.1.1"],
        &["177.131.167.145"],
        &["92.55.146.245"],
    ];
    const AWS: &[&str] = &[
        "3.225.16.109",
        "52.45.102.28",
        "34.240.10.10",
        "52.16.10.10",
    ];
    const AGENTS: &[&str] = &[
        "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-28-generic exe/x86_64.ubuntu.22 prompt/off command/s3.ls",
        "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#6.5.0-1016-aws md/arch#x86_64 lang/python#3.11.8 Botocore/1.34.69",
        "aws-sdk-go-v2/1.26.0 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/s3#1.53.0",
        "aws-sdk-java/1.12.680 Linux/5.10.210-201.852.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS java/17.0.10",
        "APN/1.0 HashiCorp/1.0 Terraform/1.7.5 (+https://www.terraform.io) terraform-provider-aws/5.42.0 aws-sdk-go-v2/1.26.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    ];
    const CALLS: &[Call] = &[
        call("ec2.amazonaws.com", "DescribeInstances", "us-east-1", true),
        call("ec2.amazonaws.com", "DescribeInstances", "eu-west-1", true),
        call(
            "ec2.amazonaws.com",
            "DescribeSecurityGroups",
            "us-west-2",
            true,
        ),
        call("s3.amazonaws.com", "GetObject", "us-east-1", true),
        call("s3.amazonaws.com", "PutObject", "eu-west-1", false),
        call("s3.amazonaws.com", "ListBuckets", "us-east-1", true),
        call("iam.amazonaws.com", "ListRoles", "us-east-1", true),
        call("sts.amazonaws.com", "GetCallerIdentity", "us-east-1", true),
        call("sts.amazonaws.com", "AssumeRole", "us-east-1", false),
        call("kms.amazonaws.com", "Decrypt", "eu-central-1", true),
        call("lambda.amazonaws.com", "Invoke", "eu-west-1", false),
        call("dynamodb.amazonaws.com", "Query", "ap-southeast-2", true),
        call(
            "cloudwatch.amazonaws.com",
            "PutMetricData",
            "us-east-1",
            false,
        ),
        call("logs.amazonaws.com", "CreateLogStream", "eu-west-1", false),
        call(
            "secretsmanager.amazonaws.com",
            "GetSecretValue",
            "us-east-1",
            true,
        ),
    ];
    let mut g = Generator::new(seed);
    let actors: Vec<(Identity, usize, usize)> = (0..principals)
        .map(|i| {
            let account = format!("{:012}", 100_000_000_000u64 + (i % 50) as u64);
            let identity = if i % 3 == 0 {
                Identity::Role {
                    account,
                    role: format!("role-{i}"),
                    session: format!("i-{:017x}", i),
                    ec2: true,
                }
            } else {
                Identity::User {
                    account,
                    name: format!("user-{i}"),
                }
            };
            (identity, i % NETWORKS.len(), i % AGENTS.len())
        })
        .collect();
    let span = days * DAY_MS;
    let mut out = Vec::with_capacity(events * 1300);
    out.extend_from_slice(b"{\"Records\":[");
    for n in 0..events {
        let (identity, country, agent) = &actors[g.rng.random_range(0..actors.len())];
        let ip = match identity {
            Identity::Role { ec2: true, .. } => AWS[*country % AWS.len()],
            _ => {
                // Mostly the actor's first network; sometimes another of its country.
                let networks = NETWORKS[*country];
                if g.rng.random_ratio(1, 50) {
                    networks[g.rng.random_range(0..networks.len())]
                } else {
                    networks[0]
                }
            }
        };
        let c = &CALLS[g.rng.random_range(0..CALLS.len())];
        let t = HISTORY_START_MS + span * n as i64 / events as i64;
        let error = g.rng.random_ratio(1, 100).then_some("AccessDenied");
        let record = g.record(identity, c, t, ip, AGENTS[*agent], error);
        if n > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &record).expect("records serialise");
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed() {
        assert_eq!(
            benign_history(7, HISTORY_START_MS, 2),
            benign_history(7, HISTORY_START_MS, 2)
        );
        assert_ne!(
            benign_history(7, HISTORY_START_MS, 2),
            benign_history(8, HISTORY_START_MS, 2)
        );
    }

    #[test]
    fn bulk_is_one_records_document() {
        let doc: Value = serde_json::from_slice(&bulk(1, 10, 100, 3)).unwrap();
        assert_eq!(doc["Records"].as_array().unwrap().len(), 100);
    }
}
