//! The markledger pipeline: engines, configuration and the command line behind the
//! `markledger` binary.
//!
//! - [`reference`]: the deliberately simple single-threaded engine of DOMAIN.md, the
//!   oracle every other engine is checked against.
//! - [`dataflow`]: the timely dataflow engine (multi-worker), checked against the reference.
//! - [`config`]: every tunable of DOMAIN.md with its default.
//! - [`demo`]: the `demo` command: generate, run, and show the results to a person.
//! - [`cluster`]: a run on several processes (timely's cluster mode); [`control`]: what
//!   the processes of a stream tell each other (checkpoints, the stop).
//! - [`runner`]: reading partitions from files, running an engine, writing the outputs
//!   (in their canonical order, spilled to disk and merged: [`summary`]) and the closing
//!   summary.
//! - [`generated`]: the generator as a run's input (`--input gen:…`), no files needed.

#![deny(missing_docs)]

pub mod checkpoint;
pub mod cluster;
pub mod config;
pub mod control;
pub mod dataflow;
pub mod demo;
pub mod documents;
pub mod failure;
pub mod generated;
pub mod metrics;
pub mod quarantine;
pub mod reference;
pub mod runner;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod stream;
pub mod summary;

pub use config::Config;
