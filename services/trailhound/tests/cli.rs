//! The `trailhound` binary as a user runs it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared(rel: &str) -> PathBuf {
    root().join("../shared/data").join(rel)
}

fn trailhound(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trailhound"))
        .args(args)
        .arg("--geoip-city")
        .arg(shared("geoip/dbip-city-lite-2023-04.mmdb.gz"))
        .arg("--geoip-asn")
        .arg(shared("geoip/routeviews-dbip-asn-lite-2026-06.mmdb.gz"))
        .output()
        .expect("trailhound runs")
}

/// `trailhound scan examples/` with more arguments.
fn scan_examples(args: &[&str]) -> Output {
    let examples = root().join("examples");
    let mut all = vec!["scan", examples.to_str().unwrap()];
    all.extend_from_slice(args);
    trailhound(&all)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn scans_the_shipped_examples_and_explains_each_finding() {
    let out = scan_examples(&["--format", "json"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let findings: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(findings.len(), 22, "{}", text(&out.stdout));
    let th002 = findings
        .iter()
        .find(|f| f["detector"] == "TH-002")
        .expect("TH-002 fired");
    assert_eq!(th002["severity"], "high");
    assert_eq!(
        th002["principal"],
        "arn:aws:iam::210987654321:role/web-server"
    );
    assert_eq!(th002["count"], 3);
    assert!(
        th002["guidance"]["what_to_check"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
    assert!(
        stderr.contains("7543 events read, 7543 used, 0 duplicates, 0 rejected; 7 principal(s)"),
        "{stderr}"
    );
    assert!(stderr.contains("TH-010 critical: 1"), "{stderr}");
    assert!(stderr.contains("events/s"), "{stderr}");

    let table = scan_examples(&["--format", "table", "--min-severity", "high"]);
    let table = text(&table.stdout);
    assert!(
        table.starts_with("CRITICAL      TH-010  Root account changed account or billing settings"),
        "{table}"
    );
    assert!(
        table.contains("why:      home region us-east-1 (decided by session); call in us-west-2"),
        "{table}"
    );
    assert!(!table.contains("LOW"), "{table}");
}

/// The example logs give the same findings read as delivered (5-minute
/// files, one account and region after another), as JSON lines strictly in
/// event-time order, as CloudTrail Event history lists them (`aws
/// cloudtrail lookup-events`: the most recent first, each record as text),
/// and as a CloudWatch Logs subscription delivers them.
#[test]
fn the_examples_give_the_same_findings_in_every_order_and_shape() {
    let mut records = Vec::new();
    for file in trailhound_cloudtrail::discover(&[root().join("examples")])
        .unwrap()
        .files
    {
        let doc: serde_json::Value = serde_json::from_reader(flate2::read::GzDecoder::new(
            std::fs::File::open(&file).unwrap(),
        ))
        .unwrap();
        records.extend(doc["Records"].as_array().unwrap().iter().cloned());
    }
    // ISO 8601 UTC times sort as text.
    records.sort_by(|a, b| a["eventTime"].as_str().cmp(&b["eventTime"].as_str()));
    let dir = tempfile::tempdir().unwrap();
    let in_time_order = dir.path().join("events.jsonl");
    let mut lines = std::fs::File::create(&in_time_order).unwrap();
    for r in &records {
        writeln!(lines, "{r}").unwrap();
    }
    let events: Vec<serde_json::Value> = records
        .iter()
        .rev()
        .map(|r| {
            serde_json::json!({
                "EventId": r["eventID"],
                "EventName": r["eventName"],
                "EventTime": r["eventTime"],
                "EventSource": r["eventSource"],
                "Resources": [],
                "CloudTrailEvent": r.to_string(),
            })
        })
        .collect();
    let history = dir.path().join("lookup-events.json");
    std::fs::write(
        &history,
        serde_json::json!({ "Events": events }).to_string(),
    )
    .unwrap();
    // The same, one file per region, as one lists each region's history.
    let by_region = dir.path().join("lookup-events-by-region");
    std::fs::create_dir(&by_region).unwrap();
    let mut regions: std::collections::BTreeMap<&str, Vec<&serde_json::Value>> = Default::default();
    for (record, event) in records.iter().rev().zip(&events) {
        let region = record["awsRegion"].as_str().unwrap();
        regions.entry(region).or_default().push(event);
    }
    assert!(regions.len() > 1);
    for (region, events) in regions {
        let file = by_region.join(format!("{region}.json"));
        std::fs::write(file, serde_json::json!({ "Events": events }).to_string()).unwrap();
    }
    // A CloudWatch Logs subscription's payloads, 500 events each, one
    // after another as Kinesis Data Firehose writes them to S3.
    let subscription = dir.path().join("firehose.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&subscription).unwrap(),
        flate2::Compression::fast(),
    );
    for batch in records.chunks(500) {
        let log_events: Vec<serde_json::Value> = batch
            .iter()
            .map(|r| serde_json::json!({"id": r["eventID"], "message": r.to_string()}))
            .collect();
        let payload = serde_json::json!({"messageType": "DATA_MESSAGE", "logEvents": log_events});
        write!(gz, "{payload}").unwrap();
    }
    gz.finish().unwrap();

    let findings = |out: Output| {
        assert!(out.status.success(), "{}", text(&out.stderr));
        let mut lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
        lines.sort();
        lines
    };
    let scan = |path: &PathBuf| {
        findings(trailhound(&[
            "scan",
            path.to_str().unwrap(),
            "--format",
            "json",
        ]))
    };
    let delivered = findings(scan_examples(&["--format", "json"]));
    assert_eq!(delivered.len(), 22);
    assert_eq!(delivered, scan(&in_time_order), "in time order");
    assert_eq!(delivered, scan(&history), "as Event history");
    assert_eq!(delivered, scan(&by_region), "as Event history by region");
    let merged = trailhound(&["scan", by_region.to_str().unwrap(), "--format", "json"]);
    let summary = text(&merged.stderr);
    assert!(!summary.contains("reorder window"), "{summary}");
    assert_eq!(
        delivered,
        scan(&subscription),
        "as CloudWatch Logs delivers them"
    );
}

/// A synced logging bucket holds digest files (one per region and hour)
/// and Insights files beside a trail's logs, and perhaps other services'
/// logs: left out and counted, not rejected.
#[test]
fn what_is_not_cloudtrail_logs_in_a_bucket_is_left_out() {
    let bucket = tempfile::tempdir().unwrap();
    let account = bucket.path().join("AWSLogs/210987654321");
    for (dir, name, content) in [
        (
            "CloudTrail-Digest/us-east-1/2024/04/15",
            "210987654321_CloudTrail-Digest_us-east-1_trail_us-east-1_20240415T020512Z.json.gz",
            r#"{"awsAccountId":"210987654321","digestStartTime":"2024-04-15T01:05:12Z","logFiles":[]}"#,
        ),
        (
            "CloudTrail-Insight/us-east-1/2024/04/15",
            "210987654321_CloudTrail-Insight_us-east-1_20240415T0205Z_a1.json.gz",
            r#"{"Records":[{"eventTime":"2024-04-15T02:00:00Z","eventType":"AwsCloudTrailInsight","eventCategory":"Insight"}]}"#,
        ),
        (
            "elasticloadbalancing/us-east-1/2024/04/15",
            "210987654321_elasticloadbalancing_us-east-1_app.web.1_20240415T0205Z_10.0.0.1_x.log.gz",
            "https 2024-04-15T02:05:00.1Z app/web/1 203.0.113.9:443 10.0.0.1:80 0.001 0.002 0.000 200 200 0 512 \"GET https://example.com:443/ HTTP/1.1\"",
        ),
    ] {
        std::fs::create_dir_all(account.join(dir)).unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(account.join(dir).join(name)).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(content.as_bytes()).unwrap();
        gz.finish().unwrap();
    }
    let out = scan_examples(&[bucket.path().to_str().unwrap(), "--format", "json"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(text(&out.stdout).lines().count(), 22);
    assert!(
        stderr.contains("0 unreadable), and 3 not CloudTrail logs left out: 7543 events read, 7543 used, 0 duplicates, 0 rejected"),
        "{stderr}"
    );
}

#[test]
fn bad_input_is_reported_dead_lettered_and_the_rest_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"eventID":"good-1","eventTime":"2024-03-01T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"us-east-1","sourceIPAddress":"8.8.8.8","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/a","accountId":"111122223333"}}"#;
    std::fs::write(
        dir.path().join("a.jsonl"),
        format!(
            "{good}\n{{\"eventID\": \"cut\n{}\n",
            good.replace("good-1", "good-2")
        ),
    )
    .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("{{\"Records\":[{good}]}}").repeat(20).as_bytes())
        .unwrap();
    let bytes = gz.finish().unwrap();
    std::fs::write(dir.path().join("b.json.gz"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(dir.path().join("c.json"), r#"[{"eventID":"no-identity","eventTime":"2024-03-01T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets"}]"#).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let dead = out_dir.path().join("dead.jsonl");

    let out = trailhound(&[
        "scan",
        dir.path().to_str().unwrap(),
        "--dead-letter",
        dead.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("b.json.gz: gzip stream is corrupt or truncated"),
        "{stderr}"
    );
    assert!(stderr.contains("a.jsonl:2: malformed JSON"), "{stderr}");
    assert!(
        stderr.contains(
            "c.json#0 (eventID no-identity): not a CloudTrail event: missing userIdentity"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("4 events read, 2 used, 0 duplicates, 2 rejected"),
        "{stderr}"
    );
    let dead: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[1]["event_id"], "no-identity", "{dead:?}");
    assert!(dead[1]["raw"].as_str().unwrap().contains("ListBuckets"));
}

#[test]
fn reads_stdin_and_lists_detectors() {
    let config = root().join("deploy/trailhound.example.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailhound"))
        .args([
            "scan",
            "-",
            "--format",
            "json",
            "--config",
            config.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let event = r#"{"eventID":"r1","eventTime":"2024-03-01T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"us-east-1","sourceIPAddress":"AWS Internal","userIdentity":{"type":"Root","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","accessKeyId":"AKIAEXAMPLE"}}"#;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(event.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("\"detector\":\"TH-010\"") && stdout.contains("\"severity\":\"critical\""),
        "{stdout}"
    );

    let list = Command::new(env!("CARGO_BIN_EXE_trailhound"))
        .arg("detectors")
        .output()
        .unwrap();
    let list = text(&list.stdout);
    for id in [
        "TH-001", "TH-002", "TH-003", "TH-010", "TH-015", "TH-018", "TH-019",
    ] {
        assert!(list.contains(id), "{list}");
    }
}

#[test]
fn suppression_rules_mark_findings_and_threat_lists_flag_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("trailhound.toml");
    std::fs::write(
        &config,
        r#"
[[alert.suppress]]
reason = "red-team exercise from the Beget range"
detector = "TH-021"
cidr = "45.146.164.0/24"
expires = "2030-01-01T00:00:00Z"
"#,
    )
    .unwrap();
    let list = dir.path().join("known-bad.txt");
    std::fs::write(&list, "# incident 42\n45.146.164.10\n").unwrap();
    let out = scan_examples(&[
        "--format",
        "json",
        "--config",
        config.to_str().unwrap(),
        "--threat-list",
        list.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let findings: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let th021 = findings.iter().find(|f| f["detector"] == "TH-021").unwrap();
    assert_eq!(th021["suppressed"], true, "kept and marked, not dropped");
    assert_eq!(
        th021["suppression_reason"],
        "red-team exercise from the Beget range"
    );
    let flagged = findings
        .iter()
        .find(|f| f["detector"] == "TH-017")
        .expect("TH-017 fired");
    assert_eq!(flagged["severity"], "high");
    assert!(
        flagged["baseline_facts"][0]
            .as_str()
            .unwrap()
            .contains("known-bad"),
        "{flagged}"
    );
    assert!(stderr.contains(", 1 suppressed)"), "{stderr}");
}

#[test]
fn sinks_receive_findings_and_a_failing_sink_is_an_error_not_a_loss() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("high.jsonl");
    // A port nothing listens on: the webhook fails after its retries.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let config = dir.path().join("trailhound.toml");
    std::fs::write(
        &config,
        format!(
            "[[sink]]\nname = \"archive\"\nfile = {:?}\nmin_severity = \"high\"\n\n[[sink]]\nname = \"pager\"\nwebhook = \"{dead_url}\"\nattempts = 2\nbackoff = \"1ms\"\n",
            file.display().to_string()
        ),
    )
    .unwrap();
    let out = scan_examples(&["--format", "json", "--config", config.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "the failing webhook fails the run");
    assert!(stderr.contains("sink pager: 0 sent"), "{stderr}");
    let printed: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed.len(), 22, "every finding is still printed");
    let high = printed
        .iter()
        .filter(|f| f["severity"] == "high" || f["severity"] == "critical")
        .count();
    let archived = std::fs::read_to_string(&file).unwrap();
    assert_eq!(archived.lines().count(), high, "{stderr}");
    assert!(
        stderr.contains(&format!("sink archive: {high} sent, 0 failed")),
        "{stderr}"
    );
}

#[test]
fn simulate_refuses_bad_options_and_eval_scores_a_dataset_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("sim");
    let simulate = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_trailhound"))
            .args(["simulate", "--out", out_dir.to_str().unwrap()])
            .args(extra)
            .output()
            .expect("trailhound runs")
    };
    let early = simulate(&["--attack-day", "10"]);
    assert!(!early.status.success());
    assert!(
        text(&early.stderr).contains("training period"),
        "{}",
        text(&early.stderr)
    );
    let unknown = simulate(&["--scenarios", "stolen-user-keys,nope"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("unknown scenario \"nope\""),
        "{}",
        text(&unknown.stderr)
    );

    let made = simulate(&[
        "--days",
        "3",
        "--accounts",
        "1",
        "--scenarios",
        "none",
        "--volume",
        "0.2",
    ]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let eval = trailhound(&["eval", out_dir.to_str().unwrap(), "--json"]);
    assert!(eval.status.success(), "{}", text(&eval.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&eval.stdout).expect("one JSON document");
    assert!(report["events"].as_u64().unwrap() > 100, "{report}");
    assert_eq!(report["scenarios"], serde_json::json!([]));
    assert_eq!(report["min_severity"], "low");
}

#[test]
fn a_reader_that_stops_reading_ends_the_output_quietly() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_trailhound"))
        .args([
            "scan",
            root().join("examples").to_str().unwrap(),
            "--format",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // as `| head -0` does
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("Broken pipe"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn profiles_a_role_of_the_examples() {
    let examples = root().join("examples");
    let profile = |extra: &[&str]| {
        let mut args = vec![
            "profile",
            examples.to_str().unwrap(),
            "--principal",
            "arn:aws:iam::210987654321:role/web-server",
        ];
        args.extend_from_slice(extra);
        trailhound(&args)
    };
    let json = |out: std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let values = |profile: &serde_json::Value, name: &str| -> Vec<(String, u64)> {
        let dimensions = profile["dimensions"].as_array().unwrap();
        let dimension = dimensions.iter().find(|d| d["name"] == name).unwrap();
        (dimension["values"].as_array().unwrap().iter())
            .map(|v| {
                (
                    v["value"].as_str().unwrap().to_string(),
                    v["events"].as_u64().unwrap(),
                )
            })
            .collect()
    };

    // By default the 45 days up to its last call, the attack's day included.
    let whole = json(profile(&["--format", "json"]));
    assert_eq!(whole["account_id"], "210987654321");
    assert_eq!(whole["days"].as_array().unwrap().len(), 45);
    let countries = values(&whole, "country");
    assert_eq!(countries[1], ("RU".to_string(), 5), "{countries:?}");
    assert_eq!(values(&whole, "user_agent")[1].0, "aws-cli/2 kali");
    assert_eq!(values(&whole, "session").len(), 1, "one instance's session");
    let events = whole["events"].as_u64().unwrap();
    let by_hour: u64 = (whole["events_by_hour"].as_array().unwrap().iter())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(by_hour, events);

    // Up to the day of the attack: what was normal before it.
    let before = json(profile(&[
        "--until",
        "2024-04-15T00:00:00Z",
        "--format",
        "json",
    ]));
    assert_eq!(values(&before, "country"), [("US".to_string(), 2117)]);
    assert!(before["events"].as_u64().unwrap() < events);

    let out = profile(&["--values", "1", "--format", "table"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("country (2 distinct):\n        US  "),
        "{table}"
    );
    assert!(
        table.contains("… 1 more (--values, or --format json)"),
        "{table}"
    );

    // An unusable record is reported with where it was, and the rest is read.
    let bad = tempfile::tempdir().unwrap();
    let bad_file = bad.path().join("bad.json");
    std::fs::write(&bad_file, r#"{"Records":[{"eventVersion":"1.08"}]}"#).unwrap();
    let out = profile(&["--format", "json", bad_file.to_str().unwrap()]);
    assert!(
        text(&out.stderr).matches("1 unusable record(s) in").count() == 1
            && text(&out.stderr).contains("bad.json#Records/0"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(json(out)["events"], whole["events"]);

    let out = trailhound(&[
        "profile",
        examples.to_str().unwrap(),
        "--principal",
        "arn:aws:iam::210987654321:role/nobody",
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no calls of arn:aws:iam::210987654321:role/nobody"));
}

#[test]
fn investigates_the_stolen_instance_credentials_of_the_examples() {
    let examples = root().join("examples");
    let investigate = |format: &str| {
        trailhound(&[
            "investigate",
            examples.to_str().unwrap(),
            "--principal",
            "arn:aws:iam::210987654321:role/web-server",
            "--from",
            "2024-04-15T00:00:00Z",
            "--to",
            "2024-04-16T00:00:00Z",
            "--format",
            format,
        ])
    };
    let out = investigate("json");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["severity"], "high");
    assert_eq!(report["account_id"], "210987654321");
    assert_eq!(report["events_in_scope"], 53);
    assert!(report["baseline_events"].as_u64().unwrap() > 1_000);
    assert_eq!(report["sessions"].as_array().unwrap().len(), 1);
    let indicators = report["indicators"].as_array().unwrap();
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        indicators.iter().filter(|i| i["type"] == kind).collect()
    };
    let geo = of("NEW_GEOLOCATION");
    assert_eq!(geo.len(), 1, "{geo:?}");
    assert_eq!(
        (&geo[0]["country"], &geo[0]["new_country"]),
        (&"RU".into(), &true.into())
    );
    assert_eq!(of("NEW_ASO")[0]["as_org"], "Beget LLC");
    assert_eq!(of("NEW_USER_AGENT")[0]["pentest_distribution"], "kali");
    assert!(
        of("IMPOSSIBLE_TRAVEL")
            .iter()
            .all(|t| t["between_hosting_networks"] == true)
    );
    assert!(
        of("TTP_OBSERVED")
            .iter()
            .any(|t| t["api"] == "iam:ListUsers" && t["failures"] == 1)
    );
    let related: Vec<&str> = of("RELATED_FINDING")
        .iter()
        .map(|f| f["detector"].as_str().unwrap())
        .collect();
    assert!(
        related.contains(&"TH-021") && related.contains(&"TH-019"),
        "{related:?}"
    );
    assert!(
        !related.contains(&"TH-010"),
        "root's findings are not the role's"
    );
    let events = report["events"].as_array().unwrap();
    assert_eq!(events.len(), 53);
    assert!(events[0]["origin"].as_str().unwrap().contains(".json.gz"));

    let out = investigate("table");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("HIGH"), "{table}");
    assert!(table.contains("new UA:   aws-cli/2 kali (kali)"), "{table}");

    let out = investigate("ocsf");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("investigations and profiles are table or json"));
}

#[test]
fn an_event_delivered_by_two_trails_counts_once() {
    // Alice's calls over ten minutes, as two trails deliver them.
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..5)
        .map(|i| {
            format!(
                r#"{{"eventID":"e{i}","eventTime":"2024-01-01T00:0{}:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"us-east-1","sourceIPAddress":"81.2.69.142","userAgent":"aws-cli/2.15.0","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111111111111:user/alice","accountId":"111111111111"}}}}"#,
                i * 2
            ) + "\n"
        })
        .collect();
    let trails = [
        dir.path().join("org.jsonl"),
        dir.path().join("account.jsonl"),
    ];
    for trail in &trails {
        std::fs::write(trail, &lines).unwrap();
    }
    // Bob calls half an hour later: Alice's repeats are judged against
    // Alice's latest call, not his.
    let bob = r#"{"eventID":"b0","eventTime":"2024-01-01T00:30:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"us-east-1","sourceIPAddress":"81.2.69.142","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111111111111:user/bob","accountId":"111111111111"}}"#;
    std::fs::write(&trails[0], lines.clone() + bob + "\n").unwrap();
    let [org, account] = trails.map(|t| t.to_str().unwrap().to_string());
    let alice = "arn:aws:iam::111111111111:user/alice";

    let out = trailhound(&["scan", &org, &account, "--format", "json"]);
    assert!(
        text(&out.stderr).contains("11 events read, 6 used, 5 duplicates, 0 rejected")
            && text(&out.stderr).contains("note: 5 event(s) came twice"),
        "{}",
        text(&out.stderr)
    );
    let (profile, _) = profile_of(&[&org, &account], alice);
    assert_eq!(profile["events"], 5, "{profile}");
    let report = investigate_on_new_year(&[&org, &account], alice);
    assert_eq!(report["events_in_scope"], 5, "{report}");
}

/// `profile` of `principal`, as JSON, and what it said on stderr.
fn profile_of(paths: &[&str], principal: &str) -> (serde_json::Value, String) {
    let rest = ["--principal", principal, "--format", "json"];
    let args: Vec<&str> = ["profile"]
        .iter()
        .chain(paths)
        .chain(&rest)
        .copied()
        .collect();
    let out = trailhound(&args);
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        text(&out.stderr),
    )
}

/// `investigate` of `principal` over 2024-01-01, as JSON.
fn investigate_on_new_year(paths: &[&str], principal: &str) -> serde_json::Value {
    let scope = [
        "--principal",
        principal,
        "--from",
        "2024-01-01T00:00:00Z",
        "--to",
        "2024-01-02T00:00:00Z",
        "--format",
        "json",
    ];
    let args: Vec<&str> = ["investigate"]
        .iter()
        .chain(paths)
        .chain(&scope)
        .copied()
        .collect();
    serde_json::from_slice(&trailhound(&args).stdout).unwrap()
}

#[test]
fn a_copy_of_a_file_is_read_once() {
    // Alice's calls, the last two hours after the others: read again from
    // a backup, the first ones would be too far behind it to be known for
    // repeats, and counted twice.
    let dir = tempfile::tempdir().unwrap();
    let lines: String = [0, 2, 4, 6, 120]
        .iter()
        .enumerate()
        .map(|(i, minute)| {
            format!(
                r#"{{"eventID":"e{i}","eventTime":"2024-01-01T{:02}:{:02}:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"us-east-1","sourceIPAddress":"81.2.69.142","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111111111111:user/alice","accountId":"111111111111"}}}}"#,
                minute / 60,
                minute % 60
            ) + "\n"
        })
        .collect();
    let (logs, backup) = (dir.path().join("logs"), dir.path().join("backup"));
    for d in [&logs, &backup] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("alice.jsonl"), &lines).unwrap();
    }
    let [logs, backup] = [logs, backup].map(|d| d.to_str().unwrap().to_string());
    let alice = "arn:aws:iam::111111111111:user/alice";

    let out = trailhound(&["scan", &logs, &backup, "--format", "json"]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "scanned 2 file(s) (0 already scanned, 1 copies, 0 unreadable): 5 events read"
        ) && stderr.contains("copy, not read: ")
            && stderr.contains("alice.jsonl (the same as "),
        "{stderr}"
    );
    let (profile, stderr) = profile_of(&[&logs, &backup], alice);
    assert_eq!(profile["events"], 5, "{profile}");
    assert!(stderr.contains("not read: the same as"), "{stderr}");
    let report = investigate_on_new_year(&[&logs, &backup], alice);
    assert_eq!(report["events_in_scope"], 5, "{report}");
}
