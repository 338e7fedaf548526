//! An in-memory read-model store: the scratch store of audits' time travel,
//! and a second backend that keeps the trait honest.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tongban_store::Position;

use super::{
    BatchChange, Checkpoint, IndexEntry, IndexRow, KeyRange, ReadModelStore, Row, WriteBatch,
};
use crate::error::ProjectionError;

#[derive(Default)]
struct Namespace {
    checkpoint: Option<Checkpoint>,
    rows: BTreeMap<(String, Vec<u8>), Vec<u8>>,
    /// (table, index, index key, row key)
    index: BTreeSet<(String, String, Vec<u8>, Vec<u8>)>,
    /// The index entries each row carries now.
    carried: HashMap<(String, Vec<u8>), Vec<IndexEntry>>,
}

/// Read models in memory; gone when dropped.
#[derive(Default)]
pub struct MemoryReadModels {
    namespaces: Mutex<HashMap<String, Namespace>>,
}

impl MemoryReadModels {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, HashMap<String, Namespace>>, ProjectionError> {
        self.namespaces
            .lock()
            .map_err(|_| ProjectionError::Storage {
                context: "locking the in-memory read models".into(),
                source: std::sync::Arc::new(std::io::Error::other("a writer panicked")),
            })
    }
}

fn lower(table: &str, bound: &Bound<Vec<u8>>) -> Bound<(String, Vec<u8>)> {
    match bound {
        Bound::Included(k) => Bound::Included((table.to_string(), k.clone())),
        Bound::Excluded(k) => Bound::Excluded((table.to_string(), k.clone())),
        Bound::Unbounded => Bound::Included((table.to_string(), Vec::new())),
    }
}

#[async_trait]
impl ReadModelStore for MemoryReadModels {
    async fn checkpoint(&self, namespace: &str) -> Result<Option<Checkpoint>, ProjectionError> {
        Ok(self.lock()?.get(namespace).and_then(|n| n.checkpoint))
    }

    async fn get(
        &self,
        namespace: &str,
        table: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, ProjectionError> {
        Ok(self
            .lock()?
            .get(namespace)
            .and_then(|n| n.rows.get(&(table.to_string(), key.to_vec())).cloned()))
    }

    async fn scan(
        &self,
        namespace: &str,
        table: &str,
        range: &KeyRange,
        limit: usize,
    ) -> Result<Vec<Row>, ProjectionError> {
        let guard = self.lock()?;
        let Some(ns) = guard.get(namespace) else {
            return Ok(Vec::new());
        };
        Ok(ns
            .rows
            .range((lower(table, &range.start), Bound::Unbounded))
            .take_while(|((t, k), _)| t == table && !range.is_past(k))
            .take(limit)
            .map(|((_, k), v)| Row {
                key: k.clone(),
                value: v.clone(),
            })
            .collect())
    }

    async fn scan_index(
        &self,
        namespace: &str,
        table: &str,
        index: &str,
        range: &KeyRange,
        after: Option<(&[u8], &[u8])>,
        limit: usize,
    ) -> Result<Vec<IndexRow>, ProjectionError> {
        let guard = self.lock()?;
        let Some(ns) = guard.get(namespace) else {
            return Ok(Vec::new());
        };
        let start = (table.to_string(), index.to_string(), Vec::new(), Vec::new());
        let mut out = Vec::new();
        for (t, i, ikey, key) in ns.index.range(start..) {
            if t != table || i != index || range.is_past(ikey) {
                break;
            }
            if !range.contains(ikey) {
                continue;
            }
            if let Some((ai, ak)) = after {
                if (ikey.as_slice(), key.as_slice()) <= (ai, ak) {
                    continue;
                }
            }
            let Some(value) = ns.rows.get(&(table.to_string(), key.clone())) else {
                continue;
            };
            out.push(IndexRow {
                index_key: ikey.clone(),
                key: key.clone(),
                value: value.clone(),
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn commit(
        &self,
        namespace: &str,
        expected: Option<Position>,
        next: Checkpoint,
        batch: Arc<WriteBatch>,
    ) -> Result<(), ProjectionError> {
        let mut guard = self.lock()?;
        let ns = guard.entry(namespace.to_string()).or_default();
        let found = ns.checkpoint.and_then(|c| c.position);
        if found != expected {
            return Err(ProjectionError::CheckpointConflict {
                projection: namespace.to_string(),
                expected,
                found,
            });
        }
        for BatchChange {
            table, key, change, ..
        } in batch.changes()
        {
            let id = (table.to_string(), key.to_vec());
            if let Some(old) = ns.carried.remove(&id) {
                for e in old {
                    ns.index
                        .remove(&(table.to_string(), e.index, e.key, key.to_vec()));
                }
            }
            match change {
                Some((value, entries)) => {
                    for e in entries {
                        ns.index.insert((
                            table.to_string(),
                            e.index.clone(),
                            e.key.clone(),
                            key.to_vec(),
                        ));
                    }
                    if !entries.is_empty() {
                        ns.carried.insert(id.clone(), entries.clone());
                    }
                    ns.rows.insert(id, value.clone());
                }
                None => {
                    ns.rows.remove(&id);
                }
            }
        }
        ns.checkpoint = Some(next);
        Ok(())
    }

    async fn reset(&self, namespace: &str, version: u32) -> Result<(), ProjectionError> {
        let mut guard = self.lock()?;
        guard.insert(
            namespace.to_string(),
            Namespace {
                checkpoint: Some(Checkpoint::empty(version)),
                ..Namespace::default()
            },
        );
        Ok(())
    }
}
