//! `trailhound simulate`: an organisation's CloudTrail over weeks, with
//! labelled attacks and benign look-alikes injected at chosen times.
//!
//! The organisation has accounts, each with people (developers, operators,
//! analysts, console users), EC2 instances, Lambda functions and a
//! Terraform deployment role. People work their local office hours with a
//! weekly rhythm and call from their own country's real networks; machines
//! call around the clock from AWS addresses of their region. Every member
//! uses its whole repertoire (calls, networks, client) on its first day, so
//! the background teaches the baselines what they will see later; what
//! still fires on the background is what `trailhound eval` reports as false
//! positives. Deterministic for a seed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Weekday};
use rand::Rng;
use serde_json::{Value, json};

use crate::networks::{self, Place};
use crate::scenarios::{self, Label, Scenario};
use crate::{Call, DAY_MS, Generator, Identity};

const HOUR_MS: i64 = 3_600_000;

/// What to simulate. Defaults give ~120k events in 45 days.
#[derive(Debug, Clone)]
pub struct SimulationConfig {
    pub seed: u64,
    /// First day's midnight, UTC.
    pub start_ms: i64,
    pub days: i64,
    pub accounts: usize,
    pub users_per_account: usize,
    /// Roles people assume (AssumeRole) and then work through.
    pub roles_per_account: usize,
    pub instances_per_account: usize,
    pub lambdas_per_account: usize,
    /// ISO country codes people work from (from [`networks::countries`]).
    pub countries: Vec<String>,
    /// Scenarios to inject, attacks and benign look-alikes.
    pub scenarios: Vec<Scenario>,
    /// Day (from 0) of the first injected attack; attacks follow 6 hours apart.
    pub attack_day: i64,
    /// Multiplies every member's daily call volume.
    pub volume: f64,
    /// Chance that a person, on a working day, makes one call they never
    /// made before (a new API, service or region): benign drift, which
    /// novelty detectors report and `eval` counts as false positives.
    pub drift: f64,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            start_ms: crate::HISTORY_START_MS,
            days: 45,
            accounts: 3,
            users_per_account: 6,
            roles_per_account: 2,
            instances_per_account: 3,
            lambdas_per_account: 2,
            countries: ["US", "DE", "GB", "FR", "IN"].map(String::from).to_vec(),
            scenarios: Scenario::ALL.to_vec(),
            attack_day: 40,
            volume: 1.0,
            drift: 0.02,
        }
    }
}

impl SimulationConfig {
    /// Check that the organisation and calendar leave room for the scenarios.
    pub fn validate(&self) -> Result<(), String> {
        scenarios::validate(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Developer,
    Operator,
    Analyst,
    ConsoleUser,
    /// A role people assume, seen through their sessions.
    AssumedByPeople,
    Instance,
    Function,
    Deployer,
}

/// Where a member calls from, day by day.
#[derive(Debug, Clone)]
pub enum Whereabouts {
    /// A person's metro area.
    Home(Place),
    /// A person who alternates weeks between two offices.
    Traveller(Place, Place),
    /// A person who often connects through a commercial VPN.
    HomeAndVpn(Place),
    /// A machine's AWS addresses.
    Aws(&'static [&'static str]),
}

#[derive(Debug, Clone)]
pub struct Member {
    pub identity: Identity,
    pub role: Role,
    pub account: String,
    pub home_region: &'static str,
    pub calls: Vec<Call>,
    pub buckets: Vec<String>,
    pub agent: &'static str,
    pub whereabouts: Whereabouts,
    pub per_day: f64,
    /// Role ARNs this member assumes (its AssumeRole calls name them).
    pub assumes: Vec<String>,
}

impl Member {
    /// The principal ARN findings name this member by.
    pub fn principal(&self) -> String {
        principal_arn(&self.identity)
    }

    pub fn user_name(&self) -> Option<&str> {
        match &self.identity {
            Identity::User { name, .. } => Some(name),
            _ => None,
        }
    }

    /// An IAM user at home: not a special persona, not a role session.
    fn is_ordinary_user(&self) -> bool {
        matches!(self.whereabouts, Whereabouts::Home(_)) && self.user_name().is_some()
    }

