//! Writes the repository's `examples/` logs: 46 days of the example
//! organisation's normal activity with a stolen-credential episode on the
//! last day, as gzip S3 delivery files (one per account, region and 5
//! minutes, as CloudTrail delivers). Run from the repository root:
//! `cargo run -p trailhound-synth --example write_examples`.
#![allow(clippy::print_stdout)] // a program whose output is its report

use std::path::Path;

use trailhound_synth::simulate::{s3_delivery_files, write_gzip_json};
use trailhound_synth::{HISTORY_START_MS, benign_history, stolen_credentials_episode};

fn main() -> std::io::Result<()> {
    let out = Path::new("examples");
    let mut records = benign_history(42, HISTORY_START_MS, 46);
    records.extend(stolen_credentials_episode(43, HISTORY_START_MS, 45));
    let events = records.len();
    let files = s3_delivery_files(records, 5, "example");
    for (rel, doc) in &files {
        write_gzip_json(&out.join(rel), doc, flate2::Compression::best())?;
    }
    println!(
        "wrote {events} events in {} files under {}",
        files.len(),
        out.display()
    );
    Ok(())
}
