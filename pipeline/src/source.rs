//! "Source: partitions" — a worker's partitions in, each event at its effective time out
//! (DOMAIN.md §4); the capability the source holds is the worker's watermark.
//!
//! In: the worker's [`PartitionInput`]s (files streamed from disk, records in memory, or
//! Kafka topic-partitions), each read in order. Out: [`Sourced`] records — an event at its
//! effective time, or a decode refusal at the current watermark.
//!
//! Guarantees:
//! - Effective time and lateness are computed per partition ([`Placer`]), exactly as
//!   DOMAIN.md §4 says, so they depend neither on the worker count nor on how partitions
//!   interleave.
//! - The held capability never exceeds `min over unfinished partitions of (high-water −
//!   lateness)`; no later event of any partition can take effect before that, so the
//!   frontier *is* the watermark. A partition that has read nothing yet holds it at its start.
//! - The source reads next from the partition whose watermark is lowest (a merge), so the
//!   watermark advances as fast as the input allows and little waits downstream.
//! - Timely has no backpressure: each activation reads at most `in_flight` weight (one per
//!   event plus one per code it names) less what the dataflow could already finish (times
//!   below the watermark) but has not, and nothing while that alone reaches `in_flight`.
//!   Work at or above the watermark never stops the source: only reading on can finish it.
//! - When every partition is finished, the source reports the largest `ts` it read to the
//!   run's [`InputEnd`] and releases its capability. The last source to finish sets the end
//!   before it releases, and until then its own capability keeps every frontier at or below
//!   the end, so no machine can step past the end before it can see it.

use crate::dataflow::Batching;
use markledger_connectors::codec::Decoded;
use markledger_connectors::partition::{Next, PartitionInput};
use markledger_operators::event::Kind;
use markledger_operators::failure;
use markledger_operators::flow::{time_of, ts_of, Placed};
use markledger_operators::machine::{InputEnd, Time};
use markledger_operators::output::Rejection;
use markledger_operators::rules::Admission;
use markledger_operators::{Event, Ts};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::Capability;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};

/// Effective times of one partition (DOMAIN.md §4): an event takes effect at
/// `max(ts, high-water before it − lateness)` and is late when its `ts` is below that.
#[derive(Clone, Debug)]
pub struct Placer {
    lateness_ms: i64,
    high_water: Option<Ts>,
}

impl Placer {
    /// A partition that has read nothing yet.
    pub fn new(lateness_ms: i64) -> Placer {
        Placer::resuming(lateness_ms, None)
    }

    /// A partition whose records up to one with this high-water mark were read before.
    pub fn resuming(lateness_ms: i64, high_water: Option<Ts>) -> Placer {
        Placer {
            lateness_ms,
            high_water,
        }
    }

    /// Places the partition's next event and moves its high-water mark.
    pub fn place(&mut self, event: Event) -> Placed {
        let floor = self.floor();
        let effective = floor.map_or(event.ts, |floor| floor.max(event.ts));
        let late = floor.is_some_and(|floor| event.ts < floor);
        self.high_water = Some(self.high_water.map_or(event.ts, |hw| hw.max(event.ts)));
        Placed { effective, late, event }
    }

    /// No later event of the partition takes effect before this (None: nothing read yet).
    pub fn floor(&self) -> Option<Ts> {
        self.high_water.map(|hw| hw.minus_millis(self.lateness_ms))
    }
}

/// What a source emits.
#[derive(Clone, Debug)]
pub enum Sourced {
    /// An event at its effective time.
    Event(Placed),
    /// A record refused at decoding (`MALFORMED`, `UNKNOWN_TYPE`).
    Refused(Rejection),
}

/// What a worker's source read, for the run's summary.
#[derive(Clone, Debug, Default)]
pub struct SourceStats {
    /// Records read, refused ones included.
    pub records: u64,
    /// Well-formed events.
    pub events: u64,
    /// Events that took effect late.
    pub late_events: u64,
    /// Codes named by code-bearing events.
    pub code_events: u64,
    /// The earliest `ts` read.
    pub first_ts: Option<Ts>,
    /// The largest `ts` read.
    pub last_ts: Option<Ts>,
    /// Accounts of non-tariff events.
    pub accounts: HashSet<String>,
    /// Input bytes read.
    pub bytes: u64,
    /// Partitions read.
    pub partitions: Vec<String>,
    /// Partitions that ended early, with why.
    pub errors: Vec<String>,
}

impl SourceStats {
    fn count(&mut self, placed: &Placed) {
        let event = &placed.event;
        self.events += 1;
        self.late_events += u64::from(placed.late);
        self.code_events += event.code_count() as u64;
        self.first_ts = Some(self.first_ts.map_or(event.ts, |t| t.min(event.ts)));
        self.last_ts = Some(self.last_ts.map_or(event.ts, |t| t.max(event.ts)));
        if event.kind() != Kind::Tariff && !self.accounts.contains(&event.account) {
            self.accounts.insert(event.account.clone());
        }
    }

