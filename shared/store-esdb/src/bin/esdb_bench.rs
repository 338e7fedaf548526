//! `esdb-bench`: the figures of `store-bench`, measured on the embedded
//! store directly and through the esdb backend against the
//! EventStoreDB-compatible endpoint serving an embedded store in the same
//! process, with `ratio_<name>=esdb/embedded` lines.
//!
//! `cargo run --release -p tongban-store-esdb --bin esdb-bench [-- --quick]`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use futures::StreamExt;
use tongban_esdb_endpoint::{Endpoint, EndpointConfig};
use tongban_store::{
    Direction, EmbeddedStore, EventData, EventFilter, EventStore, ExpectedRevision, PositionRange,
    ReadFrom, StreamName, SubscribeFrom, SubscriptionMessage,
};
use tongban_store_esdb::{EsdbConfig, EsdbStore};

#[derive(Parser)]
#[command(about = "Embedded store vs the esdb backend through the endpoint")]
struct Args {
    /// Smaller runs that finish in well under a minute.
    #[arg(long)]
    quick: bool,
}

/// A ~300-byte health-code-like event (the same as `store-bench`).
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

async fn append_run(
    store: &Arc<dyn EventStore>,
    prefix: &str,
    writers: usize,
    per_writer: usize,
    batch: usize,
) -> Result<(f64, Vec<Duration>)> {
    let mut work = Vec::with_capacity(writers);
    for w in 0..writers {
        let payloads: Vec<Vec<EventData>> = (0..per_writer)
            .map(|i| (0..batch).map(|j| event(w, i * batch + j)).collect())
            .collect::<Result<_>>()?;
        work.push((StreamName::parse(format!("{prefix}-{w}"))?, payloads));
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

/// Runs every figure against `store`; names and values in print order.
async fn figures(store: Arc<dyn EventStore>, scale: usize) -> Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    let (rate, _) = append_run(&store, "single", 1, 200 * scale, 1).await?;
    out.push(("append_1writer_events_per_s".into(), rate));
    let (rate, mut lat) = append_run(&store, "many", 64, 20 * scale, 1).await?;
    out.push(("append_64writers_events_per_s".into(), rate));
    out.push(("append_64writers_p50_ms".into(), percentile(&mut lat, 0.50)));
    out.push(("append_64writers_p99_ms".into(), percentile(&mut lat, 0.99)));
    let (rate, _) = append_run(&store, "batch1w", 1, 20 * scale, 100).await?;
    out.push(("append_batch100_1writer_events_per_s".into(), rate));
    let (rate, _) = append_run(&store, "batch", 8, 5 * scale, 100).await?;
    out.push(("append_batch100_events_per_s".into(), rate));

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
    out.push((
        "read_all_events_per_s".into(),
        read as f64 / start.elapsed().as_secs_f64(),
    ));
    out.push(("log_events".into(), read as f64));

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
    out.push((
        "catchup_events_per_s".into(),
        delivered as f64 / start.elapsed().as_secs_f64(),
    ));
    drop(subscription);

    let start = Instant::now();
    let report = store.verify_chain(PositionRange::all()).await?;
    out.push((
        "verify_chain_events_per_s".into(),
        report.events_checked as f64 / start.elapsed().as_secs_f64(),
    ));
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let scale = if args.quick { 1 } else { 5 };
    println!("mode={}", if args.quick { "quick" } else { "full" });
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;

    let embedded: Arc<dyn EventStore> =
        Arc::new(EmbeddedStore::open(scratch.path().join("embedded"))?);
    let base = figures(embedded, scale).await?;

    let served: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(scratch.path().join("served"))?);
    let endpoint = Endpoint::bind(
        served,
        EndpointConfig::listening_on(SocketAddr::from(([127, 0, 0, 1], 0))),
    )
    .await?
    .spawn();
    let esdb: Arc<dyn EventStore> = Arc::new(EsdbStore::connect(EsdbConfig::new(
        endpoint.connection_string(),
    ))?);
    let through = figures(esdb, scale).await?;

    let esdb_values: BTreeMap<&str, f64> = through.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    for (name, value) in &base {
        println!("embedded_{name}={value:.2}");
    }
    for (name, value) in &through {
        println!("esdb_{name}={value:.2}");
    }
    for (name, value) in &base {
        if let Some(e) = esdb_values.get(name.as_str()) {
            if *value > 0.0 {
                println!("ratio_{name}={:.3}", e / value);
            }
        }
    }
    endpoint.stop().await?;
    Ok(())
}
