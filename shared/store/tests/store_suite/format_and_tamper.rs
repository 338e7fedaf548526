//! The on-disk format: foreign files and other versions are refused
//! untouched, and a byte changed behind the store's back is found by
//! `verify_chain`.

use redb::{Database, ReadableTable};
use tongban_store::embedded::layout::{self, EVENTS, META};
use tongban_store::{
    EmbeddedStore, EventData, EventStore, ExpectedRevision, Position, PositionRange, StoreError,
    StreamName,
};

async fn store_with_events(dir: &std::path::Path, count: u64) {
    let store = EmbeddedStore::open(dir).expect("open");
    let stream = StreamName::parse("person-1").expect("name");
    for n in 0..count {
        let event = EventData::json(
            "TemperatureMeasured",
            &serde_json::json!({"celsius": 36.5, "n": n}),
        )
        .expect("event");
        store
            .append(&stream, ExpectedRevision::Any, vec![event])
            .await
            .expect("append");
    }
    store.close().await;
}

#[tokio::test]
async fn a_changed_byte_in_a_stored_event_is_found_at_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    store_with_events(dir.path(), 10).await;
    {
        // Change 36.5 into 39.5 in event 6, keeping its stored hash.
        let db = Database::open(dir.path().join(layout::FILE_NAME)).expect("redb opens");
        let txn = db.begin_write().expect("write");
        {
            let mut events = txn.open_table(EVENTS).expect("events table");
            let mut bytes = events
                .get(6)
                .expect("get")
                .expect("event 6")
                .value()
                .to_vec();
            let at = bytes
                .windows(4)
                .position(|w| w == b"36.5")
                .expect("the temperature is stored");
            bytes[at] = b'3';
            bytes[at + 1] = b'9';
            events.insert(6, bytes.as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    match store.verify_chain(PositionRange::all()).await {
        Err(StoreError::Corruption { position, .. }) => assert_eq!(position, Position(6)),
        other => panic!("expected corruption at 6, got {other:?}"),
    }
    // The part before the change still verifies.
    let report = store
        .verify_chain(PositionRange::between(Position(0), Position(5)))
        .await
        .expect("the untouched prefix verifies");
    assert_eq!(report.events_checked, 6);
}

#[tokio::test]
async fn a_removed_event_is_found_as_a_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    store_with_events(dir.path(), 5).await;
    {
        let db = Database::open(dir.path().join(layout::FILE_NAME)).expect("redb opens");
        let txn = db.begin_write().expect("write");
        txn.open_table(EVENTS)
            .expect("events")
            .remove(2)
            .expect("remove");
        txn.commit().expect("commit");
    }
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    let err = store
        .verify_chain(PositionRange::all())
        .await
        .expect_err("a gap");
    assert!(
        matches!(
            err,
            StoreError::Corruption {
                position: Position(2),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_file_that_is_not_a_store_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(layout::FILE_NAME);
    std::fs::write(&path, b"these are somebody's notes").expect("write");
    let err = EmbeddedStore::open(dir.path()).expect_err("refused");
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    assert!(std::fs::read(&path).expect("read") == b"these are somebody's notes");
}

#[test]
fn a_redb_file_of_another_program_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(layout::FILE_NAME);
    {
        let db = Database::create(&path).expect("create");
        let txn = db.begin_write().expect("write");
        let table: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("inventory");
        txn.open_table(table)
            .expect("table")
            .insert("apples", 3)
            .expect("insert");
        txn.commit().expect("commit");
    }
    let before = std::fs::read(&path).expect("read");
    let err = EmbeddedStore::open(dir.path()).expect_err("refused");
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    assert!(
        std::fs::read(&path).expect("read") == before,
        "the file was changed"
    );
}

#[tokio::test]
async fn a_store_of_another_format_version_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    store_with_events(dir.path(), 2).await;
    let path = dir.path().join(layout::FILE_NAME);
    {
        let db = Database::open(&path).expect("redb opens");
        let txn = db.begin_write().expect("write");
        txn.open_table(META)
            .expect("meta")
            .insert(layout::VERSION_KEY, 99u32.to_be_bytes().as_slice())
            .expect("insert");
        txn.commit().expect("commit");
    }
    let before = std::fs::read(&path).expect("read");
    let err = EmbeddedStore::open(dir.path()).expect_err("refused");
    match err {
        StoreError::UnsupportedFormat {
            found, supported, ..
        } => {
            assert_eq!((found, supported), (99, layout::FORMAT_VERSION));
        }
        other => panic!("expected unsupported format, got {other:?}"),
    }
    assert!(
        std::fs::read(&path).expect("read") == before,
        "the file was changed"
    );
}

#[tokio::test]
async fn a_store_already_open_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let err = EmbeddedStore::open(dir.path()).expect_err("second open refused");
    assert!(err.to_string().contains("already open"), "{err}");
    store.close().await;
}

#[tokio::test]
async fn a_reopened_store_continues_the_log_and_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    store_with_events(dir.path(), 3).await;
    store_with_events(dir.path(), 3).await;
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    let head = store.head().await.expect("head").expect("a head");
    assert_eq!(head.position, Position(5));
    let report = store
        .verify_chain(PositionRange::all())
        .await
        .expect("verifies");
    assert_eq!(report.events_checked, 6);
    assert_eq!(report.last_hash, Some(head.hash));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_releases_the_store_for_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let clone = store.clone();
    let stream = StreamName::parse("person-9").expect("name");
    let event = EventData::json("Registered", &serde_json::json!({})).expect("event");
    clone
        .append(&stream, ExpectedRevision::NoStream, vec![event])
        .await
        .expect("append");
    // Closing one handle while a clone lives must not hang.
    store.close().await;
    drop(clone);
    let reopened = EmbeddedStore::open(dir.path()).expect("reopens right after the drop");
    assert_eq!(
        reopened.head().await.expect("head").map(|h| h.position),
        Some(Position(0))
    );
}

