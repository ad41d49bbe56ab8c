//! Writes the benchmark's generated organisation as one S3 delivery file:
//! `cargo run --release -p trailhound-synth --example write_bulk -- OUT [EVENTS] [PRINCIPALS] [DAYS]`
//! (for profiling `scan` on the data `scripts/bench` measures).

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .expect("usage: write_bulk OUT [EVENTS] [PRINCIPALS] [DAYS]");
    let mut number = |default: usize| args.next().and_then(|a| a.parse().ok()).unwrap_or(default);
    let (events, principals, days) = (number(1_000_000), number(10_000), number(30));
    let doc = trailhound_synth::bulk(1, principals, events, days as i64);
    std::fs::write(&out, doc).expect("write");
}
