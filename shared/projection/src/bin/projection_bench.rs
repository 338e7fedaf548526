//! `projection-bench`: how fast projections catch up and how far they lag
//! under load, one `name=value` line per figure.
//!
//! `cargo run --release -p tongban-projection --bin projection-bench [-- --quick]`
//!
//! Figures: catch-up speed of the example projection over generated events
//! (alone, and three copies side by side), peak memory (VmHWM), and lag
//! (events and milliseconds behind the head) under a sustained write load.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use tongban_projection::example::CategoryCounts;
use tongban_projection::{EmbeddedReadModels, ProjectionRunner, RunnerConfig};
use tongban_store::{EmbeddedStore, EventData, EventStore, ExpectedRevision, StreamName};

#[derive(Parser)]
#[command(about = "Measures projections: catch-up speed, peak memory, lag under load")]
struct Args {
    /// Smaller runs that finish in well under a minute.
    #[arg(long)]
    quick: bool,
    /// Directory for the scratch stores (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Events to generate for the catch-up figures.
    #[arg(long)]
    events: Option<u64>,
    /// Sustained write rate for the lag figures (events per second).
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Events per projection batch (one read-model commit each).
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Seconds of sustained writes.
    #[arg(long)]
    seconds: Option<u64>,
}

fn line(name: &str, value: impl std::fmt::Display) {
    println!("{name}={value}");
    let _ = std::io::stdout().flush();
}

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A health-code-like event: colour changes in code streams, evidence in
/// person streams.
fn event(n: u64) -> Result<(String, EventData)> {
    if n.is_multiple_of(4) {
        let region = ["110106", "110105", "310101", "440305"][(n / 4 % 4) as usize];
        let colour = ["green", "yellow", "red"][(n % 3) as usize];
        Ok((
            format!("code-{}", n % 50_000),
            EventData::json(
                "ColourChanged",
                &serde_json::json!({"colour": colour, "region": region}),
            )?,
        ))
    } else {
        Ok((
            format!("person-{}", n % 100_000),
            EventData::json(
                "NucleicAcidTestRecorded",
                &serde_json::json!({"result": "negative", "county": "110106", "batch": n % 1000}),
            )?,
        ))
    }
}

