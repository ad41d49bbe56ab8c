//! Stage state in RocksDB.
//!
//! A stateful stage keeps its state in [`Table`]s: typed maps cached in
//! memory, read through from the [`Store`] on a miss, and marked dirty on
//! change. At a commit point the edge writes every dirty entry, and the
//! input position it covers, in one RocksDB write batch ([`Store::commit`]),
//! so state and checkpoint never disagree. Without a store a table is
//! purely in memory: that is how detectors are unit-tested.

use std::path::Path;
use std::sync::Arc;

// foldhash rather than SipHash on the hot path: several times faster on short
// string keys, and still seeded per process, so keys taken from logs cannot be
// chosen to collide.
use foldhash::HashSet;
use hashbrown::hash_map::EntryRef;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Column family for checkpoints and bookkeeping.
const META: &str = "meta";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store {path}: {source}")]
    Open {
        path: String,
        source: rocksdb::Error,
    },
    #[error("state store: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("state table {table}: entry {key:?} does not decode: {source}")]
    Decode {
        table: String,
        key: String,
        source: postcard::Error,
    },
    #[error("state table {table}: entry {key:?} is missing")]
    Missing { table: String, key: String },
    #[error(
        "state store {path}: its {layout} were written in layout {found}, and this \
         Trailhound reads layout {expected}"
    )]
    Layout {
        path: String,
        layout: &'static str,
        found: u32,
        expected: u32,
    },
}

/// The encoding of the values in some tables, versioned by the crate that
/// writes them. Values are postcard, which does not describe itself: a
/// value written in another layout would not decode, or would decode
/// wrong, so a store written in another layout is refused as a whole
/// ([`Store::check_layout`]). Bump `version` when a stored type changes.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// What the tables hold, for messages: "profiles".
    pub name: &'static str,
    pub version: u32,
    pub tables: &'static [&'static str],
}

/// Entries a table backed by a store keeps in memory by default.
pub const DEFAULT_CACHE_ENTRIES: usize = 50_000;

/// RocksDB's own memory, whatever the number of tables and principals: its
/// block cache, with the memtables of every column family charged to it
/// (by default each column family could hold two 64 MiB memtables). A
/// commit's batch goes into the memtables whole, so they can exceed it until
/// they are flushed; allowed to stall writes instead, a scan stalled for good.
const ROCKSDB_MEMORY: usize = 64 << 20;

/// A RocksDB database with one column family per table.
pub struct Store {
    db: rocksdb::DB,
    tables: Vec<String>,
    cache_entries: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.db.path())
            .finish()
    }
}

impl Store {
    /// Open (or create) the store at `dir` with the given tables.
    pub fn open(dir: &Path, tables: &[&str]) -> Result<Arc<Self>, StateError> {
        Self::open_with_cache(dir, tables, DEFAULT_CACHE_ENTRIES)
    }

    /// Open with each table caching about `cache_entries` entries (plus
    /// those used since the last commit): memory stays bounded however
    /// many principals the state holds.
    pub fn open_with_cache(
        dir: &Path,
        tables: &[&str],
        cache_entries: usize,
    ) -> Result<Arc<Self>, StateError> {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cache = rocksdb::Cache::new_lru_cache(ROCKSDB_MEMORY);
        let mut table_options = rocksdb::BlockBasedOptions::default();
        table_options.set_block_cache(&cache);
        options.set_block_based_table_factory(&table_options);
        options.set_write_buffer_manager(
            &rocksdb::WriteBufferManager::new_write_buffer_manager_with_cache(
                ROCKSDB_MEMORY / 2,
                false,
                cache,
            ),
        );
        let mut names: Vec<&str> = tables.to_vec();
        names.push(META);
        let db =
            rocksdb::DB::open_cf(&options, dir, &names).map_err(|source| StateError::Open {
                path: dir.display().to_string(),
                source,
            })?;
        Ok(Arc::new(Self {
            db,
            tables: names.iter().map(|n| n.to_string()).collect(),
            cache_entries,
        }))
    }

