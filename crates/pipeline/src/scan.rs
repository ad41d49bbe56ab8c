//! `trailhound scan`: every stage in one process over log files, with no
//! server to start. State lives in memory, or in RocksDB under `state_dir`
//! so that the next scan continues from the learned baselines. Two threads
//! open the files, another parses them, and another runs the stages.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use serde::Deserialize;
use trailhound_alert::AlertConfig;
use trailhound_cloudtrail::{Parsed, RecordOrder, Rejected, sort_by_event_time};
use trailhound_detect::DetectionConfig;
use trailhound_enrich::EnricherConfig;
use trailhound_proto::Alert;
use trailhound_sinks::SinkConfig;
use trailhound_state::{StateError, Store};

use crate::bus::{InProcessBus, Outcome, Spent};
use crate::copies::ReadBefore;
use crate::file_marks::{Checkpoints, FileMarks, Marks, Opened, open};
use crate::findings::{Collected, ScanFindings};
use crate::stage::all_tables;

/// Everything a scan can be configured with (the TOML `--config` file).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    pub enrich: EnricherConfig,
    pub detection: DetectionConfig,
    /// Suppression rules (`[[alert.suppress]]`).
    pub alert: AlertConfig,
    /// Where findings are delivered besides stdout (`[[sink]]`).
    pub sink: Vec<SinkConfig>,
    /// Partitions of (account, principal); fixed for the life of a state dir.
    pub partitions: u32,
    /// RocksDB state directory; unset keeps state in memory for this run.
    pub state_dir: Option<PathBuf>,
    /// JSON lines file receiving every rejected record with its reason.
    pub dead_letter: Option<PathBuf>,
    /// Commit state at the first file boundary after this many events.
    pub commit_every: usize,
    /// Entries each state table keeps in memory with a state directory
    /// (the rest stay in RocksDB): bounds memory whatever the principals.
    pub state_cache_entries: usize,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            enrich: EnricherConfig::default(),
            detection: DetectionConfig::default(),
            alert: AlertConfig::default(),
            sink: Vec::new(),
            partitions: 16,
            state_dir: None,
            dead_letter: None,
            commit_every: 50_000,
            state_cache_entries: trailhound_state::DEFAULT_CACHE_ENTRIES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "{0}: scan into a new state directory (the baselines are learned again \
         from the logs), or with the Trailhound that wrote it"
    )]
    StateLayout(StateError),
    #[error(transparent)]
    Input(#[from] trailhound_cloudtrail::InputError),
    #[error("dead-letter file {path}: {source}")]
    DeadLetter {
        path: String,
        source: std::io::Error,
    },
}

/// What a scan did, for the summary and the caller.
#[derive(Debug, Default)]
pub struct ScanReport {
    pub files_read: usize,
    /// Files whose exact content an earlier scan with this state processed.
    pub files_skipped: usize,
    /// Files with the same content as one read before in this scan (see
    /// `copies`): not read.
    pub files_copies: usize,
    /// The first of them, "copy (the same as original)", for display.
    pub copy_examples: Vec<String>,
    /// Files that are not CloudTrail logs by their place in a logging bucket
    /// (digest and Insights files, other services' logs): not read.
    pub files_not_logs: usize,
    /// Files that could not be read or whose structure is broken.
    pub file_errors: Vec<String>,
    pub events_read: u64,
    pub events_used: u64,
    /// Events the principal had made already (the same id and time, within
    /// the reorder window): delivered twice, by two trails or twice by
    /// one. Dropped at the baseline.
    pub events_duplicate: u64,
    /// Events more than the reorder window behind their principal's latest
    /// event (a backfill, or logs out of time order): judged against a
    /// profile already holding later events, and left out of the volume
    /// detectors once their time bucket had closed.
    pub events_late: u64,
    pub events_rejected: u64,
    /// The first rejections, for display; all go to the dead-letter file.
    pub rejected_examples: Vec<Rejected>,
    pub principals: usize,
    /// Findings created or updated by this scan, most severe first, read
    /// from its state: with a state directory the report keeps the store
    /// open (and the directory locked) until it is dropped.
    pub findings: ScanFindings,
    pub warnings: Vec<String>,
    pub elapsed: Duration,
}

