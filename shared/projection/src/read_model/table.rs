//! Typed tables and indexes over the byte-level [`ReadModelStore`].

use std::marker::PhantomData;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use super::{Checkpoint, IndexEntry, Key, KeyRange, ReadModelStore};
use crate::error::ProjectionError;

type IndexFn<V> = Arc<dyn Fn(&V) -> Vec<Vec<u8>> + Send + Sync>;

/// A secondary index of a table: the keys a value is found under.
pub struct Index<V> {
    name: String,
    keys: IndexFn<V>,
}

impl<V> Clone for Index<V> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            keys: self.keys.clone(),
        }
    }
}

/// How a table's values are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// JSON: any serde type (maps, `serde_json::Value`, skipped fields).
    Json,
    /// postcard: a third of JSON's size and several times faster to read
    /// and write, for plain data (no skipped or flattened fields, no
    /// `serde_json::Value`). Not self-describing: changing the type means
    /// a new projection version, which rebuilds the rows.
    Binary,
}

/// A typed table: keys `K` in order, values `V` (JSON unless
/// [`binary`](Table::binary)), with secondary indexes the store maintains
/// on every write.
pub struct Table<K, V> {
    name: String,
    encoding: Encoding,
    indexes: Vec<Index<V>>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            encoding: self.encoding,
            indexes: self.indexes.clone(),
            _types: PhantomData,
        }
    }
}

impl<K: Key, V: Serialize + DeserializeOwned> Table<K, V> {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            encoding: Encoding::Json,
            indexes: Vec::new(),
            _types: PhantomData,
        }
    }

    /// Stores values as postcard instead of JSON (see [`Encoding::Binary`]).
    pub fn binary(mut self) -> Self {
        self.encoding = Encoding::Binary;
        self
    }

    /// Adds an index named `name`: every value is found under the keys `f`
    /// gives it (none, one or several).
    pub fn with_index<IK: Key>(
        mut self,
        name: impl Into<String>,
        f: impl Fn(&V) -> Vec<IK> + Send + Sync + 'static,
    ) -> Self {
        self.indexes.push(Index {
            name: name.into(),
            keys: Arc::new(move |v| f(v).iter().map(Key::encode_key).collect()),
        });
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn encode_value(&self, value: &V) -> Result<Vec<u8>, ProjectionError> {
        let encoded = match self.encoding {
            Encoding::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
            Encoding::Binary => postcard::to_allocvec(value).map_err(|e| e.to_string()),
        };
        encoded.map_err(|reason| ProjectionError::Encode {
            what: format!("a row of table '{}'", self.name),
            reason,
        })
    }

    pub(crate) fn decode_value(&self, bytes: &[u8]) -> Result<V, ProjectionError> {
        let decoded = match self.encoding {
            Encoding::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Encoding::Binary => postcard::from_bytes(bytes).map_err(|e| e.to_string()),
        };
        decoded.map_err(|reason| ProjectionError::Decode {
            what: format!("a row of table '{}'", self.name),
            reason,
        })
    }

    /// Whether the table declares any index.
    pub fn has_indexes(&self) -> bool {
        !self.indexes.is_empty()
    }

    pub(crate) fn index_entries(&self, value: &V) -> Vec<IndexEntry> {
        self.indexes
            .iter()
            .flat_map(|index| {
                (index.keys)(value).into_iter().map(|key| IndexEntry {
                    index: index.name.clone(),
                    key,
                })
            })
            .collect()
    }

    fn decode_row(&self, key: &[u8], value: &[u8]) -> Result<(K, V), ProjectionError> {
        Ok((K::decode_key(key)?, self.decode_value(value)?))
    }
}

/// Page size of the reads that collect whole ranges.
const PAGE: usize = 1024;

/// Read access to one projection's read model: what queries use.
#[derive(Clone)]
pub struct ReadModels {
    store: Arc<dyn ReadModelStore>,
    namespace: String,
}

