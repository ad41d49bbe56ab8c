//! Labelled scenarios injected into a simulation: attacks, each with the
//! detectors that must find it, and benign look-alikes that must not fire.

use chrono::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::networks::{self, PLACES, Place};
use crate::simulate::{Emit, Member, Org, Role, SimulationConfig, Whereabouts, principal_arn};
use crate::{Call, DAY_MS, Generator, Identity, call};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// Days of history a principal needs before novelty detectors fire for it
/// (the default training period, 30 days, plus a day).
pub const TRAINED_AFTER_DAYS: i64 = 31;
/// Time between two injected scenarios.
pub const SCENARIO_SPACING_MS: i64 = 4 * HOUR;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    Ec2CredentialsOtherRegion,
    Ec2CredentialsOutsideAws,
    StolenUserKeys,
    ImpossibleTravel,
    RootCredentialUse,
    AccessKeyBackdoor,
    ApiSurgeAndEnumeration,
    S3Exfiltration,
    SecurityGroupOpened,
    CloudTrailStopped,
    SnapshotShared,
    RoleAssumptionChain,
    LambdaCredentialsOtherRegion,
    // Benign look-alikes.
    PlaneTravel,
    VpnUser,
    NewRegionByInfrastructure,
    GlobalServiceNewRegion,
    AwsInternalCalls,
}

impl Scenario {
    pub const ALL: [Scenario; 18] = [
        Scenario::Ec2CredentialsOtherRegion,
        Scenario::Ec2CredentialsOutsideAws,
        Scenario::StolenUserKeys,
        Scenario::ImpossibleTravel,
        Scenario::RootCredentialUse,
        Scenario::AccessKeyBackdoor,
        Scenario::ApiSurgeAndEnumeration,
        Scenario::S3Exfiltration,
        Scenario::SecurityGroupOpened,
        Scenario::CloudTrailStopped,
        Scenario::SnapshotShared,
        Scenario::RoleAssumptionChain,
        Scenario::LambdaCredentialsOtherRegion,
        Scenario::PlaneTravel,
        Scenario::VpnUser,
        Scenario::NewRegionByInfrastructure,
        Scenario::GlobalServiceNewRegion,
        Scenario::AwsInternalCalls,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Ec2CredentialsOtherRegion => "ec2-credentials-other-region",
            Scenario::Ec2CredentialsOutsideAws => "ec2-credentials-outside-aws",
            Scenario::StolenUserKeys => "stolen-user-keys",
            Scenario::ImpossibleTravel => "impossible-travel",
            Scenario::RootCredentialUse => "root-credential-use",
            Scenario::AccessKeyBackdoor => "access-key-backdoor",
            Scenario::ApiSurgeAndEnumeration => "api-surge-and-enumeration",
            Scenario::S3Exfiltration => "s3-exfiltration",
            Scenario::SecurityGroupOpened => "security-group-opened",
            Scenario::CloudTrailStopped => "cloudtrail-stopped",
            Scenario::SnapshotShared => "snapshot-shared",
            Scenario::RoleAssumptionChain => "role-assumption-chain",
            Scenario::LambdaCredentialsOtherRegion => "lambda-credentials-other-region",
            Scenario::PlaneTravel => "benign-plane-travel",
            Scenario::VpnUser => "benign-vpn-user",
            Scenario::NewRegionByInfrastructure => "benign-new-region-by-infrastructure",
            Scenario::GlobalServiceNewRegion => "benign-global-service-new-region",
            Scenario::AwsInternalCalls => "benign-aws-internal-calls",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn malicious(self) -> bool {
        !self.name().starts_with("benign-")
    }

    /// The detectors that must find the attack (none for a look-alike).
    pub fn expected(self) -> &'static [&'static str] {
        match self {
            Scenario::Ec2CredentialsOtherRegion | Scenario::LambdaCredentialsOtherRegion => {
                &["TH-002"]
            }
            Scenario::Ec2CredentialsOutsideAws => &["TH-002", "TH-021"],
            Scenario::StolenUserKeys => &["TH-015", "TH-018", "TH-019"],
            Scenario::ImpossibleTravel => &["TH-016"],
            Scenario::RootCredentialUse => &["TH-010"],
            Scenario::AccessKeyBackdoor => &["TH-011"],
            Scenario::ApiSurgeAndEnumeration => &["TH-008", "TH-009"],
            Scenario::S3Exfiltration => &["TH-013"],
            Scenario::SecurityGroupOpened => &["TH-014"],
            Scenario::CloudTrailStopped | Scenario::SnapshotShared => &["TH-022"],
            Scenario::RoleAssumptionChain => &["TH-012"],
            _ => &[],
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Scenario::Ec2CredentialsOtherRegion => {
                "an instance's role credentials, stolen from its metadata service, used from an EC2 instance of another region"
            }
            Scenario::Ec2CredentialsOutsideAws => {
                "an instance's role credentials used from a hosting network outside AWS, in its region and another"
            }
            Scenario::StolenUserKeys => {
                "an IAM user's access keys used from a new country and network with Kali Linux's AWS CLI"
            }
            Scenario::ImpossibleTravel => {
                "a user calls from home, then 30 minutes later from another continent"
            }
            Scenario::RootCredentialUse => {
                "the root user signs in without MFA and lists the account's users"
            }
            Scenario::AccessKeyBackdoor => "a user creates an access key for another user",
            Scenario::ApiSurgeAndEnumeration => {
                "an enumeration tool (Pacu) calls 240 APIs of 24 services in four minutes"
            }
            Scenario::S3Exfiltration => {
                "a user lists the buckets and downloads 300 objects of a bucket never read before"
            }
            Scenario::SecurityGroupOpened => "SSH opened to the world on a security group",
            Scenario::CloudTrailStopped => "the trail's logging stopped, then the trail deleted",
            Scenario::SnapshotShared => "an EBS snapshot shared with an outside account",
            Scenario::RoleAssumptionChain => {
                "a user assumes a role in another account, which assumes an administrator role"
            }
            Scenario::LambdaCredentialsOtherRegion => {
                "a Lambda function's credentials used from an EC2 instance of another region"
            }
            Scenario::PlaneTravel => {
                "a person who alternates weeks between New York and Frankfurt flies overnight (about 780 km/h)"
            }
            Scenario::VpnUser => {
                "a person who often connects through a commercial VPN (a hosting network in another country) switches back and forth"
            }
            Scenario::NewRegionByInfrastructure => {
                "infrastructure code rolls out to a second region during training and keeps using it"
            }
            Scenario::GlobalServiceNewRegion => {
                "a user calls STS through regional endpoints of regions they never used"
            }
            Scenario::AwsInternalCalls => {
                "AWS services call on behalf of principals (sourceIPAddress and user agent 'AWS Internal' or a service name)"
            }
        }
    }
}

