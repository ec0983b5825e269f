//! markledger's datasets: what the pipeline is run and tested on.
//!
//! - [`generator`]: the seeded workload generator behind `markledger generate` and
//!   `markledger demo`: partition files shaped like a country's marking traffic, with
//!   deliberately bad input whose rejections its manifest predicts exactly.
//! - [`calendars`]: the shipped working-day calendars (Kazakhstan 2020–2027) that expiry
//!   and defect deadlines count in.

#![deny(missing_docs)]

pub mod calendars;
pub mod generator;
