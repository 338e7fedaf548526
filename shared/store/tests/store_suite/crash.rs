//! Kill -9 while appending: every acknowledged append survives, no partial
//! append is visible, and the hash chain verifies.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::Rng;
use tongban_store::{
    Direction, EmbeddedStore, EventFilter, EventStore, PositionRange, ReadFrom, StreamName,
};

struct Ack {
    stream: String,
    first_revision: u64,
    ids: Vec<String>,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.split(' ');
    (parts.next()? == "ack").then_some(())?;
    Some(Ack {
        stream: parts.next()?.to_string(),
        first_revision: parts.next()?.parse().ok()?,
        ids: parts.next()?.split(',').map(str::to_string).collect(),
    })
}

/// Runs the writer until killed at a random moment; returns what it acknowledged.
fn run_and_kill(data: &std::path::Path, label: &str, kill_after: Duration) -> Vec<Ack> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_store-crash-writer"))
        .args(["--data", &data.display().to_string(), "--label", label])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the crash writer starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait until the store is open before the clock starts.
    let ready = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the writer is ready");
    assert_eq!(ready, "ready");
    let start = Instant::now();
    while start.elapsed() < kill_after {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL the writer");
    child.wait().expect("reap the writer");
    reader.join().expect("the reader thread ends");
    rx.try_iter().filter_map(|l| parse_ack(&l)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_append_survives_sigkill_and_the_chain_verifies() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut acked: Vec<Ack> = Vec::new();
    let mut rng = rand::thread_rng();
    for round in 0..6 {
        let kill_after = Duration::from_millis(rng.gen_range(50..700));
        let acks = run_and_kill(dir.path(), &format!("r{round}"), kill_after);
        assert!(
            !acks.is_empty(),
            "round {round}: nothing was acknowledged in {kill_after:?}"
        );
        acked.extend(acks);

        let store = EmbeddedStore::open(dir.path()).expect("the store reopens after SIGKILL");
        // Every acknowledged event is where its append put it.
        let mut by_stream: HashMap<&str, Vec<&Ack>> = HashMap::new();
        for ack in &acked {
            by_stream.entry(ack.stream.as_str()).or_default().push(ack);
        }
        for (stream, acks) in &by_stream {
            let name = StreamName::parse(*stream).expect("valid stream");
            let events = store
                .read_stream(&name, Direction::Forwards, ReadFrom::Start, usize::MAX)
                .await
                .expect("an acknowledged stream exists");
            let ids: HashMap<u64, String> = events
                .iter()
                .map(|e| (e.revision, e.id.to_string()))
                .collect();
            for ack in acks {
                for (i, id) in ack.ids.iter().enumerate() {
                    let revision = ack.first_revision + i as u64;
                    assert_eq!(
                        ids.get(&revision),
                        Some(id),
                        "{stream}@{revision} lost after SIGKILL"
                    );
                }
            }
        }
        // No partial append: every append's parts are all there.
        let all = store
            .read_all(
                Direction::Forwards,
                ReadFrom::Start,
                usize::MAX,
                &EventFilter::all(),
            )
            .await
            .expect("read $all");
        let mut parts: HashMap<(String, u64), u64> = HashMap::new();
        for event in &all {
            let data: serde_json::Value = event.json().expect("JSON data");
            let append = data["append"].as_u64().expect("append number");
            *parts.entry((event.stream.to_string(), append)).or_default() += 1;
        }
        for ((stream, append), count) in parts {
            assert_eq!(
                count, 3,
                "append {append} of {stream} is partial after SIGKILL"
            );
        }
        let report = store
            .verify_chain(PositionRange::all())
            .await
            .expect("the chain verifies after SIGKILL");
        assert_eq!(report.events_checked, all.len() as u64);
        store.close().await;
    }
}
