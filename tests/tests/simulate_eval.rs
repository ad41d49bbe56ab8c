//! `simulate` → `scan` → `eval` end to end: every labelled attack is found
//! by its expected detectors, no benign look-alike raises a finding, and
//! switching a detector off is noticed. The simulated networks resolve to
//! the countries and network kinds the scenarios assume.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use trailhound_detect::config::DetectorSettings;
use trailhound_e2e::{
    scan_config, scanned_findings, shared, shuffle_within_reorder_window, summary, write_json_lines,
};
use trailhound_enrich::geo::GeoDb;
use trailhound_enrich::hosting::is_hosting;
use trailhound_eval::{Evaluation, evaluate};
use trailhound_pipeline::ScanConfig;
use trailhound_proto::Severity;
use trailhound_synth::networks::{ATTACKER_HOSTING, AWS_REGION_IPS, PLACES, VPN_EXIT};
use trailhound_synth::simulate::{
    LogFormat, SimulationConfig, labels_path, logs_dir, read_labels, simulate, write_dataset,
};

fn simulation() -> SimulationConfig {
    let config = SimulationConfig {
        seed: 3,
        volume: 0.3,
        ..SimulationConfig::default()
    };
    config.validate().unwrap();
    config
}

fn dataset(dir: &Path) -> u64 {
    write_dataset(&simulation(), dir, LogFormat::S3)
        .unwrap()
        .events
}

fn run(dir: &Path, config: &ScanConfig) -> Evaluation {
    let labels = read_labels(&labels_path(dir)).unwrap();
    let report = trailhound_pipeline::scan(&[logs_dir(dir)], config, &mut |_| {}).unwrap();
    assert_eq!(report.events_rejected, 0);
    evaluate(
        &report.findings.to_vec().unwrap(),
        &labels,
        report.events_read - report.events_duplicate,
        Severity::Low,
    )
}

#[test]
fn every_attack_found_no_look_alike_fires_and_a_switched_off_detector_shows() {
    let dir = tempfile::tempdir().unwrap();
    let events = dataset(dir.path());
    let evaluation = run(dir.path(), &scan_config());
    let report = evaluation.table();
    assert_eq!(evaluation.events, events);
    assert!(evaluation.perfect(), "{report}");
    assert_eq!(evaluation.recall, 1.0, "{report}");
    let attacks = evaluation.scenarios.iter().filter(|s| s.malicious).count();
    let look_alikes = evaluation.scenarios.len() - attacks;
    assert_eq!((attacks, look_alikes), (13, 5), "{report}");
    for s in evaluation.scenarios.iter().filter(|s| s.malicious) {
        let seconds = s.time_to_detection_seconds.expect("detected");
        assert!(seconds <= 60.0, "{}: {seconds} s\n{report}", s.scenario);
    }

    let mut without_th002 = scan_config();
    without_th002.detection.detectors.insert(
        "TH-002".into(),
        DetectorSettings {
            enabled: Some(false),
            ..Default::default()
        },
    );
    let evaluation = run(dir.path(), &without_th002);
    assert!(!evaluation.perfect());
    let missed: Vec<_> = evaluation
        .scenarios
        .iter()
        .filter(|s| !s.missed.is_empty())
        .map(|s| (s.scenario.as_str(), s.missed.join(" ")))
        .collect();
    assert_eq!(
        missed,
        [
            ("ec2-credentials-other-region", "TH-002".to_string()),
            ("ec2-credentials-outside-aws", "TH-002".to_string()),
            ("lambda-credentials-other-region", "TH-002".to_string()),
        ]
    );
}

#[test]
fn findings_do_not_depend_on_delivery_order_across_accounts_and_regions() {
    // The organisation's delivery files, read in delivery-time order with
    // accounts and regions interleaved per 5 minutes ...
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let from_delivery_files = scanned_findings(&logs_dir(dir.path()));
    // ... and the same events in one file, shuffled within the reorder
    // window: an organisation-wide rarity (TH-003's country for a command)
    // first seen by two principals minutes apart fires for both either way.
    let mut records = Vec::new();
    simulate(&simulation(), |_, day| -> Result<(), ()> {
        records.extend(day);
        Ok(())
    })
    .unwrap();
    shuffle_within_reorder_window(&mut records, 5);
    let shuffled = tempfile::tempdir().unwrap();
    write_json_lines(&shuffled.path().join("events.jsonl"), &records);
    let from_shuffled = scanned_findings(shuffled.path());
    assert_eq!(summary(&from_delivery_files), summary(&from_shuffled));
    for (a, b) in from_delivery_files.iter().zip(&from_shuffled) {
        assert_eq!(a, b);
    }
}

