//! GeoIP databases read again when their file changes on disk (DETECTIONS.md:
//! databases are reloaded when they change), so `geoipupdate` from cron
//! takes effect without a restart. A file that fails to load keeps the last
//! good copy, with a warning; a database missing at start is loaded once it
//! appears.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::geo::{GeoDb, GeoKind};

#[derive(Debug)]
pub struct WatchedDb {
    path: PathBuf,
    kind: GeoKind,
    modified: Option<SystemTime>,
    pub db: Option<GeoDb>,
}

impl WatchedDb {
    /// Open `path`; a failure is a warning and "unknown" fields until the
    /// file changes.
    pub fn open(path: PathBuf, kind: GeoKind, warnings: &mut Vec<String>) -> Self {
        let modified = modified(&path);
        let what = kind.name();
        let db = GeoDb::open_as(&path, kind)
            .map_err(|e| {
                warnings.push(format!(
                    "{what} database unusable, {what} fields are unknown: {e}"
                ))
            })
            .ok();
        Self {
            path,
            kind,
            modified,
            db,
        }
    }

    /// Read the file again if it changed since it was read; true when a new
    /// copy is in use.
    pub fn reload_if_changed(&mut self) -> bool {
        let now = modified(&self.path);
        if now.is_none() || now == self.modified {
            return false;
        }
        self.modified = now;
        match GeoDb::open_as(&self.path, self.kind) {
            Ok(db) => {
                tracing::info!(path = %self.path.display(), "{} database reloaded", self.kind.name());
                self.db = Some(db);
                true
            }
            Err(e) => {
                tracing::warn!(
                    "{} database changed but is unusable, keeping the previous copy: {e}",
                    self.kind.name()
                );
                false
            }
        }
    }
}

/// When a file last changed, if it exists.
pub(crate) fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
