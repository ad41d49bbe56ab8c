//! The query service as a real process over a real nats-server: it serves
//! exactly the findings the alert service stored, paged, by id and as they
//! happen; a restarted replica goes on from its own state and a new one
//! rebuilds the same view from the stream; `trailhound query` prints them;
//! what is not an alert is dead-lettered once.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use trailhound_cloudtrail::time::format_ms;
use trailhound_e2e::cluster::{
    NatsServer, Pipeline, binary, connect, dead_letters, free_port, ingest, stored_findings,
    wait_for_port, wait_until_settled,
};
use trailhound_e2e::write_delivery;
use trailhound_proto::query_service_client::QueryServiceClient;
use trailhound_proto::{Finding, GetFindingRequest, ListFindingsRequest};
use trailhound_synth::{DAY_MS, HISTORY_START_MS, benign_history, stolen_credentials_episode};

const SETTLE: Duration = Duration::from_secs(180);

type Client = QueryServiceClient<tonic::transport::Channel>;

/// Start replica `replica` of `replicas` of the query service, serving
/// gRPC on a free port; its client and endpoint.
async fn start_query(
    pipeline: &mut Pipeline,
    (replica, replicas): (u32, u32),
    nats_url: &str,
) -> (Client, String) {
    let port = free_port();
    let flags = ["--grpc-addr".to_string(), format!("127.0.0.1:{port}")];
    pipeline.start_stage("query", replica, replicas, nats_url, &flags);
    wait_for_port(port);
    let endpoint = format!("http://127.0.0.1:{port}");
    (Client::connect(endpoint.clone()).await.unwrap(), endpoint)
}