    /// Adds another worker's figures.
    pub fn merge(&mut self, other: SourceStats) {
        self.records += other.records;
        self.events += other.events;
        self.late_events += other.late_events;
        self.code_events += other.code_events;
        self.first_ts = [self.first_ts, other.first_ts].into_iter().flatten().min();
        self.last_ts = [self.last_ts, other.last_ts].into_iter().flatten().max();
        self.accounts.extend(other.accounts);
        self.bytes += other.bytes;
        self.partitions.extend(other.partitions);
        self.errors.extend(other.errors);
    }
}

/// The event, or its rejection when it is not taken in at all.
fn admit(admission: &Admission, event: Event) -> Decoded {
    match admission.check(&event) {
        Ok(()) => Decoded::Event(event),
        Err(rejection) => Decoded::Refused(rejection),
    }
}

/// The least time a refusal takes effect at besides its partition's floor: a quarantined
/// event's own `ts`. It was an event in the runs that failed on it, which never completed
/// its instant, so its rejection must come at or after that instant — before it, a restart
/// would take it for an output an earlier run had already produced, and not produce it.
fn refused_at(admission: &Admission, record: &Next) -> Option<Time> {
    match record {
        Next::Record(Decoded::Event(event)) if admission.quarantine.contains_key(&event.id) => Some(time_of(event.ts)),
        _ => None,
    }
}

struct Partition {
    input: Box<dyn PartitionInput>,
    placer: Placer,
    finished: bool,
    /// Idle (a live partition with nothing for longer than its timeout): not holding the
    /// watermark until its next record.
    idle: bool,
}

/// What a worker's source is told.
pub struct SourceSettings {
    /// DOMAIN.md §4's lateness.
    pub lateness_ms: i64,
    /// Which events are taken in at all (`TS_OUT_OF_RANGE`, `INTERNAL_ERROR`).
    pub admission: Admission,
    /// Records per activation and weight in flight.
    pub batching: Batching,
    /// Where the run's watermark stops (file runs), reported to.
    pub end: InputEnd,
    /// A run restored from a checkpoint at `start` places nothing before it.
    pub start: Time,
    /// Set to stop reading (a stream's orderly stop).
    pub stop: Option<Arc<AtomicBool>>,
}

/// What a worker's source reports back, and what it watches.
pub struct SourceReports {
    /// The whole dataflow's progress (a probe after the sinks): work finished.
    pub done: ProbeHandle<Time>,
    /// What it read, for the run's summary.
    pub stats: Rc<RefCell<SourceStats>>,
    /// Records read across all workers, for a progress line.
    pub records_read: Arc<AtomicU64>,
    /// Once stopped, the watermark the source holds.
    pub stopped: Arc<AtomicU64>,
}

