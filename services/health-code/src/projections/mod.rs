//! The health-code domain's read models, built by `tongban-projection`
//! from the log and read by the GraphQL queries:
//!
//! - [`views::HealthCodeViews`], one projection (`health_code`) with these
//!   tables: `persons` (current colour per region, current code and 14-day
//!   travel history per person), `colour_counts` (per county of residence),
//!   `colour_totals` and `colour_history` (per province, city and county:
//!   the counts now and an hourly step series, see [`hourly`]),
//!   `risk_areas` (the risk-area map in force), `checkpoints`, `scans` (the
//!   scan log per checkpoint), `appeals` (the appeals queue), `access` (who
//!   read whose data, for the person), `policies` (latest per region).
//!
//! It publishes change records to its feed: `code.colour` (data class
//! `code-status`, region = residence), `risk.area` (`risk-area`) and
//! `checkpoint.scan` (`scan`).

pub mod hourly;
mod inputs;
pub mod views;

pub use hourly::{step_series, Hour, HourCounts, HourRow, RegionTotals};
pub use views::{
    AccessView, AppealView, CheckpointView, CodeView, ColourCounts, ColourView, HealthCodeViews,
    PersonView, PolicyView, RiskAreaView, ScanView, Tables, TravelView, VIEWS,
};
