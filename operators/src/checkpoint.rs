//! Checkpoints of the dataflow's state (docs/ARCHITECTURE.md, "Checkpoints").
//!
//! A checkpoint at time `T` is every stateful operator's state after it has stepped every
//! instant before `T` and nothing at or after it, plus the inputs already waiting at `T`
//! that were produced before `T` (only a feedback edge produces those), plus where each
//! input partition must be read again from. Timely's frontier gives the consistent cut:
//! an operator saves once its input frontier has passed every time before `T`.
//!
//! In: `Durable` machines (machine.rs: each saves and restores its own state, encoded by
//! [`encode`]/[`decode`]) and the sources' shares. Out: a [`Cut`], all the shares of one
//! `T`, handed to whoever writes it ([`Checkpoints::take_complete`]).
//!
//! One [`Checkpoints`] is shared by every worker of a process; shares are named by worker
//! and operator, so a cut is complete when every expected share has arrived.

use crate::final_codes::Manifest;
use crate::flow::{Time, KEY_GROUPS};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use timely::scheduling::SyncActivator;

/// A saved state that cannot be read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("checkpoint state of {what} does not decode: {detail}")]
pub struct RestoreError {
    /// What was being restored.
    pub what: String,
    /// Why it failed.
    pub detail: String,
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

/// A machine's state as of a checkpoint, captured on its worker between two steps and
/// encoded by whoever writes the checkpoint (`Durable::snapshot`).
///
/// Why: encoding a machine's whole state on its worker stops that worker for as long as the
/// encoding takes (1.8 s at 10^7 codes, BENCHMARKS.md). A machine whose state is cheap to
/// capture (structurally shared maps: a clone is O(1); or a log of what changed) hands over
/// a [`Snapshot::of`] its capture instead, and the checkpoint writer's thread encodes it
/// (Flink's asynchronous snapshots of its heap state backend).
pub struct Snapshot(Captured);

enum Captured {
    /// Already encoded on the worker.
    Encoded(Vec<u8>),
    /// To be encoded off the worker.
    Deferred(Box<dyn FnOnce() -> Vec<u8> + Send>),
}

impl Snapshot {
    /// A state already encoded (with [`encode`]).
    pub fn encoded(bytes: Vec<u8>) -> Snapshot {
        Snapshot(Captured::Encoded(bytes))
    }

    /// `state`, to be encoded with [`encode`] when the checkpoint is written. `state` must
    /// be a capture the worker no longer changes (an owned copy: with structurally shared
    /// maps, a clone), and must encode to the bytes the machine's `restore` reads.
    pub fn of<T: Serialize + Send + 'static>(state: T) -> Snapshot {
        Snapshot(Captured::Deferred(Box::new(move || encode(&state))))
    }

    /// This snapshot, encoded only after `first` has run where the encoding runs (the
    /// checkpoint's writer: the files the state names, written by the worker without
    /// fsync, are synced there, before the cut that names them is written).
    pub fn after(self, first: impl FnOnce() + Send + 'static) -> Snapshot {
        let encode: Box<dyn FnOnce() -> Vec<u8> + Send> = match self.0 {
            Captured::Encoded(bytes) => Box::new(move || bytes),
            Captured::Deferred(encoder) => encoder,
        };
        Snapshot(Captured::Deferred(Box::new(move || {
            first();
            encode()
        })))
    }

    /// Whether encoding is left to the checkpoint's writer.
    pub fn is_deferred(&self) -> bool {
        matches!(self.0, Captured::Deferred(_))
    }

    /// The encoded state (runs the deferred encoding, if any).
    pub fn encode(self) -> Vec<u8> {
        match self.0 {
            Captured::Encoded(bytes) => bytes,
            Captured::Deferred(encoder) => encoder(),
        }
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Captured::Encoded(bytes) => write!(f, "Snapshot({} bytes)", bytes.len()),
            Captured::Deferred(_) => f.write_str("Snapshot(deferred)"),
        }
    }
}

/// One operator's (or source's) share of a cut.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// The worker that saved it.
    pub worker: usize,
    /// The operator's name.
    pub name: String,
    /// Its state (`Durable::save`, or the source's own encoding).
    pub state: Vec<u8>,
    /// Inputs waiting at the cut's time that belong to it (`Durable::carried`), encoded.
    pub carried: Vec<u8>,
}

