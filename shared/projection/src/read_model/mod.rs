//! Read-model storage: typed key/value tables with secondary indexes, kept
//! per projection (a *namespace*) together with that projection's
//! checkpoint.
//!
//! - [`ReadModelStore`] is the byte-level contract a backend fulfils. It
//!   knows nothing of projections' types, so a PostgreSQL backend (one table
//!   of rows, one of index entries and one of checkpoints per namespace, or
//!   a schema per namespace) can follow without touching the services.
//! - [`Table`] and [`Index`] give services typed access on top: keys are
//!   order-preserving ([`key`]), values are JSON or, for plain data,
//!   postcard ([`Encoding`]).
//! - [`WriteBatch`] collects a projection's changes; [`ReadModelStore::commit`]
//!   applies them and moves the checkpoint in one transaction, so a crash
//!   never applies an event twice or skips one.
//! - [`embedded`] is the durable backend (redb, one file per namespace);
//!   [`memory`] is a scratch backend for audits' time travel and tests.

pub mod embedded;
pub mod key;
pub mod memory;
mod table;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tongban_store::Position;

use crate::error::ProjectionError;
pub use key::{Key, KeyPart};
pub use table::{Encoding, Index, ReadModels, Table};

/// What a backend keeps about a namespace besides its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The projection version the rows were built by.
    pub version: u32,
    /// The last log position whose effects the rows include (`None`: none
    /// yet).
    pub position: Option<Position>,
    /// Events applied since the last rebuild.
    pub events_applied: u64,
}

impl Checkpoint {
    pub fn empty(version: u32) -> Self {
        Self {
            version,
            position: None,
            events_applied: 0,
        }
    }
}

/// A range of encoded keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
}

impl KeyRange {
    pub fn all() -> Self {
        Self {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: Vec<u8>) -> Self {
        let end = key::prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
        Self {
            start: Bound::Included(prefix),
            end,
        }
    }

    /// Both ends inclusive.
    pub fn between(from: Vec<u8>, to: Vec<u8>) -> Self {
        Self {
            start: Bound::Included(from),
            end: Bound::Included(to),
        }
    }

    /// The same range, strictly after `key` (for the next page).
    pub fn after(&self, key: Vec<u8>) -> Self {
        let start = match &self.start {
            Bound::Included(s) | Bound::Excluded(s) if *s > key => self.start.clone(),
            _ => Bound::Excluded(key),
        };
        Self {
            start,
            end: self.end.clone(),
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        let lower = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let upper = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        lower && upper
    }

    /// True when no key after `key` can be in the range.
    pub fn is_past(&self, key: &[u8]) -> bool {
        match &self.end {
            Bound::Included(e) => key > e.as_slice(),
            Bound::Excluded(e) => key >= e.as_slice(),
            Bound::Unbounded => false,
        }
    }
}

/// One row of a table, as bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// One entry of a secondary index, with the row it points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRow {
    pub index_key: Vec<u8>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// An index key a row carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub index: String,
    pub key: Vec<u8>,
}

/// A row's new contents: a value and the index keys it is found under, or
/// `None` to delete it.
pub type RowChange = Option<(Vec<u8>, Vec<IndexEntry>)>;

/// A projection's pending changes, per table. The last change to a key
/// wins; changes are applied in (table, key) order.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    tables: BTreeMap<String, TableChanges>,
    durability: BatchDurability,
}

/// How soon a committed batch must be durable. Whatever a backend makes of
/// it, a crash never applies an event twice or skips one: what was not yet
/// durable is redone from the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchDurability {
    /// A live batch: soon (the embedded backend: within a second).
    #[default]
    Live,
    /// A batch of a catch-up with history: may wait longer (the embedded
    /// backend: within five seconds).
    CatchUp,
    /// Durable when the commit returns (the batch that ends a catch-up).
    Now,
}

#[derive(Clone, Debug, Default)]
struct TableChanges {
    /// Whether the table may carry index entries. For a table that declares
    /// no index, a backend need not look for stale entries to remove.
    indexed: bool,
    rows: BTreeMap<Vec<u8>, RowChange>,
}

