//! Checkpoints of the dataflow's state (docs/ARCHITECTURE.md, "Checkpoints").
//!
//! A checkpoint at time `T` is every stateful operator's state after it has stepped every
//! instant before `T` and nothing at or after it, plus the inputs already waiting at `T`
//! that were produced before `T` (only a feedback edge produces those), plus where each
//! input partition must be read again from. Timely's frontier gives the consistent cut:
//! an operator saves once its input frontier has passed every time before `T`.
//!
//! In: [`Durable`] machines (each saves and restores its own state, encoded by
//! [`encode`]/[`decode`]) and the sources' shares. Out: a [`Cut`], all the shares of one
//! `T`, handed to whoever writes it ([`Checkpoints::take_complete`]).
//!
//! One [`Checkpoints`] is shared by every worker of a process; shares are named by worker
//! and operator, so a cut is complete when every expected share has arrived.

use crate::machine::{Machine, Time};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A saved state that cannot be read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("checkpoint state of {what} does not decode: {detail}")]
pub struct RestoreError {
    /// What was being restored.
    pub what: String,
    /// Why it failed.
    pub detail: String,
}

/// A [`Machine`] whose state can be saved in a checkpoint and restored from it.
///
/// Contract: after `restore(save())` into a machine built with the same configuration,
/// stepping the same later inputs gives the same outputs and the same later saves as the
/// machine that was saved. `save` is called between two steps, never inside one.
pub trait Durable: Machine
where
    Self::In: Serialize + DeserializeOwned,
{
    /// The machine's state (not its configuration), encoded with [`encode`].
    fn save(&self) -> Vec<u8>;
    /// Replaces the state with a saved one.
    fn restore(&mut self, state: &[u8]) -> Result<(), RestoreError>;
    /// Whether an input waiting at the checkpoint's time was produced before it and so
    /// belongs to the checkpoint (true only for what a feedback edge carries: its producer
    /// will not produce it again after a restore).
    fn carried(_input: &Self::In) -> bool {
        false
    }
}

/// The encoding of every saved state: bincode's standard configuration over serde.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("state encodes")
}

/// Reads what [`encode`] wrote.
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, RestoreError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(value, _)| value)
        .map_err(|error| RestoreError {
            what: what.to_string(),
            detail: error.to_string(),
        })
}

/// One operator's (or source's) share of a cut.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// The worker that saved it.
    pub worker: usize,
    /// The operator's name.
    pub name: String,
    /// Its state ([`Durable::save`], or the source's own encoding).
    pub state: Vec<u8>,
    /// Inputs waiting at the cut's time that belong to it ([`Durable::carried`]), encoded.
    pub carried: Vec<u8>,
}

/// Every share of one checkpoint time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    /// The checkpoint time: the state covers every instant before it.
    pub time: Time,
    /// The worker count that saved it (restoring needs the same: shares are per worker).
    pub workers: usize,
    /// Shares, by (worker, name).
    pub shares: BTreeMap<(usize, String), Share>,
}

impl Cut {
    /// The share of `name` on `worker`.
    pub fn share(&self, worker: usize, name: &str) -> Option<&Share> {
        self.shares.get(&(worker, name.to_string()))
    }
}

#[derive(Debug)]
struct Inner {
    workers: usize,
    /// Names of the operators that save a share on every worker.
    names: BTreeSet<String>,
    /// The time of the checkpoint asked for (0: none yet); only ever increases.
    requested: AtomicU64,
    /// Cuts being assembled.
    pending: Mutex<BTreeMap<Time, Cut>>,
    /// Where the run starts from.
    restored: Option<Arc<Cut>>,
    /// A file run that ends in a checkpoint instead of finishing.
    backfill: bool,
}

/// The checkpoints of one process's workers (cheap to clone).
#[derive(Clone, Debug)]
pub struct Checkpoints(Arc<Inner>);

impl Checkpoints {
    /// Checkpoints of `workers` workers, each saving a share under every one of `names`;
    /// `restored`: the cut the run starts from.
    pub fn new(workers: usize, names: &[&str], restored: Option<Cut>) -> Checkpoints {
        Checkpoints(Arc::new(Inner {
            workers,
            names: names.iter().map(|name| name.to_string()).collect(),
            requested: AtomicU64::new(0),
            pending: Mutex::new(BTreeMap::new()),
            restored: restored.map(Arc::new),
            backfill: false,
        }))
    }

    /// Checkpoints of a backfill: a file run whose machines save at its end + 1 ms instead
    /// of finishing (holds stay open, periods are not closed by the end of the input).
    pub fn backfill(workers: usize, names: &[&str], restored: Option<Cut>) -> Checkpoints {
        let mut checkpoints = Checkpoints::new(workers, names, restored);
        Arc::get_mut(&mut checkpoints.0).expect("a new handle").backfill = true;
        checkpoints
    }

    /// Whether this is a backfill's.
    pub fn is_backfill(&self) -> bool {
        self.0.backfill
    }

    /// Asks for a checkpoint at `time` (ignored unless later than the last one asked for).
    pub fn request(&self, time: Time) {
        self.0.requested.fetch_max(time, Ordering::SeqCst);
    }

    /// The latest checkpoint time asked for (None: none yet).
    pub fn requested(&self) -> Option<Time> {
        Some(self.0.requested.load(Ordering::SeqCst)).filter(|t| *t > 0)
    }

    /// The cut the run starts from.
    pub fn restored(&self) -> Option<&Cut> {
        self.0.restored.as_deref()
    }

    /// Adds a share to the cut at `time`.
    pub fn deposit(&self, time: Time, share: Share) {
        let mut pending = self.0.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let cut = pending.entry(time).or_insert_with(|| Cut {
            time,
            workers: self.0.workers,
            shares: BTreeMap::new(),
        });
        cut.shares.insert((share.worker, share.name.clone()), share);
    }

    /// The newest cut that has every share, once (older incomplete ones are dropped: a
    /// newer complete cut supersedes them).
    pub fn take_complete(&self) -> Option<Cut> {
        let mut pending = self.0.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let expected = self.0.workers * self.0.names.len();
        let time = pending
            .iter()
            .rev()
            .find(|(_, cut)| cut.shares.len() == expected)
            .map(|(time, _)| *time)?;
        let cut = pending.remove(&time);
        pending.retain(|t, _| *t > time);
        cut
    }
}
