//! The generator source: `markledger run --input gen:codes=N,seed=S,…` runs the workload
//! generator straight into the run, one pipe per partition, so a run of 10^9 code events
//! needs no 77 GB of input files.
//!
//! In: a spec of `KEY=VALUE` pairs, the flags of `markledger generate` without their
//! dashes (`codes`, `accounts`, `seed`, `bad-rate`, `terminate-rate`, `partitions`, `months`,
//! `start`).
//! Out: one [`PartitionInput`] per generated partition ([`pipe::PipeReader`]), fed by a
//! generator thread that writes each partition's JSON lines exactly as `generate` writes
//! `pNNN.jsonl`: partition `i` is read by worker `i mod workers` like file `i`, and the
//! outputs equal those of a run over the generated files (tests/tests/generated.rs).
//!
//! Memory: [`pipe::PIPE_CHUNKS_MAX`] write buffers per partition while every partition
//! has something to read; more while one is quiet and the run needs its next record (see
//! [`pipe`]). A generator failure fails the run ([`Generated::finish`]).

use anyhow::{bail, Context, Result};
use markledger_connectors::file::{Format, PartitionWriter};
use markledger_connectors::partition::PartitionInput;
use markledger_connectors::pipe;
use markledger_datasets::generator::{generate_into, GeneratorConfig, Manifest};
use markledger_operators::Period;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// What an `--input` starts with to name the generator instead of a path.
pub const PREFIX: &str = "gen:";

/// The generator spec of an `--input`, when it names the generator.
pub fn spec_of(input: &Path) -> Option<&str> {
    input.to_str().and_then(|text| text.strip_prefix(PREFIX))
}

/// Parses `codes=N,seed=S,…` (every key optional, defaults as `markledger generate`).
pub fn parse(spec: &str) -> Result<GeneratorConfig> {
    let mut config = GeneratorConfig::default();
    for pair in spec.split(',').filter(|pair| !pair.trim().is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("{PREFIX}{spec}: {pair:?} is not KEY=VALUE")
        };
        let (key, value) = (key.trim(), value.trim());
        let number = || -> Result<u64> {
            value
                .replace('_', "")
                .parse()
                .with_context(|| format!("{PREFIX}{spec}: {key}={value:?} is not a whole number"))
        };
        let small = || -> Result<u32> {
            u32::try_from(number()?).with_context(|| format!("{PREFIX}{spec}: {key}={value} is too large"))
        };
        let fraction = || -> Result<f64> {
            value
                .parse()
                .with_context(|| format!("{PREFIX}{spec}: {key}={value:?} is not a number"))
        };
        match key {
            "codes" => config.codes = number()?,
            "accounts" => config.accounts = small()?,
            "seed" => config.seed = number()?,
            "partitions" => config.partitions = small()?,
            "months" => config.months = small()?,
            "bad-rate" | "bad_rate" => config.bad_rate = fraction()?,
            "terminate-rate" | "terminate_rate" => config.terminate_rate = fraction()?,
            "start" => {
                config.start = Period::parse(value)
                    .with_context(|| format!("{PREFIX}{spec}: start={value:?} is not YYYY-MM"))?
            }
            other => bail!(
                "{PREFIX}{spec}: unknown key {other:?} (known: codes, accounts, seed, bad-rate, terminate-rate, partitions, months, start)"
            ),
        }
    }
    config.validate().with_context(|| format!("{PREFIX}{spec}"))?;
    Ok(config)
}

/// A running generator and the partitions it feeds.
pub struct Generated {
    /// One input per partition, in partition order.
    pub inputs: Vec<Box<dyn PartitionInput>>,
    /// Partition names for the summary (`gen:p000`, …).
    pub names: Vec<String>,
    thread: JoinHandle<std::io::Result<Manifest>>,
    pipes: Arc<pipe::Pipes>,
}

/// Starts the generator on its own thread.
pub fn start(config: GeneratorConfig) -> Result<Generated> {
    let error = Arc::new(Mutex::new(None));
    // The skew between partitions beyond the pipes' RAM budget waits on disk, in the
    // system's temporary directory (removed with the pipes; a killed run's by the next).
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let overflow = std::env::temp_dir().join(format!("markledger-spill-{}-pipes-{n}", std::process::id()));
    let pipes = Arc::new(pipe::Pipes::overflowing(pipe::PIPE_BYTES_IN_RAM_MAX, overflow));
    let mut writers = Vec::with_capacity(config.partitions as usize);
    let mut inputs: Vec<Box<dyn PartitionInput>> = Vec::with_capacity(config.partitions as usize);
    let mut names = Vec::with_capacity(config.partitions as usize);
    for index in 0..config.partitions {
        let name = format!("{PREFIX}p{index:03}");
        let (writer, reader) = pipe::pipe(name.clone(), &pipes, error.clone());
        writers.push(PartitionWriter::over(Box::new(writer), Format::Json)?);
        inputs.push(Box::new(reader));
        names.push(name);
    }
    let thread = std::thread::Builder::new()
        .name("generator".into())
        .spawn(move || {
            let result = generate_into(&config, writers, &mut |_| {});
            if let Err(failure) = &result {
                if let Ok(mut slot) = error.lock() {
                    *slot = Some(format!("the generator failed: {failure}"));
                }
            }
            result
        })
        .context("starting the generator thread")?;
    Ok(Generated {
        inputs,
        names,
        thread,
        pipes,
    })
}

impl Generated {
    /// The most bytes of generated records waiting in the pipes at once
    /// ([`pipe::Pipes::peak_bytes`]).
    pub fn pipes_peak_bytes(&self) -> u64 {
        self.pipes.peak_bytes()
    }

    /// Bytes of generated records that waited on disk instead
    /// ([`pipe::Pipes::overflowed_bytes`]).
    pub fn pipes_overflowed_bytes(&self) -> u64 {
        self.pipes.overflowed_bytes()
    }

    /// Takes the inputs, leaving the handle to finish.
    pub fn take_inputs(&mut self) -> Vec<Box<dyn PartitionInput>> {
        std::mem::take(&mut self.inputs)
    }

    /// Waits for the generator; its manifest, or why it failed (a run whose generator
    /// failed read only part of its input and must not report success).
    pub fn finish(self) -> Result<Manifest> {
        match self.thread.join() {
            Ok(result) => result.context("the generator source failed"),
            Err(_) => bail!("the generator thread panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_like_the_generate_flags() {
        let config =
            parse("codes=1_000,seed=7,bad-rate=0.05,terminate-rate=0.1,partitions=3,months=2,start=2026-03,accounts=9")
                .unwrap();
        assert_eq!(
            config,
            GeneratorConfig {
                codes: 1_000,
                seed: 7,
                bad_rate: 0.05,
                terminate_rate: 0.1,
                partitions: 3,
                months: 2,
                start: Period::new(2026, 3),
                accounts: 9,
                ..GeneratorConfig::default()
            }
        );
        assert_eq!(parse("").unwrap(), GeneratorConfig::default());
        for bad in [
            "codes",
            "codes=x",
            "colour=red",
            "partitions=0",
            "bad-rate=0.9",
            "terminate-rate=2",
            "terminate-rate=x",
            "start=2026",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(spec_of(Path::new("gen:codes=5")), Some("codes=5"));
        assert_eq!(spec_of(Path::new("./gen:codes=5")), None);
    }
}
