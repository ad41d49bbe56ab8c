//! Files a scan would read twice: the same logs reached by two paths (a
//! directory and its backup, one bucket synced into two places, a link).
//! A copy's events are the original's again, read long after them: later
//! than the reorder window within which a principal's profile drops a
//! repeat, so they would be counted twice (a command's volume across the
//! organisation doubled, and findings raised on it). A file whose
//! fingerprint ([`Fingerprint`]) is one read before in the scan (or by
//! `trailhound investigate` and `profile` from logs) is not read: a small
//! file's hash is of all its bytes; a larger file with the probe of one
//! before is compared with it byte for byte first.

use std::collections::hash_map::Entry;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use trailhound_cloudtrail::{Fingerprint, InputError, Source};

/// Open a file or `-` to be read, with its fingerprint (`None` for stdin:
/// streamed, it is compared with nothing).
pub fn open(path: &Path) -> Result<(Source, Option<Fingerprint>), InputError> {
    if path.as_os_str() == "-" {
        return Ok((Source::open(path)?, None));
    }
    let identified = Source::open_identified(path)?;
    let fingerprint = identified.fingerprint();
    Ok((identified.into_source()?, Some(fingerprint)))
}

/// The files read so far in a scan, by fingerprint: the index of the first
/// file read with each, hashes and probes apart. A hash is kept as two
/// `u64` (24 bytes an entry, where a `u128` key would take 32): a scan of
/// 400,000 delivery files keeps about 11 MB here.
#[derive(Default)]
pub struct ReadBefore {
    contents: foldhash::HashMap<[u64; 2], u32>,
    probes: foldhash::HashMap<[u64; 2], u32>,
}

impl ReadBefore {
    /// `files[index]`, with this fingerprint, is about to be read: the file
    /// read before it with the same content, if there is one.
    pub fn original_of<'a>(
        &mut self,
        files: &'a [PathBuf],
        index: usize,
        fingerprint: Fingerprint,
    ) -> Option<&'a Path> {
        let (seen, hash) = match fingerprint {
            Fingerprint::Content(hash) => (&mut self.contents, hash),
            Fingerprint::Probe(probe) => (&mut self.probes, probe),
        };
        let key = [(hash >> 64) as u64, hash as u64];
        match seen.entry(key) {
            Entry::Vacant(vacant) => {
                vacant.insert(u32::try_from(index).unwrap_or(u32::MAX));
                None
            }
            Entry::Occupied(first) => {
                let original = files.get(*first.get() as usize)?;
                let same = match fingerprint {
                    Fingerprint::Content(_) => true,
                    Fingerprint::Probe(_) => same_content(original, &files[index]),
                };
                same.then_some(original.as_path())
            }
        }
    }
}

/// Whether two files hold the same bytes; false when either cannot be read.
fn same_content(a: &Path, b: &Path) -> bool {
    let open = |path| std::fs::File::open(path).map(|f| BufReader::with_capacity(1 << 20, f));
    let (Ok(mut a), Ok(mut b)) = (open(a), open(b)) else {
        return false;
    };
    loop {
        let (Ok(from_a), Ok(from_b)) = (a.fill_buf(), b.fill_buf()) else {
            return false;
        };
        if from_a.is_empty() || from_b.is_empty() {
            return from_a.is_empty() && from_b.is_empty();
        }
        let n = from_a.len().min(from_b.len());
        if from_a[..n] != from_b[..n] {
            return false;
        }
        a.consume(n);
        b.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_known_by_its_content_hash_or_by_its_bytes_after_its_probe() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        // Larger than a reader's buffer, to compare more than one fill.
        let content = vec![b'x'; 3 << 20];
        let mut longer = content.clone();
        longer.push(b'x');
        let mut changed = content.clone();
        changed[2 << 20] = b'y';
        let files = vec![
            write("a", &content),
            write("b", &content),
            write("longer", &longer),
            write("changed", &changed),
        ];
        let mut read = ReadBefore::default();
        let probe = Fingerprint::Probe(7);
        assert_eq!(read.original_of(&files, 0, probe), None);
        assert_eq!(read.original_of(&files, 1, probe), Some(files[0].as_path()));
        // The same probe, other bytes: read.
        assert_eq!(read.original_of(&files, 2, probe), None);
        assert_eq!(read.original_of(&files, 3, probe), None);
        // The same bytes under another fingerprint are not looked for.
        assert_eq!(read.original_of(&files, 1, Fingerprint::Probe(8)), None);
        // A content hash is of every byte: not compared again.
        let content = Fingerprint::Content(7);
        assert_eq!(read.original_of(&files, 2, content), None);
        assert_eq!(
            read.original_of(&files, 3, content),
            Some(files[2].as_path())
        );
        std::fs::remove_file(&files[0]).unwrap();
        assert_eq!(
            read.original_of(&files, 1, probe),
            None,
            "an original gone cannot be compared: read"
        );
    }
}