/// One change of a [`WriteBatch`], as a backend applies it.
#[derive(Clone, Copy, Debug)]
pub struct BatchChange<'a> {
    pub table: &'a str,
    pub key: &'a [u8],
    pub change: &'a RowChange,
    /// False when the table declares no index: its rows never carry index
    /// entries, so there are none to look up and remove.
    pub indexed: bool,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts a row of a table that may have indexes.
    pub fn put(&mut self, table: &str, key: Vec<u8>, value: Vec<u8>, index: Vec<IndexEntry>) {
        self.change(table, true, key, Some((value, index)));
    }

    /// Deletes a row of a table that may have indexes.
    pub fn delete(&mut self, table: &str, key: Vec<u8>) {
        self.change(table, true, key, None);
    }

    /// Records a change; `indexed` says whether the table declares indexes.
    pub fn change(&mut self, table: &str, indexed: bool, key: Vec<u8>, change: RowChange) {
        let rows = match self.tables.get_mut(table) {
            Some(t) => t,
            None => self.tables.entry(table.to_string()).or_default(),
        };
        rows.indexed |= indexed;
        rows.rows.insert(key, change);
    }

    /// The pending change to a key: `Some(None)` if it is being deleted.
    pub fn pending(&self, table: &str, key: &[u8]) -> Option<&RowChange> {
        self.tables.get(table)?.rows.get(key)
    }

    pub fn set_durability(&mut self, durability: BatchDurability) {
        self.durability = durability;
    }

    pub fn durability(&self) -> BatchDurability {
        self.durability
    }

    /// Pending changes to `table` within `range`, in key order.
    pub fn pending_in<'a>(
        &'a self,
        table: &'a str,
        range: &'a KeyRange,
    ) -> impl Iterator<Item = (&'a [u8], &'a RowChange)> + 'a {
        self.tables
            .get(table)
            .into_iter()
            .flat_map(|t| t.rows.iter())
            .filter(move |(k, _)| range.contains(k))
            .map(|(k, c)| (k.as_slice(), c))
    }

    pub fn len(&self) -> usize {
        self.tables.values().map(|t| t.rows.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.values().all(|t| t.rows.is_empty())
    }

    /// Every change, in (table, key) order.
    pub fn changes(&self) -> impl Iterator<Item = BatchChange<'_>> {
        self.tables.iter().flat_map(|(table, t)| {
            t.rows.iter().map(move |(key, change)| BatchChange {
                table,
                key,
                change,
                indexed: t.indexed,
            })
        })
    }
}

/// Where read models live. Every method names a namespace (one per
/// projection); rows of different namespaces never meet.
#[async_trait]
pub trait ReadModelStore: Send + Sync + 'static {
    /// The namespace's checkpoint, `None` if it was never written.
    async fn checkpoint(&self, namespace: &str) -> Result<Option<Checkpoint>, ProjectionError>;

    async fn get(
        &self,
        namespace: &str,
        table: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, ProjectionError>;

    /// Up to `limit` rows of `table` within `range`, in key order.
    async fn scan(
        &self,
        namespace: &str,
        table: &str,
        range: &KeyRange,
        limit: usize,
    ) -> Result<Vec<Row>, ProjectionError>;

    /// Up to `limit` rows of `table` whose `index` key is within `range`, in
    /// (index key, key) order, strictly after `after` if given.
    async fn scan_index(
        &self,
        namespace: &str,
        table: &str,
        index: &str,
        range: &KeyRange,
        after: Option<(&[u8], &[u8])>,
        limit: usize,
    ) -> Result<Vec<IndexRow>, ProjectionError>;

    /// Applies `batch` and replaces the checkpoint with `next` in one
    /// transaction, if the stored checkpoint position is still `expected`;
    /// otherwise fails with `CheckpointConflict` and changes nothing.
    /// Returns once durable.
    async fn commit(
        &self,
        namespace: &str,
        expected: Option<Position>,
        next: Checkpoint,
        batch: Arc<WriteBatch>,
    ) -> Result<(), ProjectionError>;

    /// Drops every row of the namespace and starts it over at `version`.
    async fn reset(&self, namespace: &str, version: u32) -> Result<(), ProjectionError>;
}

/// Checks a namespace name: it becomes a file name in the embedded backend
/// and a schema name in a SQL one.
pub fn validate_namespace(name: &str) -> Result<(), ProjectionError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ProjectionError::InvalidInput {
            field: "projection name".into(),
            rule: format!("'{name}' must be 1 to 63 characters of a-z, 0-9, '_' or '-'"),
        })
    }
}
