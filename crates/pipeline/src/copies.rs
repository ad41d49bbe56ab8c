//! Files a scan would read twice: the same logs reached by two paths (a
//! directory and its backup, one bucket synced into two places, a link).
//! A copy's events are the original's again, read long after them: later
//! than the reorder window within which a principal's profile drops a
//! repeat, so they would be counted twice (a command's volume across the
//! organisation doubled, and findings raised on it). A file whose
//! fingerprint ([`Identified::fingerprint`]) matches one read before in
//! the scan is compared with it byte for byte, and not read if the same.
//!
//! [`Identified::fingerprint`]: trailhound_cloudtrail::Identified::fingerprint

use std::collections::hash_map::Entry;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The files read so far in a scan, by fingerprint.
#[derive(Default)]
pub struct ReadBefore {
    /// A fingerprint's low 64 bits (equal ones are compared anyway) → the
    /// index of the first file read with it.
    first: foldhash::HashMap<u64, usize>,
}

impl ReadBefore {
    /// `files[index]`, with this fingerprint, is about to be read: the file
    /// read before it with the same content, if there is one.
    pub fn original_of<'a>(
        &mut self,
        files: &'a [PathBuf],
        index: usize,
        fingerprint: u128,
    ) -> Option<&'a Path> {
        match self.first.entry(fingerprint as u64) {
            Entry::Vacant(vacant) => {
                vacant.insert(index);
                None
            }
            Entry::Occupied(first) => {
                let original = &files[*first.get()];
                same_content(original, &files[index]).then_some(original.as_path())
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
    fn a_copy_is_known_by_its_bytes_not_its_fingerprint() {
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
        assert_eq!(read.original_of(&files, 0, 7), None);
        assert_eq!(read.original_of(&files, 1, 7), Some(files[0].as_path()));
        // The same fingerprint, other bytes: read.
        assert_eq!(read.original_of(&files, 2, 7), None);
        assert_eq!(read.original_of(&files, 3, 7), None);
        // The same bytes under another fingerprint are not looked for.
        assert_eq!(read.original_of(&files, 1, 8), None);
        std::fs::remove_file(&files[0]).unwrap();
        assert_eq!(
            read.original_of(&files, 1, 7),
            None,
            "an original gone cannot be compared: read"
        );
    }
}
