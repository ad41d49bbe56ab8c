//! State size per principal and per organisation-wide command entry after a
//! scan: `cargo run --release -p trailhound-e2e --example state_size [DAYS]`
//! scans a synthesized organisation (DAYS of history, default 46) into a
//! state directory and prints the encoded size of each table's entries; and
//! the size of each event in the query service's store of principals'
//! events (for investigations).

#![allow(clippy::print_stdout)] // a program whose output is its report

use prost::Message as _;
use trailhound_detect::baseline::account::AccountProfile;
use trailhound_detect::baseline::command::CommandProfile;
use trailhound_detect::baseline::profile::Profile;
use trailhound_e2e::{scan_config, write_delivery};
use trailhound_enrich::Enricher;
use trailhound_query::PrincipalEvents;
use trailhound_state::Store;
use trailhound_synth::{HISTORY_START_MS, benign_history, stolen_credentials_episode};

fn sizes<V: serde::de::DeserializeOwned + serde::Serialize>(
    store: &Store,
    table: &str,
) -> Vec<usize> {
    let mut sizes: Vec<usize> = store
        .scan::<V>(table)
        .expect("table")
        .iter()
        .map(|(_, v)| postcard::to_stdvec(v).expect("encodes").len())
        .collect();
    sizes.sort_unstable();
    sizes
}

fn print(what: &str, sizes: &[usize]) {
    let total: usize = sizes.iter().sum();
    println!(
        "{what:<36} {:>6} entries  mean {:>7} B  median {:>7} B  max {:>7} B",
        sizes.len(),
        total / sizes.len().max(1),
        sizes.get(sizes.len() / 2).copied().unwrap_or(0),
        sizes.last().copied().unwrap_or(0)
    );
}

fn main() {
    let days: i64 = std::env::args()
        .nth(1)
        .and_then(|d| d.parse().ok())
        .unwrap_or(46);
    let logs = tempfile::tempdir().unwrap();
    let mut records = benign_history(42, HISTORY_START_MS, days);
    records.extend(stolen_credentials_episode(43, HISTORY_START_MS, days - 1));
    write_delivery(logs.path(), &records);
    let state = tempfile::tempdir().unwrap();
    let mut config = scan_config();
    config.state_dir = Some(state.path().to_path_buf());
    let report = trailhound_pipeline::scan(&[logs.path().to_path_buf()], &config, &mut |_| {})
        .expect("scan");
    println!(
        "{} events, {} days, {} principals",
        report.events_used, days, report.principals
    );
    drop(report);
    let store =
        Store::open(state.path(), &trailhound_pipeline::stage::all_tables()).expect("store");
    print(
        "profile per (account, principal)",
        &sizes::<Profile>(&store, "profiles"),
    );
    let commands = sizes::<CommandProfile>(&store, "commands");
    print("command (organisation-wide)", &commands);
    let entries: usize = store
        .scan::<CommandProfile>("commands")
        .unwrap()
        .iter()
        .map(|(_, c)| c.countries.len() + c.cities.len())
        .sum();
    println!(
        "{:<36} {:>6} (command, country|city) entries, {} B each on average with the command's daily counts",
        "",
        entries,
        commands.iter().sum::<usize>() / entries.max(1)
    );
    print("account", &sizes::<AccountProfile>(&store, "accounts"));

    // The query service keeps every enriched event of the retention period.
    let document = serde_json::to_vec(&serde_json::json!({ "Records": records })).unwrap();
    let mut enricher = Enricher::new(&config.enrich, config.partitions);
    let mut enriched = Vec::new();
    trailhound_cloudtrail::parse_document("history", &document, false, &mut |record| {
        if let Ok(Ok(event)) = record.map(|event| enricher.enrich(event)) {
            enriched.push(event);
        }
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &trailhound_query::tables()).unwrap();
    let events = PrincipalEvents::new(store.clone(), i64::MAX);
    for chunk in enriched.chunks(10_000) {
        events.apply(chunk, 0).unwrap();
    }
    store.compact().unwrap();
    let n = enriched.len().max(1);
    let encoded: usize = enriched.iter().map(|e| e.encoded_len()).sum();
    println!(
        "{:<36} {:>6} events, {} B each encoded, {} B each on disk (LZ4, with both indexes)",
        "query service: principals' events",
        enriched.len(),
        encoded / n,
        store.disk_bytes() as usize / n
    );
}
