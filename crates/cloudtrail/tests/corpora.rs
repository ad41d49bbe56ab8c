//! Every CloudTrail event in ../shared/data parses without a panic, and the
//! usable and rejected counts are the ones the corpora's documentation
//! (SOURCES.md) implies.

use std::io::Read;
use std::path::PathBuf;

use trailhound_cloudtrail::{Parsed, Source, parse_document};

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel)
}

#[derive(Default, Debug)]
struct Counts {
    used: usize,
    rejected: usize,
    reasons: Vec<String>,
}

impl Counts {
    fn add(&mut self, p: Parsed) {
        match p {
            Ok(e) => {
                assert!(!e.event_id.is_empty() && e.event_time_ms > 0, "{e:?}");
                self.used += 1;
            }
            Err(r) => {
                self.rejected += 1;
                self.reasons.push(r.to_string());
            }
        }
    }
}

fn json_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(shared(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn stratus_detonation_logs() {
    let mut counts = Counts::default();
    let files = json_files("stratus-red-team/detonation-logs");
    assert_eq!(files.len(), 35);
    for path in files {
        Source::open(&path)
            .unwrap()
            .parse(false, &mut |p| counts.add(p))
            .unwrap();
    }
    assert_eq!(
        (counts.used, counts.rejected),
        (310, 0),
        "{:?}",
        counts.reasons
    );
}

#[test]
fn traildiscover_examples() {
    let mut counts = Counts::default();
    for path in json_files("traildiscover-log-examples") {
        Source::open(&path)
            .unwrap()
            .parse(false, &mut |p| counts.add(p))
            .unwrap();
    }
    assert_eq!(
        (counts.used, counts.rejected),
        (562, 1),
        "{:?}",
        counts.reasons
    );
    assert!(
        counts.reasons[0].contains("missing userIdentity"),
        "{:?}",
        counts.reasons
    );
}

#[test]
fn panther_rule_test_logs() {
    let mut text = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(shared(
            "panther-analysis/panther_cloudtrail_rule_tests.jsonl.gz",
        ))
        .unwrap(),
    )
    .read_to_string(&mut text)
    .unwrap();
    let mut counts = Counts::default();
    let mut lines = 0;
    for (i, line) in text.lines().enumerate() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let log = serde_json::to_vec(&row["log"]).unwrap();
        parse_document(&format!("panther:{}", i + 1), &log, false, &mut |p| {
            counts.add(p)
        })
        .unwrap();
        lines += 1;
    }
    assert_eq!(lines, 537);
    // 90 lack eventTime, 4 userIdentity, 1 eventSource; 2 have a placeholder time.
    assert_eq!(
        (counts.used, counts.rejected),
        (440, 97),
        "{:#?}",
        counts.reasons
    );
    let missing_time = counts
        .reasons
        .iter()
        .filter(|r| r.contains("missing eventTime"))
        .count();
    assert_eq!(missing_time, 90);
    assert!(
        counts
            .reasons
            .iter()
            .any(|r| r.contains("\"redacted\" is not a time"))
    );
}
