//! Measures how long the real division data takes to load and how much memory it holds.
//!
//! `cargo run --release -p tongban-kernel --example division_load`

use std::time::Instant;
use tongban_kernel::{DivisionLevel, Divisions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let divisions = Divisions::load_default()?;
    let elapsed = start.elapsed();
    println!("division_load_ms={:.1}", elapsed.as_secs_f64() * 1000.0);
    println!(
        "division_heap_mb={:.1}",
        divisions.heap_bytes() as f64 / 1_048_576.0
    );
    for level in DivisionLevel::ALL {
        println!("division_count_{}={}", level.name(), divisions.count(level));
    }
    Ok(())
}
