//! Reading CloudTrail from files, directories and stdin, in every shape
//! CloudTrail and its consumers write it.
//!
//! A document is split into records without parsing them (lines, or
//! [`RawValue`]s of an array), and each record is parsed on its own: one bad
//! record is [`Rejected`] with its origin while every other record of the
//! document is still used. A [`Source`] reads JSON lines a block at a time,
//! so a file of JSON lines is never held whole.

use std::cell::Cell;
use std::fmt;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use trailhound_proto::CloudTrailEvent;

use crate::record::Record;

/// A whole file or stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: gzip stream is corrupt or truncated after {decoded} bytes: {source}")]
    Gzip {
        path: String,
        decoded: usize,
        source: std::io::Error,
    },
    #[error("{origin}: malformed JSON: {message}")]
    Json { origin: String, message: String },
}

/// A record that cannot be used, with where it was and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rejected {
    /// `file:line` for JSON lines, `file#index` for arrays and `Records`.
    pub origin: String,
    pub event_id: Option<String>,
    pub reason: String,
    /// The record's JSON, for the dead-letter file.
    pub raw: Option<String>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(id) = &self.event_id {
            write!(f, " (eventID {id})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// What reading one record gives. The event is boxed: it is handed from
/// stage to stage, and a pointer moves cheaper than its 700 bytes.
pub type Parsed = Result<Box<CloudTrailEvent>, Rejected>;

/// The order a document's records are handed on in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecordOrder {
    /// As written.
    #[default]
    AsWritten,
    /// In event time: the document (Event history, which lists the most
    /// recent event first) was read whole and its records sorted.
    EventTime,
}

/// Put records in event-time order. Stable: rejections first, then
/// events; those of one time in the order given.
pub fn sort_by_event_time(records: &mut [Parsed]) {
    records.sort_by_key(|record| record.as_ref().map_or(i64::MIN, |e| e.event_time_ms));
}

/// What [`discover`] found.
#[derive(Debug, Default)]
pub struct Discovered {
    /// The files to read, in reading order.
    pub files: Vec<PathBuf>,
    /// Files of a logging bucket that are not CloudTrail logs, left out by
    /// their place ([`not_cloudtrail_logs`]).
    pub not_logs: usize,
}

/// Expand files and directories into the files to read: a directory's
/// files recursively, CloudTrail delivery files in the order of the
/// delivery time in their names (S3's layout groups them by account and
/// region first, which would replay one region's weeks before another's),
/// other files in path order. The delivery files of several paths (two
/// trails' buckets) are merged in that order too; other files come first,
/// in the order named. `-` stands for stdin. Hidden files are skipped, and
/// a file named twice (`logs/ logs/2024/`) is read once. Linked directories
/// are followed, each directory walked once: a link back to an ancestor
/// does not loop, nor a second way to a directory read its files again.
/// Files that are not CloudTrail logs by their place in a logging bucket
/// are left out, and counted.
pub fn discover(paths: &[PathBuf]) -> Result<Discovered, InputError> {
    use std::os::unix::fs::MetadataExt;
    let mut files = Vec::new();
    // Directories walked, by device and inode (a `stat` of each directory,
    // not of each of its files).
    let mut walked = std::collections::HashSet::new();
    for path in paths {
        if path.as_os_str() == "-" || !path.is_dir() {
            files.push((delivery_time(path), path.clone()));
            continue;
        }
        let mut found = Vec::new();
        let mut stack = vec![path.clone()];
        while let Some(dir) = stack.pop() {
            let io = |source| InputError::Io {
                path: dir.display().to_string(),
                source,
            };
            let identity = std::fs::metadata(&dir).map_err(io)?;
            if !walked.insert((identity.dev(), identity.ino())) {
                continue;
            }
            for entry in std::fs::read_dir(&dir).map_err(io)? {
                let entry = entry.map_err(io)?;
                if entry.file_name().as_encoded_bytes().starts_with(b".") {
                    continue;
                }
                // The directory listing's type, not a stat of each of
                // hundreds of thousands of delivery files; links followed.
                let file_type = entry.file_type().map_err(io)?;
                let path = entry.path();
                if file_type.is_dir() || (file_type.is_symlink() && path.is_dir()) {
                    stack.push(path)
                } else {
                    found.push((delivery_time(&path), path))
                }
            }
        }
        found.sort_unstable();
        files.extend(found);
    }
    if paths.len() > 1 {
        let mut named = std::collections::HashSet::new();
        files.retain(|(_, path)| named.insert(path.clone()));
        // Stable: each path's own order stays where times are equal or absent.
        files.sort_by_key(|(time, _)| *time);
    }
    let before = files.len();
    files.retain(|(_, path)| !path.to_str().is_some_and(not_cloudtrail_logs));
    Ok(Discovered {
        not_logs: before - files.len(),
        files: files.into_iter().map(|(_, path)| path).collect(),
    })
}

/// Whether a file's path or an S3 key is, by its place, not CloudTrail
/// logs: a digest or Insights file by its name (`{account}_CloudTrail-Digest_…`,
/// `{account}_CloudTrail-Insight_…`), or anything in a folder beside
/// `CloudTrail` in an account's folder of a logging bucket
/// (`AWSLogs/[{org}/]{account}/{folder}/…`): the digest files a trail
/// writes beside its logs (`CloudTrail-Digest`, one per region and hour),
/// its Insights files (`CloudTrail-Insight`, AWS's own anomaly events,
/// which no caller made), other services' logs in a shared bucket
/// (`elasticloadbalancing`, `vpcflowlogs`, `Config` …).
pub fn not_cloudtrail_logs(path: &str) -> bool {
    if path.contains("_CloudTrail-Digest_") || path.contains("_CloudTrail-Insight_") {
        return true;
    }
    let Some(at) = path.find("AWSLogs/") else {
        return false;
    };
    let mut parts = path[at + "AWSLogs/".len()..].split('/').peekable();
    parts.next_if(|part| part.starts_with("o-"));
    let account = parts
        .next()
        .is_some_and(|part| part.len() == 12 && part.bytes().all(|b| b.is_ascii_digit()));
    let folder = parts.next();
    account && parts.next().is_some() && folder != Some("CloudTrail")
}

/// The delivery time in a CloudTrail file name
/// (`{account}_CloudTrail_{region}_{YYYYMMDDTHHMMZ}_{unique}.json.gz`);
/// the name's text sorts chronologically.
pub fn delivery_time(path: &Path) -> Option<[u8; 14]> {
    let name = path.file_name()?.to_str()?;
    let (_, after) = name.split_once("_CloudTrail_")?;
    after.split('_').find_map(|part| {
        let b: [u8; 14] = part.as_bytes().try_into().ok()?;
        let digits = b[..8].iter().chain(&b[9..13]).all(u8::is_ascii_digit);
        (digits && b[8] == b'T' && b[13] == b'Z').then_some(b)
    })
}

/// Gunzip `bytes` (named `name` in errors) when they start with the gzip
/// magic bytes; otherwise hand them back as they are.
pub fn decompress(name: &str, bytes: Vec<u8>) -> Result<Vec<u8>, InputError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    gunzip(&bytes, &mut out).map_err(|source| InputError::Gzip {
        path: name.to_string(),
        decoded: out.len(),
        source,
    })?;
    Ok(out)
}