/// One injected scenario, as written to the labels file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub scenario: String,
    pub malicious: bool,
    pub account: String,
    /// The principals (as findings name them) whose findings belong to it.
    pub principals: Vec<String>,
    /// Detectors that must fire; empty for benign look-alikes.
    pub expected: Vec<String>,
    /// Event-time range, RFC 3339.
    pub start: String,
    pub end: String,
    pub description: String,
}

impl Label {
    pub fn start_ms(&self) -> i64 {
        parse_ms(&self.start)
    }
    pub fn end_ms(&self) -> i64 {
        parse_ms(&self.end)
    }
}

fn parse_ms(t: &str) -> i64 {
    DateTime::parse_from_rfc3339(t).map_or(0, |t| t.timestamp_millis())
}

fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .expect("simulated times are valid")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// What the simulation must add: scenario records with their labels, and
/// a deployment role that moves to a second region from a given day.
pub struct Planned {
    pub injections: Vec<(Vec<Value>, Label)>,
    pub second_region: Option<(String, i64, &'static str)>,
}

/// Members the scenarios need beyond the ordinary organisation.
pub fn special_members(config: &SimulationConfig, account: &str) -> Vec<Member> {
    let person = |name: &str, whereabouts| Member {
        identity: Identity::User {
            account: account.to_string(),
            name: name.into(),
        },
        role: Role::Developer,
        account: account.to_string(),
        home_region: "us-east-1",
        calls: vec![
            call("ec2.amazonaws.com", "DescribeInstances", "us-east-1", true),
            call("s3.amazonaws.com", "ListObjects", "us-east-1", true),
            call("logs.amazonaws.com", "FilterLogEvents", "us-east-1", true),
            call("sts.amazonaws.com", "GetCallerIdentity", "us-east-1", true),
        ],
        buckets: vec![format!("reports-{account}")],
        agent: networks::CLI_AGENTS[0],
        whereabouts,
        per_day: 30.0,
        assumes: Vec::new(),
    };
    let newark = **networks::places_in("US")
        .iter()
        .find(|p| p.utc_offset_hours == -5)
        .expect("Newark");
    let frankfurt = *networks::places_in("DE")[0];
    let london = *networks::places_in("GB")[0];
    let mut out = Vec::new();
    if config.scenarios.contains(&Scenario::PlaneTravel) {
        out.push(person(
            "flying.traveller",
            Whereabouts::Traveller(newark, frankfurt),
        ));
    }
    if config.scenarios.contains(&Scenario::VpnUser) {
        out.push(person("vpn.user", Whereabouts::HomeAndVpn(london)));
    }
    out
}

pub(crate) fn validate(config: &SimulationConfig) -> Result<(), String> {
    if config.scenarios.is_empty() {
        return Ok(());
    }
    if config.attack_day < TRAINED_AFTER_DAYS {
        return Err(format!(
            "attacks need {TRAINED_AFTER_DAYS} days of history first (the training period): attack day {} is too early",
            config.attack_day
        ));
    }
    let last = config.attack_day * DAY_MS + SCENARIO_SPACING_MS * config.scenarios.len() as i64;
    let needed = last.div_euclid(DAY_MS) + 2;
    if config.days < needed {
        return Err(format!(
            "{} scenarios from day {} need at least {needed} days",
            config.scenarios.len(),
            config.attack_day
        ));
    }
    if config.scenarios.contains(&Scenario::PlaneTravel) && config.days < 37 {
        return Err("the plane-travel look-alike needs 37 days (the traveller's first flight after training is on day 35)".into());
    }
    let org = Org::new(config);
    let people_needed = config
        .scenarios
        .iter()
        .filter(|s| s.uses_a_person())
        .count();
    let (people, instances, functions) = (
        org.people().len(),
        org.of_role(Role::Instance).len(),
        org.of_role(Role::Function).len(),
    );
    let needs = |s: Scenario| config.scenarios.contains(&s) as usize;
    if people < people_needed {
        return Err(format!(
            "the scenarios need {people_needed} users, the organisation has {people}"
        ));
    }
    if instances
        < needs(Scenario::Ec2CredentialsOtherRegion)
            + needs(Scenario::Ec2CredentialsOutsideAws)
            + needs(Scenario::AwsInternalCalls)
    {
        return Err("the scenarios need more EC2 instances".into());
    }
    if functions < needs(Scenario::LambdaCredentialsOtherRegion) {
        return Err("the Lambda scenario needs a Lambda function".into());
    }
    Ok(())
}

impl Scenario {
    fn uses_a_person(self) -> bool {
        matches!(
            self,
            Scenario::StolenUserKeys
                | Scenario::ImpossibleTravel
                | Scenario::AccessKeyBackdoor
                | Scenario::ApiSurgeAndEnumeration
                | Scenario::S3Exfiltration
                | Scenario::SecurityGroupOpened
                | Scenario::CloudTrailStopped
                | Scenario::SnapshotShared
                | Scenario::RoleAssumptionChain
                | Scenario::GlobalServiceNewRegion
                | Scenario::AwsInternalCalls
        )
    }
}

/// Victims are taken in order from the organisation's members.
struct Victims<'a> {
    org: &'a Org,
    people: Vec<usize>,
    instances: std::vec::IntoIter<usize>,
    functions: std::vec::IntoIter<usize>,
}