    /// An entry of a table as stored: for tables whose keys and values the
    /// caller encodes itself (ordered indexes), written with [`Batch::put`].
    pub fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let cf = self
            .db
            .cf_handle(table)
            .expect("tables are created at open");
        Ok(self.db.get_cf(&cf, key)?)
    }

    /// Write a batch of table changes and checkpoints atomically.
    pub fn commit(&self, batch: Batch) -> Result<(), StateError> {
        let mut wb = rocksdb::WriteBatch::default();
        for (table, key, value) in batch.puts {
            let cf = self
                .db
                .cf_handle(table)
                .expect("tables are created at open");
            wb.put_cf(&cf, key, value);
        }
        for (table, key) in batch.deletes {
            let cf = self
                .db
                .cf_handle(table)
                .expect("tables are created at open");
            wb.delete_cf(&cf, key);
        }
        self.db.write(wb)?;
        Ok(())
    }

    /// Delete the store at `dir`, for one to be rebuilt in its place.
    pub fn destroy(dir: &Path) -> Result<(), StateError> {
        rocksdb::DB::destroy(&rocksdb::Options::default(), dir).map_err(|source| StateError::Open {
            path: dir.display().to_string(),
            source,
        })
    }

    /// [`Store::check_layout`] for each of `layouts`: the first refusal.
    pub fn check_layouts(&self, layouts: &[Layout]) -> Result<(), StateError> {
        layouts
            .iter()
            .try_for_each(|layout| self.check_layout(layout))
    }

    /// Refuse this store if `layout`'s tables were written in another
    /// version of it; record the version in a store that has none of their
    /// values yet. Stores written before layouts were recorded are version 1.
    pub fn check_layout(&self, layout: &Layout) -> Result<(), StateError> {
        let key = format!("layout:{}", layout.name);
        let found = match self.meta(&key)? {
            // Not four bytes: not a layout this or any version wrote.
            Some(v) => v.try_into().map_or(0, u32::from_le_bytes),
            None if self.all_empty(layout.tables) => {
                let mut batch = Batch::default();
                batch.set_meta(&key, layout.version.to_le_bytes());
                return self.commit(batch);
            }
            None => 1,
        };
        if found == layout.version {
            return Ok(());
        }
        Err(StateError::Layout {
            path: self.db.path().display().to_string(),
            layout: layout.name,
            found,
            expected: layout.version,
        })
    }

    fn all_empty(&self, tables: &[&str]) -> bool {
        tables.iter().all(|table| {
            let cf = self
                .db
                .cf_handle(table)
                .expect("tables are created at open");
            let mut entries = self.db.iterator_cf(&cf, rocksdb::IteratorMode::Start);
            entries.next().is_none()
        })
    }

    /// A checkpoint or bookkeeping value written by [`Batch::set_meta`].
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.get(META, key.as_bytes())
    }

    /// Whether any checkpoint key starts with `prefix`.
    pub fn has_meta_prefix(&self, prefix: &str) -> Result<bool, StateError> {
        let mut found = false;
        self.visit_from(META, prefix.as_bytes(), |key, _| {
            found = key.starts_with(prefix.as_bytes());
            false
        })?;
        Ok(found)
    }

    /// Every entry of a table, decoded (for reports and the query side).
    pub fn scan<V: DeserializeOwned>(&self, table: &str) -> Result<Vec<(String, V)>, StateError> {
        let cf = self
            .db
            .cf_handle(table)
            .expect("tables are created at open");
        let mut out = Vec::new();
        for item in self.db.iterator_cf(&cf, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let value = postcard::from_bytes(&v).map_err(|source| StateError::Decode {
                table: table.to_string(),
                key: key.clone(),
                source,
            })?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// Visit a table's entries in key order from `from` (inclusive) while
    /// `visit` returns true.
    pub fn visit_from(
        &self,
        table: &str,
        from: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError> {
        let cf = self
            .db
            .cf_handle(table)
            .expect("tables are created at open");
        let mode = rocksdb::IteratorMode::From(from, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(&cf, mode) {
            let (key, value) = item?;
            if !visit(&key, &value) {
                break;
            }
        }
        Ok(())
    }

    /// Flush memtables and compact every table, so that [`Store::disk_bytes`]
    /// measures settled state.
    pub fn compact(&self) -> Result<(), StateError> {
        for name in &self.tables {
            let cf = self.db.cf_handle(name).expect("tables are created at open");
            self.db.flush_cf(&cf)?;
            self.db.compact_range_cf(&cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// Approximate bytes on disk (SST files) across all tables.
    pub fn disk_bytes(&self) -> u64 {
        self.tables
            .iter()
            .filter_map(|name| self.db.cf_handle(name))
            .filter_map(|cf| {
                self.db
                    .property_int_value_cf(&cf, "rocksdb.total-sst-files-size")
                    .ok()
                    .flatten()
            })
            .sum()
    }
}

/// Changes to write in one atomic commit.
#[derive(Debug, Default)]
pub struct Batch {
    puts: Vec<(&'static str, Vec<u8>, Vec<u8>)>,
    deletes: Vec<(&'static str, Vec<u8>)>,
}

impl Batch {
    pub fn set_meta(&mut self, key: &str, value: impl Into<Vec<u8>>) {
        self.puts
            .push((META, key.as_bytes().to_vec(), value.into()));
    }

    pub fn delete_meta(&mut self, key: &str) {
        self.deletes.push((META, key.as_bytes().to_vec()));
    }

    /// Write `value` under `key` in `table`. A commit writes every put
    /// before any delete: do not put and delete one key in one batch.
    pub fn put(&mut self, table: &'static str, key: Vec<u8>, value: Vec<u8>) {
        self.puts.push((table, key, value));
    }

    pub fn delete(&mut self, table: &'static str, key: Vec<u8>) {
        self.deletes.push((table, key));
    }

    pub fn len(&self) -> usize {
        self.puts.len() + self.deletes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A typed table: a write-back cache over one column family.
#[derive(Debug)]
pub struct Table<V> {
    name: &'static str,
    store: Option<Arc<Store>>,
    cache: hashbrown::HashMap<String, Cached<V>, foldhash::fast::RandomState>,
    /// Commit intervals so far; entries remember the last one that used them.
    interval: u64,
    /// Keys changed since the last commit (each marked so in the cache).
    dirty: Vec<String>,
    unstored: Unstored,
}

/// Keys not to read from the store on a cache miss.
#[derive(Debug, Default)]
struct Unstored {
    /// Removed since the last commit: the store still holds them.
    removed: HashSet<String>,
    /// Keys the store does not hold: looked up once, not on every miss.
    absent: HashSet<String>,
}

impl Unstored {
    /// `key` is made again: no longer to be deleted, nor absent.
    fn forget(&mut self, key: &str) {
        if !self.removed.is_empty() {
            self.removed.remove(key);
        }
        self.absent.remove(key);
    }
}

#[derive(Debug)]
struct Cached<V> {
    /// Boxed: the map's slots, sized for the most entries it ever held and
    /// moved when it grows, stay small however large a value is (a
    /// principal's profile is 840 bytes).
    value: Box<V>,
    used_in: u64,
    /// Changed since the last commit, and so listed in `dirty`.
    dirty: bool,
    /// Bytes of its last serialised form: room to serialise it again
    /// without regrowing the buffer.
    size: usize,
}

impl<V: Serialize + DeserializeOwned> Table<V> {
    /// A table kept only in memory.
    pub fn in_memory(name: &'static str) -> Self {
        Self::new(name, None)
    }

    /// A table backed by `store`, which must have been opened with `name`.
    pub fn new(name: &'static str, store: Option<Arc<Store>>) -> Self {
        Self {
            name,
            store,
            cache: Default::default(),
            interval: 0,
            dirty: Vec::new(),
            unstored: Unstored::default(),
        }
    }

    /// The entry for `key`, loading it from the store on a cache miss.
    pub fn get(&mut self, key: &str) -> Result<Option<&V>, StateError> {
        if !self.load(key)? && self.store.is_some() && !self.unstored.absent.contains(key) {
            self.unstored.absent.insert(key.to_string());
        }
        Ok(self.cache.get_mut(key).map(|c| {
            c.used_in = self.interval;
            &*c.value
        }))
    }

    /// A copy of the entry for `key`, read from the store on a cache miss
    /// without caching it: for reading many entries once (a report) while
    /// memory stays within the cache's bound.
    pub fn peek(&self, key: &str) -> Result<Option<V>, StateError>
    where
        V: Clone,
    {
        if let Some(cached) = self.cache.get(key) {
            return Ok(Some(V::clone(&cached.value)));
        }
        Ok(read(self.store.as_deref(), self.name, &self.unstored, key)?.map(|(value, _)| value))
    }

    /// The entry for `key` to change, created with `init` when absent.
    pub fn entry(&mut self, key: &str, init: impl FnOnce() -> V) -> Result<&mut V, StateError> {
        // Most calls hit the cache: one lookup, nothing allocated.
        let c = match self.cache.entry_ref(key) {
            EntryRef::Occupied(hit) => hit.into_mut(),
            EntryRef::Vacant(miss) => {
                let stored = read(self.store.as_deref(), self.name, &self.unstored, key)?;
                // Made now: no longer to be deleted, nor absent from the store.
                self.unstored.forget(key);
                let (value, size) = stored.unwrap_or_else(|| (init(), 0));
                miss.insert(Cached {
                    value: Box::new(value),
                    used_in: 0,
                    dirty: false,
                    size,
                })
            }
        };
        c.used_in = self.interval;
        // In memory the cache is the state: there is nothing to write back.
        if self.store.is_some() && !c.dirty {
            c.dirty = true;
            self.dirty.push(key.to_string());
        }
        Ok(&mut c.value)
    }

    pub fn remove(&mut self, key: &str) {
        self.cache.remove(key);
        if self.store.is_some() {
            self.unstored.removed.insert(key.to_string());
        }
    }

    /// Bring `key` into the cache from the store if it is there; say
    /// whether the cache now holds it.
    fn load(&mut self, key: &str) -> Result<bool, StateError> {
        if self.cache.contains_key(key) {
            return Ok(true);
        }
        let Some((value, size)) = read(self.store.as_deref(), self.name, &self.unstored, key)?
        else {
            return Ok(false);
        };
        self.cache.insert(
            key.to_string(),
            Cached {
                value: Box::new(value),
                used_in: self.interval,
                dirty: false,
                size,
            },
        );
        Ok(true)
    }

    /// Move every change since the last call into `batch`, then keep the
    /// cache within the store's bound. A table in memory has none.
    pub fn drain_into(&mut self, batch: &mut Batch) {
        for key in self.dirty.drain(..) {
            // Gone (removed), or listed twice (removed and made again).
            if let Some(c) = self.cache.get_mut(&key).filter(|c| c.dirty) {
                c.dirty = false;
                let room = Vec::with_capacity(c.size + c.size / 8 + 64);
                let bytes = postcard::to_extend(&c.value, room).expect("state values serialise");
                c.size = bytes.len();
                batch.puts.push((self.name, key.into_bytes(), bytes));
            }
        }
        for key in self.unstored.removed.drain() {
            batch.deletes.push((self.name, key.into_bytes()));
        }
        self.evict();
        self.interval += 1;
    }

    /// Over the bound, forget the entries this interval did not use: they
    /// are in the store already. Those it used stay, as the batch holding
    /// their changes is not committed yet.
    fn evict(&mut self) {
        let Some(store) = &self.store else {
            return; // in memory, the cache is the state
        };
        if self.cache.len() > store.cache_entries {
            let interval = self.interval;
            self.cache.retain(|_, c| c.used_in == interval);
        }
        if self.unstored.absent.len() > store.cache_entries {
            self.unstored.absent.clear();
        }
    }

    /// Entries held in memory.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// `key`'s value in `table` of `store`, and its size there; `None`, with
/// no read, for a key `unstored` knows the store does not (or will not) hold.
fn read<V: DeserializeOwned>(
    store: Option<&Store>,
    table: &str,
    unstored: &Unstored,
    key: &str,
) -> Result<Option<(V, usize)>, StateError> {
    if unstored.removed.contains(key) || unstored.absent.contains(key) {
        return Ok(None);
    }
    let Some(bytes) = store
        .map(|s| s.get(table, key.as_bytes()))
        .transpose()?
        .flatten()
    else {
        return Ok(None);
    };
    let value = postcard::from_bytes(&bytes).map_err(|source| StateError::Decode {
        table: table.to_string(),
        key: key.to_string(),
        source,
    })?;
    Ok(Some((value, bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose table "t" holds "a" = [1], committed, and the table.
    fn a_committed() -> (tempfile::TempDir, Arc<Store>, Table<Vec<u32>>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &["t"]).unwrap();
        let mut t = Table::new("t", Some(store.clone()));
        t.entry("a", Vec::new).unwrap().push(1);
        commit(&mut t, &store);
        (dir, store, t)
    }

    /// Drain `t`'s changes and commit them to `store`.
    fn commit<V: Serialize + DeserializeOwned>(t: &mut Table<V>, store: &Store) {
        let mut batch = Batch::default();
        t.drain_into(&mut batch);
        store.commit(batch).unwrap();
    }

    #[test]
    fn a_store_written_in_another_layout_is_refused() {
        const V1: Layout = Layout {
            name: "things",
            version: 1,
            tables: &["t"],
        };
        const V2: Layout = Layout { version: 2, ..V1 };
        let dir = tempfile::tempdir().unwrap();
        let (fresh, old) = (dir.path().join("fresh"), dir.path().join("old"));
        // A new store takes the layout, and keeps it.
        let store = Store::open(&fresh, &["t"]).unwrap();
        store.check_layout(&V2).unwrap();
        let mut batch = Batch::default();
        batch.put("t", b"k".to_vec(), vec![1]);
        store.commit(batch).unwrap();
        drop(store);
        let store = Store::open(&fresh, &["t"]).unwrap();
        store.check_layout(&V2).unwrap();
        let err = store.check_layout(&V1).unwrap_err().to_string();
        assert!(err.contains("things were written in layout 2"), "{err}");
        // One written before layouts were recorded holds version 1.
        let store = Store::open(&old, &["t"]).unwrap();
        let mut batch = Batch::default();
        batch.put("t", b"k".to_vec(), vec![1]);
        store.commit(batch).unwrap();
        store.check_layout(&V1).unwrap();
        let err = store.check_layout(&V2).unwrap_err().to_string();
        assert!(
            err.contains("layout 1, and this Trailhound reads layout 2"),
            "{err}"
        );
        assert!(err.contains(&old.display().to_string()), "{err}");
    }

    #[test]
    fn changes_persist_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), &["t"]).unwrap();
            let mut t: Table<Vec<u32>> = Table::new("t", Some(store.clone()));
            t.entry("a", Vec::new).unwrap().push(1);
            t.entry("b", Vec::new).unwrap().push(2);
            let mut batch = Batch::default();
            t.drain_into(&mut batch);
            batch.set_meta("checkpoint", b"7");
            store.commit(batch).unwrap();
            t.entry("c", Vec::new).unwrap().push(3); // never committed
        }
        let store = Store::open(dir.path(), &["t"]).unwrap();
        let mut t: Table<Vec<u32>> = Table::new("t", Some(store.clone()));
        assert_eq!(t.get("a").unwrap(), Some(&vec![1]));
        assert_eq!(t.get("c").unwrap(), None);
        t.entry("c", Vec::new).unwrap().push(4); // known absent, then created
        assert_eq!(t.get("c").unwrap(), Some(&vec![4]));
        assert_eq!(
            store.meta("checkpoint").unwrap().as_deref(),
            Some(&b"7"[..])
        );
        assert!(store.has_meta_prefix("check").unwrap());
        assert!(!store.has_meta_prefix("checkpoints").unwrap());
        assert!(!store.has_meta_prefix("z").unwrap());
        t.remove("a");
        commit(&mut t, &store);
        assert_eq!(
            store.scan::<Vec<u32>>("t").unwrap(),
            vec![("b".to_string(), vec![2]), ("c".to_string(), vec![4])]
        );
    }

    #[test]
    fn the_cache_stays_bounded_and_evicted_entries_come_back_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with_cache(dir.path(), &["t"], 10).unwrap();
        let mut t: Table<u32> = Table::new("t", Some(store.clone()));
        for round in 0..5u32 {
            for k in 0..25 {
                *t.entry(&format!("{round}-{k}"), || round).unwrap() += 1;
            }
            commit(&mut t, &store);
            assert!(t.cached() <= 25, "round {round}: {}", t.cached());
        }
        // Entries of earlier intervals were evicted, not lost.
        assert_eq!(t.get("0-3").unwrap(), Some(&1));
        let mut batch = Batch::default();
        t.drain_into(&mut batch);
        assert!(t.cached() <= 10 + 1);
    }

    #[test]
    fn peeked_entries_come_from_the_cache_or_the_store_and_are_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with_cache(dir.path(), &["t"], 1).unwrap();
        let mut t: Table<u32> = Table::new("t", Some(store.clone()));
        for k in 0..5 {
            *t.entry(&k.to_string(), || k).unwrap() += 10;
        }
        commit(&mut t, &store);
        commit(&mut t, &store); // evicts all but about one entry
        let cached = t.cached();
        let peeked: Vec<_> = (0..6).map(|k| t.peek(&k.to_string()).unwrap()).collect();
        assert_eq!(
            peeked,
            [Some(10), Some(11), Some(12), Some(13), Some(14), None]
        );
        assert_eq!(t.cached(), cached, "nothing peeked was cached");
        *t.entry("2", || 0).unwrap() += 1;
        assert_eq!(t.peek("2").unwrap(), Some(13), "a change not yet committed");
    }

    #[test]
    fn a_removed_entry_is_not_read_back_before_its_delete_is_committed() {
        let (_dir, store, mut t) = a_committed();
        t.remove("a");
        assert_eq!(t.get("a").unwrap(), None, "the store still holds it");
        commit(&mut t, &store);
        let mut reopened: Table<Vec<u32>> = Table::new("t", Some(store));
        assert_eq!(reopened.get("a").unwrap(), None, "deleted");
    }

    #[test]
    fn an_entry_removed_and_made_again_starts_afresh_and_is_written_once() {
        let (_dir, store, mut t) = a_committed();
        t.remove("a");
        t.entry("a", Vec::new).unwrap().push(2); // not [1, 2]: the stored value is gone
        t.remove("a");
        t.entry("a", Vec::new).unwrap().push(3);
        let mut batch = Batch::default();
        t.drain_into(&mut batch);
        assert_eq!(batch.len(), 1, "one put, no delete");
        store.commit(batch).unwrap();
        let mut reopened: Table<Vec<u32>> = Table::new("t", Some(store));
        assert_eq!(reopened.get("a").unwrap(), Some(&vec![3]));
    }

    #[test]
    fn in_memory_tables_need_no_store_and_write_nothing() {
        let mut t: Table<u64> = Table::in_memory("t");
        *t.entry("k", || 0).unwrap() += 5;
        *t.entry("gone", || 0).unwrap() += 1;
        t.remove("gone");
        assert_eq!(t.get("k").unwrap(), Some(&5));
        let mut batch = Batch::default();
        t.drain_into(&mut batch);
        assert!(batch.is_empty(), "the cache is the state");
        assert_eq!(t.get("k").unwrap(), Some(&5));
        assert_eq!(t.get("gone").unwrap(), None);
    }
}
