//! Network sources as real processes: the ingest service's CloudTrail
//! POSTed over HTTP and S3 objects announced on SQS by a real S3 event
//! notification, and `trailhound scan s3://…` (moto's server on
//! 127.0.0.1). Each reads every event once and names what it cannot use,
//! with the reason.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use trailhound_e2e::cluster::{
    MotoServer, NatsServer, Service, binary, connect, dead_letters, free_port, http_request,
    stream_events, wait_for_events, wait_for_port,
};
use trailhound_e2e::{shared, write_delivery};
use trailhound_pipeline::nats::frames;
use trailhound_synth::{HISTORY_START_MS, benign_history, stolen_credentials_episode};

/// A CloudTrail log file as CloudTrail writes it (gzip'd `Records`), and
/// how many events it holds.
fn cloudtrail_file(seed: u64) -> (Vec<u8>, u64) {
    let records = stolen_credentials_episode(seed, HISTORY_START_MS, 45);
    let document = serde_json::json!({ "Records": records });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(document.to_string().as_bytes()).unwrap();
    (gz.finish().unwrap(), records.len() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_posts_publish_each_event_once_and_dead_letter_bad_records() {
    let nats = NatsServer::start();
    let port = free_port();
    let args = [
        "--nats-url",
        &nats.url(),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ];
    let token = ("TRAILHOUND_INGEST_TOKEN".to_string(), "s3cret".to_string());
    let mut ingest = Service::start_with_env(
        "ingest",
        args.iter().map(|a| a.to_string()).collect(),
        vec![token],
    );
    wait_for_port(port);
    let post = |headers: &[(&str, &str)], body: &[u8]| {
        http_request(port, "POST", "/v1/events", headers, body).expect("ingest answers")
    };
    let auth = ("Authorization", "Bearer s3cret");

    let (file, events) = cloudtrail_file(7);
    let (status, response) = post(&[], &file);
    assert_eq!(status, 401, "{response}");

    let (status, response) = post(&[auth], &file);
    assert_eq!(status, 200, "{response}");
    assert!(
        response.contains(&format!("\"events\":{events}")),
        "{response}"
    );
    assert!(response.contains("\"duplicates\":0"), "{response}");
    // The same file again: JetStream already holds every event.
    let (status, response) = post(&[auth], &file);
    assert_eq!(status, 200, "{response}");
    assert!(
        response.contains(&format!("\"duplicates\":{events}")),
        "{response}"
    );

    // One good record (new) and one that is no CloudTrail event.
    let mut fresh = stolen_credentials_episode(8, HISTORY_START_MS, 45)[0].clone();
    fresh["eventID"] = "11111111-2222-3333-4444-555555555555".into();
    let mixed = serde_json::json!({"Records": [fresh, {"eventVersion": "1.08", "eventName": 3}]});
    let (status, response) = post(&[auth], mixed.to_string().as_bytes());
    assert_eq!(status, 200, "{response}");
    assert!(
        response.contains("\"events\":1") && response.contains("\"rejected\":1"),
        "{response}"
    );

    let (status, response) = post(&[auth], b"{\"Records\": [ {\"eventID\": ");
    assert_eq!(status, 400, "{response}");
    assert!(response.contains("malformed JSON"), "{response}");

    let js = connect(&nats.url()).await;
    wait_for_events(&js, "TH_RAW", events + 1, Duration::from_secs(120)).await;
    assert_eq!(stream_events(&js, "TH_RAW").await, events + 1);
    let dead = dead_letters(&js).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].1.starts_with("POST 127.0.0.1:"), "{dead:?}");
    assert!(ingest.stop().success());
}