impl<'a> Victims<'a> {
    fn person(&mut self) -> &'a Member {
        assert!(!self.people.is_empty(), "validated: enough people");
        &self.org.members[self.people.remove(0)]
    }
    /// The next person whose repertoire has the call (any person if none has).
    fn person_calling(&mut self, name: &str) -> &'a Member {
        let members = &self.org.members;
        match self
            .people
            .iter()
            .position(|&i| members[i].calls.iter().any(|c| c.name == name))
        {
            Some(k) => &members[self.people.remove(k)],
            None => self.person(),
        }
    }
    fn instance(&mut self) -> &'a Member {
        &self.org.members[self.instances.next().expect("validated: enough instances")]
    }
    fn function(&mut self) -> &'a Member {
        &self.org.members[self.functions.next().expect("validated: a function")]
    }
}

/// Plan every configured scenario: attacks 4 hours apart from the attack day.
pub fn inject(g: &mut Generator, config: &SimulationConfig, org: &Org) -> Planned {
    let mut victims = Victims {
        org,
        people: org.people(),
        instances: org.of_role(Role::Instance).into_iter(),
        functions: org.of_role(Role::Function).into_iter(),
    };
    let mut planned = Planned {
        injections: Vec::new(),
        second_region: None,
    };
    for (i, &scenario) in config.scenarios.iter().enumerate() {
        let t0 = config.start_ms
            + config.attack_day * DAY_MS
            + 2 * HOUR
            + i as i64 * SCENARIO_SPACING_MS;
        let mut s = Script {
            g,
            t: t0,
            records: Vec::new(),
        };
        let (principals, range): (Vec<&Member>, Option<(i64, i64)>) = match scenario {
            Scenario::Ec2CredentialsOtherRegion => {
                let m = victims.instance();
                let region = other_region(m.home_region);
                let ip = networks::aws_ips(region)[0];
                let cli = networks::CLI_AGENTS[1];
                s.call(
                    m,
                    call("sts.amazonaws.com", "GetCallerIdentity", "us-east-1", true),
                    ip,
                    cli,
                    Value::Null,
                );
                for name in [
                    "DescribeInstances",
                    "DescribeSecurityGroups",
                    "DescribeInstances",
                ] {
                    s.call(
                        m,
                        call("ec2.amazonaws.com", name, region, true),
                        ip,
                        cli,
                        Value::Null,
                    );
                }
                s.call(
                    m,
                    call("secretsmanager.amazonaws.com", "ListSecrets", region, true),
                    ip,
                    cli,
                    Value::Null,
                );
                (vec![m], None)
            }
            Scenario::Ec2CredentialsOutsideAws => {
                let m = victims.instance();
                let region = other_region(m.home_region);
                let ip = networks::ATTACKER_HOSTING;
                let cli = networks::KALI_AGENT;
                s.call(
                    m,
                    call(
                        "secretsmanager.amazonaws.com",
                        "GetSecretValue",
                        m.home_region,
                        true,
                    ),
                    ip,
                    cli,
                    Value::Null,
                );
                s.call(
                    m,
                    call("kms.amazonaws.com", "Decrypt", m.home_region, true),
                    ip,
                    cli,
                    Value::Null,
                );
                s.call(
                    m,
                    call("ec2.amazonaws.com", "DescribeInstances", region, true),
                    ip,
                    cli,
                    Value::Null,
                );
                (vec![m], None)
            }
            Scenario::StolenUserKeys => {
                let m = victims.person();
                let ip = networks::ATTACKER_HOSTING;
                s.call(
                    m,
                    call("sts.amazonaws.com", "GetCallerIdentity", "us-east-1", true),
                    ip,
                    networks::KALI_AGENT,
                    Value::Null,
                );
                s.call(
                    m,
                    call(
                        "ec2.amazonaws.com",
                        "DescribeInstances",
                        m.home_region,
                        true,
                    ),
                    ip,
                    networks::KALI_AGENT,
                    Value::Null,
                );
                s.call(
                    m,
                    call("s3.amazonaws.com", "ListObjects", m.home_region, true),
                    ip,
                    networks::KALI_AGENT,
                    json!({"bucketName": m.buckets[0]}),
                );
                (vec![m], None)
            }
            Scenario::ImpossibleTravel => {
                let m = victims.person();
                let home = m_place(m);
                let far = farthest_place(home);
                let c = m
                    .calls
                    .iter()
                    .copied()
                    .find(|c| c.name != "ConsoleLogin")
                    .expect("a call");
                s.call(m, c, home.ips[0], m.agent, Value::Null);
                s.t += 30 * MINUTE;
                s.call(m, c, far.ips[0], m.agent, Value::Null);
                s.call(m, c, far.ips[0], m.agent, Value::Null);
                (vec![m], None)
            }
            Scenario::RootCredentialUse => {
                let account = &org.accounts[i % org.accounts.len()];
                let root = Member {
                    identity: Identity::Root {
                        account: account.clone(),
                    },
                    role: Role::ConsoleUser,
                    account: account.clone(),
                    home_region: "us-east-1",
                    calls: Vec::new(),
                    buckets: Vec::new(),
                    agent: networks::CONSOLE_AGENTS[2],
                    whereabouts: Whereabouts::Aws(&[]),
                    per_day: 0.0,
                    assumes: Vec::new(),
                };
                let ip = networks::ATTACKER_HOSTING;
                let mut login = s.g.emit(Emit {
                    member: &root,
                    call: call("signin.amazonaws.com", "ConsoleLogin", "us-east-1", false),
                    time_ms: s.t,
                    ip,
                    agent: root.agent,
                    error: None,
                    request: Value::Null,
                });
                login["additionalEventData"]["MFAUsed"] = json!("No");
                s.push(login);
                s.call(
                    &root,
                    call("iam.amazonaws.com", "GetAccountSummary", "us-east-1", true),
                    ip,
                    root.agent,
                    Value::Null,
                );
                s.call(
                    &root,
                    call("iam.amazonaws.com", "ListUsers", "us-east-1", true),
                    ip,
                    root.agent,
                    Value::Null,
                );
                let label = s.label(scenario, account, vec![principal_arn(&root.identity)], None);
                planned.injections.push(label);
                continue;
            }
            Scenario::AccessKeyBackdoor => {
                let m = victims.person();
                let other = org
                    .members
                    .iter()
                    .find(|o| {
                        o.account == m.account
                            && o.user_name().is_some()
                            && o.user_name() != m.user_name()
                    })
                    .and_then(Member::user_name)
                    .unwrap_or("backup-admin");
                s.own(
                    m,
                    call("iam.amazonaws.com", "ListUsers", "us-east-1", true),
                    Value::Null,
                );
                s.own(
                    m,
                    call("iam.amazonaws.com", "CreateAccessKey", "us-east-1", false),
                    json!({"userName": other}),
                );
                (vec![m], None)
            }
            Scenario::ApiSurgeAndEnumeration => {
                let m = victims.person();
                let ip = networks::ATTACKER_HOSTING;
                for k in 0..240 {
                    let (source, name) = ENUMERATION[k % ENUMERATION.len()];
                    s.t += 1_000;
                    s.call(
                        m,
                        call(source, name, m.home_region, true),
                        ip,
                        networks::PACU_AGENT,
                        Value::Null,
                    );
                }
                (vec![m], None)
            }
            Scenario::S3Exfiltration => {
                let m = victims.person();
                let bucket = format!("finance-exports-{}", m.account);
                s.own(
                    m,
                    call("s3.amazonaws.com", "ListBuckets", "us-east-1", true),
                    Value::Null,
                );
                for k in 0..300 {
                    s.t += 800;
                    s.own(
                        m,
                        call("s3.amazonaws.com", "GetObject", m.home_region, true),
                        json!({"bucketName": bucket, "key": format!("exports/{k:04}.csv")}),
                    );
                }
                (vec![m], None)
            }
            Scenario::SecurityGroupOpened => {
                let m = victims.person();
                let request = json!({"groupId": "sg-0a1b2c3d4e5f60718", "ipPermissions": {"items": [{"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}}]}});
                s.own(
                    m,
                    call(
                        "ec2.amazonaws.com",
                        "AuthorizeSecurityGroupIngress",
                        m.home_region,
                        false,
                    ),
                    request,
                );
                (vec![m], None)
            }
            Scenario::CloudTrailStopped => {
                let m = victims.person();
                let trail = json!({"name": "organization-trail"});
                s.own(
                    m,
                    call(
                        "cloudtrail.amazonaws.com",
                        "StopLogging",
                        m.home_region,
                        false,
                    ),
                    trail.clone(),
                );
                s.own(
                    m,
                    call(
                        "cloudtrail.amazonaws.com",
                        "DeleteTrail",
                        m.home_region,
                        false,
                    ),
                    trail,
                );
                (vec![m], None)
            }
            Scenario::SnapshotShared => {
                let m = victims.person();
                let request = json!({"snapshotId": "snap-0a1b2c3d4e5f60718", "attributeType": "CREATE_VOLUME_PERMISSION", "createVolumePermission": {"add": {"items": [{"userId": "999988887777"}]}}});
                s.own(
                    m,
                    call(
                        "ec2.amazonaws.com",
                        "ModifySnapshotAttribute",
                        m.home_region,
                        false,
                    ),
                    request,
                );
                (vec![m], None)
            }
            Scenario::RoleAssumptionChain => {
                let m = victims.person();
                let target = org
                    .accounts
                    .iter()
                    .find(|a| **a != m.account)
                    .unwrap_or(&m.account);
                let hop = Member {
                    identity: Identity::Role {
                        account: target.clone(),
                        role: "OrganizationAccountAccessRole".into(),
                        session: m.user_name().unwrap_or("session").into(),
                        ec2: false,
                    },
                    ..m.clone()
                };
                let first = format!("arn:aws:iam::{target}:role/OrganizationAccountAccessRole");
                let second = format!("arn:aws:iam::{target}:role/security-admin");
                s.own(
                    m,
                    call("sts.amazonaws.com", "AssumeRole", "us-east-1", false),
                    json!({"roleArn": first, "roleSessionName": m.user_name()}),
                );
                s.t += 2 * MINUTE;
                s.own(
                    &hop,
                    call("sts.amazonaws.com", "AssumeRole", "us-east-1", false),
                    json!({"roleArn": second, "roleSessionName": "admin"}),
                );
                let label = s.label(
                    scenario,
                    &m.account,
                    vec![m.principal(), hop.principal()],
                    None,
                );
                planned.injections.push(label);
                continue;
            }
            Scenario::LambdaCredentialsOtherRegion => {
                let m = victims.function();
                let region = other_region(m.home_region);
                let ip = networks::aws_ips(region)[0];
                // The function's environment credentials, copied to the attacker's CLI.
                let cli = networks::CLI_AGENTS[1];
                s.call(
                    m,
                    call("s3.amazonaws.com", "ListBuckets", "us-east-1", true),
                    ip,
                    cli,
                    Value::Null,
                );
                s.call(
                    m,
                    call("dynamodb.amazonaws.com", "ListTables", region, true),
                    ip,
                    cli,
                    Value::Null,
                );
                s.call(
                    m,
                    call("dynamodb.amazonaws.com", "DescribeTable", region, true),
                    ip,
                    cli,
                    Value::Null,
                );
                (vec![m], None)
            }
            Scenario::PlaneTravel => {
                let m = org
                    .members
                    .iter()
                    .find(|m| matches!(m.whereabouts, Whereabouts::Traveller(..)))
                    .expect("traveller");
                // The first flight after training: weeks alternate, so day 35.
                let arrival = 35;
                let range = (
                    config.start_ms + (arrival - 1) * DAY_MS,
                    config.start_ms + (arrival + 1) * DAY_MS - 1,
                );
                (vec![m], Some(range))
            }
            Scenario::VpnUser => {
                let m = org
                    .members
                    .iter()
                    .find(|m| matches!(m.whereabouts, Whereabouts::HomeAndVpn(_)))
                    .expect("VPN user");
                let day = (t0 - config.start_ms).div_euclid(DAY_MS);
                let range = (
                    config.start_ms + day * DAY_MS,
                    config.start_ms + (day + 1) * DAY_MS - 1,
                );
                (vec![m], Some(range))
            }
            Scenario::NewRegionByInfrastructure => {
                let m = &org.members[org.of_role(Role::Deployer)[0]];
                let from_day = 10;
                planned.second_region =
                    Some((m.principal(), from_day, other_region(m.home_region)));
                let range = (
                    config.start_ms + from_day * DAY_MS,
                    config.start_ms + config.days * DAY_MS - 1,
                );
                (vec![m], Some(range))
            }
            Scenario::GlobalServiceNewRegion => {
                let m = victims.person_calling("GetCallerIdentity");
                for region in ["ap-south-1", "sa-east-1", "ca-central-1"] {
                    s.own(
                        m,
                        call("sts.amazonaws.com", "GetCallerIdentity", region, true),
                        Value::Null,
                    );
                }
                (vec![m], None)
            }
            Scenario::AwsInternalCalls => {
                let person = victims.person();
                let instance = victims.instance();
                let c = person
                    .calls
                    .iter()
                    .copied()
                    .find(|c| c.name != "ConsoleLogin")
                    .expect("a call");
                let mut by_service = s.g.emit(Emit {
                    member: person,
                    call: c,
                    time_ms: s.t,
                    ip: "cloudformation.amazonaws.com",
                    agent: "cloudformation.amazonaws.com",
                    error: None,
                    request: Value::Null,
                });
                by_service["userIdentity"]["invokedBy"] = json!("cloudformation.amazonaws.com");
                s.push(by_service);
                s.t += MINUTE;
                s.call(
                    instance,
                    call("kms.amazonaws.com", "Decrypt", instance.home_region, true),
                    "AWS Internal",
                    "AWS Internal",
                    Value::Null,
                );
                let label = s.label(
                    scenario,
                    &person.account,
                    vec![person.principal(), instance.principal()],
                    None,
                );
                planned.injections.push(label);
                continue;
            }
        };
        let account = principals[0].account.clone();
        let names = principals.iter().map(|m| m.principal()).collect();
        planned
            .injections
            .push(s.label(scenario, &account, names, range));
    }
    planned
}

/// Writes a scenario's records one after the other.
struct Script<'g> {
    g: &'g mut Generator,
    t: i64,
    records: Vec<Value>,
}

impl Script<'_> {
    /// A call by `m` from its own network and with its own client.
    fn own(&mut self, m: &Member, call: Call, request: Value) {
        self.call(m, call, m_place(m).ips[0], m.agent, request);
    }

    fn call(&mut self, m: &Member, call: Call, ip: &str, agent: &str, request: Value) {
        let r = self.g.emit(Emit {
            member: m,
            call,
            time_ms: self.t,
            ip,
            agent,
            error: None,
            request,
        });
        self.push(r);
    }

    fn push(&mut self, r: Value) {
        self.records.push(r);
        self.t += 10_000;
    }

    /// The label: the records' time range unless the scenario gives one.
    fn label(
        &mut self,
        scenario: Scenario,
        account: &str,
        principals: Vec<String>,
        range: Option<(i64, i64)>,
    ) -> (Vec<Value>, Label) {
        let times: Vec<i64> = self.records.iter().map(crate::simulate::time_ms).collect();
        let (start, end) = range.unwrap_or_else(|| {
            (
                times.iter().copied().min().unwrap_or(self.t),
                times.iter().copied().max().unwrap_or(self.t),
            )
        });
        let label = Label {
            scenario: scenario.name().to_string(),
            malicious: scenario.malicious(),
            account: account.to_string(),
            principals,
            expected: scenario.expected().iter().map(|d| d.to_string()).collect(),
            start: rfc3339(start),
            end: rfc3339(end),
            description: scenario.description().to_string(),
        };
        (std::mem::take(&mut self.records), label)
    }
}

fn m_place(m: &Member) -> &Place {
    match &m.whereabouts {
        Whereabouts::Home(p) | Whereabouts::HomeAndVpn(p) | Whereabouts::Traveller(p, _) => p,
        Whereabouts::Aws(_) => panic!("{} is not a person", m.principal()),
    }
}

/// A place on another continent: the farthest by UTC offset.
fn farthest_place(home: &Place) -> &'static Place {
    PLACES
        .iter()
        .max_by_key(|p| {
            let d = (p.utc_offset_hours - home.utc_offset_hours).rem_euclid(24);
            d.min(24 - d)
        })
        .expect("places")
}

fn other_region(home: &str) -> &'static str {
    if home == "ap-northeast-1" {
        "eu-west-3"
    } else {
        "ap-northeast-1"
    }
}

/// What an enumeration tool lists: 24 services.
const ENUMERATION: &[(&str, &str)] = &[
    ("ec2.amazonaws.com", "DescribeInstances"),
    ("s3.amazonaws.com", "ListBuckets"),
    ("iam.amazonaws.com", "ListUsers"),
    ("lambda.amazonaws.com", "ListFunctions20150331"),
    ("rds.amazonaws.com", "DescribeDBInstances"),
    ("dynamodb.amazonaws.com", "ListTables"),
    ("sqs.amazonaws.com", "ListQueues"),
    ("sns.amazonaws.com", "ListTopics"),
    ("kms.amazonaws.com", "ListKeys"),
    ("secretsmanager.amazonaws.com", "ListSecrets"),
    ("ssm.amazonaws.com", "DescribeParameters"),
    ("ecr.amazonaws.com", "DescribeRepositories"),
    ("ecs.amazonaws.com", "ListClusters"),
    ("eks.amazonaws.com", "ListClusters"),
    ("cloudformation.amazonaws.com", "ListStacks"),
    ("cloudtrail.amazonaws.com", "DescribeTrails"),
    ("guardduty.amazonaws.com", "ListDetectors"),
    ("config.amazonaws.com", "DescribeConfigRules"),
    ("route53.amazonaws.com", "ListHostedZones"),
    (
        "elasticloadbalancing.amazonaws.com",
        "DescribeLoadBalancers",
    ),
    ("autoscaling.amazonaws.com", "DescribeAutoScalingGroups"),
    ("apigateway.amazonaws.com", "GetRestApis"),
    ("logs.amazonaws.com", "DescribeLogGroups"),
    ("organizations.amazonaws.com", "DescribeOrganization"),
];
