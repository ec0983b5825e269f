//! The one way every stateful operator of the dataflow runs: a keyed state machine fed its
//! inputs a whole instant at a time, in account order, once the instant is complete.
//!
//! In: a stream of `M::In` at effective times (ms), exchanged by the caller's pact (a hash
//! of the key the machine's state is partitioned by). Out: a stream of `M::Out` at the
//! instant that produced them.
//!
//! Contract (what [`Machine::step`] may rely on):
//! - `step(now, inputs)` is called once per instant that has inputs or a due timer, in
//!   increasing `now`, only after the input frontier has passed `now`: no input at or
//!   before `now` can arrive later. `inputs` are all inputs at `now`, unsorted.
//! - Timers a machine reports via [`Machine::next_timer`] are at or after the instant being
//!   stepped; a timer at `now` itself makes `step(now, [])` run again.
//! - Nothing after the end ([`InputEnd`]: the watermark's final position of a file run) is
//!   stepped; once the input frontier has passed the end, [`Machine::finish`] runs once
//!   (holds still open are refused there) and inputs after it (only fed-back records) are
//!   dropped. A stream has no end: its machines never finish.

use crate::checkpoint::{decode, encode, Checkpoints, Durable, Share};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::ParallelizationContract;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;

/// Timestamps of the dataflow: effective time in milliseconds since the epoch.
pub type Time = u64;

/// A keyed state machine stepped one complete instant at a time.
pub trait Machine: 'static {
    /// What flows in.
    type In: Clone + 'static;
    /// What flows out.
    type Out: Clone + 'static;
    /// Applies the timers due at `now`, then `inputs` (all inputs at `now`), then whatever
    /// the machine does after an instant's inputs (holds ending).
    fn step(&mut self, now: Time, inputs: Vec<Self::In>, out: &mut Vec<Self::Out>);
    /// The earliest pending timer.
    fn next_timer(&self) -> Option<Time>;
    /// The input is exhausted and every instant up to the end has been stepped.
    fn finish(&mut self, end: Time, out: &mut Vec<Self::Out>);
}

/// When a machine's sweep of state past its horizon is due: once per day of event time.
/// Lookups check horizons themselves, so when a sweep runs never reaches an output; sweeping
/// only bounds memory.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Sweeper {
    next: Option<crate::time::Ts>,
}

impl Sweeper {
    /// Whether to sweep at `now` (the first call only starts the clock).
    pub fn due(&mut self, now: crate::time::Ts) -> bool {
        let every = crate::time::MILLIS_PER_DAY;
        let next = self.next.get_or_insert(now.plus_millis(every));
        if now < *next {
            return false;
        }
        *next = now.plus_millis(every);
        true
    }
}

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