    fn is_person(&self) -> bool {
        matches!(
            self.whereabouts,
            Whereabouts::Home(_) | Whereabouts::Traveller(..) | Whereabouts::HomeAndVpn(_)
        )
    }

    /// The place a person works from on `day`.
    fn place(&self, day: i64) -> Option<&Place> {
        match &self.whereabouts {
            Whereabouts::Home(p) | Whereabouts::HomeAndVpn(p) => Some(p),
            Whereabouts::Traveller(a, b) => Some(if (day / 7) % 2 == 0 { a } else { b }),
            Whereabouts::Aws(_) => None,
        }
    }
}

pub fn principal_arn(identity: &Identity) -> String {
    match identity {
        Identity::User { account, name } => format!("arn:aws:iam::{account}:user/{name}"),
        Identity::Role { account, role, .. } => format!("arn:aws:iam::{account}:role/{role}"),
        Identity::Root { account } => format!("arn:aws:iam::{account}:root"),
    }
}

/// The simulated organisation.
#[derive(Debug, Clone)]
pub struct Org {
    pub accounts: Vec<String>,
    pub members: Vec<Member>,
}

impl Org {
    pub fn new(config: &SimulationConfig) -> Self {
        let accounts: Vec<String> = (0..config.accounts.max(1))
            .map(|i| format!("{:012}", 310_000_000_000u64 + i as u64 * 7_919_111))
            .collect();
        let countries: Vec<&str> = if config.countries.is_empty() {
            networks::countries()
        } else {
            config.countries.iter().map(String::as_str).collect()
        };
        let places: Vec<&'static Place> = countries
            .iter()
            .flat_map(|c| networks::places_in(c))
            .collect();
        assert!(
            !places.is_empty(),
            "no network known for countries {countries:?}"
        );
        let mut members = Vec::new();
        for (a, account) in accounts.iter().enumerate() {
            let region = REGIONS[a % REGIONS.len()];
            let app_bucket = format!("app-data-{account}");
            let shared_bucket = format!("reports-{account}");
            for u in 0..config.users_per_account {
                let role = [
                    Role::Developer,
                    Role::Operator,
                    Role::Analyst,
                    Role::ConsoleUser,
                ][u % 4];
                let n = a * config.users_per_account + u;
                let name = format!(
                    "{}.{}",
                    FIRST_NAMES[n % FIRST_NAMES.len()],
                    LAST_NAMES[(n / FIRST_NAMES.len() + n) % LAST_NAMES.len()]
                );
                let agent = match role {
                    Role::ConsoleUser => {
                        networks::CONSOLE_AGENTS[n % networks::CONSOLE_AGENTS.len()]
                    }
                    _ => networks::CLI_AGENTS[n % networks::CLI_AGENTS.len()],
                };
                members.push(Member {
                    identity: Identity::User {
                        account: account.clone(),
                        name,
                    },
                    role,
                    account: account.clone(),
                    home_region: region,
                    calls: repertoire(role, region),
                    buckets: vec![shared_bucket.clone()],
                    agent,
                    whereabouts: Whereabouts::Home(*places[n % places.len()]),
                    per_day: if role == Role::ConsoleUser {
                        25.0
                    } else {
                        50.0
                    },
                    assumes: Vec::new(),
                });
            }
            let people_here = members.len() - config.users_per_account..members.len();
            for r in 0..config.roles_per_account {
                if people_here.is_empty() {
                    break;
                }
                let role_name = ASSUMED_ROLES[r % ASSUMED_ROLES.len()];
                let arn = format!("arn:aws:iam::{account}:role/{role_name}");
                let person = &mut members[people_here.start + r % people_here.len()];
                person.calls.push(crate::call(
                    "sts.amazonaws.com",
                    "AssumeRole",
                    "us-east-1",
                    false,
                ));
                person.assumes.push(arn);
                let session = person.user_name().unwrap_or("session").to_string();
                let assumed = Member {
                    identity: Identity::Role {
                        account: account.clone(),
                        role: role_name.to_string(),
                        session,
                        ec2: false,
                    },
                    role: Role::AssumedByPeople,
                    calls: repertoire(Role::AssumedByPeople, region),
                    per_day: 15.0,
                    assumes: Vec::new(),
                    ..person.clone()
                };
                members.push(assumed);
            }
            for i in 0..config.instances_per_account {
                let n = a * 100 + i;
                members.push(Member {
                    identity: Identity::Role {
                        account: account.clone(),
                        role: format!("{}-server", APPS[n % APPS.len()]),
                        session: format!("i-0{:016x}", 0x5a1e_0000_0000u64 + n as u64 * 7_777),
                        ec2: true,
                    },
                    role: Role::Instance,
                    account: account.clone(),
                    home_region: region,
                    calls: repertoire(Role::Instance, region),
                    buckets: vec![app_bucket.clone()],
                    agent: networks::INSTANCE_AGENTS[n % networks::INSTANCE_AGENTS.len()],
                    whereabouts: Whereabouts::Aws(networks::aws_ips(region)),
                    per_day: 120.0,
                    assumes: Vec::new(),
                });
            }
            for i in 0..config.lambdas_per_account {
                let function = format!(
                    "{}-{}",
                    APPS[(a + i) % APPS.len()],
                    ["thumbnailer", "ingest", "notifier"][i % 3]
                );
                members.push(Member {
                    identity: Identity::Role {
                        account: account.clone(),
                        role: format!("{function}-role"),
                        session: function,
                        ec2: false,
                    },
                    role: Role::Function,
                    account: account.clone(),
                    home_region: region,
                    calls: repertoire(Role::Function, region),
                    buckets: vec![app_bucket.clone()],
                    agent: networks::LAMBDA_AGENT,
                    whereabouts: Whereabouts::Aws(networks::aws_ips(region)),
                    per_day: 60.0,
                    assumes: Vec::new(),
                });
            }
            members.push(Member {
                identity: Identity::Role {
                    account: account.clone(),
                    role: "terraform-deploy".into(),
                    session: "github-actions".into(),
                    ec2: false,
                },
                role: Role::Deployer,
                account: account.clone(),
                home_region: region,
                calls: repertoire(Role::Deployer, region),
                buckets: vec![format!("terraform-state-{account}")],
                agent: networks::TERRAFORM_AGENT,
                whereabouts: Whereabouts::Aws(networks::aws_ips("us-east-1")),
                per_day: 40.0,
                assumes: Vec::new(),
            });
        }
        members.extend(scenarios::special_members(config, &accounts[0]));
        Self { accounts, members }
    }