#[test]
fn a_second_trail_recording_the_same_events_changes_no_finding() {
    // An organisation trail and an account's own trail record the same
    // calls into two buckets; read together, each event comes twice,
    // minutes apart in delivery order. The second trail's files hold the
    // records in another order (a byte-for-byte copy is not read: below).
    let dir = tempfile::tempdir().unwrap();
    let events = dataset(dir.path());
    let trail = logs_dir(dir.path());
    let files = trailhound_cloudtrail::discover(std::slice::from_ref(&trail))
        .unwrap()
        .files;
    let copy_into = |root: &Path, file: &Path, bytes: &[u8]| {
        let copy = root.join(file.strip_prefix(&trail).unwrap());
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::write(copy, bytes).unwrap();
    };
    let (second, backup) = (dir.path().join("account-trail"), dir.path().join("backup"));
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        copy_into(&second, file, &with_records_reversed(&bytes));
        copy_into(&backup, file, &bytes);
    }
    let from_one = scanned_findings(&trail);
    let scan = |paths: &[PathBuf]| {
        let report = trailhound_pipeline::scan(paths, &scan_config(), &mut |_| {}).unwrap();
        let mut findings = report.findings.to_vec().unwrap();
        findings.sort_by(|a, b| a.id.cmp(&b.id));
        let counts = (
            report.events_read,
            report.events_used,
            report.events_duplicate,
            report.files_copies,
        );
        (counts, findings)
    };
    let (counts, from_both) = scan(&[trail.clone(), second]);
    assert_eq!(counts, (2 * events, events, events, 0));
    let (counts, with_backup) = scan(&[trail, backup]);
    assert_eq!(counts, (events, events, 0, files.len()));
    for findings in [from_both, with_backup] {
        assert_eq!(summary(&from_one), summary(&findings));
        for (a, b) in from_one.iter().zip(&findings) {
            assert_eq!(a, b);
        }
    }
}

/// A gzipped delivery file with its records in reverse order, laid out
/// otherwise.
fn with_records_reversed(gzipped: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(gzipped)
        .read_to_end(&mut json)
        .unwrap();
    let mut document: serde_json::Value = serde_json::from_slice(&json).unwrap();
    document["Records"].as_array_mut().unwrap().reverse();
    let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Pretty-printed: other bytes, even for a file of one record.
    out.write_all(&serde_json::to_vec_pretty(&document).unwrap())
        .unwrap();
    out.finish().unwrap()
}

#[test]
fn simulated_networks_resolve_as_the_scenarios_assume() {
    let city = GeoDb::open(&shared("geoip/dbip-city-lite-2023-04.mmdb.gz")).unwrap();
    let asn = GeoDb::open(&shared("geoip/routeviews-dbip-asn-lite-2026-06.mmdb.gz")).unwrap();
    let lookup = |ip: &str| {
        let ip: IpAddr = ip.parse().unwrap();
        let country = city.city(ip).map(|g| g.country).unwrap_or_default();
        let (number, org) = asn.asn(ip).unwrap_or_default();
        (country, is_hosting(number, &org), number)
    };
    for place in PLACES {
        for ip in place.ips {
            let (country, hosting, number) = lookup(ip);
            assert_eq!(country, place.country, "{ip}");
            assert!(
                !hosting && number != 0,
                "{ip} must be a residential or business network"
            );
        }
    }
    for (region, ips) in AWS_REGION_IPS {
        for ip in *ips {
            let (_, _, number) = lookup(ip);
            assert!(
                [16509, 14618].contains(&number),
                "{ip} ({region}) is Amazon's"
            );
        }
    }
    for ip in [ATTACKER_HOSTING, VPN_EXIT] {
        assert!(lookup(ip).1, "{ip} is a hosting or VPN network");
    }
}
