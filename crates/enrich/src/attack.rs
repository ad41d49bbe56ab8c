//! eventName → ATT&CK tactic and technique, from the table derived by
//! `scripts/derive-attack-table` (sources and licences in NOTICE).

use std::collections::HashMap;

use trailhound_proto::Attack;

const TABLE: &str = include_str!("../data/attack.csv");

/// The shipped mapping. Names ending in `*` in the table match by prefix.
#[derive(Debug)]
pub struct AttackTable {
    exact: HashMap<&'static str, Attack>,
    prefixes: Vec<(&'static str, Attack)>,
}

impl AttackTable {
    pub fn builtin() -> Self {
        let mut exact = HashMap::new();
        let mut prefixes = Vec::new();
        for line in TABLE.lines().skip(1) {
            let mut cols = line.split(',');
            let (Some(name), Some(_source), Some(tactic), Some(technique)) =
                (cols.next(), cols.next(), cols.next(), cols.next())
            else {
                continue;
            };
            let attack = Attack {
                tactic: tactic.to_string(),
                technique: technique.to_string(),
            };
            match name.strip_suffix('*') {
                Some(prefix) => prefixes.push((prefix, attack)),
                None => {
                    exact.insert(name, attack);
                }
            }
        }
        // Longest prefix first, so the most specific entry wins.
        prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Self { exact, prefixes }
    }

    pub fn lookup(&self, event_name: &str) -> Option<&Attack> {
        self.exact.get(event_name).or_else(|| {
            self.prefixes
                .iter()
                .find(|(p, _)| event_name.starts_with(p))
                .map(|(_, a)| a)
        })
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.prefixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_frequent_mappings_and_additions() {
        let t = AttackTable::builtin();
        let get = |n| {
            t.lookup(n)
                .map(|a| (a.tactic.as_str(), a.technique.as_str()))
        };
        assert_eq!(get("StopLogging"), Some(("defense-evasion", "T1562.008")));
        assert_eq!(get("CreateAccessKey"), Some(("persistence", "T1098")));
        assert_eq!(
            get("ModifySnapshotAttribute"),
            Some(("exfiltration", "T1537"))
        );
        assert!(get("RevokeSecurityGroupEgress").is_some());
        assert!(
            get("AddLayerVersionPermission20181031").is_some(),
            "prefix rows match"
        );
        assert_eq!(get("NoSuchCall"), None);
        assert!(t.len() > 500);
    }
}
