//! The one way every stateful operator of the dataflow runs: a [`Machine`] fed its inputs a
//! whole instant at a time, in account order, once the instant is complete.
//!
//! In: a stream of `M::In` at effective times (ms), exchanged by the caller's pact (a hash
//! of the key the machine's state is partitioned by). Out: a stream of `M::Out` at the
//! instant that produced them. The operator is named [`Machine::NAME`], which is also the
//! key of its checkpoint shares.
//!
//! Contract (what [`Machine::step`] may rely on):
//! - `step(now, inputs)` is called once per instant that has inputs or a due timer, in
//!   increasing `now`, only after the input frontier has passed `now`: no input at or
//!   before `now` can arrive later, and only once the machine says it is
//!   [`ready`](Machine::ready) (what it listens to besides its input is complete; saves and
//!   `finish` wait for that too). `inputs` are all inputs at `now`, unsorted.
//! - Timers a machine reports via [`Machine::next_timer`] are at or after the instant being
//!   stepped; a timer at `now` itself makes `step(now, [])` run again.
//! - Nothing after the end ([`InputEnd`]: the watermark's final position of a file run) is
//!   stepped; once the input frontier has passed the end, [`Machine::finish`] runs once
//!   (holds still open are refused there) and inputs after it (only fed-back records) are
//!   dropped. A stream has no end: its machines never finish.
//!
//! With checkpoints (checkpoint.rs), the machine starts from its share of the restored cut
//! (of a cut written by another worker count: the key groups it owns of every old share,
//! `Durable::restore_rescaled`) and saves a share of every checkpoint asked for: at time `T`, once every instant before
//! `T` is stepped and before any at or after it. A backfill (a file run that ends in a
//! checkpoint) saves at the end + 1 ms instead of finishing, so a stream can go on from
//! where it stopped.

use crate::checkpoint::{decode, encode, Checkpoints, Cut, Share};
use crate::flow::{worker_of_group, Time};
use crate::machine::{Durable, Machine};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::ParallelizationContract;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;
use timely::progress::frontier::MutableAntichain;

/// Where a run's watermark stops (DOMAIN.md §4): a file run stops at the largest `ts` read,
/// which is known only once every source has read its last partition; a stream never stops.
///
/// Machines read it at every activation. A source reports when it has read everything and
/// only then releases its capability; the last one sets the end before it releases, so no
/// frontier can pass the end before every machine can see it.
#[derive(Clone, Debug)]
pub struct InputEnd(Arc<EndState>);

#[derive(Debug)]
struct EndState {
    /// Sources that have not finished yet.
    running: AtomicUsize,
    /// The largest instant any finished source read (`NONE` until one read something).
    last: AtomicU64,
    end: OnceLock<Time>,
    /// The largest instant any source has read so far.
    read_max: AtomicU64,
}

impl InputEnd {
    const NONE: u64 = u64::MAX;

    /// The end is known before the run starts.
    pub fn at(end: Time) -> InputEnd {
        let state = EndState {
            running: AtomicUsize::new(0),
            last: AtomicU64::new(end),
            end: OnceLock::new(),
            read_max: AtomicU64::new(0),
        };
        state.end.set(end).expect("a new cell");
        InputEnd(Arc::new(state))
    }

    /// The end is the largest instant read by `sources` sources, once all have finished.
    pub fn after(sources: usize) -> InputEnd {
        let state = EndState {
            running: AtomicUsize::new(sources),
            last: AtomicU64::new(Self::NONE),
            end: OnceLock::new(),
            read_max: AtomicU64::new(0),
        };
        if sources == 0 {
            state.end.set(0).expect("a new cell");
        }
        InputEnd(Arc::new(state))
    }

    /// A stream: the watermark never stops.
    pub fn never() -> InputEnd {
        InputEnd::after(usize::MAX)
    }

    /// A source has read everything; `last` is the largest instant it read.
    pub fn source_finished(&self, last: Option<Time>) {
        let state = &self.0;
        if let Some(last) = last {
            // `NONE` is the largest u64, so it must be replaced, not maxed with.
            let _ = state.last.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |seen| {
                Some(if seen == Self::NONE { last } else { seen.max(last) })
            });
        }
        if state.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            let last = state.last.load(Ordering::SeqCst);
            let _ = state.end.set(if last == Self::NONE { 0 } else { last });
        }
    }

    /// A source has read up to `time`.
    pub fn note_read(&self, time: Time) {
        self.0.read_max.fetch_max(time, Ordering::SeqCst);
    }

    /// The largest instant any source of the run has read so far.
    pub fn read_max(&self) -> Time {
        self.0.read_max.load(Ordering::SeqCst)
    }

    /// The end, once known.
    pub fn get(&self) -> Option<Time> {
        self.0.end.get().copied()
    }
}

