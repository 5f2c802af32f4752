//! Latency, the last step of the data flow for stream jobs: every committed file's
//! injected -> committed time, as rows ([`rows`]), percentiles and recovery times after fault events
//! ([`stats`]), and a timeline plot ([`plot`]).

#![warn(missing_docs)]

pub mod analysis;
pub mod plot;
pub mod rows;
pub mod spill;
pub mod stats;

pub use analysis::Analysis;
pub use rows::{write_csv, LatencyRow};
pub use spill::Spill;
pub use stats::{
    bands, bucket_ms, histogram, percentiles, recoveries, Band, Percentiles, Recovery,
};