async fn generate(store: &EmbeddedStore, count: u64) -> Result<()> {
    let writers = 8u64;
    let per_writer = count / writers;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = w * per_writer;
            let end = n + per_writer;
            while n < end {
                // 200 events of one stream kind per append
                let (stream, _) = event(n)?;
                let stream = StreamName::parse(format!("bench{w}-{stream}"))?;
                let mut batch = Vec::new();
                for k in n..(n + 200).min(end) {
                    batch.push(event(k)?.1);
                }
                n += batch.len() as u64;
                store.append(&stream, ExpectedRevision::Any, batch).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

fn config(batch: usize) -> RunnerConfig {
    RunnerConfig {
        batch_size: batch,
        ..RunnerConfig::default()
    }
}

async fn catch_up(
    events: Arc<dyn EventStore>,
    models_dir: PathBuf,
    copies: usize,
    batch: usize,
) -> Result<Duration> {
    let models = Arc::new(EmbeddedReadModels::open(&models_dir)?);
    let runner = ProjectionRunner::new(events, models, config(batch));
    let started = Instant::now();
    for c in 0..copies {
        runner.start(Arc::new(CategoryCounts::named(&format!("counts-{c}"), 1)))?;
    }
    runner.wait_for_head(Duration::from_secs(3600)).await?;
    let took = started.elapsed();
    runner.shutdown().await;
    Ok(took)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let scratch = tempfile::tempdir().context("failed to create a scratch directory")?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| scratch.path().to_path_buf());
    let count = args
        .events
        .unwrap_or(if args.quick { 100_000 } else { 1_000_000 });
    let seconds = args.seconds.unwrap_or(if args.quick { 5 } else { 20 });

    let store = EmbeddedStore::open(dir.join("events"))
        .with_context(|| format!("failed to open the event store in {}", dir.display()))?;
    let events: Arc<dyn EventStore> = Arc::new(store.clone());
    let started = Instant::now();
    generate(&store, count).await?;
    let generated = started.elapsed();
    let head = events.head().await?.map_or(0, |h| h.position.0 + 1);
    line("events", head);
    line("batch_size", args.batch);
    line(
        "generate_seconds",
        format!("{:.2}", generated.as_secs_f64()),
    );

    let one = catch_up(events.clone(), dir.join("models-1"), 1, args.batch).await?;
    line(
        "catchup_1_projection_seconds",
        format!("{:.2}", one.as_secs_f64()),
    );
    line(
        "catchup_1_projection_events_per_second",
        format!("{:.0}", head as f64 / one.as_secs_f64()),
    );
    let three = catch_up(events.clone(), dir.join("models-3"), 3, args.batch).await?;
    line(
        "catchup_3_projections_seconds",
        format!("{:.2}", three.as_secs_f64()),
    );
    line(
        "catchup_3_projections_events_per_second_each",
        format!("{:.0}", head as f64 / three.as_secs_f64()),
    );
    line("catchup_target_events_per_second", 200_000);

    // Lag under a sustained write load, with three projections live.
    let models = Arc::new(EmbeddedReadModels::open(dir.join("models-3"))?);
    let runner = Arc::new(ProjectionRunner::new(
        events.clone(),
        models,
        config(args.batch),
    ));
    for c in 0..3 {
        runner.start(Arc::new(CategoryCounts::named(&format!("counts-{c}"), 1)))?;
    }
    runner.wait_for_head(Duration::from_secs(3600)).await?;
    let writer_store = store.clone();
    let rate = args.rate.max(1);
    let writer = tokio::spawn(async move {
        // 50 appends of rate/500 events each per 100 ms tick... kept simple:
        // one append of `per_tick` events every 10 ms.
        let per_tick = (rate / 100).max(1);
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut n = 10_000_000u64;
        let mut written = 0u64;
        while Instant::now() < until {
            tick.tick().await;
            let (stream, _) = event(n)?;
            let mut batch = Vec::new();
            for k in n..n + per_tick {
                batch.push(event(k)?.1);
            }
            n += per_tick;
            writer_store
                .append(
                    &StreamName::parse(format!("load-{stream}"))?,
                    ExpectedRevision::Any,
                    batch,
                )
                .await?;
            written += per_tick;
        }
        anyhow::Ok(written)
    });
    let mut behind = Vec::new();
    let mut seconds_behind: f64 = 0.0;
    let load_started = Instant::now();
    while !writer.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for s in runner.statuses().await? {
            behind.push(s.events_behind);
            seconds_behind = seconds_behind.max(s.seconds_behind);
        }
    }
    let written = writer.await??;
    let load_seconds = load_started.elapsed().as_secs_f64();
    let drained = Instant::now();
    runner.wait_for_head(Duration::from_secs(600)).await?;
    behind.sort_unstable();
    let pct = |p: f64| {
        behind
            .get(((behind.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    line(
        "load_events_per_second",
        format!("{:.0}", written as f64 / load_seconds),
    );
    line("load_projections", 3);
    line("lag_events_p50", pct(0.5));
    line("lag_events_p99", pct(0.99));
    line("lag_events_max", behind.last().copied().unwrap_or(0));
    line("lag_seconds_max", format!("{seconds_behind:.3}"));
    line(
        "drain_after_load_ms",
        format!("{:.1}", drained.elapsed().as_secs_f64() * 1000.0),
    );
    line("peak_rss_kib", vm_hwm_kib().unwrap_or(0));
    if let Ok(runner) = Arc::try_unwrap(runner) {
        runner.shutdown().await;
    }
    // `close` waits for every clone of the store to be dropped.
    drop(events);
    store.close().await;
    Ok(())
}
