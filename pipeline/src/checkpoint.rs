//! Checkpoint files in `--state DIR` (docs/ARCHITECTURE.md, "Checkpoints").
//!
//! In: a complete [`Cut`] (every worker's machines and source). Out: one file per
//! checkpoint, `checkpoint-<time>.mlck`, written atomically (a temporary file, fsync,
//! rename, fsync of the directory), so a crash leaves either the whole new file or none;
//! older ones pruned to the newest [`KEEP`]. Loading takes the newest file that verifies
//! (magic, format version, length, xxh3-64 checksum of the body) and falls back to an older
//! one, saying why, when the newest is torn or corrupt.
//!
//! Layout: `MLCKPT\0\0`, format version (u32 LE), body length (u64 LE), xxh3-64 of the
//! body (u64 LE), body (bincode of the [`Cut`]).
//!
//! The source's share of a cut ([`SourceShare`]) is defined beside the connectors that
//! fill it (`markledger_connectors::offsets`) and re-exported here.

use anyhow::{bail, Context, Result};
use markledger_operators::checkpoint::{decode, encode, Cut};
use markledger_operators::machine::Time;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use markledger_connectors::offsets::{PartitionShare, SourceShare, SOURCE};

/// The stateful operators that save a share on every worker, by the names the dataflow
/// gives them, and the source.
pub const NAMES: [&str; 6] = [
    "Dedup: by id",
    "Orders: emission checks",
    "Codes: national index",
    "Accounts: lifecycle, balance, FIFO",
    "Aggregates: revisions",
    SOURCE,
];

/// Checkpoint files kept (the newest ones).
pub const KEEP: usize = 3;

const MAGIC: &[u8; 8] = b"MLCKPT\0\0";
/// Bumped whenever the body's encoding or any saved state's shape changes: a file of
/// another version is refused (with its version named), never misread.
pub const FORMAT_VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 8;

/// What writing a checkpoint took.
#[derive(Clone, Debug)]
pub struct Written {
    /// The file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Encoding, writing and syncing.
    pub took: Duration,
}

/// The checkpoint directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creates) `dir`.
    pub fn open(dir: &Path) -> Result<Store> {
        fs::create_dir_all(dir).with_context(|| format!("creating the state directory {}", dir.display()))?;
        Ok(Store { dir: dir.to_path_buf() })
    }

    fn path_of(&self, time: Time) -> PathBuf {
        self.dir.join(format!("checkpoint-{time:020}.mlck"))
    }

    /// Checkpoint files, newest first.
    pub fn files(&self) -> Result<Vec<(Time, PathBuf)>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir).with_context(|| format!("listing {}", self.dir.display()))? {
            let path = entry?.path();
            let time = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_prefix("checkpoint-"))
                .and_then(|name| name.strip_suffix(".mlck"))
                .and_then(|time| time.parse::<Time>().ok());
            if let Some(time) = time {
                files.push((time, path));
            }
        }
        files.sort_by_key(|(time, _)| std::cmp::Reverse(*time));
        Ok(files)
    }

    /// Writes `cut` atomically, then prunes all but the newest [`KEEP`].
    pub fn write(&self, cut: &Cut) -> Result<Written> {
        let started = Instant::now();
        let body = encode(cut);
        let mut bytes = Vec::with_capacity(HEADER + body.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        let path = self.path_of(cut.time);
        let temporary = path.with_extension("mlck.tmp");
        {
            let mut file = File::create(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
            file.write_all(&bytes)
                .with_context(|| format!("writing {}", temporary.display()))?;
            file.sync_all()
                .with_context(|| format!("syncing {}", temporary.display()))?;
        }
        fs::rename(&temporary, &path).with_context(|| format!("renaming to {}", path.display()))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("syncing {}", self.dir.display()))?;
        for (_, old) in self.files()?.into_iter().skip(KEEP) {
            let _ = fs::remove_file(old);
        }
        Ok(Written {
            path,
            bytes: bytes.len() as u64,
            took: started.elapsed(),
        })
    }

    /// Reads and verifies one checkpoint file.
    pub fn read(path: &Path) -> Result<Cut> {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            bail!("{} is not a markledger checkpoint (or is torn)", path.display());
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            bail!(
                "{} has checkpoint format {version}, this build reads {FORMAT_VERSION}",
                path.display()
            );
        }
        let length = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let checksum = u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes"));
        let body = &bytes[HEADER..];
        if body.len() as u64 != length {
            bail!("{} is torn: {} body bytes of {length}", path.display(), body.len());
        }
        if xxhash_rust::xxh3::xxh3_64(body) != checksum {
            bail!("{} is corrupt: its checksum does not match", path.display());
        }
        Ok(decode::<Cut>("the checkpoint", body)?)
    }

    /// The newest checkpoint that verifies, reporting every newer one that does not.
    pub fn load(&self, report: &mut dyn FnMut(String)) -> Result<Option<Cut>> {
        for (_, path) in self.files()? {
            match Store::read(&path) {
                Ok(cut) => return Ok(Some(cut)),
                Err(error) => report(format!("skipping a checkpoint: {error:#}")),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use markledger_operators::time::Ts;
    use std::collections::BTreeMap;

    fn cut(time: Time) -> Cut {
        let mut shares = BTreeMap::new();
        let share = SourceShare {
            read_max: time,
            partitions: vec![PartitionShare {
                topic: "in".into(),
                partition: 0,
                resume: 7,
                known: vec![9],
                high_water: Some(Ts(5)),
            }],
        }
        .share(0);
        shares.insert((0, SOURCE.to_string()), share);
        Cut {
            time,
            workers: 1,
            shares,
        }
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("markledger-ckpt-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_written_checkpoint_reads_back_and_only_the_newest_are_kept() {
        let dir = temp("roundtrip");
        let store = Store::open(&dir).expect("store");
        for time in 1..=5 {
            store.write(&cut(time * 1000)).expect("written");
        }
        let files = store.files().expect("files");
        assert_eq!(
            files.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            vec![5000, 4000, 3000]
        );
        let loaded = store.load(&mut |_| {}).expect("load").expect("a checkpoint");
        assert_eq!(loaded, cut(5000));
        assert_eq!(SourceShare::of(&loaded, 0).expect("share").partitions[0].known, vec![9]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_or_corrupt_newest_checkpoint_falls_back_to_the_one_before() {
        let dir = temp("torn");
        let store = Store::open(&dir).expect("store");
        store.write(&cut(1000)).expect("written");
        let newest = store.write(&cut(2000)).expect("written").path;
        let full = fs::read(&newest).expect("read");
        // Torn: cut short.
        fs::write(&newest, &full[..full.len() - 3]).expect("truncate");
        let mut skipped = Vec::new();
        let loaded = store.load(&mut |why| skipped.push(why)).expect("load").expect("one");
        assert_eq!(loaded.time, 1000);
        assert!(skipped[0].contains("torn"), "{skipped:?}");
        // Corrupt: one bit flipped in the body.
        let mut flipped = full.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        fs::write(&newest, &flipped).expect("corrupt");
        let mut skipped = Vec::new();
        assert_eq!(
            store
                .load(&mut |why| skipped.push(why))
                .expect("load")
                .expect("one")
                .time,
            1000
        );
        assert!(skipped[0].contains("checksum"), "{skipped:?}");
        // Another format version is refused by name.
        let mut other = full;
        other[8] = 99;
        fs::write(&newest, &other).expect("version");
        assert!(format!("{:#}", Store::read(&newest).expect_err("refused")).contains("format 99"));
        let _ = fs::remove_dir_all(&dir);
    }
}