/// Every share of one checkpoint time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    /// The checkpoint time: the state covers every instant before it.
    pub time: Time,
    /// The worker count that saved it: shares are per worker. A restore on the same count
    /// gives each worker its own share; on another, each worker reads every share and keeps
    /// the key groups it owns (`Durable::restore_rescaled`).
    pub workers: usize,
    /// The number of key groups state was split into ([`KEY_GROUPS`] when it was saved): a
    /// checkpoint of another number cannot be split by group and is refused.
    pub key_groups: u64,
    /// Shares, by (worker, name).
    pub shares: BTreeMap<(usize, String), Share>,
}

impl Cut {
    /// The share of `name` on `worker`.
    pub fn share(&self, worker: usize, name: &str) -> Option<&Share> {
        self.shares.get(&(worker, name.to_string()))
    }
}

/// A cut with every share, some of whose states are still to be encoded (deferred
/// [`Snapshot`]s): what [`Checkpoints::take_complete`] hands to the checkpoint's writer,
/// which calls [`Complete::encode`] on its own thread.
#[derive(Debug)]
pub struct Complete {
    cut: Cut,
    deferred: Vec<((usize, String), Snapshot)>,
}

impl Complete {
    /// The checkpoint time.
    pub fn time(&self) -> Time {
        self.cut.time
    }

    /// Shares whose state is still to be encoded.
    pub fn deferred(&self) -> usize {
        self.deferred.len()
    }

    /// The cut, every deferred state encoded into its share.
    pub fn encode(self) -> Cut {
        let Complete { mut cut, deferred } = self;
        for (key, snapshot) in deferred {
            let share = cut.shares.get_mut(&key).expect("a deferred state has its share");
            share.state = snapshot.encode();
        }
        cut
    }
}

/// A cut being assembled: its shares, and the states still to encode.
#[derive(Debug)]
struct Assembling {
    cut: Cut,
    deferred: BTreeMap<(usize, String), Snapshot>,
}

#[derive(Debug)]
struct Inner {
    /// Workers of this process (each deposits its shares here).
    workers: usize,
    /// Global index of this process's first worker, and workers of the whole run: on a
    /// cluster (pipeline/src/cluster.rs) each process assembles the part of a cut its own
    /// workers save, and the cut records the run's worker count.
    first: usize,
    total: usize,
    /// On a cluster, the sources of process 0 do not move their watermark past this while
    /// a request is on its way to the other processes (u64::MAX: no hold). See
    /// [`Checkpoints::propose_at_least`].
    hold: AtomicU64,
    /// The watermark of this process's first worker's source, as of its last activation
    /// (what process 0's worker 0 proposes at least, on a cluster).
    source_at: AtomicU64,
    /// Names of the operators that save a share on every worker.
    names: BTreeSet<String>,
    /// The time of the checkpoint asked for (0: none yet); only ever increases.
    requested: AtomicU64,
    /// The time of the last cut completed or given up (0: none yet): a request at or
    /// before it is no longer pending.
    settled: AtomicU64,
    /// The latest instant any machine has started to step.
    stepped: AtomicU64,
    /// The latest output frontier any source has acted on.
    seen: AtomicU64,
    /// The longest a machine's save has held up its worker, in microseconds.
    longest_save_us: AtomicU64,
    /// The same, by machine.
    longest_by_machine: Mutex<BTreeMap<String, std::time::Duration>>,
    /// Cuts being assembled.
    pending: Mutex<BTreeMap<Time, Assembling>>,
    /// Where the run starts from.
    restored: Option<Arc<Cut>>,
    /// The machines, woken when a checkpoint is asked for: one whose input has gone quiet
    /// saves its share only when it runs.
    machines: Mutex<Vec<SyncActivator>>,
    /// A file run that ends in a checkpoint instead of finishing.
    backfill: bool,
    /// The final-code manifests of the checkpoints kept on disk, by worker, and a
    /// generation counting how often they were named (0: never).
    kept: Mutex<(u64, BTreeMap<usize, Vec<Manifest>>)>,
}

/// The checkpoints of one process's workers (cheap to clone).
#[derive(Clone, Debug)]
pub struct Checkpoints(Arc<Inner>);

