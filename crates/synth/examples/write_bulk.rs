//! Writes the benchmark's generated organisation as one S3 delivery file, or
//! as JSON lines when OUT ends in `.jsonl`:
//! `cargo run --release -p trailhound-synth --example write_bulk -- OUT [EVENTS] [PRINCIPALS] [DAYS]`
//! (for profiling `scan` on the data `scripts/bench` measures).

use std::io::Write;

use serde_json::value::RawValue;

#[derive(serde::Deserialize)]
struct Delivery<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<&'a RawValue>,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .expect("usage: write_bulk OUT [EVENTS] [PRINCIPALS] [DAYS]");
    let mut number = |default: usize| args.next().and_then(|a| a.parse().ok()).unwrap_or(default);
    let (events, principals, days) = (number(1_000_000), number(10_000), number(30));
    let doc = trailhound_synth::bulk(1, principals, events, days as i64);
    if !out.ends_with(".jsonl") {
        std::fs::write(&out, doc).expect("write");
        return;
    }
    let delivery: Delivery<'_> = serde_json::from_slice(&doc).expect("a delivery document");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&out).expect("create"));
    for record in delivery.records {
        writeln!(file, "{}", record.get()).expect("write");
    }
    file.flush().expect("write");
}
