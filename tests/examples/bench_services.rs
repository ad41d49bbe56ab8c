//! The services' figures on this machine, all in one run with real
//! processes: nats-server and one replica of every stage, the query service
//! included (built with the profile this example is: `scripts/bench-services`
//! uses `dist`).
//!
//! 1. Sustained throughput: a generated delivery file through
//!    `trailhound-ingest` until every event has reached the detectors and
//!    every finding is stored, with the CPU time each process spent per
//!    event; beside it, `scan` over the same file.
//! 2. Latency: events published on th.raw at a steady rate (default
//!    5,000/s) 30 days later than the history, so that principals are
//!    trained and their occasional new networks raise findings; each new
//!    finding's latency is from its event's publication to its alert.
//!
//! Run with `scripts/bench-services`. Environment: TRAILHOUND_BENCH_EVENTS
//! (200,000), TRAILHOUND_BENCH_RATE (5,000/s), TRAILHOUND_BENCH_SECONDS (30).
#![allow(clippy::print_stdout)] // a program whose output is its report

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use prost::Message;
use trailhound_e2e::cluster::{
    NatsServer, Pipeline, connect, free_port, ingest, wait_until_settled,
};
use trailhound_pipeline::nats::{Topic, pack_events};
use trailhound_proto::{Alert, CloudTrailEvent};
use trailhound_synth::DAY_MS;