impl Checkpoints {
    /// Checkpoints of `workers` workers, each saving a share under every one of `names`;
    /// `restored`: the cut the run starts from.
    pub fn new(workers: usize, names: &[&str], restored: Option<Cut>) -> Checkpoints {
        // A restored run starts where its checkpoint is: that checkpoint is settled, no
        // machine has stepped its time yet, and nothing before it will be seen again.
        let start = restored.as_ref().map_or(0, |cut| cut.time);
        Checkpoints(Arc::new(Inner {
            workers,
            first: 0,
            total: workers,
            hold: AtomicU64::new(u64::MAX),
            source_at: AtomicU64::new(0),
            names: names.iter().map(|name| name.to_string()).collect(),
            requested: AtomicU64::new(start),
            settled: AtomicU64::new(start),
            stepped: AtomicU64::new(start.saturating_sub(1)),
            seen: AtomicU64::new(start),
            longest_save_us: AtomicU64::new(0),
            longest_by_machine: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(BTreeMap::new()),
            restored: restored.map(Arc::new),
            machines: Mutex::new(Vec::new()),
            backfill: false,
            kept: Mutex::new((0, BTreeMap::new())),
        }))
    }

    /// The checkpoints of one process of a cluster: its `workers` workers are global workers
    /// `first..first + workers` of `total`; its cuts hold their shares only (a part of the
    /// cluster's cut), and record `total` as the cut's worker count.
    pub fn in_cluster(
        first: usize,
        workers: usize,
        total: usize,
        names: &[&str],
        restored: Option<Cut>,
    ) -> Checkpoints {
        let mut checkpoints = Checkpoints::new(workers, names, restored);
        let inner = Arc::get_mut(&mut checkpoints.0).expect("a new handle");
        inner.first = first;
        inner.total = total.max(workers);
        checkpoints
    }

    /// Global index of this process's first worker.
    pub fn first_worker(&self) -> usize {
        self.0.first
    }

    /// Workers of the whole run (of every process, on a cluster).
    pub fn total_workers(&self) -> usize {
        self.0.total
    }

    /// Checkpoints of a backfill: a file run whose machines save at its end + 1 ms instead
    /// of finishing (holds stay open, periods are not closed by the end of the input).
    pub fn backfill(workers: usize, names: &[&str]) -> Checkpoints {
        Checkpoints::backfill_in_cluster(0, workers, workers, names)
    }

    /// The checkpoints of a backfill on one process of a cluster (see
    /// [`Checkpoints::in_cluster`] and [`Checkpoints::backfill`]).
    pub fn backfill_in_cluster(first: usize, workers: usize, total: usize, names: &[&str]) -> Checkpoints {
        let mut checkpoints = Checkpoints::in_cluster(first, workers, total, names, None);
        Arc::get_mut(&mut checkpoints.0).expect("a new handle").backfill = true;
        checkpoints
    }

    /// Whether this is a backfill's.
    pub fn is_backfill(&self) -> bool {
        self.0.backfill
    }

    /// Asks for a checkpoint just after everything any machine has stepped (and not before
    /// any frontier a source has acted on), unless one is still pending. Returns the time
    /// asked for.
    ///
    /// Race-free without a lock: a machine publishes the instant it is about to step
    /// ([`Checkpoints::stepping`]) before it reads the pending request, and this publishes
    /// the request before it reads the positions again; so either the machine sees the
    /// request before stepping past it, or this sees the machine past it and gives the
    /// request up (settles it unwritten; a later one is asked for instead). The same for
    /// sources and the frontiers they act on ([`Checkpoints::acting_on`]).
    pub fn propose(&self) -> Option<Time> {
        self.propose_at_least(0)
    }

    /// [`Checkpoints::propose`], at `floor` or later. On a cluster process 0's worker 0
    /// proposes at least its own source's watermark `floor` and holds that source there
    /// ([`Checkpoints::hold_at`]) until every other process has taken the request in
    /// ([`Checkpoints::request`]): every machine of the cluster reads that source's events,
    /// so none has stepped an instant at or after `floor`, and none can before the hold is
    /// released; nor can the output frontier any source acts on pass it.
    pub fn propose_at_least(&self, floor: Time) -> Option<Time> {
        let inner = &self.0;
        let settled = inner.settled.load(Ordering::SeqCst);
        if inner.requested.load(Ordering::SeqCst) > settled {
            return None;
        }
        // Valid times: after every instant a machine has stepped, and not before a frontier a
        // source has acted on (it has dropped what it placed before that frontier). The
        // earliest valid one, so that an idle stream's last state is covered too (its
        // frontier stays where it is).
        let stepped = || inner.stepped.load(Ordering::SeqCst);
        let seen = || inner.seen.load(Ordering::SeqCst);
        let time = (stepped() + 1).max(seen()).max(floor);
        if time <= settled.max(inner.requested.load(Ordering::SeqCst)) {
            return None;
        }
        inner.requested.store(time, Ordering::SeqCst);
        if stepped() >= time || seen() > time {
            inner.settled.fetch_max(time, Ordering::SeqCst);
            return None;
        }
        self.wake_machines();
        Some(time)
    }