#[tokio::test]
async fn an_append_larger_than_one_chunk_reads_back_whole_after_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = StreamName::parse("archive-1").expect("name");
    // Four events of ~100 KB each: more than one chunk of the events table.
    let events: Vec<EventData> = (0..4)
        .map(|n| {
            EventData::json(
                "ScanArchived",
                &serde_json::json!({"n": n, "pages": "x".repeat(100_000)}),
            )
            .expect("event")
        })
        .collect();
    let ids: Vec<_> = events.iter().map(|e| e.id).collect();
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let small = StreamName::parse("person-2").expect("name");
    let registered = EventData::json("Registered", &serde_json::json!({})).expect("event");
    store
        .append(&small, ExpectedRevision::Any, vec![registered])
        .await
        .expect("append");
    store
        .append(&stream, ExpectedRevision::NoStream, events.clone())
        .await
        .expect("append");
    // A retry of the same append is answered without writing it again.
    let retried = store
        .append(&stream, ExpectedRevision::NoStream, events)
        .await
        .expect("retry");
    assert_eq!(retried.first_position, Position(1));
    store.close().await;

    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    let forwards = store
        .read_stream(
            &stream,
            tongban_store::Direction::Forwards,
            tongban_store::ReadFrom::At(1),
            usize::MAX,
        )
        .await
        .expect("read forwards");
    assert_eq!(
        forwards.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[1..].to_vec()
    );
    let backwards = store
        .read_stream(
            &stream,
            tongban_store::Direction::Backwards,
            tongban_store::ReadFrom::At(2),
            2,
        )
        .await
        .expect("read backwards");
    assert_eq!(
        backwards.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1]]
    );
    let all = store
        .read_all(
            tongban_store::Direction::Backwards,
            tongban_store::ReadFrom::End,
            usize::MAX,
            &tongban_store::EventFilter::all(),
        )
        .await
        .expect("read $all");
    assert_eq!(
        all.iter().map(|e| e.position.0).collect::<Vec<_>>(),
        vec![4, 3, 2, 1, 0]
    );
    let report = store
        .verify_chain(PositionRange::all())
        .await
        .expect("verifies");
    assert_eq!(report.events_checked, 5);
    store.close().await;
}

#[tokio::test]
async fn a_write_ahead_log_of_format_version_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    store_with_events(dir.path(), 1).await;
    let wal = dir.path().join("events.wal");
    std::fs::write(&wal, b"TBW1\x00\x00\x00\x00\x00\x00\x00\x00").expect("write");
    match EmbeddedStore::open(dir.path()) {
        Err(StoreError::UnsupportedFormat {
            found, supported, ..
        }) => assert_eq!((found, supported), (1, layout::FORMAT_VERSION)),
        other => panic!("expected unsupported format, got {other:?}"),
    }
}