    /// Users that are not special personas, interleaved across accounts
    /// so that attacks land in different accounts.
    pub fn people(&self) -> Vec<usize> {
        let mut by_account: Vec<Vec<usize>> = vec![Vec::new(); self.accounts.len()];
        for (i, m) in self.members.iter().enumerate() {
            if m.is_ordinary_user() {
                let a = self
                    .accounts
                    .iter()
                    .position(|x| *x == m.account)
                    .unwrap_or(0);
                by_account[a].push(i);
            }
        }
        let longest = by_account.iter().map(Vec::len).max().unwrap_or(0);
        (0..longest)
            .flat_map(|k| by_account.iter().filter_map(move |v| v.get(k).copied()))
            .collect()
    }

    pub fn of_role(&self, role: Role) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].role == role)
            .collect()
    }
}

const ASSUMED_ROLES: &[&str] = &["PowerUser", "ReadOnly", "DataEngineer", "BillingViewer"];
const REGIONS: &[&str] = &["us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2"];
const APPS: &[&str] = &[
    "orders", "billing", "search", "catalog", "payments", "media", "auth",
];
const FIRST_NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yuki",
];
const LAST_NAMES: &[&str] = &[
    "smith", "mueller", "garcia", "tanaka", "singh", "dubois", "silva", "jones", "kim", "nguyen",
    "rossi",
];

/// Global services log their region as `us-east-1` wherever they are called.
const GLOBAL_REGION: &str = "us-east-1";

/// The global services the repertoires use.
fn is_global(source: &str) -> bool {
    ["iam.", "sts.", "signin.", "ce.", "health."]
        .iter()
        .any(|service| source.starts_with(service))
}

