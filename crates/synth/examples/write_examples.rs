//! Writes the repository's `examples/` logs: 46 days of the example
//! organisation's normal activity with a stolen-credential episode on the
//! last day, as gzip S3 delivery files (one per account, region and 5
//! minutes, as CloudTrail delivers). Run from the repository root:
//! `cargo run -p trailhound-synth --example write_examples`.
#![allow(clippy::print_stdout)] // a program whose output is its report

use std::io::Write;
use std::path::Path;

use trailhound_synth::simulate::s3_delivery_files;
use trailhound_synth::{HISTORY_START_MS, benign_history, stolen_credentials_episode};

fn main() -> std::io::Result<()> {
    let out = Path::new("examples");
    let mut records = benign_history(42, HISTORY_START_MS, 46);
    records.extend(stolen_credentials_episode(43, HISTORY_START_MS, 45));
    let files = s3_delivery_files(records.clone(), "example");
    for (rel, doc) in &files {
        let path = out.join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path)?,
            flate2::Compression::best(),
        );
        serde_json::to_writer(&mut gz, doc)?;
        gz.finish()?.flush()?;
    }
    println!(
        "wrote {} events in {} files under {}",
        records.len(),
        files.len(),
        out.display()
    );
    Ok(())
}
