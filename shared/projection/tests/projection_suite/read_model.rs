//! The read-model store contract, run against both backends.

use std::sync::Arc;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tongban_projection::read_model::key::leading;
use tongban_projection::read_model::WriteBatch;
use tongban_projection::{
    Checkpoint, EmbeddedReadModels, KeyRange, MemoryReadModels, ProjectionError, ReadModelStore,
    ReadModels, Table,
};
use tongban_store::Position;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Code {
    colour: String,
    region: String,
}

fn codes() -> Table<(String, u64), Code> {
    Table::new("codes").with_index("by_region", |c: &Code| vec![c.region.clone()])
}

fn code(colour: &str, region: &str) -> Code {
    Code {
        colour: colour.into(),
        region: region.into(),
    }
}

async fn write(
    store: &Arc<dyn ReadModelStore>,
    expected: Option<u64>,
    to: u64,
    rows: &[((&str, u64), Option<Code>)],
) -> Result<(), ProjectionError> {
    // Commit through the trait, as the runner does.
    let mut batch = WriteBatch::new();
    for ((k, n), value) in rows {
        let key = tongban_projection::Key::encode_key(&(k.to_string(), *n));
        match value {
            Some(v) => batch.put(
                "codes",
                key,
                serde_json::to_vec(v).map_err(|e| ProjectionError::Encode {
                    what: "test".into(),
                    reason: e.to_string(),
                })?,
                vec![tongban_projection::read_model::IndexEntry {
                    index: "by_region".into(),
                    key: tongban_projection::Key::encode_key(&v.region),
                }],
            ),
            None => batch.delete("codes", key),
        }
    }
    let next = Checkpoint {
        version: 1,
        position: Some(Position(to)),
        events_applied: to,
    };
    store
        .commit("codes", expected.map(Position), next, Arc::new(batch))
        .await
}

async fn contract(store: Arc<dyn ReadModelStore>) -> Result<()> {
    let models = ReadModels::new(store.clone(), "codes");
    let table = codes();

    // given an empty namespace
    assert_eq!(models.checkpoint().await?, None);

    // when rows are written with a checkpoint
    write(
        &store,
        None,
        3,
        &[
            (("a", 1), Some(code("green", "110106"))),
            (("a", 2), Some(code("red", "110105"))),
            (("b", 1), Some(code("green", "310101"))),
            (("ab", 0), Some(code("yellow", "110106"))),
        ],
    )
    .await?;

    // then lookups, prefix scans, ranges and indexes see them
    assert_eq!(
        models.get(&table, &("a".to_string(), 2)).await?,
        Some(code("red", "110105"))
    );
    let a: Vec<u64> = models
        .scan_all(&table, &KeyRange::prefix(leading(&"a".to_string())))
        .await?
        .into_iter()
        .map(|((_, n), _)| n)
        .collect();
    assert_eq!(a, vec![1, 2], "the prefix 'a' must not match 'ab'");
    let page = models.scan(&table, &KeyRange::all(), 2).await?;
    assert_eq!(page.len(), 2);
    let beijing = models
        .by_index(&table, "by_region", &KeyRange::prefix(b"11".to_vec()))
        .await?;
    assert_eq!(beijing.len(), 3);
    let haidian = models
        .by_index_key(&table, "by_region", &"110106".to_string())
        .await?;
    assert_eq!(haidian.len(), 2);
    assert_eq!(
        models.checkpoint().await?.and_then(|c| c.position),
        Some(Position(3))
    );

    // when a row moves region and another is deleted
    write(
        &store,
        Some(3),
        5,
        &[(("a", 1), Some(code("red", "310101"))), (("ab", 0), None)],
    )
    .await?;
    // then the index follows and keeps no stale entry
    let haidian = models
        .by_index_key(&table, "by_region", &"110106".to_string())
        .await?;
    assert!(haidian.is_empty(), "stale index entries: {haidian:?}");
    let shanghai = models
        .by_index_key(&table, "by_region", &"310101".to_string())
        .await?;
    assert_eq!(shanghai.len(), 2);

    // when a writer's expected checkpoint is stale, nothing changes
    let stale = write(&store, Some(3), 9, &[(("z", 1), Some(code("red", "1")))]).await;
    assert!(matches!(
        stale,
        Err(ProjectionError::CheckpointConflict { .. })
    ));
    assert_eq!(models.get(&table, &("z".to_string(), 1)).await?, None);

    // when the namespace is reset, every row and index entry is gone
    store.reset("codes", 2).await?;
    assert_eq!(models.scan_all(&table, &KeyRange::all()).await?, vec![]);
    assert_eq!(models.checkpoint().await?, Some(Checkpoint::empty(2)));
    Ok(())
}

#[tokio::test]
async fn the_embedded_store_keeps_rows_indexes_and_checkpoints() -> Result<()> {
    let dir = tempfile::tempdir()?;
    contract(Arc::new(EmbeddedReadModels::open(dir.path())?)).await
}

#[tokio::test]
async fn the_memory_store_keeps_rows_indexes_and_checkpoints() -> Result<()> {
    contract(Arc::new(MemoryReadModels::new())).await
}

#[tokio::test]
async fn embedded_read_models_survive_reopening() -> Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let store: Arc<dyn ReadModelStore> = Arc::new(EmbeddedReadModels::open(dir.path())?);
        write(
            &store,
            None,
            7,
            &[(("a", 1), Some(code("green", "110106")))],
        )
        .await?;
    }
    let store: Arc<dyn ReadModelStore> = Arc::new(EmbeddedReadModels::open(dir.path())?);
    let models = ReadModels::new(store, "codes");
    assert_eq!(
        models.get(&codes(), &("a".to_string(), 1)).await?,
        Some(code("green", "110106"))
    );
    assert_eq!(
        models.checkpoint().await?.and_then(|c| c.position),
        Some(Position(7))
    );
    Ok(())
}

#[test]
fn a_namespace_must_be_a_safe_file_name() {
    let dir = tempfile::tempdir().map_err(|e| e.to_string());
    let Ok(dir) = dir else { return };
    let Ok(store) = EmbeddedReadModels::open(dir.path()) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread().build();
    let Ok(rt) = rt else { return };
    let result = rt.block_on(store.checkpoint("../escape"));
    assert!(matches!(result, Err(ProjectionError::InvalidInput { .. })));
}