/// The calls a member of a role makes. S3 object calls name a bucket
/// (added per member); global services log `us-east-1`.
fn repertoire(role: Role, region: &'static str) -> Vec<Call> {
    use crate::call;
    let global = GLOBAL_REGION;
    let mut calls = match role {
        Role::Developer => vec![
            call("ec2.amazonaws.com", "DescribeInstances", region, true),
            call("s3.amazonaws.com", "ListObjects", region, true),
            call("s3.amazonaws.com", "GetObject", region, true),
            call("s3.amazonaws.com", "PutObject", region, false),
            call(
                "lambda.amazonaws.com",
                "ListFunctions20150331",
                region,
                true,
            ),
            call(
                "lambda.amazonaws.com",
                "GetFunction20150331v2",
                region,
                true,
            ),
            call("logs.amazonaws.com", "FilterLogEvents", region, true),
            call(
                "cloudformation.amazonaws.com",
                "DescribeStacks",
                region,
                true,
            ),
            call("dynamodb.amazonaws.com", "DescribeTable", region, true),
            call("ecr.amazonaws.com", "GetAuthorizationToken", region, true),
        ],
        Role::Operator | Role::AssumedByPeople => vec![
            call("ec2.amazonaws.com", "DescribeInstances", region, true),
            call("ec2.amazonaws.com", "DescribeSecurityGroups", region, true),
            call("ec2.amazonaws.com", "CreateTags", region, false),
            call("iam.amazonaws.com", "ListUsers", global, true),
            call("iam.amazonaws.com", "ListRoles", global, true),
            call("iam.amazonaws.com", "GetRole", global, true),
            call(
                "iam.amazonaws.com",
                "ListAttachedRolePolicies",
                global,
                true,
            ),
            call("cloudtrail.amazonaws.com", "LookupEvents", region, true),
            call("cloudwatch.amazonaws.com", "DescribeAlarms", region, true),
            call("s3.amazonaws.com", "ListBuckets", global, true),
        ],
        Role::Analyst => vec![
            call("athena.amazonaws.com", "StartQueryExecution", region, false),
            call("athena.amazonaws.com", "GetQueryExecution", region, true),
            call("athena.amazonaws.com", "GetQueryResults", region, true),
            call("glue.amazonaws.com", "GetTable", region, true),
            call("glue.amazonaws.com", "GetDatabases", region, true),
            call("s3.amazonaws.com", "GetObject", region, true),
            call("s3.amazonaws.com", "ListObjects", region, true),
        ],
        Role::ConsoleUser => vec![
            call("signin.amazonaws.com", "ConsoleLogin", global, false),
            call("ec2.amazonaws.com", "DescribeInstances", region, true),
            call("cloudwatch.amazonaws.com", "GetMetricData", region, true),
            call("s3.amazonaws.com", "ListBuckets", global, true),
            call("ce.amazonaws.com", "GetCostAndUsage", global, true),
            call(
                "health.amazonaws.com",
                "DescribeEventAggregates",
                global,
                true,
            ),
        ],
        Role::Instance => vec![
            call("s3.amazonaws.com", "GetObject", region, true),
            call("s3.amazonaws.com", "PutObject", region, false),
            call("kms.amazonaws.com", "Decrypt", region, true),
            call(
                "secretsmanager.amazonaws.com",
                "GetSecretValue",
                region,
                true,
            ),
            call("ssm.amazonaws.com", "GetParameter", region, true),
            call("ec2.amazonaws.com", "DescribeTags", region, true),
        ],
        Role::Function => vec![
            call("s3.amazonaws.com", "GetObject", region, true),
            call("s3.amazonaws.com", "PutObject", region, false),
            call("kms.amazonaws.com", "Decrypt", region, true),
            call("dynamodb.amazonaws.com", "DescribeTable", region, true),
        ],
        Role::Deployer => vec![
            call("ec2.amazonaws.com", "DescribeVpcs", region, true),
            call("ec2.amazonaws.com", "DescribeSubnets", region, true),
            call("ec2.amazonaws.com", "DescribeSecurityGroups", region, true),
            call("iam.amazonaws.com", "GetRole", global, true),
            call("iam.amazonaws.com", "GetPolicy", global, true),
            call(
                "lambda.amazonaws.com",
                "GetFunction20150331v2",
                region,
                true,
            ),
            call("s3.amazonaws.com", "GetObject", region, true),
            call("s3.amazonaws.com", "PutObject", region, false),
        ],
    };
    if matches!(role, Role::Developer | Role::Operator | Role::Analyst) {
        calls.push(call("sts.amazonaws.com", "GetCallerIdentity", global, true));
    }
    calls
}

