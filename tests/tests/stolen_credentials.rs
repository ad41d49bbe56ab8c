//! 45 days of an organisation's normal activity, then stolen EC2 role
//! credentials used from another region and country with a penetration-
//! testing distribution, and root console use: exactly the expected
//! findings, whatever the delivery order, and continued across scans.

use trailhound_e2e::{
    scan_config, scanned_findings, shuffle_within_reorder_window, summary, time_ms, write_delivery,
    write_json_lines,
};
use trailhound_synth::{DAY_MS, HISTORY_START_MS, benign_history, stolen_credentials_episode};

const WEB_ROLE: &str = "arn:aws:iam::210987654321:role/web-server";
const ROOT: &str = "arn:aws:iam::210987654321:root";

fn expected() -> Vec<(String, &'static str, String, u64)> {
    let rows = [
        ("TH-000", "informational", "", 1),
        ("TH-001", "high", "ec2|us-west-2", 1),
        ("TH-001", "low", "iam|global", 1),
        ("TH-001", "low", "sts|global", 1),
        ("TH-002", "high", "i-0a1b2c3d4e5f60718|us-west-2", 3),
        ("TH-003", "low", "ec2.amazonaws.com:DescribeInstances|RU", 1),
        ("TH-003", "low", "sts.amazonaws.com:GetCallerIdentity|RU", 1),
        (
            "TH-004",
            "low",
            "ec2.amazonaws.com:DescribeInstances|RU|St Petersburg (Tsentralnyy rayon)",
            1,
        ),
        (
            "TH-004",
            "low",
            "sts.amazonaws.com:GetCallerIdentity|RU|St Petersburg (Tsentralnyy rayon)",
            1,
        ),
        ("TH-005", "low", "ec2.amazonaws.com:DescribeInstances", 1),
        ("TH-005", "low", "ec2.amazonaws.com:RunInstances", 1),
        ("TH-005", "low", "iam.amazonaws.com:ListUsers", 1),
        ("TH-005", "low", "sts.amazonaws.com:GetCallerIdentity", 1),
        ("TH-006", "low", "AccessDenied", 1),
        ("TH-006", "low", "UnauthorizedOperation", 1),
        ("TH-010", "critical", "account-change", 1),
        ("TH-010", "high", "console", 1),
        ("TH-015", "medium", "RU", 1),
        // The instance's own address (AWS) and a Russian hosting network:
        // impossible, but only informational between server networks; one
        // finding per pair of places, described by the first journey.
        (
            "TH-016",
            "informational",
            "Ashburn, US <> St Petersburg (Tsentralnyy rayon), RU",
            1,
        ),
        ("TH-018", "medium", "Beget LLC", 1),
        ("TH-019", "high", "aws-cli/2 kali", 1),
        ("TH-021", "high", "i-0a1b2c3d4e5f60718|45.146.164.10", 5),
    ];
    let mut rows: Vec<_> = rows
        .iter()
        .map(|(d, s, k, n)| (d.to_string(), *s, k.to_string(), *n))
        .collect();
    rows.sort();
    rows
}

fn scenario() -> Vec<serde_json::Value> {
    let mut records = benign_history(42, HISTORY_START_MS, 46);
    records.extend(stolen_credentials_episode(43, HISTORY_START_MS, 45));
    records
}

#[test]
fn exactly_the_expected_findings() {
    let dir = tempfile::tempdir().unwrap();
    write_delivery(dir.path(), &scenario());
    let report =
        trailhound_pipeline::scan(&[dir.path().to_path_buf()], &scan_config(), &mut |_| {})
            .unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.events_rejected, 0);
    let findings = report.findings.to_vec().unwrap();
    assert_eq!(summary(&findings), expected());
    for f in &findings {
        let who = if f.detector == "TH-000" || f.detector == "TH-010" {
            ROOT
        } else {
            WEB_ROLE
        };
        assert_eq!(f.principal, who, "{}", f.detector);
        assert!(
            !f.baseline_facts.is_empty() && f.guidance.is_some(),
            "{f:?}"
        );
    }
    let th002 = findings.iter().find(|f| f.detector == "TH-002").unwrap();
    assert!(
        th002.title.ends_with("from an unusual geolocation and ASN"),
        "{}",
        th002.title
    );
    assert!(
        th002.baseline_facts[0].starts_with("home region us-east-1"),
        "{:?}",
        th002.baseline_facts
    );
}

#[test]
fn delivery_order_within_the_reorder_window_does_not_matter() {
    // In event-time order (the episode is appended after the day's history
    // in `scenario`, hours out of order) ...
    let mut records = scenario();
    records.sort_by_key(time_ms);
    // ... and shuffled within 15-minute buckets of event time.
    let mut shuffled = records.clone();
    shuffle_within_reorder_window(&mut shuffled, 9);
    assert_ne!(records, shuffled);

    let run = |records: &[serde_json::Value]| {
        let dir = tempfile::tempdir().unwrap();
        write_json_lines(&dir.path().join("events.jsonl"), records);
        scanned_findings(dir.path())
    };
    let (in_order, reordered) = (run(&records), run(&shuffled));
    assert_eq!(summary(&in_order), expected());
    assert_eq!(in_order, reordered);
}

#[test]
fn state_dir_continues_the_next_day_and_rescans_add_nothing() {
    let state = tempfile::tempdir().unwrap();
    let mut config = scan_config();
    config.state_dir = Some(state.path().to_path_buf());
    let records = scenario();
    let split = HISTORY_START_MS + 45 * DAY_MS;
    let (history, today): (Vec<_>, Vec<_>) = records.into_iter().partition(|r| time_ms(r) < split);

    let day1 = tempfile::tempdir().unwrap();
    write_delivery(day1.path(), &history);
    let first =
        trailhound_pipeline::scan(&[day1.path().to_path_buf()], &config, &mut |_| {}).unwrap();
    assert!(
        first.findings.is_empty(),
        "{:?}",
        first.findings.summaries()
    );
    drop(first); // it holds the state directory open

    let day2 = tempfile::tempdir().unwrap();
    write_delivery(day2.path(), &today);
    let second =
        trailhound_pipeline::scan(&[day2.path().to_path_buf()], &config, &mut |_| {}).unwrap();
    assert_eq!(summary(&second.findings.to_vec().unwrap()), expected());
    drop(second);

    let again =
        trailhound_pipeline::scan(&[day2.path().to_path_buf()], &config, &mut |_| {}).unwrap();
    assert_eq!(again.files_skipped, again.files_read + again.files_skipped);
    assert!(again.findings.is_empty());
    drop(again);
    let store =
        trailhound_state::Store::open(state.path(), &trailhound_pipeline::stage::all_tables())
            .unwrap();
    let stored = trailhound_alert::stored_findings(&store).unwrap();
    assert_eq!(
        summary(&stored),
        expected(),
        "no duplicate findings in the store"
    );
}