    /// Wakes every machine: a checkpoint was asked for (one whose input has gone quiet saves
    /// its share only when it runs).
    fn wake_machines(&self) {
        for machine in self
            .0
            .machines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
        {
            // A worker that has gone away has nothing left to save.
            let _ = machine.activate();
        }
    }

    /// Another process's request for a checkpoint at `time` (a cluster: process 0
    /// proposed it and holds its sources until every process has taken it in, so no
    /// machine here has stepped `time` yet). A request at or before one already here is
    /// ignored.
    pub fn request(&self, time: Time) {
        let inner = &self.0;
        if time > inner.settled.load(Ordering::SeqCst) && inner.requested.fetch_max(time, Ordering::SeqCst) < time {
            self.wake_machines();
        }
    }

    /// Holds process 0's sources at or before `time` (see [`Checkpoints::propose_at_least`]).
    pub fn hold_at(&self, time: Time) {
        self.0.hold.store(time, Ordering::SeqCst);
    }

    /// Releases the hold.
    pub fn release_hold(&self) {
        self.0.hold.store(u64::MAX, Ordering::SeqCst);
    }

    /// The first worker's source holds its watermark at `time` (told by that source at
    /// each activation, before its partitions act on the output frontier).
    pub fn note_source_at(&self, time: Time) {
        self.0.source_at.store(time, Ordering::SeqCst);
    }

    /// What [`Checkpoints::note_source_at`] was last told.
    pub fn source_at(&self) -> Time {
        self.0.source_at.load(Ordering::SeqCst)
    }

    /// How far the sources may move their watermark (u64::MAX: as far as they like).
    pub fn hold(&self) -> Time {
        self.0.hold.load(Ordering::SeqCst)
    }

    /// The machine `name`'s save held up its worker for `took`.
    pub fn note_save(&self, name: &str, took: std::time::Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.0.longest_save_us.fetch_max(micros, Ordering::Relaxed);
        let mut by_machine = self
            .0
            .longest_by_machine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let longest = by_machine.entry(name.to_string()).or_default();
        *longest = (*longest).max(took);
    }

    /// The longest each machine's save has held up its worker so far, by machine name.
    pub fn longest_saves(&self) -> BTreeMap<String, std::time::Duration> {
        self.0
            .longest_by_machine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The longest a machine's save has held up its worker so far.
    pub fn longest_save(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.0.longest_save_us.load(Ordering::Relaxed))
    }

    /// Registers a machine to wake when a checkpoint is asked for.
    pub fn wake_on_request(&self, machine: SyncActivator) {
        self.0
            .machines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(machine);
    }

    /// The checkpoint asked for and neither complete nor given up.
    pub fn pending(&self) -> Option<Time> {
        let requested = self.0.requested.load(Ordering::SeqCst);
        (requested > self.0.settled.load(Ordering::SeqCst)).then_some(requested)
    }

    /// A machine is about to step `now`: returns the pending checkpoint, which it saves
    /// first if `now` is at or after it.
    pub fn stepping(&self, now: Time) -> Option<Time> {
        self.0.stepped.fetch_max(now, Ordering::SeqCst);
        self.pending()
    }

    /// A source is about to act on the output frontier `frontier` (drop what it no longer
    /// needs before it): returns the pending checkpoint.
    pub fn acting_on(&self, frontier: Time) -> Option<Time> {
        self.0.seen.fetch_max(frontier, Ordering::SeqCst);
        self.pending()
    }

    /// Names the checkpoints kept on disk by the final-code manifests they hold, per
    /// worker: each worker's final-code store then deletes only files none of them names
    /// (crate::final_codes::Tier). Called after every checkpoint file written and pruned,
    /// and once before the run with the files already there.
    pub fn keep_manifests(&self, by_worker: BTreeMap<usize, Vec<Manifest>>) {
        let mut kept = self.0.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        kept.0 += 1;
        kept.1 = by_worker;
    }

