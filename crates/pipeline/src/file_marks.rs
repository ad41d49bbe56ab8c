//! Checkpoints of the files a scan reads into a state directory: meta
//! values committed with the state they describe, so that a file is read
//! once, and a scan stopped inside a large file resumes after the records
//! it committed.
//!
//! - `unchanged-file:<h>`: a file (its absolute path, size and time of
//!   modification, hashed) scanned whole: not read again.
//! - `scanned-file:<h>`: content (the 128-bit xxh3 of its bytes as stored)
//!   scanned whole, under whatever name it comes again.
//! - `scanning-file:<h>` = records of the content committed so far.
//! - `probed-file:<p>`: content with this probe (size, first and last
//!   64 KiB; see [`Probed`](trailhound_cloudtrail::Probed)) had records
//!   committed. A large file whose probe never had is content never seen,
//!   read without hashing it first (a pass over the whole file of its own):
//!   its hash is made of the bytes as they are read, and its progress kept
//!   as `probing-file:<p>` = "records bytes hash": the records committed,
//!   the bytes read by then and their hash. A later scan hashes such a file
//!   first, and resumes from that progress only if the file starts with
//!   those bytes.
//! - `file-marks:probed`: the store has kept probes since it was begun.
//!   In a store begun before, content scanned whole left no probe, so a
//!   large file is always hashed first.

use std::path::Path;

use trailhound_cloudtrail::{Fingerprint, Identified, ReadSoFar, Source};
use trailhound_state::{Batch, StateError, Store};

/// Checkpoint changes to commit: a meta key and its value (`None` deletes
/// the key).
pub type Marks = Vec<(String, Option<Vec<u8>>)>;

const PROBES_KEPT: &str = "file-marks:probed";

/// A store's file checkpoints, as opening a file reads them.
#[derive(Clone, Copy)]
pub struct Checkpoints<'a> {
    store: &'a Store,
    /// Every content with records committed left its probe.
    probes_kept: bool,
}

impl<'a> Checkpoints<'a> {
    /// A store's checkpoints; a store without file marks yet begins keeping
    /// probes.
    pub fn of(store: &'a Store) -> Result<Self, StateError> {
        let mut probes_kept = store.meta(PROBES_KEPT)?.is_some();
        if !probes_kept
            && !store.has_meta_prefix("scanned-file:")?
            && !store.has_meta_prefix("scanning-file:")?
        {
            let mut batch = Batch::default();
            batch.set_meta(PROBES_KEPT, b"1".to_vec());
            store.commit(batch)?;
            probes_kept = true;
        }
        Ok(Self { store, probes_kept })
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.store.meta(key).map_err(|e| e.to_string())
    }
}

/// What opening a file found: content for the stages, or a file the state
/// holds already.
pub enum Opened {
    ToRead {
        /// Its checkpoint marks when there is a store.
        marks: Option<Box<FileMarks>>,
        source: Source,
        /// `None` for stdin.
        fingerprint: Option<Fingerprint>,
    },
    /// The file or its content was scanned before; the key of
    /// [`unchanged_key`] to keep when it was known by its content only.
    AlreadyScanned(Option<String>),
}

/// Open a file to be read, and with a store, find whether it was scanned
/// before and how far.
pub fn open(path: &Path, checkpoints: Option<Checkpoints<'_>>) -> Result<Opened, String> {
    let Some(checkpoints) = checkpoints else {
        let (source, fingerprint) = crate::copies::open(path).map_err(|e| e.to_string())?;
        return Ok(Opened::ToRead {
            marks: None,
            source,
            fingerprint,
        });
    };
    // A file scanned before at this path with the same size and time of
    // modification is not read again (a directory synced from S3 keeps
    // every day's files); taken before the content is read, so a change
    // while it is read shows next time.
    let unchanged = unchanged_key(path);
    if let Some(key) = &unchanged
        && checkpoints.meta(key)?.is_some()
    {
        return Ok(Opened::AlreadyScanned(None));
    }
    // Otherwise the content must be known before it is read; content
    // scanned before is not gunzipped again.
    let identified = Source::open_identified(path).map_err(|e| e.to_string())?;
    // Stdin (read whole, to hash it) is compared with no file.
    let fingerprint = (path.as_os_str() != "-").then(|| identified.fingerprint());
    let (hashed, probe) = match identified {
        Identified::Hashed(hashed) => (hashed, None),
        Identified::Probed(probed) => {
            let probe = Probe::new(probed.probe);
            if checkpoints.probes_kept && checkpoints.meta(&probe.committed)?.is_none() {
                let (source, read_so_far) = probed.into_source().map_err(|e| e.to_string())?;
                let marks = FileMarks {
                    content: Content::Probed { probe, read_so_far },
                    unchanged,
                    seen: 0,
                    committed_before: 0,
                };
                return Ok(Opened::ToRead {
                    marks: Some(Box::new(marks)),
                    source,
                    fingerprint,
                });
            }
            let progress = checkpoints.meta(&probe.progress)?;
            let progress = progress.as_deref().and_then(ProbeProgress::parse);
            let prefix = progress.map(|p| p.bytes);
            let (hashed, prefix_hash) = probed.hash(prefix).map_err(|e| e.to_string())?;
            // Records committed of this very content, if it starts with the
            // bytes they were read from.
            let resumable = progress.filter(|p| prefix_hash == Some(p.hash));
            (hashed, Some((probe, resumable.map(|p| p.records))))
        }
    };
    let hash = format!("{:032x}", hashed.hash);
    let scanned = format!("scanned-file:{hash}");
    if checkpoints.meta(&scanned)?.is_some() {
        return Ok(Opened::AlreadyScanned(unchanged));
    }
    let scanning = format!("scanning-file:{hash}");
    let committed = checkpoints.meta(&scanning)?;
    let committed = committed.and_then(|v| String::from_utf8(v).ok()?.parse().ok());
    let probed_records = probe.as_ref().and_then(|(_, records)| *records);
    let committed_before = committed.max(probed_records).unwrap_or(0);
    let marks = FileMarks {
        content: Content::Hashed {
            scanned,
            scanning,
            probe: probe.map(|(probe, records)| (probe, records.is_some())),
        },
        unchanged,
        seen: 0,
        committed_before,
    };
    let source = hashed.into_source().map_err(|e| e.to_string())?;
    Ok(Opened::ToRead {
        marks: Some(Box::new(marks)),
        source,
        fingerprint,
    })
}

