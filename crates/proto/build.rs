//! Generates the `trailhound.v1` messages and the query service stubs.
//! Needs `protoc` (installed by scripts/setup, or set PROTOC).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // At run time, not compile time (env!): the compiled build script is
    // shared by every checkout using the same target directory.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "events.proto",
        "observations.proto",
        "findings.proto",
        "query.proto",
    ]
    .map(|f| root.join("trailhound/v1").join(f));
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Boxed so that handing an event from stage to stage moves a pointer,
        // not a kilobyte of struct.
        .boxed(".trailhound.v1.EnrichedEvent.event")
        .boxed(".trailhound.v1.Observation.enriched")
        .file_descriptor_set_path(out.join("trailhound_descriptor.bin"))
        .compile_protos(&files, &[root])?;
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    Ok(())
}