/// Gunzip a whole gzip stream (of one or more members) into `out`; what was
/// decoded before an error stays in `out`.
fn gunzip(gzip: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    out.reserve(gzip.len() * 8);
    // A slice is already buffered: the `read` decoder would copy it through
    // a buffer of its own.
    flate2::bufread::MultiGzDecoder::new(gzip).read_to_end(out)?;
    Ok(())
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Bytes read at a time from a [`Source`] of JSON lines: small enough that
/// the block, copied in by the kernel, is still in the core's cache when it
/// is parsed (8 MiB cost `scan` 5 % more CPU).
const BLOCK: u64 = 256 << 10;

/// Files up to this size are read whole when opened (an S3 delivery file
/// is a few KiB; JSON compresses 10–15 times).
const READ_WHOLE: u64 = 64 << 10;

/// A file, stdin or bytes in memory to read records from, gunzipped on the
/// way when its content starts with the gzip magic bytes. JSON lines are
/// read and parsed a block at a time, so memory stays bounded whatever the
/// size of the file; the other shapes are read whole, then parsed.
pub struct Source {
    name: String,
    reader: Box<dyn Read + Send>,
    gzip: bool,
    /// Bytes of JSON lines read at a time ([`BLOCK`]; small in tests).
    block: u64,
    /// The size of a plain file, so that reading it whole allocates once.
    size_hint: usize,
    /// Bytes read (after gunzip) so far, for errors.
    read: usize,
    /// A plain document already in memory, parsed where it lies rather
    /// than copied through `reader` (most S3 delivery files, once
    /// gunzipped).
    in_memory: Option<Vec<u8>>,
}

impl Source {
    /// A file, or stdin for `-`.
    pub fn open(path: &Path) -> Result<Self, InputError> {
        let name = display_name(path);
        if path.as_os_str() == "-" {
            return Self::new(name, std::io::BufReader::new(std::io::stdin()));
        }
        OpenFile::open(path)?.into_source(name)
    }

    /// A file or stdin for `-`, identified by its content as stored before
    /// it is parsed, to recognise content scanned before. Stdin and small
    /// files are read once, and known by the 128-bit xxh3 of their content
    /// ([`Identified::Hashed`]). A larger file is known first by its probe
    /// ([`Identified::Probed`]): hashing it whole would be a pass of its
    /// own over the file, which can be left to the reading.
    pub fn open_identified(path: &Path) -> Result<Identified, InputError> {
        let name = display_name(path);
        let hash = xxhash_rust::xxh3::xxh3_128;
        if path.as_os_str() == "-" {
            let bytes = read_whole(std::io::stdin(), 0).map_err(|source| InputError::Io {
                path: name.clone(),
                source,
            })?;
            return Ok(Identified::Hashed(Hashed {
                hash: hash(&bytes),
                name,
                content: Unparsed::Stdin(bytes),
            }));
        }
        Ok(match OpenFile::open(path)? {
            OpenFile::Small(bytes) => Identified::Hashed(Hashed {
                hash: hash(&bytes),
                name,
                content: Unparsed::File(OpenFile::Small(bytes)),
            }),
            OpenFile::Large(file, size) => Identified::Probed(Probed::new(name, file, size)?),
        })
    }

    /// The file's path as shown in errors and record origins.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A small file read whole, and gunzipped now, on the thread that opens
    /// it: an S3 delivery file is a few KiB, and a scan opens the next files
    /// on one thread while it parses on another.
    fn small(name: String, mut bytes: Vec<u8>) -> Result<Self, InputError> {
        if bytes.starts_with(&GZIP_MAGIC) {
            let mut plain = Vec::new();
            if gunzip(&bytes, &mut plain).is_ok() {
                bytes = plain;
            }
            // else: still gzip, gunzipped again as it is parsed, so that
            // the records before the break are delivered with the error.
        }
        Self::from_bytes(name, bytes)
    }

    /// A file read as it is parsed.
    fn large(
        name: String,
        file: impl Read + Send + 'static,
        size: u64,
    ) -> Result<Self, InputError> {
        let mut source = Self::new(name, std::io::BufReader::new(file))?;
        if !source.gzip {
            source.size_hint = usize::try_from(size).unwrap_or(0);
        }
        Ok(source)
    }

    /// A document already in memory, gunzipped as it is parsed if it is gzip.
    pub fn from_bytes(name: String, bytes: Vec<u8>) -> Result<Self, InputError> {
        if bytes.starts_with(&GZIP_MAGIC) {
            return Self::new(name, std::io::Cursor::new(bytes));
        }
        let mut source = Self::new(name, std::io::empty())?;
        source.in_memory = Some(bytes);
        Ok(source)
    }

    fn new(name: String, mut reader: impl BufRead + Send + 'static) -> Result<Self, InputError> {
        let gzip = match reader.fill_buf() {
            Ok(start) => start.starts_with(&GZIP_MAGIC),
            Err(source) => return Err(InputError::Io { path: name, source }),
        };
        let reader: Box<dyn Read + Send> = if gzip {
            Box::new(flate2::bufread::MultiGzDecoder::new(reader))
        } else {
            Box::new(reader)
        };
        Ok(Self {
            name,
            reader,
            gzip,
            block: BLOCK,
            size_hint: 0,
            read: 0,
            in_memory: None,
        })
    }

    /// Parse every record, calling `sink` for each in order. Returns an
    /// error when the document's structure or its gzip stream is broken;
    /// the records before that point have been delivered.
    pub fn parse(self, keep_raw: bool, sink: &mut dyn FnMut(Parsed)) -> Result<(), InputError> {
        self.parse_telling_order(keep_raw, sink, &Cell::default())
    }

    /// [`Source::parse`], setting `order` before the first record is handed
    /// on when the records come in event-time order rather than as written.
    fn parse_telling_order(
        mut self,
        keep_raw: bool,
        sink: &mut dyn FnMut(Parsed),
        order: &Cell<RecordOrder>,
    ) -> Result<(), InputError> {
        let (mut buf, mut read) = match self.in_memory.take() {
            Some(bytes) => (bytes, Ok(true)),
            None => {
                let mut buf = Vec::new();
                let read = self.fill(&mut buf, self.block);
                (buf, read)
            }
        };
        if buf.starts_with(BOM) {
            buf.drain(..BOM.len());
        }
        if matches!(read, Ok(true)) || !is_json_lines(&buf) {
            if let Ok(false) = read {
                buf.reserve_exact(self.size_hint.saturating_sub(buf.len()));
                read = self.fill(&mut buf, u64::MAX);
            }
            read?;
            return parse_document_telling_order(&self.name, &buf, keep_raw, sink, order);
        }
        let mut line = 0;
        loop {
            let whole_lines = match read {
                Ok(true) => buf.len(),
                // A line may not have ended in this block, or before the stream broke.
                _ => memchr::memrchr(b'\n', &buf).map_or(0, |last| last + 1),
            };
            line = parse_lines(&self.name, &buf[..whole_lines], line, keep_raw, sink);
            match read {
                Ok(false) => {
                    buf.drain(..whole_lines);
                    read = self.fill(&mut buf, self.block);
                }
                Ok(true) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Source::parse`], handing the records to `send` in batches of
    /// `size` (the last one shorter, maybe empty), each with the order its
    /// records come in. `send` returns false once nobody takes them: the
    /// rest of the input is then parsed and dropped.
    pub fn parse_in_batches(
        self,
        keep_raw: bool,
        size: usize,
        send: &mut dyn FnMut(Vec<Parsed>, RecordOrder) -> bool,
    ) -> Result<(), InputError> {
        let mut batch = Vec::with_capacity(size);
        let mut taken = true;
        let order = Cell::default();
        let structure = self.parse_telling_order(
            keep_raw,
            &mut |parsed| {
                if !taken {
                    return;
                }
                batch.push(parsed);
                if batch.len() == size {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(size));
                    taken = send(full, order.get());
                }
            },
            &order,
        );
        if taken {
            send(batch, order.get());
        }
        structure
    }

    /// Append up to `limit` bytes to `buf`; true when the input has ended.
    fn fill(&mut self, buf: &mut Vec<u8>, limit: u64) -> Result<bool, InputError> {
        let before = buf.len();
        let result = (&mut self.reader).take(limit).read_to_end(buf);
        self.read += buf.len() - before;
        match result {
            Ok(n) => Ok((n as u64) < limit),
            Err(source) if self.gzip => Err(InputError::Gzip {
                path: self.name.clone(),
                decoded: self.read,
                source,
            }),
            Err(source) => Err(InputError::Io {
                path: self.name.clone(),
                source,
            }),
        }
    }
}

/// A file opened to be read: a small one already read whole.
enum OpenFile {
    Small(Vec<u8>),
    Large(std::fs::File, u64),
}

/// A file or stdin opened by [`Source::open_identified`].
pub enum Identified {
    Hashed(Hashed),
    Probed(Probed),
}

/// What a file is known by before it is parsed: the same content always
/// has the same fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fingerprint {
    /// The 128-bit xxh3 of all its bytes: the same hash is taken for the
    /// same content (as a state directory takes it).
    Content(u128),
    /// A larger file's probe (see [`Probed`]), which other content may
    /// share: files with the same probe are compared byte for byte.
    Probe(u128),
}

impl Identified {
    pub fn fingerprint(&self) -> Fingerprint {
        match self {
            Identified::Hashed(hashed) => Fingerprint::Content(hashed.hash),
            Identified::Probed(probed) => Fingerprint::Probe(probed.probe),
        }
    }

    /// Read it to be parsed (a larger file without hashing it).
    pub fn into_source(self) -> Result<Source, InputError> {
        match self {
            Identified::Hashed(hashed) => hashed.into_source(),
            Identified::Probed(probed) => Source::large(probed.name, probed.file, probed.size),
        }
    }
}

/// A file or stdin whose content hash is known, its content not yet
/// gunzipped or parsed.
pub struct Hashed {
    pub hash: u128,
    name: String,
    content: Unparsed,
}

enum Unparsed {
    File(OpenFile),
    /// Read whole, gunzipped as it is parsed.
    Stdin(Vec<u8>),
}

impl Hashed {
    pub fn into_source(self) -> Result<Source, InputError> {
        match self.content {
            Unparsed::File(file) => file.into_source(self.name),
            Unparsed::Stdin(bytes) => Source::from_bytes(self.name, bytes),
        }
    }
}

/// Bytes of a file's start and of its end in its probe.
const PROBE_BYTES: u64 = 64 << 10;

/// A file too large to read whole, known by its probe: the 128-bit xxh3 of
/// its size, its first and its last 64 KiB as stored. The same content has
/// the same probe; other contents rarely do, and never tell a content
/// apart from itself, so a probe never seen before is content never seen.
pub struct Probed {
    pub probe: u128,
    name: String,
    file: std::fs::File,
    size: u64,
}

impl Probed {
    fn new(name: String, mut file: std::fs::File, size: u64) -> Result<Self, InputError> {
        let mut probe = xxhash_rust::xxh3::Xxh3::new();
        probe.update(&size.to_le_bytes());
        let mut part = Vec::with_capacity(PROBE_BYTES as usize);
        let result = [0, size.saturating_sub(PROBE_BYTES)]
            .into_iter()
            .try_for_each(|start| {
                file.seek(SeekFrom::Start(start))?;
                part.clear();
                (&file).take(PROBE_BYTES).read_to_end(&mut part)?;
                probe.update(&part);
                Ok(())
            })
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop));
        if let Err(source) = result {
            return Err(InputError::Io { path: name, source });
        }
        Ok(Self {
            probe: probe.digest128(),
            name,
            file,
            size,
        })
    }

    /// Hash the whole content as stored, in a pass of its own, and its
    /// first `prefix` bytes when asked (`None` when the file is shorter).
    pub fn hash(self, prefix: Option<u64>) -> Result<(Hashed, Option<u128>), InputError> {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut reader = std::io::BufReader::with_capacity(1 << 20, &self.file);
        let result = (|| {
            let mut prefix_hash = None;
            if let Some(len) = prefix
                && std::io::copy(&mut (&mut reader).take(len), &mut hasher)? == len
            {
                prefix_hash = Some(hasher.digest128());
            }
            std::io::copy(&mut reader, &mut hasher)?;
            (&self.file).seek(SeekFrom::Start(0))?;
            Ok(prefix_hash)
        })();
        let prefix_hash = result.map_err(|source| InputError::Io {
            path: self.name.clone(),
            source,
        })?;
        let hashed = Hashed {
            hash: hasher.digest128(),
            name: self.name,
            content: Unparsed::File(OpenFile::Large(self.file, self.size)),
        };
        Ok((hashed, prefix_hash))
    }

    /// Read it to be parsed without hashing it first: the hash is made of
    /// the bytes as they are read (see [`ReadSoFar`]).
    pub fn into_source(self) -> Result<(Source, ReadSoFar), InputError> {
        let so_far = ReadSoFar::default();
        let reader = HashingReader {
            file: self.file,
            so_far: so_far.clone(),
        };
        Ok((Source::large(self.name, reader, self.size)?, so_far))
    }
}

/// The bytes of a file read so far, as stored, and their 128-bit xxh3: the
/// file's content hash once it has been read to its end. Shared between
/// the thread that reads the file and the one that records how far the
/// scan of it has got.
#[derive(Clone)]
pub struct ReadSoFar(Arc<Mutex<(u64, xxhash_rust::xxh3::Xxh3)>>);

impl Default for ReadSoFar {
    fn default() -> Self {
        Self(Arc::new(Mutex::new((0, xxhash_rust::xxh3::Xxh3::new()))))
    }
}

impl ReadSoFar {
    /// Bytes read so far, and their hash.
    pub fn get(&self) -> (u64, u128) {
        let read = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (read.0, read.1.digest128())
    }
}

struct HashingReader {
    file: std::fs::File,
    so_far: ReadSoFar,
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        let mut read = self.so_far.0.lock().unwrap_or_else(PoisonError::into_inner);
        read.0 += n as u64;
        read.1.update(&buf[..n]);
        Ok(n)
    }
}

impl OpenFile {
    fn open(path: &Path) -> Result<Self, InputError> {
        let io = |source| InputError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        Ok(if size <= READ_WHOLE {
            Self::Small(read_whole(file, size).map_err(io)?)
        } else {
            Self::Large(file, size)
        })
    }

    fn into_source(self, name: String) -> Result<Source, InputError> {
        match self {
            Self::Small(bytes) => Source::small(name, bytes),
            Self::Large(file, size) => Source::large(name, file, size),
        }
    }
}

/// A path as shown in errors and record origins: what `Path::display`
/// shows, made without the formatting machinery (1 % of a scan of S3
/// delivery files, one per file).
fn display_name(path: &Path) -> String {
    path.to_str()
        .map_or_else(|| path.display().to_string(), str::to_owned)
}

/// All of `reader`, `size` bytes expected. Read through `Take`: a `File`'s
/// own `read_to_end` asks the kernel for the file's size and position again
/// (two of the seven system calls an S3 delivery file cost).
fn read_whole(reader: impl Read, size: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    reader.take(u64::MAX).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Split a document into records and parse each, calling `sink` for every
/// record in order. Returns an error only when the document's own structure
/// is broken; records read before that point have been delivered.
pub fn parse_document(
    name: &str,
    bytes: &[u8],
    keep_raw: bool,
    sink: &mut dyn FnMut(Parsed),
) -> Result<(), InputError> {
    parse_document_telling_order(name, bytes, keep_raw, sink, &Cell::default())
}

fn parse_document_telling_order(
    name: &str,
    bytes: &[u8],
    keep_raw: bool,
    sink: &mut dyn FnMut(Parsed),
    order: &Cell<RecordOrder>,
) -> Result<(), InputError> {
    let text = trim_bom(bytes);
    let first = text.iter().position(|b| !b.is_ascii_whitespace());
    match first.map(|i| text[i]) {
        None => Ok(()),
        Some(b'[') => each_in_array(name, text, "#", keep_raw, sink),
        Some(b'{') if is_json_lines(text) => {
            parse_lines(name, text, 0, keep_raw, sink);
            Ok(())
        }
        Some(b'{') => {
            let has_key = |key: &[u8]| memchr::memmem::find(text, key).is_some();
            if has_key(b"\"Records\"") || has_key(b"\"Events\"") || has_key(b"\"events\"") {
                let mut found = false;
                parse_valid_prefix(name, text, |text| {
                    let mut de = sonic_rs::Deserializer::from_str(text);
                    let seed = RecordsField {
                        name,
                        keep_raw,
                        sink: &mut *sink,
                        found: &mut found,
                        order,
                    };
                    de.deserialize_map(seed).and_then(|()| de.end())
                })?;
                if found {
                    return Ok(());
                }
            }
            each_object(name, text, keep_raw, sink)
        }
        Some(_) => Err(InputError::Json {
            origin: name.to_string(),
            message: "not a JSON object or array".into(),
        }),
    }
}

const BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

fn trim_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// Parse JSON lines, numbered from `after_line + 1`; `text` ends at the
/// end of a line or of the input. Returns the number of the last line.
fn parse_lines(
    name: &str,
    text: &[u8],
    after_line: usize,
    keep_raw: bool,
    sink: &mut dyn FnMut(Parsed),
) -> usize {
    let mut number = itoa::Buffer::new();
    let (mut line, mut start) = (after_line, 0);
    while start < text.len() {
        let end = memchr::memchr(b'\n', &text[start..]).map_or(text.len(), |i| start + i);
        let record = text[start..end].trim_ascii();
        line += 1;
        start = end + 1;
        if record.is_empty() {
            continue;
        }
        let origin = [name, ":", number.format(line)].concat();
        match std::str::from_utf8(record) {
            Ok(record) => parse_record(origin, record, keep_raw, sink),
            Err(e) => sink(Err(Rejected {
                origin,
                event_id: None,
                reason: format!("malformed JSON: {e}"),
                raw: Some(String::from_utf8_lossy(record).into_owned()),
            })),
        }
    }
    line
}

/// A record, or several objects one after another with nothing between
/// them (CloudWatch Logs subscription payloads as Kinesis Data Firehose
/// writes them to S3), each parsed as a record and named by its place when
/// there are several. Objects before a break are delivered.
fn each_object(
    name: &str,
    text: &[u8],
    keep_raw: bool,
    sink: &mut dyn FnMut(Parsed),
) -> Result<(), InputError> {
    let mut objects = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(text).into_iter::<&RawValue>();
    let ended = loop {
        match stream.next() {
            Some(Ok(raw)) => objects.push(raw),
            Some(Err(e)) => break Err(json_error(name, e)),
            None => break Ok(()),
        }
    };
    if let [only] = objects[..] {
        parse_record(name.to_string(), only.get(), keep_raw, sink);
    } else {
        let mut number = itoa::Buffer::new();
        for (index, raw) in objects.iter().enumerate() {
            let origin = [name, "#", number.format(index)].concat();
            parse_record(origin, raw.get(), keep_raw, sink);
        }
    }
    ended
}

fn json_error(origin: &str, e: serde_json::Error) -> InputError {
    InputError::Json {
        origin: origin.to_string(),
        message: e.to_string(),
    }
}

/// JSON lines: the first non-empty line is a whole JSON value and another
/// non-empty line follows it. Looks only at the start of the document.
fn is_json_lines(text: &[u8]) -> bool {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let Some(end) = memchr::memchr(b'\n', &text[start..]).map(|i| start + i) else {
        return false;
    };
    let more = text[end..].iter().any(|b| !b.is_ascii_whitespace());
    more && serde_json::from_slice::<&RawValue>(&text[start..end]).is_ok()
}

fn each_in_array(
    name: &str,
    text: &[u8],
    sep: &str,
    keep_raw: bool,
    sink: &mut dyn FnMut(Parsed),
) -> Result<(), InputError> {
    parse_valid_prefix(name, text, |text| {
        let mut de = sonic_rs::Deserializer::from_str(text);
        de.deserialize_seq(EachRecord {
            name,
            sep,
            keep_raw,
            sink,
            in_time_order: None,
        })
        .and_then(|()| de.end())
    })
}

/// Run `parse` (sonic-rs, which finds each record's end with SIMD, faster
/// than serde_json) on the longest prefix of `text` it may be given: valid
/// UTF-8 (given bytes, release builds hand back invalid UTF-8 as `&str`),
/// nested at most [`MAX_NESTING`] deep. What follows ends the document
/// there, after the records before it are parsed.
fn parse_valid_prefix(
    name: &str,
    text: &[u8],
    parse: impl FnOnce(&str) -> sonic_rs::Result<()>,
) -> Result<(), InputError> {
    let (valid, invalid) = match std::str::from_utf8(text) {
        Ok(all) => (all, None),
        Err(e) => {
            let before = std::str::from_utf8(&text[..e.valid_up_to()]).unwrap_or_default();
            (before, Some(e))
        }
    };
    // Cut before the bracket, an ASCII byte: a character boundary.
    let too_deep = too_deep_at(valid.as_bytes());
    let parsed = parse(too_deep.map_or(valid, |at| &valid[..at]));
    let error = |message| {
        Err(InputError::Json {
            origin: name.to_string(),
            message,
        })
    };
    match (too_deep, invalid) {
        (Some(at), _) => error(too_deep_message(at)),
        (None, Some(e)) => error(format!("invalid UTF-8 at byte {}", e.valid_up_to())),
        (None, None) => parsed.map_err(|e| sonic_error(name, &e)),
    }
}

/// How deep arrays and objects may nest in a record or document. sonic-rs
/// skips a value it does not keep, and finds the end of one it keeps raw,
/// recursively, a stack frame per level: JSON nested much deeper overflows
/// the stack and aborts the process (cloudwego/sonic-rs#232). CloudTrail
/// nests a few dozen levels; text no longer than this cannot nest deeper,
/// so only longer text is measured.
const MAX_NESTING: usize = 4096;

/// Where `text` first nests deeper than [`MAX_NESTING`]: the offset of
/// that opening bracket (brackets in strings do not count).
fn too_deep_at(text: &[u8]) -> Option<usize> {
    if text.len() <= MAX_NESTING {
        return None;
    }
    // Byte by byte through a table, one test for most bytes: twice as fast
    // here as `memchr` to the end of each string (CloudTrail's are short).
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (at, &byte) in text.iter().enumerate() {
        let class = JSON_CLASS[usize::from(byte)];
        if class == OTHER {
            escaped = false;
        } else if in_string {
            if escaped {
                escaped = false;
            } else if class == BACKSLASH {
                escaped = true;
            } else if class == QUOTE {
                in_string = false;
            }
        } else if class == QUOTE {
            in_string = true;
        } else if class == OPEN {
            depth += 1;
            if depth > MAX_NESTING {
                return Some(at);
            }
        } else if class == CLOSE {
            depth = depth.saturating_sub(1);
        }
    }
    None
}

const OTHER: u8 = 0;
const QUOTE: u8 = 1;
const BACKSLASH: u8 = 2;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
/// What each byte is to [`too_deep_at`].
static JSON_CLASS: [u8; 256] = {
    let mut class = [OTHER; 256];
    class[b'"' as usize] = QUOTE;
    class[b'\\' as usize] = BACKSLASH;
    class[b'[' as usize] = OPEN;
    class[b'{' as usize] = OPEN;
    class[b']' as usize] = CLOSE;
    class[b'}' as usize] = CLOSE;
    class
};

fn too_deep_message(at: usize) -> String {
    format!("nested deeper than {MAX_NESTING} levels at byte {at}")
}

/// Parse one record (`raw`, its JSON text, which may still be malformed);
/// unwrap the wrappers [`Record`] names (EventBridge, Event history,
/// CloudWatch Logs); reject what is unusable, nested too deep included.
fn parse_record(origin: String, raw: &str, keep_raw: bool, sink: &mut dyn FnMut(Parsed)) {
    match too_deep_at(raw.as_bytes()) {
        Some(at) => sink(Err(Rejected {
            origin,
            event_id: None,
            reason: too_deep_message(at),
            raw: Some(raw.to_string()),
        })),
        None => parse_shallow_record(origin, raw, keep_raw, sink),
    }
}

/// [`parse_record`] for a record known to nest at most [`MAX_NESTING`]
/// deep: one of a document [`parse_valid_prefix`] measured.
fn parse_shallow_record(origin: String, raw: &str, keep_raw: bool, sink: &mut dyn FnMut(Parsed)) {
    let reject = |origin: String, event_id: Option<String>, reason: String| Rejected {
        origin,
        event_id,
        reason,
        raw: Some(raw.to_string()),
    };
    // sonic-rs (SIMD) for the records themselves: a third faster than
    // serde_json on CloudTrail's long strings, and parsing is the limit.
    let mut record: Record<'_> = match sonic_rs::from_str(raw) {
        Ok(r) => r,
        Err(e) if e.is_syntax() || e.is_eof() => {
            let reason = format!("malformed JSON: {}", first_line(&e));
            return sink(Err(reject(origin, None, reason)));
        }
        Err(e) => {
            let event_id = event_id_of(raw);
            let reason = format!("not a CloudTrail event: {}", first_line(&e));
            return sink(Err(reject(origin, event_id, reason)));
        }
    };
    if record.event_name.is_none()
        && let Some(detail) = record.detail
    {
        if record
            .detail_type
            .as_deref()
            .is_some_and(|t| !t.contains("CloudTrail"))
        {
            let t = record.detail_type.unwrap_or_default();
            let event_id = event_id_of(detail.as_raw_str());
            return sink(Err(reject(
                origin,
                event_id,
                format!("EventBridge event of type {t:?} is not CloudTrail"),
            )));
        }
        return parse_shallow_record(origin, detail.as_raw_str(), keep_raw, sink);
    }
    if record.event_name.is_none()
        && let Some(text) = record.cloudtrail_event.take().or(record.message.take())
    {
        // Unescaped from a string: its nesting is measured now.
        return parse_record(origin, &text, keep_raw, sink);
    }
    if record.event_name.is_none()
        && let Some(events) = record.log_events
    {
        if record.message_type.as_deref() == Some("CONTROL_MESSAGE") {
            return;
        }
        let name = [origin.as_str(), "#logEvents"].concat();
        let listed = each_in_array(&name, events.as_raw_str().as_bytes(), "/", keep_raw, sink);
        if let Err(InputError::Json { message, .. }) = listed {
            let reason = format!("logEvents is not a list of events: {message}");
            sink(Err(reject(origin, None, reason)));
        }
        return;
    }
    sink(match record.event_time_ms() {
        Ok(t) => {
            let mut event = Box::new(record.into_event(t, raw, keep_raw));
            event.origin = origin;
            Ok(event)
        }
        Err(e) => Err(reject(origin, record.event_id, e.to_string())),
    })
}

fn sonic_error(origin: &str, e: &sonic_rs::Error) -> InputError {
    InputError::Json {
        origin: origin.to_string(),
        message: first_line(e),
    }
}

/// A sonic-rs error without the excerpt of the JSON it prints on the lines
/// after (the rejection keeps the whole record).
fn first_line(e: &sonic_rs::Error) -> String {
    let message = e.to_string();
    message.lines().next().unwrap_or_default().to_string()
}

/// The eventID of a record that failed to deserialise, for the report.
fn event_id_of(raw: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        #[serde(rename = "eventID")]
        event_id: Option<String>,
    }
    serde_json::from_str::<Id>(raw)
        .ok()
        .and_then(|i| i.event_id)
}

/// Visits a JSON array, handing each element to [`parse_shallow_record`]
/// as soon as it is read, so elements before a syntax error are not lost.
/// An array to be put `in_time_order` (Event history's: LookupEvents lists
/// the most recent event first, and histories of several regions joined
/// list one region's after another's) is parsed whole, the elements before
/// a syntax error too, and handed on in event-time order, as the baselines
/// expect.
struct EachRecord<'s, 'n> {
    name: &'n str,
    sep: &'n str,
    keep_raw: bool,
    sink: &'s mut dyn FnMut(Parsed),
    /// Given when the array is to be put in event-time order: told so
    /// before the first record is handed on.
    in_time_order: Option<&'s Cell<RecordOrder>>,
}

impl<'de> Visitor<'de> for EachRecord<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of CloudTrail records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut parsed = Vec::new();
        let mut keep = |record: Parsed| parsed.push(record);
        let sink: &mut dyn FnMut(Parsed) = if self.in_time_order.is_some() {
            &mut keep
        } else {
            self.sink
        };
        let (mut index, mut number) = (0usize, itoa::Buffer::new());
        let ended = loop {
            match seq.next_element::<sonic_rs::LazyValue<'_>>() {
                Ok(Some(raw)) => {
                    let origin = [self.name, self.sep, number.format(index)].concat();
                    parse_shallow_record(origin, raw.as_raw_str(), self.keep_raw, sink);
                    index += 1;
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        sort_by_event_time(&mut parsed);
        if let Some(order) = self.in_time_order {
            order.set(RecordOrder::EventTime);
        }
        for record in parsed {
            (self.sink)(record);
        }
        ended
    }
}

impl<'de> DeserializeSeed<'de> for EachRecord<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

/// Visits the top-level object of an S3 delivery file and streams its
/// `Records` array, of CloudWatch Logs events (`aws logs filter-log-events`)
/// and streams its `events`, or of Event history (`aws cloudtrail
/// lookup-events`) and hands on its `Events`; other keys are skipped.
struct RecordsField<'s, 'n> {
    name: &'n str,
    keep_raw: bool,
    sink: &'s mut dyn FnMut(Parsed),
    found: &'s mut bool,
    order: &'s Cell<RecordOrder>,
}

impl<'de> Visitor<'de> for RecordsField<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CloudTrail delivery object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<&'de str>()? {
            if key == "Records" || key == "Events" || key == "events" {
                let name = format!("{}#{key}", self.name);
                let seed = EachRecord {
                    name: &name,
                    sep: "/",
                    keep_raw: self.keep_raw,
                    sink: &mut *self.sink,
                    in_time_order: (key == "Events").then_some(self.order),
                };
                map.next_value_seed(seed)?;
                *self.found = true;
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(bytes: &[u8]) -> (Vec<CloudTrailEvent>, Vec<Rejected>, Result<(), InputError>) {
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        let result = parse_document("f.json", bytes, false, &mut |p| match p {
            Ok(e) => ok.push(*e),
            Err(r) => bad.push(r),
        });
        (ok, bad, result)
    }

    const EVENT: &str = r#"{"eventID":"e1","eventTime":"2024-01-01T00:00:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"us-east-1","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111111111111:user/alice","accountId":"111111111111"}}"#;

    #[test]
    fn reads_every_shape() {
        let delivery = format!(r#"{{"Records":[{EVENT},{EVENT}]}}"#);
        let array = format!("[{EVENT}]");
        let lines = format!("{EVENT}\n\n{EVENT}\n");
        let bridge = format!(
            r#"{{"detail-type":"AWS API Call via CloudTrail","source":"aws.s3","detail":{EVENT}}}"#
        );
        let single = EVENT.to_string();
        // EventBridge events as Kinesis Data Firehose writes them to S3.
        let bridged = [bridge.as_str(), &bridge, &bridge].concat();
        let history_item = history_event(EVENT);
        let history = format!(r#"{{"Events":[{history_item},{history_item}],"NextToken":null}}"#);
        let history_lines = format!("{history_item}\n{history_item}\n");
        let log_event = cloudwatch_event(EVENT);
        let filtered = format!(r#"{{"events":[{log_event},{log_event}],"searchedLogStreams":[]}}"#);
        let subscription = subscription_payload("DATA_MESSAGE", &[EVENT, EVENT]);
        for (doc, n) in [
            (delivery, 2),
            (array, 1),
            (lines, 2),
            (bridge, 1),
            (bridged, 3),
            (single, 1),
            (history, 2),
            (history_lines, 2),
            (filtered, 2),
            (subscription, 2),
        ] {
            let (ok, bad, result) = collect(doc.as_bytes());
            assert!(result.is_ok() && bad.is_empty(), "{doc}: {bad:?}");
            assert_eq!(ok.len(), n, "{doc}");
            assert_eq!(ok[0].event_name, "ListBuckets");
        }
    }

    /// An event as `aws cloudtrail lookup-events` lists it: a few fields of
    /// its own, and the record as JSON text.
    fn history_event(record: &str) -> String {
        let text = serde_json::to_string(record).unwrap();
        format!(
            r#"{{"EventId":"e1","EventName":"ListBuckets","ReadOnly":"true","EventTime":"2024-01-01T00:00:00+00:00","Resources":[],"CloudTrailEvent":{text}}}"#
        )
    }

    /// An event of a trail's CloudWatch Logs log group: the record as text.
    fn cloudwatch_event(record: &str) -> String {
        let text = serde_json::to_string(record).unwrap();
        format!(r#"{{"id":"37","timestamp":1704067200000,"message":{text}}}"#)
    }

    /// What a CloudWatch Logs subscription delivers.
    fn subscription_payload(message_type: &str, records: &[&str]) -> String {
        let events: Vec<String> = records.iter().map(|r| cloudwatch_event(r)).collect();
        format!(
            r#"{{"messageType":"{message_type}","owner":"111111111111","logGroup":"trail","logStream":"111111111111_CloudTrail_us-east-1","subscriptionFilters":["all"],"logEvents":[{}]}}"#,
            events.join(",")
        )
    }

    #[test]
    fn cloudwatch_logs_payloads_end_to_end_or_in_lines_skip_control_messages() {
        let data = subscription_payload("DATA_MESSAGE", &[EVENT, EVENT]);
        let control = subscription_payload(
            "CONTROL_MESSAGE",
            &["CWL CONTROL MESSAGE: Checking health of destination Firehose."],
        );
        // As Kinesis Data Firehose writes them to S3: one after another.
        let end_to_end = [data.as_str(), &control, &data].concat();
        let (ok, bad, result) = collect(end_to_end.as_bytes());
        assert!(result.is_ok() && bad.is_empty(), "{bad:?}");
        let origins: Vec<_> = ok.iter().map(|e| e.origin.as_str()).collect();
        assert_eq!(
            origins,
            [
                "f.json#0#logEvents/0",
                "f.json#0#logEvents/1",
                "f.json#2#logEvents/0",
                "f.json#2#logEvents/1"
            ]
        );
        let lines = [data.as_str(), &control, &data].join("\n");
        let (ok, bad, result) = collect(lines.as_bytes());
        assert!(result.is_ok() && bad.is_empty(), "{bad:?}");
        assert_eq!(ok.len(), 4);
        assert_eq!(ok[3].origin, "f.json:3#logEvents/1");

        // A message that is not a record is rejected, naming its place;
        // the payloads before a break are read.
        let odd = subscription_payload("DATA_MESSAGE", &["not json", EVENT]);
        let broken = [odd.as_str(), &data[..data.len() / 2]].concat();
        let (ok, bad, result) = collect(broken.as_bytes());
        assert!(result.is_err());
        assert_eq!(ok.len(), 1);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].origin, "f.json#logEvents/0");
        assert!(
            bad[0].reason.starts_with("malformed JSON"),
            "{}",
            bad[0].reason
        );
    }

    #[test]
    fn event_history_is_read_in_time_order_up_to_a_break() {
        let at = |id: &str, minute: u32| {
            history_event(
                &EVENT
                    .replace("\"e1\"", &format!("{id:?}"))
                    .replace("00:00:00Z", &format!("00:{minute:02}:00Z")),
            )
        };
        let unusable = history_event(r#"{"eventID":"bad","eventName":"ListBuckets"}"#);
        // Most recent first, as LookupEvents lists them.
        let newest_first = [at("e3", 3), unusable, at("e2", 2), at("e1", 1)].join(",");
        let (ok, bad, result) = collect(format!(r#"{{"Events":[{newest_first}]}}"#).as_bytes());
        assert!(result.is_ok());
        let read: Vec<_> = ok
            .iter()
            .map(|e| (e.event_id.as_str(), e.origin.as_str()))
            .collect();
        assert_eq!(
            read,
            [
                ("e1", "f.json#Events/3"),
                ("e2", "f.json#Events/2"),
                ("e3", "f.json#Events/0")
            ]
        );
        assert_eq!(bad.len(), 1);
        assert_eq!(
            (bad[0].origin.as_str(), bad[0].event_id.as_deref()),
            ("f.json#Events/1", Some("bad"))
        );
        assert!(bad[0].reason.contains("eventTime"), "{}", bad[0].reason);

        // Two regions' histories joined: one region's after the other's.
        let joined = [at("e3", 3), at("e1", 1), at("e4", 4), at("e2", 2)].join(",");
        let (ok, _, _) = collect(format!(r#"{{"Events":[{joined}]}}"#).as_bytes());
        let read: Vec<_> = ok.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(read, ["e1", "e2", "e3", "e4"]);

        // Cut inside the third event: the two before it are still read.
        let whole = format!(
            r#"{{"Events":[{},{},{}]}}"#,
            at("e3", 3),
            at("e2", 2),
            at("e1", 1)
        );
        let cut = &whole[..whole.len() - 40];
        let (ok, _, result) = collect(cut.as_bytes());
        assert!(result.is_err());
        let read: Vec<_> = ok.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(read, ["e2", "e3"]);
    }

    #[test]
    fn batches_say_whether_their_records_were_put_in_event_time_order() {
        let order_of = |doc: String| {
            let source = Source::from_bytes("f.json".into(), doc.into_bytes()).unwrap();
            let mut orders = Vec::new();
            source
                .parse_in_batches(false, 1, &mut |batch, order| {
                    orders.push((batch.len(), order));
                    true
                })
                .unwrap();
            orders
        };
        let history = format!(r#"{{"Events":[{}]}}"#, history_event(EVENT));
        let delivered = format!(r#"{{"Records":[{EVENT}]}}"#);
        let time = RecordOrder::EventTime;
        assert_eq!(order_of(history), [(1, time), (0, time)]);
        let written = RecordOrder::AsWritten;
        assert_eq!(order_of(delivered), [(1, written), (0, written)]);
    }

    #[test]
    fn bad_line_is_rejected_with_its_line_and_the_rest_is_kept() {
        let doc = format!("{EVENT}\n{{\"eventID\": \"broken\n{EVENT}\n");
        let (ok, bad, result) = collect(doc.as_bytes());
        assert!(result.is_ok());
        assert_eq!(ok.len(), 2);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].origin, "f.json:2");
    }

    #[test]
    fn nesting_is_measured_outside_strings_up_to_the_limit() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(too_deep_at(nested(MAX_NESTING).as_bytes()), None);
        assert_eq!(
            too_deep_at(nested(MAX_NESTING + 1).as_bytes()),
            Some(MAX_NESTING)
        );
        // Brackets in strings, escaped quotes among them, do not count.
        let in_strings = format!(r#"{{"a":"\"{}\\","b":{}}}"#, "[{".repeat(5000), nested(10));
        assert_eq!(too_deep_at(in_strings.as_bytes()), None);
        // The object is one level: its array's last opening bracket is one too many.
        let after_string = format!(r#"{{"a":"]]]","b":{}}}"#, nested(MAX_NESTING));
        let array_at = after_string.find('[').unwrap();
        assert_eq!(
            too_deep_at(after_string.as_bytes()),
            Some(array_at + MAX_NESTING - 1)
        );
    }

    /// sonic-rs would skip such a value recursively and overflow the
    /// stack, aborting the process (cloudwego/sonic-rs#232).
    #[test]
    fn json_nested_too_deep_is_rejected_without_overflowing_the_stack() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let record = EVENT.replacen('{', &format!(r#"{{"extra":{deep},"#), 1);
        let too_deep = |reason: &str| reason.starts_with("nested deeper than 4096 levels");

        // A line: rejected, the lines around it kept.
        let lines = format!("{EVENT}\n{record}\n{EVENT}\n");
        let (ok, bad, result) = collect(lines.as_bytes());
        assert!(result.is_ok());
        assert_eq!((ok.len(), bad.len()), (2, 1));
        assert_eq!(bad[0].origin, "f.json:2");
        assert!(too_deep(&bad[0].reason), "{}", bad[0].reason);
        // A record alone.
        let (ok, bad, _) = collect(record.as_bytes());
        assert!(ok.is_empty() && too_deep(&bad[0].reason));
        // A delivery file or array: the records before it, then an error.
        for doc in [
            format!(r#"{{"Records":[{EVENT},{record},{EVENT}]}}"#),
            format!("[{EVENT},{record},{EVENT}]"),
            format!(r#"{{"other":{deep},"Records":[{EVENT}]}}"#),
        ] {
            let (ok, _, result) = collect(doc.as_bytes());
            let message = result.unwrap_err().to_string();
            assert!(
                message.contains("nested deeper than 4096 levels"),
                "{message}"
            );
            assert!(ok.len() <= 1);
        }
        // Moderately deep JSON is still read.
        let nested = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let record = EVENT.replacen('{', &format!(r#"{{"extra":{nested},"#), 1);
        let (ok, bad, _) = collect(format!("[{record}]").as_bytes());
        assert_eq!((ok.len(), bad.len()), (1, 0));
    }

    #[test]
    fn an_insights_event_is_rejected_as_one() {
        let insight = r#"{"eventVersion":"1.07","eventTime":"2024-04-15T02:00:00Z","awsRegion":"us-east-1","eventID":"i1","eventType":"AwsCloudTrailInsight","insightDetails":{"state":"Start","eventSource":"ec2.amazonaws.com","eventName":"RunInstances","insightType":"ApiCallRateInsight"},"eventCategory":"Insight"}"#;
        let (ok, bad, _) = collect(insight.as_bytes());
        assert!(ok.is_empty());
        assert_eq!(bad[0].event_id.as_deref(), Some("i1"));
        assert!(
            bad[0].reason.starts_with("a CloudTrail Insights event"),
            "{}",
            bad[0].reason
        );
    }

    #[test]
    fn unusable_record_names_its_event_id_and_field() {
        let doc = r#"[{"eventID":"x9","eventTime":"2024-01-01T00:00:00Z","eventName":"A","eventSource":"s"}]"#;
        let (ok, bad, _) = collect(doc.as_bytes());
        assert!(ok.is_empty());
        assert_eq!(bad[0].event_id.as_deref(), Some("x9"));
        assert_eq!(bad[0].origin, "f.json#0");
        assert!(bad[0].reason.contains("userIdentity"), "{}", bad[0].reason);
    }

    #[test]
    fn request_and_response_are_kept_as_their_json_text_and_null_as_empty() {
        let with = |fields: &str| EVENT.replacen('{', &format!("{{{fields},"), 1);
        let (ok, _, _) = collect(
            with(r#""requestParameters":{"bucketName":"b","n":[1, 2]},"responseElements":null"#)
                .as_bytes(),
        );
        assert_eq!(
            ok[0].request_parameters_json,
            r#"{"bucketName":"b","n":[1, 2]}"#
        );
        assert_eq!(ok[0].response_elements_json, "");
    }

    #[test]
    fn read_only_accepts_booleans_and_their_strings() {
        let with = |value: &str| EVENT.replacen('{', &format!(r#"{{"readOnly":{value},"#), 1);
        for (value, expected) in [
            ("true", Some(true)),
            (r#""True""#, Some(true)),
            (r#""false""#, Some(false)),
            ("null", None),
            (r#""unknown""#, None),
        ] {
            let (ok, bad, _) = collect(with(value).as_bytes());
            assert!(bad.is_empty(), "{value}: {bad:?}");
            assert_eq!(ok[0].read_only, expected, "{value}");
        }
        let (ok, bad, _) = collect(with("7").as_bytes());
        assert!(ok.is_empty());
        assert!(bad[0].reason.contains("not a CloudTrail event"), "{bad:?}");
        assert!(!bad[0].reason.contains('\n'), "one line: {bad:?}");
        assert_eq!(bad[0].event_id.as_deref(), Some("e1"));
    }

    #[test]
    fn records_are_named_by_line_and_by_index_in_an_array() {
        let (ok, _, _) = collect(format!("{EVENT}\n\n  \n{EVENT}").as_bytes());
        let origins: Vec<&str> = ok.iter().map(|e| e.origin.as_str()).collect();
        assert_eq!(origins, ["f.json:1", "f.json:4"], "blank lines count");
        let (ok, _, _) = collect(format!(r#"{{"Records":[{EVENT},{EVENT}]}}"#).as_bytes());
        let origins: Vec<&str> = ok.iter().map(|e| e.origin.as_str()).collect();
        assert_eq!(origins, ["f.json#Records/0", "f.json#Records/1"]);
    }

    #[test]
    fn a_malformed_line_is_named_malformed_and_keeps_its_text() {
        let doc = format!("{EVENT}\r\n{{\"eventID\":\"e2\",}}\n{EVENT}\n");
        let (ok, bad, _) = collect(doc.as_bytes());
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].origin, "f.json:1");
        assert!(bad[0].reason.starts_with("malformed JSON"), "{bad:?}");
        assert!(!bad[0].reason.contains('\n'), "one line: {bad:?}");
        assert_eq!(bad[0].raw.as_deref(), Some(r#"{"eventID":"e2",}"#));
    }

    #[test]
    fn truncated_array_keeps_the_records_before_the_break() {
        let doc = format!("[{EVENT},{EVENT},{{\"eventID\":");
        let (ok, _, result) = collect(doc.as_bytes());
        assert_eq!(ok.len(), 2);
        let err = result.unwrap_err().to_string();
        assert!(err.starts_with("f.json: malformed JSON"), "{err}");
    }

    #[test]
    fn broken_delivery_file_keeps_the_records_before_the_break() {
        let two = format!("{EVENT},{EVENT}");
        let invalid_utf8 = [
            format!(r#"{{"Records":[{two},{{"eventID":""#).into_bytes(),
            b"\xff\"}]}".to_vec(),
        ]
        .concat();
        for (doc, reason) in [
            (
                format!(r#"{{"Records":[{two},{{"eventID":"#).into_bytes(),
                "EOF",
            ),
            (
                format!(r#"{{"Records":[{two}]}} trailing"#).into_bytes(),
                "trailing",
            ),
            (
                format!(r#"{{"Records":[{two}] "x":1}}"#).into_bytes(),
                "','",
            ),
            (invalid_utf8, "UTF-8"),
        ] {
            let (ok, _, result) = collect(&doc);
            let shown = String::from_utf8_lossy(&doc);
            assert_eq!(ok.len(), 2, "{shown}");
            let err = result.unwrap_err().to_string();
            assert!(err.starts_with("f.json: malformed JSON"), "{shown}: {err}");
            assert!(
                err.contains(reason) && !err.contains('\n'),
                "{shown}: {err}"
            );
        }
    }

    #[test]
    fn a_hashed_file_is_hashed_as_stored_and_parsed_only_when_asked() {
        let doc = format!(r#"{{"Records":[{EVENT},{EVENT}]}}"#);
        let bytes = gzip(doc.as_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.json.gz");
        std::fs::write(&path, &bytes).unwrap();
        let Identified::Hashed(hashed) = Source::open_identified(&path).unwrap() else {
            panic!("a small file is hashed");
        };
        assert_eq!(hashed.hash, xxhash_rust::xxh3::xxh3_128(&bytes));
        let mut events = 0;
        (hashed.into_source().unwrap())
            .parse(false, &mut |p| events += usize::from(p.is_ok()))
            .unwrap();
        assert_eq!(events, 2);
    }

    #[test]
    fn truncated_gzip_is_an_error_naming_the_file() {
        let doc = format!(r#"{{"Records":[{}]}}"#, vec![EVENT; 50].join(","));
        let bytes = gzip(doc.as_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.json.gz");
        let parse = |path: &Path| {
            let mut events = 0;
            let result = Source::open(path)
                .unwrap()
                .parse(false, &mut |p| events += usize::from(p.is_ok()));
            (events, result)
        };
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let (events, result) = parse(&path);
        let err = result.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: gzip stream is corrupt", path.display())),
            "{err}"
        );
        assert_eq!(events, 0, "a document read whole is parsed only when whole");
        std::fs::write(&path, &bytes).unwrap();
        let (events, result) = parse(&path);
        assert!(result.is_ok() && events == 50, "{events} {result:?}");
    }

    /// Events and rejections of a [`Source`] read in blocks of `block` bytes.
    fn stream(name: &str, bytes: Vec<u8>, block: u64) -> (Vec<String>, Result<(), InputError>) {
        let mut source = Source::new(name.into(), std::io::Cursor::new(bytes)).unwrap();
        source.block = block;
        parsed(source)
    }

    fn parsed(source: Source) -> (Vec<String>, Result<(), InputError>) {
        let mut seen = Vec::new();
        let result = source.parse(false, &mut |p| {
            seen.push(match p {
                Ok(e) => format!("{} {}", e.origin, e.event_id),
                Err(r) => format!("{} rejected", r.origin),
            })
        });
        (seen, result)
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn json_lines_read_in_blocks_give_what_the_whole_document_gives() {
        let event = |i: usize| EVENT.replace("\"e1\"", &format!("\"e{i}\""));
        let long = format!(r#"{{"pad":"{}","#, "x".repeat(3000));
        let mut doc = format!("\u{feff}{}\r\n\n", event(1));
        for i in 2..40 {
            doc += &match i % 7 {
                0 => "{\"eventID\": broken\n".to_string(),
                3 => event(i).replacen('{', &long, 1) + "\n",
                _ => event(i) + "\n",
            };
        }
        doc += &event(40); // no newline at the end
        let (whole, result) = stream("f.json", doc.clone().into_bytes(), BLOCK);
        assert!(result.is_ok());
        assert_eq!(whole.len(), 40, "{whole:?}");
        assert_eq!(whole[0], "f.json:1 e1");
        assert_eq!(whole[1], "f.json:3 e2", "blank lines count");
        assert_eq!(whole[2], "f.json:4 e3");
        assert_eq!(whole[6], "f.json:8 rejected");
        assert_eq!(whole[39], "f.json:41 e40");
        let (in_memory, result) =
            parsed(Source::from_bytes("f.json".into(), doc.clone().into()).unwrap());
        assert!(result.is_ok());
        assert_eq!(in_memory, whole, "parsed where it lies");
        // Blocks that hold two short lines, more, and less than a long line.
        for block in [1000, 1500, 2500, 7000] {
            let (blocks, result) = stream("f.json", doc.clone().into_bytes(), block);
            assert!(result.is_ok());
            assert_eq!(blocks, whole, "block of {block} bytes");
            let (gunzipped, _) = stream("f.json", gzip(doc.as_bytes()), block);
            assert_eq!(gunzipped, whole, "gzip, block of {block} bytes");
        }
    }

    #[test]
    fn records_come_in_batches_until_nobody_takes_them() {
        let doc = format!("{EVENT}\n").repeat(5);
        let batches = |taking: usize| {
            let mut sizes = Vec::new();
            let source = Source::from_bytes("f.json".into(), doc.clone().into_bytes()).unwrap();
            let result = source.parse_in_batches(false, 2, &mut |batch, _| {
                sizes.push(batch.len());
                sizes.len() < taking
            });
            assert!(result.is_ok());
            sizes
        };
        assert_eq!(batches(usize::MAX), [2, 2, 1]);
        assert_eq!(batches(1), [2], "nothing is sent once a send fails");
    }

    #[test]
    fn other_shapes_longer_than_a_block_are_read_whole() {
        let doc = format!(r#"{{"Records":[{EVENT},{EVENT}]}}"#);
        let (seen, result) = stream("d.json", gzip(doc.as_bytes()), 10);
        assert!(result.is_ok());
        assert_eq!(seen, ["d.json#Records/0 e1", "d.json#Records/1 e1"]);
    }

    #[test]
    fn a_truncated_gzip_stream_of_json_lines_keeps_the_whole_lines_before_the_break() {
        let event = |i: usize| EVENT.replace("\"e1\"", &format!("\"e{i}\"")) + "\n";
        // Incompressible padding so that the cut falls well inside the stream.
        let padding: String = (0..4000u32)
            .map(|i| char::from(b'a' + (i.wrapping_mul(2654435761) >> 27) as u8 % 26))
            .collect();
        let doc: String = (1..=60)
            .map(|i| event(i).replacen('{', &format!(r#"{{"pad":"{padding}","#), 1))
            .collect();
        let bytes = gzip(doc.as_bytes());
        // One block would hold the whole file: what is delivered comes after the break.
        let (seen, result) = stream("cut.jsonl.gz", bytes[..bytes.len() / 2].to_vec(), BLOCK);
        let err = result.unwrap_err().to_string();
        assert!(
            err.starts_with("cut.jsonl.gz: gzip stream is corrupt or truncated"),
            "{err}"
        );
        assert!((20..40).contains(&seen.len()), "{} delivered", seen.len());
        for (i, s) in seen.iter().enumerate() {
            assert_eq!(s, &format!("cut.jsonl.gz:{} e{}", i + 1, i + 1));
        }
    }

    #[test]
    fn a_path_is_named_as_display_shows_it_invalid_bytes_too() {
        use std::os::unix::ffi::OsStrExt;
        for bytes in [
            &b"logs/a.json"[..],
            b"logs/\xffb\xc3.json.gz",
            "é/ü".as_bytes(),
        ] {
            let path = Path::new(std::ffi::OsStr::from_bytes(bytes));
            assert_eq!(display_name(path), path.display().to_string());
        }
    }

    #[test]
    fn a_large_file_is_known_by_its_probe_and_hashed_in_a_pass_or_as_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl.gz");
        // Distinct events, so that gzip leaves more than a small file.
        let lines: String = (0..20_000)
            .map(|i| EVENT.replace("\"e1\"", &format!("\"{:x}\"", i * 2_654_435_761u64)) + "\n")
            .collect();
        let bytes = gzip(lines.as_bytes());
        assert!(bytes.len() as u64 > READ_WHOLE, "{} bytes", bytes.len());
        std::fs::write(&path, &bytes).unwrap();
        let probed = || match Source::open_identified(&path).unwrap() {
            Identified::Probed(probed) => probed,
            Identified::Hashed(_) => panic!("a large file is probed"),
        };
        let (start, end) = (&bytes[..64 << 10], &bytes[bytes.len() - (64 << 10)..]);
        let probe = xxhash_rust::xxh3::xxh3_128(
            &[&(bytes.len() as u64).to_le_bytes()[..], start, end].concat(),
        );
        assert_eq!(probed().probe, probe);

        // Hashed in a pass of its own, with a prefix, then parsed.
        let (hashed, prefix) = probed().hash(Some(1000)).unwrap();
        assert_eq!(hashed.hash, xxhash_rust::xxh3::xxh3_128(&bytes));
        assert_eq!(prefix, Some(xxhash_rust::xxh3::xxh3_128(&bytes[..1000])));
        let count = |source: Source| {
            let mut events = 0;
            source
                .parse(false, &mut |p| events += usize::from(p.is_ok()))
                .unwrap();
            events
        };
        assert_eq!(count(hashed.into_source().unwrap()), 20_000);
        let (_, past_the_end) = probed().hash(Some(bytes.len() as u64 + 1)).unwrap();
        assert_eq!(past_the_end, None);

        // Hashed as it is read.
        let (source, so_far) = probed().into_source().unwrap();
        assert_eq!(count(source), 20_000);
        assert_eq!(
            so_far.get(),
            (bytes.len() as u64, xxhash_rust::xxh3::xxh3_128(&bytes))
        );
    }

    #[test]
    fn eventbridge_envelope_of_another_kind_is_rejected() {
        let doc = r#"{"detail-type":"EC2 Instance State-change Notification","detail":{"state":"running"}}"#;
        let (ok, bad, _) = collect(doc.as_bytes());
        assert!(ok.is_empty());
        assert!(bad[0].reason.contains("not CloudTrail"));
    }

    #[test]
    fn what_is_not_cloudtrail_logs_is_known_by_its_place() {
        for (path, not_logs) in [
            (
                "AWSLogs/111122223333/CloudTrail/us-east-1/2024/04/15/a.json.gz",
                false,
            ),
            (
                "b/AWSLogs/o-a1b2c3d4e5/111122223333/CloudTrail/eu-west-1/a.json.gz",
                false,
            ),
            (
                "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/d.json.gz",
                true,
            ),
            (
                "/s/AWSLogs/o-a1b2c3d4e5/111122223333/CloudTrail-Insight/x/i.json.gz",
                true,
            ),
            (
                "AWSLogs/111122223333/vpcflowlogs/us-east-1/2024/f.log.gz",
                true,
            ),
            (
                "x/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20240415T020512Z.json.gz",
                true,
            ),
            // Not a bucket's layout: an account's own files, a folder of exports.
            ("AWSLogs/111122223333/export.jsonl", false),
            ("cases/AWSLogs/incident-7/events.jsonl", false),
            ("events.jsonl", false),
        ] {
            assert_eq!(not_cloudtrail_logs(path), not_logs, "{path}");
        }
    }

    #[test]
    fn delivery_files_in_delivery_time_order_across_regions_and_trails() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "AWSLogs/1/CloudTrail/ap-northeast-1/2024/03/02/1_CloudTrail_ap-northeast-1_20240302T0005Z_b.json.gz",
            "AWSLogs/1/CloudTrail/us-east-1/2024/03/01/1_CloudTrail_us-east-1_20240301T2355Z_a.json.gz",
            "AWSLogs/1/CloudTrail/eu-west-1/2024/03/02/1_CloudTrail_eu-west-1_20240302T0000Z_c.json.gz",
            "other/events.jsonl",
            "other/.partial.jsonl",
            ".cache/1_CloudTrail_us-east-1_20240301T0000Z_h.json.gz",
            // Not CloudTrail logs by their place: left out and counted.
            "AWSLogs/1/CloudTrail-Digest/us-east-1/2024/03/02/1_CloudTrail-Digest_us-east-1_trail_us-east-1_20240302T000512Z.json.gz",
            "AWSLogs/1/CloudTrail-Insight/us-east-1/2024/03/02/1_CloudTrail-Insight_us-east-1_20240302T0005Z_i.json.gz",
            "AWSLogs/o-a1b2c3d4e5/111122223333/elasticloadbalancing/us-east-1/2024/03/02/111122223333_elasticloadbalancing_us-east-1_app.web.1_20240302T0005Z_10.0.0.1_x.log.gz",
            "other/1_CloudTrail-Digest_us-east-1_trail_us-east-1_20240302T000512Z.json.gz",
        ];
        for name in names {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        // A linked directory is followed like a real one.
        let synced = tempfile::tempdir().unwrap();
        let linked = "1_CloudTrail_us-east-1_20240302T0010Z_d.json.gz";
        std::fs::write(synced.path().join(linked), "").unwrap();
        std::os::unix::fs::symlink(synced.path(), dir.path().join("synced")).unwrap();
        // Links back to an ancestor, and a second way to a directory:
        // walked once, neither loops nor reads a file twice.
        std::os::unix::fs::symlink(dir.path(), dir.path().join("AWSLogs/1/back")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("other"), dir.path().join("AWSLogs/other"))
            .unwrap();
        std::os::unix::fs::symlink(dir.path(), synced.path().join("up")).unwrap();
        // A second trail's bucket, delivering between the first's files.
        let trail = tempfile::tempdir().unwrap();
        let second = "1_CloudTrail_us-east-1_20240302T0001Z_e.json.gz";
        std::fs::write(trail.path().join(second), "").unwrap();
        let root = dir.path().to_path_buf();
        let paths = [root.clone(), root.join("other"), trail.path().into(), root];
        let found = discover(&paths).unwrap();
        assert_eq!(found.not_logs, 4);
        let order: Vec<String> = found
            .files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            order,
            [
                "events.jsonl",
                "1_CloudTrail_us-east-1_20240301T2355Z_a.json.gz",
                "1_CloudTrail_eu-west-1_20240302T0000Z_c.json.gz",
                second,
                "1_CloudTrail_ap-northeast-1_20240302T0005Z_b.json.gz",
                linked,
            ]
        );
    }
}