/// `unchanged-file:<hash>`, the 128-bit xxh3 of the file's absolute path,
/// size and time of modification (ns since the epoch); `None` for stdin or
/// a file whose metadata cannot be read.
pub fn unchanged_key(path: &Path) -> Option<String> {
    if path.as_os_str() == "-" {
        return None;
    }
    let metadata = std::fs::metadata(path).ok()?;
    let modified = metadata.modified().ok()?;
    let since_epoch = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    let mut identity = std::path::absolute(path)
        .ok()?
        .into_os_string()
        .into_encoded_bytes();
    identity.push(0);
    identity.extend_from_slice(&metadata.len().to_le_bytes());
    identity.extend_from_slice(&since_epoch.as_nanos().to_le_bytes());
    let hash = xxhash_rust::xxh3::xxh3_128(&identity);
    Some(format!("unchanged-file:{hash:032x}"))
}

/// Where a file being read stands, with a store (see the module's marks).
pub struct FileMarks {
    content: Content,
    unchanged: Option<String>,
    /// Records of the file seen so far, and how many an earlier scan committed.
    seen: u64,
    committed_before: u64,
}

enum Content {
    /// Hashed before it was read; a large file with its probe, and whether
    /// the probe's progress is this content's (the file starts with the
    /// bytes it names).
    Hashed {
        scanned: String,
        scanning: String,
        probe: Option<(Probe, bool)>,
    },
    /// Never seen: hashed as it is read.
    Probed {
        probe: Probe,
        read_so_far: ReadSoFar,
    },
}

/// A probe's marks.
struct Probe {
    committed: String,
    progress: String,
}

impl Probe {
    fn new(probe: u128) -> Self {
        Self {
            committed: format!("probed-file:{probe:032x}"),
            progress: format!("probing-file:{probe:032x}"),
        }
    }
}

/// `probing-file:<p>`'s value.
#[derive(Clone, Copy)]
struct ProbeProgress {
    records: u64,
    bytes: u64,
    hash: u128,
}

impl ProbeProgress {
    fn parse(value: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(value).ok()?;
        let mut parts = text.split(' ');
        let progress = Self {
            records: parts.next()?.parse().ok()?,
            bytes: parts.next()?.parse().ok()?,
            hash: u128::from_str_radix(parts.next()?, 16).ok()?,
        };
        parts.next().is_none().then_some(progress)
    }
}

impl FileMarks {
    /// Of the next `n` records of the file, how many an earlier scan
    /// committed (they come first): those are passed over.
    pub fn committed_of_next(&mut self, n: usize) -> usize {
        let committed = self.committed_before.saturating_sub(self.seen);
        self.seen += n as u64;
        committed.min(n as u64) as usize
    }

    /// The marks of a commit made while the file is read.
    pub fn progress(&self) -> Marks {
        let records = self.seen;
        match &self.content {
            Content::Hashed {
                scanning, probe, ..
            } => {
                let mut marks = vec![(scanning.clone(), Some(records.to_string().into_bytes()))];
                if let Some((probe, _)) = probe {
                    marks.push((probe.committed.clone(), Some(Vec::new())));
                }
                marks
            }
            Content::Probed { probe, read_so_far } => {
                let (bytes, hash) = read_so_far.get();
                let progress = format!("{records} {bytes} {hash:032x}");
                vec![
                    (probe.committed.clone(), Some(Vec::new())),
                    (probe.progress.clone(), Some(progress.into_bytes())),
                ]
            }
        }
    }

    /// The marks of the file `name` once all of it is committed.
    pub fn done(self, name: String) -> Marks {
        let mut marks: Marks = self
            .unchanged
            .map(|unchanged| (unchanged, Some(Vec::new())))
            .into_iter()
            .collect();
        match self.content {
            Content::Hashed {
                scanned,
                scanning,
                probe,
            } => {
                marks.push((scanned, Some(name.into_bytes())));
                marks.push((scanning, None));
                if let Some((probe, resumed)) = probe {
                    marks.push((probe.committed, Some(Vec::new())));
                    if resumed {
                        marks.push((probe.progress, None));
                    }
                }
            }
            Content::Probed { probe, read_so_far } => {
                // Read to its end: the hash of every byte.
                let (_, hash) = read_so_far.get();
                marks.push((format!("scanned-file:{hash:032x}"), Some(name.into_bytes())));
                marks.push((probe.committed, Some(Vec::new())));
                marks.push((probe.progress, None));
            }
        }
        marks
    }
}
