//! Real networks the simulated organisation calls from, so the GeoIP and ASN
//! databases resolve them (checked against the shipped databases by
//! `tests/tests/simulate.rs`).

/// Where a person works: one or two addresses of the same metro area
/// (home broadband and a nearby office or mobile network), and the UTC
/// offset of its working day.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    pub country: &'static str,
    pub ips: &'static [&'static str],
    pub utc_offset_hours: i32,
}

const fn place(
    country: &'static str,
    ips: &'static [&'static str],
    utc_offset_hours: i32,
) -> Place {
    Place {
        country,
        ips,
        utc_offset_hours,
    }
}

/// Residential and business networks by country (ISO code).
pub const PLACES: &[Place] = &[
    // Comcast, Sunnyvale and Daly City
    place("US", &["73.162.10.20", "98.207.1.1"], -8),
    // Verizon, Newark
    place("US", &["71.172.10.10"], -5),
    // Vodafone and Deutsche Telekom, Frankfurt
    place("DE", &["91.64.10.10", "84.128.10.10"], 1),
    // Andrews & Arnold, London
    place("GB", &["81.2.69.142"], 0),
    // Free, Paris
    place("FR", &["82.64.10.10"], 1),
    // SoftBank, Tokyo
    place("JP", &["126.10.10.10", "60.70.10.10"], 9),
    // BSNL, Bengaluru
    place("IN", &["117.200.10.10"], 5),
    // GIGA MAIS FIBRA, Manaus
    place("BR", &["177.131.167.145"], -4),
    // Telstra, Melbourne
    place("AU", &["101.160.10.10", "1.120.10.10"], 10),
    // Rogers, Toronto
    place("CA", &["24.114.10.10"], -5),
    // Bredband2, Stockholm
    place("SE", &["89.160.20.112"], 1),
    // KPN, Amsterdam
    place("NL", &["84.80.10.10"], 1),
    // StarHub, Singapore
    place("SG", &["116.86.10.10"], 8),
];

/// The places of a country; empty for a country the table lacks.
pub fn places_in(country: &str) -> Vec<&'static Place> {
    PLACES.iter().filter(|p| p.country == country).collect()
}

/// Countries the table covers.
pub fn countries() -> Vec<&'static str> {
    let mut all: Vec<_> = PLACES.iter().map(|p| p.country).collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// EC2 and Lambda addresses of AWS regions (Amazon's ASNs 14618/16509).
pub const AWS_REGION_IPS: &[(&str, &[&str])] = &[
    ("us-east-1", &["3.225.16.109", "52.45.102.28"]),
    ("eu-west-1", &["34.240.10.10", "52.16.10.10"]),
    ("eu-central-1", &["18.184.10.10"]),
    ("eu-west-3", &["35.180.10.10"]),
    ("ap-southeast-2", &["13.236.10.10"]),
    ("ap-northeast-1", &["54.250.10.10"]),
    ("ap-south-1", &["35.154.10.10"]),
];

pub fn aws_ips(region: &str) -> &'static [&'static str] {
    AWS_REGION_IPS
        .iter()
        .find(|(r, _)| *r == region)
        .map_or(AWS_REGION_IPS[0].1, |(_, ips)| ips)
}

/// A commercial VPN's exits (M247, a hosting network) in London.
pub const VPN_EXIT: &str = "37.120.200.10";

/// Attackers: a Russian hosting provider and a Tor exit in Germany.
pub const ATTACKER_HOSTING: &str = "45.146.164.10";
pub const TOR_EXIT: &str = "185.220.101.10";

/// Clients of realistic versions, by kind.
pub const CONSOLE_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 Edg/122.0.2365.92",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:124.0) Gecko/20100101 Firefox/124.0",
];
pub const CLI_AGENTS: &[&str] = &[
    "aws-cli/2.15.30 Python/3.11.8 Darwin/23.4.0 exe/x86_64 prompt/off command/ec2.describe-instances",
    "aws-cli/2.15.28 Python/3.11.8 Linux/6.5.0-26-generic exe/x86_64.ubuntu.22 prompt/off command/s3.cp",
    "aws-cli/2.15.30 Python/3.11.8 Windows/10 exe/AMD64 prompt/off command/logs.filter-log-events",
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/macos#23.4.0 md/arch#arm64 lang/python#3.12.2 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69",
];
pub const INSTANCE_AGENTS: &[&str] = &[
    "aws-sdk-go-v2/1.26.0 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/s3#1.53.0",
    "aws-sdk-java/1.12.680 Linux/5.10.210-201.852.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS java/17.0.10 vendor/Amazon.com_Inc.",
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.210-201.852.amzn2.x86_64 md/arch#x86_64 lang/python#3.9.16 Botocore/1.34.69",
];
pub const LAMBDA_AGENT: &str =
    "aws-sdk-nodejs/2.1560.0 linux/v20.11.1 exec-env/AWS_Lambda_nodejs20.x promise";
pub const TERRAFORM_AGENT: &str = "APN/1.0 HashiCorp/1.0 Terraform/1.7.5 (+https://www.terraform.io) terraform-provider-aws/5.42.0 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.26.0 os/linux lang/go#1.22.1";
pub const KALI_AGENT: &str = "aws-cli/2.13.5 Python/3.11.4 Linux/6.3.0-kali1-amd64 exe/x86_64.kali.2023 prompt/off command/s3.ls";
pub const PACU_AGENT: &str = "Boto3/1.28.57 Python/3.11.4 Linux/6.3.0-kali1-amd64 Botocore/1.31.57";
