//! AWS's published address ranges (`ip-ranges.json`): is an address inside
//! AWS, and in which region and service. The most specific prefix wins, so
//! an EC2 range beats the `AMAZON` range that contains it.

use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use crate::EnrichError;

/// The snapshot shipped with Trailhound (2026-08-22); see NOTICE.
const BUILTIN: &[u8] = include_bytes!("../data/ip-ranges-2026-08-22.json.gz");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsRange {
    pub region: String,
    pub service: String,
}

/// Prefixes grouped by length; a lookup tries the longest length first.
#[derive(Debug, Default)]
pub struct AwsRanges {
    v4: Vec<(u8, HashMap<u32, AwsRange>)>,
    v6: Vec<(u8, HashMap<u128, AwsRange>)>,
    pub sync_token: String,
}

#[derive(Deserialize)]
struct File {
    #[serde(rename = "syncToken", default)]
    sync_token: String,
    prefixes: Vec<Prefix>,
    #[serde(default)]
    ipv6_prefixes: Vec<Prefix>,
}

#[derive(Deserialize)]
struct Prefix {
    #[serde(alias = "ipv6_prefix")]
    ip_prefix: String,
    region: String,
    service: String,
}

impl AwsRanges {
    pub fn builtin() -> Self {
        Self::from_bytes("builtin ip-ranges", BUILTIN)
            .expect("the shipped ip-ranges snapshot parses")
    }

    /// Load `ip-ranges.json`, plain or gzip.
    pub fn open(path: &Path) -> Result<Self, EnrichError> {
        let bytes = std::fs::read(path).map_err(|e| EnrichError::Database {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_bytes(&path.display().to_string(), &bytes)
    }

    fn from_bytes(name: &str, bytes: &[u8]) -> Result<Self, EnrichError> {
        let err = |message: String| EnrichError::Database {
            path: name.to_string(),
            message,
        };
        let mut text = Vec::new();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut text)
                .map_err(|e| err(e.to_string()))?;
        } else {
            text = bytes.to_vec();
        }
        let file: File = serde_json::from_slice(&text)
            .map_err(|e| err(format!("not an ip-ranges.json: {e}")))?;
        let mut ranges = AwsRanges {
            sync_token: file.sync_token,
            ..Default::default()
        };
        for p in file.prefixes.into_iter().chain(file.ipv6_prefixes) {
            let (addr, len) = p
                .ip_prefix
                .split_once('/')
                .ok_or_else(|| err(format!("bad prefix {}", p.ip_prefix)))?;
            let len: u8 = len
                .parse()
                .map_err(|_| err(format!("bad prefix {}", p.ip_prefix)))?;
            let range = AwsRange {
                region: p.region,
                service: p.service,
            };
            match addr
                .parse::<IpAddr>()
                .map_err(|_| err(format!("bad prefix {}", p.ip_prefix)))?
            {
                IpAddr::V4(a) => insert(&mut ranges.v4, len, mask32(u32::from(a), len), range),
                IpAddr::V6(a) => insert(&mut ranges.v6, len, mask128(u128::from(a), len), range),
            }
        }
        ranges.v4.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        ranges.v6.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        Ok(ranges)
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<&AwsRange> {
        match ip {
            IpAddr::V4(a) => self
                .v4
                .iter()
                .find_map(|(len, m)| m.get(&mask32(u32::from(a), *len))),
            IpAddr::V6(a) => self
                .v6
                .iter()
                .find_map(|(len, m)| m.get(&mask128(u128::from(a), *len))),
        }
    }

    pub fn prefix_count(&self) -> usize {
        self.v4.iter().map(|(_, m)| m.len()).sum::<usize>()
            + self.v6.iter().map(|(_, m)| m.len()).sum::<usize>()
    }
}

fn insert<K: std::hash::Hash + Eq>(
    groups: &mut Vec<(u8, HashMap<K, AwsRange>)>,
    len: u8,
    key: K,
    range: AwsRange,
) {
    let group = match groups.iter().position(|(l, _)| *l == len) {
        Some(i) => &mut groups[i].1,
        None => {
            groups.push((len, HashMap::new()));
            &mut groups.last_mut().expect("just pushed").1
        }
    };
    // Keep the more specific service when a prefix is listed twice (AMAZON and EC2).
    let entry = group.entry(key).or_insert_with(|| range.clone());
    if entry.service == "AMAZON" {
        *entry = range;
    }
}

fn mask32(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - u32::from(len.min(32))))
    }
}

fn mask128(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(len.min(128))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_answers_of_the_snapshot() {
        let r = AwsRanges::builtin();
        assert!(r.prefix_count() > 10_000, "{}", r.prefix_count());
        let get = |ip: &str| r.lookup(ip.parse().unwrap()).cloned();
        assert_eq!(
            get("3.225.16.109"),
            Some(AwsRange {
                region: "us-east-1".into(),
                service: "EC2".into()
            })
        );
        assert_eq!(get("52.45.102.28").unwrap().region, "us-east-1");
        assert_eq!(get("52.95.110.1").unwrap().region, "GLOBAL");
        for outside in ["1.2.3.4", "8.8.8.8", "92.55.146.245"] {
            assert_eq!(get(outside), None, "{outside}");
        }
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("th-ranges-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ip-ranges.json");
        std::fs::write(&path, b"{\"prefixes\": [").unwrap();
        let err = AwsRanges::open(&path).unwrap_err().to_string();
        assert!(err.contains("ip-ranges.json"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
