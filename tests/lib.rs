//! Helpers shared by the end-to-end tests: write synthesized CloudTrail as
//! S3 delivery files, configure a scan with the real GeoIP databases, and
//! summarise findings for exact comparison.

pub mod cluster;
pub mod rule_coverage;

use std::path::{Path, PathBuf};

use serde_json::Value;
use trailhound_enrich::EnricherConfig;
use trailhound_pipeline::ScanConfig;
use trailhound_proto::{Finding, Severity};
use trailhound_synth::simulate::{s3_delivery_files, write_gzip_json};

pub fn shared(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel)
}

/// A scan over the real DB-IP City Lite and RouteViews ASN databases.
pub fn scan_config() -> ScanConfig {
    ScanConfig {
        enrich: EnricherConfig {
            geoip_city: Some(shared("geoip/dbip-city-lite-2023-04.mmdb.gz")),
            geoip_asn: Some(shared("geoip/routeviews-dbip-asn-lite-2026-06.mmdb.gz")),
            aws_ip_ranges: Some("builtin".into()),
            threat_lists: Vec::new(),
        },
        ..ScanConfig::default()
    }
}

/// Write records as gzip-compressed S3 delivery files under `dir`, one per
/// account, region and UTC day (CloudTrail's are per 5 minutes; a day keeps
/// the services' ingest in these tests small).
pub fn write_delivery(dir: &Path, records: &[Value]) {
    for (rel, doc) in s3_delivery_files(records.to_vec(), 24 * 60, "example") {
        write_gzip_json(&dir.join(rel), &doc, flate2::Compression::fast()).unwrap();
    }
}

/// A record's event time in milliseconds.
pub fn time_ms(record: &Value) -> i64 {
    let t = record["eventTime"].as_str().expect("eventTime");
    trailhound_cloudtrail::time::parse_event_time(t).expect("event time")
}

/// The records in event-time order, then shuffled within 15-minute buckets
/// of event time, as CloudTrail's late delivery does.
pub fn shuffle_within_reorder_window(records: &mut [Value], seed: u64) {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let bucket = |r: &Value| time_ms(r) / (15 * 60_000);
    records.sort_by_cached_key(bucket);
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    for same_bucket in records.chunk_by_mut(|a, b| bucket(a) == bucket(b)) {
        same_bucket.shuffle(&mut rng);
    }
}

/// What `scan` with [`scan_config`] finds under `logs`, sorted by id (so two
/// runs compare field for field).
pub fn scanned_findings(logs: &Path) -> Vec<Finding> {
    let report = trailhound_pipeline::scan(&[logs.to_path_buf()], &scan_config(), &mut |_| {})
        .expect("scan");
    let mut findings = report.findings.to_vec().expect("findings read back");
    findings.sort_by(|a, b| a.id.cmp(&b.id));
    findings
}

/// Write records as one JSON-lines file, which keeps their order exactly.
pub fn write_json_lines(path: &Path, records: &[Value]) {
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(path, lines.join("\n")).unwrap();
}

/// (detector, severity, key, count) of each finding, sorted: what a
/// scenario asserts exactly.
pub fn summary(findings: &[Finding]) -> Vec<(String, &'static str, String, u64)> {
    let mut out: Vec<_> = findings
        .iter()
        .map(|f| {
            let sev = Severity::try_from(f.severity).unwrap().label();
            (f.detector.clone(), sev, f.key.clone(), f.count)
        })
        .collect();
    out.sort();
    out
}
