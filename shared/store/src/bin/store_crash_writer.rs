//! `store-crash-writer`: appends to an embedded store until it is killed,
//! printing one line per acknowledged append. The crash test kills it with
//! SIGKILL and checks that every printed append survived.
//!
//! Output: `ack <stream> <first revision> <event id>,<event id>,...`

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Parser;
use tokio::sync::Mutex;
use tongban_store::{EmbeddedStore, EventData, EventStore, ExpectedRevision, StreamName};

#[derive(Parser)]
#[command(about = "Appends to a store in a loop, printing each acknowledged append")]
struct Args {
    /// The store's data directory.
    #[arg(long)]
    data: PathBuf,
    /// Concurrent writers (each with its own stream).
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// Events per append.
    #[arg(long, default_value_t = 3)]
    batch: usize,
    /// A label that keeps this run's streams apart from earlier runs'.
    #[arg(long, default_value = "run")]
    label: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let store = Arc::new(EmbeddedStore::open(&args.data)?);
    let out = Arc::new(Mutex::new(std::io::stdout()));
    {
        let mut out = out.lock().await;
        writeln!(out, "ready")?;
        out.flush()?;
    }
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let (store, out) = (store.clone(), out.clone());
        let stream = StreamName::parse(format!("crash-{}-{w}", args.label))?;
        let batch = args.batch;
        tasks.push(tokio::spawn(async move {
            for n in 0u64.. {
                let events = (0..batch)
                    .map(|i| {
                        EventData::json(
                            "CrashTested",
                            &serde_json::json!({"append": n, "part": i, "of": batch}),
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
                let result = store.append(&stream, ExpectedRevision::Any, events).await?;
                let first = result.next_expected_revision + 1 - batch as u64;
                let mut out = out.lock().await;
                writeln!(out, "ack {stream} {first} {}", ids.join(","))?;
                out.flush()?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}
