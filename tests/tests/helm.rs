//! The Helm chart lints, and renders a configuration the services accept,
//! with each stateful stage told its replica count.

use std::path::PathBuf;
use std::process::Command;

fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../helm/trailhound")
}

fn helm(args: &[&str]) -> String {
    let out = Command::new("helm")
        .args(args)
        .output()
        .expect("helm on PATH (scripts/setup installs it)");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "helm {args:?}: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The `services.toml` block of the rendered ConfigMap.
fn services_toml(rendered: &str) -> String {
    let mut lines = rendered
        .lines()
        .skip_while(|l| !l.contains("services.toml: |"));
    lines.next().expect("a services.toml entry");
    lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_chart_lints() {
    let chart = chart();
    helm(&["lint", "--strict", chart.to_str().unwrap()]);
}

#[test]
fn the_chart_renders_a_config_the_services_accept() {
    let chart = chart();
    let rendered = helm(&[
        "template",
        "th",
        chart.to_str().unwrap(),
        "--set",
        "baseline.replicas=3",
        "--set",
        "partitions=32",
    ]);
    let text = services_toml(&rendered);
    let config: trailhound_service::ServiceConfig =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.partitions, 32);
    assert_eq!(config.nats_url, "nats://th-trailhound-nats:4222");
    assert_eq!(
        config.enrich.aws_ip_ranges.as_deref(),
        Some("builtin".as_ref())
    );
    for (stage, replicas) in [("baseline", 3), ("detect", 1), ("alert", 1), ("query", 1)] {
        let statefulset = rendered
            .split("\n---")
            .find(|doc| {
                doc.contains("kind: StatefulSet")
                    && doc.contains(&format!("name: th-trailhound-{stage}\n"))
            })
            .unwrap_or_else(|| panic!("no {stage} StatefulSet"));
        assert!(
            statefulset.contains(&format!("replicas: {replicas}\n")),
            "{statefulset}"
        );
        assert!(
            statefulset.contains(&format!("--replicas={replicas}")),
            "{statefulset}"
        );
        assert!(
            statefulset.contains(&format!("command: [\"trailhound-{stage}\"]")),
            "{statefulset}"
        );
    }
}

#[test]
fn the_query_service_is_reachable_over_grpc() {
    let out = template(&["query.replicas=2", "query.grpcPort=6000"]);
    let rendered = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let service = rendered
        .split("\n---")
        .find(|doc| doc.contains("kind: Service\n") && doc.contains("name: th-trailhound-query\n"))
        .unwrap_or_else(|| panic!("no query Service in\n{rendered}"));
    assert!(service.contains("port: 6000"), "{service}");
    for expected in [
        "- --grpc-addr=0.0.0.0:6000",
        "containerPort: 6000",
        "replicas: 2\n",
    ] {
        assert!(rendered.contains(expected), "{expected} not in\n{rendered}");
    }
}

fn template(sets: &[&str]) -> std::process::Output {
    let chart = chart();
    let mut args = vec!["template", "th", chart.to_str().unwrap()];
    for set in sets {
        args.extend(["--set", set]);
    }
    Command::new("helm").args(&args).output().unwrap()
}

/// The chart rendered with `sets`, which it must accept.
fn rendered(sets: &[&str]) -> String {
    let out = template(sets);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ingest_needs_a_source() {
    let out = template(&["ingest.enabled=true"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ingest.enabled needs a source"), "{stderr}");
}

#[test]
fn ingest_renders_its_http_and_sqs_sources() {
    let rendered = rendered(&[
        "ingest.enabled=true",
        "ingest.http.enabled=true",
        "ingest.http.tokenSecret=ingest-token",
        "ingest.sqs.queueUrl=https://sqs.us-east-1.amazonaws.com/111122223333/trail",
    ]);
    for expected in [
        "- \"--listen=0.0.0.0:8080\"",
        "- \"--sqs-queue-url=https://sqs.us-east-1.amazonaws.com/111122223333/trail\"",
        "name: TRAILHOUND_INGEST_TOKEN",
        "kind: Service",
    ] {
        assert!(rendered.contains(expected), "{expected} not in\n{rendered}");
    }
    assert!(!rendered.contains("--watch"), "{rendered}");
}

#[test]
fn a_backfill_is_a_job_of_its_own() {
    assert!(!rendered(&[]).contains("kind: Job"));
    let rendered = rendered(&[
        "ingest.backfill.url=s3://org-trail/AWSLogs/o-abc123/",
        "ingest.backfill.region=eu-west-1",
        "ingest.serviceAccountName=trailhound-reader",
    ]);
    let job = rendered
        .split("---")
        .find(|doc| doc.contains("kind: Job"))
        .unwrap_or_else(|| panic!("no Job in\n{rendered}"));
    for expected in [
        "name: th-trailhound-backfill",
        "restartPolicy: OnFailure",
        "serviceAccountName: trailhound-reader",
        "command: [\"trailhound-ingest\"]",
        "- \"s3://org-trail/AWSLogs/o-abc123/\"",
        "- \"--s3-since=45d\"",
        "value: \"eu-west-1\"",
    ] {
        assert!(job.contains(expected), "{expected} not in\n{job}");
    }
    // No ingest Deployment comes with it.
    assert!(
        !rendered.contains("name: th-trailhound-ingest"),
        "{rendered}"
    );
}