/// What every machine of a run shares: where the watermark stops, and the checkpoints (if
/// the run takes them).
#[derive(Clone, Debug)]
pub struct Drive {
    /// Where the run's watermark stops.
    pub end: InputEnd,
    /// Checkpoints asked for, and the cut the run starts from.
    pub checkpoints: Option<Checkpoints>,
}

/// Whether every machine encodes its checkpoint share on its worker, as before
/// `Durable::snapshot` (`MARKLEDGER_SNAPSHOT_ON_WORKER=1`): the benchmarks' "before" in the
/// same binary (BENCHMARKS.md). Read once.
fn encode_on_worker() -> bool {
    static ON_WORKER: OnceLock<bool> = OnceLock::new();
    *ON_WORKER.get_or_init(|| std::env::var_os("MARKLEDGER_SNAPSHOT_ON_WORKER").is_some_and(|v| v == "1"))
}

/// Outputs of an activation, each batch with the capability of the instant that made it.
type Batches<O> = Vec<(Capability<Time>, Vec<O>)>;

/// Runs `machine` over `stream` (see the module docs for the contract).
pub fn run_machine<'scope, M, P>(
    stream: StreamVec<'scope, Time, M::In>,
    pact: P,
    machine: M,
    drive: &Drive,
) -> StreamVec<'scope, Time, M::Out>
where
    M: Durable,
    M::In: Serialize + DeserializeOwned,
    P: ParallelizationContract<Time, Vec<M::In>>,
{
    let scope = stream.scope();
    let (worker, workers) = (scope.index(), scope.peers());
    let Drive { end, checkpoints } = drive.clone();
    stream.unary_frontier::<CapacityContainerBuilder<Vec<M::Out>>, _, _, _>(pact, M::NAME, move |default, info| {
        if let Some(checkpoints) = &checkpoints {
            checkpoints.wake_on_request(scope.worker().sync_activator_for(info.address.to_vec()));
        }
        let mut driver = Driver::new(machine, (worker, workers), end, checkpoints);
        driver.machine.wake_with(scope.activator_for(info.address.clone()));
        driver.restore(&default);
        drop(default);
        move |(input, frontier), output| {
            // Named for a failure's one-line message (crate::failure).
            crate::failure::enter_stage(M::NAME);
            let port = output.output_index();
            input.for_each_stamp(|cap, data| {
                let time = *cap.least().expect("a stamp has a time");
                let inputs = driver.pending_at(time, || cap.retain_least(port).expect("retainable"));
                inputs.extend(data.flat_map(|batch| batch.drain(..)));
            });
            for (cap, outputs) in driver.activate(frontier) {
                output.session(&cap).give_iterator(outputs.into_iter());
            }
        }
    })
}

/// A machine and what its operator holds around it: inputs waiting for their instant, the
/// capability of its next timer, and its checkpoint bookkeeping.
struct Driver<M: Machine> {
    machine: M,
    worker: usize,
    /// The run's worker count (every process's): a restored cut written by another count
    /// is split by key group (`Durable::restore_rescaled`).
    workers: usize,
    end: InputEnd,
    checkpoints: Option<Checkpoints>,
    /// A backfill saves at the end instead of finishing.
    backfill: bool,
    pending: BTreeMap<Time, (Capability<Time>, Vec<M::In>)>,
    /// Held at the next timer, whether or not it falls before the end: `finish` emits on it
    /// (only a pending hold, which always has a timer, makes `finish` emit).
    timer_cap: Option<Capability<Time>>,
    finished: bool,
    /// The last checkpoint time this machine saved (or was restored from).
    saved: Time,
}