/// The source of one worker (see the module docs). Once `settings.stop` is set the source
/// reads nothing more and publishes in `reports.stopped` the watermark it holds.
pub fn partitions<'scope>(
    scope: Scope<'scope, Time>,
    inputs: Vec<Box<dyn PartitionInput>>,
    settings: SourceSettings,
    reports: SourceReports,
) -> StreamVec<'scope, Time, Sourced> {
    let SourceSettings {
        lateness_ms,
        admission,
        batching,
        end,
        start,
        stop,
    } = settings;
    let SourceReports {
        done,
        stats,
        records_read,
        stopped,
    } = reports;
    source::<_, CapacityContainerBuilder<Vec<Sourced>>, _, _>(scope, "Source: partitions", move |mut cap, info| {
        let activator = scope.activator_for(info.address);
        // A run restored from a checkpoint at `start` places nothing before it.
        cap.downgrade(&start.max(*cap.time()));
        let mut held: Option<Capability<Time>> = Some(cap);
        let mut partitions: Vec<Partition> = inputs
            .into_iter()
            .map(|input| Partition {
                placer: Placer::resuming(lateness_ms, input.start_high_water()),
                input,
                finished: false,
                idle: false,
            })
            .collect();
        stats.borrow_mut().partitions = partitions.iter().map(|p| p.input.name()).collect();
        // Events emitted and not yet finished by the whole dataflow, by time, and the part
        // of it below the watermark (the held capability): only that part can finish before
        // the source reads on. Kept as a running sum: summing the map at every activation
        // cost 5 % of a run's CPU (BENCHMARKS.md, "Profile").
        let mut in_flight: BTreeMap<Time, usize> = BTreeMap::new();
        let mut finishable: usize = 0;
        let mut batch: BTreeMap<Time, Vec<Sourced>> = BTreeMap::new();
        move |output| {
            failure::enter_stage("Source: partitions");
            let Some(cap) = held.as_mut() else { return };
            while in_flight
                .first_key_value()
                .is_some_and(|(time, _)| !done.less_equal(time))
            {
                // Finished, so below the done frontier, which is at most the watermark.
                let (_, weight) = in_flight.pop_first().expect("peeked");
                finishable -= weight;
            }
            debug_assert_eq!(
                finishable,
                in_flight.range(..*cap.time()).map(|(_, n)| n).sum::<usize>()
            );
            let mut budget = batching.in_flight.saturating_sub(finishable);
            let mut stats = stats.borrow_mut();
            let mut read = 0;
            let mut records = 0u64;
            let mut waiting = vec![false; partitions.len()];
            while budget > 0 && read < batching.batch {
                // The unfinished partition with the lowest watermark that has a record now.
                let next = partitions
                    .iter()
                    .enumerate()
                    .filter(|(i, p)| !p.finished && !waiting[*i])
                    .min_by_key(|(_, p)| p.placer.floor())
                    .map(|(i, _)| i);
                let Some(index) = next else { break };
                let partition = &mut partitions[index];
                // An event refused before placement is like a malformed record: it moves no
                // high-water mark (also when re-read after a restore).
                let record = partition.input.next_record();
                let at_least = refused_at(&admission, &record);
                let next = match record {
                    Next::Record(Decoded::Event(event)) => Next::Record(admit(&admission, event)),
                    Next::Known(Decoded::Event(event)) => Next::Known(admit(&admission, event)),
                    other => other,
                };
                match next {
                    Next::Known(record) => {
                        // Already in the restored state: only the high-water mark moves.
                        records += 1;
                        partition.idle = false;
                        if let Decoded::Event(event) = record {
                            partition.placer.place(event);
                        }
                    }
                    Next::Record(Decoded::Event(event)) => {
                        records += 1;
                        partition.idle = false;
                        let mut placed = partition.placer.place(event);
                        // Only after an idle partition wakes can its event fall below the
                        // watermark: it takes effect at the watermark, and is late.
                        if time_of(placed.effective) < *cap.time() {
                            placed.effective = ts_of(*cap.time());
                            placed.late = true;
                        }
                        stats.count(&placed);
                        let time = time_of(placed.effective);
                        partition.input.placed(time);
                        let weight = 1 + placed.event.code_count();
                        budget = budget.saturating_sub(weight);
                        *in_flight.entry(time).or_default() += weight;
                        if time < *cap.time() {
                            finishable += weight;
                        }
                        batch.entry(time).or_default().push(Sourced::Event(placed));
                    }
                    Next::Record(Decoded::Refused(rejection)) => {
                        // At its partition's floor: a function of the partition's records
                        // before it, so a restart places it where the first run did (the
                        // watermark when it happens to be read is not). Behind the watermark
                        // only on a partition that was idle.
                        records += 1;
                        let floor = partition.placer.floor().map_or(0, time_of);
                        let time = floor.max(at_least.unwrap_or(0)).max(*cap.time());
                        partition.input.placed(time);
                        batch.entry(time).or_default().push(Sourced::Refused(rejection));
                    }
                    Next::Pending => waiting[index] = true,
                    Next::Idle => {
                        waiting[index] = true;
                        partition.idle = true;
                    }
                    Next::Finished => {
                        partition.finished = true;
                        stats.bytes += partition.input.bytes_read();
                        if let Some(error) = partition.input.error() {
                            stats.errors.push(format!("{}: {error}", partition.input.name()));
                        }
                    }
                }
                read += 1;
            }
            stats.records += records;
            if let Some(last) = stats.last_ts {
                end.note_read(time_of(last));
            }
            records_read.fetch_add(records, Ordering::Relaxed);
            for (time, records) in std::mem::take(&mut batch) {
                output.session(&cap.delayed(&time)).give_iterator(records.into_iter());
            }
            let done_before = done.with_frontier(|frontier| frontier.iter().min().copied());
            for partition in &mut partitions {
                partition.input.completed(done_before.unwrap_or(Time::MAX));
            }
            if stop.as_ref().is_some_and(|stop| stop.load(Ordering::Relaxed)) {
                // Stopping: read nothing more; keep the watermark where it is, so nothing
                // after it is decided, and let the dataflow finish what it holds.
                stopped.store(*cap.time(), Ordering::SeqCst);
                activator.activate_after(std::time::Duration::from_millis(10));
                return;
            }
            let live = partitions.iter().filter(|p| !p.finished);
            let mut holding = live.clone().filter(|p| !p.idle).peekable();
            let watermark = if live.clone().next().is_none() {
                None
            } else if holding.peek().is_none() {
                // Every live partition is idle: like finished ones they no longer hold the
                // watermark back, which goes just past the largest `ts` any source has read:
                // every instant up to it is decided, as at the end of a file run.
                Some(Some(end.read_max() + 1))
            } else {
                holding.map(|p| p.placer.floor().map(time_of)).min()
            };
            match watermark {
                // Every partition finished: report, then release the watermark.
                None => {
                    end.source_finished(stats.last_ts.map(time_of));
                    held = None;
                    // Released: it holds nothing back should the run be stopped.
                    stopped.store(u64::MAX - 1, Ordering::SeqCst);
                }
                Some(floor) => {
                    if let Some(floor) = floor {
                        if floor > *cap.time() {
                            finishable += in_flight.range(*cap.time()..floor).map(|(_, n)| n).sum::<usize>();
                            cap.downgrade(&floor);
                        }
                    }
                    if partitions
                        .iter()
                        .zip(&waiting)
                        .all(|(p, waiting)| p.finished || *waiting)
                    {
                        activator.activate_after(std::time::Duration::from_millis(1));
                    } else {
                        activator.activate();
                    }
                }
            }
        }
    })
}