/// S3 and SQS clients of the test's own, against moto.
async fn aws_clients(moto: &MotoServer) -> (aws_sdk_s3::Client, aws_sdk_sqs::Client) {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let credentials =
        aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "test");
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .endpoint_url(moto.url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .load()
        .await;
    let s3_config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        .build();
    (
        aws_sdk_s3::Client::from_conf(s3_config),
        aws_sdk_sqs::Client::new(&shared),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_objects_announced_on_sqs_are_ingested_once() {
    let moto = MotoServer::start();
    let nats = NatsServer::start();
    let (s3, sqs) = aws_clients(&moto).await;

    // The usual setup: the trail's bucket notifies a queue of new objects.
    let bucket = BUCKET;
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let queue = sqs
        .create_queue()
        .queue_name("org-trail-objects")
        .send()
        .await
        .unwrap();
    let queue_url = queue.queue_url().unwrap().to_string();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    let queue_arn = attributes.attributes().unwrap()[&QueueAttributeName::QueueArn].clone();
    let notify = QueueConfiguration::builder()
        .queue_arn(queue_arn)
        .events(Event::from("s3:ObjectCreated:*"))
        .build()
        .unwrap();
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(notify)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let args = [
        "--nats-url",
        &nats.url(),
        "--sqs-queue-url",
        &queue_url,
        "--s3-force-path-style",
    ];
    let mut ingest = Service::start_with_env(
        "ingest",
        args.iter().map(|a| a.to_string()).collect(),
        moto.aws_env(),
    );

    let prefix = "AWSLogs/210987654321/CloudTrail/us-east-1/2024/04/15";
    let (file, events) = cloudtrail_file(9);
    let truncated = file[..file.len() / 2].to_vec();
    let a = format!("{prefix}/210987654321_CloudTrail_us-east-1_20240415T0200Z_a.json.gz");
    put(&s3, &a, file.clone()).await;
    // The same events delivered twice (under another name) count once.
    let b = format!("{prefix}/210987654321_CloudTrail_us-east-1_20240415T0200Z_b.json.gz");
    put(&s3, &b, file.clone()).await;
    // A truncated object: dead-lettered by name with the reason.
    let broken = format!("{prefix}/210987654321_CloudTrail_us-east-1_20240415T0205Z_c.json.gz");
    put(&s3, &broken, truncated).await;

    let js = connect(&nats.url()).await;
    wait_for_events(&js, "TH_RAW", events, Duration::from_secs(120)).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let dead = loop {
        let dead = dead_letters(&js).await;
        if !dead.is_empty() {
            break dead;
        }
        assert!(
            Instant::now() < deadline,
            "the broken object was never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].1.contains(&format!("s3://{bucket}/{broken}")),
        "{dead:?}"
    );
    assert!(dead[0].1.contains("gzip"), "{dead:?}");

    // Every message handled is deleted from the queue.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let left: u64 = attributes
            .attributes()
            .unwrap()
            .values()
            .map(|v| v.parse::<u64>().unwrap())
            .sum();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} message(s) left on the queue"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(stream_events(&js, "TH_RAW").await, events);
    assert!(ingest.stop().success());
}

/// Every file under `dir`, as (path relative to `dir` with `/`, content).
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_str().unwrap();
                files.push((rel.replace('\\', "/"), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// The events on `th.raw`, in the stream's order.
async fn raw_events(js: &async_nats::jetstream::Context) -> Vec<trailhound_proto::CloudTrailEvent> {
    use futures_util::StreamExt;
    let stream = js.get_stream("TH_RAW").await.unwrap();
    let total = stream.get_info().await.unwrap().state.messages;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut events = Vec::new();
    for _ in 0..total {
        let message = messages.next().await.unwrap().unwrap();
        events.extend(frames::decode_all(&message.payload).unwrap());
    }
    events
}

/// The bucket of these tests.
const BUCKET: &str = "org-trail";

/// Put an object into [`BUCKET`].
async fn put(s3: &aws_sdk_s3::Client, key: &str, body: Vec<u8>) {
    (s3.put_object().bucket(BUCKET).key(key))
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
}

/// [`BUCKET`] made, holding 45 days of the example organisation's delivery
/// files and its stolen-credentials episode (`seed`), also written under
/// `dir`: the records, and each file's key and content.
async fn bucket_with_history(
    s3: &aws_sdk_s3::Client,
    dir: &Path,
    seed: u64,
) -> (Vec<serde_json::Value>, Vec<(String, Vec<u8>)>) {
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let mut records = benign_history(seed, HISTORY_START_MS, 45);
    records.extend(stolen_credentials_episode(seed, HISTORY_START_MS, 45));
    write_delivery(dir, &records);
    let files = files_under(dir);
    for (key, body) in &files {
        put(s3, key, body.clone()).await;
    }
    (records, files)
}

/// `trailhound scan s3://bucket/AWSLogs/`: the logs under the prefix are
/// copied locally and scanned, finding exactly what a scan of the same
/// files on disk finds; digests are not copied; a second scan downloads
/// nothing; `--s3-since` copies the logs of the days since only; a log
/// that cannot be copied is named, the others are scanned, and the command
/// fails once it has printed its findings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_reads_the_logs_under_an_s3_prefix_downloading_each_once() {
    let moto = MotoServer::start();
    let (s3, _) = aws_clients(&moto).await;
    let bucket = BUCKET;
    let local = tempfile::tempdir().unwrap();
    let logs = local.path().join("logs");
    let (_, files) = bucket_with_history(&s3, &logs, 3).await;
    let digest = "AWSLogs/210987654321/CloudTrail-Digest/us-east-1/2024/04/15/210987654321_CloudTrail-Digest_us-east-1_trail_us-east-1_20240415T000000Z.json.gz";
    put(&s3, digest, b"{}".to_vec()).await;
    // Outside the prefix: not listed.
    put(&s3, "elsewhere/f.json", b"not even JSON".to_vec()).await;

    let cache = tempfile::tempdir().unwrap();
    let scan_into = |input: &str, cache: &Path, flags: &[&str]| -> Output {
        Command::new(binary("trailhound"))
            .args(["scan", input, "--format", "json", "--s3-force-path-style"])
            .args(flags)
            .arg("--s3-cache")
            .arg(cache)
            .arg("--geoip-city")
            .arg(shared("geoip/dbip-city-lite-2023-04.mmdb.gz"))
            .arg("--geoip-asn")
            .arg(shared("geoip/routeviews-dbip-asn-lite-2026-06.mmdb.gz"))
            .envs(moto.aws_env())
            .output()
            .unwrap()
    };
    let scan = |input: &str| scan_into(input, cache.path(), &[]);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let on_disk = scan(logs.to_str().unwrap());
    assert!(on_disk.status.success(), "{}", text(&on_disk.stderr));
    assert!(!on_disk.stdout.is_empty(), "the episode raises findings");

    let address = format!("s3://{bucket}/AWSLogs/");
    let first = scan(&address);
    let stderr = text(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    let n = files.len();
    assert!(
        stderr.contains(&format!("{address}: {n} log(s) in "))
            && stderr.contains(&format!(": {n} downloaded ("))
            && stderr.contains("0 already there; 1 not logs"),
        "{stderr}"
    );
    assert_eq!(text(&first.stdout), text(&on_disk.stdout));
    for (key, body) in &files {
        let copy = cache.path().join(bucket).join(key);
        assert_eq!(&std::fs::read(&copy).unwrap(), body, "{key}");
    }

    let again = scan(&address);
    let stderr = text(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(": 0 downloaded (0.0 MiB), {n} already there")),
        "{stderr}"
    );
    assert_eq!(text(&again.stdout), text(&on_disk.stdout));

    // From a day on: the date folders before it are not listed, and only
    // the logs delivered since are copied and scanned.
    let day = |key: &str| key.split('/').skip(4).take(3).collect::<Vec<_>>().join("/");
    let recent: Vec<&String> = (files.iter().map(|(key, _)| key))
        .filter(|key| day(key).as_str() >= "2024/04/10")
        .collect();
    assert!(!recent.is_empty() && recent.len() < n, "{recent:?}");
    let recent_cache = tempfile::tempdir().unwrap();
    let since = scan_into(&address, recent_cache.path(), &["--s3-since", "2024-04-10"]);
    let stderr = text(&since.stderr);
    assert!(since.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{address}: {} log(s) in ", recent.len()))
            && stderr.contains(&format!(": {} downloaded (", recent.len()))
            // The digest's folder was not even listed.
            && stderr.contains("; 0 not logs"),
        "{stderr}"
    );
    let copied: Vec<String> = files_under(&recent_cache.path().join(bucket))
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(copied.iter().collect::<Vec<_>>(), recent);

    // A copy that cannot be written (a folder stands in its place): named,
    // the other logs scanned, and the command fails after its output.
    let (blocked, _) = &files[0];
    let blocked_copy = cache.path().join(bucket).join(blocked);
    std::fs::remove_file(&blocked_copy).unwrap();
    std::fs::create_dir(&blocked_copy).unwrap();
    let partial = scan(&address);
    let stderr = text(&partial.stderr);
    assert!(!partial.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("could not copy s3://{bucket}/{blocked}: "))
            && stderr.contains(&format!("{} already there", n - 1))
            && stderr.contains("1 log(s) in S3 could not be copied"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("scanned {} file(s)", n - 1)),
        "{stderr}"
    );
    assert!(!partial.stdout.is_empty());
}

/// The ingest service backfilling from `s3://bucket/AWSLogs/` with
/// `--s3-since`: every event of the logs delivered since that day once,
/// none of the days before, an object that is not CloudTrail dead-lettered
/// by name; then the service ends by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_backfills_the_logs_under_an_s3_prefix_since_a_day() {
    let moto = MotoServer::start();
    let nats = NatsServer::start();
    let (s3, _) = aws_clients(&moto).await;
    let bucket = BUCKET;
    let local = tempfile::tempdir().unwrap();
    let (records, _) = bucket_with_history(&s3, local.path(), 4).await;
    let broken = "AWSLogs/210987654321/CloudTrail/us-east-1/2024/04/14/210987654321_CloudTrail_us-east-1_20240414T2355Z_broken.json.gz";
    put(&s3, broken, b"not CloudTrail".to_vec()).await;
    // Delivery files are per day of event time here.
    let since = (records.iter())
        .filter(|r| r["eventTime"].as_str().unwrap() >= "2024-04-10")
        .count() as u64;
    assert!(since > 0 && since < records.len() as u64);

    let args = [
        "--nats-url",
        &nats.url(),
        &format!("s3://{bucket}/AWSLogs/"),
        "--s3-force-path-style",
        "--s3-since",
        "2024-04-10",
    ];
    let mut ingest = Service::start_with_env(
        "ingest",
        args.iter().map(|a| a.to_string()).collect(),
        moto.aws_env(),
    );
    let js = connect(&nats.url()).await;
    wait_for_events(&js, "TH_RAW", since, Duration::from_secs(120)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = ingest.exited() {
            break status;
        }
        assert!(Instant::now() < deadline, "the backfill never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    assert_eq!(stream_events(&js, "TH_RAW").await, since);
    // In delivery order: every account's and region's files of a day before
    // any of the next day's (in key order one account's weeks would come
    // before another's).
    let days: Vec<i64> = (raw_events(&js).await.iter())
        .map(|e| e.event_time_ms / 86_400_000)
        .collect();
    assert_eq!(days.len() as u64, since);
    assert!(days.is_sorted(), "{days:?}");
    let dead = dead_letters(&js).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].1.contains(&format!("s3://{bucket}/{broken}")),
        "{dead:?}"
    );
}
