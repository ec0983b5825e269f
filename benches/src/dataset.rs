//! Generated datasets in memory: the decode benches read records from here, so they time
//! decoding, not the disk.
//!
//! In: a [`GeneratorConfig`] (the generator of `markledger generate`, bad records
//! included). Out: each partition's bytes, split into JSON lines ([`json_lines`]) or binary
//! frame payloads ([`binary_frames`]), exactly as the file readers split them.

use markledger_connectors::codec::binary::{split_frames, MAGIC};
use markledger_connectors::file::list_partitions;
use markledger_datasets::generator::{generate, Format, GeneratorConfig, Manifest};
use std::io;
use std::path::{Path, PathBuf};

/// A generated dataset's partitions, read into memory.
#[derive(Debug)]
pub struct InMemory {
    /// Each partition file's bytes, partition 0 first.
    pub partitions: Vec<Vec<u8>>,
    /// What the generator wrote.
    pub manifest: Manifest,
}

/// The generator's defaults (200 accounts, 4 partitions, 3 months, seed 1) with `codes`
/// code events, a 5 % bad rate (as the 10^7 benchmark dataset) and `format`.
pub fn config(codes: u64, format: Format) -> GeneratorConfig {
    GeneratorConfig {
        codes,
        format,
        bad_rate: 0.05,
        ..GeneratorConfig::default()
    }
}

/// Generates `config` into a scratch directory, reads its partitions and removes it.
pub fn generate_in_memory(config: &GeneratorConfig) -> io::Result<InMemory> {
    let dir = std::env::temp_dir().join(format!(
        "markledger-benches-{}-{}-{}",
        std::process::id(),
        config.format.as_str(),
        config.codes
    ));
    let manifest = generate(config, &dir, &mut |_| {})?;
    let partitions = partition_paths(&dir)?
        .iter()
        .map(std::fs::read)
        .collect::<io::Result<Vec<_>>>();
    std::fs::remove_dir_all(&dir)?;
    Ok(InMemory {
        partitions: partitions?,
        manifest,
    })
}

/// The partition files of a dataset directory, in the order `markledger run` reads them.
pub fn partition_paths(dir: &Path) -> io::Result<Vec<PathBuf>> {
    list_partitions(&[dir.to_path_buf()]).map_err(|error| io::Error::other(error.to_string()))
}

/// The non-blank lines of a JSON-lines partition, without their line ends (the JSON reader
/// skips blank lines the same way).
pub fn json_lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes
        .split(|byte| *byte == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .collect()
}

/// The frame payloads of a binary partition (after [`MAGIC`]; each frame is checked as a
/// reader checks it). Panics on a file that is not a whole, undamaged binary partition: the
/// generator writes only whole ones.
pub fn binary_frames(bytes: &[u8]) -> Vec<&[u8]> {
    let stream = bytes
        .strip_prefix(MAGIC.as_slice())
        .expect("a binary partition starts with MAGIC");
    split_frames(stream).expect("a whole, undamaged binary partition")
}

#[cfg(test)]
mod tests {
    use super::*;
    use markledger_connectors::codec::binary::decode_frame;
    use markledger_connectors::codec::json::decode_event;
    use markledger_connectors::codec::Decoded;

    fn code_events(records: Vec<Decoded>) -> (u64, u64) {
        let events = records.iter().filter(|r| matches!(r, Decoded::Event(_))).count() as u64;
        let codes = records
            .iter()
            .map(|r| match r {
                Decoded::Event(event) => event.code_count() as u64,
                Decoded::Refused(_) => 0,
            })
            .sum();
        (events, codes)
    }

    /// The splitters give the records the generator wrote: as many records as its manifest
    /// counts, naming as many codes, in both formats, and the same events in each.
    #[test]
    fn splitting_finds_every_record() {
        let json = generate_in_memory(&config(20_000, Format::Json)).expect("json dataset");
        let binary = generate_in_memory(&config(20_000, Format::Binary)).expect("binary dataset");
        let from_json: Vec<Decoded> = json
            .partitions
            .iter()
            .flat_map(|p| json_lines(p))
            .map(decode_event)
            .collect();
        let from_binary: Vec<Decoded> = binary
            .partitions
            .iter()
            .flat_map(|p| binary_frames(p))
            .map(decode_frame)
            .collect();
        assert_eq!(from_json.len() as u64, json.manifest.events);
        assert_eq!(from_binary.len() as u64, binary.manifest.events);
        let (_, codes) = code_events(from_json.clone());
        assert_eq!(codes, json.manifest.code_events);
        let events = |records: &[Decoded]| -> Vec<_> {
            records
                .iter()
                .filter_map(|r| match r {
                    Decoded::Event(event) => Some(event.clone()),
                    Decoded::Refused(_) => None,
                })
                .collect()
        };
        assert_eq!(events(&from_json), events(&from_binary));
    }
}