/// One simulated call, ready to be added to a day.
pub struct Emit<'a> {
    pub member: &'a Member,
    pub call: Call,
    pub time_ms: i64,
    pub ip: &'a str,
    pub agent: &'a str,
    pub error: Option<&'a str>,
    pub request: Value,
}

impl Generator {
    /// A member's record with its request parameters.
    pub fn emit(&mut self, e: Emit<'_>) -> Value {
        let mut r = self.record(
            &e.member.identity,
            &e.call,
            e.time_ms,
            e.ip,
            e.agent,
            e.error,
        );
        r["requestParameters"] = e.request;
        if e.call.name == "ConsoleLogin" {
            r["responseElements"] = json!({"ConsoleLogin": "Success"});
            r["additionalEventData"] =
                json!({"MFAUsed": "Yes", "LoginTo": "https://console.aws.amazon.com/console/home"});
        }
        r
    }
}

/// Request parameters a detector reads: the bucket of S3 object calls.
fn request_for(call: &Call, member: &Member, pick: usize) -> Value {
    match call.name {
        "GetObject" | "PutObject" | "ListObjects" => {
            let bucket = &member.buckets[pick % member.buckets.len()];
            json!({"bucketName": bucket, "key": format!("data/part-{:05}.parquet", pick % 1000)})
        }
        "AssumeRole" if !member.assumes.is_empty() => json!({
            "roleArn": member.assumes[pick % member.assumes.len()],
            "roleSessionName": member.user_name().unwrap_or("session"),
        }),
        _ => Value::Null,
    }
}

/// A member's background calls on `day`; with `second_region`, every
/// other regional call goes there (infrastructure code rolled out to it).
fn background_day(
    g: &mut Generator,
    config: &SimulationConfig,
    m: &Member,
    day: i64,
    second_region: Option<&'static str>,
) -> Vec<Value> {
    let midnight = config.start_ms + day * DAY_MS;
    let weekday = DateTime::from_timestamp_millis(midnight).map_or(Weekday::Mon, |t| t.weekday());
    let weekend = matches!(weekday, Weekday::Sat | Weekday::Sun);
    let person = m.is_person();
    let factor = if person && weekend { 0.08 } else { 1.0 };
    let jitter = g.rng.random_range(0.7..1.3);
    let mut n = (m.per_day * config.volume * factor * jitter).round() as usize;
    // The first day covers the whole repertoire, every network and one
    // refused call, so the baselines learn them during training.
    let first_day = day == 0;
    if first_day {
        n = n.max(m.calls.len() * 2);
    }
    let place = m.place(day);
    // Infrastructure code runs a few times a day, each run a burst of calls.
    let runs: Vec<i64> = (0..3)
        .map(|_| g.rng.random_range(9..18) * HOUR_MS)
        .collect();
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let mut call = if first_day && k < m.calls.len() {
            m.calls[k]
        } else {
            m.calls[g.rng.random_range(0..m.calls.len())]
        };
        if let Some(region) = second_region
            && k % 2 == 0
            && !is_global(call.source)
        {
            call.region = region;
        }
        let time_ms = midnight + call_time(g, m, place, &runs);
        let ip = match (&m.whereabouts, place) {
            (Whereabouts::HomeAndVpn(_), Some(_))
                if (first_day && k % 2 == 1) || g.rng.random_ratio(1, 3) =>
            {
                networks::VPN_EXIT
            }
            (_, Some(p)) => {
                p.ips[if first_day {
                    k % p.ips.len()
                } else {
                    g.rng.random_range(0..p.ips.len())
                }]
            }
            (Whereabouts::Aws(ips), None) => ips[g.rng.random_range(0..ips.len())],
            _ => unreachable!("people have a place, machines AWS addresses"),
        };
        let refused = person && ((first_day && k == m.calls.len()) || g.rng.random_ratio(1, 200));
        let pick = g.rng.random_range(0..1000);
        out.push(g.emit(Emit {
            member: m,
            call,
            time_ms,
            ip,
            agent: m.agent,
            error: refused.then_some("AccessDenied"),
            request: request_for(&call, m, pick),
        }));
    }
    let drifts = m.is_ordinary_user() && !first_day && !weekend;
    if drifts && g.rng.random_bool(config.drift.clamp(0.0, 1.0)) {
        let (source, name) = DRIFT[g.rng.random_range(0..DRIFT.len())];
        let (time_ms, ip) = (
            midnight + call_time(g, m, place, &runs),
            place.map_or("", |p| p.ips[0]),
        );
        let call = crate::call(source, name, m.home_region, true);
        out.push(g.emit(Emit {
            member: m,
            call,
            time_ms,
            ip,
            agent: m.agent,
            error: None,
            request: Value::Null,
        }));
    }
    out
}

