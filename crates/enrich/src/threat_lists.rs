//! Threat lists (TH-017): files of IP addresses and CIDRs, one per line,
//! `#` starting a comment, each list named by its file stem (a custom list,
//! Tor exit nodes, a feed's export). A file that changes on disk is read
//! again when the enricher next checks its files; a file that cannot be
//! read keeps its last good contents, with a warning.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use ipnet::IpNet;

use crate::watched::modified;

#[derive(Debug)]
pub struct ThreatLists {
    lists: Vec<List>,
}

#[derive(Debug)]
struct List {
    path: PathBuf,
    name: String,
    modified: Option<SystemTime>,
    /// Sorted, merged address ranges.
    ranges: Vec<Range>,
}

impl ThreatLists {
    /// Load every list; problems are returned as warnings, never errors.
    pub fn open(paths: &[PathBuf]) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        let lists = paths
            .iter()
            .map(|path| {
                let mut list = List {
                    name: path.file_stem().map_or_else(
                        || path.display().to_string(),
                        |s| s.to_string_lossy().into_owned(),
                    ),
                    path: path.clone(),
                    modified: None,
                    ranges: Vec::new(),
                };
                warnings.extend(list.load());
                list
            })
            .collect();
        (Self { lists }, warnings)
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// The names of the lists that hold `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Vec<String> {
        let ip = as_u128(ip);
        self.lists
            .iter()
            .filter(|l| {
                let i = l.ranges.partition_point(|(start, _)| *start <= ip);
                i > 0 && l.ranges[i - 1].1 >= ip
            })
            .map(|l| l.name.clone())
            .collect()
    }

    /// Read again the files that changed since they were read. True when
    /// any list changed.
    pub fn refresh(&mut self) -> bool {
        let mut changed = false;
        for list in &mut self.lists {
            if modified(&list.path) != list.modified {
                for warning in list.load() {
                    tracing::warn!("{warning}");
                }
                tracing::info!(list = %list.name, ranges = list.ranges.len(), "threat list reloaded");
                changed = true;
            }
        }
        changed
    }
}

impl List {
    /// (Re)read the file; returns warnings. Unreadable: keep the old ranges.
    fn load(&mut self) -> Vec<String> {
        let path = self.path.display();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) => {
                return vec![format!(
                    "threat list {path} unreadable, keeping {} ranges: {e}",
                    self.ranges.len()
                )];
            }
        };
        self.modified = modified(&self.path);
        let (ranges, bad) = parse(&text);
        self.ranges = ranges;
        bad.into_iter()
            .map(|(line, entry)| {
                format!("threat list {path}:{line}: not an address or CIDR: {entry:?}")
            })
            .collect()
    }
}

/// An inclusive address range, IPv4 as IPv4-mapped IPv6.
type Range = (u128, u128);

/// Ranges of a list's text, sorted and merged, and its bad lines (number, text).
fn parse(text: &str) -> (Vec<Range>, Vec<(usize, String)>) {
    let mut ranges = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let net = entry
            .parse::<IpNet>()
            .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from));
        match net {
            Ok(net) => ranges.push((as_u128(net.network()), as_u128(net.broadcast()))),
            Err(_) => bad.push((i + 1, entry.to_string())),
        }
    }
    ranges.sort_unstable();
    let mut merged: Vec<Range> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    (merged, bad)
}

fn as_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_cidrs_match_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let tor = dir.path().join("tor-exits.txt");
        std::fs::write(
            &tor,
            "# exits\n185.220.101.0/24\n 192.0.2.7 # one host\nnot-an-ip\n2001:db8::/32\n",
        )
        .unwrap();
        let (lists, warnings) = ThreatLists::open(&[tor.clone(), dir.path().join("missing.txt")]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("tor-exits.txt:4") && warnings[0].contains("not-an-ip"));
        assert!(warnings[1].contains("missing.txt"));
        assert_eq!(lists.lookup(ip("185.220.101.44")), ["tor-exits"]);
        assert_eq!(lists.lookup(ip("192.0.2.7")), ["tor-exits"]);
        assert_eq!(lists.lookup(ip("2001:db8::1")), ["tor-exits"]);
        assert!(lists.lookup(ip("192.0.2.8")).is_empty());
        assert!(lists.lookup(ip("185.220.102.1")).is_empty());
    }

    #[test]
    fn a_changed_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("custom.txt");
        std::fs::write(&path, "10.0.0.0/8\n").unwrap();
        let (mut lists, _) = ThreatLists::open(std::slice::from_ref(&path));
        assert!(!lists.refresh(), "nothing changed");
        std::fs::write(&path, "203.0.113.0/24\n").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(lists.refresh());
        assert_eq!(lists.lookup(ip("203.0.113.9")), ["custom"]);
        assert!(lists.lookup(ip("10.1.2.3")).is_empty());
    }

    #[test]
    fn overlapping_ranges_merge() {
        let (ranges, bad) = parse("10.0.0.0/24\n10.0.0.128/25\n10.0.1.0/24\n");
        assert!(bad.is_empty());
        assert_eq!(ranges.len(), 1);
    }
}
