//! Property test: random sequences of operations give the same answers and
//! the same log as a simple in-memory model of EventStoreDB's semantics.

use std::collections::HashMap;

use proptest::prelude::*;
use tongban_store::{
    CurrentRevision, Direction, EmbeddedStore, EventData, EventFilter, EventStore,
    ExpectedRevision, ReadFrom, StoreError, StreamMetadata, StreamName,
};

#[derive(Clone, Debug)]
enum Op {
    Append {
        stream: usize,
        expected: Expected,
        count: usize,
    },
    Delete {
        stream: usize,
        expected: Expected,
    },
    Tombstone {
        stream: usize,
        expected: Expected,
    },
    MaxCount {
        stream: usize,
        max: u64,
    },
}

#[derive(Clone, Copy, Debug)]
enum Expected {
    Any,
    NoStream,
    StreamExists,
    /// An exact revision near the stream's current one.
    Exact(i64),
}

fn expected() -> impl Strategy<Value = Expected> {
    prop_oneof![
        Just(Expected::Any),
        Just(Expected::NoStream),
        Just(Expected::StreamExists),
        (-2i64..2).prop_map(Expected::Exact),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, expected(), 1..4usize).prop_map(|(stream, expected, count)| Op::Append { stream, expected, count }),
        1 => (0..3usize, expected()).prop_map(|(stream, expected)| Op::Delete { stream, expected }),
        1 => (0..3usize, expected()).prop_map(|(stream, expected)| Op::Tombstone { stream, expected }),
        1 => (0..3usize, 1..4u64).prop_map(|(stream, max)| Op::MaxCount { stream, max }),
    ]
}

#[derive(Default, Clone)]
struct ModelStream {
    last: Option<u64>,
    truncate_before: u64,
    max_count: Option<u64>,
    tombstoned: bool,
    /// (revision, event type) of every event written.
    events: Vec<(u64, String)>,
}

impl ModelStream {
    fn current(&self) -> CurrentRevision {
        match self.last {
            Some(l) if l >= self.truncate_before => CurrentRevision::Current(l),
            _ => CurrentRevision::NoStream,
        }
    }
    fn resolve(&self, e: Expected) -> ExpectedRevision {
        match e {
            Expected::Any => ExpectedRevision::Any,
            Expected::NoStream => ExpectedRevision::NoStream,
            Expected::StreamExists => ExpectedRevision::StreamExists,
            Expected::Exact(d) => {
                let base = self.last.map_or(0, |l| l as i64);
                ExpectedRevision::Exact((base + d).max(0) as u64)
            }
        }
    }
    fn accepts(&self, e: ExpectedRevision) -> bool {
        match (e, self.current()) {
            (ExpectedRevision::Any, _) => true,
            (ExpectedRevision::NoStream, CurrentRevision::NoStream) => true,
            (ExpectedRevision::StreamExists, CurrentRevision::Current(_)) => true,
            (ExpectedRevision::Exact(n), CurrentRevision::Current(m)) => n == m,
            _ => false,
        }
    }
    fn visible(&self) -> Result<Vec<u64>, &'static str> {
        if self.tombstoned {
            return Err("deleted");
        }
        let Some(last) = self.last else {
            return Err("not found");
        };
        let mut first = self.truncate_before;
        if let Some(max) = self.max_count {
            first = first.max((last + 1).saturating_sub(max));
        }
        if first > last {
            return Err("not found");
        }
        Ok((first..=last).collect())
    }
    fn write(&mut self, kind: &str, all: &mut Vec<(String, u64)>, name: &str) {
        let revision = self.last.map_or(0, |l| l + 1);
        self.last = Some(revision);
        self.events.push((revision, kind.to_string()));
        all.push((name.to_string(), revision));
    }
}

