//! Throughput of `scan` against the parse-only limit on one file of
//! CloudTrail. Prints figures; run with `scripts/bench`. Environment:
//! TRAILHOUND_BENCH_INPUT (a file to measure, e.g. `trailhound simulate
//! --format jsonl` output; unset, a generated S3 delivery file of
//! TRAILHOUND_BENCH_EVENTS (1,000,000) events and TRAILHOUND_BENCH_PRINCIPALS
//! (10,000) principals), TRAILHOUND_BENCH_ROUNDS (3: parse-only and the
//! scans measured in turn, the median ratio printed),
//! TRAILHOUND_GEOIP_CITY/ASN (default data/geoip/{city,asn}.mmdb from
//! scripts/setup).
#![allow(clippy::print_stdout)] // a program whose output is its report

use std::path::PathBuf;
use std::time::Instant;

use trailhound_pipeline::ScanConfig;

/// The allocator the `trailhound` binary uses, so the figures are the CLI's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// CPU seconds (user + system) this process has used: /proc/self/stat's
/// utime and stime, in the kernel's 100 Hz clock ticks.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) end with ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn db(var: &str, default: &str) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| Some(root.join(default)))
        .filter(|p| p.exists())
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = match std::env::var_os("TRAILHOUND_BENCH_INPUT") {
        Some(input) => PathBuf::from(input),
        None => {
            let events = env_usize("TRAILHOUND_BENCH_EVENTS", 1_000_000);
            let principals = env_usize("TRAILHOUND_BENCH_PRINCIPALS", 10_000);
            let file = dir.path().join("cloudtrail.json");
            let started = Instant::now();
            let doc = trailhound_synth::bulk(1, principals, events, 30);
            std::fs::write(&file, &doc).expect("write bench file");
            println!(
                "generated {events} events, {principals} principals, {:.0} MiB in {:.1}s",
                doc.len() as f64 / 1048576.0,
                started.elapsed().as_secs_f64()
            );
            file
        }
    };

    let size = std::fs::metadata(&file).expect("input file").len();
    let mut config = ScanConfig::default();
    config.enrich.geoip_city = db("TRAILHOUND_GEOIP_CITY", "data/geoip/city.mmdb");
    config.enrich.geoip_asn = db("TRAILHOUND_GEOIP_ASN", "data/geoip/asn.mmdb");
    config.enrich.aws_ip_ranges = Some("builtin".into());
    if config.enrich.geoip_city.is_none() || config.enrich.geoip_asn.is_none() {
        println!(
            "warning: GeoIP databases missing (run scripts/setup): geo lookups are not measured"
        );
    }
    // This shared machine's speed drifts within minutes: the limit and the
    // scans are measured in turn, several rounds, and each round's ratio is
    // of figures taken a few seconds apart.
    let rounds = env_usize("TRAILHOUND_BENCH_ROUNDS", 3).max(1);
    let (mut limit, mut memory, mut rocksdb) = (Vec::new(), Vec::new(), Vec::new());
    let mut principals = 0;
    for round in 1..=rounds {
        let (events, parse_secs) = parse_only(&file);
        if round == 1 {
            println!(
                "input {}: {events} events, {:.0} MiB",
                file.display(),
                size as f64 / 1048576.0
            );
        }
        let parse_rate = events as f64 / parse_secs;
        println!("round {round}: parse-only {parse_rate:>10.0} events/s ({parse_secs:.2}s)");
        limit.push(parse_rate);
        let state = dir.path().join(format!("state-{round}"));
        for (label, state_dir, per_core) in [
            ("scan (memory state):", None, &mut memory),
            ("scan (RocksDB state):", Some(state.clone()), &mut rocksdb),
        ] {
            config.state_dir = state_dir;
            let cpu_before = cpu_seconds();
            let report =
                trailhound_pipeline::scan(std::slice::from_ref(&file), &config, &mut |_| {})
                    .expect("scan");
            let cpu = cpu_seconds() - cpu_before;
            assert_eq!(report.events_used as usize, events);
            principals = report.principals;
            let secs = report.elapsed.as_secs_f64();
            let rate = events as f64 / secs;
            let core_rate = events as f64 / cpu;
            per_core.push(core_rate / parse_rate);
            println!(
                "  {label:<22}{rate:>10.0} events/s ({secs:.2}s wall; reader and stages on two threads), {:.0}% of parse-only; {core_rate:.0} events/s per core ({cpu:.2}s CPU), {:.0}% of parse-only; {} principals, {} findings",
                100.0 * rate / parse_rate,
                100.0 * core_rate / parse_rate,
                report.principals,
                report.findings.len()
            );
        }
        if round < rounds {
            std::fs::remove_dir_all(&state).expect("remove state");
        }
    }
    println!(
        "median of {rounds} rounds: parse-only {:.0} events/s; scan per core {:.0}% of parse-only (memory state), {:.0}% (RocksDB state)",
        median(&mut limit),
        100.0 * median(&mut memory),
        100.0 * median(&mut rocksdb)
    );
    let store = trailhound_state::Store::open(
        &dir.path().join(format!("state-{rounds}")),
        &trailhound_pipeline::stage::all_tables(),
    )
    .expect("reopen state");
    store.compact().expect("compact state");
    println!(
        "state on disk: {:.1} MiB, {:.0} bytes per principal",
        store.disk_bytes() as f64 / 1048576.0,
        store.disk_bytes() as f64 / principals as f64
    );
    println!("peak RSS {:.0} MiB", peak_rss_mib());
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The limit: read the file and deserialise every record into the typed
/// event, as `scan`'s reader does. Events parsed, and seconds taken.
fn parse_only(file: &std::path::Path) -> (usize, f64) {
    let started = Instant::now();
    let mut parsed = 0u64;
    trailhound_cloudtrail::Source::open(file)
        .and_then(|source| source.parse(false, &mut |p| parsed += u64::from(p.is_ok())))
        .expect("parse");
    (parsed as usize, started.elapsed().as_secs_f64())
}