/// Runs `machine` over `stream` (see the module docs for the contract).
///
/// With `checkpoints`, the machine starts from its share of the restored cut (if any), and
/// saves a share of every checkpoint asked for: at time `T`, once every instant before `T`
/// is stepped and before any at or after it (checkpoint.rs). A backfill (a file run that
/// ends in a checkpoint) saves at the end + 1 ms instead of finishing, so a stream can go
/// on from where it stopped.
pub fn run_machine<'scope, M, P>(
    stream: StreamVec<'scope, Time, M::In>,
    pact: P,
    name: &str,
    mut machine: M,
    end: InputEnd,
    checkpoints: Option<Checkpoints>,
) -> StreamVec<'scope, Time, M::Out>
where
    M: Durable,
    M::In: Serialize + DeserializeOwned,
    P: ParallelizationContract<Time, Vec<M::In>>,
{
    let name = name.to_string();
    let scope = stream.scope();
    let worker = scope.index();
    stream.unary_frontier::<CapacityContainerBuilder<Vec<M::Out>>, _, _, _>(
        pact,
        &name.clone(),
        move |default, info| {
            if let Some(checkpoints) = &checkpoints {
                checkpoints.wake_on_request(scope.worker().sync_activator_for(info.address.to_vec()));
            }
            let mut pending: BTreeMap<Time, (Capability<Time>, Vec<M::In>)> = BTreeMap::new();
            // Held at the next timer, whether or not it falls before the end: `finish` emits
            // on it (only a pending hold, which always has a timer, makes `finish` emit).
            let mut timer_cap: Option<Capability<Time>> = None;
            let mut finished = false;
            let mut produced = Vec::new();
            // The last checkpoint time this machine saved (or was restored from).
            let mut saved: Time = 0;
            let restored = checkpoints
                .as_ref()
                .and_then(|c| c.restored())
                .map(|cut| (cut.time, cut.share(worker, &name).cloned()));
            if let Some((time, share)) = restored {
                let share = share.unwrap_or_else(|| panic!("{name}: the checkpoint has no share of worker {worker}"));
                machine
                    .restore(&share.state)
                    .unwrap_or_else(|error| panic!("{name}: {error}"));
                let carried: Vec<(Time, M::In)> =
                    decode(&name, &share.carried).unwrap_or_else(|error| panic!("{name}: {error}"));
                for (at, input) in carried {
                    pending
                        .entry(at)
                        .or_insert_with(|| (default.delayed(&at), Vec::new()))
                        .1
                        .push(input);
                }
                timer_cap = machine.next_timer().map(|t| default.delayed(&t.max(time)));
                saved = time;
            }
            drop(default);
            let backfill = checkpoints.as_ref().is_some_and(Checkpoints::is_backfill);
            let asked = checkpoints.clone();
            let share_name = name.clone();
            // Saves the state as of `time`, with the carried inputs waiting at or after it.
            let save = move |machine: &M, pending: &BTreeMap<Time, (Capability<Time>, Vec<M::In>)>, time: Time| {
                let Some(checkpoints) = &checkpoints else { return };
                let carried: Vec<(Time, M::In)> = pending
                    .range(time..)
                    .flat_map(|(at, (_, inputs))| {
                        inputs
                            .iter()
                            .filter(|input| M::carried(input))
                            .map(move |input| (*at, input.clone()))
                    })
                    .collect();
                let started = std::time::Instant::now();
                let state = machine.save();
                checkpoints.note_save(started.elapsed());
                checkpoints.deposit(
                    time,
                    Share {
                        worker,
                        name: share_name.clone(),
                        state,
                        carried: encode(&carried),
                    },
                );
            };
            move |(input, frontier), output| {
                // Named for a failure's one-line message (crate::failure).
                crate::failure::enter_stage(&name);
                let port = output.output_index();
                input.for_each_stamp(|cap, data| {
                    let time = *cap.least().expect("a stamp has a time");
                    let slot = pending
                        .entry(time)
                        .or_insert_with(|| (cap.retain_least(port).expect("retainable"), Vec::new()));
                    slot.1.extend(data.flat_map(|batch| batch.drain(..)));
                });
                let end = end.get();
                let limit = end.unwrap_or(Time::MAX);
                loop {
                    let next_input = pending.keys().next().copied();
                    let next_timer = machine.next_timer().filter(|t| *t <= limit);
                    let Some(now) = [next_input, next_timer].into_iter().flatten().min() else {
                        break;
                    };
                    if frontier.less_equal(&now) {
                        break;
                    }
                    // A pending checkpoint at or before `now` is saved before `now` is stepped
                    // (the position is published first: Checkpoints::propose).
                    let due = asked.as_ref().and_then(|c| c.stepping(now));
                    if let Some(time) = due.filter(|time| now >= *time && saved < *time) {
                        save(&machine, &pending, time);
                        saved = time;
                    }
                    if now > limit && backfill {
                        // Kept for the backfill's checkpoint (fed-back records at end + 1).
                        break;
                    }
                    if now > limit {
                        // Only fed-back records can come after the end of a file run; they cannot
                        // change an output any more.
                        pending.pop_first();
                        continue;
                    }
                    let (cap, inputs) = match pending.first_key_value() {
                        Some((time, _)) if *time == now => pending.pop_first().expect("peeked").1,
                        _ => {
                            let mut cap = timer_cap.take().expect("a due timer holds a capability");
                            cap.downgrade(&now);
                            (cap, Vec::new())
                        }
                    };
                    machine.step(now, inputs, &mut produced);
                    if !produced.is_empty() {
                        output.session(&cap).give_iterator(produced.drain(..));
                    }
                    // Hold a capability for the next timer (never before `now`).
                    timer_cap = machine.next_timer().map(|t| cap.delayed(&t.max(now)));
                }
                let due = asked.as_ref().and_then(Checkpoints::pending);
                if let Some(time) = due.filter(|time| saved < *time && !frontier.less_than(time)) {
                    save(&machine, &pending, time);
                    saved = time;
                }
                // Finished once nothing at or before `end` can arrive (not once the input is
                // empty: a feedback edge keeps inputs open until every machine has finished).
                let Some(end) = end else { return };
                if backfill {
                    // A backfill does not finish: it saves at end + 1 ms, once everything fed
                    // back to that instant has arrived, and a stream goes on from there.
                    if !finished && !frontier.less_equal(&(end + 1)) {
                        finished = true;
                        save(&machine, &pending, end + 1);
                        saved = end + 1;
                        timer_cap = None;
                        pending.clear();
                    }
                    return;
                }
                if !finished && !frontier.less_equal(&end) && pending.range(..=end).next().is_none() {
                    finished = true;
                    machine.finish(end, &mut produced);
                    if !produced.is_empty() {
                        let cap = timer_cap
                            .as_ref()
                            .unwrap_or_else(|| panic!("{name}: finish emits only with a timer pending"));
                        output.session(cap).give_iterator(produced.drain(..));
                    }
                    timer_cap = None;
                }
            }
        },
    )
}