fn kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::WrongExpectedVersion { .. } => "conflict",
        StoreError::StreamDeleted { .. } => "deleted",
        StoreError::StreamNotFound { .. } => "not found",
        _ => "other",
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let store = EmbeddedStore::open(dir.path()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let names: Vec<StreamName> = (0..3)
        .map(|i| StreamName::parse(format!("s-{i}")).expect("valid"))
        .collect();
    let mut model: Vec<ModelStream> = vec![ModelStream::default(); 3];
    let mut meta: HashMap<usize, ModelStream> = HashMap::new();
    let mut all: Vec<(String, u64)> = Vec::new();
    for op in ops {
        match op {
            Op::Append {
                stream,
                expected,
                count,
            } => {
                let m = &mut model[stream];
                let e = m.resolve(expected);
                let events = (0..count).map(|_| EventData::raw("E", "{}")).collect();
                let got = store.append(&names[stream], e, events).await;
                let want: Result<(), &str> = if m.tombstoned {
                    Err("deleted")
                } else if !m.accepts(e) {
                    Err("conflict")
                } else {
                    for _ in 0..count {
                        m.write("E", &mut all, names[stream].as_str());
                    }
                    Ok(())
                };
                prop_assert_eq!(
                    got.as_ref().map(|_| ()).map_err(kind),
                    want,
                    "append {:?}",
                    e
                );
                if let Ok(r) = got {
                    prop_assert_eq!(Some(r.next_expected_revision), m.last);
                }
            }
            Op::Delete { stream, expected } => {
                let m = &mut model[stream];
                let e = m.resolve(expected);
                let got = store.delete_stream(&names[stream], e).await;
                let want: Result<(), &str> = if m.tombstoned {
                    Err("deleted")
                } else if !m.accepts(e) {
                    Err("conflict")
                } else if m.current() == CurrentRevision::NoStream {
                    Err("not found")
                } else {
                    m.truncate_before = m.last.map_or(0, |l| l + 1);
                    let mm = meta.entry(stream).or_default();
                    mm.write("$metadata", &mut all, &format!("$$s-{stream}"));
                    Ok(())
                };
                prop_assert_eq!(
                    got.map(|_| ()).map_err(|e| kind(&e)),
                    want,
                    "delete {:?}",
                    e
                );
            }
            Op::Tombstone { stream, expected } => {
                let m = &mut model[stream];
                let e = m.resolve(expected);
                let got = store.tombstone_stream(&names[stream], e).await;
                let want: Result<(), &str> = if m.tombstoned {
                    Err("deleted")
                } else if !m.accepts(e) {
                    Err("conflict")
                } else {
                    m.write("$streamDeleted", &mut all, names[stream].as_str());
                    m.tombstoned = true;
                    Ok(())
                };
                prop_assert_eq!(
                    got.map(|_| ()).map_err(|e| kind(&e)),
                    want,
                    "tombstone {:?}",
                    e
                );
            }
            Op::MaxCount { stream, max } => {
                let m = &mut model[stream];
                let metadata = StreamMetadata::default().with_max_count(max);
                let got = store
                    .set_stream_metadata(&names[stream], ExpectedRevision::Any, metadata)
                    .await;
                let want: Result<(), &str> = if m.tombstoned {
                    Err("deleted")
                } else {
                    m.max_count = Some(max);
                    let mm = meta.entry(stream).or_default();
                    mm.write("$metadata", &mut all, &format!("$$s-{stream}"));
                    Ok(())
                };
                prop_assert_eq!(got.map(|_| ()).map_err(|e| kind(&e)), want, "max count");
            }
        }
    }
    for (i, name) in names.iter().enumerate() {
        let got = store
            .read_stream(name, Direction::Forwards, ReadFrom::Start, usize::MAX)
            .await
            .map(|events| events.iter().map(|e| e.revision).collect::<Vec<_>>())
            .map_err(|e| kind(&e));
        prop_assert_eq!(got, model[i].visible(), "stream {}", name);
    }
    let log = store
        .read_all(
            Direction::Forwards,
            ReadFrom::Start,
            usize::MAX,
            &EventFilter::all(),
        )
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let got: Vec<(String, u64)> = log
        .iter()
        .map(|e| (e.stream.to_string(), e.revision))
        .collect();
    prop_assert_eq!(got, all);
    store.close().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_the_model(ops in proptest::collection::vec(op(), 1..30)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        runtime.block_on(run(ops))?;
    }
}