/// Calls people make now and then outside their usual work.
const DRIFT: &[(&str, &str)] = &[
    ("ec2.amazonaws.com", "DescribeVolumes"),
    ("ec2.amazonaws.com", "DescribeImages"),
    ("rds.amazonaws.com", "DescribeDBInstances"),
    ("sqs.amazonaws.com", "ListQueues"),
    ("sns.amazonaws.com", "ListTopics"),
    ("cloudwatch.amazonaws.com", "ListDashboards"),
    ("ssm.amazonaws.com", "DescribeParameters"),
    ("route53.amazonaws.com", "ListHostedZones"),
    (
        "elasticloadbalancing.amazonaws.com",
        "DescribeLoadBalancers",
    ),
    ("kms.amazonaws.com", "ListAliases"),
];

/// Milliseconds after midnight UTC: office hours around local midday for
/// people, a day-heavy curve for machines.
fn call_time(g: &mut Generator, m: &Member, place: Option<&Place>, runs: &[i64]) -> i64 {
    match place {
        Some(p) => {
            // Triangular between 08:00 and 18:00 local time.
            let local = 8.0 + 5.0 * (g.rng.random::<f64>() + g.rng.random::<f64>());
            let utc = (local - f64::from(p.utc_offset_hours)).rem_euclid(24.0);
            (utc * HOUR_MS as f64) as i64
        }
        None if m.role == Role::Deployer => {
            // A run starts on the hour and lasts two minutes.
            runs[g.rng.random_range(0..runs.len())] + g.rng.random_range(0..120_000)
        }
        None => loop {
            let t = g.rng.random_range(0..DAY_MS);
            let hour = t / HOUR_MS;
            let busy = if (8..20).contains(&hour) { 1.0 } else { 0.5 };
            if g.rng.random::<f64>() < busy {
                break t;
            }
        },
    }
}

/// Run the simulation: `each_day` gets every day's records sorted by
/// event time; returns the labels of the injected scenarios.
pub fn simulate<E>(
    config: &SimulationConfig,
    mut each_day: impl FnMut(i64, Vec<Value>) -> Result<(), E>,
) -> Result<Vec<Label>, E> {
    let org = Org::new(config);
    let mut g = Generator::new(config.seed);
    let planned = scenarios::inject(&mut g, config, &org);
    let mut injected: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    let mut labels = Vec::new();
    for (records, label) in planned.injections {
        for r in records {
            let day = (time_ms(&r) - config.start_ms).div_euclid(DAY_MS);
            injected.entry(day).or_default().push(r);
        }
        labels.push(label);
    }
    for day in 0..config.days {
        let mut records = Vec::new();
        for m in &org.members {
            let second_region = planned
                .second_region
                .as_ref()
                .filter(|(who, from_day, _)| *who == m.principal() && day >= *from_day)
                .map(|(_, _, region)| *region);
            records.extend(background_day(&mut g, config, m, day, second_region));
        }
        records.extend(injected.remove(&day).unwrap_or_default());
        records.sort_by_cached_key(time_ms);
        each_day(day, records)?;
    }
    Ok(labels)
}