    /// The kept manifests of `worker`, if they were named since generation `seen`.
    pub fn kept_manifests(&self, worker: usize, seen: u64) -> Option<(u64, Vec<Manifest>)> {
        let kept = self.0.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        (kept.0 > seen).then(|| (kept.0, kept.1.get(&worker).cloned().unwrap_or_default()))
    }

    /// The cut the run starts from.
    pub fn restored(&self) -> Option<&Cut> {
        self.0.restored.as_deref()
    }

    /// Adds a share to the cut at `time`.
    pub fn deposit(&self, time: Time, share: Share) {
        self.deposit_snapshot(time, share, None);
    }

    /// Adds a share to the cut at `time` whose state is `snapshot`, encoded when the cut is
    /// written ([`Complete::encode`]) if it is deferred (`share.state` is then ignored).
    pub fn deposit_snapshot(&self, time: Time, mut share: Share, snapshot: Option<Snapshot>) {
        let mut pending = self.0.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Cuts given up or superseded never complete.
        let settled = self.0.settled.load(Ordering::SeqCst);
        pending.retain(|t, _| *t > settled);
        if time <= settled {
            return;
        }
        let assembling = pending.entry(time).or_insert_with(|| Assembling {
            cut: Cut {
                time,
                workers: self.0.total,
                key_groups: KEY_GROUPS,
                shares: BTreeMap::new(),
            },
            deferred: BTreeMap::new(),
        });
        let key = (share.worker, share.name.clone());
        match snapshot {
            Some(snapshot) if snapshot.is_deferred() => {
                share.state = Vec::new();
                assembling.deferred.insert(key.clone(), snapshot);
            }
            Some(snapshot) => {
                share.state = snapshot.encode();
                assembling.deferred.remove(&key);
            }
            None => {
                assembling.deferred.remove(&key);
            }
        }
        assembling.cut.shares.insert(key, share);
    }

