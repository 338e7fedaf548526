//! `store-bench`: throughput and latency of the embedded event store on this
//! machine, one `name=value` line per figure.
//!
//! `cargo run --release -p tongban-store --bin store-bench [-- --quick]`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use futures::StreamExt;
use tongban_store::{
    Direction, EmbeddedStore, EventData, EventFilter, EventStore, ExpectedRevision, ReadFrom,
    StreamName, SubscribeFrom, SubscriptionMessage,
};

#[derive(Parser)]
#[command(about = "Measures the embedded event store: appends, reads, catch-up, fsync rate")]
struct Args {
    /// Smaller runs that finish in well under a minute.
    #[arg(long)]
    quick: bool,
    /// Directory for the scratch stores (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// A ~300-byte health-code-like event.
fn event(writer: usize, n: usize) -> Result<EventData> {
    let data = serde_json::json!({
        "personId": format!("p-{writer:04}-{n:08}"),
        "sampledAt": "2026-11-29T08:15:00Z",
        "result": "negative",
        "lab": "北京市丰台区疾病预防控制中心实验室",
        "county": "110106",
        "method": "RT-PCR",
        "specimen": "oropharyngeal swab",
        "batch": format!("B-{:06}", n % 1000),
    });
    let metadata = serde_json::json!({"actor": "lab-110106-07", "region": "110106"});
    Ok(EventData::json("NucleicAcidTestRecorded", &data)?.with_metadata(&metadata)?)
}

fn line(name: &str, value: impl std::fmt::Display) {
    println!("{name}={value}");
    let _ = std::io::stdout().flush();
}

fn fsync_rate(dir: &Path, duration: Duration) -> Result<f64> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).context("creating the fsync probe")?;
    let block = [7u8; 4096];
    let start = Instant::now();
    let mut syncs = 0u64;
    while start.elapsed() < duration {
        file.write_all(&block)?;
        file.sync_data()?;
        syncs += 1;
    }
    let rate = syncs as f64 / start.elapsed().as_secs_f64();
    std::fs::remove_file(&path).ok();
    Ok(rate)
}

fn stream(prefix: &str, n: usize) -> Result<StreamName> {
    Ok(StreamName::parse(format!("{prefix}-{n}"))?)
}

/// `writers` tasks each append `per_writer` appends of `batch` events to
/// their own stream. Returns events/s and the per-append latencies.
async fn append_run(
    store: &Arc<EmbeddedStore>,
    prefix: &str,
    writers: usize,
    per_writer: usize,
    batch: usize,
) -> Result<(f64, Vec<Duration>)> {
    // Build every payload first: the run measures the store, not JSON encoding.
    let mut work = Vec::with_capacity(writers);
    for w in 0..writers {
        let payloads: Vec<Vec<EventData>> = (0..per_writer)
            .map(|i| (0..batch).map(|j| event(w, i * batch + j)).collect())
            .collect::<Result<_>>()?;
        work.push((stream(prefix, w)?, payloads));
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (s, payloads) in work {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(payloads.len());
            for events in payloads {
                let t = Instant::now();
                store.append(&s, ExpectedRevision::Any, events).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let events = writers * per_writer * batch;
    Ok((events as f64 / start.elapsed().as_secs_f64(), latencies))
}

fn percentile(latencies: &mut [Duration], p: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    latencies.sort();
    let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
    latencies[index].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let base = args
        .dir
        .clone()
        .unwrap_or_else(|| scratch.path().to_path_buf());
    std::fs::create_dir_all(&base)?;
    let scale = if args.quick { 1 } else { 5 };
    line("mode", if args.quick { "quick" } else { "full" });

    line(
        "fsync_per_s",
        format!("{:.0}", fsync_rate(&base, Duration::from_millis(1000))?),
    );

    let store = Arc::new(EmbeddedStore::open(base.join("bench-store"))?);

    let (rate, _) = append_run(&store, "single", 1, 1000 * scale, 1).await?;
    line("append_1writer_events_per_s", format!("{rate:.0}"));

    let (rate, mut latencies) = append_run(&store, "many", 64, 400 * scale, 1).await?;
    line("append_64writers_events_per_s", format!("{rate:.0}"));
    line(
        "append_64writers_p50_ms",
        format!("{:.2}", percentile(&mut latencies, 0.50)),
    );
    line(
        "append_64writers_p99_ms",
        format!("{:.2}", percentile(&mut latencies, 0.99)),
    );

    let (rate, _) = append_run(&store, "batch1w", 1, 200 * scale, 100).await?;
    line("append_batch100_1writer_events_per_s", format!("{rate:.0}"));
    let writers = 8;
    let (rate, _) = append_run(&store, "batch", writers, 50 * scale, 100).await?;
    line("append_batch100_writers", writers);
    line("append_batch100_events_per_s", format!("{rate:.0}"));

    let total = store.head().await?.map_or(0, |h| h.position.0 + 1);
    line("log_events", total);

    let start = Instant::now();
    let mut from = ReadFrom::Start;
    let mut read = 0u64;
    loop {
        let page = store
            .read_all(Direction::Forwards, from, 4096, &EventFilter::all())
            .await?;
        let Some(last) = page.last() else { break };
        from = ReadFrom::At(last.position.next());
        read += page.len() as u64;
    }
    line(
        "read_all_events_per_s",
        format!("{:.0}", read as f64 / start.elapsed().as_secs_f64()),
    );

    let start = Instant::now();
    let mut subscription = store.subscribe_to_all(SubscribeFrom::Start, EventFilter::all());
    let mut delivered = 0u64;
    while let Some(message) = subscription.next().await {
        match message? {
            SubscriptionMessage::Event(_) => delivered += 1,
            SubscriptionMessage::CaughtUp => break,
            SubscriptionMessage::Checkpoint(_) => {}
        }
    }
    line(
        "catchup_events_per_s",
        format!("{:.0}", delivered as f64 / start.elapsed().as_secs_f64()),
    );
    anyhow::ensure!(
        delivered == total && read == total,
        "read {read}, caught up {delivered}, log {total}"
    );

    let start = Instant::now();
    let report = store
        .verify_chain(tongban_store::PositionRange::all())
        .await?;
    line(
        "verify_chain_events_per_s",
        format!(
            "{:.0}",
            report.events_checked as f64 / start.elapsed().as_secs_f64()
        ),
    );
    drop(subscription);
    if let Ok(store) = Arc::try_unwrap(store) {
        store.close().await;
    }
    Ok(())
}