impl<M> Driver<M>
where
    M: Durable,
    M::In: Serialize + DeserializeOwned,
{
    fn new(
        machine: M,
        (worker, workers): (usize, usize),
        end: InputEnd,
        checkpoints: Option<Checkpoints>,
    ) -> Driver<M> {
        let backfill = checkpoints.as_ref().is_some_and(Checkpoints::is_backfill);
        Driver {
            machine,
            worker,
            workers,
            end,
            checkpoints,
            backfill,
            pending: BTreeMap::new(),
            timer_cap: None,
            finished: false,
            saved: 0,
        }
    }

    /// Starts from the restored cut, if the run restores one: its state, and the inputs
    /// that were waiting at the cut (fed back from before it). A cut of the same worker
    /// count gives this worker its own share; one of another count gives it every old
    /// worker's, of which it keeps the key groups it owns (docs/ARCHITECTURE.md, "Key
    /// groups").
    fn restore(&mut self, default: &Capability<Time>) {
        let restored = self.checkpoints.clone();
        let Some(cut) = restored.as_ref().and_then(Checkpoints::restored) else {
            return;
        };
        let carried = if cut.workers == self.workers {
            self.restore_own_share(cut)
        } else {
            self.restore_rescaled(cut)
        };
        for (at, input) in carried {
            self.pending_at(at, || default.delayed(&at)).push(input);
        }
        self.timer_cap = self.machine.next_timer().map(|t| default.delayed(&t.max(cut.time)));
        self.saved = cut.time;
    }

    /// A cut of this run's worker count: this worker's share, and its carried inputs.
    fn restore_own_share(&mut self, cut: &Cut) -> Vec<(Time, M::In)> {
        let (name, worker) = (M::NAME, self.worker);
        let share = cut
            .share(worker, name)
            .unwrap_or_else(|| panic!("{name}: the checkpoint has no share of worker {worker}"));
        self.machine
            .restore(&share.state)
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        decode(name, &share.carried).unwrap_or_else(|error| panic!("{name}: {error}"))
    }

    /// A cut of another worker count: the key groups this worker owns of every old share,
    /// and the carried inputs of those groups.
    fn restore_rescaled(&mut self, cut: &Cut) -> Vec<(Time, M::In)> {
        let (name, worker, workers) = (M::NAME, self.worker, self.workers);
        let shares: Vec<&Share> = (0..cut.workers)
            .map(|old| {
                cut.share(old, name)
                    .unwrap_or_else(|| panic!("{name}: the checkpoint has no share of worker {old}"))
            })
            .collect();
        let owned = move |group: u64| worker_of_group(group, workers) == worker;
        let states: Vec<(usize, &[u8])> = shares.iter().map(|share| (share.worker, &share.state[..])).collect();
        let started = std::time::Instant::now();
        self.machine
            .restore_rescaled(&states, &owned)
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        // A rescale is rare and its cost grows with the state: said, per machine.
        crate::note!(
            "markledger: {name}: worker {worker} of {workers} kept its key groups of {} old workers' shares in {} ms",
            cut.workers,
            started.elapsed().as_millis()
        );
        let mut carried = Vec::new();
        for share in shares {
            let inputs: Vec<(Time, M::In)> =
                decode(name, &share.carried).unwrap_or_else(|error| panic!("{name}: {error}"));
            // An input of no group stays on worker 0 (every machine that carries inputs names one).
            carried.extend(
                inputs
                    .into_iter()
                    .filter(|(_, input)| M::input_group(input).map_or(worker == 0, owned)),
            );
        }
        carried
    }

    /// The inputs waiting at `time`, holding `cap()` for it if none were.
    fn pending_at(&mut self, time: Time, cap: impl FnOnce() -> Capability<Time>) -> &mut Vec<M::In> {
        &mut self.pending.entry(time).or_insert_with(|| (cap(), Vec::new())).1
    }

    /// One activation: every complete instant stepped, a checkpoint share saved when one
    /// is due, and the end handled; gives what was produced.
    fn activate(&mut self, frontier: &MutableAntichain<Time>) -> Batches<M::Out> {
        let mut batches = self.step_complete_instants(frontier);
        self.save_when_frontier_reaches(frontier);
        if let Some(end) = self.end.get() {
            if self.backfill {
                self.save_at_end(end, frontier);
            } else if let Some(batch) = self.finish(end, frontier) {
                batches.push(batch);
            }
        }
        batches
    }

    /// Steps, in order, every instant the frontier has passed that has inputs or a timer,
    /// up to the end.
    fn step_complete_instants(&mut self, frontier: &MutableAntichain<Time>) -> Batches<M::Out> {
        let limit = self.end.get().unwrap_or(Time::MAX);
        let mut batches = Vec::new();
        loop {
            let next_input = self.pending.keys().next().copied();
            let next_timer = self.machine.next_timer().filter(|t| *t <= limit);
            let Some(now) = [next_input, next_timer].into_iter().flatten().min() else {
                break;
            };
            if frontier.less_equal(&now) || !self.machine.ready() {
                break;
            }
            // A pending checkpoint at or before `now` is saved before `now` is stepped
            // (the position is published first: Checkpoints::propose).
            let due = self.checkpoints.as_ref().and_then(|c| c.stepping(now));
            if let Some(time) = due.filter(|time| now >= *time && self.saved < *time) {
                self.save(time);
            }
            if now > limit && self.backfill {
                // Kept for the backfill's checkpoint (fed-back records at end + 1).
                break;
            }
            if now > limit {
                // Only fed-back records can come after the end of a file run; they cannot
                // change an output any more.
                self.pending.pop_first();
                continue;
            }
            batches.extend(self.step(now));
        }
        batches
    }

    /// Steps the instant `now`: its inputs, or its timer.
    fn step(&mut self, now: Time) -> Option<(Capability<Time>, Vec<M::Out>)> {
        let (cap, inputs) = match self.pending.first_key_value() {
            Some((time, _)) if *time == now => self.pending.pop_first().expect("peeked").1,
            _ => {
                let mut cap = self.timer_cap.take().expect("a due timer holds a capability");
                cap.downgrade(&now);
                (cap, Vec::new())
            }
        };
        let mut produced = Vec::new();
        self.machine.step(now, inputs, &mut produced);
        // Hold a capability for the next timer (never before `now`).
        self.timer_cap = self.machine.next_timer().map(|t| cap.delayed(&t.max(now)));
        (!produced.is_empty()).then_some((cap, produced))
    }

    /// Saves a share of the pending checkpoint once the input frontier has reached it.
    fn save_when_frontier_reaches(&mut self, frontier: &MutableAntichain<Time>) {
        let due = self.checkpoints.as_ref().and_then(Checkpoints::pending);
        if let Some(time) = due.filter(|time| self.saved < *time && !frontier.less_than(time)) {
            if self.machine.ready() {
                self.save(time);
            }
        }
    }

    /// A backfill does not finish: it saves at end + 1 ms, once everything fed back to that
    /// instant has arrived, and a stream goes on from there.
    fn save_at_end(&mut self, end: Time, frontier: &MutableAntichain<Time>) {
        if !self.finished && !frontier.less_equal(&(end + 1)) && self.machine.ready() {
            self.finished = true;
            self.save(end + 1);
            self.timer_cap = None;
            self.pending.clear();
        }
    }

    /// Finishes once nothing at or before `end` can arrive (not once the input is empty: a
    /// feedback edge keeps inputs open until every machine has finished).
    fn finish(&mut self, end: Time, frontier: &MutableAntichain<Time>) -> Option<(Capability<Time>, Vec<M::Out>)> {
        if self.finished
            || frontier.less_equal(&end)
            || self.pending.range(..=end).next().is_some()
            || !self.machine.ready()
        {
            return None;
        }
        self.finished = true;
        let mut produced = Vec::new();
        self.machine.finish(end, &mut produced);
        let cap = self.timer_cap.take();
        if produced.is_empty() {
            return None;
        }
        let cap = cap.unwrap_or_else(|| panic!("{}: finish emits only with a timer pending", M::NAME));
        Some((cap, produced))
    }

    /// Saves the state as of `time`, with the carried inputs waiting at or after it.
    fn save(&mut self, time: Time) {
        self.saved = time;
        let Some(checkpoints) = &self.checkpoints else { return };
        let carried: Vec<(Time, M::In)> = self
            .pending
            .range(time..)
            .flat_map(|(at, (_, inputs))| {
                inputs
                    .iter()
                    .filter(|input| M::carried(input))
                    .map(move |input| (*at, input.clone()))
            })
            .collect();
        // The worker's pause for this checkpoint: the machine's capture of its state (the
        // encoding may be left to the writer: Durable::snapshot).
        let started = std::time::Instant::now();
        let snapshot = if encode_on_worker() {
            crate::checkpoint::Snapshot::encoded(self.machine.save())
        } else {
            self.machine.snapshot()
        };
        checkpoints.note_save(M::NAME, started.elapsed());
        let share = Share {
            worker: self.worker,
            name: M::NAME.to_string(),
            state: Vec::new(),
            carried: encode(&carried),
        };
        checkpoints.deposit_snapshot(time, share, Some(snapshot));
    }
}