impl ScanReport {
    pub fn events_per_second(&self) -> f64 {
        self.events_read as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Progress after each file and every 10,000 events.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub files_done: usize,
    pub files_total: usize,
    pub events: u64,
}

const EXAMPLES: usize = 20;

pub fn scan(
    paths: &[PathBuf],
    config: &ScanConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<ScanReport, ScanError> {
    let started = Instant::now();
    let store = match &config.state_dir {
        Some(dir) => {
            let store = Store::open_with_cache(dir, &all_tables(), config.state_cache_entries)?;
            let layouts = trailhound_detect::baseline::LAYOUTS;
            store
                .check_layouts(layouts)
                .map_err(ScanError::StateLayout)?;
            Some(store)
        }
        None => None,
    };
    let checkpoints = store.as_deref().map(Checkpoints::of).transpose()?;
    let mut dead_letter = match &config.dead_letter {
        Some(path) => Some(DeadLetter::create(path)?),
        None => None,
    };
    let discovered = trailhound_cloudtrail::discover(paths)?;
    let files = discovered.files;
    // Files are read and parsed on a second thread while this one runs the
    // stages: parsing is about 40 % of the work. Events go back to that
    // thread to be freed: mimalloc frees another thread's allocations
    // through an atomic list, which took the stage thread ~15 % of its time.
    let keep_raw = dead_letter.is_some();
    let (tx, rx) = std::sync::mpsc::sync_channel(16);
    let (spent_tx, spent_rx) = std::sync::mpsc::sync_channel(16);
    let (bus, mut report, findings) = std::thread::scope(|scope| {
        scope.spawn(|| read_files(&files, checkpoints, keep_raw, tx, spent_rx));
        // Made once the reader has started: opening the GeoIP databases
        // (reading ~115 MiB) overlaps its first reads (with a store, the
        // first file's checkpoints, and its hashing when it is hashed first).
        let mut bus = InProcessBus::new(
            &config.enrich,
            Arc::new(config.detection.clone()),
            Arc::new(config.alert.clone()),
            config.partitions,
            store.clone(),
        );
        let mut report = ScanReport {
            warnings: bus.enrich.0.warnings.clone(),
            files_not_logs: discovered.not_logs,
            ..Default::default()
        };
        let mut run = Run {
            bus: &mut bus,
            report: &mut report,
            dead_letter: dead_letter.as_mut(),
            alerts: Vec::new(),
            findings: Collected::default(),
            progress,
            files_total: files.len(),
            files_done: 0,
            commit_every: config.commit_every as u64,
            since_commit: 0,
            marks: Vec::new(),
            spent: Vec::with_capacity(BATCH),
            outcomes: Vec::with_capacity(GROUP),
        };
        run.consume(rx, spent_tx)?;
        run.commit(None)?;
        let findings = std::mem::take(&mut run.findings);
        Ok::<_, ScanError>((bus, report, findings))
    })?;
    if let Some(d) = dead_letter.as_mut() {
        d.flush()?;
    }
    report.principals = bus.principals_seen();
    report.events_late = bus.events_late();
    // The findings stay in the alert stage's state, read back when shown.
    report.findings = ScanFindings::new(findings, bus.merge.0);
    report.elapsed = started.elapsed();
    Ok(report)
}

/// What the reader thread sends, file by file, in order.
enum Input {
    /// What the records that follow come from.
    Start(Reading),
    Records(Vec<Parsed>),
    /// The end of a file's records, and whether its structure was whole
    /// (a truncated gzip or broken JSON is an error after the good records).
    End(Result<(), String>),
    /// A file scanned before; with the mark to keep that it has not changed
    /// since, when it was recognised by its content.
    AlreadyScanned(Option<String>),
    /// A file with the same content as one read before in this scan: the
    /// copy's name, then the original's.
    CopyOf(String, String),
    Unreadable(String),
}

/// Where records come from.
enum Reading {
    /// One file; with a store, its checkpoint marks.
    File(String, Option<Box<FileMarks>>),
    /// Event history files merged in event time (see [`Histories`]).
    Histories(Vec<FileRead>),
}

impl Reading {
    fn files(&self) -> usize {
        match self {
            Reading::File(..) => 1,
            Reading::Histories(files) => files.len(),
        }
    }
}

/// A file whose records were read: its name, marks, and whether its
/// structure was whole.
struct FileRead {
    name: String,
    marks: Option<Box<FileMarks>>,
    structure: Result<(), String>,
}

/// Event history files read one after another, held to be handed on
/// together in event time. `aws cloudtrail lookup-events` lists one
/// region's history at a time, the most recent event first: files of
/// several regions, each put in time order alone, would give one region's
/// months after another's, and the calls of every region after the first
/// would come later than the reorder window.
#[derive(Default)]
struct Histories {
    files: Vec<FileRead>,
    records: Vec<Parsed>,
}

/// Records of Event history held at most (about 1 KiB each) before they
/// are handed on: files beyond it are merged among themselves.
const HISTORY_RECORDS: usize = 1 << 20;

impl Histories {
    /// Hold a file's records (in event time), passing over those an
    /// earlier, interrupted scan committed, as the stages do for a file
    /// read alone.
    fn hold(&mut self, mut file: FileRead, mut records: Vec<Parsed>) {
        let committed = file
            .marks
            .as_mut()
            .map_or(0, |m| m.committed_of_next(records.len()));
        self.records.extend(records.drain(committed..));
        self.files.push(file);
    }

    fn full(&self) -> bool {
        self.records.len() >= HISTORY_RECORDS
    }

    /// Hand on what is held, in event time; false once the stages are gone.
    fn send(&mut self, outbox: &mut Outbox) -> bool {
        if self.files.is_empty() {
            return true;
        }
        let mut records = std::mem::take(&mut self.records);
        sort_by_event_time(&mut records);
        if !outbox.push(Input::Start(Reading::Histories(std::mem::take(
            &mut self.files,
        )))) {
            return false;
        }
        let mut records = records.into_iter();
        while records.len() > 0 {
            if !outbox.push(Input::Records(records.by_ref().take(BATCH).collect())) {
                return false;
            }
        }
        outbox.push(Input::End(Ok(())))
    }
}

/// Records sent to the stages at a time.
const BATCH: usize = 512;

/// Records through the stages at a time (see [`InProcessBus::publish`]),
/// their strings read ahead first (see [`warm_up`]).
const GROUP: usize = 64;

/// Read every string of the next events once, before the stages run. The
/// reader thread wrote them, so they sit in the other core's cache or L3:
/// one pass with nothing waiting on its loads lets the CPU fetch them many
/// at a time, where the stages would wait on each in turn. Measured on 1M
/// events: ~6 % less CPU on each thread, ~7 % less wall time; a whole batch
/// at once gained half as much (its start is evicted again before use).
fn warm_up(records: &[Parsed]) {
    fn touch(text: &str, sum: &mut u8) {
        text.bytes().step_by(64).for_each(|b| *sum ^= b);
    }
    let mut sum = 0;
    for event in records.iter().flatten() {
        for field in [
            &event.event_id,
            &event.event_source,
            &event.event_name,
            &event.aws_region,
            &event.source_ip,
            &event.user_agent,
            &event.error_code,
            &event.recipient_account_id,
            &event.event_type,
            &event.request_parameters_json,
            &event.response_elements_json,
        ] {
            touch(field, &mut sum);
        }
        if let Some(id) = &event.user_identity {
            for field in [
                &id.r#type,
                &id.arn,
                &id.account_id,
                &id.principal_id,
                &id.session_issuer_arn,
                &id.session_issuer_account_id,
            ] {
                touch(field, &mut sum);
            }
        }
    }
    std::hint::black_box(sum);
}

/// Read and parse `files` in order, sending their records in batches and
/// freeing the events the stages have finished with; stops when the
/// receiver is gone. Files are opened ahead on threads of their own:
/// identified with a store (see [`file_marks`](crate::file_marks)), and
/// small ones read and gunzipped whole, which for S3 delivery files is most
/// of the reading.
fn read_files(
    files: &[PathBuf],
    checkpoints: Option<Checkpoints<'_>>,
    keep_raw: bool,
    tx: SyncSender<Vec<Input>>,
    spent: Receiver<Spent>,
) {
    // Files are opened (and small ones gunzipped) on threads of their own,
    // in chunks so that the threads do not wake each other for every file:
    // opener k takes chunks k, k + OPENERS, …, and they are taken back in
    // turn, so in file order.
    std::thread::scope(|scope| {
        let openers: Vec<_> = (0..OPENERS)
            .map(|k| {
                let (opened_tx, opened_rx) = std::sync::mpsc::sync_channel(2);
                let chunks = files.chunks(OPEN_AHEAD).skip(k).step_by(OPENERS);
                scope.spawn(move || {
                    for chunk in chunks {
                        let opened: Vec<_> =
                            chunk.iter().map(|path| open(path, checkpoints)).collect();
                        if opened_tx.send(opened).is_err() {
                            return;
                        }
                    }
                });
                opened_rx
            })
            .collect();
        let opened_rx = openers.iter().cycle().map_while(|rx| rx.recv().ok());
        let mut outbox = Outbox {
            tx,
            pending: Vec::new(),
            records: 0,
        };
        let mut read_before = ReadBefore::default();
        let mut histories = Histories::default();
        for (index, opened) in opened_rx.flatten().enumerate() {
            let (marks, source) = match opened {
                Ok(Opened::ToRead {
                    marks,
                    source,
                    fingerprint,
                }) => {
                    let original =
                        fingerprint.and_then(|f| read_before.original_of(files, index, f));
                    if let Some(original) = original {
                        let copy = Input::CopyOf(
                            source.name().to_string(),
                            original.display().to_string(),
                        );
                        if !outbox.push(copy) {
                            return;
                        }
                        continue;
                    }
                    (marks, source)
                }
                Ok(Opened::AlreadyScanned(unchanged)) => {
                    if !outbox.push(Input::AlreadyScanned(unchanged)) {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    if !outbox.push(Input::Unreadable(e)) {
                        return;
                    }
                    continue;
                }
            };
            let name = source.name().to_string();
            let (mut marks, mut history, mut gone) = (Some(marks), None, false);
            let structure = source.parse_in_batches(keep_raw, BATCH, &mut |batch, order| {
                spent.try_iter().for_each(drop);
                if order == RecordOrder::EventTime {
                    history.get_or_insert_with(Vec::new).extend(batch);
                    return true;
                }
                // The histories held come first: they were read first.
                if let Some(marks) = marks.take() {
                    let start = Input::Start(Reading::File(name.clone(), marks));
                    gone = !histories.send(&mut outbox) || !outbox.push(start);
                }
                gone = gone || !outbox.push(Input::Records(batch));
                !gone
            });
            let structure = structure.map_err(|e| e.to_string());
            if let Some(records) = history {
                let marks = marks.flatten();
                histories.hold(
                    FileRead {
                        name,
                        marks,
                        structure,
                    },
                    records,
                );
                if histories.full() && !histories.send(&mut outbox) {
                    return;
                }
                continue;
            }
            if gone || !outbox.push(Input::End(structure)) {
                return;
            }
        }
        if histories.send(&mut outbox) {
            outbox.flush();
        }
    });
}

/// Files opened at a time ahead of the ones being parsed, up to three such
/// chunks per opener (a small file is read whole: at most about 1 MiB of
/// JSON once gunzipped, most S3 delivery files a few KiB). 16 at a time
/// woke the threads often enough to cost a tenth of the wall time on
/// delivery files.
const OPEN_AHEAD: usize = 32;

/// Threads opening files: with 400,000 S3 delivery files, opening and
/// gunzipping them is over half of a scan's work.
const OPENERS: usize = 2;

/// What the reader has for the stages, sent a batch's worth of records (or
/// of files) at a time: an S3 delivery file holds a few events, and one
/// message per file woke the other thread for each (with 400,000 small
/// files, a fifth of the scan's time went to the scheduler).
struct Outbox {
    tx: SyncSender<Vec<Input>>,
    pending: Vec<Input>,
    records: usize,
}

impl Outbox {
    /// Queue `input`, sending once enough is queued; false once the stages
    /// are gone.
    fn push(&mut self, input: Input) -> bool {
        if let Input::Records(batch) = &input {
            self.records += batch.len();
        }
        self.pending.push(input);
        (self.records < BATCH && self.pending.len() < BATCH) || self.flush()
    }

    /// Send what is queued; false once the stages are gone.
    fn flush(&mut self) -> bool {
        self.records = 0;
        self.tx.send(std::mem::take(&mut self.pending)).is_ok()
    }
}

struct Run<'a> {
    bus: &'a mut InProcessBus,
    report: &'a mut ScanReport,
    dead_letter: Option<&'a mut DeadLetter>,
    alerts: Vec<Alert>,
    findings: Collected,
    progress: &'a mut dyn FnMut(Progress),
    files_total: usize,
    files_done: usize,
    /// Commit state after about this many records, inside a file too, so
    /// that memory stays within the state cache's bound.
    commit_every: u64,
    since_commit: u64,
    /// Checkpoint changes for the next commit (`None` deletes the key).
    marks: Marks,
    /// Events the stages are done with, to be freed by the reader thread.
    spent: Spent,
    /// Reused for each group's outcomes.
    outcomes: Vec<Outcome>,
}

impl Run<'_> {
    /// Run what the reader sends through the stages. A record that cannot
    /// be used is dead-lettered; a state or dead-letter failure ends its
    /// file with an error, and scanning goes on with the next.
    fn consume(
        &mut self,
        inputs: Receiver<Vec<Input>>,
        spent: SyncSender<Spent>,
    ) -> Result<(), ScanError> {
        let mut current: Option<Reading> = None;
        let mut failure = None;
        for input in inputs.into_iter().flatten() {
            match input {
                Input::Unreadable(e) => {
                    self.report.file_errors.push(e);
                    self.file_done()?;
                }
                Input::AlreadyScanned(unchanged) => {
                    self.report.files_skipped += 1;
                    if let Some(key) = unchanged {
                        self.marks.push((key, Some(Vec::new())));
                    }
                    self.file_done()?;
                }
                Input::CopyOf(copy, original) => {
                    self.report.files_copies += 1;
                    if self.report.copy_examples.len() < EXAMPLES {
                        let example = format!("{copy} (the same as {original})");
                        self.report.copy_examples.push(example);
                    }
                    self.file_done()?;
                }
                Input::Start(reading) => {
                    self.report.files_read += reading.files();
                    current = Some(reading);
                }
                Input::Records(batch) => {
                    // Merged histories are committed once they end: how far
                    // the stages got is not a place in any one file.
                    let (mut marks, may_commit) = match current.as_mut() {
                        Some(Reading::File(_, marks)) => (marks.as_deref_mut(), true),
                        Some(Reading::Histories(_)) => (None, false),
                        None => continue,
                    };
                    let mut records = batch.into_iter();
                    while failure.is_none() && !records.as_slice().is_empty() {
                        let n = records.as_slice().len().min(GROUP);
                        warm_up(&records.as_slice()[..n]);
                        // Records an earlier, interrupted scan committed are passed over.
                        let committed = marks.as_mut().map_or(0, |m| m.committed_of_next(n));
                        let group = records.by_ref().take(n).skip(committed);
                        if let Err(e) = self.step(group, marks.as_deref(), may_commit) {
                            failure = Some(e);
                        }
                    }
                    // Freed here instead when the reader has finished or fallen behind.
                    if self.spent.len() >= BATCH {
                        let _ = spent.try_send(std::mem::replace(
                            &mut self.spent,
                            Vec::with_capacity(BATCH),
                        ));
                    }
                }
                Input::End(structure) => {
                    let failure = failure.take();
                    match current.take().expect("a file ends after it starts") {
                        Reading::File(name, marks) => {
                            let file = FileRead {
                                name,
                                marks,
                                structure,
                            };
                            self.file_ended(file, failure.as_ref());
                            self.file_done()?;
                        }
                        // Every file's marks before a commit, so that no
                        // commit holds some of merged histories' events only.
                        Reading::Histories(files) => {
                            let ended = files.len();
                            for file in files {
                                self.file_ended(file, failure.as_ref());
                            }
                            for _ in 0..ended {
                                self.file_done()?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A group of records through the stages, committing every
    /// `commit_every` records when it `may_commit`.
    fn step(
        &mut self,
        group: impl Iterator<Item = Parsed>,
        reading: Option<&FileMarks>,
        may_commit: bool,
    ) -> Result<(), ScanError> {
        let mut outcomes = std::mem::take(&mut self.outcomes);
        let published = self
            .bus
            .publish(group, &mut outcomes, &mut self.alerts, &mut self.spent);
        self.since_commit += outcomes.len() as u64;
        let counted = outcomes.drain(..).try_for_each(|o| self.count(o));
        self.outcomes = outcomes;
        for alert in self.alerts.drain(..) {
            let finding = alert.finding.expect("alerts carry their finding");
            self.findings.add(&finding, alert.is_new);
        }
        published?;
        counted?;
        if may_commit && self.since_commit >= self.commit_every {
            self.commit(reading)?;
        }
        Ok(())
    }

    /// Record how a file ended: an error, or its marks.
    fn file_ended(&mut self, file: FileRead, failure: Option<&ScanError>) {
        let FileRead {
            name,
            marks,
            structure,
        } = file;
        match (failure, structure) {
            (Some(e), _) => self.report.file_errors.push(format!("{name}: {e}")),
            (None, Err(e)) => self.report.file_errors.push(e),
            (None, Ok(())) => {
                if let Some(m) = marks {
                    self.marks.extend(m.done(name));
                }
            }
        }
    }

    fn file_done(&mut self) -> Result<(), ScanError> {
        self.files_done += 1;
        (self.progress)(Progress {
            files_done: self.files_done,
            files_total: self.files_total,
            events: self.report.events_read,
        });
        if self.since_commit >= self.commit_every {
            self.commit(None)?;
        }
        Ok(())
    }

    /// Make state durable with the checkpoints of the files read so far,
    /// and how far the current one (`reading`) has got.
    fn commit(&mut self, reading: Option<&FileMarks>) -> Result<(), ScanError> {
        let mut marks = std::mem::take(&mut self.marks);
        if let Some(m) = reading {
            marks.extend(m.progress());
        }
        self.bus.commit(&marks)?;
        self.since_commit = 0;
        Ok(())
    }

    /// What became of one record. Only a dead-letter I/O failure stops the
    /// file; a bad record is dead-lettered.
    fn count(&mut self, outcome: Outcome) -> Result<(), ScanError> {
        self.report.events_read += 1;
        if self.report.events_read.is_multiple_of(10_000) {
            (self.progress)(Progress {
                files_done: self.files_done,
                files_total: self.files_total,
                events: self.report.events_read,
            });
        }
        match outcome {
            Outcome::New => self.report.events_used += 1,
            Outcome::Duplicate => self.report.events_duplicate += 1,
            Outcome::Rejected(rejected) => return self.reject(rejected),
        }
        Ok(())
    }

    fn reject(&mut self, rejected: Rejected) -> Result<(), ScanError> {
        self.report.events_rejected += 1;
        if let Some(d) = self.dead_letter.as_deref_mut() {
            d.write(&rejected)?;
        }
        if self.report.rejected_examples.len() < EXAMPLES {
            let mut example = rejected;
            example.raw = None;
            self.report.rejected_examples.push(example);
        }
        Ok(())
    }
}

/// The dead-letter file: one JSON object per rejected record.
struct DeadLetter {
    path: String,
    out: std::io::BufWriter<std::fs::File>,
}

impl DeadLetter {
    fn create(path: &Path) -> Result<Self, ScanError> {
        let name = path.display().to_string();
        let file = std::fs::File::create(path).map_err(|source| ScanError::DeadLetter {
            path: name.clone(),
            source,
        })?;
        Ok(Self {
            path: name,
            out: std::io::BufWriter::new(file),
        })
    }

    fn write(&mut self, rejected: &Rejected) -> Result<(), ScanError> {
        let line = serde_json::to_string(rejected).expect("rejections serialise");
        writeln!(self.out, "{line}").map_err(|source| ScanError::DeadLetter {
            path: self.path.clone(),
            source,
        })
    }

    fn flush(&mut self) -> Result<(), ScanError> {
        self.out.flush().map_err(|source| ScanError::DeadLetter {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file_marks::unchanged_key;
    use trailhound_state::Batch;

    fn lines(n: usize) -> String {
        (0..n)
            .map(|i| {
                format!(
                    r#"{{"eventID":"e{i}","eventTime":"2024-01-01T00:{:02}:{:02}Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"us-east-1","sourceIPAddress":"AWS Internal","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111111111111:user/alice","accountId":"111111111111"}}}}"#,
                    i / 60,
                    i % 60
                ) + "\n"
            })
            .collect()
    }

    #[test]
    fn large_files_commit_as_they_go_and_an_interrupted_scan_resumes_after_what_it_committed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("events.jsonl");
        // More than two groups of records.
        let text = lines(150);
        std::fs::write(&file, &text).unwrap();
        let hash = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()));
        let config = |state: &str| ScanConfig {
            state_dir: Some(dir.path().join(state)),
            commit_every: 3,
            ..ScanConfig::default()
        };
        let scan_file =
            |config: &ScanConfig| scan(std::slice::from_ref(&file), config, &mut |_| {}).unwrap();

        // A report holds the state open (its findings are read from it): dropped at once.
        assert_eq!(scan_file(&config("a")).events_read, 150);
        let store = Store::open(&dir.path().join("a"), &all_tables()).unwrap();
        assert!(
            store
                .meta(&format!("scanned-file:{hash}"))
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .meta(&format!("scanning-file:{hash}"))
                .unwrap()
                .is_none()
        );
        drop(store);

        // A scan that stopped after committing 100 records of the file: the
        // first group is passed over, and part of the second.
        let store = Store::open(&dir.path().join("b"), &all_tables()).unwrap();
        let mut batch = Batch::default();
        batch.set_meta(&format!("scanning-file:{hash}"), b"100");
        store.commit(batch).unwrap();
        drop(store);
        let resumed = scan_file(&config("b"));
        assert_eq!((resumed.events_read, resumed.files_read), (50, 1));
        drop(resumed);
        let again = scan_file(&config("b"));
        assert_eq!((again.events_read, again.files_skipped), (0, 1));
    }

    /// A file larger than those read whole, its content and its probe.
    fn large_file(dir: &Path, name: &str) -> (PathBuf, String, u128) {
        let text = lines(400);
        let file = dir.join(name);
        std::fs::write(&file, &text).unwrap();
        let probe = probe_of(text.as_bytes());
        (file, text, probe)
    }

    fn probe_of(bytes: &[u8]) -> u128 {
        assert!(bytes.len() > 64 << 10);
        let size = (bytes.len() as u64).to_le_bytes();
        let ends = [
            &size[..],
            &bytes[..64 << 10],
            &bytes[bytes.len() - (64 << 10)..],
        ];
        xxhash_rust::xxh3::xxh3_128(&ends.concat())
    }

    #[test]
    fn events_later_than_the_reorder_window_are_counted_late() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("events.jsonl");
        // An hour of calls a second apart, the second half read first: the
        // first half is 30 to 60 minutes behind the latest.
        let text = lines(3600);
        let half = text.match_indices('\n').nth(1799).unwrap().0 + 1;
        let (first, second) = text.split_at(half);
        // In time order, none is late.
        for (content, late) in [([second, first].concat(), 1800), (text.clone(), 0)] {
            std::fs::write(&file, content).unwrap();
            let files = std::slice::from_ref(&file);
            let report = scan(files, &ScanConfig::default(), &mut |_| {}).unwrap();
            assert_eq!((report.events_used, report.events_late), (3600, late));
        }
    }

    /// Event history as `aws cloudtrail lookup-events` gives it: the most
    /// recent event first, each record as text.
    fn history(records: &[String]) -> String {
        let events: Vec<String> = records
            .iter()
            .rev()
            .map(|r| serde_json::json!({ "CloudTrailEvent": r }).to_string())
            .collect();
        format!(r#"{{"Events":[{}]}}"#, events.join(","))
    }

    #[test]
    fn event_history_files_of_several_regions_are_merged_in_event_time() {
        let dir = tempfile::tempdir().unwrap();
        // An hour of calls a second apart, every other one in another
        // region; a file per region, as one lists each region's history.
        let (mut east, mut west) = (Vec::new(), Vec::new());
        for (i, line) in lines(3600).lines().enumerate() {
            match i % 2 {
                0 => east.push(line.to_string()),
                _ => west.push(line.replace("us-east-1", "eu-west-1")),
            }
        }
        let files = [dir.path().join("east.json"), dir.path().join("west.json")];
        std::fs::write(&files[0], history(&east)).unwrap();
        std::fs::write(&files[1], history(&west)).unwrap();

        let report = scan(&files, &ScanConfig::default(), &mut |_| {}).unwrap();
        let read = (report.files_read, report.events_used, report.events_late);
        assert_eq!(read, (2, 3600, 0));

        // Into a state directory: committed once both have ended, and
        // known unchanged after.
        let config = ScanConfig {
            state_dir: Some(dir.path().join("state")),
            commit_every: 3,
            ..ScanConfig::default()
        };
        let first = scan(&files, &config, &mut |_| {}).unwrap();
        assert_eq!((first.events_used, first.events_late), (3600, 0));
        drop(first);
        let again = scan(&files, &config, &mut |_| {}).unwrap();
        assert_eq!((again.events_read, again.files_skipped), (0, 2));
    }

    #[test]
    fn copies_of_a_file_read_before_in_the_scan_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        for sub in ["a", "b", "c"] {
            std::fs::create_dir_all(logs.join(sub)).unwrap();
        }
        // Large enough for its middle to lie outside the probe's ends.
        let text = lines(600);
        let large = logs.join("a/events.jsonl");
        std::fs::write(&large, &text).unwrap();
        std::fs::copy(&large, logs.join("b/events.jsonl")).unwrap();
        let small = logs.join("a/small.jsonl");
        std::fs::write(&small, lines(3)).unwrap();
        std::fs::copy(&small, logs.join("b/small.jsonl")).unwrap();
        // The same size, start and end (so the same probe), one event's id
        // changed in the middle: not a copy.
        let changed = text.replacen("\"eventID\":\"e300\"", "\"eventID\":\"x300\"", 1);
        assert_ne!(changed, text);
        assert_eq!(probe_of(changed.as_bytes()), probe_of(text.as_bytes()));
        std::fs::write(logs.join("c/events.jsonl"), changed).unwrap();
        for state_dir in [None, Some(dir.path().join("state"))] {
            let config = ScanConfig {
                state_dir: state_dir.clone(),
                ..ScanConfig::default()
            };
            let report = scan(std::slice::from_ref(&logs), &config, &mut |_| {}).unwrap();
            let copies = [
                format!(
                    "{} (the same as {})",
                    logs.join("b/events.jsonl").display(),
                    large.display()
                ),
                format!(
                    "{} (the same as {})",
                    logs.join("b/small.jsonl").display(),
                    small.display()
                ),
            ];
            assert_eq!(
                (report.files_read, report.files_copies, report.events_read),
                (3, 2, 1203),
                "{state_dir:?}"
            );
            assert_eq!(report.copy_examples, copies);
        }
        // The copies were not read into the state, and are known by their
        // content next time.
        let config = ScanConfig {
            state_dir: Some(dir.path().join("state")),
            ..ScanConfig::default()
        };
        let again = scan(std::slice::from_ref(&logs), &config, &mut |_| {}).unwrap();
        assert_eq!(
            (again.files_skipped, again.files_copies, again.events_read),
            (5, 0, 0)
        );
    }

    #[test]
    fn a_large_file_that_breaks_is_read_again_after_the_records_committed() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<String> = lines(400).lines().map(str::to_string).collect();
        let document = format!(r#"{{"Records":[{}]}}"#, records.join(","));
        // Cut inside its last record.
        let broken = &document.as_bytes()[..document.len() - 100];
        let file = dir.path().join("broken.json");
        std::fs::write(&file, broken).unwrap();
        let config = ScanConfig {
            state_dir: Some(dir.path().join("state")),
            commit_every: 3,
            ..ScanConfig::default()
        };
        let first = scan(std::slice::from_ref(&file), &config, &mut |_| {}).unwrap();
        assert_eq!((first.events_read, first.file_errors.len()), (399, 1));
        drop(first);
        // Read as its hash was made: its progress is kept by its probe.
        let store = Store::open(&dir.path().join("state"), &all_tables()).unwrap();
        let key = format!("probing-file:{:032x}", probe_of(broken));
        let progress = String::from_utf8(store.meta(&key).unwrap().unwrap()).unwrap();
        let committed: u64 = progress.split(' ').next().unwrap().parse().unwrap();
        assert!(committed > 0, "{progress}");
        drop(store);
        let again = scan(std::slice::from_ref(&file), &config, &mut |_| {}).unwrap();
        assert_eq!(again.events_read, 399 - committed);
    }

    #[test]
    fn a_large_file_never_seen_is_hashed_as_it_is_read_and_known_after() {
        let dir = tempfile::tempdir().unwrap();
        let (file, text, probe) = large_file(dir.path(), "events.jsonl");
        let config = ScanConfig {
            state_dir: Some(dir.path().join("state")),
            commit_every: 3,
            ..ScanConfig::default()
        };
        let scan_file = |file: &PathBuf| {
            let report = scan(std::slice::from_ref(file), &config, &mut |_| {}).unwrap();
            (report.events_read, report.files_skipped)
        };
        assert_eq!(scan_file(&file), (400, 0));
        let store = Store::open(&dir.path().join("state"), &all_tables()).unwrap();
        let hash = xxhash_rust::xxh3::xxh3_128(text.as_bytes());
        let meta = |key: String| store.meta(&key).unwrap();
        assert!(meta(format!("scanned-file:{hash:032x}")).is_some());
        assert!(meta(format!("probed-file:{probe:032x}")).is_some());
        assert!(meta(format!("probing-file:{probe:032x}")).is_none());
        drop(store);
        // The same content under another name: hashed first, and known.
        let copy = dir.path().join("copy.jsonl");
        std::fs::copy(&file, &copy).unwrap();
        assert_eq!(scan_file(&copy), (0, 1));
    }

    #[test]
    fn a_large_file_read_before_its_hash_was_known_resumes_only_if_it_starts_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let (file, text, probe) = large_file(dir.path(), "events.jsonl");
        // What a scan stopped after committing 100 records of it left: the
        // bytes read by then, and their hash.
        let read = text.match_indices('\n').nth(150).unwrap().0 + 1;
        let stopped = |state: &str, hash: u128| {
            let store = Store::open(&dir.path().join(state), &all_tables()).unwrap();
            let mut batch = Batch::default();
            batch.set_meta("file-marks:probed", b"1");
            batch.set_meta(&format!("probed-file:{probe:032x}"), b"");
            let progress = format!("100 {read} {hash:032x}");
            batch.set_meta(&format!("probing-file:{probe:032x}"), progress);
            store.commit(batch).unwrap();
        };
        let read_of = |state: &str| {
            let config = ScanConfig {
                state_dir: Some(dir.path().join(state)),
                ..ScanConfig::default()
            };
            scan(std::slice::from_ref(&file), &config, &mut |_| {})
                .unwrap()
                .events_read
        };
        stopped(
            "same",
            xxhash_rust::xxh3::xxh3_128(&text.as_bytes()[..read]),
        );
        assert_eq!(read_of("same"), 300);
        let store = Store::open(&dir.path().join("same"), &all_tables()).unwrap();
        assert!(
            store
                .meta(&format!("probing-file:{probe:032x}"))
                .unwrap()
                .is_none()
        );
        drop(store);
        // Other bytes under the same probe: read from the start.
        stopped("other", xxhash_rust::xxh3::xxh3_128(b"other bytes"));
        assert_eq!(read_of("other"), 400);
    }

    #[test]
    fn in_a_state_begun_before_probes_were_kept_a_large_file_is_hashed_first() {
        let dir = tempfile::tempdir().unwrap();
        let (file, text, _) = large_file(dir.path(), "events.jsonl");
        let state = dir.path().join("state");
        // Its content scanned whole by an earlier version, under another name.
        let store = Store::open(&state, &all_tables()).unwrap();
        let mut batch = Batch::default();
        let hash = xxhash_rust::xxh3::xxh3_128(text.as_bytes());
        batch.set_meta(&format!("scanned-file:{hash:032x}"), b"old.jsonl");
        store.commit(batch).unwrap();
        drop(store);
        let config = ScanConfig {
            state_dir: Some(state),
            ..ScanConfig::default()
        };
        let report = scan(std::slice::from_ref(&file), &config, &mut |_| {}).unwrap();
        assert_eq!((report.events_read, report.files_skipped), (0, 1));
    }

    #[test]
    fn a_file_unchanged_since_it_was_scanned_is_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("events.jsonl");
        std::fs::write(&file, lines(10)).unwrap();
        let config = ScanConfig {
            state_dir: Some(dir.path().join("state")),
            ..ScanConfig::default()
        };
        let scan_file = || {
            let report = scan(std::slice::from_ref(&file), &config, &mut |_| {}).unwrap();
            (report.events_read, report.files_skipped)
        };
        let set_modified = |time| {
            let f = std::fs::File::options().write(true).open(&file).unwrap();
            f.set_modified(time).unwrap();
        };
        assert_eq!(scan_file(), (10, 0));
        let modified = std::fs::metadata(&file).unwrap().modified().unwrap();

        // Other content of the same size and time: taken as unchanged, not read.
        std::fs::write(&file, lines(10).replace("alice", "bobby")).unwrap();
        set_modified(modified);
        assert_eq!(scan_file(), (0, 1));
        // Modified later: read, and new content.
        set_modified(modified + Duration::from_secs(1));
        assert_eq!(scan_file(), (10, 0));
        // Touched only: read again, but its content was scanned; then
        // known as unchanged.
        set_modified(modified + Duration::from_secs(2));
        let unchanged = unchanged_key(&file).unwrap();
        let is_marked = || {
            let store = Store::open(config.state_dir.as_ref().unwrap(), &all_tables()).unwrap();
            store.meta(&unchanged).unwrap().is_some()
        };
        assert!(!is_marked());
        assert_eq!(scan_file(), (0, 1));
        assert!(is_marked());
        assert_eq!(scan_file(), (0, 1));
    }

    #[test]
    fn state_written_in_an_earlier_layout_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let (file, state) = (dir.path().join("events.jsonl"), dir.path().join("state"));
        std::fs::write(&file, lines(3)).unwrap();
        // Profiles as a version before layouts were recorded wrote them.
        let store = Store::open(&state, &all_tables()).unwrap();
        let mut batch = Batch::default();
        batch.put("profiles", b"111111111111".to_vec(), vec![0; 8]);
        store.commit(batch).unwrap();
        drop(store);
        let config = ScanConfig {
            state_dir: Some(state.clone()),
            ..ScanConfig::default()
        };
        let err = scan(std::slice::from_ref(&file), &config, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("state store {}", state.display())),
            "{err}"
        );
        assert!(err.contains("profiles were written in layout 1"), "{err}");
        assert!(err.contains("scan into a new state directory"), "{err}");
        // A new one takes this version's layout.
        let config = ScanConfig {
            state_dir: Some(dir.path().join("new")),
            ..ScanConfig::default()
        };
        let report = scan(std::slice::from_ref(&file), &config, &mut |_| {}).unwrap();
        assert_eq!(report.events_used, 3);
    }

    #[test]
    fn a_repeat_of_an_earlier_scan_into_the_same_state_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let config = ScanConfig {
            state_dir: Some(dir.path().join("state")),
            ..ScanConfig::default()
        };
        let (today, again) = (
            dir.path().join("today.jsonl"),
            dir.path().join("again.jsonl"),
        );
        std::fs::write(&today, lines(5)).unwrap();
        // The same events from a second trail's file: other bytes, so read.
        let mut reordered: Vec<String> = lines(5).lines().map(str::to_string).collect();
        reordered.reverse();
        std::fs::write(&again, reordered.join("\n")).unwrap();
        let counts = |file: &PathBuf| {
            let report = scan(std::slice::from_ref(file), &config, &mut |_| {}).unwrap();
            (
                report.events_read,
                report.events_used,
                report.events_duplicate,
            )
        };
        assert_eq!(counts(&today), (5, 5, 0));
        assert_eq!(
            counts(&again),
            (5, 0, 5),
            "the profiles kept their recent events"
        );
    }
}