/// The allocator of the `trailhound` binary and the services, for the scan beside them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Watch the services while waiting for them: one that died would
/// otherwise leave the bench waiting for the pipeline to settle for an hour.
async fn panic_when_a_service_dies(pipeline: &mut Pipeline) -> std::convert::Infallible {
    loop {
        pipeline.assert_running();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// CPU seconds (user and system) used so far by nats-server and each
/// service, running or waited for (ingest): where the time goes, per
/// process. On a shared machine it varies less than throughput, which also
/// depends on the CPU the neighbours leave. /proc counts in USER_HZ, 100 on
/// Linux.
fn cpu_seconds_by_process() -> BTreeMap<String, f64> {
    // The fields after the command name, which is in parentheses.
    let ticks = |stat: &str, fields: std::ops::Range<usize>| -> f64 {
        let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
        let after_comm: Vec<&str> = rest.split_whitespace().collect();
        let sum: u64 = fields
            .map(|i| after_comm[i].parse::<u64>().unwrap_or(0))
            .sum();
        sum as f64 / 100.0
    };
    let mut by_process = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The program's name (`comm` cuts it to 15 characters).
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let program = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let name =
            String::from_utf8_lossy(program.rsplit(|b| *b == b'/').next().unwrap_or_default());
        if name.starts_with("trailhound-") || name == "nats-server" {
            *by_process.entry(name.into_owned()).or_default() += ticks(&stat, 11..13); // utime, stime
        }
    }
    // Children waited for: ingest.
    let own = std::fs::read_to_string("/proc/self/stat").unwrap();
    *by_process
        .entry("trailhound-ingest".to_string())
        .or_default() += ticks(&own, 13..15);
    by_process
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let events = env_usize("TRAILHOUND_BENCH_EVENTS", 200_000);
    let rate = env_usize("TRAILHOUND_BENCH_RATE", 5_000);
    let seconds = env_usize("TRAILHOUND_BENCH_SECONDS", 30);
    let principals = 10_000;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.json");
    std::fs::write(&file, trailhound_synth::bulk(1, principals, events, 30)).unwrap();

    // The same run's single-process figure.
    let scanned = trailhound_pipeline::scan(
        std::slice::from_ref(&file),
        &trailhound_e2e::scan_config(),
        &mut |_| {},
    )
    .unwrap();
    println!(
        "scan (one process, state in memory): {} events in {:.1}s = {:.0} events/s",
        scanned.events_read,
        scanned.elapsed.as_secs_f64(),
        scanned.events_per_second()
    );

    let nats = NatsServer::start();
    let mut pipeline = Pipeline::start(&nats.url(), 1);
    // The query service as the chart deploys it: every alert and every
    // enriched event into its own store.
    let grpc = format!("127.0.0.1:{}", free_port());
    pipeline.start_stage("query", 0, 1, &nats.url(), &["--grpc-addr".into(), grpc]);
    let js = connect(&nats.url()).await;
    let cpu_before = cpu_seconds_by_process();
    let started = Instant::now();
    ingest(&nats.url(), &[file.as_path()]);
    let ingested = started.elapsed();
    let settled = tokio::select! {
        settled = wait_until_settled(&js, events as u64, Duration::from_secs(3600)) => settled,
        never = panic_when_a_service_dies(&mut pipeline) => match never {},
    };
    let elapsed = settled - started;
    let cpu: Vec<(String, f64)> = cpu_seconds_by_process()
        .into_iter()
        .map(|(process, seconds)| {
            let before = cpu_before.get(&process).copied().unwrap_or(0.0);
            (process, seconds - before)
        })
        .collect();
    let total: f64 = cpu.iter().map(|(_, seconds)| seconds).sum();
    println!(
        "services: {events} events from ingest to findings stored in {:.1}s = {:.0} events/s \
         (ingest alone {:.1}s)",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        ingested.as_secs_f64()
    );
    let per_event = |seconds: f64| seconds * 1e6 / events as f64;
    println!(
        "CPU: {total:.1}s = {:.0} µs per event ({})",
        per_event(total),
        cpu.iter()
            .map(|(process, seconds)| format!("{process} {:.0}", per_event(*seconds)))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Steady load, 30 days on.
    let mut steady: Vec<CloudTrailEvent> = Vec::new();
    let doc = trailhound_synth::bulk(2, principals, rate * seconds, 10);
    trailhound_cloudtrail::parse_document("steady", &doc, false, &mut |p| {
        let mut event = p.unwrap();
        event.event_time_ms += 30 * DAY_MS;
        steady.push(*event);
    })
    .unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut alerts = client.subscribe(Topic::ALERTS.subject).await.unwrap();
    let published: HashMap<String, Instant> = HashMap::with_capacity(steady.len());
    let published = std::sync::Arc::new(std::sync::Mutex::new(published));
    let collector = {
        let published = published.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while let Ok(Some(message)) =
                tokio::time::timeout(Duration::from_secs(10), alerts.next()).await
            {
                let alert = Alert::decode(message.payload.as_ref()).unwrap();
                let Some(finding) = alert.finding.filter(|_| alert.is_new) else {
                    continue;
                };
                let published = published.lock().unwrap();
                if let Some(sent) = finding
                    .evidence
                    .iter()
                    .filter_map(|e| published.get(&e.event_id))
                    .max()
                {
                    latencies.push(sent.elapsed());
                }
            }
            latencies
        })
    };
    let tick = Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    let mut interval = tokio::time::interval(tick);
    let load_started = Instant::now();
    // Each tick's events in one message, as ingest packs a delivery file
    // or an HTTP body.
    for chunk in steady.chunks(per_tick) {
        interval.tick().await;
        {
            let now = Instant::now();
            let mut sent = published.lock().unwrap();
            for event in chunk {
                sent.insert(event.event_id.clone(), now);
            }
        }
        let mut acks = Vec::new();
        for packed in pack_events(chunk) {
            let publish = packed.into_publish();
            acks.push(js.send_publish(Topic::RAW.subject, publish).await.unwrap());
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
    let offered = steady.len() as f64 / load_started.elapsed().as_secs_f64();
    let mut latencies = collector.await.unwrap();
    pipeline.assert_running();
    latencies.sort();
    if latencies.is_empty() {
        println!("latency: no new findings during the steady load");
    } else {
        println!(
            "latency at {offered:.0} events/s offered: {} new findings, event → finding p50 {:.0} ms, \
             p99 {:.0} ms, max {:.0} ms",
            latencies.len(),
            percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
            percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
            latencies.last().unwrap().as_secs_f64() * 1000.0
        );
    }
}