    /// The newest cut that has every share, once (older incomplete ones are dropped: a
    /// newer complete cut supersedes them). Its deferred states are encoded by the caller
    /// ([`Complete::encode`]), on the writer's thread rather than a worker's.
    pub fn take_complete(&self) -> Option<Complete> {
        let mut pending = self.0.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let expected = self.0.workers * self.0.names.len();
        let time = pending
            .iter()
            .rev()
            .find(|(_, assembling)| assembling.cut.shares.len() == expected)
            .map(|(time, _)| *time)?;
        let assembling = pending.remove(&time)?;
        pending.retain(|t, _| *t > time);
        self.0.settled.fetch_max(time, Ordering::SeqCst);
        Some(Complete {
            cut: assembling.cut,
            deferred: assembling.deferred.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(worker: usize, name: &str) -> Share {
        Share {
            worker,
            name: name.to_string(),
            state: vec![worker as u8],
            carried: Vec::new(),
        }
    }

    #[test]
    fn a_proposal_is_after_every_step_and_waits_for_the_pending_one() {
        let checkpoints = Checkpoints::new(2, &["m", "s"], None);
        checkpoints.stepping(10);
        checkpoints.acting_on(4);
        assert_eq!(checkpoints.propose(), Some(11));
        // Pending: no second request, and a machine stepping 12 sees it first.
        assert_eq!(checkpoints.propose(), None);
        assert_eq!(checkpoints.stepping(12), Some(11));
        for worker in 0..2 {
            checkpoints.deposit(11, share(worker, "m"));
        }
        checkpoints.deposit(11, share(0, "s"));
        assert!(checkpoints.take_complete().is_none(), "one share is missing");
        checkpoints.deposit(11, share(1, "s"));
        let cut = checkpoints.take_complete().expect("complete").encode();
        assert_eq!((cut.time, cut.shares.len()), (11, 4));
        assert_eq!(checkpoints.pending(), None);
        // Idle: nothing stepped since, the frontier acted on is 13: a checkpoint at 13.
        checkpoints.acting_on(13);
        assert_eq!(checkpoints.propose(), Some(13));
    }

    #[test]
    fn a_restored_run_asks_for_nothing_before_its_checkpoint() {
        let cut = Cut {
            time: 100,
            workers: 1,
            key_groups: KEY_GROUPS,
            shares: BTreeMap::new(),
        };
        let checkpoints = Checkpoints::new(1, &["m"], Some(cut));
        assert_eq!(checkpoints.propose(), None, "nothing has happened since the checkpoint");
        checkpoints.stepping(100);
        assert_eq!(checkpoints.propose(), Some(101));
    }

    #[test]
    fn shares_of_a_given_up_request_are_dropped() {
        let checkpoints = Checkpoints::new(1, &["m"], None);
        checkpoints.stepping(5);
        assert_eq!(checkpoints.propose(), Some(6));
        checkpoints.deposit(6, share(0, "m"));
        let cut = checkpoints.take_complete().expect("complete").encode();
        assert_eq!(cut.time, 6);
        // A late share of a settled time is ignored.
        checkpoints.deposit(6, share(0, "m"));
        assert!(checkpoints.take_complete().is_none());
    }

    #[test]
    fn a_deferred_state_is_encoded_by_the_writer_not_when_deposited() {
        // A deferred snapshot runs its encoding only in Complete::encode, and its bytes then
        // land in its share; an encoded one is stored as it is.
        use std::sync::atomic::AtomicBool;
        let encoded = Arc::new(AtomicBool::new(false));
        struct Flagged(Arc<AtomicBool>, Vec<u32>);
        impl Serialize for Flagged {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.0.store(true, Ordering::SeqCst);
                self.1.serialize(serializer)
            }
        }
        let checkpoints = Checkpoints::new(2, &["m"], None);
        checkpoints.stepping(5);
        assert_eq!(checkpoints.propose(), Some(6));
        let deferred = Snapshot::of(Flagged(encoded.clone(), vec![7, 8, 9]));
        assert!(deferred.is_deferred());
        checkpoints.deposit_snapshot(6, share(0, "m"), Some(deferred));
        checkpoints.deposit_snapshot(6, share(1, "m"), Some(Snapshot::encoded(vec![42])));
        let complete = checkpoints.take_complete().expect("complete");
        assert_eq!((complete.time(), complete.deferred()), (6, 1));
        assert!(
            !encoded.load(Ordering::SeqCst),
            "nothing encoded before the writer asks"
        );
        let cut = complete.encode();
        assert!(encoded.load(Ordering::SeqCst));
        assert_eq!(cut.share(0, "m").expect("share").state, encode(&vec![7u32, 8, 9]));
        assert_eq!(cut.share(1, "m").expect("share").state, vec![42]);
    }

    #[test]
    fn what_a_snapshot_runs_first_runs_on_the_writer_before_it_encodes() {
        // `after` (files to fsync before a cut names them) runs where the encoding runs,
        // first; the bytes are the snapshot's own, deferred or already encoded.
        use std::sync::Mutex;
        let log = Arc::new(Mutex::new(Vec::new()));
        struct Logged(Arc<Mutex<Vec<&'static str>>>);
        impl Serialize for Logged {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.0.lock().expect("log").push("encode");
                5u8.serialize(serializer)
            }
        }
        let first = |log: &Arc<Mutex<Vec<&'static str>>>| {
            let log = log.clone();
            move || log.lock().expect("log").push("sync")
        };
        let deferred = Snapshot::of(Logged(log.clone())).after(first(&log));
        let encoded = Snapshot::encoded(vec![1, 2]).after(first(&log));
        assert!(deferred.is_deferred() && encoded.is_deferred());
        assert!(log.lock().expect("log").is_empty(), "nothing runs on the worker");
        assert_eq!(deferred.encode(), encode(&5u8));
        assert_eq!(*log.lock().expect("log"), ["sync", "encode"]);
        assert_eq!(encoded.encode(), vec![1, 2]);
        assert_eq!(*log.lock().expect("log"), ["sync", "encode", "sync"]);
    }

    #[test]
    fn the_longest_save_is_kept_per_machine() {
        let checkpoints = Checkpoints::new(1, &["a", "b"], None);
        let ms = std::time::Duration::from_millis;
        checkpoints.note_save("a", ms(3));
        checkpoints.note_save("a", ms(1));
        checkpoints.note_save("b", ms(2));
        let longest = checkpoints.longest_saves();
        assert_eq!((longest["a"], longest["b"]), (ms(3), ms(2)));
        assert_eq!(checkpoints.longest_save(), ms(3));
    }
}