/// Every finding the service lists, `page_size` at a time.
async fn list_all(client: &mut Client, page_size: u32) -> Vec<Finding> {
    let mut request = ListFindingsRequest {
        page_size,
        ..Default::default()
    };
    let mut all = Vec::new();
    loop {
        let page = client
            .list_findings(request.clone())
            .await
            .unwrap()
            .into_inner();
        assert!(page.findings.len() <= page_size as usize);
        all.extend(page.findings);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
}

/// Wait until the service lists `expected` (it follows the stream).
async fn wait_for_view(client: &mut Client, expected: &[Finding]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = sorted(list_all(client, 7).await);
        if listed == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the query service lists {} findings, the alert service stored {}",
            listed.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn sorted(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by(|a, b| a.id.cmp(&b.id));
    findings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_service_serves_what_the_alert_service_stored() {
    let logs = tempfile::tempdir().unwrap();
    let mut records = benign_history(42, HISTORY_START_MS, 46);
    records.extend(stolen_credentials_episode(43, HISTORY_START_MS, 45));
    // The web server's role lists users from 1,100 addresses and instances
    // on its last day: an indicator and a session for each, more than a
    // report carries.
    let template = (records.iter().rev())
        .find(|r| (r["userIdentity"]["arn"].as_str()).is_some_and(|a| a.contains("/web-server/")))
        .unwrap()
        .clone();
    for i in 0..1_100 {
        let mut record = template.clone();
        record["eventID"] = format!("00000000-0000-4000-8000-{i:012}").into();
        record["eventTime"] =
            format_ms(HISTORY_START_MS + 45 * DAY_MS + 43_200_000 + i * 1_000).into();
        record["eventSource"] = "iam.amazonaws.com".into();
        record["eventName"] = "ListUsers".into();
        record["sourceIPAddress"] = format!("100.64.{}.{}", i / 256, i % 256).into();
        let arn = record["userIdentity"]["arn"].as_str().unwrap();
        let (role, _) = arn.rsplit_once('/').unwrap();
        record["userIdentity"]["arn"] = format!("{role}/i-{i:017x}").into();
        records.push(record);
    }
    let events = records.len() as u64;
    write_delivery(logs.path(), &records);

    let nats = NatsServer::start();
    let mut pipeline = Pipeline::start(&nats.url(), 1);
    let (mut client, endpoint) = start_query(&mut pipeline, (0, 1), &nats.url()).await;
    let mut watch = client
        .watch_findings(ListFindingsRequest::default())
        .await
        .unwrap()
        .into_inner();

    ingest(&nats.url(), &[logs.path()]);
    let js = connect(&nats.url()).await;
    wait_until_settled(&js, events, SETTLE).await;
    let stored = sorted(stored_findings(&js).await);
    assert!(stored.len() >= 10, "{}", stored.len());
    wait_for_view(&mut client, &stored).await;

    // Most recently active first.
    let listed = list_all(&mut client, 1_000).await;
    let last_events: Vec<i64> = listed.iter().map(|f| f.last_event_ms).collect();
    assert!(last_events.is_sorted_by(|a, b| a >= b), "{last_events:?}");

    // Filters, and one finding by id.
    let detector = stored[0].detector.clone();
    let by_detector = client
        .list_findings(ListFindingsRequest {
            detector: detector.clone(),
            page_size: 1_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let expected: Vec<&Finding> = stored.iter().filter(|f| f.detector == detector).collect();
    assert_eq!(by_detector.findings.len(), expected.len());
    let got = client
        .get_finding(GetFindingRequest {
            id: stored[0].id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, stored[0]);

    // The watcher saw every finding as it was created or updated.
    let mut watched = BTreeSet::new();
    while watched.len() < stored.len() {
        let finding = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("a watched finding")
            .unwrap()
            .unwrap();
        watched.insert(finding.id);
    }
    let stored_ids: BTreeSet<String> = stored.iter().map(|f| f.id.clone()).collect();
    assert_eq!(watched, stored_ids);

    // The command line prints them all.
    let output = Command::new(binary("trailhound"))
        .args([
            "query",
            "--endpoint",
            &endpoint,
            "--format",
            "json",
            "list",
            "--limit",
            "0",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(printed.lines().count(), stored.len(), "{printed}");

    // An investigation from the events the service keeps is the one
    // `trailhound investigate` makes from the logs.
    let web_server = "arn:aws:iam::210987654321:role/web-server";
    let (from, to) = (
        HISTORY_START_MS + 45 * DAY_MS,
        HISTORY_START_MS + 46 * DAY_MS,
    );
    let between = |from: i64, to: i64| {
        [
            "--principal".to_string(),
            web_server.to_string(),
            "--from".to_string(),
            format_ms(from),
            "--to".to_string(),
            format_ms(to),
        ]
    };
    let query_json = |command: &str, more: &[String]| {
        trailhound_json(
            &[
                "query",
                "--endpoint",
                &endpoint,
                "--format",
                "json",
                command,
            ],
            more,
        )
    };
    let scope = between(from, to);
    let served = query_json("investigate", &scope);
    let logs_arg = logs.path().display().to_string();
    let geo = enrichment_flags();
    let mut local_args: Vec<&str> = vec!["investigate", &logs_arg, "--format", "json"];
    local_args.extend(geo.iter().map(String::as_str));
    let local = trailhound_json(&local_args, &scope);
    for field in [
        "severity",
        "summary",
        "events_in_scope",
        "baseline_events",
        "sessions",
        "indicators",
        "events",
    ] {
        assert_eq!(served[field], local[field], "{field}");
    }
    assert_eq!(served["severity"], "high", "{served:#}");
    let id = served["id"].as_str().unwrap().to_string();
    let again = query_json("investigation", &[id]);
    assert_eq!(again, served);

    // A scope of more events than a report carries: the command line pages
    // the rest from the service, and prints the same events.
    let wide = between(HISTORY_START_MS + 10 * DAY_MS, to);
    let served = query_json("investigate", &wide);
    let local = trailhound_json(&local_args, &wide);
    let in_scope = served["events_in_scope"].as_u64().unwrap();
    assert!(in_scope > 1_000, "{in_scope} events in the wide scope");
    assert_eq!(served["events"].as_array().unwrap().len() as u64, in_scope);
    assert_eq!(served["events"], local["events"]);
    let indicators = served["indicators"].as_array().unwrap().len();
    assert!(
        indicators > 1_100,
        "{indicators} indicators in the wide scope"
    );
    assert_eq!(served["indicators"], local["indicators"]);
    let sessions = served["sessions"].as_array().unwrap().len();
    assert!(sessions > 1_100, "{sessions} sessions in the wide scope");
    assert_eq!(served["sessions"], local["sessions"]);

    // So is a profile: the service's from its events, the command's from the logs.
    let window = [
        "--principal".to_string(),
        web_server.to_string(),
        "--until".to_string(),
        format_ms(to),
        "--values".to_string(),
        "1000".to_string(),
    ];
    let served = query_json("profile", &window);
    local_args[0] = "profile";
    let local = trailhound_json(&local_args, &window);
    assert_eq!(served, local);
    assert!(served["events"].as_u64().unwrap() > 1_000, "{served:#}");

    // Something that is not an alert goes to the dead letters, once.
    js.publish("th.alerts", "not protobuf at all".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let dead = wait_for_dead_letter(&js).await;
    assert!(dead.1.starts_with("not an alert"), "{dead:?}");

    // kill -9 and restart: the view goes on from its own state, whole.
    let query = pipeline.services.last_mut().unwrap();
    query.crash_and_restart();
    let port = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    wait_for_port(port);
    let mut client = Client::connect(endpoint.clone()).await.unwrap();
    wait_for_view(&mut client, &stored).await;

    // A second replica, from nothing, rebuilds the same view from the stream.
    let (mut second, _) = start_query(&mut pipeline, (1, 2), &nats.url()).await;
    wait_for_view(&mut second, &stored).await;
    pipeline.assert_running();
    assert_eq!(
        dead_letters(&js).await.len(),
        1,
        "each replica met it; one copy kept"
    );
}

/// `trailhound` with `args` then `more`, its standard output as JSON.
fn trailhound_json(args: &[&str], more: &[String]) -> serde_json::Value {
    let output = Command::new(binary("trailhound"))
        .args(args)
        .args(more)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The enrich service's databases, as flags of `trailhound`.
fn enrichment_flags() -> Vec<String> {
    let db = |rel: &str| trailhound_e2e::shared(rel).display().to_string();
    vec![
        "--geoip-city".into(),
        db("geoip/dbip-city-lite-2023-04.mmdb.gz"),
        "--geoip-asn".into(),
        db("geoip/routeviews-dbip-asn-lite-2026-06.mmdb.gz"),
        "--aws-ip-ranges".into(),
        "builtin".into(),
    ]
}

/// The first dead letter, once there is one.
async fn wait_for_dead_letter(js: &async_nats::jetstream::Context) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(dead) = dead_letters(js).await.into_iter().next() {
            assert_eq!(dead.0, "th.dead.query");
            return dead;
        }
        assert!(Instant::now() < deadline, "nothing was dead-lettered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
