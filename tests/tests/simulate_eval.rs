//! `simulate` → `scan` → `eval` end to end: every labelled attack is found
//! by its expected detectors, no benign look-alike raises a finding, and
//! switching a detector off is noticed. The simulated networks resolve to
//! the countries and network kinds the scenarios assume.

use std::net::IpAddr;
use std::path::Path;

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
    // minutes apart in delivery order.
    let dir = tempfile::tempdir().unwrap();
    let events = dataset(dir.path());
    let trail = logs_dir(dir.path());
    let second = dir.path().join("account-trail");
    for file in trailhound_cloudtrail::discover(std::slice::from_ref(&trail)).unwrap() {
        let copy = second.join(file.strip_prefix(&trail).unwrap());
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(&file, copy).unwrap();
    }
    let from_one = scanned_findings(&trail);
    let report = trailhound_pipeline::scan(&[trail, second], &scan_config(), &mut |_| {}).unwrap();
    assert_eq!(
        (
            report.events_read,
            report.events_used,
            report.events_duplicate
        ),
        (2 * events, events, events)
    );
    let mut from_both = report.findings.to_vec().unwrap();
    from_both.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(summary(&from_one), summary(&from_both));
    for (a, b) in from_one.iter().zip(&from_both) {
        assert_eq!(a, b);
    }
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