impl ReadModels {
    pub fn new(store: Arc<dyn ReadModelStore>, namespace: impl Into<String>) -> Self {
        Self {
            store,
            namespace: namespace.into(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn store(&self) -> &Arc<dyn ReadModelStore> {
        &self.store
    }

    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, ProjectionError> {
        self.store.checkpoint(&self.namespace).await
    }

    pub async fn get<K: Key, V: Serialize + DeserializeOwned>(
        &self,
        table: &Table<K, V>,
        key: &K,
    ) -> Result<Option<V>, ProjectionError> {
        let bytes = self
            .store
            .get(&self.namespace, table.name(), &key.encode_key())
            .await?;
        bytes.map(|b| table.decode_value(&b)).transpose()
    }

    /// Writes one row at once, outside any projection batch, keeping the
    /// namespace's checkpoint: for rows a process manager updates while it
    /// works (its progress). The namespace must have no other writer.
    pub async fn put_now<K: Key, V: Serialize + DeserializeOwned>(
        &self,
        table: &Table<K, V>,
        key: &K,
        value: &V,
    ) -> Result<(), ProjectionError> {
        let checkpoint = self
            .checkpoint()
            .await?
            .unwrap_or_else(|| super::Checkpoint::empty(1));
        let mut batch = super::WriteBatch::new();
        batch.change(
            table.name(),
            table.has_indexes(),
            key.encode_key(),
            Some((table.encode_value(value)?, table.index_entries(value))),
        );
        self.store
            .commit(
                &self.namespace,
                checkpoint.position,
                checkpoint,
                Arc::new(batch),
            )
            .await
    }

    /// One page of rows within `range`, in key order.
    pub async fn scan<K: Key, V: Serialize + DeserializeOwned>(
        &self,
        table: &Table<K, V>,
        range: &KeyRange,
        limit: usize,
    ) -> Result<Vec<(K, V)>, ProjectionError> {
        let rows = self
            .store
            .scan(&self.namespace, table.name(), range, limit)
            .await?;
        rows.iter()
            .map(|r| table.decode_row(&r.key, &r.value))
            .collect()
    }

    /// Every row within `range`, read page by page.
    pub async fn scan_all<K: Key, V: Serialize + DeserializeOwned>(
        &self,
        table: &Table<K, V>,
        range: &KeyRange,
    ) -> Result<Vec<(K, V)>, ProjectionError> {
        let mut out = Vec::new();
        let mut range = range.clone();
        loop {
            let rows = self
                .store
                .scan(&self.namespace, table.name(), &range, PAGE)
                .await?;
            let full = rows.len() == PAGE;
            for row in &rows {
                out.push(table.decode_row(&row.key, &row.value)?);
            }
            match rows.last() {
                Some(last) if full => range = range.after(last.key.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Every row whose `index` key lies within `range`, in index order.
    pub async fn by_index<K: Key, V: Serialize + DeserializeOwned>(
        &self,
        table: &Table<K, V>,
        index: &str,
        range: &KeyRange,
    ) -> Result<Vec<(K, V)>, ProjectionError> {
        let mut out = Vec::new();
        let mut after: Option<(Vec<u8>, Vec<u8>)> = None;
        loop {
            let rows = self
                .store
                .scan_index(
                    &self.namespace,
                    table.name(),
                    index,
                    range,
                    after.as_ref().map(|(i, k)| (i.as_slice(), k.as_slice())),
                    PAGE,
                )
                .await?;
            let full = rows.len() == PAGE;
            for row in &rows {
                out.push(table.decode_row(&row.key, &row.value)?);
            }
            match rows.last() {
                Some(last) if full => after = Some((last.index_key.clone(), last.key.clone())),
                _ => return Ok(out),
            }
        }
    }

    /// Every row found under exactly `index_key`.
    pub async fn by_index_key<K: Key, V: Serialize + DeserializeOwned, IK: Key>(
        &self,
        table: &Table<K, V>,
        index: &str,
        index_key: &IK,
    ) -> Result<Vec<(K, V)>, ProjectionError> {
        let key = index_key.encode_key();
        self.by_index(table, index, &KeyRange::between(key.clone(), key))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Person {
        id: String,
        colours: BTreeMap<String, String>,
        temperature: Option<f64>,
        travel: Vec<(String, u32)>,
    }

    fn person() -> Person {
        Person {
            id: "7f1e0c3a-0000-4000-8000-000000000001".into(),
            colours: [("110000".to_string(), "yellow".to_string())].into(),
            temperature: Some(36.6),
            travel: vec![("2020-06-12".into(), 110106)],
        }
    }

    #[test]
    fn a_binary_table_reads_back_what_it_wrote_in_fewer_bytes_than_json(
    ) -> Result<(), ProjectionError> {
        // given the same value in a JSON and a binary table
        let json: Table<String, Person> = Table::new("persons");
        let binary: Table<String, Person> = Table::new("persons").binary();

        // when each encodes it
        let as_json = json.encode_value(&person())?;
        let as_binary = binary.encode_value(&person())?;

        // then each decodes it unchanged, and the binary form is smaller
        assert_eq!(json.decode_value(&as_json)?, person());
        assert_eq!(binary.decode_value(&as_binary)?, person());
        assert!(as_binary.len() < as_json.len());
        Ok(())
    }

    #[test]
    fn a_binary_row_that_does_not_decode_names_its_table() {
        // given bytes that are not a postcard person
        let binary: Table<String, Person> = Table::new("persons").binary();

        // when decoded
        let error = binary.decode_value(&[0xff, 0xff]);

        // then the error names the table
        assert!(
            matches!(&error, Err(ProjectionError::Decode { what, .. }) if what.contains("persons")),
            "{error:?}"
        );
    }
}
