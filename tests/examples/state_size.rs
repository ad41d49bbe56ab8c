//! State size per principal and per organisation-wide command entry after a
//! scan: `cargo run --release -p trailhound-e2e --example state_size [DAYS]`
//! scans a synthesized organisation (DAYS of history, default 46) into a
//! state directory and prints the encoded size of each table's entries.

#![allow(clippy::print_stdout)] // a program whose output is its report

use trailhound_detect::baseline::account::AccountProfile;
use trailhound_detect::baseline::command::CommandProfile;
use trailhound_detect::baseline::profile::Profile;
use trailhound_e2e::{scan_config, write_delivery};
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
}