/// How a dataset's logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// S3 delivery files: `{"Records":[…]}`, gzipped, one per account,
    /// region and 5 minutes, under `AWSLogs/…` as CloudTrail names them.
    S3,
    /// One event per line in `events.jsonl` (what the benchmarks read).
    JsonLines,
}

/// What [`write_dataset`] wrote.
#[derive(Debug, Clone, Default)]
pub struct DatasetSummary {
    pub events: u64,
    pub files: u64,
    pub labels: Vec<Label>,
}

/// Where a dataset keeps its logs and labels.
pub fn logs_dir(dataset: &Path) -> PathBuf {
    dataset.join("logs")
}
pub fn labels_path(dataset: &Path) -> PathBuf {
    dataset.join("labels.jsonl")
}

/// Simulate into `dataset`: logs under `logs/`, one label per line in
/// `labels.jsonl`.
pub fn write_dataset(
    config: &SimulationConfig,
    dataset: &Path,
    format: LogFormat,
) -> std::io::Result<DatasetSummary> {
    use std::io::Write;
    let logs = logs_dir(dataset);
    std::fs::create_dir_all(&logs)?;
    let mut summary = DatasetSummary::default();
    let mut lines = match format {
        LogFormat::JsonLines => Some(std::io::BufWriter::new(std::fs::File::create(
            logs.join("events.jsonl"),
        )?)),
        LogFormat::S3 => None,
    };
    let labels = simulate(config, |_, records| -> std::io::Result<()> {
        summary.events += records.len() as u64;
        match lines.as_mut() {
            Some(out) => {
                for r in &records {
                    serde_json::to_writer(&mut *out, r)?;
                    out.write_all(b"\n")?;
                }
            }
            None => {
                for (path, doc) in s3_delivery_files(records, 5, "sim") {
                    write_gzip_json(&logs.join(path), &doc, flate2::Compression::fast())?;
                    summary.files += 1;
                }
            }
        }
        Ok(())
    })?;
    if let Some(mut out) = lines {
        out.flush()?;
        summary.files = 1;
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(labels_path(dataset))?);
    for label in &labels {
        serde_json::to_writer(&mut out, label)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    summary.labels = labels;
    Ok(summary)
}

/// Read a dataset's labels file.
pub fn read_labels(path: &Path) -> Result<Vec<Label>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

pub fn time_ms(record: &Value) -> i64 {
    record["eventTime"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(0, |t| t.timestamp_millis())
}

/// Group records as CloudTrail delivers them to S3: one file per account,
/// region and `minutes` (CloudTrail's are 5), its records in event-time
/// order, named by the start of its time slot and ending in
/// `_{tag}.json.gz`. Returns (relative path,
/// `{"Records":[…]}`).
pub fn s3_delivery_files(records: Vec<Value>, minutes: i64, tag: &str) -> Vec<(String, Value)> {
    let slot_ms = minutes * 60_000;
    let mut files: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in records {
        let account = r["recipientAccountId"]
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        let region = r["awsRegion"].as_str().unwrap_or("unknown").to_string();
        let t = time_ms(&r);
        let Some(slot) = DateTime::from_timestamp_millis(t - t.rem_euclid(slot_ms)) else {
            continue;
        };
        let path = format!(
            "AWSLogs/{account}/CloudTrail/{region}/{}/{account}_CloudTrail_{region}_{}Z_{tag}.json.gz",
            slot.format("%Y/%m/%d"),
            slot.format("%Y%m%dT%H%M"),
        );
        files.entry(path).or_default().push(r);
    }
    files
        .into_iter()
        .map(|(path, mut records)| {
            records.sort_by_cached_key(time_ms);
            (path, json!({ "Records": records }))
        })
        .collect()
}

/// Write `doc` gzip-compressed at `path`, making its folders.
pub fn write_gzip_json(
    path: &Path,
    doc: &Value,
    level: flate2::Compression,
) -> std::io::Result<()> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(path)?, level);
    serde_json::to_writer(&mut gz, doc)?;
    gz.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SimulationConfig {
        SimulationConfig {
            days: 3,
            accounts: 2,
            users_per_account: 8,
            attack_day: 1,
            ..Default::default()
        }
    }

    fn run(config: &SimulationConfig) -> (Vec<Value>, Vec<Label>) {
        let mut all = Vec::new();
        let labels = simulate::<()>(config, |_, day| {
            all.extend(day);
            Ok(())
        })
        .unwrap();
        (all, labels)
    }

    #[test]
    fn deterministic_for_a_seed() {
        let (a, la) = run(&small());
        let (b, lb) = run(&small());
        assert_eq!(a, b);
        assert_eq!(la, lb);
        let (c, _) = run(&SimulationConfig { seed: 2, ..small() });
        assert_ne!(a, c);
    }

    #[test]
    fn people_keep_office_hours_and_weekends_are_quiet() {
        let config = SimulationConfig {
            days: 14,
            scenarios: Vec::new(),
            ..small()
        };
        let org = Org::new(&config);
        let (records, labels) = run(&config);
        assert!(labels.is_empty());
        let person = &org.members[org.people()[0]];
        let Whereabouts::Home(place) = &person.whereabouts else {
            panic!("people()[0] is at home")
        };
        let theirs: Vec<_> = records
            .iter()
            .filter(|r| r["userIdentity"]["userName"] == json!(person.user_name().unwrap()))
            .collect();
        for r in &theirs {
            let t = DateTime::from_timestamp_millis(time_ms(r)).unwrap();
            use chrono::Timelike;
            let local = (i64::from(t.hour()) + i64::from(place.utc_offset_hours)).rem_euclid(24);
            assert!(
                (8..18).contains(&local),
                "{} at {local}h local",
                r["eventTime"]
            );
            assert!(place.ips.contains(&r["sourceIPAddress"].as_str().unwrap()));
        }
        let on = |weekend: bool| {
            theirs
                .iter()
                .filter(|r| {
                    let wd = DateTime::from_timestamp_millis(time_ms(r))
                        .unwrap()
                        .weekday();
                    matches!(wd, Weekday::Sat | Weekday::Sun) == weekend
                })
                .count()
        };
        assert!(
            on(false) > 5 * on(true),
            "weekdays {} weekend {}",
            on(false),
            on(true)
        );
    }

    #[test]
    fn drift_adds_calls_outside_the_repertoire_on_working_days() {
        let config = SimulationConfig {
            days: 5, // Friday 1 March 2024 to Tuesday: two working days after the first
            scenarios: Vec::new(),
            drift: 1.0,
            ..small()
        };
        let drifted = |config: &SimulationConfig| {
            run(config)
                .0
                .iter()
                .filter(|r| {
                    DRIFT
                        .iter()
                        .any(|(s, n)| r["eventSource"] == *s && r["eventName"] == *n)
                })
                .count()
        };
        assert_eq!(drifted(&config), Org::new(&config).people().len() * 2);
        assert_eq!(
            drifted(&SimulationConfig {
                drift: 0.0,
                ..config
            }),
            0
        );
    }

    #[test]
    fn delivery_files_are_per_account_region_and_five_minutes() {
        let (records, _) = run(&SimulationConfig {
            days: 1,
            scenarios: Vec::new(),
            ..small()
        });
        let n = records.len();
        let files = s3_delivery_files(records, 5, "sim");
        assert_eq!(
            files
                .iter()
                .map(|(_, d)| d["Records"].as_array().unwrap().len())
                .sum::<usize>(),
            n
        );
        for (path, doc) in &files {
            for r in doc["Records"].as_array().unwrap() {
                let account = r["recipientAccountId"].as_str().unwrap();
                let region = r["awsRegion"].as_str().unwrap();
                assert!(
                    path.starts_with(&format!("AWSLogs/{account}/CloudTrail/{region}/")),
                    "{path}"
                );
                let minute: u32 = r["eventTime"].as_str().unwrap()[14..16].parse().unwrap();
                assert!(
                    path.contains(&format!("{:02}Z_", minute / 5 * 5)),
                    "{path} {}",
                    r["eventTime"]
                );
            }
        }
    }
}
